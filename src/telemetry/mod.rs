//! Counters and latency histograms. Each worker owns its own and they are merged at the
//! end of the run, so the packet path never touches shared counters. For live metrics,
//! each worker also publishes a copy into its own [`Gauges`] once per batch.

pub mod prometheus;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::decode::Skip;
use crate::flow::Flow;
use crate::policy::Verdict;

/// Violating host pairs remembered at most, per worker; more are counted, not kept.
pub const MAX_PAIRS: usize = 65_536;

/// Flows and bytes under one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub flows: u64,
    pub bytes: u64,
    pub alerts: u64,
}

/// What one worker counted.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub frames: u64,
    pub frame_bytes: u64,
    pub decoded: u64,
    /// Frames that did not decode, indexed by [`Skip::index`].
    pub skipped: [u64; Skip::ALL.len()],
    pub fragments_joined: u64,
    pub fragments_orphaned: u64,
    pub fragments_dropped: u64,
    pub icmp_errors: u64,
    pub icmp_prohibited: u64,
    pub flows: u64,
    pub flows_timed_out: u64,
    pub flows_evicted: u64,
    /// Flows no rule matched.
    pub unmatched: u64,
    /// Flows that ended with packets in one direction only.
    pub one_sided: u64,
    /// TCP flows picked up mid-stream (no SYN or SYN-ACK seen).
    pub midstream: u64,
    /// TCP flows with sequence gaps: segments the capture never saw.
    pub gapped: u64,
    /// Host-pair directions not remembered because the table was full.
    pub directions_untracked: u64,
    pub advisories: u64,
    pub violations: u64,
    pub restrictions: u64,
    /// Per rule, in policy order.
    pub rules: Vec<RuleStats>,
    /// Restriction findings per evidence kind, in policy order.
    pub evidence: Vec<u64>,
    /// (originator, responder) -> violation and restriction findings.
    pub pairs: HashMap<(IpAddr, IpAddr), u64>,
    pub pairs_overflow: u64,
}

impl Counters {
    pub fn new(rules: usize, evidence: usize) -> Counters {
        Counters {
            rules: vec![RuleStats::default(); rules],
            evidence: vec![0; evidence],
            ..Counters::default()
        }
    }

    /// Counts a finding: under its rule, or for restrictions under its evidence kind.
    pub fn record_alert(&mut self, flow: &Flow, verdict: Verdict, rule: usize, evidence: Option<usize>) {
        match verdict {
            Verdict::Advisory => self.advisories += 1,
            Verdict::Violation => self.violations += 1,
            Verdict::Restriction => self.restrictions += 1,
            Verdict::Ok | Verdict::OutOfScope => return,
        }
        match evidence {
            Some(e) => {
                if let Some(count) = self.evidence.get_mut(e) {
                    *count += 1;
                }
            }
            None => {
                if let Some(stats) = self.rules.get_mut(rule) {
                    stats.alerts += 1;
                }
            }
        }
        if verdict == Verdict::Advisory {
            return;
        }
        let pair = (flow.orig.src, flow.orig.dst);
        if let Some(count) = self.pairs.get_mut(&pair) {
            *count += 1;
        } else if self.pairs.len() < MAX_PAIRS {
            self.pairs.insert(pair, 1);
        } else {
            self.pairs_overflow += 1;
        }
    }

    pub fn record_flow_end(&mut self, flow: &Flow) {
        self.one_sided += u64::from(flow.pkts[0] == 0 || flow.pkts[1] == 0);
        self.midstream += u64::from(flow.is_tcp() && !flow.tcp.orig_syn && !flow.tcp.resp_synack);
        self.gapped += u64::from(flow.gaps > 0);
        if let Some(stats) = flow.rule.and_then(|r| self.rules.get_mut(r)) {
            stats.flows += 1;
            stats.bytes += flow.total_bytes();
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }

    pub fn merge(&mut self, other: &Counters) {
        self.frames += other.frames;
        self.frame_bytes += other.frame_bytes;
        self.decoded += other.decoded;
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
        self.fragments_joined += other.fragments_joined;
        self.fragments_orphaned += other.fragments_orphaned;
        self.fragments_dropped += other.fragments_dropped;
        self.icmp_errors += other.icmp_errors;
        self.icmp_prohibited += other.icmp_prohibited;
        self.flows += other.flows;
        self.flows_timed_out += other.flows_timed_out;
        self.flows_evicted += other.flows_evicted;
        self.unmatched += other.unmatched;
        self.one_sided += other.one_sided;
        self.midstream += other.midstream;
        self.gapped += other.gapped;
        self.directions_untracked += other.directions_untracked;
        self.advisories += other.advisories;
        self.violations += other.violations;
        self.restrictions += other.restrictions;
        if self.rules.len() < other.rules.len() {
            self.rules.resize(other.rules.len(), RuleStats::default());
        }
        for (a, b) in self.rules.iter_mut().zip(&other.rules) {
            a.flows += b.flows;
            a.bytes += b.bytes;
            a.alerts += b.alerts;
        }
        if self.evidence.len() < other.evidence.len() {
            self.evidence.resize(other.evidence.len(), 0);
        }
        for (a, b) in self.evidence.iter_mut().zip(&other.evidence) {
            *a += b;
        }
        for (pair, count) in &other.pairs {
            *self.pairs.entry(*pair).or_insert(0) += count;
        }
        self.pairs_overflow += other.pairs_overflow;
    }
}

/// One packet in this many is timed stage by stage; timing every packet would cost
/// more than some stages.
pub const LATENCY_SAMPLE: u64 = 64;

/// Per-stage latency in nanoseconds, sampled.
#[derive(Clone, Debug)]
pub struct Latency {
    pub decode: Histogram<u64>,
    pub flow: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        let histogram =
            || Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("static histogram bounds are valid");
        Latency { decode: histogram(), flow: histogram() }
    }
}

impl Latency {
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.decode.add(&other.decode);
        let _ = self.flow.add(&other.flow);
    }
}

/// One worker's counters as last published, readable while the worker runs.
pub struct Gauges {
    pub frames: AtomicU64,
    pub frame_bytes: AtomicU64,
    pub decoded: AtomicU64,
    pub skipped: [AtomicU64; Skip::ALL.len()],
    pub flows_active: AtomicU64,
    pub flows: AtomicU64,
    pub flows_evicted: AtomicU64,
    pub flows_timed_out: AtomicU64,
    /// Findings per rule (violations and advisories), in policy order.
    pub rule_alerts: Vec<AtomicU64>,
    /// Restrictions per evidence kind, in policy order.
    pub evidence_alerts: Vec<AtomicU64>,
    pub latency: Mutex<Latency>,
}

impl Gauges {
    pub fn new(rules: usize, evidence: usize) -> Gauges {
        Gauges {
            frames: AtomicU64::new(0),
            frame_bytes: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            skipped: Default::default(),
            flows_active: AtomicU64::new(0),
            flows: AtomicU64::new(0),
            flows_evicted: AtomicU64::new(0),
            flows_timed_out: AtomicU64::new(0),
            rule_alerts: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            evidence_alerts: (0..evidence).map(|_| AtomicU64::new(0)).collect(),
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
        set(&self.frames, &|c| c.frames);
        set(&self.frame_bytes, &|c| c.frame_bytes);
        set(&self.decoded, &|c| c.decoded);
        for (i, gauge) in self.skipped.iter().enumerate() {
            set(gauge, &|c| c.skipped[i]);
        }
        self.flows_active.store(flows_active as u64, Ordering::Relaxed);
        set(&self.flows, &|c| c.flows);
        set(&self.flows_evicted, &|c| c.flows_evicted);
        set(&self.flows_timed_out, &|c| c.flows_timed_out);
        for (i, gauge) in self.rule_alerts.iter().enumerate() {
            set(gauge, &|c| c.rules.get(i).map_or(0, |r| r.alerts));
        }
        for (i, gauge) in self.evidence_alerts.iter().enumerate() {
            set(gauge, &|c| c.evidence.get(i).copied().unwrap_or(0));
        }
    }

    pub fn publish_latency(&self, latency: &Latency) {
        if let Ok(mut shared) = self.latency.lock() {
            shared.clone_from(latency);
        }
    }
}

/// Sum of one gauge over all workers.
pub fn total(gauges: &[std::sync::Arc<Gauges>], field: impl Fn(&Gauges) -> &AtomicU64) -> u64 {
    gauges.iter().map(|g| field(g).load(Ordering::Relaxed)).sum()
}
