//! One worker's flow table and the state machine that feeds it.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::frag::{Fragments, Later};
use super::key::{HostPair, KeyHashState};
use super::{Confidence, Direction, Flow, FlowKey, TO_CLIENT, TO_SERVER};
use crate::decode::{proto, tcp_flags, Fragment, IcmpError, Packet, Skip, Transport, Ts, Tuple, Vlans};
use crate::policy::{Engine, EvidenceKind, Facts, Role, Verdict};
use crate::telemetry::{Counter, Counters};

const SECOND: u64 = 1_000_000_000;

/// Bounds and timeouts of one tracker. Timeouts are in packet time.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Flows this tracker holds at most; past it the flow with the oldest idle deadline
    /// is evicted (and counted).
    pub max_flows: usize,
    pub tcp_idle_ns: u64,
    pub udp_idle_ns: u64,
    pub other_idle_ns: u64,
    /// How long a closed TCP flow (both FINs or a RST) is kept for stragglers.
    pub closed_idle_ns: u64,
    /// A SYN retried with no answer within this time is restriction evidence.
    pub syn_timeout_ns: u64,
    pub max_fragments: usize,
    pub fragment_timeout_ns: u64,
    /// Emit an [`Event::Flow`] when each flow ends (for the EVE log or an observer).
    pub flow_events: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_flows: 500_000,
            tcp_idle_ns: 300 * SECOND,
            udp_idle_ns: 60 * SECOND,
            other_idle_ns: 60 * SECOND,
            closed_idle_ns: 5 * SECOND,
            syn_timeout_ns: 3 * SECOND,
            max_fragments: 65_536,
            fragment_timeout_ns: 30 * SECOND,
            flow_events: false,
        }
    }
}

/// Something worth writing out. Carries a snapshot of the flow.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A finding: `rule` is the matched rule; `evidence` is set for restrictions.
    Alert {
        ts: Ts,
        flow: Flow,
        verdict: Verdict,
        rule: usize,
        evidence: Option<usize>,
        confidence: Confidence,
    },
    /// A flow ended (idle, closed, evicted or end of input).
    Flow { flow: Flow },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    SynCheck,
    Idle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Ts,
    kind: TimerKind,
    key: FlowKey,
    flow_id: u64,
}

/// The flow table of one worker.
pub struct Tracker {
    engine: Arc<Engine>,
    settings: Settings,
    flows: HashMap<FlowKey, Flow, KeyHashState>,
    timers: BinaryHeap<Reverse<Timer>>,
    frags: Fragments,
    now: Ts,
    counters: Counters,
    events: Vec<Event>,
    /// (sender, receiver) host pairs, and when the capture first showed traffic that way;
    /// bounded by `max_flows` (past it, new pairs are counted, not remembered).
    directions: HashMap<HostPair, Ts, KeyHashState>,
    /// The input the packets now fed come from (see [`Tracker::set_file`]).
    file: u16,
}

impl Tracker {
    pub fn new(engine: Arc<Engine>, settings: Settings) -> Tracker {
        Tracker {
            counters: Counters::for_engine(&engine),
            frags: Fragments::new(settings.max_fragments, settings.fragment_timeout_ns),
            engine,
            settings,
            flows: HashMap::with_hasher(KeyHashState::default()),
            timers: BinaryHeap::new(),
            now: Ts(0),
            events: Vec::new(),
            directions: HashMap::with_hasher(KeyHashState::default()),
            file: 0,
        }
    }

    /// Says which input (an index into the run's capture files) the packets fed from now
    /// on come from; new flows remember it for EVE's `pcap_filename`.
    pub fn set_file(&mut self, file: u16) {
        self.file = file;
    }

    /// Events produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Counts one frame of `wire_len` bytes and feeds what decoding made of it.
    pub fn frame(&mut self, wire_len: u32, decoded: Result<Packet, Skip>) {
        self.counters[Counter::Frames] += 1;
        self.counters[Counter::FrameBytes] += u64::from(wire_len);
        match decoded {
            Ok(packet) => {
                self.counters[Counter::Decoded] += 1;
                self.packet(&packet);
            }
            Err(skip) => self.counters.skipped[skip.index()] += 1,
        }
    }

    /// What was counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Feeds one decoded packet.
    pub fn packet(&mut self, p: &Packet) {
        self.advance(p.ts);
        if let Transport::IcmpError { kind, quoted } = p.transport {
            self.icmp_error(p.ts, kind, quoted);
            return;
        }
        let mut tuple = p.tuple;
        let mut waiting = (0, 0);
        match p.fragment {
            Fragment::Whole => {}
            Fragment::First { id } => {
                waiting =
                    self.frags.first(tuple.src, tuple.dst, tuple.proto, id, (tuple.sport, tuple.dport), p.ts);
            }
            Fragment::Later { id } => {
                match self.frags.later(tuple.src, tuple.dst, tuple.proto, id, p.wire_len, p.ts) {
                    Later::Ports(sport, dport) => {
                        tuple.sport = sport;
                        tuple.dport = dport;
                        self.counters[Counter::FragmentsJoined] += 1;
                    }
                    Later::Waiting | Later::Dropped => return,
                }
            }
        }
        let key = flow_key(&tuple);
        let flags = match p.transport {
            Transport::Tcp { flags, .. } => flags.unwrap_or(0),
            _ => 0,
        };
        // The common case, one lookup: a packet of a flow already tracked.
        if let Some(flow) = self.flows.get_mut(&key) {
            let reuse = flow.is_closed() && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            if !reuse {
                let was_closed = flow.is_closed();
                let noted = count(flow, &tuple, p, flags, waiting, self.settings.syn_timeout_ns);
                if !was_closed && flow.is_closed() {
                    let id = flow.id;
                    self.closed(key, id, p.ts);
                }
                if noted != Noted::Nothing {
                    self.follow_up(&key, noted, p.ts);
                }
                self.counters[Counter::FragmentsJoined] += waiting.0;
                return;
            }
            if let Some(old) = self.flows.remove(&key) {
                self.end(old);
            }
        }
        self.create(key, &tuple, p, flags);
        if let Some(flow) = self.flows.get_mut(&key) {
            let noted = count(flow, &tuple, p, flags, waiting, self.settings.syn_timeout_ns);
            let opened = (flow.orig.src, flow.orig.dst);
            let remembered = self.engine.may_be_protected(flow.orig_role, flow.resp_role);
            if flow.is_closed() {
                let id = flow.id;
                self.closed(key, id, p.ts);
            }
            self.counters[Counter::FragmentsJoined] += waiting.0;
            self.follow_up(&key, noted, p.ts);
            if noted != Noted::FirstResponse && remembered {
                self.saw_direction(opened, p.ts);
            }
        }
        self.report_verdict(&key, p.ts);
    }

    /// A flow just closed (FIN both ways, or a RST): it now ends after the shorter
    /// closed timeout, not the idle timeout its creation scheduled. Without this, closed
    /// flows stayed in the table for the full TCP idle time (300 s by default).
    fn closed(&mut self, key: FlowKey, flow_id: u64, ts: Ts) {
        let at = ts.saturating_add(self.settings.closed_idle_ns);
        self.timers.push(Reverse(Timer { at, kind: TimerKind::Idle, key, flow_id }));
    }

    fn follow_up(&mut self, key: &FlowKey, noted: Noted, ts: Ts) {
        match noted {
            Noted::Nothing => {}
            Noted::RetriedSyn => self.check_silent_drop(key, ts),
            Noted::ForeignReset => self.check_injected_reset(key, ts),
            Noted::FirstResponse => {
                let flow =
                    self.flows.get(key).filter(|f| self.engine.may_be_protected(f.orig_role, f.resp_role));
                if let Some(flow) = flow {
                    let answered = (flow.orig.dst, flow.orig.src);
                    self.saw_direction(answered, ts);
                }
            }
        }
    }

    /// Remembers that the capture shows traffic from one host to another. Only between
    /// hosts whose roles could have a protected flow: the table answers how sure an
    /// unanswered-SYN restriction is, a question asked only about such flows, and
    /// remembering every client and Internet host cost a cache miss on most new flows.
    fn saw_direction(&mut self, (from, to): (IpAddr, IpAddr), ts: Ts) {
        let full = self.directions.len() >= self.settings.max_flows;
        match self.directions.entry(HostPair::new(from, to)) {
            Entry::Occupied(mut first) => *first.get_mut() = (*first.get()).min(ts),
            Entry::Vacant(slot) if !full => {
                slot.insert(ts);
            }
            Entry::Vacant(_) => self.counters[Counter::DirectionsUntracked] += 1,
        }
    }

    /// How sure a finding on `flow` is at packet time `ts`.
    fn confidence(&self, flow: &Flow, ts: Ts, evidence: Option<EvidenceKind>) -> Confidence {
        match evidence {
            // Judged by the pair's history up to `ts` only, so any worker count agrees.
            Some(EvidenceKind::SynUnanswered) => {
                let reverse = self.directions.get(&HostPair::new(flow.orig.dst, flow.orig.src));
                if reverse.is_some_and(|&first| first <= ts) {
                    Confidence::High
                } else {
                    Confidence::Low
                }
            }
            Some(_) => Confidence::High,
            None if flow.direction == Direction::Inferred => Confidence::Medium,
            None => Confidence::High,
        }
    }

    /// Ends every flow: the input is over.
    pub fn finish(&mut self) {
        let flows: Vec<Flow> = self.flows.drain().map(|(_, flow)| flow).collect();
        // In start order, so the events of one worker come out the same on every run;
        // sorting indexes rather than the flows moves 4 bytes a swap instead of 200.
        let mut order: Vec<u32> = (0..flows.len() as u32).collect();
        order.sort_unstable_by_key(|&i| (flows[i as usize].start, flows[i as usize].key));
        for mut flow in order.into_iter().map(|i| flows[i as usize]) {
            if self.silent_drop(&flow, None) {
                let last = flow.last;
                self.restriction(&mut flow, last, EvidenceKind::SynUnanswered);
            }
            self.end(flow);
        }
        self.timers.clear();
        self.frags.finish();
        self.counters[Counter::FragmentsOrphaned] = self.frags.stats.orphaned;
        self.counters[Counter::FragmentsDropped] = self.frags.stats.dropped_full;
    }

    /// Runs the timers due by `ts`: packet time, or the clock while a live capture is
    /// quiet.
    pub fn advance(&mut self, ts: Ts) {
        if ts <= self.now {
            return;
        }
        self.now = ts;
        while self.timers.peek().is_some_and(|Reverse(timer)| timer.at <= ts) {
            if let Some(Reverse(timer)) = self.timers.pop() {
                self.fire(timer);
            }
        }
    }

    fn fire(&mut self, timer: Timer) {
        let Some(flow) = self.flows.get(&timer.key).copied() else {
            return;
        };
        if flow.id != timer.flow_id {
            return;
        }
        match timer.kind {
            TimerKind::SynCheck => {
                if self.silent_drop(&flow, Some(timer.at)) {
                    let mut flow = flow;
                    self.restriction(&mut flow, timer.at, EvidenceKind::SynUnanswered);
                    self.flows.insert(timer.key, flow);
                }
            }
            TimerKind::Idle => {
                let deadline = flow.last.saturating_add(self.idle_ns(&flow));
                if deadline <= timer.at {
                    self.flows.remove(&timer.key);
                    self.counters[Counter::FlowsTimedOut] += 1;
                    self.end(flow);
                } else {
                    self.timers.push(Reverse(Timer { at: deadline, ..timer }));
                }
            }
        }
    }

    fn idle_ns(&self, flow: &Flow) -> u64 {
        if flow.is_closed() {
            self.settings.closed_idle_ns
        } else {
            match flow.key.proto {
                proto::TCP => self.settings.tcp_idle_ns,
                proto::UDP => self.settings.udp_idle_ns,
                _ => self.settings.other_idle_ns,
            }
        }
    }

    fn create(&mut self, key: FlowKey, tuple: &Tuple, p: &Packet, flags: u8) {
        if self.flows.len() >= self.settings.max_flows {
            self.evict_one();
        }
        let (orig, direction) = self.originator(tuple, flags);
        let judgement = self.engine.judge(&Facts {
            orig: orig.src,
            resp: orig.dst,
            resp_port: orig.dport,
            proto: orig.proto,
            ts: p.ts,
        });
        let flow = Flow::new(key, orig, direction, flow_id(&key, p.ts), p.ts, (p.vlan, p.tunnel), judgement);
        let flow = Flow { file: self.file, ..flow };
        self.counters[Counter::Flows] += 1;
        self.timers.push(Reverse(Timer {
            at: p.ts.saturating_add(self.idle_ns(&flow)),
            kind: TimerKind::Idle,
            key,
            flow_id: flow.id,
        }));
        let protected = self.protected(&flow);
        if protected && flow.is_tcp() && direction == Direction::Observed && tuple.src == orig.src {
            self.timers.push(Reverse(Timer {
                at: p.ts.saturating_add(self.settings.syn_timeout_ns),
                kind: TimerKind::SynCheck,
                key,
                flow_id: flow.id,
            }));
        }
        if flow.rule.is_none() {
            self.counters[Counter::Unmatched] += 1;
        }
        let exchange = |role| matches!(role, Role::Mailbox | Role::Edge);
        if exchange(flow.orig_role) || exchange(flow.resp_role) {
            self.counters[Counter::TouchingExchange] += 1;
        }
        self.flows.insert(key, flow);
    }

    /// Reports a new flow's verdict, once its first packet is counted.
    fn report_verdict(&mut self, key: &FlowKey, ts: Ts) {
        let Some(flow) = self.flows.get(key).copied() else {
            return;
        };
        if let Some(rule) = flow.rule {
            let verdict = self.engine.verdict(rule);
            if verdict.is_finding() {
                self.alert(ts, &flow, verdict, rule, None);
            }
        }
    }

    /// Who opened the flow: the SYN sender, the SYN-ACK receiver, or (mid-stream) the
    /// side whose port does not look like a service.
    fn originator(&self, tuple: &Tuple, flags: u8) -> (Tuple, Direction) {
        let reversed =
            Tuple { src: tuple.dst, dst: tuple.src, sport: tuple.dport, dport: tuple.sport, ..*tuple };
        match tuple.proto {
            proto::TCP => match flags & (tcp_flags::SYN | tcp_flags::ACK) {
                tcp_flags::SYN => (*tuple, Direction::Observed),
                f if f == tcp_flags::SYN | tcp_flags::ACK => (reversed, Direction::Observed),
                _ if self.source_is_service(tuple) => (reversed, Direction::Inferred),
                _ => (*tuple, Direction::Inferred),
            },
            // The first UDP sender opened the flow, unless it answers from a port the
            // policy names to one it does not: a reply seen first (capture started late).
            proto::UDP if self.is_service_port(tuple.sport) && !self.is_service_port(tuple.dport) => {
                (reversed, Direction::Inferred)
            }
            _ => (*tuple, Direction::Observed),
        }
    }

    fn is_service_port(&self, port: u16) -> bool {
        self.engine.is_named_port(port)
    }

    /// Whether, judging by the ports only, the packet's source is the responder: a port
    /// the policy names beats one it does not; otherwise the lower port is the service.
    fn source_is_service(&self, t: &Tuple) -> bool {
        match (self.is_service_port(t.sport), self.is_service_port(t.dport)) {
            (true, false) => true,
            (false, true) => false,
            _ => t.sport < t.dport,
        }
    }

    /// A RST whose TTL differs from its side's earlier packets: restriction evidence if
    /// the pair must never be restricted.
    fn check_injected_reset(&mut self, key: &FlowKey, ts: Ts) {
        let Some(mut flow) = self.flows.get(key).copied() else {
            return;
        };
        if self.protected(&flow) && !flow.restricted {
            self.restriction(&mut flow, ts, EvidenceKind::ResetInjected);
            self.flows.insert(*key, flow);
        }
    }

    /// A SYN was retried past the SYN timeout with no answer: restriction evidence if the
    /// pair must never be restricted.
    fn check_silent_drop(&mut self, key: &FlowKey, ts: Ts) {
        let Some(mut flow) = self.flows.get(key).copied() else {
            return;
        };
        if self.silent_drop(&flow, None) {
            self.restriction(&mut flow, ts, EvidenceKind::SynUnanswered);
            self.flows.insert(*key, flow);
        }
    }

    fn protected(&self, flow: &Flow) -> bool {
        flow.rule.is_some_and(|r| self.engine.never_restrict(r))
    }

    /// A protected TCP flow whose originator retried its SYN and got no answer within the
    /// SYN timeout. `at` is the time judged (`None`: the flow's own last packet).
    fn silent_drop(&self, flow: &Flow, at: Option<Ts>) -> bool {
        let at = at.unwrap_or(flow.last);
        let answered_in_time = flow.resp_first.is_some_and(|t| t <= at);
        flow.is_tcp()
            && !flow.restricted
            && flow.direction == Direction::Observed
            && flow.syns >= 2
            && !answered_in_time
            && self.protected(flow)
    }

    fn icmp_error(&mut self, ts: Ts, kind: IcmpError, quoted: Tuple) {
        self.counters[Counter::IcmpErrors] += 1;
        if kind != IcmpError::Prohibited {
            return;
        }
        self.counters[Counter::IcmpProhibited] += 1;
        let key = flow_key(&quoted);
        match self.flows.get(&key).copied() {
            Some(mut flow) => {
                if self.protected(&flow) && !flow.restricted {
                    self.restriction(&mut flow, ts, EvidenceKind::IcmpProhibited);
                    self.flows.insert(key, flow);
                }
            }
            None => {
                // The refused packet never reached this capture point: judge the pair
                // from the quote alone, without tracking a flow that carried nothing.
                let judgement = self.engine.judge(&Facts {
                    orig: quoted.src,
                    resp: quoted.dst,
                    resp_port: quoted.dport,
                    proto: quoted.proto,
                    ts,
                });
                let mut flow = Flow::new(
                    key,
                    quoted,
                    Direction::Observed,
                    flow_id(&key, ts),
                    ts,
                    (Vlans::default(), None),
                    judgement,
                );
                flow.file = self.file;
                if self.protected(&flow) {
                    self.restriction(&mut flow, ts, EvidenceKind::IcmpProhibited);
                }
            }
        }
    }

    fn restriction(&mut self, flow: &mut Flow, ts: Ts, kind: EvidenceKind) {
        let (Some(rule), Some(evidence)) = (flow.rule, self.engine.evidence(kind)) else {
            return;
        };
        flow.restricted = true;
        self.alert(ts, flow, Verdict::Restriction, rule, Some((evidence, kind)));
    }

    fn alert(
        &mut self,
        ts: Ts,
        flow: &Flow,
        verdict: Verdict,
        rule: usize,
        evidence: Option<(usize, EvidenceKind)>,
    ) {
        let confidence = self.confidence(flow, ts, evidence.map(|e| e.1));
        let evidence = evidence.map(|e| e.0);
        self.counters.record_finding(verdict, rule, evidence, (flow.orig.src, flow.orig.dst));
        self.events.push(Event::Alert { ts, flow: *flow, verdict, rule, evidence, confidence });
    }

    fn evict_one(&mut self) {
        while let Some(Reverse(timer)) = self.timers.pop() {
            let live = self.flows.get(&timer.key).is_some_and(|f| f.id == timer.flow_id);
            if live {
                if let Some(flow) = self.flows.remove(&timer.key) {
                    self.counters[Counter::FlowsEvicted] += 1;
                    self.end(flow);
                }
                return;
            }
        }
    }

    fn end(&mut self, flow: Flow) {
        let c = &mut self.counters;
        c[Counter::OneSided] += u64::from(flow.pkts[TO_SERVER] == 0 || flow.pkts[TO_CLIENT] == 0);
        c[Counter::Midstream] += u64::from(flow.is_tcp() && !flow.tcp.orig_syn && !flow.tcp.resp_synack);
        c[Counter::Gapped] += u64::from(flow.gaps > 0);
        if let Some(rule) = flow.rule {
            c.record_rule_traffic(rule, flow.total_bytes());
        }
        if self.settings.flow_events {
            self.events.push(Event::Flow { flow });
        }
    }
}

/// What counting a packet noticed that needs the policy's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Noted {
    Nothing,
    /// A SYN retried past the SYN timeout with no answer yet.
    RetriedSyn,
    /// A RST whose TTL or source MAC is not its side's: sent by someone else on the path.
    ForeignReset,
    /// The responder's first packet.
    FirstResponse,
}

/// Counts a packet (and any fragments that waited for it) on its flow.
fn count(
    flow: &mut Flow,
    tuple: &Tuple,
    p: &Packet,
    flags: u8,
    waiting: (u64, u64),
    syn_timeout: u64,
) -> Noted {
    let from_orig = flow.is_from_orig(tuple);
    let side = if from_orig { TO_SERVER } else { TO_CLIENT };
    flow.pkts[side] += 1 + waiting.0;
    flow.bytes[side] += u64::from(p.wire_len) + waiting.1;
    flow.last = flow.last.max(p.ts);
    let first_response = !from_orig && flow.resp_first.is_none();
    if first_response {
        flow.resp_first = Some(p.ts);
    }
    if !flow.is_tcp() {
        return if first_response { Noted::FirstResponse } else { Noted::Nothing };
    }
    let syn = flags & tcp_flags::SYN != 0;
    let ack = flags & tcp_flags::ACK != 0;
    let rst = flags & tcp_flags::RST != 0;
    if let Transport::Tcp { seq: Some(seq), len, .. } = p.transport {
        follow_sequence(flow, side, seq, len, flags);
    }
    let mut noted = Noted::Nothing;
    if rst {
        let other_ttl = flow.ttl[side].is_some_and(|ttl| ttl != p.ttl);
        let other_mac = flow.mac[side].zip(p.src_mac).is_some_and(|(mac, now)| mac != now);
        if other_ttl || other_mac {
            noted = Noted::ForeignReset;
        }
    } else {
        flow.ttl[side].get_or_insert(p.ttl);
        if let Some(mac) = p.src_mac {
            flow.mac[side].get_or_insert(mac);
        }
    }
    let t = &mut flow.tcp;
    if from_orig {
        if syn && !ack {
            t.orig_syn = true;
            if flow.resp_first.is_none() {
                flow.syns = flow.syns.saturating_add(1);
                if flow.syns >= 2 && p.ts.0 >= flow.start.0.saturating_add(syn_timeout) {
                    noted = Noted::RetriedSyn;
                }
            }
        }
        t.orig_fin |= flags & tcp_flags::FIN != 0;
        t.orig_rst |= rst;
    } else {
        t.resp_synack |= syn && ack;
        t.resp_fin |= flags & tcp_flags::FIN != 0;
        t.resp_rst |= rst;
        if first_response && noted == Noted::Nothing {
            noted = Noted::FirstResponse;
        }
    }
    noted
}

/// Tracks where each side's byte stream should continue; a segment that starts past that
/// point means the capture lost what came between (a lossy SPAN feed).
fn follow_sequence(flow: &mut Flow, side: usize, seq: u32, len: Option<u32>, flags: u8) {
    let Some(len) = len else {
        // How far this segment reaches is unknown: stop expecting until the next one.
        flow.next_seq[side] = None;
        return;
    };
    // SYN and FIN each take one sequence number.
    let flags_len = u32::from(flags & tcp_flags::SYN != 0) + u32::from(flags & tcp_flags::FIN != 0);
    let end = seq.wrapping_add(len).wrapping_add(flags_len);
    match flow.next_seq[side] {
        // Serial-number arithmetic: `seq` ahead of what was expected.
        Some(next) if (seq.wrapping_sub(next) as i32) > 0 && flags & tcp_flags::RST == 0 => {
            flow.gaps = flow.gaps.saturating_add(1);
            flow.next_seq[side] = Some(end);
        }
        Some(next) if (end.wrapping_sub(next) as i32) > 0 => flow.next_seq[side] = Some(end),
        Some(_) => {}
        None => flow.next_seq[side] = Some(end),
    }
}

/// The table key of a tuple: ICMP messages keyed as the Community ID spec maps them.
fn flow_key(tuple: &Tuple) -> FlowKey {
    FlowKey::of(&super::key::keyed(tuple))
}

/// A stable flow id from the key and the start time: the same capture gives the same
/// ids whatever the worker count. Kept below 2^53 so JSON readers keep it exact.
pub fn flow_id(key: &FlowKey, start: Ts) -> u64 {
    let state = foldhash::fast::FixedState::with_seed(0x6578_7761_7463_6821);
    state.hash_one((key, start)) & ((1 << 53) - 1)
}
