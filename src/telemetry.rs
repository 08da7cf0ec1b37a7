//! Counters and latency histograms. Each worker owns its own and they are merged at the
//! end of the run, so the packet path never touches shared counters.

use std::collections::HashMap;
use std::net::IpAddr;

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
    pub advisories: u64,
    pub violations: u64,
    pub restrictions: u64,
    /// Per rule, in policy order.
    pub rules: Vec<RuleStats>,
    /// (originator, responder) -> violation and restriction findings.
    pub pairs: HashMap<(IpAddr, IpAddr), u64>,
    pub pairs_overflow: u64,
}

impl Counters {
    pub fn new(rules: usize) -> Counters {
        Counters { rules: vec![RuleStats::default(); rules], ..Counters::default() }
    }

    pub fn record_alert(&mut self, flow: &Flow, verdict: Verdict, rule: usize) {
        match verdict {
            Verdict::Advisory => self.advisories += 1,
            Verdict::Violation => self.violations += 1,
            Verdict::Restriction => self.restrictions += 1,
            Verdict::Ok | Verdict::OutOfScope => return,
        }
        if let Some(stats) = self.rules.get_mut(rule) {
            stats.alerts += 1;
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
