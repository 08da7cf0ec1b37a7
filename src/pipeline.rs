//! Threads and channels: one capture thread, N workers, one writer.
//!
//! The capture thread copies frames into batches, one pending batch per worker, and
//! picks the worker by a symmetric hash of the frame's addresses
//! ([`decode::route_hash`]). Channels are bounded. Offline, a full channel blocks the
//! reader: nothing is lost. Live, the reader never blocks the kernel ring: a batch that
//! does not fit is shed and counted. Workers own their flow table outright and send
//! formatted event lines to the writer. Batches go back to the reader on a return
//! channel, so the steady state allocates nothing per frame.
//!
//! Several files that are each a capture of their own go to [`Independent`] jobs
//! instead: each job reads a whole file, decoding and tracking every frame as it reads
//! it, and sends event lines to the same writer.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::capture::{CaptureError, CaptureStats, Chunk, Frame, FrameSource, Next, PcapFile, Savefile};
use crate::decode::{self, LinkType, Ts};
use crate::flow::{self, Event, Tracker};
use crate::output::eve;
use crate::policy::Engine;
use crate::telemetry::{Counters, Gauges, Latency, LATENCY_SAMPLE};

/// Settings of the pipeline's buffers.
#[derive(Clone, Debug)]
pub struct Options {
    /// Parser workers; each owns a flow table. By default one per core but the one the
    /// reader keeps busy: on 2 cores, `exwatch analyze` of the 1M-packet bench capture
    /// took 0.18 s with 1 worker beside the reader, 0.20-0.24 s with 2 sharing the cores
    /// with it. A flood of new flows, where the workers do most of the work, goes the
    /// other way (twice as fast with 2), which is why `live` takes one per core.
    pub workers: usize,
    /// Frames per batch sent to a worker.
    pub batch_frames: usize,
    /// Batches that may wait in each worker's channel.
    pub queue_batches: usize,
    /// Flow-table settings; `max_flows` is the total, split between workers.
    pub flows: flow::Settings,
    /// How capture files are read.
    pub file_reader: FileReader,
    /// Files analysed at once when several files are each a capture of their own.
    pub jobs: usize,
    /// Several files are consecutive pieces of one capture (rotated by `tcpdump -C/-G`):
    /// read them in order as one stream, so flows continue across file boundaries.
    pub continuous: bool,
}

impl Default for Options {
    fn default() -> Options {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Options {
            workers: cores.saturating_sub(1).max(1),
            batch_frames: 256,
            queue_batches: 8,
            flows: flow::Settings::default(),
            file_reader: FileReader::Native,
            jobs: cores,
            continuous: false,
        }
    }
}

/// The reader of capture files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileReader {
    /// exwatch's own pcap/pcapng reader ([`Savefile`]): faster, and reads pcapng files
    /// whose interfaces mix link types.
    Native,
    /// libpcap's reader.
    Libpcap,
}

impl FileReader {
    pub fn open(self, path: &Path) -> Result<Box<dyn FrameSource>, CaptureError> {
        Ok(match self {
            FileReader::Native => Box::new(Savefile::open(path)?),
            FileReader::Libpcap => Box::new(PcapFile::open(path)?),
        })
    }
}

/// Where EVE lines go.
#[derive(Clone, Debug)]
pub enum Sink {
    Stdout,
    /// A file, created anew (offline) or appended to (live, so a restart keeps the log).
    File {
        path: PathBuf,
        append: bool,
    },
    /// Discarded (benchmarks).
    Discard,
}

impl Sink {
    pub fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Sink::Stdout => Box::new(io::stdout()),
            Sink::File { path, append: false } => Box::new(File::create(path)?),
            Sink::File { path, append: true } => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
            Sink::Discard => Box::new(io::sink()),
        })
    }
}

/// What the pipeline shares with the outside while it runs: the stop and reopen
/// requests (signals), and the counters a metrics endpoint reads.
pub struct Monitor {
    pub stop: Arc<AtomicBool>,
    /// Set to ask the writer to reopen the EVE file (after log rotation).
    pub reopen: Arc<AtomicBool>,
    pub started: Instant,
    pub gauges: Vec<Arc<Gauges>>,
    /// Frames dropped because a worker's queue was full (live only).
    pub shed: AtomicU64,
    pub capture: Mutex<CaptureStats>,
}

impl Monitor {
    pub fn new(engine: &Engine, workers: usize) -> Monitor {
        let (rules, evidence) = (engine.policy.rules.len(), engine.policy.evidence.len());
        Monitor {
            stop: Arc::new(AtomicBool::new(false)),
            reopen: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            gauges: (0..workers.max(1)).map(|_| Arc::new(Gauges::new(rules, evidence))).collect(),
            shed: AtomicU64::new(0),
            capture: Mutex::new(CaptureStats::default()),
        }
    }

    pub fn capture_stats(&self) -> CaptureStats {
        self.capture.lock().map(|s| *s).unwrap_or_default()
    }
}

/// Frames for one worker: shared from a chunk of the file, or copied out of
/// the capture buffer (live capture, pipes).
struct Batch {
    window: Option<Chunk>,
    copied: Vec<u8>,
    frames: Vec<FrameMeta>,
}

#[derive(Clone, Copy)]
struct FrameMeta {
    link: LinkType,
    ts: Ts,
    wire_len: u32,
    /// Where the bytes are: in `window` (shared) or in `copied`.
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

/// Bytes of frame data a batch holds before it is sent, whatever its frame count.
const BATCH_BYTES: usize = 1 << 20;

/// Live: pending batches are flushed, and timers ticked, at most this often when the
/// capture goes quiet.
const IDLE_INTERVAL: Duration = Duration::from_millis(20);

/// Live: a partial batch waits at most this long (in packet time) before it is sent.
const LIVE_FLUSH_NS: u64 = 100_000_000;

impl Batch {
    fn new(frames: usize) -> Batch {
        Batch { window: None, copied: Vec::with_capacity(frames * 128), frames: Vec::with_capacity(frames) }
    }

    /// Adds a frame. The reader sends a batch before it would mix chunks.
    fn push(&mut self, frame: &Frame<'_>) {
        let (shared, start) = match frame.window {
            Some(window) => {
                self.window.get_or_insert_with(|| Arc::clone(window));
                (true, frame.data.as_ptr() as usize - window.as_ptr() as usize)
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
        let bytes = match (&self.window, meta.shared) {
            (Some(window), true) => &window[..],
            _ => &self.copied[..],
        };
        let start = meta.start as usize;
        bytes.get(start..start + meta.len as usize).unwrap_or_default()
    }

    fn is_full(&self, frames: usize) -> bool {
        self.frames.len() >= frames || self.copied.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.window = None;
        self.copied.clear();
        self.frames.clear();
    }
}

/// What a run produced, beyond the events already written.
#[derive(Debug)]
pub struct Report {
    pub counters: Counters,
    pub latency: Latency,
    /// Sources that could not be read, or were read only up to damage.
    pub errors: Vec<CaptureError>,
    pub wall: Duration,
    pub workers: usize,
    /// Bytes of capture read (record headers included).
    pub file_bytes: u64,
    /// Frames shed because a worker fell behind (live only).
    pub shed: u64,
    /// Kernel and interface counters of a live capture.
    pub capture: CaptureStats,
    /// Time each stage spent working (not waiting on a channel).
    pub busy: Busy,
    pub mode: Mode,
    pub reading: Reading,
}

/// How a run's input was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// One reader thread fed the workers, reading its sources one after the other as one
    /// stream: a live interface, a single file, or the pieces of one capture
    /// ([`Options::continuous`]).
    Stream { sources: usize },
    /// Each file was a capture of its own, read, decoded and tracked by one of `jobs`
    /// threads. [`Busy::work`] is then the jobs' time, reading included, and
    /// [`Busy::read`] is zero: reading is not timed apart from the rest.
    Independent { files: usize, jobs: usize },
}

/// Busy time per stage: the slowest stage bounds the throughput.
#[derive(Clone, Copy, Debug, Default)]
pub struct Busy {
    /// The reader: reading, routing and batching frames.
    pub read: Duration,
    /// The workers together: decoding, flow tables, policy, formatting events.
    pub work: Duration,
    /// The writer: formatting and writing event lines.
    pub write: Duration,
}

/// Called by the reader now and then with the bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Whether the reader may block on a full worker queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Files: block, lose nothing.
    Offline,
    /// An interface: never block the kernel ring; shed and count.
    Live,
}

/// Analyses capture files, writing events to `sink`. Several files are each a capture of
/// their own, analysed `options.jobs` at a time ([`Independent`]), unless
/// `options.continuous` says they are pieces of one capture; one file, or the pieces of
/// one capture, go through the reader and the workers as one stream ([`Run`]).
pub fn run_files(
    engine: Arc<Engine>,
    files: &[PathBuf],
    options: &Options,
    sink: &Sink,
    progress: Progress<'_>,
) -> io::Result<Report> {
    if files.len() > 1 && !options.continuous {
        let monitor = Monitor::new(&engine, options.jobs.clamp(1, files.len()));
        let independent = Independent { options, sink, monitor: &monitor };
        return independent.run(engine, files, sink.open()?, progress);
    }
    let monitor = Monitor::new(&engine, options.workers);
    let mut sources = files.iter().map(|path| options.file_reader.open(path));
    let run = Run { mode: Mode::Offline, options, sink, monitor: &monitor, stats_interval: None };
    run.run(engine, &mut sources, sink.open()?, progress)
}

/// Files analysed as captures of their own, one job thread per [`Monitor::gauges`].
///
/// A job takes the next file in argument order, reads it, decodes each frame and feeds
/// its own flow table in the same loop: a file is one job's from start to end, so its
/// packets stay in capture order without a router or channels, and all cores stay busy
/// as long as files remain. Each file also gets its own cross-flow tables
/// ([`Engine::split`]), so its findings are those it would have alone, whichever files
/// run beside it. Events go to the one writer thread.
pub struct Independent<'a> {
    /// `jobs` is ignored (the monitor's gauges say how many); `max_flows` is split
    /// between the jobs.
    pub options: &'a Options,
    /// Where events go; reopened on request.
    pub sink: &'a Sink,
    pub monitor: &'a Monitor,
}

/// Independent files: a job sends the events it found every this many frames (what a
/// worker handles in one batch), so the writer gets chunks rather than single lines.
const JOB_EVENT_FRAMES: u64 = 256;

/// Independent files: progress, gauges and the stop request are looked at every this
/// many frames.
const JOB_CHECK_FRAMES: u64 = 4096;

/// What the jobs share.
struct Jobs<'a> {
    engine: &'a Arc<Engine>,
    files: &'a [PathBuf],
    /// The index in `files` of the next file to take.
    next: AtomicUsize,
    /// Bytes read by all jobs (record headers included), for progress.
    bytes: AtomicU64,
    progress: Progress<'a>,
    stop: &'a AtomicBool,
    reader: FileReader,
    /// One job's share of the flow table.
    settings: flow::Settings,
    jobs: usize,
}

/// What one job found in all the files it read.
struct JobReport {
    counters: Counters,
    latency: Latency,
    busy: Duration,
    /// By index in the file list, so errors are reported in argument order.
    errors: Vec<(usize, CaptureError)>,
}

impl Independent<'_> {
    /// Analyses `files` until they are all read or `monitor.stop` is set, writing events
    /// to `out`. A file that cannot be opened, or is damaged, is reported in
    /// [`Report::errors`]; the other files are still analysed.
    pub fn run(
        &self,
        engine: Arc<Engine>,
        files: &[PathBuf],
        out: Box<dyn Write + Send>,
        progress: Progress<'_>,
    ) -> io::Result<Report> {
        let Independent { options, sink, monitor } = *self;
        let started = Instant::now();
        let jobs = monitor.gauges.len();
        let mut settings = options.flows.clone();
        settings.max_flows = (options.flows.max_flows / jobs).max(1);
        let shared = Jobs {
            engine: &engine,
            files,
            next: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            progress,
            stop: &monitor.stop,
            reader: options.file_reader,
            settings,
            jobs,
        };
        let (event_tx, event_rx) = bounded::<Output>(64);
        thread::scope(|scope| -> io::Result<Report> {
            let writer = thread::Builder::new()
                .name("exwatch-writer".into())
                .spawn_scoped(scope, || write_events(out, sink, &monitor.reopen, event_rx, &engine))?;
            let mut handles = Vec::with_capacity(jobs);
            for (i, gauges) in monitor.gauges.iter().enumerate() {
                let (shared, events) = (&shared, event_tx.clone());
                handles.push(
                    thread::Builder::new()
                        .name(format!("exwatch-job-{i}"))
                        .spawn_scoped(scope, move || shared.job(gauges, &events))?,
                );
            }
            drop(event_tx);
            let mut counters = Counters::new(engine.policy.rules.len(), engine.policy.evidence.len());
            let mut latency = Latency::default();
            let mut busy = Busy::default();
            let mut errors = Vec::new();
            for handle in handles {
                let job = handle.join().map_err(|_| io::Error::other("a job thread panicked"))?;
                counters.merge(&job.counters);
                latency.merge(&job.latency);
                busy.work += job.busy;
                errors.extend(job.errors);
            }
            errors.sort_by_key(|&(index, _)| index);
            busy.write = writer.join().map_err(|_| io::Error::other("the writer thread panicked"))??;
            Ok(Report {
                counters,
                latency,
                errors: errors.into_iter().map(|(_, err)| err).collect(),
                wall: started.elapsed(),
                workers: jobs,
                file_bytes: shared.bytes.load(Ordering::Relaxed),
                shed: 0,
                capture: CaptureStats::default(),
                busy,
                mode: Mode::Offline,
                reading: Reading::Independent { files: files.len(), jobs },
            })
        })
    }
}

impl Jobs<'_> {
    /// One job: files from the shared queue until it is empty or a stop is requested.
    fn job(&self, gauges: &Gauges, events: &Sender<Output>) -> JobReport {
        let started = Instant::now();
        let policy = &self.engine.policy;
        let mut done = Counters::new(policy.rules.len(), policy.evidence.len());
        let mut latency = Latency::default();
        let mut errors = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = self.files.get(index) else {
                break;
            };
            if let Err(err) = self.file(path, &mut done, &mut latency, gauges, events) {
                errors.push((index, err));
            }
            gauges.publish(&done, 0);
            gauges.publish_latency(&latency);
        }
        JobReport { counters: done, latency, busy: started.elapsed(), errors }
    }

    /// Analyses one file with a flow table and cross-flow tables of its own, adding
    /// what it counted to `done`. Damage ends the file: its flows are ended and every
    /// event found before it is kept.
    fn file(
        &self,
        path: &Path,
        done: &mut Counters,
        latency: &mut Latency,
        gauges: &Gauges,
        events: &Sender<Output>,
    ) -> Result<(), CaptureError> {
        let mut source = self.reader.open(path)?;
        let engine = Arc::new(self.engine.split(self.jobs));
        let mut tracker = Tracker::new(Arc::clone(&engine), self.settings.clone());
        let read = self.read(source.as_mut(), &mut tracker, done, latency, gauges, events);
        tracker.finish();
        send_events(&mut tracker, events);
        done.merge(&tracker.counters);
        let dropped = engine.smtp_senders_dropped.load(Ordering::Relaxed);
        self.engine.smtp_senders_dropped.fetch_add(dropped, Ordering::Relaxed);
        read
    }

    /// Read, decode, track: one frame at a time, in capture order.
    fn read(
        &self,
        source: &mut dyn FrameSource,
        tracker: &mut Tracker,
        done: &Counters,
        latency: &mut Latency,
        gauges: &Gauges,
        events: &Sender<Output>,
    ) -> Result<(), CaptureError> {
        let mut unreported = 0u64;
        let outcome = loop {
            let frame = match source.next_frame() {
                Ok(Next::Frame(frame)) => frame,
                // Files are never idle; should one be, it is not waited on once stopped.
                Ok(Next::Idle) if !self.stop.load(Ordering::Relaxed) => continue,
                Ok(Next::Idle | Next::End) => break Ok(()),
                Err(err) => break Err(err),
            };
            unreported += 16 + frame.data.len() as u64;
            let counters = &mut tracker.counters;
            counters.frames += 1;
            counters.frame_bytes += u64::from(frame.wire_len);
            let frames = counters.frames;
            if frames % LATENCY_SAMPLE == 0 {
                let t0 = Instant::now();
                let decoded = decode::decode(frame.link, frame.ts, frame.wire_len, frame.data);
                let t1 = Instant::now();
                handle(tracker, decoded);
                latency.decode.saturating_record((t1 - t0).as_nanos() as u64);
                latency.flow.saturating_record(t1.elapsed().as_nanos() as u64);
            } else {
                handle(tracker, decode::decode(frame.link, frame.ts, frame.wire_len, frame.data));
            }
            if frames % JOB_EVENT_FRAMES == 0 {
                send_events(tracker, events);
                // As often as a worker publishes them: every so many batches' worth.
                if frames % (JOB_EVENT_FRAMES * LATENCY_PUBLISH_BATCHES) == 0 {
                    gauges.publish_latency(latency);
                }
            }
            if frames % JOB_CHECK_FRAMES == 0 {
                self.report_progress(std::mem::take(&mut unreported));
                gauges.publish_sum(&[done, &tracker.counters], tracker.active_flows());
                if self.stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
            }
        };
        self.report_progress(unreported);
        outcome
    }

    fn report_progress(&self, bytes: u64) {
        (self.progress)(self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes);
    }
}

/// How to run the pipeline.
pub struct Run<'a> {
    pub mode: Mode,
    pub options: &'a Options,
    /// Where events go; reopened on request.
    pub sink: &'a Sink,
    pub monitor: &'a Monitor,
    /// Write an EVE `stats` event this often (wall time).
    pub stats_interval: Option<Duration>,
}

impl Run<'_> {
    /// Runs the pipeline over `sources` (read one after the other) until they end or
    /// `monitor.stop` is set, writing events to `out` (the sink, already open: a live
    /// capture opens it before dropping privileges).
    pub fn run(
        &self,
        engine: Arc<Engine>,
        sources: &mut dyn Iterator<Item = Result<Box<dyn FrameSource>, CaptureError>>,
        out: Box<dyn Write + Send>,
        progress: Progress<'_>,
    ) -> io::Result<Report> {
        let Run { mode, options, sink, monitor, stats_interval } = *self;
        let started = Instant::now();
        let workers = monitor.gauges.len();
        let (event_tx, event_rx) = bounded::<Output>(64);
        thread::scope(|scope| -> io::Result<Report> {
            let writer = thread::Builder::new()
                .name("exwatch-writer".into())
                .spawn_scoped(scope, || write_events(out, sink, &monitor.reopen, event_rx, &engine))?;
            let (free_tx, free_rx) = bounded::<Batch>(workers * (options.queue_batches + 2));
            let mut senders = Vec::with_capacity(workers);
            let mut handles = Vec::with_capacity(workers);
            let mut tracker_settings = options.flows.clone();
            tracker_settings.max_flows = (options.flows.max_flows / workers).max(1);
            for (i, gauges) in monitor.gauges.iter().enumerate() {
                let (tx, rx) = bounded::<Work>(options.queue_batches);
                senders.push(tx);
                let tracker = Tracker::new(Arc::clone(&engine), tracker_settings.clone());
                let events = event_tx.clone();
                let free = free_tx.clone();
                let gauges = Arc::clone(gauges);
                handles.push(
                    thread::Builder::new()
                        .name(format!("exwatch-worker-{i}"))
                        .spawn_scoped(scope, move || work(tracker, &gauges, rx, free, events))?,
                );
            }
            drop(free_tx);

            let mut reader = Reader {
                events: event_tx,
                stats_interval,
                last_stats: Instant::now(),
                engine: &engine,
                senders,
                free: free_rx,
                batch_frames: options.batch_frames,
                pending: Vec::new(),
                mode,
                monitor,
                last_flush: Ts(0),
                window: None,
                blocked: Duration::ZERO,
                last_idle: Instant::now(),
            };
            let mut errors = Vec::new();
            let mut file_bytes = 0u64;
            let mut capture = CaptureStats::default();
            let mut read_sources = 0;
            for source in sources {
                if monitor.stop.load(Ordering::Relaxed) {
                    break;
                }
                read_sources += 1;
                let outcome = source.and_then(|mut source| {
                    let read = reader.read(source.as_mut(), &mut file_bytes, progress);
                    capture = source.stats().unwrap_or(capture);
                    read
                });
                if let Err(err) = outcome {
                    errors.push(err);
                }
            }
            reader.flush();
            let read_busy = started.elapsed().saturating_sub(reader.blocked);
            drop(reader);

            let mut counters = Counters::new(engine.policy.rules.len(), engine.policy.evidence.len());
            let mut latency = Latency::default();
            let mut busy = Busy { read: read_busy, ..Busy::default() };
            for handle in handles {
                let (c, l, work) = handle.join().map_err(|_| io::Error::other("a worker thread panicked"))?;
                counters.merge(&c);
                latency.merge(&l);
                busy.work += work;
            }
            busy.write = writer.join().map_err(|_| io::Error::other("the writer thread panicked"))??;
            Ok(Report {
                counters,
                latency,
                errors,
                wall: started.elapsed(),
                workers,
                file_bytes,
                shed: monitor.shed.load(Ordering::Relaxed),
                capture,
                busy,
                mode,
                reading: Reading::Stream { sources: read_sources },
            })
        })
    }
}

/// The capture side: batches frames per worker.
struct Reader<'m> {
    senders: Vec<Sender<Work>>,
    /// For EVE `stats` events.
    events: Sender<Output>,
    stats_interval: Option<Duration>,
    last_stats: Instant,
    engine: &'m Engine,
    free: Receiver<Batch>,
    batch_frames: usize,
    pending: Vec<Option<Batch>>,
    mode: Mode,
    monitor: &'m Monitor,
    /// Packet time of the last live flush.
    last_flush: Ts,
    /// Address of the chunk the pending batches' frames lie in.
    window: Option<usize>,
    /// Time spent waiting for a worker's queue to have room.
    blocked: Duration,
    /// When the last quiet period was handled.
    last_idle: Instant,
}

impl Reader<'_> {
    fn read(
        &mut self,
        source: &mut dyn FrameSource,
        bytes: &mut u64,
        progress: Progress<'_>,
    ) -> Result<(), CaptureError> {
        if self.pending.is_empty() {
            self.pending = (0..self.senders.len()).map(|_| None).collect();
        }
        let workers = self.senders.len() as u128;
        let mut since_check = 0u32;
        loop {
            let frame = match source.next_frame() {
                Ok(Next::Frame(frame)) => frame,
                Ok(Next::Idle) => {
                    self.idle(source);
                    if self.monitor.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                Ok(Next::End) => break,
                Err(err) => {
                    progress(*bytes);
                    return Err(err);
                }
            };
            *bytes += 16 + frame.data.len() as u64;
            let worker = match workers {
                1 => 0,
                // The high word of hash × workers: a worker index without a division.
                _ => ((u128::from(decode::route_hash(frame.link, frame.data)) * workers) >> 64) as usize,
            };
            let window = frame.window.map(|w| Arc::as_ptr(w) as usize);
            if window != self.window {
                // A new chunk of the file: send every batch holding the old one, so it
                // returns to the pool as soon as the workers are done with it.
                self.window = window;
                self.flush();
            }
            let limit = self.batch_frames;
            let batch = self.batch(worker);
            batch.push(&frame);
            if batch.is_full(limit) {
                self.send(worker);
            }
            if self.mode == Mode::Live && frame.ts.0.saturating_sub(self.last_flush.0) >= LIVE_FLUSH_NS {
                self.last_flush = frame.ts;
                self.flush();
            }
            since_check += 1;
            if since_check == 4096 {
                since_check = 0;
                progress(*bytes);
                self.maybe_stats();
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
        let (free, frames) = (&self.free, self.batch_frames);
        self.pending[worker].get_or_insert_with(|| match free.try_recv() {
            Ok(mut batch) => {
                batch.clear();
                batch
            }
            Err(_) => Batch::new(frames),
        })
    }

    /// Nothing arrived for a read timeout: send what is pending, let the workers' timers
    /// run on the clock, and refresh the capture counters.
    fn idle(&mut self, source: &mut dyn FrameSource) {
        // At moderate rates the ring drains between packets and the source says Idle
        // all the time; flushing tiny batches and ticking on each would fill the worker
        // queues and shed frames.
        if self.last_idle.elapsed() < IDLE_INTERVAL {
            return;
        }
        self.last_idle = Instant::now();
        self.flush();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        for sender in &self.senders {
            let _ = sender.try_send(Work::Tick(Ts(now)));
        }
        if let (Some(stats), Ok(mut shared)) = (source.stats(), self.monitor.capture.lock()) {
            *shared = stats;
        }
        self.maybe_stats();
    }

    /// Writes an EVE `stats` event when the interval has passed.
    fn maybe_stats(&mut self) {
        let Some(interval) = self.stats_interval else {
            return;
        };
        if self.last_stats.elapsed() < interval {
            return;
        }
        self.last_stats = Instant::now();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let mut out = Vec::new();
        eve::write_stats(&mut out, Ts(now), self.engine, self.monitor);
        let _ = self.events.send(Output::Lines(out));
    }

    fn send(&mut self, worker: usize) {
        let Some(batch) = self.pending[worker].take() else {
            return;
        };
        match self.mode {
            // A send fails only if the worker is gone, which join reports.
            Mode::Offline => {
                if let Err(TrySendError::Full(work)) = self.senders[worker].try_send(Work::Batch(batch)) {
                    let waiting = Instant::now();
                    let _ = self.senders[worker].send(work);
                    self.blocked += waiting.elapsed();
                }
            }
            Mode::Live => {
                if let Err(TrySendError::Full(Work::Batch(mut batch))) =
                    self.senders[worker].try_send(Work::Batch(batch))
                {
                    self.monitor.shed.fetch_add(batch.frames.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    self.pending[worker] = Some(batch);
                }
            }
        }
    }

    fn flush(&mut self) {
        for worker in 0..self.pending.len() {
            self.send(worker);
        }
    }
}

/// A worker asks for the headers of the frame this many places ahead while it handles
/// the current one: they were written by the kernel's copy on the reader's core and
/// would otherwise stall the decoder on every frame. Measured on the 1M-packet bench
/// capture with 1 worker: busy 0.176 s without, 0.165 s with 2 ahead (4 ahead varied).
const PREFETCH_AHEAD: usize = 2;

/// Hints the CPU to bring the first cache line of `bytes` (where the headers are) closer.
fn prefetch(bytes: &[u8]) {
    // SAFETY: SSE is part of x86_64's baseline, and a prefetch only hints the cache: it
    // reads nothing the program sees and cannot fault, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(bytes.as_ptr().cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Latency histograms are published to the metrics endpoint every this many batches.
const LATENCY_PUBLISH_BATCHES: u64 = 64;

fn work(
    mut tracker: Tracker,
    gauges: &Gauges,
    queue: Receiver<Work>,
    free: Sender<Batch>,
    events: Sender<Output>,
) -> (Counters, Latency, Duration) {
    let mut latency = Latency::default();
    let mut seen = 0u64;
    let mut batches = 0u64;
    let mut busy = Duration::ZERO;
    for work in queue {
        let started = Instant::now();
        let batch = match work {
            Work::Batch(batch) => batch,
            Work::Tick(now) => {
                tracker.advance(now);
                send_events(&mut tracker, &events);
                gauges.publish(&tracker.counters, tracker.active_flows());
                busy += started.elapsed();
                continue;
            }
        };
        for (i, meta) in batch.frames.iter().enumerate() {
            if let Some(ahead) = batch.frames.get(i + PREFETCH_AHEAD) {
                prefetch(batch.data(ahead));
            }
            let data = batch.data(meta);
            tracker.counters.frames += 1;
            tracker.counters.frame_bytes += u64::from(meta.wire_len);
            seen += 1;
            if seen % LATENCY_SAMPLE == 0 {
                let t0 = Instant::now();
                let decoded = decode::decode(meta.link, meta.ts, meta.wire_len, data);
                let t1 = Instant::now();
                handle(&mut tracker, decoded);
                latency.decode.saturating_record((t1 - t0).as_nanos() as u64);
                latency.flow.saturating_record(t1.elapsed().as_nanos() as u64);
            } else {
                handle(&mut tracker, decode::decode(meta.link, meta.ts, meta.wire_len, data));
            }
        }
        let mut batch = batch;
        // Release the file chunk now rather than when the batch is reused.
        batch.window = None;
        let _ = free.try_send(batch);
        send_events(&mut tracker, &events);
        gauges.publish(&tracker.counters, tracker.active_flows());
        batches += 1;
        if batches % LATENCY_PUBLISH_BATCHES == 0 {
            gauges.publish_latency(&latency);
        }
        busy += started.elapsed();
    }
    let started = Instant::now();
    tracker.finish();
    send_events(&mut tracker, &events);
    gauges.publish(&tracker.counters, tracker.active_flows());
    gauges.publish_latency(&latency);
    busy += started.elapsed();
    (tracker.counters.clone(), latency, busy)
}

fn handle(tracker: &mut Tracker, decoded: Result<decode::Packet, decode::Skip>) {
    match decoded {
        Ok(packet) => {
            tracker.counters.decoded += 1;
            tracker.packet(&packet);
        }
        Err(skip) => tracker.counters.skipped[skip.index()] += 1,
    }
}

/// What the writer thread is sent.
enum Output {
    /// Events to format: formatting an alert takes tens of thousands of instructions,
    /// done on the writer thread, which is otherwise idle, rather than on a worker.
    Events(Vec<Event>),
    /// Lines formatted already (EVE `stats`).
    Lines(Vec<u8>),
}

fn send_events(tracker: &mut Tracker, events: &Sender<Output>) {
    let found: Vec<Event> = tracker.drain_events().collect();
    if !found.is_empty() {
        let _ = events.send(Output::Events(found));
    }
}

/// Formats and writes events as they come, flushing whenever the queue runs dry so a
/// live finding reaches the log at once; reopens the sink when asked (SIGHUP).
fn write_events(
    out: Box<dyn Write + Send>,
    sink: &Sink,
    reopen: &AtomicBool,
    chunks: Receiver<Output>,
    engine: &Engine,
) -> io::Result<Duration> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut lines = Vec::new();
    let mut busy = Duration::ZERO;
    for chunk in chunks.iter() {
        let started = Instant::now();
        if reopen.swap(false, Ordering::Relaxed) {
            out.flush()?;
            out = io::BufWriter::with_capacity(1 << 16, sink.open()?);
        }
        match chunk {
            Output::Events(events) => {
                lines.clear();
                for event in events {
                    format_event(&mut lines, engine, &event);
                }
                out.write_all(&lines)?;
            }
            Output::Lines(formatted) => out.write_all(&formatted)?,
        }
        if chunks.is_empty() {
            out.flush()?;
        }
        busy += started.elapsed();
    }
    out.flush()?;
    Ok(busy)
}

fn format_event(out: &mut Vec<u8>, engine: &Engine, event: &Event) {
    match *event {
        Event::Alert { ts, flow, verdict, rule, evidence, confidence } => {
            eve::write_alert(out, engine, ts, &flow, (verdict, confidence), rule, (evidence, None))
        }
        Event::Flow { flow } => eve::write_flow(out, engine, &flow),
    }
}
