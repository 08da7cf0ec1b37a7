//! The counter table: every scalar counter exwatch keeps, declared once with its names,
//! unit and help text, and the [`Counters`] a worker, a job or a run adds up. The summary, the EVE `stats` event and the Prometheus page all
//! iterate over [`Counter::ALL`], so adding a counter is one line of `counters!`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::{Index, IndexMut};

use crate::decode::Skip;
use crate::policy::{Policy, Verdict};
use crate::time::Ts;

/// Where a counter stands in the summary (and in the `policy` object of a `stats` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Live capture only: what the kernel and the interface counted, what was shed, and
    /// the events the EVE log could not take.
    Capture,
    Packets,
    Flows,
    Findings,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Capture, Section::Packets, Section::Flows, Section::Findings];

    pub fn name(self) -> &'static str {
        match self {
            Section::Capture => "capture",
            Section::Packets => "packets",
            Section::Flows => "flows",
            Section::Findings => "findings",
        }
    }
}

/// What one counter is, for every consumer.
#[derive(Debug)]
pub struct Def {
    pub section: Section,
    /// Its key within the section, in the summary and in `stats` events.
    pub key: &'static str,
    /// Its Prometheus name (a counter: `_total`).
    pub prometheus: &'static str,
    /// What it counts: `frames`, `bytes`, `flows`...
    pub unit: &'static str,
    pub help: &'static str,
    /// Where Suricata's own `stats` event has the same counter, as `group.key`; such a
    /// counter is written there, with Suricata's meaning, instead of under `policy`.
    pub suricata: Option<&'static str>,
}

macro_rules! counters {
    ($($name:ident: $section:ident $key:literal, $prometheus:literal, $unit:literal, $suricata:expr, $help:literal;)*) => {
        /// A scalar counter; [`Counter::def`] says what it is.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter { $($name,)* }

        impl Counter {
            pub const ALL: [Counter; [$(Counter::$name),*].len()] = [$(Counter::$name),*];
            pub const COUNT: usize = Counter::ALL.len();
        }

        const DEFS: [Def; Counter::COUNT] = [$(Def {
            section: Section::$section,
            key: $key,
            prometheus: $prometheus,
            unit: $unit,
            help: $help,
            suricata: $suricata,
        },)*];
    };
}

counters! {
    KernelReceived: Capture "kernel_received", "exwatch_kernel_received_total", "packets", Some("capture.kernel_packets"),
        "Packets the kernel delivered to the capture (pcap stats).";
    KernelDropped: Capture "kernel_dropped", "exwatch_kernel_drops_total", "packets", Some("capture.kernel_drops"),
        "Packets the kernel dropped because its buffer was full (pcap stats).";
    InterfaceDropped: Capture "interface_dropped", "exwatch_interface_drops_total", "packets", Some("capture.kernel_ifdrops"),
        "Packets the interface or its driver dropped (pcap stats).";
    Shed: Capture "shed", "exwatch_shed_frames_total", "frames", None,
        "Frames dropped because a worker's queue stayed full for 20 ms: the worker stalled for longer than the kernel's ring could have held what arrived.";
    EveUnwritten: Capture "eve_unwritten", "exwatch_eve_unwritten_events_total", "events", None,
        "Events that could not be written to the EVE log (disk full, I/O error); writing resumes when it works again.";
    EveWritten: Capture "eve_written", "exwatch_eve_events_written_total", "events", None,
        "Events written to the EVE log: compare with the number of documents the SIEM indexed.";
    Frames: Packets "read", "exwatch_packets_total", "frames", Some("decoder.pkts"),
        "Frames read from the capture.";
    FrameBytes: Packets "bytes", "exwatch_bytes_total", "bytes", Some("decoder.bytes"),
        "Bytes (on the wire) of the frames read.";
    BpfFiltered: Packets "bpf_filtered", "exwatch_bpf_filtered_total", "frames", None,
        "Frames of capture files that analyze --bpf left out (not counted as read; live, the kernel filters them before any count).";
    Decoded: Packets "decoded", "exwatch_decoded_total", "frames", None,
        "Frames decoded into a packet.";
    FragmentsJoined: Packets "fragments_joined", "exwatch_fragments_joined_total", "fragments", None,
        "Later IPv4 fragments joined to the flow of their first fragment.";
    FragmentsOrphaned: Packets "fragments_orphaned", "exwatch_fragments_orphaned_total", "fragments", None,
        "Later IPv4 fragments whose first fragment never came.";
    FragmentsDropped: Packets "fragments_dropped", "exwatch_fragments_dropped_total", "fragments", None,
        "IPv4 fragments not remembered because the fragment table was full.";
    IcmpErrors: Packets "icmp_errors", "exwatch_icmp_errors_total", "packets", None,
        "ICMP and ICMPv6 errors quoting a packet.";
    IcmpProhibited: Packets "icmp_prohibited", "exwatch_icmp_prohibited_total", "packets", None,
        "ICMP and ICMPv6 administratively-prohibited errors.";
    IcmpUnmatched: Packets "icmp_unmatched", "exwatch_icmp_unmatched_total", "packets", None,
        "ICMP errors quoting a later fragment whose first fragment this capture did not show.";
    Flows: Flows "tracked", "exwatch_flows_total", "flows", Some("flow.total"),
        "Flows tracked.";
    TouchingExchange: Flows "touching_exchange", "exwatch_flows_touching_exchange_total", "flows", None,
        "Flows (and tunnels, once per flow they carry) with a Mailbox or Edge server of the topology at one end.";
    Local: Flows "local", "exwatch_flows_local_total", "flows", None,
        "Flows in the local scope (link-local, multicast, broadcast, neighbour discovery): never judged as external.";
    FlowsTimedOut: Flows "timed_out", "exwatch_flows_timed_out_total", "flows", None,
        "Flows ended by their idle timeout.";
    FlowsEvicted: Flows "evicted", "exwatch_flows_evicted_total", "flows", None,
        "Flows evicted because a flow table was full.";
    Unmatched: Flows "unmatched", "exwatch_flows_unmatched_total", "flows", None,
        "Flows no rule matched.";
    OneSided: Flows "one_sided", "exwatch_flows_one_sided_total", "flows", None,
        "Flows that ended with packets in one direction only (many mean a one-sided feed).";
    Midstream: Flows "midstream", "exwatch_flows_midstream_total", "flows", None,
        "TCP flows picked up mid-stream (no handshake seen).";
    Gapped: Flows "gapped", "exwatch_flows_gapped_total", "flows", None,
        "TCP flows with sequence gaps: segments the feed lost.";
    FlowEventsAggregated: Flows "events_aggregated", "exwatch_flow_events_aggregated_total", "flows", None,
        "In-scope flow events (--flows=in-scope) the flow bound held back and counted in aggregate flow records.";
    FlowAggregates: Flows "aggregates", "exwatch_aggregate_flows_total", "records", None,
        "Aggregate flow records written: one per key and window that held flow events back.";
    LateRetransmissions: Flows "late_retransmissions", "exwatch_late_retransmissions_total", "packets", None,
        "FIN or RST retransmissions of a closed TCP flow that had already ended (within the closed timeout): joined to it, not a flow of their own.";
    DirectionsUntracked: Flows "directions_untracked", "exwatch_directions_untracked_total", "host pairs", None,
        "Host-pair directions (with their TTL and source MAC) not remembered because the table was full.";
    SynUndetermined: Flows "syn_undetermined", "exwatch_flows_syn_undetermined_total", "flows", None,
        "Retried, unanswered SYNs never to restrict whose capture ended within the SYN timeout: no silent drop proven.";
    SmtpSendersDropped: Flows "smtp_senders_dropped", "exwatch_smtp_senders_dropped_total", "hosts", None,
        "SMTP senders to an Edge not remembered because the sender table was full.";
    Advisories: Findings "advisory", "exwatch_advisories_total", "findings", None,
        "Advisory findings.";
    Violations: Findings "violation", "exwatch_violations_total", "findings", None,
        "Violation findings.";
    Restrictions: Findings "restriction", "exwatch_restrictions_total", "findings", None,
        "Restriction findings (evidence that protected traffic is restricted).";
    Accepted: Findings "accepted", "exwatch_accepted_total", "findings", None,
        "Findings an unexpired exception of the topology covers (verdict accepted).";
    ExceptionExpired: Findings "exception_expired", "exwatch_exception_expired_total", "findings", None,
        "Findings an exception would have covered had it not expired before the flow started.";
    PairsUntracked: Findings "pairs_untracked", "exwatch_finding_pairs_untracked_total", "findings", None,
        "Findings whose host pair was not remembered for the summary because the pair table was full.";
    AlertsAggregated: Findings "aggregated", "exwatch_alerts_aggregated_total", "findings", None,
        "Findings held back from the EVE log by the alert bound and counted in aggregate alerts.";
    AggregateAlerts: Findings "aggregates", "exwatch_aggregate_alerts_total", "alerts", None,
        "Aggregate alerts written: one per key and window that held findings back.";
    AggregationUntracked: Findings "aggregation_keys_untracked", "exwatch_aggregation_keys_untracked_total", "findings", None,
        "Findings whose responder or originator key the alert bound could not track because its key table was full.";
    ReorderOverflow: Findings "reorder_overflow", "exwatch_reorder_overflow_total", "findings", None,
        "Findings released to the alert bound before every worker had passed their time, because the reorder buffer was full.";
}

impl Counter {
    pub fn def(self) -> &'static Def {
        &DEFS[self as usize]
    }

    /// The counters of one section, in table order.
    pub fn of(section: Section) -> impl Iterator<Item = Counter> {
        Counter::ALL.into_iter().filter(move |c| c.def().section == section)
    }
}

/// Violating host pairs remembered at most, per worker; more are counted, not kept.
pub const MAX_PAIRS: usize = 65_536;

/// Flows and bytes under one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub flows: u64,
    pub bytes: u64,
    pub alerts: u64,
    /// Of those alerts, the ones the alert bound held back (counted in aggregates).
    pub aggregated: u64,
    /// Of those alerts, the ones an exception accepted (verdict `accepted`).
    pub accepted: u64,
}

/// What one exception of the topology did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExceptionStats {
    /// Findings it covered: verdict `accepted`.
    pub accepted: u64,
    /// Findings it covered in flows that started after it expired.
    pub expired: u64,
}

/// What came of one input file: its frames, and the flows that began in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCount {
    pub frames: u64,
    pub flows: u64,
}

/// What one worker (or job) counted; also the plain snapshot every report reads.
#[derive(Clone, Debug)]
pub struct Counters {
    values: [u64; Counter::COUNT],
    /// Frames that did not decode, indexed by [`Skip::index`].
    pub skipped: [u64; Skip::ALL.len()],
    /// Per rule, in policy order.
    pub rules: Vec<RuleStats>,
    /// Restriction findings per evidence kind, in policy order.
    pub evidence: Vec<u64>,
    /// Of those, the ones the alert bound held back, per evidence kind.
    pub evidence_aggregated: Vec<u64>,
    /// Of those, the ones an exception accepted, per evidence kind.
    pub evidence_accepted: Vec<u64>,
    /// (originator, responder) -> violation and restriction findings.
    pub pairs: HashMap<(IpAddr, IpAddr), u64>,
    /// Per exception of the topology, in topology order: findings it accepted, and
    /// findings it would have accepted had it not expired.
    pub exceptions: Vec<ExceptionStats>,
    /// Packet time of the first and the last packet decoded.
    pub span: Option<(Ts, Ts)>,
    /// Per input file, by its index in the run's files: filled in when the tracker
    /// moves to another file and at the end, from [`Counter::Frames`] and
    /// [`Counter::Flows`] (nothing more per packet).
    pub files: Vec<FileCount>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            values: [0; Counter::COUNT],
            skipped: [0; Skip::ALL.len()],
            rules: Vec::new(),
            evidence: Vec::new(),
            evidence_aggregated: Vec::new(),
            evidence_accepted: Vec::new(),
            pairs: HashMap::new(),
            exceptions: Vec::new(),
            span: None,
            files: Vec::new(),
        }
    }
}

impl Index<Counter> for Counters {
    type Output = u64;

    fn index(&self, counter: Counter) -> &u64 {
        &self.values[counter as usize]
    }
}

impl IndexMut<Counter> for Counters {
    fn index_mut(&mut self, counter: Counter) -> &mut u64 {
        &mut self.values[counter as usize]
    }
}

impl Counters {
    pub fn new(rules: usize, evidence: usize) -> Counters {
        Counters {
            rules: vec![RuleStats::default(); rules],
            evidence: vec![0; evidence],
            evidence_aggregated: vec![0; evidence],
            evidence_accepted: vec![0; evidence],
            ..Counters::default()
        }
    }

    /// Zeroed counters sized for the policy's rules and evidence kinds (exceptions are
    /// counted as they come: [`Counters::record_exception`]).
    pub fn for_policy(policy: &Policy) -> Counters {
        Counters::new(policy.rules.len(), policy.evidence.len())
    }

    /// Counts a finding the exception at `exception` accepted (or, `expired`, would
    /// have accepted had it not expired).
    pub fn record_exception(&mut self, exception: usize, expired: bool) {
        if self.exceptions.len() <= exception {
            self.exceptions.resize(exception + 1, ExceptionStats::default());
        }
        if expired {
            self[Counter::ExceptionExpired] += 1;
            self.exceptions[exception].expired += 1;
        } else {
            self.exceptions[exception].accepted += 1;
        }
    }

    /// Counts a finding: under its verdict, under its rule (or for restrictions under
    /// its evidence kind), and for violations and restrictions under its host pair.
    pub fn record_finding(
        &mut self,
        verdict: Verdict,
        rule: usize,
        evidence: Option<usize>,
        pair: (IpAddr, IpAddr),
    ) {
        self[match verdict {
            Verdict::Advisory => Counter::Advisories,
            Verdict::Violation => Counter::Violations,
            Verdict::Restriction => Counter::Restrictions,
            Verdict::Accepted => Counter::Accepted,
            Verdict::Ok | Verdict::OutOfScope => return,
        }] += 1;
        let accepted = u64::from(verdict == Verdict::Accepted);
        match evidence {
            Some(e) => {
                if let Some(count) = self.evidence.get_mut(e) {
                    *count += 1;
                }
                if let Some(count) = self.evidence_accepted.get_mut(e) {
                    *count += accepted;
                }
            }
            None => {
                if let Some(stats) = self.rules.get_mut(rule) {
                    stats.alerts += 1;
                    stats.accepted += accepted;
                }
            }
        }
        if matches!(verdict, Verdict::Advisory | Verdict::Accepted) {
            return;
        }
        if let Some(count) = self.pairs.get_mut(&pair) {
            *count += 1;
        } else if self.pairs.len() < MAX_PAIRS {
            self.pairs.insert(pair, 1);
        } else {
            self[Counter::PairsUntracked] += 1;
        }
    }

    /// Counts an ended flow's traffic under its rule.
    pub fn record_rule_traffic(&mut self, rule: usize, bytes: u64) {
        if let Some(stats) = self.rules.get_mut(rule) {
            stats.flows += 1;
            stats.bytes += bytes;
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }

    /// The verdict's findings.
    pub fn findings(&self, verdict: Verdict) -> u64 {
        match verdict {
            Verdict::Advisory => self[Counter::Advisories],
            Verdict::Violation => self[Counter::Violations],
            Verdict::Restriction => self[Counter::Restrictions],
            Verdict::Accepted => self[Counter::Accepted],
            Verdict::Ok | Verdict::OutOfScope => 0,
        }
    }

    /// Widens the packet-time span to `ts`.
    #[inline]
    pub fn saw(&mut self, ts: Ts) {
        let (first, last) = self.span.get_or_insert((ts, ts));
        *first = (*first).min(ts);
        *last = (*last).max(ts);
    }

    pub fn merge(&mut self, other: &Counters) {
        if let Some((first, last)) = other.span {
            self.saw(first);
            self.saw(last);
        }
        for (a, b) in self.values.iter_mut().zip(other.values) {
            *a += b;
        }
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
        if self.rules.len() < other.rules.len() {
            self.rules.resize(other.rules.len(), RuleStats::default());
        }
        for (a, b) in self.rules.iter_mut().zip(&other.rules) {
            a.flows += b.flows;
            a.bytes += b.bytes;
            a.alerts += b.alerts;
            a.aggregated += b.aggregated;
            a.accepted += b.accepted;
        }
        if self.evidence.len() < other.evidence.len() {
            self.evidence.resize(other.evidence.len(), 0);
        }
        for (a, b) in self.evidence.iter_mut().zip(&other.evidence) {
            *a += b;
        }
        if self.evidence_aggregated.len() < other.evidence_aggregated.len() {
            self.evidence_aggregated.resize(other.evidence_aggregated.len(), 0);
        }
        for (a, b) in self.evidence_aggregated.iter_mut().zip(&other.evidence_aggregated) {
            *a += b;
        }
        if self.evidence_accepted.len() < other.evidence_accepted.len() {
            self.evidence_accepted.resize(other.evidence_accepted.len(), 0);
        }
        for (a, b) in self.evidence_accepted.iter_mut().zip(&other.evidence_accepted) {
            *a += b;
        }
        for (pair, count) in &other.pairs {
            *self.pairs.entry(*pair).or_insert(0) += count;
        }
        if self.exceptions.len() < other.exceptions.len() {
            self.exceptions.resize(other.exceptions.len(), ExceptionStats::default());
        }
        for (a, b) in self.exceptions.iter_mut().zip(&other.exceptions) {
            a.accepted += b.accepted;
            a.expired += b.expired;
        }
        if self.files.len() < other.files.len() {
            self.files.resize(other.files.len(), FileCount::default());
        }
        for (a, b) in self.files.iter_mut().zip(&other.files) {
            a.frames += b.frames;
            a.flows += b.flows;
        }
    }

    /// Adds what was counted since `since` (frames and flows) to input `file`.
    pub fn add_to_file(&mut self, file: u16, since: FileCount) {
        let file = usize::from(file);
        if self.files.len() <= file {
            self.files.resize(file + 1, FileCount::default());
        }
        let (frames, flows) = (self[Counter::Frames], self[Counter::Flows]);
        let count = &mut self.files[file];
        count.frames += frames - since.frames;
        count.flows += flows - since.flows;
    }

    /// The frames and flows counted so far, for [`Counters::add_to_file`].
    pub fn mark(&self) -> FileCount {
        FileCount { frames: self[Counter::Frames], flows: self[Counter::Flows] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_unique_names() {
        let mut prometheus: Vec<_> = Counter::ALL.iter().map(|c| c.def().prometheus).collect();
        prometheus.sort_unstable();
        prometheus.dedup();
        assert_eq!(prometheus.len(), Counter::COUNT);
        let mut keys: Vec<_> = Counter::ALL.iter().map(|c| (c.def().section.name(), c.def().key)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Counter::COUNT);
        for c in Counter::ALL {
            let def = c.def();
            assert!(def.prometheus.starts_with("exwatch_") && def.prometheus.ends_with("_total"), "{def:?}");
            assert!(!def.help.is_empty() && def.help.ends_with('.'), "{def:?}");
        }
    }

    #[test]
    fn merge_adds_every_counter() {
        let mut a = Counters::new(2, 1);
        let mut b = Counters::new(2, 1);
        for (i, c) in Counter::ALL.into_iter().enumerate() {
            a[c] = i as u64;
            b[c] = 100;
        }
        b.record_finding(
            Verdict::Violation,
            1,
            None,
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
        );
        a.merge(&b);
        assert_eq!(a[Counter::Frames], Counter::Frames as u64 + 100);
        assert_eq!(a[Counter::Violations], Counter::Violations as u64 + 101);
        assert_eq!(a.rules[1].alerts, 1);
        assert_eq!(a.pairs.len(), 1);
    }
}
