//! The alert bound: how a flood is kept from drowning the EVE log while every number
//! stays exact.
//!
//! [`Limiter`] sees the alerts of one stream of packets (one capture, or one file of
//! several) in a canonical order (the writer's reorder buffer, `pipeline/order.rs`, makes
//! it) and decides, alert by alert, whether it is written or held back. Held-back alerts
//! are counted into one aggregate per key, written when the key's window of capture time
//! closes (or at the end of input) as an `alert` with a `policy.aggregate` object. Three
//! kinds of key, tried in this order:
//!
//! - by **responder**: the same finding (rule, and evidence for restrictions) toward the
//!   same responder address, port and protocol: a flood at one service;
//! - by **originator**: the same finding from the same originator, whatever the
//!   responders and ports: a scan;
//! - by **rate**: the same finding past the global cap on alerts written per second of
//!   capture time, whatever the keys: what protects the log from a flood that spreads
//!   over many keys.
//!
//! The first [`Settings::per_key`] alerts of a responder or originator key in a window
//! are written; the rest are held. A key's window opens with its first alert and lasts
//! [`Settings::window_ns`]. Rules whose `aggregate` is false (by default: restriction
//! evidence) are never held by responder or originator, only by the rate cap.
//!
//! With `--flows=in-scope` the same limiter bounds in-scope flow events
//! ([`Limiter::bounding_flows`]): keyed alike (the finding being the flow's rule and
//! verdict), with limits of their own ([`Settings::flows_per_key`],
//! [`Settings::flows_per_second`]), held into aggregate flow records; a flow an alert
//! names (written on its own, or among the first [`LISTED`] an aggregate alert lists) is
//! never held, so every alert joins one flow event.
//!
//! Only the writer's thread owns a limiter; it is a pure function of the alerts it is
//! given, in the order given, so the same order gives the same lines. It never sees a
//! packet and never decides a verdict. Its key table has a bound: past it, an alert
//! whose key is new is judged by the keys it has and the rate cap only, and counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::flow::{Event, TO_CLIENT, TO_SERVER};
use crate::policy::{Engine, Verdict};
use crate::time::Ts;
use crate::time::SECOND;

/// How alerts are bounded. Defaults are documented in `docs/eve.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Alerts written per responder or originator key in a window; the rest are held.
    pub per_key: u64,
    /// A key's window, in capture time.
    pub window_ns: u64,
    /// Alerts written at most per second of capture time, all keys together; 0: no cap.
    pub per_second: u64,
    /// The same for in-scope flow events (`--flows=in-scope`): higher, since every
    /// flow at an Exchange server is in scope, most of them ordinary traffic.
    pub flows_per_key: u64,
    pub flows_per_second: u64,
    /// Responder and originator keys tracked at once. A key costs about 100 bytes, and
    /// up to 3 KiB once it holds alerts from many addresses and ports (its distinct
    /// counts), so the default bounds the table near 50 MiB whatever the traffic.
    pub max_keys: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            per_key: 5,
            window_ns: 60 * SECOND,
            per_second: 100,
            flows_per_key: 100,
            flows_per_second: 1_000,
            max_keys: 16_384,
        }
    }
}

/// What a limiter lets out, in order.
// Events travel by value everywhere else too; boxing each one would cost an allocation
// per alert for the rare aggregate's sake.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Written {
    /// An event to write as it is.
    Event(Event),
    /// What a key held back in one window.
    Aggregate(Box<Aggregate>),
}

/// Which kind of key an aggregate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum By {
    Responder,
    Originator,
    Rate,
}

impl By {
    pub fn name(self) -> &'static str {
        match self {
            By::Responder => "responder",
            By::Originator => "originator",
            By::Rate => "rate",
        }
    }
}

/// The alerts one key held back in one window.
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub by: By,
    /// The first alert held back: its flow is the example the line shows (addresses,
    /// ports, flow id, community id), its finding the aggregate's.
    pub example: Event,
    /// Alerts held back (one per flow and verdict, as alerts are).
    pub flows: u64,
    /// Packets and bytes of those flows, as each alert's snapshot had them.
    pub packets: u64,
    pub bytes: u64,
    pub originators: u64,
    pub responders: u64,
    pub ports: u64,
    /// Whether the distinct counts are estimates (past [`EXACT`] distinct values).
    pub estimated: bool,
    pub first: Ts,
    pub last: Ts,
    /// Responder and originator keys: alerts of the key written in the window.
    pub written: Option<u64>,
    /// Aggregate alerts: the ids of the first [`LISTED`] flows held, in order.
    pub flow_ids: Vec<u64>,
}

/// What a limiter counted: held-back alerts by finding, aggregates written, alerts
/// whose key was not tracked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Per rule, in policy order: its own findings held back.
    pub rules: Vec<u64>,
    /// Per evidence kind, in policy order: restrictions held back.
    pub evidence: Vec<u64>,
    pub aggregates: u64,
    pub untracked: u64,
    /// Flow events held back into aggregate flow records, and those records.
    pub flows_held: u64,
    pub flow_aggregates: u64,
}

impl Counts {
    pub fn held(&self) -> u64 {
        self.rules.iter().chain(&self.evidence).sum()
    }

    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.rules.iter_mut().zip(&other.rules) {
            *a += b;
        }
        for (a, b) in self.evidence.iter_mut().zip(&other.evidence) {
            *a += b;
        }
        self.aggregates += other.aggregates;
        self.untracked += other.untracked;
        self.flows_held += other.flows_held;
        self.flow_aggregates += other.flow_aggregates;
    }
}

/// A finding: the rule, the evidence kind for restrictions, and the exception that
/// accepted it (accepted findings are aggregated apart from the rule's others, so an
/// aggregate has one verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Finding {
    rule: usize,
    evidence: Option<usize>,
    exception: Option<u16>,
    /// Flow events: the flow's verdict (its worst finding's, or its rule's).
    flow: Option<Verdict>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Responder { finding: Finding, resp: IpAddr, port: u16, proto: u8 },
    Originator { finding: Finding, orig: IpAddr },
    Rate { finding: Finding },
}

impl Key {
    fn by(&self) -> By {
        match self {
            Key::Responder { .. } => By::Responder,
            Key::Originator { .. } => By::Originator,
            Key::Rate { .. } => By::Rate,
        }
    }
}

struct Entry {
    written: u64,
    held: Option<Box<Held>>,
}

struct Held {
    example: Event,
    flows: u64,
    packets: u64,
    bytes: u64,
    originators: Distinct,
    responders: Distinct,
    ports: Distinct,
    first: Ts,
    last: Ts,
    flow_ids: Vec<u64>,
}

/// Flow ids an aggregate alert lists at most: the first flows it holds.
pub const LISTED: usize = 64;

/// One stream's limiter.
pub struct Limiter<'a> {
    engine: &'a Engine,
    settings: Settings,
    /// Per rule: whether its own findings, and restriction evidence on it, may be held
    /// by responder or originator.
    rule_aggregates: Vec<(bool, bool)>,
    keys: HashMap<Key, Entry>,
    /// Keys in the order their windows opened, which is the order they close.
    expiry: VecDeque<(Ts, Key)>,
    /// The current second of capture time and the alerts written in it; the same for
    /// flow events.
    second: (u64, u64),
    flow_second: (u64, u64),
    /// Bounding flow events: the flows alerts name whose flow event has not come yet.
    named: Option<HashSet<u64, foldhash::fast::FixedState>>,
    /// The latest time seen: time given to the limiter never goes back.
    now: Ts,
    out: Vec<Written>,
    pub counts: Counts,
}

impl<'a> Limiter<'a> {
    pub fn new(engine: &'a Engine, settings: Settings) -> Limiter<'a> {
        let policy = &engine.policy;
        Limiter {
            engine,
            settings,
            rule_aggregates: policy
                .rules
                .iter()
                .map(|r| (r.aggregate.unwrap_or(true), r.aggregate.unwrap_or(false)))
                .collect(),
            keys: HashMap::new(),
            expiry: VecDeque::new(),
            second: (0, 0),
            flow_second: (0, 0),
            named: None,
            now: Ts(0),
            out: Vec::new(),
            counts: Counts {
                rules: vec![0; policy.rules.len()],
                evidence: vec![0; policy.evidence.len()],
                ..Counts::default()
            },
        }
    }

    /// Judges one event at capture time `at`: an alert; with [`Limiter::bounding_flows`],
    /// an in-scope flow event too; anything else is let through.
    pub fn push(&mut self, at: Ts, event: Event) {
        let Some((finding, keyed)) = self.finding(&event) else {
            self.out.push(Written::Event(event));
            return;
        };
        let (Event::Alert { flow, .. } | Event::Flow { flow, .. }) = &event;
        let t = flow.orig();
        self.now = self.now.max(at);
        let now = self.now;
        self.close_until(now);
        // The responder key first: in a flood of spoofed sources it holds everything,
        // and no originator key is opened for sources seen once.
        let flows = finding.flow.is_some();
        let s = &self.settings;
        let (per_key, per_second) =
            if flows { (s.flows_per_key, s.flows_per_second) } else { (s.per_key, s.per_second) };
        let mut keys = [None, None];
        if keyed {
            let candidates = [
                Key::Responder { finding, resp: t.dst, port: t.dport, proto: t.proto },
                Key::Originator { finding, orig: t.src },
            ];
            for (slot, key) in keys.iter_mut().zip(candidates) {
                *slot = self.open(key, now);
                if slot.is_some_and(|k| self.keys.get(&k).is_some_and(|e| e.written >= per_key)) {
                    self.hold(key, event, now);
                    return;
                }
            }
            if keys.iter().any(Option::is_none) {
                self.counts.untracked += 1;
            }
        }
        let second = now.0 / SECOND;
        // Flow events have a rate of their own: a flood of flows does not silence alerts.
        let rate = if flows { &mut self.flow_second } else { &mut self.second };
        if rate.0 != second {
            *rate = (second, 0);
        }
        if per_second > 0 && rate.1 >= per_second {
            let key = Key::Rate { finding };
            // Rate keys are one per finding at most, so they are kept whatever the bound.
            self.open_always(key, now);
            self.hold(key, event, now);
            return;
        }
        rate.1 += 1;
        for key in keys.iter().flatten() {
            if let Some(entry) = self.keys.get_mut(key) {
                entry.written += 1;
            }
        }
        if let (Some(named), Event::Alert { flow, .. }) = (&mut self.named, &event) {
            named.insert(flow.id);
        }
        self.out.push(Written::Event(event));
    }

    /// Flow events pass through the limiter too (`--flows=in-scope`): past the per-key
    /// limit they are counted into aggregate flow records, by the same keys as alerts
    /// (the finding being the flow's rule and verdict), except the flows an alert names
    /// (one written on its own, or listed by an aggregate alert), which always get their
    /// own flow event, so that every alert joins one.
    pub fn bounding_flows(mut self) -> Limiter<'a> {
        self.named = Some(HashSet::default());
        self
    }

    /// The finding `event` is counted under, and whether responder and originator keys
    /// may hold it; `None`: the event passes as it is.
    fn finding(&mut self, event: &Event) -> Option<(Finding, bool)> {
        match *event {
            Event::Alert { rule, evidence, verdict, exception, .. } => {
                let finding = Finding { rule, evidence, exception, flow: None };
                let (own, restrictions) = self.rule_aggregates.get(rule).copied().unwrap_or((true, false));
                let keyed =
                    if verdict == Verdict::Restriction || evidence.is_some() { restrictions } else { own };
                Some((finding, keyed))
            }
            Event::Flow { ref flow, .. } => {
                let named = self.named.as_mut()?;
                let rule = flow.rule()?;
                if named.remove(&flow.id) {
                    return None;
                }
                let verdict = super::soc::flow_verdict(self.engine, flow);
                Some((Finding { rule, evidence: None, exception: None, flow: Some(verdict) }, true))
            }
        }
    }

    /// No alert before capture time `at` will come: closes the windows that end by then.
    pub fn advance(&mut self, at: Ts) {
        self.close_until(at.max(self.now));
    }

    /// The input is over: closes every window.
    pub fn finish(&mut self) {
        while let Some((_, key)) = self.expiry.pop_front() {
            self.close(key);
        }
    }

    /// What was let out since the last call.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Written> {
        self.out.drain(..)
    }

    /// The key's entry, opened if new and there is room; `None` if it could not be.
    fn open(&mut self, key: Key, now: Ts) -> Option<Key> {
        if self.keys.contains_key(&key) {
            return Some(key);
        }
        if self.keys.len() >= self.settings.max_keys {
            return None;
        }
        self.open_always(key, now);
        Some(key)
    }

    fn open_always(&mut self, key: Key, now: Ts) {
        if !self.keys.contains_key(&key) {
            let end = now.saturating_add(self.settings.window_ns.max(1));
            self.keys.insert(key, Entry { written: 0, held: None });
            self.expiry.push_back((end, key));
        }
    }

    fn hold(&mut self, key: Key, event: Event, now: Ts) {
        let flow = match event {
            Event::Alert { flow, rule, evidence, .. } => {
                match evidence {
                    Some(e) => self.counts.evidence[e] += 1,
                    None => self.counts.rules[rule] += 1,
                }
                flow
            }
            Event::Flow { flow, .. } => {
                self.counts.flows_held += 1;
                flow
            }
        };
        let Some(entry) = self.keys.get_mut(&key) else {
            return;
        };
        let held = entry.held.get_or_insert_with(|| {
            Box::new(Held {
                example: event,
                flows: 0,
                packets: 0,
                bytes: 0,
                originators: Distinct::default(),
                responders: Distinct::default(),
                ports: Distinct::default(),
                first: now,
                last: now,
                flow_ids: Vec::new(),
            })
        });
        // An aggregate alert lists the first flows it holds; their flow events are
        // never held, so each listed id joins one.
        if matches!(event, Event::Alert { .. }) && held.flow_ids.len() < LISTED {
            held.flow_ids.push(flow.id);
            if let Some(named) = &mut self.named {
                named.insert(flow.id);
            }
        }
        held.flows += 1;
        held.packets += flow.pkts[TO_SERVER] + flow.pkts[TO_CLIENT];
        held.bytes += flow.bytes[TO_SERVER] + flow.bytes[TO_CLIENT];
        held.originators.insert(&flow.orig().src);
        held.responders.insert(&flow.orig().dst);
        held.ports.insert(&(flow.orig().proto, flow.orig().dport));
        held.last = now;
    }

    fn close_until(&mut self, now: Ts) {
        while self.expiry.front().is_some_and(|&(end, _)| end <= now) {
            if let Some((_, key)) = self.expiry.pop_front() {
                self.close(key);
            }
        }
    }

    fn close(&mut self, key: Key) {
        let Some(entry) = self.keys.remove(&key) else {
            return;
        };
        let Some(held) = entry.held else {
            return;
        };
        match held.example {
            Event::Alert { .. } => self.counts.aggregates += 1,
            Event::Flow { .. } => self.counts.flow_aggregates += 1,
        }
        let estimated = [&held.originators, &held.responders, &held.ports].iter().any(|d| d.is_estimate());
        self.out.push(Written::Aggregate(Box::new(Aggregate {
            by: key.by(),
            example: held.example,
            flows: held.flows,
            packets: held.packets,
            bytes: held.bytes,
            originators: held.originators.count(),
            responders: held.responders.count(),
            ports: held.ports.count(),
            estimated,
            first: held.first,
            last: held.last,
            written: (key.by() != By::Rate).then_some(entry.written),
            flow_ids: held.flow_ids,
        })));
    }
}

/// Distinct values counted exactly up to this many, estimated past it.
pub const EXACT: usize = 64;

/// HyperLogLog registers (2^10: about 3% standard error, 1 KiB).
const REGISTER_BITS: u32 = 10;

/// A distinct count: exact for a few values, then a HyperLogLog sketch, so a spoofed
/// flood's millions of sources cost a kilobyte per aggregate, not a set of them.
/// Hashes are seeded constants: the same values give the same estimate on every run.
#[derive(Debug)]
enum Distinct {
    Exact(Vec<u64>),
    Sketch(Box<[u8; 1 << REGISTER_BITS]>),
}

impl Default for Distinct {
    fn default() -> Distinct {
        Distinct::Exact(Vec::new())
    }
}

impl Distinct {
    fn insert(&mut self, value: &impl std::hash::Hash) {
        // foldhash's fast hash is not made for sketches: spread its bits (SplitMix64's
        // finaliser), since the register index and the rank read different bits.
        let mut hash = foldhash::fast::FixedState::with_seed(0x626f_756e_6421).hash_one(value);
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^= hash >> 31;
        match self {
            Distinct::Exact(seen) => {
                if seen.contains(&hash) {
                    return;
                }
                seen.push(hash);
                if seen.len() > EXACT {
                    let mut registers = Box::new([0u8; 1 << REGISTER_BITS]);
                    for &h in seen.iter() {
                        Distinct::register(&mut registers, h);
                    }
                    *self = Distinct::Sketch(registers);
                }
            }
            Distinct::Sketch(registers) => Distinct::register(registers, hash),
        }
    }

    fn register(registers: &mut [u8; 1 << REGISTER_BITS], hash: u64) {
        let index = (hash >> (64 - REGISTER_BITS)) as usize;
        let rank = ((hash << REGISTER_BITS) | (1 << (REGISTER_BITS - 1))).leading_zeros() as u8 + 1;
        registers[index] = registers[index].max(rank);
    }

    fn is_estimate(&self) -> bool {
        matches!(self, Distinct::Sketch(_))
    }

    fn count(&self) -> u64 {
        match self {
            Distinct::Exact(seen) => seen.len() as u64,
            Distinct::Sketch(registers) => {
                let m = registers.len() as f64;
                let sum: f64 = registers.iter().map(|&r| (-f64::from(r)).exp2()).sum();
                let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
                let zeros = registers.iter().filter(|&&r| r == 0).count();
                let estimate = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
                // Never below what was counted exactly before the sketch took over.
                (estimate.round() as u64).max(EXACT as u64 + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::decode::Tuple;
    use crate::flow::{Confidence, Direction, Flow, FlowKey};
    use crate::policy::builtin;

    fn engine() -> Engine {
        let policy = Arc::new(builtin::policy().expect("policy"));
        Engine::new(policy, Arc::new(builtin::topology().expect("topology")), 10)
    }

    fn rule(engine: &Engine, id: &str) -> usize {
        engine.policy.rules.iter().position(|r| r.id == id).expect("rule")
    }

    fn alert(rule: usize, src: (u32, u16), dst: (u32, u16), ts: u64) -> Event {
        let orig = Tuple {
            src: IpAddr::V4(Ipv4Addr::from(src.0)),
            dst: IpAddr::V4(Ipv4Addr::from(dst.0)),
            sport: src.1,
            dport: dst.1,
            proto: 6,
        };
        let key = FlowKey::of(&orig);
        let judgement = crate::policy::Judgement {
            rule: Some(rule),
            orig_role: crate::policy::Role::External,
            resp_role: crate::policy::Role::Mailbox,
        };
        let mut flow = Flow::new(key, orig, Direction::Observed, ts, Ts(ts), Default::default(), judgement);
        flow.pkts[TO_SERVER] = 1;
        flow.bytes[TO_SERVER] = 60;
        Event::Alert {
            ts: Ts(ts),
            at: Ts(ts),
            flow,
            tunnel: None,
            verdict: Verdict::Violation,
            rule,
            evidence: None,
            confidence: Confidence::High,
            detail: None,
            source: None,
            exception: None,
        }
    }

    fn run(limiter: &mut Limiter, events: impl IntoIterator<Item = Event>) -> (u64, Vec<Aggregate>) {
        let mut written = 0;
        let mut aggregates = Vec::new();
        for event in events {
            let Event::Alert { ts, .. } = event else { unreachable!() };
            limiter.push(ts, event);
        }
        limiter.finish();
        for w in limiter.drain() {
            match w {
                Written::Event(_) => written += 1,
                Written::Aggregate(a) => aggregates.push(*a),
            }
        }
        (written, aggregates)
    }

    #[test]
    fn a_flood_at_one_port_is_a_few_alerts_and_one_exact_aggregate() {
        let engine = engine();
        let r = rule(&engine, "external-to-mailbox");
        let mut limiter = Limiter::new(&engine, Settings::default());
        let flood = (0..10_000u32)
            .map(|i| alert(r, (0x6440_0000 + i, 1024), (0x0a0a_010b, 3389), 1000 + u64::from(i)));
        let (written, aggregates) = run(&mut limiter, flood);
        assert_eq!(written, 5);
        assert_eq!(aggregates.len(), 1);
        let a = &aggregates[0];
        assert_eq!(
            (a.by, a.flows, a.packets, a.bytes, a.written),
            (By::Responder, 9_995, 9_995, 599_700, Some(5))
        );
        assert!(a.estimated && a.originators.abs_diff(9_995) < 9_995 / 10, "{}", a.originators);
        assert_eq!((a.responders, a.ports), (1, 1));
        assert_eq!(limiter.counts.rules[r], 9_995);
        assert_eq!(limiter.counts.held(), 9_995);
    }

    #[test]
    fn a_scan_is_held_by_originator_with_its_port_count() {
        let engine = engine();
        let r = rule(&engine, "external-to-mailbox");
        let mut limiter = Limiter::new(&engine, Settings::default());
        let scan =
            (0..1_000u16).map(|p| alert(r, (0xcb00_7142, 40_000), (0x0a0a_010b, 1 + p), 1000 + u64::from(p)));
        let (written, aggregates) = run(&mut limiter, scan);
        assert_eq!(written, 5);
        assert_eq!(aggregates.len(), 1);
        let a = &aggregates[0];
        assert_eq!((a.by, a.flows, a.originators, a.responders), (By::Originator, 995, 1, 1));
        assert!(a.ports.abs_diff(995) < 100, "{}", a.ports);
    }

    #[test]
    fn windows_close_on_capture_time_and_the_cap_holds_the_rest() {
        let engine = engine();
        let r = rule(&engine, "external-to-mailbox");
        let settings =
            Settings { per_key: 2, window_ns: SECOND, per_second: 3, max_keys: 4, ..Settings::default() };
        let mut limiter = Limiter::new(&engine, settings);
        // Ten distinct keys in the first second: three written, the rest past the cap.
        let spread = (0..10u32)
            .map(|i| alert(r, (0x6440_0000 + i, 1024), (0x0a0a_0100 + i, 80 + i as u16), 1 + u64::from(i)));
        // Two seconds later every window has closed: a new window writes again.
        let later = std::iter::once(alert(r, (0x6440_0000, 1024), (0x0a0a_0100, 80), 3 * SECOND));
        let (written, aggregates) = run(&mut limiter, spread.chain(later));
        assert_eq!(written, 4);
        let total: u64 = aggregates.iter().map(|a| a.flows).sum();
        assert_eq!(total, 7);
        assert!(aggregates.iter().all(|a| a.by == By::Rate));
        assert!(limiter.counts.untracked > 0, "four keys at most");
    }

    #[test]
    fn restrictions_are_not_held_by_key_unless_the_rule_says() {
        let engine = engine();
        let r = rule(&engine, "exchange-internal");
        let mut limiter = Limiter::new(&engine, Settings::default());
        let drops = (0..20u64).map(|i| {
            let Event::Alert { ts, flow, confidence, .. } =
                alert(r, (0x0a0a_010b, 50_000 + i as u16), (0x0a0a_0005, 445), 1000 + i)
            else {
                unreachable!()
            };
            Event::Alert {
                ts,
                at: ts,
                flow,
                tunnel: None,
                verdict: Verdict::Restriction,
                rule: r,
                evidence: Some(1),
                confidence,
                detail: None,
                source: None,
                exception: None,
            }
        });
        let (written, aggregates) = run(&mut limiter, drops);
        assert_eq!((written, aggregates.len()), (20, 0));
    }

    #[test]
    fn a_rule_that_never_aggregates_is_held_by_the_rate_cap_only() {
        // The key as a site would write it in its policy file.
        let text = include_str!("../../rules/exchange.toml")
            .replace("id = \"external-to-mailbox\"\n", "id = \"external-to-mailbox\"\naggregate = false\n");
        let policy =
            crate::policy::Policy::parse(std::path::Path::new("exchange.toml"), &text).expect("policy");
        let r = policy.rules.iter().position(|r| r.id == "external-to-mailbox").expect("rule");
        assert_eq!(policy.rules[r].aggregate, Some(false));
        let engine = Engine::new(Arc::new(policy), Arc::new(builtin::topology().expect("topology")), 10);
        let mut limiter = Limiter::new(&engine, Settings::default());
        let flood = (0..1_000u32)
            .map(|i| alert(r, (0x6440_0000 + i, 1024), (0x0a0a_010b, 3389), 1000 + u64::from(i)));
        let (written, aggregates) = run(&mut limiter, flood);
        assert_eq!(written, Settings::default().per_second);
        assert_eq!(aggregates.len(), 1);
        assert_eq!((aggregates[0].by, aggregates[0].flows, aggregates[0].written), (By::Rate, 900, None));
    }

    /// The flow bound: the flows alerts name (written ones, and those an aggregate alert
    /// lists) get their own flow event; the key's other flows past its limit are counted
    /// into one aggregate flow record, exactly.
    #[test]
    fn flows_an_alert_names_pass_and_the_rest_are_aggregated() {
        let engine = engine();
        let r = rule(&engine, "external-to-mailbox");
        let settings = Settings { per_key: 2, flows_per_key: 3, ..Settings::default() };
        let mut limiter = Limiter::new(&engine, settings).bounding_flows();
        let flood: Vec<Event> = (0..30u32)
            .map(|i| alert(r, (0x6440_0000 + i, 1024), (0x0a0a_010b, 3389), 1000 + u64::from(i)))
            .collect();
        for (i, event) in flood.iter().enumerate() {
            // Ten of the flows alerted; all thirty end.
            if i < 10 {
                limiter.push(event_ts(event), *event);
            }
        }
        for event in &flood {
            let Event::Alert { flow, .. } = *event else { unreachable!() };
            let at = Ts(flow.start.0 + 5 * SECOND);
            limiter.push(at, Event::Flow { flow, tunnel: None, reason: crate::flow::EndReason::Timeout, at });
        }
        limiter.finish();
        let (mut alerts, mut flows, mut records) = (0, 0, Vec::new());
        for w in limiter.drain() {
            match w {
                Written::Event(Event::Alert { .. }) => alerts += 1,
                Written::Event(Event::Flow { .. }) => flows += 1,
                Written::Aggregate(a) => records.push(*a),
            }
        }
        assert_eq!(alerts, 2);
        let (alert_agg, flow_agg): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|a| matches!(a.example, Event::Alert { .. }));
        assert_eq!(alert_agg.len(), 1);
        assert_eq!((alert_agg[0].flows, alert_agg[0].flow_ids.len()), (8, 8));
        // Ten named flows, then three more of the key; seventeen counted.
        assert_eq!(flows, 13);
        assert_eq!(flow_agg.len(), 1);
        assert_eq!((flow_agg[0].flows, flow_agg[0].packets, flow_agg[0].by), (17, 17, By::Responder));
        assert!(flow_agg[0].flow_ids.is_empty());
        assert_eq!((limiter.counts.flows_held, limiter.counts.flow_aggregates), (17, 1));
    }

    fn event_ts(event: &Event) -> Ts {
        match *event {
            Event::Alert { at, .. } | Event::Flow { at, .. } => at,
        }
    }

    #[test]
    fn distinct_counts_are_exact_then_close() {
        for n in [1u64, 10, 64, 65, 1_000, 100_000] {
            let mut d = Distinct::default();
            for i in 0..n {
                d.insert(&i);
                d.insert(&i);
            }
            let count = d.count();
            if n <= EXACT as u64 {
                assert_eq!(count, n);
            } else {
                assert!(count.abs_diff(n) * 10 < n, "{n}: {count}");
            }
        }
    }
}
