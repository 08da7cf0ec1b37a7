//! One stream of frames: the reader batches them to the workers.
//!
//! The reader keeps one pending batch per worker and picks the worker by a symmetric hash
//! of the frame's addresses ([`decode::route_hash`]), so that a flow's packets, its
//! fragments and the ICMP errors quoting it all reach the same worker, in order. A file's
//! frames stay in the shared chunk the reader read them into (a batch holds the chunk,
//! not a copy); frames of a source that reads into no chunk (a pipe through libpcap)
//! are copied into the batch. Channels are bounded. A batch that finds its worker's
//! channel full waits in a short backlog of the reader's, which decodes the waiting
//! batches for the worker (work it would otherwise spend waiting) and blocks only once
//! the backlog is full too: nothing is lost. Batches go back to the reader on a return
//! channel, so the steady state allocates nothing per frame. (A live capture has no
//! reader: see `live.rs`.)

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, Builder};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::worker::{Decoded, Worker};
use super::writer::{self, Events, Writer};
use super::{join_all, Outputs, Progress, ReaderDecodes, Settings, Tally};
use crate::capture::filter::Filter;
use crate::capture::{CaptureError, Chunk, Frame, FrameSource, Next};
use crate::counters::Counter;
use crate::decode::{self, LinkType};
use crate::flow::Tracker;
use crate::output::{eve, EveOut};
use crate::policy::Engine;
use crate::prefetch;
use crate::telemetry::{self, Busy, Monitor, Reading, RunRecord, LATENCY_SAMPLE};
use crate::time::Ts;

/// Bytes of copied frame data a batch holds before it is sent, whatever its frame count.
const BATCH_BYTES: usize = 1 << 20;

/// Progress and the stop request are looked at every this many frames.
const CHECK_FRAMES: u32 = 4096;

/// A worker asks for the headers of the frame this many places ahead while it handles
/// the current one: they were written by the kernel's copy on the reader's core and
/// would otherwise stall the decoder on every frame. Measured on the 1M-packet bench
/// capture with 1 worker: busy 0.176 s without, 0.165 s with 2 ahead (4 ahead varied).
const PREFETCH_AHEAD: usize = 2;

/// How to run one stream.
pub(super) struct Stream<'a> {
    pub(super) settings: &'a Settings,
    /// One worker per gauge.
    pub(super) monitor: &'a Monitor,
    /// Where the events are seen (EVE `host`, `in_iface`, `pcap_filename`).
    pub(super) origin: &'a eve::Origin,
}

/// Frames for one worker: shared from a chunk of the file, or copied out of the reading
/// buffer (libpcap's, for a pipe).
struct Batch {
    chunk: Option<Chunk>,
    copied: Vec<u8>,
    frames: Vec<FrameMeta>,
    /// The first `decoded_len` frames, decoded, when the reader decoded them (see
    /// [`Reader::send`]); the rest are the worker's to decode. The slots stay allocated
    /// and are decoded into in place, with the batch reused.
    decoded: Vec<Decoded>,
    decoded_len: usize,
    /// After its frames, the worker's clock moves to this packet time (see
    /// [`Reader::flush_and_tick`]).
    tick: Option<Ts>,
    /// The input the frames come from (an index into the run's files); a batch never
    /// mixes inputs.
    file: u16,
}

#[derive(Clone, Copy)]
struct FrameMeta {
    link: LinkType,
    ts: Ts,
    wire_len: u32,
    /// Where the bytes are: in `chunk` (shared) or in `copied`.
    shared: bool,
    start: u32,
    len: u32,
}

/// What a worker is sent.
enum Work {
    Batch(Batch),
    /// The clock moved on while no frames came: run the timers due by then.
    Tick(Ts),
}

impl Batch {
    fn new(frames: usize) -> Batch {
        Batch {
            chunk: None,
            copied: Vec::with_capacity(frames * 128),
            frames: Vec::with_capacity(frames),
            decoded: Vec::new(),
            decoded_len: 0,
            tick: None,
            file: 0,
        }
    }

    /// Adds a frame. The reader sends a batch before it would mix chunks.
    fn push(&mut self, frame: &Frame<'_>) {
        let (shared, start) = match frame.chunk {
            Some(chunk) => {
                self.chunk.get_or_insert_with(|| Arc::clone(chunk));
                (true, frame.data.as_ptr() as usize - chunk.as_ptr() as usize)
            }
            None => {
                let start = self.copied.len();
                self.copied.extend_from_slice(frame.data);
                (false, start)
            }
        };
        self.frames.push(FrameMeta {
            link: frame.link,
            ts: frame.ts,
            wire_len: frame.wire_len,
            shared,
            start: start as u32,
            len: frame.data.len() as u32,
        });
    }

    fn data(&self, meta: &FrameMeta) -> &[u8] {
        frame_data(self.chunk.as_ref(), &self.copied, meta)
    }

    /// Decodes frames into `decoded`, from the first not decoded yet, for as long as
    /// `behind` says the worker has no room for the batch (asked every few frames),
    /// timing one frame in [`LATENCY_SAMPLE`] by the count `decoded_before` of frames
    /// decoded so.
    fn decode_while(&mut self, behind: impl Fn() -> bool, decoded_before: &mut u64) {
        const ASK_EVERY: usize = 8;
        if self.decoded.len() < self.frames.len() {
            self.decoded.resize(self.frames.len(), Decoded::EMPTY);
        }
        let (from, frames) = (self.decoded_len, self.frames.len());
        let slots = self.frames[from..].iter().zip(&mut self.decoded[from..frames]);
        for (i, (meta, slot)) in slots.enumerate() {
            if i % ASK_EVERY == 0 && !behind() {
                break;
            }
            let data = frame_data(self.chunk.as_ref(), &self.copied, meta);
            *decoded_before += 1;
            slot.decode(meta.link, meta.ts, meta.wire_len, data, *decoded_before % LATENCY_SAMPLE == 0);
            self.decoded_len += 1;
        }
    }

    /// The frames the reader decoded, from the first.
    fn decoded(&self) -> &[Decoded] {
        &self.decoded[..self.decoded_len]
    }

    fn is_decoded(&self) -> bool {
        self.decoded_len == self.frames.len()
    }

    fn is_full(&self, frames: usize) -> bool {
        self.frames.len() >= frames || self.copied.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.chunk = None;
        self.copied.clear();
        self.frames.clear();
        self.decoded_len = 0;
        self.tick = None;
    }
}

/// Where a frame's bytes are: in the shared chunk or in the batch's copy.
fn frame_data<'a>(chunk: Option<&'a Chunk>, copied: &'a [u8], meta: &FrameMeta) -> &'a [u8] {
    let bytes = match (chunk, meta.shared) {
        (Some(chunk), true) => &chunk[..],
        _ => copied,
    };
    let start = meta.start as usize;
    bytes.get(start..start + meta.len as usize).unwrap_or_default()
}

impl Stream<'_> {
    /// Runs the pipeline over `sources` (read one after the other) until they end or
    /// `monitor.stop` is set, writing events to `out` (the sink, open already).
    pub(super) fn run(
        &self,
        engine: &Arc<Engine>,
        sources: &mut dyn Iterator<Item = Result<Box<dyn FrameSource>, CaptureError>>,
        (outputs, out): (Outputs<'_>, EveOut),
        progress: Progress<'_>,
    ) -> io::Result<RunRecord> {
        let Stream { settings, monitor, origin } = *self;
        let started = Instant::now();
        let workers = monitor.gauges.len();
        let flows = settings.flows_share(workers, outputs.observer.as_deref());
        thread::scope(|scope| -> io::Result<RunRecord> {
            let writer = Writer::of_run((outputs, out), settings, (monitor, engine, origin), false);
            let (events, writer) = writer::spawn(scope, writer)?;
            // Room for every batch that can be out at once, so none returned is dropped
            // to be made anew: a worker's queue and the reader's backlog for it, its
            // pending batch and the one it works on.
            let (free_tx, free_rx) = bounded::<Batch>(workers * (2 * settings.queue_batches + 2));
            let mut senders = Vec::with_capacity(workers);
            let mut handles = Vec::with_capacity(workers);
            for (i, gauges) in monitor.gauges.iter().enumerate() {
                let (tx, rx) = bounded::<Work>(settings.queue_batches);
                senders.push(tx);
                let worker =
                    Worker::new(Tracker::new(Arc::clone(engine), flows.clone()), gauges, events.join());
                let free = free_tx.clone();
                handles.push(
                    Builder::new()
                        .name(format!("exwatch-worker-{i}"))
                        .spawn_scoped(scope, move || (work(worker, rx, free), ()))?,
                );
            }
            drop(free_tx);

            let mut reader = Reader {
                senders,
                free: free_rx,
                events,
                batch_frames: settings.batch_frames,
                pending: (0..workers).map(|_| None).collect(),
                monitor,
                chunk: None,
                blocked: Duration::ZERO,
                last_ts: Ts(0),
                first_ts: Ts(0),
                file: 0,
                backlog: (0..workers).map(|_| VecDeque::new()).collect(),
                backlog_max: settings.queue_batches,
                decodes: settings.reader_decodes,
                decoded: 0,
                filter: match &settings.bpf {
                    Some(expression) => Some(Filter::new(expression).map_err(io::Error::other)?),
                    None => None,
                },
                filtered: 0,
            };
            let mut errors = Vec::new();
            let mut file_bytes = 0u64;
            let mut read_sources = 0;
            for source in sources {
                if monitor.stop.load(Ordering::Relaxed) {
                    break;
                }
                // A batch never mixes inputs: each flow learns the file it began in.
                reader.flush();
                reader.file = u16::try_from(read_sources).unwrap_or(u16::MAX);
                read_sources += 1;
                let outcome = source.and_then(|mut source| match source.as_savefile() {
                    Some(file) => reader.read(file, &mut file_bytes, progress),
                    None => reader.read(source.as_mut(), &mut file_bytes, progress),
                });
                if let Err(err) = outcome {
                    errors.push(err);
                }
            }
            reader.flush();
            reader.end_of_input();
            let read = started.elapsed().saturating_sub(reader.blocked);
            let read_decoded = reader.decoded;
            let filtered = reader.filtered;
            let span = super::Span::new();
            span.note(reader.first_ts, reader.last_ts);
            let last_events = reader.events.clone();
            drop(reader);

            let (Tally { mut counters, latency, busy: work }, _) = join_all(handles, engine)?;
            counters[Counter::BpfFiltered] += filtered;
            telemetry::fill_capture(&mut counters, Default::default(), monitor);
            telemetry::fill_engine(&mut counters, engine);
            if settings.eve_flows {
                last_events.send_lines(super::final_stats(engine, origin, &counters, &span));
            }
            drop(last_events);
            let written = writer::join(writer)?;
            counters.merge(&written.bounded);
            Ok(RunRecord {
                counters,
                latency,
                errors,
                wall: started.elapsed(),
                workers,
                file_bytes,
                busy: Busy { read, work, write: written.busy, read_decoded },
                reading: Reading::Stream { sources: read_sources },
                sockets: Vec::new(),
                eve_closed: written.closed,
            })
        })
    }
}

/// The reader's side: batches frames per worker.
struct Reader<'m> {
    senders: Vec<Sender<Work>>,
    free: Receiver<Batch>,
    /// For the run's final EVE `stats` event.
    events: Events,
    batch_frames: usize,
    pending: Vec<Option<Batch>>,
    monitor: &'m Monitor,
    /// Address of the chunk the pending batches' frames lie in.
    chunk: Option<usize>,
    /// Time spent waiting for a worker's queue to have room.
    blocked: Duration,
    /// The latest packet time read.
    last_ts: Ts,
    /// The first frame's time, for the run's final `stats` event.
    first_ts: Ts,
    /// The input being read (an index into the run's files).
    file: u16,
    /// Per worker, what waits for room in its queue, in order: up to
    /// `queue_batches` more, so that a reader ahead of its worker goes on reading, and
    /// decoding for it, rather than wait.
    backlog: Vec<VecDeque<Work>>,
    backlog_max: usize,
    /// When the reader decodes frames for the workers, and how many it did.
    decodes: ReaderDecodes,
    decoded: u64,
    /// `analyze --bpf`, and the frames it left out.
    filter: Option<Filter>,
    filtered: u64,
}

impl Reader<'_> {
    fn read<S: FrameSource + ?Sized>(
        &mut self,
        source: &mut S,
        bytes: &mut u64,
        progress: Progress<'_>,
    ) -> Result<(), CaptureError> {
        let workers = self.senders.len() as u128;
        let mut since_check = 0u32;
        loop {
            let frame = match source.next_frame() {
                Ok(Next::Frame(frame)) => frame,
                // Files and pipes wait for data rather than say they have none yet.
                Ok(Next::Idle) => continue,
                Ok(Next::End) => break,
                Err(err) => {
                    progress(*bytes);
                    return Err(err);
                }
            };
            *bytes += 16 + frame.data.len() as u64;
            if let Some(filter) = &mut self.filter {
                if !filter.matches(frame.link, frame.data) {
                    self.filtered += 1;
                    if self.filtered % u64::from(CHECK_FRAMES) == 0 {
                        progress(*bytes);
                    }
                    continue;
                }
            }
            let worker = match workers {
                1 => 0,
                // The high word of hash × workers: a worker index without a division.
                _ => ((u128::from(decode::route_hash(frame.link, frame.data)) * workers) >> 64) as usize,
            };
            let chunk = frame.chunk.map(|c| Arc::as_ptr(c) as usize);
            if chunk != self.chunk {
                // A new chunk of the file: send every batch holding the old one, so it
                // returns to the pool as soon as the workers are done with it.
                self.chunk = chunk;
                self.flush_and_tick();
            }
            self.last_ts = self.last_ts.max(frame.ts);
            if self.first_ts == Ts(0) {
                self.first_ts = frame.ts;
            }
            let limit = self.batch_frames;
            let batch = self.batch(worker);
            batch.push(&frame);
            if batch.is_full(limit) {
                self.send(worker);
            }
            since_check += 1;
            if since_check == CHECK_FRAMES {
                since_check = 0;
                progress(*bytes);
                if self.monitor.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        progress(*bytes);
        Ok(())
    }

    /// The worker's pending batch, taken from the returned ones or made anew.
    fn batch(&mut self, worker: usize) -> &mut Batch {
        let (free, frames, file) = (&self.free, self.batch_frames, self.file);
        self.pending[worker].get_or_insert_with(|| {
            let mut batch = match free.try_recv() {
                Ok(mut batch) => {
                    batch.clear();
                    batch
                }
                Err(_) => Batch::new(frames),
            };
            batch.file = file;
            batch
        })
    }

    fn send(&mut self, worker: usize) {
        let Some(mut batch) = self.pending[worker].take() else {
            return;
        };
        if self.decodes == ReaderDecodes::Always {
            batch.decode_while(|| true, &mut self.decoded);
        }
        self.backlog[worker].push_back(Work::Batch(batch));
        self.pump(worker);
    }

    /// Hands the worker's backlog to its queue, in order, for as long as there is room.
    /// When there is none, the worker is behind: rather than wait, the reader decodes
    /// the backlog's batches for it (long flows keep one worker busier than the reader;
    /// this shares the work out as the queue says it is needed, and never slows a reader
    /// whose workers keep up). It waits only with a full backlog decoded.
    fn pump(&mut self, worker: usize) {
        let sender = &self.senders[worker];
        let backlog = &mut self.backlog[worker];
        while let Some(work) = backlog.pop_front() {
            let work = match sender.try_send(work) {
                Ok(()) => continue,
                // The worker is gone, which joining it reports.
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(work)) => work,
            };
            backlog.push_front(work);
            if self.decodes == ReaderDecodes::WhenBehind {
                let undecoded = backlog.iter_mut().find_map(|work| match work {
                    Work::Batch(batch) if !batch.is_decoded() => Some(batch),
                    _ => None,
                });
                if let Some(batch) = undecoded {
                    batch.decode_while(|| sender.is_full(), &mut self.decoded);
                    continue;
                }
            }
            if backlog.len() <= self.backlog_max {
                return;
            }
            let waiting = Instant::now();
            if let Some(work) = backlog.pop_front() {
                let _ = sender.send(work);
            }
            self.blocked += waiting.elapsed();
        }
    }

    /// The input is over: every worker's clock moves to the last packet read, so that
    /// each judges what was still pending (a SYN timeout, say) at the capture's end, not
    /// at its own last packet, and any worker count gives the same events. Every backlog
    /// is handed over, waiting as long as it takes.
    fn end_of_input(&mut self) {
        self.flush_and_tick();
        for (sender, backlog) in self.senders.iter().zip(&mut self.backlog) {
            let waiting = Instant::now();
            for work in backlog.drain(..) {
                let _ = sender.send(work);
            }
            self.blocked += waiting.elapsed();
        }
    }

    /// Sends every pending batch and tells every worker the packet time reached (once
    /// per chunk of a file): a worker that got no frame for
    /// a while still passes that time, so the writer can release the other workers'
    /// alerts in order (`order.rs`) instead of holding them. Its timers run as its next
    /// frame would have run them. The time rides on a worker's pending batch when it has
    /// one: one hand-off instead of two, and nothing for the reader to wait on but the
    /// batch, which it decodes while it waits.
    fn flush_and_tick(&mut self) {
        let now = (self.last_ts != Ts(0)).then_some(self.last_ts);
        for worker in 0..self.pending.len() {
            match (&mut self.pending[worker], now) {
                (Some(batch), _) => {
                    batch.tick = now;
                    self.send(worker);
                }
                (None, Some(now)) => {
                    self.backlog[worker].push_back(Work::Tick(now));
                    self.pump(worker);
                }
                (None, None) => {}
            }
        }
    }

    fn flush(&mut self) {
        for worker in 0..self.pending.len() {
            self.send(worker);
        }
    }
}

/// One of the reader's workers: batches until the reader hangs up.
fn work(mut worker: Worker<'_>, queue: Receiver<Work>, free: Sender<Batch>) -> Tally {
    for work in queue {
        let started = Instant::now();
        match work {
            Work::Tick(now) => worker.tick(now),
            Work::Batch(mut batch) => {
                worker.set_file(batch.file);
                worker.decoded(batch.decoded());
                for (i, meta) in batch.frames.iter().enumerate().skip(batch.decoded_len) {
                    if let Some(ahead) = batch.frames.get(i + PREFETCH_AHEAD) {
                        prefetch::frame(batch.data(ahead));
                    }
                    worker.frame(meta.link, meta.ts, meta.wire_len, batch.data(meta));
                }
                // Release the file chunk now rather than when the batch is reused.
                batch.chunk = None;
                let tick = batch.tick;
                let _ = free.try_send(batch);
                worker.batch_done(tick);
            }
        }
        worker.busy += started.elapsed();
    }
    worker.finish()
}
