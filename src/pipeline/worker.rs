//! One worker: decodes each frame, feeds the flow table, and hands the events on. The
//! reader's workers and the independent-file jobs both run this one loop body.

use std::time::{Duration, Instant};

use super::writer::Events;
use super::Tally;
use crate::counters::Counters;
use crate::decode::{self, LinkType, Packet, Skip};
use crate::flow::{Keyed, Tracker};
use crate::prefetch;
use crate::telemetry::{Gauges, Latency, LATENCY_SAMPLE};
use crate::time::Ts;

/// Latency histograms are published every this many batches, or at least this often
/// while samples come in: a live capture's batches are small (a few frames when traffic
/// is light), so a batch count alone could leave the metrics empty for hours. Copying
/// the histograms costs a few microseconds; reading the clock once a batch, far less.
const LATENCY_PUBLISH_BATCHES: u64 = 64;
const LATENCY_PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// Events a worker holds before it wakes the writer for them (a capture thread between
/// ticks, a file's worker between every 16th batch).
const SEND_EVENTS: usize = 64;

/// A file's worker sends its time to the writer every this many batches (4,096 frames),
/// events or none.
const WATERMARK_BATCHES: u64 = 16;

/// Frames decoded before they are tracked. A busy port's flows do not fit the cache, so
/// tracking a packet would stall on its flow's index slot and then on the flow: the
/// worker decodes this many frames ahead, asks for the slot as it decodes and for the
/// flow halfway, and tracks each packet once both are likely in the cache (as DPDK's
/// bulk lookups and VPP's vectors do).
const AHEAD: usize = 8;

/// A decoded frame: its wire length, what decoding made of it, its flow's key, and (one
/// frame in [`LATENCY_SAMPLE`]) how long decoding took. The worker's look-ahead holds
/// these; so does a batch the reader decoded while the worker was behind.
#[derive(Clone, Copy)]
pub(super) struct Decoded {
    wire_len: u32,
    decoded: Result<Packet, Skip>,
    key: Keyed,
    decode_ns: Option<u64>,
}

impl Decoded {
    pub(super) const EMPTY: Decoded =
        Decoded { wire_len: 0, decoded: Err(Skip::LinkTruncated), key: Keyed::NONE, decode_ns: None };

    /// Decodes a frame into `self`, in place (the packet is not built elsewhere and
    /// copied); `timed` also measures how long decoding took.
    #[inline]
    pub(super) fn decode(&mut self, link: LinkType, ts: Ts, wire_len: u32, data: &[u8], timed: bool) {
        self.wire_len = wire_len;
        self.decode_ns = None;
        if timed {
            let started = Instant::now();
            self.decoded = decode::decode(link, ts, wire_len, data);
            self.decode_ns = Some(started.elapsed().as_nanos() as u64);
        } else {
            self.decoded = decode::decode(link, ts, wire_len, data);
        }
        self.key = match &self.decoded {
            Ok(packet) => Keyed::of(packet),
            Err(_) => Keyed::NONE,
        };
    }
}

/// A flow table and what is counted beside it.
pub(super) struct Worker<'a> {
    tracker: Tracker,
    /// Decoded frames, a ring of [`AHEAD`]: the `queued` before the next place wait.
    ahead: [Decoded; AHEAD],
    /// Frames pushed into the look-ahead so far (the next one's place is this modulo
    /// [`AHEAD`]); `queued` of them wait.
    pushed: usize,
    queued: usize,
    /// What earlier trackers of this thread counted (a job's finished files).
    earlier: Counters,
    gauges: &'a Gauges,
    events: Events,
    latency: Latency,
    frames: u64,
    batches: u64,
    /// When the latency was last published, and how many samples it had then.
    latency_published: (Instant, u64),
    pub(super) busy: Duration,
}

impl<'a> Worker<'a> {
    /// `events` feeds the stream the tracker's packets belong to (`Events::join` or
    /// `Events::new_stream`).
    pub(super) fn new(tracker: Tracker, gauges: &'a Gauges, events: Events) -> Worker<'a> {
        let earlier = Counters::default();
        Worker {
            tracker,
            ahead: [Decoded::EMPTY; AHEAD],
            pushed: 0,
            queued: 0,
            earlier,
            gauges,
            events,
            latency: Latency::default(),
            frames: 0,
            batches: 0,
            latency_published: (Instant::now(), 0),
            busy: Duration::ZERO,
        }
    }

    /// Decodes one frame and queues it; tracks the frame queued [`AHEAD`] frames ago.
    /// One frame in [`LATENCY_SAMPLE`] is timed stage by stage.
    #[inline]
    pub(super) fn frame(&mut self, link: LinkType, ts: Ts, wire_len: u32, data: &[u8]) {
        self.frames += 1;
        let place = self.pushed % AHEAD;
        if self.queued == AHEAD {
            self.track(place);
            self.queued -= 1;
        }
        let slot = &mut self.ahead[place];
        slot.decode(link, ts, wire_len, data, self.frames % LATENCY_SAMPLE == 0);
        self.tracker.prefetch_slot(slot.key.hash);
        self.pushed += 1;
        self.queued += 1;
        // The frame decoded half the look-ahead ago: its slot has likely arrived, so its
        // flow can be asked for.
        if self.queued > AHEAD / 2 {
            self.tracker.prefetch_flow(self.ahead[(self.pushed - 1 - AHEAD / 2) % AHEAD].key.hash);
        }
    }

    /// Tracks the frame waiting at `place`.
    fn track(&mut self, place: usize) {
        track(&mut self.tracker, &mut self.latency, &self.ahead[place]);
    }

    /// Tracks frames the reader decoded already, looking ahead in them as [`Worker::frame`]
    /// does in its own ring.
    pub(super) fn decoded(&mut self, frames: &[Decoded]) {
        self.drain();
        for frame in frames.iter().take(AHEAD) {
            self.tracker.prefetch_slot(frame.key.hash);
        }
        for (i, frame) in frames.iter().enumerate() {
            if let Some(ahead) = frames.get(i + AHEAD) {
                self.tracker.prefetch_slot(ahead.key.hash);
            }
            if let Some(ahead) = frames.get(i + AHEAD / 2) {
                self.tracker.prefetch_flow(ahead.key.hash);
            }
            // The reader wrote these on its core.
            if let Some(ahead) = frames.get(i + AHEAD) {
                prefetch::all(ahead);
            }
            track(&mut self.tracker, &mut self.latency, frame);
        }
    }

    /// Tracks every frame still in the look-ahead, oldest first: before the tracker is
    /// asked anything else.
    fn drain(&mut self) {
        while self.queued > 0 {
            self.track((self.pushed + AHEAD - self.queued) % AHEAD);
            self.queued -= 1;
        }
    }

    /// The frames fed from now on come from input `file` (an index into the run's files).
    pub(super) fn set_file(&mut self, file: u16) {
        self.drain();
        self.tracker.set_file(file);
    }

    /// A file's batch is done: the clock moves to `tick` if the batch brought one (as
    /// [`Worker::tick`] does) and the counters are published. The tracker's events go
    /// to the writer once [`SEND_EVENTS`] wait, and its time every [`WATERMARK_BATCHES`]
    /// batches (what lets other workers' alerts out in order): sending the time with
    /// every batch woke the writer a few thousand times a run, and on two cores the
    /// three threads then took turns.
    pub(super) fn batch_done(&mut self, tick: Option<Ts>) {
        self.batches += 1;
        let events = if self.batches % WATERMARK_BATCHES == 0 { 0 } else { SEND_EVENTS };
        self.handled(tick, events);
    }

    /// Frames were handled (a capture thread's, between ticks): the counters are
    /// published, and the tracker's events go to the writer once [`SEND_EVENTS`] wait.
    /// Fewer wait for the next tick (at most 100 ms of packet time, or 20 ms of a quiet
    /// link), so a busy capture thread wakes the writer a few times a tick, not for every
    /// few hundred frames.
    pub(super) fn frames_done(&mut self) {
        self.batches += 1;
        self.handled(None, SEND_EVENTS);
    }

    /// The clock moved on (a capture thread's tick, or no frames came): the timers due
    /// by then run, and the events and the time go to the writer.
    pub(super) fn tick(&mut self, now: Ts) {
        self.handled(Some(now), 0);
    }

    fn handled(&mut self, tick: Option<Ts>, events: usize) {
        self.drain();
        if let Some(now) = tick {
            self.tracker.advance(now);
        }
        if self.tracker.pending_events() >= events {
            self.events.send_from(&mut self.tracker);
        }
        self.publish();
        self.maybe_publish_latency();
    }

    /// Publishes the latency every [`LATENCY_PUBLISH_BATCHES`] batches, or when new
    /// samples have waited [`LATENCY_PUBLISH_INTERVAL`].
    fn maybe_publish_latency(&mut self) {
        let (at, samples) = self.latency_published;
        let new = self.latency.samples() != samples;
        if new && (self.batches % LATENCY_PUBLISH_BATCHES == 0 || at.elapsed() >= LATENCY_PUBLISH_INTERVAL) {
            self.gauges.publish_latency(&self.latency);
            self.latency_published = (Instant::now(), self.latency.samples());
        }
    }

    /// Ends every flow of the current tracker and goes on with `next` (a job's next
    /// file), keeping what the old one counted.
    pub(super) fn replace_tracker(&mut self, next: Tracker) {
        self.drain();
        let mut done = std::mem::replace(&mut self.tracker, next);
        while done.finish_some() {
            self.events.send_finishing(&mut done);
        }
        self.events.send_last(&mut done);
        // The next file is a stream of its own, bounded on its own.
        self.events = self.events.new_stream();
        self.earlier.merge(done.counters());
        self.publish();
    }

    /// Ends every flow (the input is over) and returns what was counted.
    pub(super) fn finish(mut self) -> Tally {
        let started = Instant::now();
        self.drain();
        while self.tracker.finish_some() {
            self.events.send_finishing(&mut self.tracker);
        }
        self.events.send_last(&mut self.tracker);
        self.publish();
        self.gauges.publish_latency(&self.latency);
        let mut counters = self.earlier;
        counters.merge(self.tracker.counters());
        Tally { counters, latency: self.latency, busy: self.busy + started.elapsed() }
    }

    fn publish(&self) {
        self.gauges.publish_sum(&[&self.earlier, self.tracker.counters()], self.tracker.active_flows());
    }
}

/// Tracks one decoded frame, timing it when its decoding was timed.
#[inline]
fn track(tracker: &mut Tracker, latency: &mut Latency, frame: &Decoded) {
    match frame.decode_ns {
        Some(decode_ns) => {
            let started = Instant::now();
            tracker.frame(frame.wire_len, &frame.decoded, &frame.key);
            latency.record(decode_ns, started.elapsed().as_nanos() as u64);
        }
        None => tracker.frame(frame.wire_len, &frame.decoded, &frame.key),
    }
}
