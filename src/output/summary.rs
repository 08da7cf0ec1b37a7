//! The end-of-run summary: text on stderr, and the same as JSON (`--summary-json`).
//!
//! Its counter sections come from the counter table ([`Counter::of`]), so a counter
//! added there shows here without a line of this file changing.

use std::fmt::Write as _;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::counters::Def;
use crate::counters::{Counter, Counters, Section};
use crate::decode::Skip;
use crate::policy::{Engine, Verdict};
use crate::telemetry::{DeliveryCounts, Reading, RunRecord};

/// Violating host pairs listed in the summary.
pub const TOP_PAIRS: usize = 10;

#[derive(Serialize, Debug)]
pub struct Summary {
    /// exwatch's version.
    pub version: &'static str,
    /// One line: compliant or not, in how many flows the article covers, or why the run
    /// could not check what it was given.
    pub conclusion: String,
    /// The exit status the run ends with (0 clean, 1 findings, 2 not checked whole).
    pub exit_status: u8,
    /// The sensor's name (`--sensor-name`), as EVE's `host` carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    pub policy: String,
    pub policy_sha256: String,
    /// The packet time of the first and the last packet; live capture also says what the
    /// kernel and the interface counted, what exwatch shed, and the events the EVE log
    /// could not take.
    pub capture: Capture,
    pub topology: String,
    pub topology_sha256: String,
    /// Analysing files only: how many, and how they were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading: Option<Files>,
    /// Analysing files only: each capture file, in the order read, with how much of it
    /// was read and what came of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileLine>>,
    pub packets: Counts,
    pub flows: Counts,
    pub findings: Counts,
    pub rules: Vec<RuleLine>,
    /// Every `[[exception]]` of the topology, with what it matched.
    pub exceptions: Vec<ExceptionLine>,
    pub top_violating_pairs: Vec<PairLine>,
    /// Sources that could not be read, whole or in part: a stable code and the message.
    pub errors: Vec<(String, String)>,
    /// What `exwatch check` says of the topology (`FILE:LINE: text`), and anything else
    /// that makes the verdicts less sure.
    pub warnings: Vec<String>,
    pub latency_ns: Vec<StageLatency>,
    pub throughput: Throughput,
    /// With `--redis`: the EVE lines sent to the broker, dropped, and still queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<DeliveryCounts>,
}

/// The capture's time range (RFC 3339, as EVE writes time), and live, its counters.
#[derive(Serialize, Debug)]
pub struct Capture {
    /// Absent when no packet was decoded (one type per field: never null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counts>,
    /// Live: each capture socket's counters (several sockets are one fanout group).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<SocketCounts>,
}

/// One capture socket's kernel and interface counters.
#[derive(Serialize, Debug)]
pub struct SocketCounts {
    pub received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
}

/// One section of the counter table, with its values; the packets section also says
/// what was skipped, by reason.
#[derive(Debug)]
pub struct Counts {
    pub section: Section,
    pub values: Vec<(Counter, u64)>,
    /// Packets only: skipped frames by reason code (the reasons that occurred).
    pub skipped: Option<Vec<(String, u64)>>,
}

impl Counts {
    fn of(section: Section, c: &Counters) -> Counts {
        Counts::select(section, c, |_| true)
    }

    /// The section's counters that `keep` keeps.
    pub fn select(section: Section, c: &Counters, keep: impl Fn(&Def) -> bool) -> Counts {
        let values = Counter::of(section)
            .filter(|counter| keep(counter.def()))
            .map(|counter| (counter, c[counter]))
            .collect();
        let skipped = (section == Section::Packets).then(|| {
            Skip::ALL
                .iter()
                .map(|s| (s.code().to_string(), c.skipped[s.index()]))
                .filter(|(_, n)| *n > 0)
                .collect()
        });
        Counts { section, values, skipped }
    }

    /// The value of `counter`, which must be of this section.
    pub fn get(&self, counter: Counter) -> u64 {
        debug_assert_eq!(counter.def().section, self.section, "{counter:?} is not a counter of this section");
        self.values.iter().find(|(c, _)| *c == counter).map_or(0, |(_, v)| *v)
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (counter, value) in &self.values {
            map.serialize_entry(counter.def().key, value)?;
        }
        if let Some(skipped) = &self.skipped {
            map.serialize_entry("skipped", &skipped.iter().map(|(_, n)| n).sum::<u64>())?;
            // A map of reason to count: one type per field, as a SIEM indexes it.
            let by_reason: serde_json::Map<String, serde_json::Value> =
                skipped.iter().map(|(reason, n)| (reason.clone(), (*n).into())).collect();
            map.serialize_entry("skipped_by_reason", &by_reason)?;
        }
        map.end()
    }
}

#[derive(Serialize, Debug)]
pub struct Files {
    /// Capture files analysed: given on the command line or found in directories.
    pub count: usize,
    /// `independent`: each file a capture of its own, `jobs` at a time, each read,
    /// decoded and tracked by one thread. `stream`: read one after the other as one
    /// capture by the reader thread, feeding the workers (one file, or `--continuous`).
    pub mode: &'static str,
    /// Independent files only: how many were analysed at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<usize>,
    /// Files found in directories that are not captures, skipped (named on stderr).
    pub not_captures: usize,
}

/// One capture file of the run.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    pub path: String,
    /// `read` (whole), `damaged` (read up to the damage), `unreadable`, `not_a_capture`:
    /// the words of the report's `inputs[].status`.
    pub status: &'static str,
    /// Where the damage is, or why the file could not be read; `null` when read whole.
    pub detail: Option<String>,
    /// Frames read from it.
    pub packets: u64,
    /// Flows that began in it.
    pub flows: u64,
}

#[derive(Serialize, Debug)]
pub struct RuleLine {
    pub rule: String,
    pub verdict: String,
    pub flows: u64,
    pub bytes: u64,
    /// Findings, exact whether the alert bound is on or off.
    pub alerts: u64,
    /// Of those, the ones the alert bound held back from the EVE log and counted in
    /// aggregate alerts.
    pub aggregated: u64,
    /// Of those, the ones an exception accepted (verdict `accepted`).
    pub accepted: u64,
}

/// One `[[exception]]` and what it matched in this run.
#[derive(Serialize, Debug)]
pub struct ExceptionLine {
    pub id: String,
    pub rule: String,
    pub owner: String,
    pub reason: String,
    pub expires: String,
    /// Findings it accepted.
    pub accepted: u64,
    /// Findings it would have accepted, in flows that started after it expired.
    pub expired_findings: u64,
    /// `used` (it accepted findings), `expired` (it matched only after it expired) or
    /// `unused` (it matched nothing).
    pub status: &'static str,
}

#[derive(Serialize, Debug)]
pub struct PairLine {
    pub src_ip: String,
    pub dest_ip: String,
    pub findings: u64,
}

#[derive(Serialize, Debug)]
pub struct StageLatency {
    pub stage: String,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub samples: u64,
}

#[derive(Serialize, Debug)]
pub struct Throughput {
    /// How the run read: `stream` (a reader feeding workers), `independent` (jobs, a
    /// file each) or `live` (capture threads, each its own worker).
    pub reading: &'static str,
    /// Workers, jobs for independent files, or capture threads live.
    pub workers: usize,
    /// Live: from the first frame to the last (what the rates are over), not the whole
    /// time the sensor ran.
    pub wall_seconds: f64,
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
    /// The process's peak resident memory (Linux: `VmHWM`), when the system says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// Seconds each stage spent working; the slowest stage bounds the throughput.
    pub busy_seconds: Stages,
}

#[derive(Serialize, Debug)]
pub struct Stages {
    /// The reader thread; `null` for independent files, whose jobs read as they work.
    pub read: Option<f64>,
    /// All workers together: decode, flow tables, policy. For independent files, all
    /// jobs together, reading included.
    pub work: f64,
    /// The writer thread: formatting events and writing them.
    pub write: f64,
    /// Frames the reader decoded itself while a worker was behind (its time is in
    /// `read`); the workers decoded the rest.
    pub read_decoded_frames: u64,
}

impl Summary {
    pub fn new(engine: &Engine, topology_name: &str, record: &RunRecord) -> Summary {
        let c = &record.counters;
        let mut rules: Vec<RuleLine> = engine
            .policy
            .rules
            .iter()
            .zip(&c.rules)
            .map(|(rule, stats)| RuleLine {
                rule: rule.id.clone(),
                verdict: rule.verdict.name().to_string(),
                flows: stats.flows,
                bytes: stats.bytes,
                alerts: stats.alerts,
                aggregated: stats.aggregated,
                accepted: stats.accepted,
            })
            .collect();
        // Restrictions are counted under their evidence kind (they add no flows).
        let evidence = engine.policy.evidence.iter().zip(c.evidence.iter().zip(&c.evidence_aggregated));
        let evidence = evidence.zip(c.evidence_accepted.iter().chain(std::iter::repeat(&0)));
        rules.extend(evidence.map(|((e, (&alerts, &aggregated)), &accepted)| RuleLine {
            rule: e.id.clone(),
            verdict: Verdict::Restriction.name().to_string(),
            flows: 0,
            bytes: 0,
            alerts,
            aggregated,
            accepted,
        }));
        let exceptions = engine
            .topology
            .exceptions
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let stats = c.exceptions.get(i).copied().unwrap_or_default();
                ExceptionLine {
                    id: e.id.clone(),
                    rule: e.rule.clone(),
                    owner: e.owner.clone(),
                    reason: e.reason.clone(),
                    expires: e.expires.clone(),
                    accepted: stats.accepted,
                    expired_findings: stats.expired,
                    status: match (stats.accepted, stats.expired) {
                        (0, 0) => "unused",
                        (0, _) => "expired",
                        _ => "used",
                    },
                }
            })
            .collect();
        let mut pairs: Vec<_> = c.pairs.iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top_violating_pairs = pairs
            .into_iter()
            .take(TOP_PAIRS)
            .map(|((src, dst), n)| PairLine {
                src_ip: src.to_string(),
                dest_ip: dst.to_string(),
                findings: *n,
            })
            .collect();
        let latency = |stage: &str, h: &hdrhistogram::Histogram<u64>| StageLatency {
            stage: stage.to_string(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            samples: h.len(),
        };
        // Live, the rates are over the time frames came, not the sensor's whole run.
        let secs = match record.reading {
            Reading::Live { window } => window,
            _ => record.wall,
        }
        .as_secs_f64()
        .max(1e-9);
        Summary {
            policy: engine.policy.name.clone(),
            version: crate::telemetry::VERSION,
            conclusion: String::new(),
            exit_status: 0,
            sensor: None,
            policy_sha256: String::new(),
            topology_sha256: String::new(),
            capture: Capture {
                first: c.span.map(|(first, _)| crate::time::timestamp(first)),
                last: c.span.map(|(_, last)| crate::time::timestamp(last)),
                counters: matches!(record.reading, Reading::Live { .. })
                    .then(|| Counts::of(Section::Capture, c)),
                sockets: record
                    .sockets
                    .iter()
                    .map(|s| SocketCounts {
                        received: s.received,
                        kernel_dropped: s.kernel_dropped,
                        interface_dropped: s.interface_dropped,
                    })
                    .collect(),
            },
            topology: topology_name.to_string(),
            reading: match record.reading {
                Reading::Live { .. } => None,
                Reading::Stream { sources } => {
                    Some(Files { count: sources, mode: "stream", jobs: None, not_captures: 0 })
                }
                Reading::Independent { files, jobs } => {
                    Some(Files { count: files, mode: "independent", jobs: Some(jobs), not_captures: 0 })
                }
            },
            files: None,
            packets: Counts::of(Section::Packets, c),
            flows: Counts::of(Section::Flows, c),
            findings: Counts::of(Section::Findings, c),
            rules,
            exceptions,
            top_violating_pairs,
            errors: record.errors.iter().map(|e| (e.code().to_string(), e.to_string())).collect(),
            warnings: Vec::new(),
            latency_ns: vec![
                latency("decode", &record.latency.decode),
                latency("flow+policy", &record.latency.flow),
            ],
            throughput: Throughput {
                reading: match record.reading {
                    Reading::Stream { .. } => "stream",
                    Reading::Independent { .. } => "independent",
                    Reading::Live { .. } => "live",
                },
                workers: record.workers,
                wall_seconds: secs,
                packets_per_second: c[Counter::Frames] as f64 / secs,
                bytes_per_second: record.file_bytes as f64 / secs,
                peak_rss_bytes: peak_rss(),
                busy_seconds: Stages {
                    read: match record.reading {
                        Reading::Stream { .. } => Some(record.busy.read.as_secs_f64()),
                        Reading::Live { .. } | Reading::Independent { .. } => None,
                    },
                    work: record.busy.work.as_secs_f64(),
                    write: record.busy.write.as_secs_f64(),
                    read_decoded_frames: record.busy.read_decoded,
                },
            },
            redis: None,
        }
    }

    /// What the publisher to the broker (`--redis`) did.
    pub fn with_redis(mut self, counts: Option<DeliveryCounts>) -> Summary {
        self.redis = counts;
        self
    }

    /// Counts the files found in directories that are not captures (the input was
    /// expanded before the run, which never sees them).
    pub fn with_not_captures(mut self, count: usize) -> Summary {
        if let Some(files) = &mut self.reading {
            files.not_captures = count;
        }
        self
    }

    /// The capture files, each with its status, packets and flows (analysing files only).
    pub fn with_files(mut self, files: Vec<FileLine>) -> Summary {
        if self.reading.is_some() {
            self.files = Some(files);
        }
        self
    }

    /// How the run ends: its exit status and the one-line conclusion.
    pub fn with_outcome(mut self, exit_status: u8, conclusion: String) -> Summary {
        (self.exit_status, self.conclusion) = (exit_status, conclusion);
        self
    }

    /// Where the events come from: the sensor, and the SHA-256 of the topology and the
    /// policy they were judged with.
    pub fn with_origin(
        mut self,
        sensor: Option<String>,
        topology_sha256: String,
        policy_sha256: String,
    ) -> Summary {
        (self.sensor, self.topology_sha256, self.policy_sha256) = (sensor, topology_sha256, policy_sha256);
        self
    }

    /// Adds warnings (topology lints, say).
    pub fn with_warnings(mut self, warnings: impl IntoIterator<Item = String>) -> Summary {
        self.warnings.extend(warnings);
        self
    }

    /// The human-readable summary printed on stderr, a section after another. The
    /// errors are not in it: the caller says them after it, each on a line of its own.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "exwatch summary (policy {}, topology {})", self.policy, self.topology);
        self.write_findings(&mut s);
        self.write_rules(&mut s);
        self.write_exceptions(&mut s);
        self.write_alert_bound(&mut s);
        self.write_pairs(&mut s);
        self.write_files(&mut s);
        self.write_packets(&mut s);
        self.write_capture(&mut s);
        self.write_flows(&mut s);
        self.write_latency(&mut s);
        for warning in &self.warnings {
            let _ = writeln!(s, "warning: {warning}");
        }
        self.write_throughput(&mut s);
        self.write_redis(&mut s);
        s
    }

    fn write_redis(&self, s: &mut String) {
        if let Some(r) = &self.redis {
            let _ = writeln!(
                s,
                "redis: {} events sent, {} dropped, {} still queued; {} reconnection{}",
                r.sent,
                r.dropped,
                r.queued,
                r.reconnects,
                plural(r.reconnects as usize)
            );
        }
    }

    fn write_findings(&self, s: &mut String) {
        let found = &self.findings;
        let _ = writeln!(
            s,
            "findings: {} violation, {} restriction, {} advisory",
            found.get(Counter::Violations),
            found.get(Counter::Restrictions),
            found.get(Counter::Advisories)
        );
    }

    fn write_rules(&self, s: &mut String) {
        let _ = writeln!(s, "per rule (flows, bytes, alerts, of which aggregated):");
        for r in self.rules.iter().filter(|r| r.flows > 0 || r.alerts > 0) {
            let _ = write!(
                s,
                "  {:<30} {:<12} {:>9} {:>14} {:>7}",
                r.rule, r.verdict, r.flows, r.bytes, r.alerts
            );
            if r.aggregated > 0 {
                let _ = write!(s, " {:>7}", r.aggregated);
            }
            s.push('\n');
        }
    }

    fn write_exceptions(&self, s: &mut String) {
        if self.exceptions.is_empty() {
            return;
        }
        let _ = writeln!(s, "exceptions ({} findings accepted):", self.findings.get(Counter::Accepted));
        for e in &self.exceptions {
            let _ = writeln!(
                s,
                "  {:<20} {:<7} {:>7} accepted, {} after expiry; rule {}, owner {}, expires {}",
                e.id, e.status, e.accepted, e.expired_findings, e.rule, e.owner, e.expires
            );
        }
    }

    fn write_alert_bound(&self, s: &mut String) {
        let found = &self.findings;
        if found.get(Counter::AlertsAggregated) > 0 {
            let _ = writeln!(
                s,
                "alert bound: {} findings held back from the EVE log, counted in {} aggregate alerts (policy.aggregate); {} findings whose key was not tracked (table full)",
                found.get(Counter::AlertsAggregated),
                found.get(Counter::AggregateAlerts),
                found.get(Counter::AggregationUntracked)
            );
        }
    }

    fn write_pairs(&self, s: &mut String) {
        if !self.top_violating_pairs.is_empty() {
            let _ = writeln!(s, "top violating host pairs (originator -> responder: findings):");
            for pair in &self.top_violating_pairs {
                let _ = writeln!(s, "  {} -> {}: {}", pair.src_ip, pair.dest_ip, pair.findings);
            }
        }
    }

    fn write_files(&self, s: &mut String) {
        let Some(files) = &self.reading else { return };
        let workers = self.throughput.workers;
        let how = match files.jobs {
            Some(jobs) => format!("independently by {jobs} job{}", plural(jobs)),
            None => format!("as one stream by one reader feeding {workers} worker{}", plural(workers)),
        };
        let _ = write!(s, "files: {} read {how}", files.count);
        if files.not_captures > 0 {
            let _ = write!(
                s,
                "; {} file{} in directories skipped (not captures)",
                files.not_captures,
                plural(files.not_captures)
            );
        }
        s.push('\n');
    }

    fn write_packets(&self, s: &mut String) {
        let p = &self.packets;
        let skipped = p.skipped.as_deref().unwrap_or_default();
        let _ = writeln!(
            s,
            "packets: {} read ({} bytes), {} decoded, {} skipped",
            p.get(Counter::Frames),
            p.get(Counter::FrameBytes),
            p.get(Counter::Decoded),
            skipped.iter().map(|(_, n)| n).sum::<u64>()
        );
        for (reason, n) in skipped {
            let layer = Skip::ALL.iter().find(|s| s.code() == reason).map_or("", |s| s.layer().name());
            let _ = writeln!(s, "  skipped at the {layer} layer, {reason}: {n}");
        }
        let _ = writeln!(
            s,
            "fragments: {} joined, {} orphaned, {} dropped (table full); icmp errors: {} ({} administratively prohibited)",
            p.get(Counter::FragmentsJoined),
            p.get(Counter::FragmentsOrphaned),
            p.get(Counter::FragmentsDropped),
            p.get(Counter::IcmpErrors),
            p.get(Counter::IcmpProhibited)
        );
    }

    fn write_capture(&self, s: &mut String) {
        let Some(c) = &self.capture.counters else { return };
        let _ = writeln!(
            s,
            "capture: {} received by the kernel, {} dropped by the kernel, {} by the interface; {} events not written to the EVE log",
            c.get(Counter::KernelReceived),
            c.get(Counter::KernelDropped),
            c.get(Counter::InterfaceDropped),
            c.get(Counter::EveUnwritten)
        );
        if self.capture.sockets.len() > 1 {
            for (i, socket) in self.capture.sockets.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "  socket {i}: {} received, {} dropped by the kernel, {} by the interface",
                    socket.received, socket.kernel_dropped, socket.interface_dropped
                );
            }
        }
    }

    fn write_flows(&self, s: &mut String) {
        let f = &self.flows;
        let (tracked, one_sided) = (f.get(Counter::Flows), f.get(Counter::OneSided));
        let _ = writeln!(
            s,
            "flows: {tracked} tracked, {} local (never leave the segment), {} timed out, {} evicted (table full), {} matched no rule; {} retried SYNs undetermined (the capture ended within the SYN timeout)",
            f.get(Counter::Local),
            f.get(Counter::FlowsTimedOut),
            f.get(Counter::FlowsEvicted),
            f.get(Counter::Unmatched),
            f.get(Counter::SynUndetermined)
        );
        let late = f.get(Counter::LateRetransmissions);
        if late > 0 {
            let _ = writeln!(s, "late retransmissions: {late} FIN or RST packets of closed flows that had ended, joined to them");
        }
        let _ = writeln!(
            s,
            "feed: {one_sided} flows seen in one direction only, {} TCP flows picked up mid-stream, {} with sequence gaps (packets the feed lost){}",
            f.get(Counter::Midstream),
            f.get(Counter::Gapped),
            if tracked > 0 && one_sided * 2 > tracked {
                " (over half: the feed may carry one direction only; unanswered-SYN findings are low confidence)"
            } else {
                ""
            }
        );
    }

    fn write_latency(&self, s: &mut String) {
        for l in &self.latency_ns {
            let _ = writeln!(
                s,
                "latency {}: p50 {} ns, p99 {} ns, max {} ns ({} samples)",
                l.stage, l.p50, l.p99, l.max, l.samples
            );
        }
    }

    /// The stages' busy time, then the run's rates.
    fn write_throughput(&self, s: &mut String) {
        let t = &self.throughput;
        let frames = self.packets.get(Counter::Frames);
        let rate = |busy: f64| frames as f64 / busy.max(1e-9) / 1e6;
        let b = &t.busy_seconds;
        let threads = match b.read {
            Some(read) => {
                let workers = t.workers;
                let _ = writeln!(
                    s,
                    "stages (busy): read {read:.3} s ({:.2} Mpkt/s; decoded {:.0}% of frames for a worker that was behind), decode+flow+policy {:.3} s over {workers} worker{} ({:.2} Mpkt/s per worker), format+write {:.3} s",
                    rate(read),
                    100.0 * b.read_decoded_frames as f64 / frames.max(1) as f64,
                    b.work,
                    plural(workers),
                    rate(b.work),
                    b.write
                );
                format!("{workers} worker{}", plural(workers))
            }
            None => {
                // A capture thread or a job reads what it judges: reading is not timed apart.
                let n = t.workers;
                let (unit, busy, doing, window) = if t.reading == "live" {
                    (
                        "capture thread",
                        "CPU-s",
                        "each reads its socket and judges what it reads",
                        ", from the first frame to the last",
                    )
                } else {
                    ("job", "s", "a job reads the files it analyses, so reading is not timed apart", "")
                };
                let _ = writeln!(
                    s,
                    "stages (busy): read+decode+flow+policy {:.3} {busy} over {n} {unit}{} ({:.2} Mpkt/s per {unit}; {doing}), format+write {:.3} s",
                    b.work,
                    plural(n),
                    rate(b.work),
                    b.write
                );
                format!("{n} {unit}{}{window}", plural(n))
            }
        };
        let _ = writeln!(
            s,
            "throughput: {:.0} packets/s, {:.1} MB/s ({threads}, {:.3} s wall)",
            t.packets_per_second,
            t.bytes_per_second / 1e6,
            t.wall_seconds
        );
    }
}

/// The process's peak resident memory, from `/proc/self/status` (`VmHWM`, in kB).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
