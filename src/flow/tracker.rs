//! One worker's flow table and the state machine that feeds it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::frag::{Fragments, Later};
use super::key::{HostPair, KeyHashState};
use super::table::{FlowRef, Table};
use super::tcp::{count, Closed, FirstOfSide, Noted, Seen};
use super::timers::Timers;
use super::{Confidence, Detail, Direction, EndReason, Flow, FlowKey, Mark, TcpSeen, TO_CLIENT, TO_SERVER};
use crate::counters::{Counter, Counters};
use crate::decode::{proto, tcp_flags, Fragment, Packet, Skip, Transport, Tunnel, Tuple, Vlans};
use crate::policy::{Covered, Engine, EvidenceKind, Facts, Role, Scope, Verdict};
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
    /// `--since`/`--until`: only flows that started at or after the first time and before
    /// the second are kept (counted, judged, written); the others are still tracked, so
    /// that a flow's state and the cross-flow tables stay whole.
    pub window: Option<(Ts, Ts)>,
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
            // 7/8 of 65,536: the most the fragment table holds in 65,536 buckets (its
            // load limit), where 65,536 datagrams took twice the buckets, 11 MB a worker.
            max_fragments: 57_344,
            fragment_timeout_ns: 30 * SECOND,
            flow_events: false,
            unanswered_flow_events: true,
            window: None,
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
        /// The packet that fired it (EVE `timestamp`).
        ts: Ts,
        /// When it was made known, in packet time: `ts`, or later for a TCP flow's
        /// finding held until its handshake resolved (the SYN-ACK or RST, the SYN
        /// timeout, or the flow's end), whose `flow` is then the flow as of that time.
        /// The writer orders alerts by it.
        at: Ts,
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
        /// The exception that accepted the finding (verdict `accepted`): an index into
        /// the topology's exceptions.
        exception: Option<u16>,
    },
    /// A flow ended (idle, closed, evicted or end of input), and why. `at`: when it
    /// ended, in packet time: its idle deadline for a timeout, the packet that forced it
    /// out, or its last packet at the end of input; the same with any worker count
    /// (except a full table's evictions), so the writer can order flow events as it
    /// orders alerts.
    Flow { flow: Flow, tunnel: Option<Tunnel>, reason: EndReason, at: Ts },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    SynCheck,
    /// A finding held for its flow's handshake: released with `conn_state` `S0`.
    HeldAlert,
    Idle,
}

impl TimerKind {
    const ALL: [TimerKind; 3] = [TimerKind::SynCheck, TimerKind::HeldAlert, TimerKind::Idle];
}

/// A timer in 16 bytes: a full table holds one for every flow. Ordered by time, then
/// kind, then the flow id's low bits (the id is a hash of the key and start, so the order
/// is the same with any worker count); the slab index only finds the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) at: Ts,
    /// The kind in the top two bits, the flow id's low [`Timer::ID_BITS`] bits below.
    tag: u32,
    pub(super) flow: FlowRef,
}

impl Timer {
    const ID_BITS: u32 = 30;
    const ID_MASK: u32 = (1 << Timer::ID_BITS) - 1;

    pub(super) fn new(at: Ts, kind: TimerKind, flow_id: u64, flow: FlowRef) -> Timer {
        let tag = (kind as u32) << Timer::ID_BITS | (flow_id as u32 & Timer::ID_MASK);
        Timer { at, tag, flow }
    }

    pub(super) fn kind(&self) -> TimerKind {
        TimerKind::ALL[(self.tag >> Timer::ID_BITS) as usize]
    }

    /// Whether the timer was set for `flow`, the flow its slab entry holds now: that
    /// flow may have ended and another taken its place. Another flow's id has the same
    /// low bits once in 2^30, which for an idle timer only means its deadline is looked
    /// at early; the kinds set at the SYN timeout also need the flow's start to be the
    /// timer's time less that timeout.
    pub(super) fn is_for(&self, flow: &Flow, syn_timeout_ns: u64) -> bool {
        let same_id = flow.id as u32 & Timer::ID_MASK == self.tag & Timer::ID_MASK;
        same_id
            && match self.kind() {
                TimerKind::Idle => true,
                TimerKind::SynCheck | TimerKind::HeldAlert => {
                    flow.start.saturating_add(syn_timeout_ns) == self.at
                }
            }
    }
}

/// The flow table of one worker.
pub struct Tracker {
    pub(super) engine: Arc<Engine>,
    pub(super) settings: Settings,
    pub(super) flows: Table,
    pub(super) timers: Timers<Timer>,
    pub(super) frags: Fragments,
    pub(super) now: Ts,
    pub(super) counters: Counters,
    pub(super) events: Vec<Event>,
    /// (sender, receiver) host pairs, and what the capture showed of traffic that way;
    /// bounded by `max_flows` (past it, new pairs are counted, not remembered). Keyed by
    /// the pair rather than the sender alone: frames are routed to workers by their
    /// address pair, so a pair's history is whole in one worker and a judgement from it
    /// is the same with any worker count (a sender's history across all its peers would
    /// be split between workers); it is also the path whose hop count a reset must match.
    pub(super) directions: HashMap<HostPair, Seen, KeyHashState>,
    /// The input the packets now fed come from (see [`Tracker::set_file`]), and the
    /// frames and flows counted when it began.
    pub(super) file: u16,
    pub(super) file_mark: crate::counters::FileCount,
    /// The tunnel each tunneled flow's first packet came out of, by flow id: rare, so
    /// kept beside the table rather than in every flow.
    pub(super) tunnels: HashMap<u64, Tunnel, foldhash::fast::FixedState>,
    /// Closed TCP flows that ended lately, for their late retransmissions.
    pub(super) closed: Closed,
    /// The flows still to end at the end of input, last to end first
    /// ([`Tracker::finish_some`]).
    pub(super) closing: Option<Vec<FlowRef>>,
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

impl Tracker {
    pub fn new(engine: Arc<Engine>, settings: Settings) -> Tracker {
        Tracker {
            counters: Counters::for_policy(&engine.policy),
            frags: Fragments::new(settings.max_fragments, settings.fragment_timeout_ns),
            flows: Table::with_capacity(settings.max_flows),
            timers: Timers::with_capacity(settings.max_flows),
            engine,
            settings,
            now: Ts(0),
            events: Vec::new(),
            directions: HashMap::with_hasher(KeyHashState::default()),
            file: 0,
            file_mark: crate::counters::FileCount::default(),
            tunnels: HashMap::default(),
            closing: None,
            closed: Closed::new(),
        }
    }

    /// Says which input (an index into the run's capture files) the packets fed from now
    /// on come from; new flows remember it for EVE's `pcap_filename`.
    pub fn set_file(&mut self, file: u16) {
        self.close_file();
        self.file = file;
    }

    /// Adds the frames and flows since the current input began to its count.
    pub(super) fn close_file(&mut self) {
        self.counters.add_to_file(self.file, self.file_mark);
        self.file_mark = self.counters.mark();
    }

    /// Events produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// How many events wait to be taken.
    pub fn pending_events(&self) -> usize {
        self.events.len()
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
    pub(super) fn packet_keyed(&mut self, p: &Packet, keyed: &Keyed) {
        self.advance(p.ts);
        self.counters.saw(p.ts);
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
        // A later fragment's ports come from its first: its key is only known now. Any
        // other packet's key is looked up where decoding wrote it: a copy, written field
        // by field, made the lookup's wide loads wait for the copy's stores.
        let later;
        let (key, hash) = match p.fragment {
            Fragment::Later { .. } => {
                later = flow_key(&tuple);
                (&later, later.hash64())
            }
            _ => (&keyed.key, keyed.hash),
        };
        let flags = match p.transport {
            Transport::Tcp { flags, .. } => flags.unwrap_or(0),
            _ => 0,
        };
        // The common case, one lookup: a packet of a flow already tracked.
        if let Some(at) = self.flows.find(key, hash) {
            let flow = self.flows.get_mut(at);
            let reuse = flow.is_closed() && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            if !reuse {
                let was_closed = flow.is_closed();
                let counted = count(flow, &tuple, p, flags, waiting, self.settings.syn_timeout_ns);
                // The handshake resolved: a SYN-ACK, or a RST either way.
                let t = &flow.tcp;
                let release = flow.is(Mark::AlertHeld)
                    && (t.seen(TcpSeen::RESP_SYNACK)
                        || t.seen(TcpSeen::RESP_RST)
                        || t.seen(TcpSeen::ORIG_RST));
                if release {
                    flow.set(Mark::AlertHeld, false);
                    let held = *flow;
                    self.release_held(&held, p.ts);
                }
                let flow = self.flows.get_mut(at);
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
                if counted.syn_retried {
                    self.syn_retried(at);
                }
                if learned {
                    self.learn_direction(at, &tuple, flags, p.ts);
                }
                if let Some(said) = counted.said {
                    self.first_payload(at, said, counted.from_orig, p.ts);
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
        let late = flags & (tcp_flags::FIN | tcp_flags::RST) != 0 && flags & tcp_flags::SYN == 0;
        if late && self.closed.ended_within(hash, p.ts, self.settings.closed_idle_ns) {
            self.counters[Counter::LateRetransmissions] += 1;
            return;
        }
        let at = self.create(*key, &tuple, p, flags);
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
        if let Some(said) = counted.said {
            self.first_payload(at, said, counted.from_orig, p.ts);
        }
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

    /// Tracks a new flow from its first packet (not yet counted on it).
    pub(super) fn create(&mut self, key: FlowKey, tuple: &Tuple, p: &Packet, flags: u8) -> FlowRef {
        if self.flows.len() >= self.settings.max_flows {
            self.evict_one();
        }
        let (orig, direction, hint) = self.originator(tuple, flags, &p.head);
        let facts = Facts {
            orig: orig.src,
            resp: orig.dst,
            resp_port: orig.dport,
            proto: orig.proto,
            ts: p.ts,
            plaintext: false,
        };
        let judgement = self.engine.judge_in(&facts, scope(p, &orig));
        let mut flow = Flow::new(key, orig, direction, flow_id(&key, p.ts), p.ts, p.vlan, judgement);
        flow.file = self.file;
        flow.hint = hint;
        if let Some(tunnel) = p.tunnel {
            flow.set(Mark::Tunneled, true);
            self.tunnels.insert(flow.id, tunnel);
        }
        // A datagram from a port the policy names to one it does not, first of its flow:
        // it looks like a reply whose request the capture did not show. Still judged
        // from its sender (ports never turn a UDP flow round), with less confidence.
        flow.set(
            Mark::ReplyFirst,
            orig.proto == proto::UDP && self.is_service_port(orig.sport) && !self.is_service_port(orig.dport),
        );
        if self.kept(flow.start) {
            self.counters[Counter::Flows] += 1;
            if flow.orig_role == Role::Local || flow.resp_role == Role::Local {
                self.counters[Counter::Local] += 1;
            }
            let exchange = |role| matches!(role, Role::Mailbox | Role::Edge);
            if exchange(flow.orig_role) || exchange(flow.resp_role) {
                self.counters[Counter::TouchingExchange] += 1;
            }
            if flow.rule().is_none() {
                self.counters[Counter::Unmatched] += 1;
            }
        }
        let idle_at = p.ts.saturating_add(self.idle_ns(&flow));
        let flow_id = flow.id;
        let at = self.flows.insert(flow);
        self.timers.push(Timer::new(idle_at, TimerKind::Idle, flow_id, at));
        at
    }

    /// The originator retried its SYN before the SYN timeout: the silent-drop check
    /// falls due at the timeout, for a flow the policy protects. Armed now rather than
    /// at the flow's start, so a flood's unretried SYNs cost no timer each.
    fn syn_retried(&mut self, at: FlowRef) {
        let flow = self.flows.get(at);
        if self.protected(flow) && flow.direction == Direction::Observed {
            let check_at = flow.start.saturating_add(self.settings.syn_timeout_ns);
            self.timers.push(Timer::new(check_at, TimerKind::SynCheck, flow.id, at));
        }
    }

    /// Reports a new flow's verdict, once its first packet is counted; and, when the
    /// flow came out of a tunnel, the verdict on the tunnel itself.
    pub(super) fn report_verdict(&mut self, at: FlowRef, ts: Ts) {
        let flow = *self.flows.get(at);
        if let Some(rule) = flow.rule() {
            let verdict = self.engine.verdict(rule);
            if verdict.is_finding() && awaits_handshake(&flow) {
                // Zeek's `conn_state` tells a refused SYN from a connection only once the
                // responder answers: the finding waits for that, the SYN timeout at most.
                self.flows.get_mut(at).set(Mark::AlertHeld, true);
                let at_timeout = ts.saturating_add(self.settings.syn_timeout_ns);
                self.timers.push(Timer::new(at_timeout, TimerKind::HeldAlert, flow.id, at));
            } else if verdict.is_finding() {
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
    pub(super) fn judge_tunnel(&mut self, tunnel: &crate::decode::Tunnel, ts: Ts, bytes: u64) {
        let outer = tunnel.outer;
        let facts = Facts {
            orig: outer.src,
            resp: outer.dst,
            resp_port: outer.dport,
            proto: outer.proto,
            ts,
            plaintext: false,
        };
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

    pub(super) fn alert(
        &mut self,
        ts: Ts,
        flow: &Flow,
        verdict: Verdict,
        rule: usize,
        evidence: Option<(usize, EvidenceKind)>,
        found: (Option<Detail>, Option<IpAddr>),
    ) {
        self.alert_at((ts, ts), flow, verdict, rule, evidence, found);
    }

    /// Writes the finding a flow's first packet made, held until its handshake
    /// resolved ([`Flow::alert_held`]), as known at `at`: the flow as it is then, its
    /// `conn_state` included, fired by the flow's first packet (the SYN, to the server).
    pub(super) fn release_held(&mut self, flow: &Flow, at: Ts) {
        let Some(rule) = flow.rule() else {
            return;
        };
        let verdict = self.engine.verdict(rule);
        self.alert_at((flow.start, at), flow, verdict, rule, None, (None, None));
    }

    /// [`Tracker::alert`] fired by the packet at `ts` and made known at `at`.
    fn alert_at(
        &mut self,
        (ts, at): (Ts, Ts),
        flow: &Flow,
        verdict: Verdict,
        rule: usize,
        evidence: Option<(usize, EvidenceKind)>,
        (detail, source): (Option<Detail>, Option<IpAddr>),
    ) {
        if !self.kept(flow.start) {
            return;
        }
        let detail = match evidence {
            None if flow.is(Mark::ReplyFirst) => Some(Detail::ReplyBeforeRequest),
            None if flow.direction == Direction::Inferred => Some(Detail::Inferred(flow.hint)),
            _ => detail,
        };
        let confidence = self.confidence(flow, ts, evidence.map(|e| e.1), detail);
        let evidence = evidence.map(|e| e.0);
        let orig = flow.orig();
        let (verdict, exception, detail) = self.excepted(flow, verdict, rule, evidence, detail);
        self.counters.record_finding(verdict, rule, evidence, (orig.src, orig.dst));
        let tunnel = self.tunnel_of(flow);
        self.events.push(Event::Alert {
            ts,
            at,
            flow: *flow,
            tunnel,
            verdict,
            rule,
            evidence,
            confidence,
            detail,
            source,
            exception,
        });
    }

    /// What the topology's exceptions and endpoints file make of a finding: `accepted`
    /// with the covering exception; or the verdict as it was, its detail naming an
    /// exception that had expired when the flow started, else the endpoints-file record
    /// of an Exchange Online end.
    fn excepted(
        &mut self,
        flow: &Flow,
        verdict: Verdict,
        rule: usize,
        evidence: Option<usize>,
        detail: Option<Detail>,
    ) -> (Verdict, Option<u16>, Option<Detail>) {
        let orig = flow.orig();
        let ends = (orig.src, orig.dst);
        match self.engine.covered(rule, evidence, ends, (orig.proto, orig.dport), flow.start) {
            Some(Covered::Active(i)) => {
                self.counters.record_exception(i, false);
                return (Verdict::Accepted, u16::try_from(i).ok(), detail);
            }
            Some(Covered::Expired(i)) => {
                self.counters.record_exception(i, true);
                if let (None, Ok(exception)) = (detail, u16::try_from(i)) {
                    return (verdict, None, Some(Detail::ExceptionExpired { exception }));
                }
            }
            None => {}
        }
        let record =
            detail.is_none().then(|| self.engine.endpoint_record(ends, (orig.proto, orig.dport))).flatten();
        (verdict, None, detail.or(record.map(|r| Detail::EndpointsRecord { id: r.id })))
    }

    pub(super) fn end(&mut self, flow: Flow, reason: EndReason) {
        let kept = self.kept(flow.start);
        let c = &mut self.counters;
        if kept {
            c[Counter::OneSided] += u64::from(flow.pkts[TO_SERVER] == 0 || flow.pkts[TO_CLIENT] == 0);
            c[Counter::Midstream] += u64::from(
                flow.is_tcp() && !flow.tcp.seen(TcpSeen::ORIG_SYN) && !flow.tcp.seen(TcpSeen::RESP_SYNACK),
            );
            c[Counter::Gapped] += u64::from(flow.gaps > 0);
        }
        if let Some(rule) = flow.rule() {
            if kept {
                c.record_rule_traffic(rule, flow.total_bytes());
            }
            if flow.pkts[TO_CLIENT] > 0 {
                let orig = flow.orig();
                self.engine.answered(rule, orig.src, orig.dst, flow.last);
            }
        }
        if flow.is_tcp() && flow.is_closed() {
            // It ended, at the latest, once the closed timeout had passed.
            self.closed.remember(flow.key.hash64(), flow.last.saturating_add(self.settings.closed_idle_ns));
        }
        // When it ended, in packet time: the same with any worker count (but for a full
        // table's evictions), as the writer's order needs.
        let at = match reason {
            EndReason::Timeout => flow.last.saturating_add(self.idle_ns(&flow)),
            EndReason::Forced => self.now,
            EndReason::Shutdown => flow.last,
        };
        if flow.is(Mark::AlertHeld) {
            self.release_held(&flow, at);
        }
        let tunnel = if flow.is(Mark::Tunneled) { self.tunnels.remove(&flow.id) } else { None };
        let wanted = self.settings.unanswered_flow_events || flow.is_answered();
        if kept && self.settings.flow_events && wanted {
            self.events.push(Event::Flow { flow, tunnel, reason, at });
        }
    }

    /// Whether a flow that started at `start` is inside `--since`/`--until`.
    #[inline]
    pub(super) fn kept(&self, start: Ts) -> bool {
        self.settings.window.is_none_or(|(since, until)| since <= start && start < until)
    }

    /// A flow no table holds (a tunnel judged for one of its inner flows, a flow known
    /// only from the packet an ICMP error quotes) that raised an alert: with flow events
    /// on, it gets one of its own, ended at once, so that the alert joins a flow event.
    pub(super) fn untracked_flow_event(&mut self, flow: Flow) {
        if self.settings.flow_events && self.kept(flow.start) {
            let at = self.now.max(flow.start);
            self.events.push(Event::Flow { flow, tunnel: None, reason: EndReason::Forced, at });
        }
    }

    /// The tunnel `flow`'s first packet came out of.
    pub(super) fn tunnel_of(&self, flow: &Flow) -> Option<Tunnel> {
        flow.is(Mark::Tunneled).then(|| self.tunnels.get(&flow.id).copied()).flatten()
    }
}

/// Which ends of a new flow are `local` whatever their address, from its first packet:
/// both for the segment's own control traffic (IGMP; ICMPv6 neighbour and router
/// discovery, redirects and MLD, types 130-137 and 143; DHCP between ports 67 and 68,
/// whose offers, acks and renewals are unicast), the destination for a frame sent to a
/// group MAC address (a directed broadcast, say). A relay's 67 -> 67 is not DHCP
/// between client and server: an ordinary flow.
pub(super) fn scope(p: &Packet, orig: &Tuple) -> Scope {
    let control = match p.transport {
        Transport::Icmp { kind, .. } => p.tuple.proto == proto::ICMPV6 && matches!(kind, 130..=137 | 143),
        _ => p.tuple.proto == proto::IGMP || is_dhcp(&p.tuple),
    };
    let to_group = p.dst_mac.is_group();
    let dst_is_orig = p.tuple.dst == orig.src && p.tuple.src != orig.src;
    Scope {
        orig_local: control || (to_group && dst_is_orig),
        resp_local: control || (to_group && !dst_is_orig),
    }
}

/// Whether a new flow's finding waits for the responder: a TCP flow opened by a SYN
/// the responder has not answered yet (a flow picked up mid-stream has no handshake to
/// wait for).
fn awaits_handshake(flow: &Flow) -> bool {
    let t = &flow.tcp;
    flow.is_tcp()
        && t.seen(TcpSeen::ORIG_SYN)
        && !t.seen(TcpSeen::RESP_SYNACK)
        && !t.seen(TcpSeen::RESP_RST)
        && !t.seen(TcpSeen::ORIG_RST)
        && flow.pkts[TO_CLIENT] == 0
}

/// DHCP between a client (68) and a server (67), either way.
fn is_dhcp(tuple: &Tuple) -> bool {
    tuple.proto == proto::UDP && matches!((tuple.sport, tuple.dport), (67, 68) | (68, 67))
}

/// The table key of a tuple: ICMP messages keyed as the Community ID spec maps them.
pub(super) fn flow_key(tuple: &Tuple) -> FlowKey {
    FlowKey::of(&super::key::keyed(tuple))
}

/// A stable flow id from the key and the start time: the same capture gives the same
/// ids whatever the worker count. Kept below 2^53 so JSON readers keep it exact.
pub fn flow_id(key: &FlowKey, start: Ts) -> u64 {
    let state = foldhash::fast::FixedState::with_seed(0x6578_7761_7463_6821);
    state.hash_one((key, start)) & ((1 << 53) - 1)
}
