//! A live capture: one or more capture threads, each reading its own socket and running
//! its worker inline, as Suricata's "workers" run mode does.
//!
//! ```text
//!  socket 0 ──► capture thread 0: read → decode → flow table → policy ──┐
//!  socket 1 ──► capture thread 1: read → decode → flow table → policy ──┼──► writer ──► EVE log
//!  ...          (sockets of one fanout group, split by exwatch's hash)  ┘
//! ```
//!
//! The kernel's ring is the only buffer between the wire and the flow table: a frame is
//! decoded where libpcap's ring holds it, never copied, and never queued again behind a
//! worker (a queue that fills sheds frames the ring still had room for, and waking a
//! worker for every batch costs futex calls and yields on the one core a sensor is often
//! pinned to). While a thread judges a burst, frames wait in the ring; only when the ring
//! itself overflows does the kernel drop them, and it counts them. With several
//! sockets, the fanout hash (`capture::fanout`) sends both directions of a flow, its
//! fragments and the ICMP errors quoting it to one socket, so each thread's flow table
//! sees whole flows.
//!
//! The calling thread keeps house meanwhile: `stats` events on their interval, and the
//! capture state `/healthz` reports.

use std::io::{self, Write as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, Builder};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::worker::Worker;
use super::writer::{self, Writer};
use super::{Outputs, Settings, Tally};
use crate::capture::{CaptureError, CaptureStats, FrameSource, Next};
use crate::flow::Tracker;
use crate::output::{eve, EveOut, Sink};
use crate::policy::Engine;
use crate::telemetry::{self, Busy, CaptureState, Monitor, Reading, RunRecord};
use crate::time::Ts;

/// Frames handled before the worker's events (if any) go to the writer and its counters
/// are published: what a batch of the offline reader holds.
const BATCH_FRAMES: u32 = 256;

/// A quiet capture still sends its events and runs its timers (on the wall clock) at
/// most this often.
const IDLE_INTERVAL: Duration = Duration::from_millis(20);

/// While frames come, the worker's clock (packet time) moves its timers on at least this
/// often.
const TICK_NS: u64 = 100_000_000;

/// The kernel's drop counters are read this often (wall time), not at every poll:
/// libpcap reads them from the socket and from files in sysfs.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Once asked to stop, frames still go on being read for this long. The kernel hands
/// frames over a block at a time, a partly filled block once it is 50 ms old
/// (`LiveSettings::timeout_ms`): what arrived just before the stop is in such a block.
const DRAIN: Duration = Duration::from_millis(150);

/// The stop request is looked at every this many frames while frames come.
const CHECK_FRAMES: u32 = 4096;

/// How often the calling thread looks whether the capture threads are done.
const HOUSEKEEPING: Duration = Duration::from_millis(50);

/// What one capture thread hands back.
struct Capture {
    tally: Tally,
    error: Option<CaptureError>,
    stats: CaptureStats,
    /// Wall time of its first and last frame.
    window: Option<(Instant, Instant)>,
}

/// Watches the `sockets` (one capture thread each; several are one fanout group) until
/// one fails or `monitor.stop` is set, writing events to `out` (the sink, opened already:
/// a live capture opens it before dropping privileges) and reopening the sink when
/// `monitor.reopen` is set. [`Monitor::gauges`] has one entry per socket. An EVE `stats`
/// event every `stats_interval`, if set, to the EVE log or to `stats_log`
/// (`--stats-log`, open already).
pub fn live(
    engine: &Arc<Engine>,
    sockets: Vec<Box<dyn FrameSource + Send>>,
    settings: &Settings,
    (sink, out): (&Sink, EveOut),
    monitor: &Monitor,
    (stats_interval, stats_log): (Option<Duration>, Option<&Mutex<EveOut>>),
) -> io::Result<RunRecord> {
    let started = Instant::now();
    let origin = settings.origin(&[]);
    let threads = sockets.len();
    let flows = settings.flows_share(threads, None);
    thread::scope(|scope| -> io::Result<RunRecord> {
        let writer = Writer::of_run((Outputs::eve(sink), out), settings, (monitor, engine, &origin), true);
        let (events, writer) = writer::spawn(scope, writer)?;
        let queue = monitor.register_queue("events", Box::new(events.depth()));
        let mut handles = Vec::with_capacity(threads);
        for (socket, source) in sockets.into_iter().enumerate() {
            let tracker = Tracker::new(Arc::clone(engine), flows.clone());
            let worker = Worker::new(tracker, &monitor.gauges[socket], events.join());
            handles.push(
                Builder::new()
                    .name(format!("exwatch-capture-{socket}"))
                    .spawn_scoped(scope, move || capture(source, worker, monitor, socket))?,
            );
        }
        monitor.set_capture_state(CaptureState::Running);
        let mut last_stats = Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            thread::sleep(HOUSEKEEPING);
            match stats_interval {
                Some(interval) if last_stats.elapsed() >= interval => {
                    last_stats = Instant::now();
                    write_stats(monitor, engine, &origin, &events, stats_log);
                }
                _ => {}
            }
        }
        let mut tallies = Vec::with_capacity(threads);
        let (mut errors, mut sockets, mut window) = (Vec::new(), Vec::with_capacity(threads), None);
        for handle in handles {
            let done = handle.join().map_err(|_| io::Error::other("a capture thread panicked"))?;
            errors.extend(done.error);
            sockets.push(done.stats);
            window = match (window, done.window) {
                (Some((a, b)), Some((c, d))) => Some((Instant::min(a, c), Instant::max(b, d))),
                (w, None) | (None, w) => w,
            };
            tallies.push(done.tally);
        }
        // What `/healthz` says while the writer drains.
        monitor.set_capture_state(match errors.first() {
            Some(err) => CaptureState::Failed(err.to_string()),
            None => CaptureState::Stopped,
        });
        let Tally { mut counters, latency, busy: work } = super::sum(tallies, engine);
        let capture = sockets.iter().fold(CaptureStats::default(), |a, b| a.plus(*b));
        telemetry::fill_capture(&mut counters, capture, monitor);
        telemetry::fill_engine(&mut counters, engine);
        drop((events, queue));
        let written = writer::join(writer)?;
        counters.merge(&written.bounded);
        Ok(RunRecord {
            counters,
            latency,
            errors,
            wall: started.elapsed(),
            workers: threads,
            file_bytes: 0,
            busy: Busy { read: Duration::ZERO, work, write: written.busy, read_decoded: 0 },
            reading: Reading::Live { window: window.map_or(Duration::ZERO, |(first, last)| last - first) },
            sockets,
            eve_closed: written.closed,
        })
    })
}

/// One capture thread: frames from `source` to its worker, until the source fails or
/// the stop request and the drain after it. Its busy time is the thread's CPU time, so
/// waiting on a quiet link is not counted as work.
fn capture(
    mut source: Box<dyn FrameSource + Send>,
    mut worker: Worker<'_>,
    monitor: &Monitor,
    socket: usize,
) -> Capture {
    let cpu_at_start = thread_cpu();
    let (mut in_batch, mut since_check) = (0u32, 0u32);
    let mut last_tick = Ts(0);
    let (mut last_idle, mut last_stats) = (Instant::now(), Instant::now());
    let mut stopping: Option<Instant> = None;
    // Wall time of the first frame, and of the last check that followed frames.
    let (mut first, mut last) = (None, Instant::now());
    let mut frame_seen = false;
    let error = loop {
        match source.next_frame() {
            Ok(Next::Frame(frame)) => {
                worker.frame(frame.link, frame.ts, frame.wire_len, frame.data);
                if first.is_none() {
                    first = Some(Instant::now());
                }
                frame_seen = true;
                in_batch += 1;
                let tick = frame.ts.0.saturating_sub(last_tick.0) >= TICK_NS;
                if tick {
                    last_tick = frame.ts;
                }
                if tick {
                    in_batch = 0;
                    worker.tick(frame.ts);
                } else if in_batch == BATCH_FRAMES {
                    in_batch = 0;
                    worker.frames_done();
                }
                since_check += 1;
                if since_check < CHECK_FRAMES {
                    continue;
                }
                since_check = 0;
            }
            Ok(Next::Idle) => {
                if last_idle.elapsed() >= IDLE_INTERVAL {
                    last_idle = Instant::now();
                    worker.tick(wall_clock());
                    in_batch = 0;
                }
            }
            Ok(Next::End) => break None,
            Err(err) => break Some(err),
        }
        // Here at most once every CHECK_FRAMES frames, or when the link is quiet.
        if frame_seen {
            frame_seen = false;
            last = Instant::now();
        }
        if last_stats.elapsed() >= STATS_INTERVAL {
            last_stats = Instant::now();
            monitor.set_socket_stats(socket, source.stats());
        }
        if stopped(monitor, &mut stopping) {
            break None;
        }
    };
    if error.is_some() {
        // One socket failing ends the capture: the others would judge half the flows.
        monitor.stop.store(true, Ordering::Relaxed);
    }
    let stats = source.stats().unwrap_or_default();
    monitor.set_socket_stats(socket, Some(stats));
    let mut tally = worker.finish();
    tally.busy = thread_cpu().saturating_sub(cpu_at_start);
    Capture { tally, error, stats, window: first.map(|first| (first, last.max(first))) }
}

/// Whether to stop reading: asked to, and the drain after the request is over.
fn stopped(monitor: &Monitor, stopping: &mut Option<Instant>) -> bool {
    monitor.stop.load(Ordering::Relaxed) && stopping.get_or_insert_with(Instant::now).elapsed() >= DRAIN
}

/// Writes an EVE `stats` event now, to the EVE log or to the stats log.
fn write_stats(
    monitor: &Monitor,
    engine: &Engine,
    origin: &eve::Origin,
    events: &writer::Events,
    stats_log: Option<&Mutex<EveOut>>,
) {
    let mut out = Vec::new();
    let snapshot = monitor.snapshot(engine);
    eve::write_stats_from(&mut out, wall_clock(), (engine, origin), &snapshot);
    match stats_log.map(|log| log.lock().map(|mut log| log.write_all(&out))) {
        None => events.send_lines(out),
        Some(Ok(Ok(()))) => {}
        // Not written: counted with the EVE log's, and tried again next interval.
        Some(_) => {
            monitor.unwritten.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The wall clock as a timestamp: what timers run on while a live capture is quiet.
fn wall_clock() -> Ts {
    Ts(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64))
}

/// The CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}
