//! One worker's flow table and the state machine that feeds it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::frag::{Fragments, Later};
use super::key::{HostPair, KeyHashState};
use super::table::{FlowRef, Table};
use super::timers::Timers;
use super::{Confidence, Detail, Direction, EndReason, Flow, FlowKey, TO_CLIENT, TO_SERVER};
use crate::decode::{proto, tcp_flags, Fragment, IcmpError, Packet, Skip, Transport, Tunnel, Tuple, Vlans};
use crate::policy::{Engine, EvidenceKind, Facts, Role, Scope, Verdict};
use crate::telemetry::{Counter, Counters};
use crate::time::Ts;
use crate::time::SECOND;

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
    /// Emit an [`Event::Flow`] when each flow ends (for the EVE log or an observer)...
    pub flow_events: bool,
    /// ...including flows never answered ([`Flow::is_answered`]).
    pub unanswered_flow_events: bool,
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
            unanswered_flow_events: true,
        }
    }
}

/// Something worth writing out. Carries a snapshot of the flow and the tunnel its first
/// packet came out of.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A finding: `rule` is the matched rule; `evidence` is set for restrictions;
    /// `detail` says what lowered the confidence or what the evidence saw.
    Alert {
        ts: Ts,
        flow: Flow,
        tunnel: Option<Tunnel>,
        verdict: Verdict,
        rule: usize,
        evidence: Option<usize>,
        confidence: Confidence,
        detail: Option<Detail>,
        /// Restrictions: the address that sent the evidence (the ICMP error's or the
        /// reset's sender), when a packet carried it.
        source: Option<IpAddr>,
    },
    /// A flow ended (idle, closed, evicted or end of input), and why.
    Flow { flow: Flow, tunnel: Option<Tunnel>, reason: EndReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    SynCheck,
    Idle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
/// Ordered by time, then kind, then flow id (a hash of the key and start, so the order is
/// the same with any worker count); the slab index only finds the flow.
struct Timer {
    at: Ts,
    kind: TimerKind,
    flow_id: u64,
    flow: FlowRef,
}

/// The flow table of one worker.
pub struct Tracker {
    engine: Arc<Engine>,
    settings: Settings,
    flows: Table,
    timers: Timers<Timer>,
    frags: Fragments,
    now: Ts,
    counters: Counters,
    events: Vec<Event>,
    /// (sender, receiver) host pairs, and what the capture showed of traffic that way;
    /// bounded by `max_flows` (past it, new pairs are counted, not remembered). Keyed by
    /// the pair rather than the sender alone: frames are routed to workers by their
    /// address pair, so a pair's history is whole in one worker and a judgement from it
    /// is the same with any worker count (a sender's history across all its peers would
    /// be split between workers); it is also the path whose hop count a reset must match.
    directions: HashMap<HostPair, Seen, KeyHashState>,
    /// The input the packets now fed come from (see [`Tracker::set_file`]).
    file: u16,
    /// The tunnel each tunneled flow's first packet came out of, by flow id: rare, so
    /// kept beside the table rather than in every flow.
    tunnels: HashMap<u64, Tunnel, foldhash::fast::FixedState>,
    /// The flows still to end at the end of input, last to end first
    /// ([`Tracker::finish_some`]).
    closing: Option<Vec<FlowRef>>,
}

/// A packet's flow key and its hash, computed once: ahead of tracking, for the prefetch
/// hints, and then used by the tracker.
#[derive(Clone, Copy, Debug)]
pub struct Keyed {
    pub key: FlowKey,
    pub hash: u64,
}

impl Keyed {
    /// A placeholder (a frame that did not decode has no key).
    pub const NONE: Keyed = Keyed { key: FlowKey::NONE, hash: 0 };

    /// The key of the flow `p` belongs to by its own tuple (an ICMP error's flow, and a
    /// later fragment's, are found another way).
    #[inline]
    pub fn of(p: &Packet) -> Keyed {
        let key = flow_key(&p.tuple);
        Keyed { key, hash: key.hash64() }
    }
}

/// Flows ended by one [`Tracker::finish_some`].
pub const FINISH_CHUNK: usize = 4096;

/// What the capture showed of one host sending to another, up to now.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// When traffic that way was first seen.
    first: Ts,
    /// TTL (hop limit) and source MAC of the latest flow's first packet that way that
    /// was not a RST, and how many flows in a row agreed on them (0: none seen yet).
    ttl: u8,
    mac: Option<[u8; 6]>,
    flows: u16,
}

impl Tracker {
    pub fn new(engine: Arc<Engine>, settings: Settings) -> Tracker {
        Tracker {
            counters: Counters::for_engine(&engine),
            frags: Fragments::new(settings.max_fragments, settings.fragment_timeout_ns),
            flows: Table::with_capacity(settings.max_flows),
            timers: Timers::with_capacity(settings.max_flows),
            engine,
            settings,
            now: Ts(0),
            events: Vec::new(),
            directions: HashMap::with_hasher(KeyHashState::default()),
            file: 0,
            tunnels: HashMap::default(),
            closing: None,
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

    /// Events produced since the last call, as they are (not copied out one by one):
    /// the tracker goes on with a fresh vector.
    pub fn take_events(&mut self) -> Vec<Event> {
        let room = self.events.len().min(1024);
        std::mem::replace(&mut self.events, Vec::with_capacity(room))
    }

    /// The packet time reached: the latest timestamp seen (or clock tick). It only
    /// grows, and every alert emitted from now on has a time at or after it, except
    /// those of [`Tracker::finish`] (the flow's last packet) and those of a capture
    /// whose timestamps go backwards.
    pub fn now(&self) -> Ts {
        self.now
    }

    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Counts one frame of `wire_len` bytes and feeds what decoding made of it, whose
    /// flow key `key` is ([`Keyed::of`], computed ahead).
    #[inline]
    pub fn frame(&mut self, wire_len: u32, decoded: &Result<Packet, Skip>, key: &Keyed) {
        self.counters[Counter::Frames] += 1;
        self.counters[Counter::FrameBytes] += u64::from(wire_len);
        match decoded {
            Ok(packet) => {
                self.counters[Counter::Decoded] += 1;
                self.packet_keyed(packet, key);
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
        self.packet_keyed(p, &Keyed::of(p));
    }

    /// [`Tracker::packet`], with the packet's key computed already.
    fn packet_keyed(&mut self, p: &Packet, keyed: &Keyed) {
        self.advance(p.ts);
        if let Transport::IcmpError { kind, quoted, fragment } = p.transport {
            self.icmp_error(p, kind, quoted, fragment);
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
        // A later fragment's ports come from its first: its key is only known now.
        let (key, hash) = match p.fragment {
            Fragment::Later { .. } => {
                let key = flow_key(&tuple);
                (key, key.hash64())
            }
            _ => (keyed.key, keyed.hash),
        };
        let flags = match p.transport {
            Transport::Tcp { flags, .. } => flags.unwrap_or(0),
            _ => 0,
        };
        // The common case, one lookup: a packet of a flow already tracked.
        if let Some(at) = self.flows.find(&key, hash) {
            let flow = self.flows.get_mut(at);
            let reuse = flow.is_closed() && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            if !reuse {
                let was_closed = flow.is_closed();
                let counted = count(flow, &tuple, p, flags, waiting, self.settings.syn_timeout_ns);
                let learned = flow.direction == Direction::Inferred && flags & tcp_flags::SYN != 0;
                // Copied out only for a side's first packet.
                let first = counted.first_of_side.then(|| FirstOfSide::of(flow));
                if !was_closed && flow.is_closed() {
                    let id = flow.id;
                    self.closed(at, id, p.ts);
                }
                if !matches!(counted.noted, Noted::Nothing) {
                    self.follow_up(at, counted.noted, p);
                }
                if learned {
                    self.learn_direction(at, &tuple, flags, p.ts);
                }
                if let Some(first) = first {
                    self.first_of_side(first, counted.answered, p, flags);
                }
                self.counters[Counter::FragmentsJoined] += waiting.0;
                return;
            }
            let old = self.flows.remove(at);
            self.end(old, EndReason::Forced);
        }
        let at = self.create(key, &tuple, p, flags);
        let flow = self.flows.get_mut(at);
        let counted = count(flow, &tuple, p, flags, waiting, self.settings.syn_timeout_ns);
        let first = FirstOfSide::of(flow);
        if flow.is_closed() {
            let id = flow.id;
            self.closed(at, id, p.ts);
        }
        self.counters[Counter::FragmentsJoined] += waiting.0;
        self.follow_up(at, counted.noted, p);
        self.first_of_side(first, counted.answered, p, flags);
        self.report_verdict(at, p.ts);
    }

    /// Hints that a packet of the flow with `hash` comes soon: its index slot first.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        self.flows.prefetch_slot(hash);
    }

    /// Hints that a packet of the flow with `hash` comes next: the flow itself.
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) {
        self.flows.prefetch_flow(hash);
    }

    /// A flow just closed (FIN both ways, or a RST): it now ends after the shorter
    /// closed timeout, not the idle timeout its creation scheduled. Without this, closed
    /// flows stayed in the table for the full TCP idle time (300 s by default).
    fn closed(&mut self, flow: FlowRef, flow_id: u64, ts: Ts) {
        let at = ts.saturating_add(self.settings.closed_idle_ns);
        self.timers.push(Timer { at, kind: TimerKind::Idle, flow_id, flow });
    }

    fn follow_up(&mut self, at: FlowRef, noted: Noted, p: &Packet) {
        match noted {
            Noted::Nothing => {}
            Noted::RetriedSyn => self.check_silent_drop(at, p.ts),
            Noted::ForeignReset { expected } => {
                let detail = Detail::ResetUnlike { ttl: p.ttl, expected, mac: expected == p.ttl, flows: 0 };
                self.check_injected_reset(at, p.ts, detail, p.tuple.src);
            }
            Noted::UncheckedReset => self.check_reset_against_history(at, p),
        }
    }

    /// A SYN or SYN-ACK on a flow picked up mid-stream (a SPAN port reordered the
    /// handshake): the direction is now observed. The flow is turned round if the ports
    /// had it wrong, and judged again; a new verdict gets its own event.
    fn learn_direction(&mut self, at: FlowRef, tuple: &Tuple, flags: u8, ts: Ts) {
        let mut flow = *self.flows.get(at);
        let (orig, _) = self.originator(tuple, flags);
        let was = flow.orig();
        if (orig.src, orig.sport) != (was.src, was.sport) {
            flow.set_orig(&orig);
            flow.pkts.swap(TO_SERVER, TO_CLIENT);
            flow.bytes.swap(TO_SERVER, TO_CLIENT);
            flow.ttl.swap(TO_SERVER, TO_CLIENT);
            flow.mac.swap(TO_SERVER, TO_CLIENT);
            flow.next_seq.swap(TO_SERVER, TO_CLIENT);
            let t = flow.tcp;
            flow.tcp = super::TcpSeen {
                orig_syn: false,
                resp_synack: false,
                orig_fin: t.resp_fin,
                resp_fin: t.orig_fin,
                orig_rst: t.resp_rst,
                resp_rst: t.orig_rst,
            };
            // The responder spoke first: the flow's first packet was its.
            flow.resp_first = (flow.pkts[TO_CLIENT] > 0).then_some(flow.start);
        }
        if flags & tcp_flags::ACK == 0 {
            flow.tcp.orig_syn = true;
        } else {
            flow.tcp.resp_synack = true;
        }
        flow.direction = Direction::Observed;
        let facts = Facts { orig: orig.src, resp: orig.dst, resp_port: orig.dport, proto: orig.proto, ts };
        let judgement = self.engine.judge(&facts);
        let changed = judgement.rule != flow.rule;
        (flow.rule, flow.orig_role, flow.resp_role) =
            (judgement.rule, judgement.orig_role, judgement.resp_role);
        *self.flows.get_mut(at) = flow;
        match judgement.rule {
            Some(rule) if changed && self.engine.verdict(rule).is_finding() => {
                self.alert(ts, &flow, self.engine.verdict(rule), rule, None, (None, None));
            }
            _ => {}
        }
    }

    /// The first packet of one side of a flow: what the pair table and, for the
    /// responder's first packet (`answered`), the policy's cross-flow table remember.
    fn first_of_side(&mut self, first: FirstOfSide, answered: bool, p: &Packet, flags: u8) {
        if self.engine.may_be_protected(first.roles.0, first.roles.1) {
            self.saw_side(p, flags);
        }
        if let (true, Some(rule)) = (answered, first.rule) {
            self.engine.answered(rule, first.orig.0, first.orig.1, p.ts);
        }
    }

    /// A RST is the first packet its claimed sender sent on this flow (a firewall's
    /// `REJECT --reject-with tcp-reset` answers the very first SYN): compare it with what
    /// that sender showed on its earlier flows to the same host.
    fn check_reset_against_history(&mut self, at: FlowRef, p: &Packet) {
        let Some(seen) = self.directions.get(&HostPair::new(p.tuple.src, p.tuple.dst)).copied() else {
            return;
        };
        let other_mac = seen.mac.zip(p.src_mac).is_some_and(|(mac, now)| mac != now);
        if seen.flows > 0 && (seen.ttl != p.ttl || other_mac) {
            let detail = Detail::ResetUnlike {
                ttl: p.ttl,
                expected: seen.ttl,
                mac: seen.ttl == p.ttl,
                flows: seen.flows,
            };
            self.check_injected_reset(at, p.ts, detail, p.tuple.src);
        }
    }

    /// The first packet of one side of a flow: remembers that the capture shows traffic
    /// that way, and (unless a RST) its TTL and source MAC. Only between hosts whose roles
    /// could have a protected flow: the table answers how sure an unanswered-SYN
    /// restriction is and what an honest reset looks like, questions asked only about
    /// such flows, and remembering every client and Internet host cost a cache miss on
    /// most new flows.
    fn saw_side(&mut self, p: &Packet, flags: u8) {
        let sample = (flags & tcp_flags::RST == 0).then_some((p.ttl, p.src_mac));
        let full = self.directions.len() >= self.settings.max_flows;
        match self.directions.entry(HostPair::new(p.tuple.src, p.tuple.dst)) {
            Entry::Occupied(mut entry) => {
                let seen = entry.get_mut();
                seen.first = seen.first.min(p.ts);
                if let Some((ttl, mac)) = sample {
                    if seen.flows > 0 && (seen.ttl, seen.mac) == (ttl, mac) {
                        seen.flows = seen.flows.saturating_add(1);
                    } else {
                        (seen.ttl, seen.mac, seen.flows) = (ttl, mac, 1);
                    }
                }
            }
            Entry::Vacant(slot) if !full => {
                let (ttl, mac) = sample.unwrap_or((0, None));
                slot.insert(Seen { first: p.ts, ttl, mac, flows: u16::from(sample.is_some()) });
            }
            Entry::Vacant(_) => self.counters[Counter::DirectionsUntracked] += 1,
        }
    }

    /// How sure a finding on `flow` is at packet time `ts`.
    fn confidence(
        &self,
        flow: &Flow,
        ts: Ts,
        evidence: Option<EvidenceKind>,
        detail: Option<Detail>,
    ) -> Confidence {
        match evidence {
            // Judged by the pair's history up to `ts` only, so any worker count agrees.
            Some(EvidenceKind::SynUnanswered) => {
                let orig = flow.orig();
                let reverse = self.directions.get(&HostPair::new(orig.dst, orig.src));
                if reverse.is_some_and(|seen| seen.first <= ts) {
                    Confidence::High
                } else {
                    Confidence::Low
                }
            }
            // One earlier flow is little history to call a reset foreign on.
            Some(EvidenceKind::ResetInjected) => match detail {
                Some(Detail::ResetUnlike { flows: 1, .. }) => Confidence::Medium,
                _ => Confidence::High,
            },
            Some(_) => Confidence::High,
            None if flow.reply_first => Confidence::Low,
            None if flow.direction == Direction::Inferred => Confidence::Medium,
            None => Confidence::High,
        }
    }

    /// Ends every flow: the input is over. Its events pile up until drained; a worker
    /// uses [`Tracker::finish_some`] instead, to send them a chunk at a time.
    pub fn finish(&mut self) {
        while self.finish_some() {}
    }

    /// Ends up to [`FINISH_CHUNK`] more of the flows still open at the end of input, in
    /// start order (so one worker's events come out the same on every run); false once
    /// every flow has ended. Drain the events between calls, and a full table's end
    /// never holds more than a chunk of them.
    pub fn finish_some(&mut self) -> bool {
        let order = self.closing.get_or_insert_with(|| {
            // Sorted on a copy of each start time beside its index, read in one pass over
            // the slab: comparing by reading two flows was two cache misses a step. Flows
            // that started together are ordered by key.
            let flows = &self.flows;
            let mut starts: Vec<(Ts, FlowRef)> =
                flows.refs().into_iter().map(|at| (flows.get(at).start, at)).collect();
            starts.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| flows.get(a.1).key.cmp(&flows.get(b.1).key))
            });
            starts.into_iter().rev().map(|(_, at)| at).collect()
        });
        let chunk: Vec<FlowRef> = order.drain(order.len().saturating_sub(FINISH_CHUNK)..).rev().collect();
        // Every flow ends, so none is taken out of the table one by one (a probe of the
        // index each, in no order the index likes): the table is cleared once at the
        // end. Start order is no order in the slab either: each flow is asked for a few
        // ahead.
        const AHEAD: usize = 4;
        for &at in chunk.iter().take(AHEAD) {
            self.flows.prefetch_at(at);
        }
        for (i, &at) in chunk.iter().enumerate() {
            if let Some(&ahead) = chunk.get(i + AHEAD) {
                self.flows.prefetch_at(ahead);
            }
            let mut flow = *self.flows.get(at);
            if self.silent_drop(&flow, None) {
                // A silent drop needs the whole timeout: the capture ended too soon to say.
                if self.now.0 >= flow.start.0.saturating_add(self.settings.syn_timeout_ns) {
                    let last = flow.last;
                    self.restriction(&mut flow, last, EvidenceKind::SynUnanswered, (None, None));
                } else {
                    self.counters[Counter::SynUndetermined] += 1;
                }
            }
            self.end(flow, EndReason::Shutdown);
        }
        if self.closing.as_ref().is_some_and(|order| !order.is_empty()) {
            return true;
        }
        self.closing = None;
        self.flows.clear();
        self.timers.clear();
        self.frags.finish();
        self.counters[Counter::FragmentsOrphaned] = self.frags.stats.orphaned;
        self.counters[Counter::FragmentsDropped] = self.frags.stats.dropped_full;
        false
    }

    /// Runs the timers due by `ts`: packet time, or the clock while a live capture is
    /// quiet.
    pub fn advance(&mut self, ts: Ts) {
        if ts <= self.now {
            return;
        }
        self.now = ts;
        while self.timers.peek().is_some_and(|timer| timer.at <= ts) {
            if let Some(timer) = self.timers.pop() {
                self.fire(timer);
            }
        }
    }

    fn fire(&mut self, timer: Timer) {
        if !self.flows.holds(timer.flow, timer.flow_id) {
            return;
        }
        let flow = *self.flows.get(timer.flow);
        match timer.kind {
            TimerKind::SynCheck => {
                if self.silent_drop(&flow, Some(timer.at)) {
                    let mut flow = flow;
                    self.restriction(&mut flow, timer.at, EvidenceKind::SynUnanswered, (None, None));
                    *self.flows.get_mut(timer.flow) = flow;
                }
            }
            TimerKind::Idle => {
                let deadline = flow.last.saturating_add(self.idle_ns(&flow));
                if deadline <= timer.at {
                    self.flows.remove(timer.flow);
                    self.counters[Counter::FlowsTimedOut] += 1;
                    self.end(flow, EndReason::Timeout);
                } else {
                    self.timers.push(Timer { at: deadline, ..timer });
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

    /// Tracks a new flow from its first packet (not yet counted on it).
    fn create(&mut self, key: FlowKey, tuple: &Tuple, p: &Packet, flags: u8) -> FlowRef {
        if self.flows.len() >= self.settings.max_flows {
            self.evict_one();
        }
        let (orig, direction) = self.originator(tuple, flags);
        let facts =
            Facts { orig: orig.src, resp: orig.dst, resp_port: orig.dport, proto: orig.proto, ts: p.ts };
        let judgement = self.engine.judge_in(&facts, scope(p, &orig));
        let mut flow = Flow::new(key, orig, direction, flow_id(&key, p.ts), p.ts, p.vlan, judgement);
        flow.file = self.file;
        if let Some(tunnel) = p.tunnel {
            flow.tunneled = true;
            self.tunnels.insert(flow.id, tunnel);
        }
        // A datagram from a port the policy names to one it does not, first of its flow:
        // it looks like a reply whose request the capture did not show. Still judged
        // from its sender (ports never turn a UDP flow round), with less confidence.
        flow.reply_first =
            orig.proto == proto::UDP && self.is_service_port(orig.sport) && !self.is_service_port(orig.dport);
        self.counters[Counter::Flows] += 1;
        if flow.orig_role == Role::Local || flow.resp_role == Role::Local {
            self.counters[Counter::Local] += 1;
        }
        let exchange = |role| matches!(role, Role::Mailbox | Role::Edge);
        if exchange(flow.orig_role) || exchange(flow.resp_role) {
            self.counters[Counter::TouchingExchange] += 1;
        }
        if flow.rule.is_none() {
            self.counters[Counter::Unmatched] += 1;
        }
        let idle_at = p.ts.saturating_add(self.idle_ns(&flow));
        let syn_check = self.protected(&flow)
            && flow.is_tcp()
            && direction == Direction::Observed
            && tuple.src == orig.src;
        let flow_id = flow.id;
        let at = self.flows.insert(flow);
        self.timers.push(Timer { at: idle_at, kind: TimerKind::Idle, flow_id, flow: at });
        if syn_check {
            self.timers.push(Timer {
                at: p.ts.saturating_add(self.settings.syn_timeout_ns),
                kind: TimerKind::SynCheck,
                flow_id,
                flow: at,
            });
        }
        at
    }

    /// Reports a new flow's verdict, once its first packet is counted; and, when the
    /// flow came out of a tunnel, the verdict on the tunnel itself.
    fn report_verdict(&mut self, at: FlowRef, ts: Ts) {
        let flow = *self.flows.get(at);
        if let Some(rule) = flow.rule {
            let verdict = self.engine.verdict(rule);
            if verdict.is_finding() {
                self.alert(ts, &flow, verdict, rule, None, (None, None));
            }
        }
        if let Some(tunnel) = self.tunnel_of(&flow) {
            self.judge_tunnel(&tunnel, ts, flow.total_bytes());
        }
    }

    /// A tunnel (VXLAN, GRE, ERSPAN) with an end that has a role other than `external` or
    /// `local` is traffic to that host, and judged as such (SPEC section 2): a VXLAN tunnel
    /// from the Internet ending on a Mailbox server is the Internet reaching it on 4789.
    /// Its packets carry many inner flows, routed to workers by the inner addresses, so
    /// the tunnel is not tracked as a flow of its own: it is judged once per inner flow
    /// that starts in it, from what that flow's first packet showed of it, which any
    /// worker count sees alike.
    /// `bytes`: the frame that carried the inner flow's first packet, the one packet of
    /// the tunnel this judgement saw.
    fn judge_tunnel(&mut self, tunnel: &crate::decode::Tunnel, ts: Ts, bytes: u64) {
        let outer = tunnel.outer;
        let facts =
            Facts { orig: outer.src, resp: outer.dst, resp_port: outer.dport, proto: outer.proto, ts };
        let judgement = self.engine.judge(&facts);
        let plain = |role| matches!(role, Role::External | Role::Local);
        if plain(judgement.orig_role) && plain(judgement.resp_role) {
            return;
        }
        let exchange = |role| matches!(role, Role::Mailbox | Role::Edge);
        if exchange(judgement.orig_role) || exchange(judgement.resp_role) {
            self.counters[Counter::TouchingExchange] += 1;
        }
        let Some(rule) = judgement.rule else {
            return;
        };
        let verdict = self.engine.verdict(rule);
        if !verdict.is_finding() {
            return;
        }
        let key = FlowKey::of(&outer);
        let mut flow =
            Flow::new(key, outer, Direction::Observed, flow_id(&key, ts), ts, Vlans::default(), judgement);
        flow.file = self.file;
        flow.pkts[TO_SERVER] = 1;
        flow.bytes[TO_SERVER] = bytes;
        self.alert(ts, &flow, verdict, rule, None, (None, None));
        self.untracked_flow_event(flow);
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
            // The first UDP sender opened the flow, always: were ports to turn it round,
            // any host sending from 53 or 443 would pass unseen.
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

    /// A RST unlike its claimed sender's other packets: restriction evidence if the pair
    /// must never be restricted.
    fn check_injected_reset(&mut self, at: FlowRef, ts: Ts, detail: Detail, source: IpAddr) {
        let mut flow = *self.flows.get(at);
        if self.protected(&flow) && !flow.restricted {
            self.restriction(&mut flow, ts, EvidenceKind::ResetInjected, (Some(detail), Some(source)));
            *self.flows.get_mut(at) = flow;
        }
    }

    /// A SYN was retried past the SYN timeout with no answer: restriction evidence if the
    /// pair must never be restricted.
    fn check_silent_drop(&mut self, at: FlowRef, ts: Ts) {
        let mut flow = *self.flows.get(at);
        if self.silent_drop(&flow, None) {
            self.restriction(&mut flow, ts, EvidenceKind::SynUnanswered, (None, None));
            *self.flows.get_mut(at) = flow;
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

    /// An ICMP error belongs to the flow it quotes: counted there, and restriction
    /// evidence when a filter sent it. It is never a flow of its own.
    fn icmp_error(&mut self, p: &Packet, kind: IcmpError, mut quoted: Tuple, fragment: Fragment) {
        self.counters[Counter::IcmpErrors] += 1;
        if let Fragment::Later { id } = fragment {
            // A later fragment carries no ports: its first fragment's are its flow's.
            match self.frags.ports_of(quoted.src, quoted.dst, quoted.proto, id) {
                Some((sport, dport)) => (quoted.sport, quoted.dport) = (sport, dport),
                None => {
                    self.counters[Counter::IcmpUnmatched] += 1;
                    return;
                }
            }
        }
        let evidence = match kind {
            IcmpError::Prohibited => {
                self.counters[Counter::IcmpProhibited] += 1;
                Some(EvidenceKind::IcmpProhibited)
            }
            // Port or protocol unreachable from the destination itself is an answer; from
            // anyone else, a firewall's REJECT speaking for it.
            IcmpError::Unreachable if p.tuple.src != quoted.src && p.tuple.src != quoted.dst => {
                Some(EvidenceKind::IcmpRejected)
            }
            _ => None,
        };
        let key = flow_key(&quoted);
        match self.flows.find(&key, key.hash64()) {
            Some(at) => {
                let flow = self.flows.get_mut(at);
                flow.icmp_errors = flow.icmp_errors.saturating_add(1);
                let mut flow = *flow;
                if let Some(evidence) = evidence {
                    if self.protected(&flow) && !flow.restricted {
                        self.restriction(&mut flow, p.ts, evidence, (None, Some(p.tuple.src)));
                        *self.flows.get_mut(at) = flow;
                    }
                }
            }
            None => {
                let Some(evidence) = evidence else {
                    return;
                };
                // The refused packet never reached this capture point: judge the pair
                // from the quote alone, without tracking a flow that carried nothing.
                let judgement = self.engine.judge(&Facts {
                    orig: quoted.src,
                    resp: quoted.dst,
                    resp_port: quoted.dport,
                    proto: quoted.proto,
                    ts: p.ts,
                });
                let mut flow = Flow::new(
                    key,
                    quoted,
                    Direction::Observed,
                    flow_id(&key, p.ts),
                    p.ts,
                    Vlans::default(),
                    judgement,
                );
                flow.file = self.file;
                if self.protected(&flow) {
                    self.restriction(&mut flow, p.ts, evidence, (None, Some(p.tuple.src)));
                    self.untracked_flow_event(flow);
                }
            }
        }
    }

    /// Restriction evidence of `kind` on `flow`: what it saw, and the address that sent
    /// it (an ICMP error's or a reset's sender) when a packet carried it.
    fn restriction(
        &mut self,
        flow: &mut Flow,
        ts: Ts,
        kind: EvidenceKind,
        (detail, source): (Option<Detail>, Option<IpAddr>),
    ) {
        let (Some(rule), Some(evidence)) = (flow.rule, self.engine.evidence(kind)) else {
            return;
        };
        flow.restricted = true;
        self.alert(ts, flow, Verdict::Restriction, rule, Some((evidence, kind)), (detail, source));
    }

    fn alert(
        &mut self,
        ts: Ts,
        flow: &Flow,
        verdict: Verdict,
        rule: usize,
        evidence: Option<(usize, EvidenceKind)>,
        (detail, source): (Option<Detail>, Option<IpAddr>),
    ) {
        let detail = match evidence {
            None if flow.reply_first => Some(Detail::ReplyBeforeRequest),
            _ => detail,
        };
        let confidence = self.confidence(flow, ts, evidence.map(|e| e.1), detail);
        let evidence = evidence.map(|e| e.0);
        let orig = flow.orig();
        self.counters.record_finding(verdict, rule, evidence, (orig.src, orig.dst));
        let tunnel = self.tunnel_of(flow);
        self.events.push(Event::Alert {
            ts,
            flow: *flow,
            tunnel,
            verdict,
            rule,
            evidence,
            confidence,
            detail,
            source,
        });
    }

    fn evict_one(&mut self) {
        while let Some(timer) = self.timers.pop() {
            if self.flows.holds(timer.flow, timer.flow_id) {
                let flow = self.flows.remove(timer.flow);
                self.counters[Counter::FlowsEvicted] += 1;
                self.end(flow, EndReason::Forced);
                return;
            }
        }
    }

    fn end(&mut self, flow: Flow, reason: EndReason) {
        let c = &mut self.counters;
        c[Counter::OneSided] += u64::from(flow.pkts[TO_SERVER] == 0 || flow.pkts[TO_CLIENT] == 0);
        c[Counter::Midstream] += u64::from(flow.is_tcp() && !flow.tcp.orig_syn && !flow.tcp.resp_synack);
        c[Counter::Gapped] += u64::from(flow.gaps > 0);
        if let Some(rule) = flow.rule {
            c.record_rule_traffic(rule, flow.total_bytes());
            if flow.pkts[TO_CLIENT] > 0 {
                let orig = flow.orig();
                self.engine.answered(rule, orig.src, orig.dst, flow.last);
            }
        }
        let tunnel = if flow.tunneled { self.tunnels.remove(&flow.id) } else { None };
        if self.settings.flow_events && (self.settings.unanswered_flow_events || flow.is_answered()) {
            self.events.push(Event::Flow { flow, tunnel, reason });
        }
    }

    /// A flow no table holds (a tunnel judged for one of its inner flows, a flow known
    /// only from the packet an ICMP error quotes) that raised an alert: with flow events
    /// on, it gets one of its own, ended at once, so that the alert joins a flow event.
    fn untracked_flow_event(&mut self, flow: Flow) {
        if self.settings.flow_events {
            self.events.push(Event::Flow { flow, tunnel: None, reason: EndReason::Forced });
        }
    }

    /// The tunnel `flow`'s first packet came out of.
    fn tunnel_of(&self, flow: &Flow) -> Option<Tunnel> {
        flow.tunneled.then(|| self.tunnels.get(&flow.id).copied()).flatten()
    }
}

/// What counting a packet noticed that needs the policy's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Noted {
    Nothing,
    /// A SYN retried past the SYN timeout with no answer yet.
    RetriedSyn,
    /// A RST whose TTL or source MAC is not its side's on this flow (`expected` is the
    /// side's TTL): sent by someone else on the path.
    ForeignReset {
        expected: u8,
    },
    /// A RST that is the first packet of its side: only the sender's other flows can
    /// tell whether it is its own.
    UncheckedReset,
}

/// What the first packet of a side needs of its flow, copied out of the table.
#[derive(Clone, Copy, Debug)]
struct FirstOfSide {
    roles: (Role, Role),
    rule: Option<usize>,
    orig: (std::net::IpAddr, std::net::IpAddr),
}

impl FirstOfSide {
    fn of(flow: &Flow) -> FirstOfSide {
        let orig = flow.orig();
        FirstOfSide { roles: (flow.orig_role, flow.resp_role), rule: flow.rule, orig: (orig.src, orig.dst) }
    }
}

/// What counting one packet found.
#[derive(Clone, Copy, Debug)]
struct Counted {
    noted: Noted,
    /// The packet is the first of its side of the flow.
    first_of_side: bool,
    /// The packet is the responder's first.
    answered: bool,
}

/// Counts a packet (and any fragments that waited for it) on its flow.
fn count(
    flow: &mut Flow,
    tuple: &Tuple,
    p: &Packet,
    flags: u8,
    waiting: (u64, u64),
    syn_timeout: u64,
) -> Counted {
    let from_orig = flow.is_from_orig(tuple);
    let side = if from_orig { TO_SERVER } else { TO_CLIENT };
    let first_of_side = flow.pkts[side] == 0;
    flow.pkts[side] += 1 + waiting.0;
    flow.bytes[side] += u64::from(p.wire_len) + waiting.1;
    flow.last = flow.last.max(p.ts);
    let first_response = !from_orig && flow.resp_first.is_none();
    if first_response {
        flow.resp_first = Some(p.ts);
    }
    if !flow.is_tcp() {
        return Counted { noted: Noted::Nothing, first_of_side, answered: first_response };
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
        match flow.ttl[side] {
            Some(expected) if other_ttl || other_mac => noted = Noted::ForeignReset { expected },
            None => noted = Noted::UncheckedReset,
            Some(_) => {}
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
    }
    Counted { noted, first_of_side, answered: first_response }
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

/// Which ends of a new flow are `local` whatever their address, from its first packet:
/// both for the segment's own control traffic (IGMP; ICMPv6 neighbour and router
/// discovery, redirects and MLD, types 130-137 and 143), the destination for a frame
/// sent to a group MAC address (a directed broadcast, say).
fn scope(p: &Packet, orig: &Tuple) -> Scope {
    let control = match p.transport {
        Transport::Icmp { kind, .. } => p.tuple.proto == proto::ICMPV6 && matches!(kind, 130..=137 | 143),
        _ => p.tuple.proto == proto::IGMP,
    };
    let to_group = p.dst_mac.is_group();
    let dst_is_orig = p.tuple.dst == orig.src && p.tuple.src != orig.src;
    Scope {
        orig_local: control || (to_group && dst_is_orig),
        resp_local: control || (to_group && !dst_is_orig),
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
