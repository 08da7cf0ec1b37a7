//! The threads and channels that run the stages: one reader, N workers, one writer
//! (see the diagram in the crate's documentation).
//!
//! - `stream.rs`: one reader thread batches frames to the workers, picking a worker by a
//!   symmetric hash of the frame's addresses; for one file, or the pieces of one capture
//!   read as a stream.
//! - `jobs.rs`: several files, each a capture of its own, each read, decoded and tracked
//!   by one job thread.
//! - `live.rs`: a live interface: capture threads, one per socket of a fanout group,
//!   each running its worker inline.
//! - `worker.rs`: the one loop that decodes a frame, feeds the flow table and hands the
//!   events on, used by all three.
//! - `writer.rs`: the thread that formats events and writes them to the sink.
//! - `order.rs`: the writer's reorder buffer, which gives the alert bound every stream's
//!   alerts in one canonical order (the determinism argument is there).
//!
//! This module wires the stages; it never decodes, judges or formats by itself.

mod jobs;
mod live;
mod order;
mod stream;
mod worker;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, ScopedJoinHandle};
use std::time::Duration;

use crate::capture::{CaptureError, FrameSource, PcapFile, Savefile};
use crate::counters::Counters;
use crate::flow;
use crate::output::{bound, eve, Sink};
use crate::policy::Engine;
use crate::telemetry::{Latency, Monitor, RunRecord};

pub use live::live;

/// Settings of the pipeline's threads and buffers.
#[derive(Clone, Debug)]
pub struct Settings {
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
    /// Flow-table settings; `max_flows` is the total, split between workers (or jobs).
    /// Its `flow_events` is set for a run by [`Settings::eve_flows`] and the observer.
    pub flows: flow::Settings,
    /// Write an EVE `flow` event per flow when it ends (`--flows`).
    pub eve_flows: bool,
    /// Of those, only the flows the article covers (`--flows=in-scope`): not the flows
    /// whose verdict is `out_of_scope`.
    pub flows_in_scope: bool,
    /// How capture files are read.
    pub file_reader: FileReader,
    /// `analyze --bpf`: the frames of capture files that pass this expression only.
    pub bpf: Option<String>,
    /// When the reader decodes frames itself rather than leave them to the workers.
    pub reader_decodes: ReaderDecodes,
    /// Files analysed at once when several files are each a capture of their own.
    pub jobs: usize,
    /// Several files are consecutive pieces of one capture (rotated by `tcpdump -C/-G`):
    /// read them in order as one stream, so flows continue across file boundaries.
    pub continuous: bool,
    /// The alert bound (`output::bound`); `None` writes every alert.
    pub bound: Option<bound::Settings>,
    /// The sensor's name, EVE's `host` (`--sensor-name`); `None` writes no `host`.
    pub sensor_name: Option<String>,
    /// A live capture's interface, EVE's `in_iface`.
    pub interface: Option<String>,
    /// Where the writer also hands the lines it writes (`--redis`).
    pub publish: Option<crate::output::redis::Tee>,
}

impl Default for Settings {
    fn default() -> Settings {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            workers: cores.saturating_sub(1).max(1),
            batch_frames: 256,
            queue_batches: 8,
            flows: flow::Settings::default(),
            eve_flows: false,
            flows_in_scope: false,
            file_reader: FileReader::Native,
            bpf: None,
            reader_decodes: ReaderDecodes::WhenBehind,
            jobs: cores,
            continuous: false,
            bound: Some(bound::Settings::default()),
            sensor_name: None,
            interface: None,
            publish: None,
        }
    }
}

impl Settings {
    /// One of `parts` flow tables' share of the flow settings; ended flows become
    /// events when the EVE log or an observer wants them.
    fn flows_share(&self, parts: usize, observer: Option<&(dyn Observer + Send)>) -> flow::Settings {
        let mut share = self.flows.clone();
        share.max_flows = (self.flows.max_flows / parts.max(1)).max(1);
        // Fragments go to their flow's table, so the fragment table is shared out alike:
        // a worker's own full one multiplied the run's memory by the workers.
        share.max_fragments = (self.flows.max_fragments / parts.max(1)).max(1);
        share.flow_events = self.eve_flows || observer.is_some();
        share.unanswered_flow_events = self.eve_flows || observer.is_some_and(|o| o.unanswered_flows());
        share
    }

    /// Where a run over `files` (none: a live capture) sees its events, for EVE.
    fn origin(&self, files: &[PathBuf]) -> eve::Origin {
        eve::Origin {
            host: self.sensor_name.clone().filter(|name| !name.is_empty()),
            in_iface: self.interface.clone(),
            files: files.iter().map(|path| path.display().to_string()).collect(),
            flow_log: match (self.eve_flows, self.flows_in_scope) {
                (false, _) => eve::FlowLog::Off,
                (true, false) => eve::FlowLog::All,
                (true, true) => eve::FlowLog::InScope,
            },
        }
    }
}

/// When the reader of a stream decodes a batch's frames itself, for the worker the batch
/// is for. Decoding is a pure function of the frame, so the events are the same in
/// every case; only where the time is spent differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderDecodes {
    /// Reading a file, while the worker's queue is full, a frame at a time until it has
    /// room: time the reader would otherwise spend waiting. Where the workers keep up
    /// (many cores, or short flows that make reading the slower stage) it never does.
    /// A live capture never does: its reader must get back to the kernel's ring.
    WhenBehind,
    /// Every batch, file or live: for tests and benchmarks.
    Always,
    /// Never: the workers decode every frame.
    Never,
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

/// Sees every event on the writer thread, before it is formatted: what builds a report
/// or learns the topology from the same run.
pub trait Observer {
    fn event(&mut self, engine: &Engine, event: &flow::Event);

    /// Whether the observer wants the `flow` events of flows never answered
    /// ([`flow::Flow::is_answered`]): a SYN flood's millions are not worth handing to
    /// one that only looks at answered flows.
    fn unanswered_flows(&self) -> bool {
        true
    }
}

/// Two observers, each seeing every event (a topology learner and a report, say).
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn event(&mut self, engine: &Engine, event: &flow::Event) {
        self.0.event(engine, event);
        self.1.event(engine, event);
    }

    fn unanswered_flows(&self) -> bool {
        self.0.unanswered_flows() || self.1.unanswered_flows()
    }
}

/// An observer that may not be there.
impl<T: Observer> Observer for Option<T> {
    fn event(&mut self, engine: &Engine, event: &flow::Event) {
        if let Some(observer) = self {
            observer.event(engine, event);
        }
    }

    fn unanswered_flows(&self) -> bool {
        self.as_ref().is_some_and(T::unanswered_flows)
    }
}

/// Where a run's events go: the EVE sink, and an observer if there is one.
pub struct Outputs<'a> {
    pub sink: &'a Sink,
    pub observer: Option<&'a mut (dyn Observer + Send + 'static)>,
}

impl<'a> Outputs<'a> {
    /// EVE lines to `sink`, no observer.
    pub fn eve(sink: &'a Sink) -> Outputs<'a> {
        Outputs { sink, observer: None }
    }
}

/// Called by the reader now and then with the bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Analyses capture files, writing events to `sink`. Several files are each a capture of
/// their own, analysed `settings.jobs` at a time (`jobs.rs`), unless
/// `settings.continuous` says they are pieces of one capture; one file, or the pieces of
/// one capture, go through the reader and the workers as one stream (`stream.rs`).
pub fn analyze(
    engine: Arc<Engine>,
    files: &[PathBuf],
    settings: &Settings,
    outputs: Outputs<'_>,
    progress: Progress<'_>,
) -> io::Result<RunRecord> {
    if files.len() > 1 && !settings.continuous {
        let monitor = Monitor::new(&engine, settings.jobs.clamp(1, files.len()));
        return jobs::run(&engine, files, settings, outputs, &monitor, progress);
    }
    let monitor = Monitor::new(&engine, settings.workers);
    let mut sources = files.iter().map(|path| settings.file_reader.open(path));
    let origin = settings.origin(files);
    let run = stream::Stream { settings, monitor: &monitor, origin: &origin };
    let out = outputs.sink.open()?;
    run.run(&engine, &mut sources, (outputs, out), progress)
}

/// The capture time an offline run read, from its first to its last packet, gathered
/// from the files' readers (a file's first and last packets, once it is read).
pub(super) struct Span {
    first: std::sync::atomic::AtomicU64,
    last: std::sync::atomic::AtomicU64,
}

impl Span {
    pub(super) fn new() -> Span {
        Span { first: u64::MAX.into(), last: 0.into() }
    }

    pub(super) fn note(&self, first: crate::time::Ts, last: crate::time::Ts) {
        use std::sync::atomic::Ordering::Relaxed;
        if first.0 != 0 {
            self.first.fetch_min(first.0, Relaxed);
            self.last.fetch_max(last.0, Relaxed);
        }
    }

    fn range(&self) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let (first, last) = (self.first.load(Relaxed), self.last.load(Relaxed));
        (first <= last).then_some((first, last))
    }
}

/// The final EVE `stats` event of an offline run that writes flow events (so that a
/// report built from its log knows the capture's health): the run's counters, stamped
/// with its last packet's time, its `uptime` the capture time read, so the same capture
/// gives the same event on every run. Nothing for a run that read no packet.
pub(super) fn final_stats(
    engine: &Engine,
    origin: &eve::Origin,
    counters: &Counters,
    span: &Span,
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some((first, last)) = span.range() {
        let mut counters = counters.clone();
        // How many lines the writer has flushed when this event is made depends on the
        // threads' timing: left out (0), so the same capture gives the same event.
        counters[crate::counters::Counter::EveWritten] = 0;
        let snapshot = crate::telemetry::Snapshot {
            counters,
            flows_active: 0,
            latency: Latency::default(),
            uptime: Duration::from_nanos(last - first),
        };
        eve::write_stats_from(&mut out, crate::time::Ts(last), (engine, origin), &snapshot);
    }
    out
}

/// What one worker or job thread counted, and how long it was busy.
#[derive(Debug)]
struct Tally {
    counters: Counters,
    latency: Latency,
    busy: Duration,
}

/// Joins worker or job threads, adding up what they counted.
fn join_all<T>(
    handles: Vec<ScopedJoinHandle<'_, (Tally, T)>>,
    engine: &Engine,
) -> io::Result<(Tally, Vec<T>)> {
    let mut tallies = Vec::with_capacity(handles.len());
    let mut rest = Vec::with_capacity(handles.len());
    for handle in handles {
        let (tally, more) = handle.join().map_err(|_| io::Error::other("a worker thread panicked"))?;
        tallies.push(tally);
        rest.push(more);
    }
    Ok((sum(tallies, engine), rest))
}

/// What several worker, job or capture threads counted, added up.
fn sum(tallies: Vec<Tally>, engine: &Engine) -> Tally {
    let mut total = Tally {
        counters: Counters::for_policy(&engine.policy),
        latency: Latency::default(),
        busy: Duration::ZERO,
    };
    for tally in tallies {
        total.counters.merge(&tally.counters);
        total.latency.merge(&tally.latency);
        total.busy += tally.busy;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run holds one flow budget and one fragment budget, whatever its workers: each
    /// worker's table gets its share of both.
    #[test]
    fn workers_share_the_flow_and_fragment_budgets() {
        let settings = Settings::default();
        for parts in [1, 2, 3, 8] {
            let share = settings.flows_share(parts, None);
            assert!(share.max_flows * parts <= settings.flows.max_flows, "{parts} workers");
            assert!(share.max_fragments * parts <= settings.flows.max_fragments, "{parts} workers");
            assert!(share.max_fragments * parts > settings.flows.max_fragments - parts, "{parts} workers");
        }
    }
}
