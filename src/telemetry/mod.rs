//! Telemetry: sampled latency, the gauges a running pipeline publishes, the Prometheus
//! page, and the record of a run ([`RunRecord`]).
//!
//! Each worker owns its [`Counters`] and they are merged at the end of the run, so the
//! packet path never touches shared counters. While a run goes on, each worker also
//! publishes a copy into its own [`Gauges`] once per batch, and the [`Monitor`] sums them
//! into one plain [`Snapshot`]: the EVE `stats` event and the Prometheus page read that
//! snapshot, the summary reads the final [`RunRecord`]. Nothing here decides anything.

pub mod delivery;
pub mod process;
pub mod prometheus;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use delivery::{Delivery, DeliveryCounts};

use crate::capture::{CaptureError, CaptureStats};
use crate::counters::{Counter, Counters};
use crate::decode::Skip;
use crate::policy::{Engine, Verdict};

/// One packet in this many is timed stage by stage; timing every packet would cost
/// more than some stages.
pub const LATENCY_SAMPLE: u64 = 64;

/// The package version, and the commit it was built from (`unknown` when it was not
/// built in a git checkout): what `--version` and `exwatch_build_info` say.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("EXWATCH_COMMIT");

/// Per-stage latency in nanoseconds, sampled.
#[derive(Clone, Debug)]
pub struct Latency {
    pub decode: Histogram<u64>,
    pub flow: Histogram<u64>,
    /// The exact sums of the samples recorded in `decode` and `flow` (a histogram keeps
    /// only rounded values), for Prometheus' `_sum`.
    pub decode_sum_ns: u64,
    pub flow_sum_ns: u64,
}

impl Default for Latency {
    fn default() -> Latency {
        let histogram =
            || Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("static histogram bounds are valid");
        Latency { decode: histogram(), flow: histogram(), decode_sum_ns: 0, flow_sum_ns: 0 }
    }
}

impl Latency {
    /// Records one sampled packet's time in each stage.
    pub fn record(&mut self, decode_ns: u64, flow_ns: u64) {
        self.decode.saturating_record(decode_ns);
        self.flow.saturating_record(flow_ns);
        self.decode_sum_ns = self.decode_sum_ns.saturating_add(decode_ns);
        self.flow_sum_ns = self.flow_sum_ns.saturating_add(flow_ns);
    }

    /// Samples recorded.
    pub fn samples(&self) -> u64 {
        self.decode.len()
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.decode.add(&other.decode);
        let _ = self.flow.add(&other.flow);
        self.decode_sum_ns = self.decode_sum_ns.saturating_add(other.decode_sum_ns);
        self.flow_sum_ns = self.flow_sum_ns.saturating_add(other.flow_sum_ns);
    }
}

/// Whether the capture of a live run is going on, for `/healthz`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CaptureState {
    /// The pipeline has not started reading yet.
    #[default]
    Starting,
    Running,
    /// The capture ended (a stop was asked for).
    Stopped,
    /// The capture failed: why.
    Failed(String),
}

/// One worker's (or job's) counters as last published, readable while it runs.
pub struct Gauges {
    values: [AtomicU64; Counter::COUNT],
    skipped: [AtomicU64; Skip::ALL.len()],
    flows_active: AtomicU64,
    /// Findings per rule (violations and advisories), in policy order.
    rule_alerts: Vec<AtomicU64>,
    /// Restrictions per evidence kind, in policy order.
    evidence_alerts: Vec<AtomicU64>,
    /// Of those, held back by the alert bound (the writer's gauges only).
    rule_aggregated: Vec<AtomicU64>,
    evidence_aggregated: Vec<AtomicU64>,
    latency: Mutex<Latency>,
}

impl Gauges {
    fn new(rules: usize, evidence: usize) -> Gauges {
        Gauges {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            skipped: Default::default(),
            flows_active: AtomicU64::new(0),
            rule_alerts: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            evidence_alerts: (0..evidence).map(|_| AtomicU64::new(0)).collect(),
            rule_aggregated: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            evidence_aggregated: (0..evidence).map(|_| AtomicU64::new(0)).collect(),
            latency: Mutex::new(Latency::default()),
        }
    }

    /// Copies the worker's counters; called once per batch, never per packet.
    pub fn publish(&self, c: &Counters, flows_active: usize) {
        self.publish_sum(&[c], flows_active);
    }

    /// Publishes the sum of several counters: a job's finished files and the file it is
    /// reading, so the gauges only ever grow as a counter should.
    pub fn publish_sum(&self, parts: &[&Counters], flows_active: usize) {
        let set = |gauge: &AtomicU64, value: &dyn Fn(&Counters) -> u64| {
            gauge.store(parts.iter().map(|c| value(c)).sum(), Ordering::Relaxed)
        };
        for (gauge, counter) in self.values.iter().zip(Counter::ALL) {
            set(gauge, &|c| c[counter]);
        }
        for (i, gauge) in self.skipped.iter().enumerate() {
            set(gauge, &|c| c.skipped[i]);
        }
        self.flows_active.store(flows_active as u64, Ordering::Relaxed);
        for (i, gauge) in self.rule_alerts.iter().enumerate() {
            set(gauge, &|c| c.rules.get(i).map_or(0, |r| r.alerts));
        }
        for (i, gauge) in self.evidence_alerts.iter().enumerate() {
            set(gauge, &|c| c.evidence.get(i).copied().unwrap_or(0));
        }
        for (i, gauge) in self.rule_aggregated.iter().enumerate() {
            set(gauge, &|c| c.rules.get(i).map_or(0, |r| r.aggregated));
        }
        for (i, gauge) in self.evidence_aggregated.iter().enumerate() {
            set(gauge, &|c| c.evidence_aggregated.get(i).copied().unwrap_or(0));
        }
    }

    pub fn publish_latency(&self, latency: &Latency) {
        if let Ok(mut shared) = self.latency.lock() {
            shared.clone_from(latency);
        }
    }

    /// Adds what was last published to `into`.
    fn add_to(&self, into: &mut Snapshot) {
        let load = |gauge: &AtomicU64| gauge.load(Ordering::Relaxed);
        for (gauge, counter) in self.values.iter().zip(Counter::ALL) {
            into.counters[counter] += load(gauge);
        }
        for (total, gauge) in into.counters.skipped.iter_mut().zip(&self.skipped) {
            *total += load(gauge);
        }
        for (stats, gauge) in into.counters.rules.iter_mut().zip(&self.rule_alerts) {
            stats.alerts += load(gauge);
        }
        for (total, gauge) in into.counters.evidence.iter_mut().zip(&self.evidence_alerts) {
            *total += load(gauge);
        }
        for (stats, gauge) in into.counters.rules.iter_mut().zip(&self.rule_aggregated) {
            stats.aggregated += load(gauge);
        }
        for (total, gauge) in into.counters.evidence_aggregated.iter_mut().zip(&self.evidence_aggregated) {
            *total += load(gauge);
        }
        into.flows_active += load(&self.flows_active);
        if let Ok(latency) = self.latency.lock() {
            into.latency.merge(&latency);
        }
    }
}

/// What the pipeline shares with the outside while it runs: the stop and reopen
/// requests (signals), and the counters a metrics endpoint or a `stats` event reads.
pub struct Monitor {
    pub stop: Arc<AtomicBool>,
    /// Set to ask the writer to reopen the EVE file (after log rotation).
    pub reopen: Arc<AtomicBool>,
    pub started: Instant,
    /// One per worker (or job).
    pub gauges: Vec<Gauges>,
    /// The writer's: what the alert bound counted.
    pub writer: Gauges,
    /// Frames dropped because a worker's queue was full (live only).
    pub shed: AtomicU64,
    /// Each capture socket's kernel and interface counters, as last read.
    pub sockets: Mutex<Vec<CaptureStats>>,
    /// The depth of each queue between stages, by name, for `/metrics`.
    queues: Mutex<Vec<(&'static str, QueueDepth)>>,
    /// Whether the live capture is running, stopped or failed.
    pub state: Mutex<CaptureState>,
    /// Events that could not be written to the EVE log (live only: offline, a write
    /// error ends the run).
    pub unwritten: AtomicU64,
    /// Events written to the EVE log, to compare with what the SIEM indexed.
    pub written: AtomicU64,
    /// Told of what an operator must hear of at once while the run goes on; by default
    /// nobody is told (the binary says it on stderr).
    pub notify: Box<dyn Fn(&Notice) + Send + Sync>,
    /// The publisher's counters, when events also go to a broker (`--redis`).
    pub delivery: Option<Arc<Delivery>>,
}

/// How many items wait in a queue now.
pub type QueueDepth = Box<dyn Fn() -> usize + Send + Sync>;

/// A queue's place on `/metrics`, given up when dropped.
pub struct QueueGuard<'a> {
    monitor: &'a Monitor,
    name: &'static str,
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut queues) = self.monitor.queues.lock() {
            queues.retain(|(name, _)| *name != self.name);
        }
    }
}

/// What happened to the EVE log while a live run went on. Each is said once, when it
/// happens (not once per event lost), and counted in [`Counter::EveUnwritten`].
#[derive(Debug)]
pub enum Notice {
    /// SIGHUP asked for the log to be reopened and it could not be: events keep going
    /// to the file that was open.
    ReopenFailed { log: String, error: std::io::Error },
    /// Writing failed (disk full, I/O error): events are counted, not written, until a
    /// write works again.
    WriteFailed { log: String, error: std::io::Error },
    /// Writing works again after `lost` events could not be written.
    WriteResumed { log: String, lost: u64 },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::ReopenFailed { log, error } => {
                write!(f, "{log}: cannot reopen the EVE log: {error}; still writing to the file open before")
            }
            Notice::WriteFailed { log, error } => write!(
                f,
                "{log}: cannot write the EVE log: {error}; counting the events lost until writing works again"
            ),
            Notice::WriteResumed { log, lost } => {
                write!(f, "{log}: writing the EVE log again; {lost} event(s) could not be written")
            }
        }
    }
}

impl Monitor {
    /// A monitor for `workers` workers (or jobs) judging with `engine`'s policy.
    pub fn new(engine: &Engine, workers: usize) -> Monitor {
        let (rules, evidence) = (engine.policy.rules.len(), engine.policy.evidence.len());
        Monitor {
            stop: Arc::new(AtomicBool::new(false)),
            reopen: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            gauges: (0..workers.max(1)).map(|_| Gauges::new(rules, evidence)).collect(),
            writer: Gauges::new(rules, evidence),
            shed: AtomicU64::new(0),
            sockets: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
            state: Mutex::new(CaptureState::Starting),
            unwritten: AtomicU64::new(0),
            written: AtomicU64::new(0),
            notify: Box::new(|_| {}),
            delivery: None,
        }
    }

    pub fn capture_state(&self) -> CaptureState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set_capture_state(&self, state: CaptureState) {
        if let Ok(mut shared) = self.state.lock() {
            *shared = state;
        }
    }

    /// The capture sockets' counters, added up.
    pub fn capture_stats(&self) -> CaptureStats {
        self.sockets
            .lock()
            .map(|s| s.iter().fold(CaptureStats::default(), |a, b| a.plus(*b)))
            .unwrap_or_default()
    }

    /// Each capture socket's counters, as last read.
    pub fn socket_stats(&self) -> Vec<CaptureStats> {
        self.sockets.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Socket `socket`'s counters, when its source has them.
    pub fn set_socket_stats(&self, socket: usize, stats: Option<CaptureStats>) {
        let (Some(stats), Ok(mut sockets)) = (stats, self.sockets.lock()) else { return };
        if sockets.len() <= socket {
            sockets.resize(socket + 1, CaptureStats::default());
        }
        sockets[socket] = stats;
    }

    /// Names a queue whose depth `/metrics` shows, until the guard is dropped (the
    /// depth may hold a handle that keeps the queue open).
    pub fn register_queue(&self, name: &'static str, depth: QueueDepth) -> QueueGuard<'_> {
        if let Ok(mut queues) = self.queues.lock() {
            queues.push((name, depth));
        }
        QueueGuard { monitor: self, name }
    }

    /// Each named queue and the items waiting in it now.
    pub fn queue_depths(&self) -> Vec<(&'static str, usize)> {
        self.queues
            .lock()
            .map(|q| q.iter().map(|(name, depth)| (*name, depth())).collect())
            .unwrap_or_default()
    }

    /// Every counter as last published, summed over the workers.
    pub fn snapshot(&self, engine: &Engine) -> Snapshot {
        let (rules, evidence) = (engine.policy.rules.len(), engine.policy.evidence.len());
        let mut snapshot = Snapshot {
            counters: Counters::new(rules, evidence),
            flows_active: 0,
            latency: Latency::default(),
            uptime: self.started.elapsed(),
        };
        for gauges in self.gauges.iter().chain([&self.writer]) {
            gauges.add_to(&mut snapshot);
        }
        let c = &mut snapshot.counters;
        fill_capture(c, self.capture_stats(), self);
        fill_engine(c, engine);
        snapshot
    }
}

/// Sets the counters that the capture, the reader and the writer keep rather than the
/// workers.
pub fn fill_capture(c: &mut Counters, capture: CaptureStats, monitor: &Monitor) {
    c[Counter::KernelReceived] = capture.received;
    c[Counter::KernelDropped] = capture.kernel_dropped;
    c[Counter::InterfaceDropped] = capture.interface_dropped;
    c[Counter::Shed] = monitor.shed.load(Ordering::Relaxed);
    c[Counter::EveUnwritten] = monitor.unwritten.load(Ordering::Relaxed);
    c[Counter::EveWritten] = monitor.written.load(Ordering::Relaxed);
}

/// Sets the counters that the engine's cross-flow tables keep.
pub fn fill_engine(c: &mut Counters, engine: &Engine) {
    c[Counter::SmtpSendersDropped] = engine.smtp_senders_dropped.load(Ordering::Relaxed);
}

/// The counters of a running pipeline at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub counters: Counters,
    /// Flows in the flow tables now.
    pub flows_active: u64,
    pub latency: Latency,
    pub uptime: Duration,
}

/// How a run's input was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// A live interface, through capture threads that each run a worker. `window`: the
    /// wall time from the first frame to the last, which the rates are over (a sensor
    /// started before the traffic, or left running after it, is not idle work).
    Live { window: Duration },
    /// One reader thread fed the workers, reading its sources one after the other as one
    /// stream: a single file, or the pieces of one capture (`--continuous`).
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
    /// The workers together: decoding, flow tables, policy.
    pub work: Duration,
    /// The writer: formatting and writing event lines.
    pub write: Duration,
    /// Frames the reader decoded itself while a worker's queue was full (part of
    /// `read`); the workers decoded the rest.
    pub read_decoded: u64,
}

/// What a run produced, beyond the events already written.
#[derive(Debug)]
pub struct RunRecord {
    /// Every counter, merged over workers and jobs.
    pub counters: Counters,
    pub latency: Latency,
    /// Sources that could not be read, or were read only up to damage.
    pub errors: Vec<CaptureError>,
    pub wall: Duration,
    /// Workers, or jobs for independent files.
    pub workers: usize,
    /// Bytes of capture read (record headers included).
    pub file_bytes: u64,
    /// Time each stage spent working (not waiting on a channel).
    pub busy: Busy,
    pub reading: Reading,
    /// Live: each capture socket's kernel and interface counters at the end.
    pub sockets: Vec<CaptureStats>,
    /// The EVE log was a pipe whose reader went away (`| head`): the run ended early,
    /// on purpose, as a command writing to a closed pipe does.
    pub eve_closed: bool,
}

/// Findings by rule (the rules whose verdict is a finding) and by evidence kind (for
/// restrictions), with their counts: the one list both the `stats` event and the metrics
/// page show.
pub fn alert_series<'a>(
    engine: &'a Engine,
    c: &'a Counters,
) -> impl Iterator<Item = (&'a str, Verdict, u64)> + 'a {
    let policy = &engine.policy;
    let rules = policy.rules.iter().zip(&c.rules).filter(|(rule, _)| rule.verdict.is_finding());
    let rules = rules.map(|(rule, stats)| (rule.id.as_str(), rule.verdict, stats.alerts));
    let evidence = policy.evidence.iter().zip(&c.evidence);
    rules.chain(evidence.map(|(e, &n)| (e.id.as_str(), Verdict::Restriction, n)))
}

/// Of [`alert_series`], the findings an exception accepted (verdict `accepted`), by
/// rule or evidence id: only those with any.
pub fn accepted_series<'a>(engine: &'a Engine, c: &'a Counters) -> impl Iterator<Item = (&'a str, u64)> + 'a {
    let policy = &engine.policy;
    let rules = policy.rules.iter().zip(&c.rules).map(|(rule, stats)| (rule.id.as_str(), stats.accepted));
    let evidence = policy.evidence.iter().zip(&c.evidence_accepted).map(|(e, &n)| (e.id.as_str(), n));
    rules.chain(evidence).filter(|&(_, n)| n > 0)
}

/// Of [`alert_series`], the findings the alert bound held back (counted in aggregate
/// alerts), in the same order.
pub fn aggregated_series<'a>(
    engine: &'a Engine,
    c: &'a Counters,
) -> impl Iterator<Item = (&'a str, Verdict, u64)> + 'a {
    let policy = &engine.policy;
    let rules = policy.rules.iter().zip(&c.rules).filter(|(rule, _)| rule.verdict.is_finding());
    let rules = rules.map(|(rule, stats)| (rule.id.as_str(), rule.verdict, stats.aggregated));
    let evidence = policy.evidence.iter().zip(&c.evidence_aggregated);
    rules.chain(evidence.map(|(e, &n)| (e.id.as_str(), Verdict::Restriction, n)))
}
