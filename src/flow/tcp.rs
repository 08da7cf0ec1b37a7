//! TCP state: what counting a packet on its flow notices (handshake, sequence gaps,
//! resets unlike their sender), and the record of what each host pair showed, which
//! later judgements on that pair are measured against.

use super::{Flow, TcpSeen, TO_CLIENT, TO_SERVER};
use crate::decode::{app, tcp_flags, AppProto, Exchange, Packet, Said, Transport, Tuple};
use crate::policy::Role;
use crate::time::Ts;

/// What the capture showed of one host sending to another, up to now.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    /// When traffic that way was first seen.
    pub(super) first: Ts,
    /// TTL (hop limit) and source MAC of the latest flow's first packet that way that
    /// was not a RST, and how many flows in a row agreed on them (0: none seen yet).
    pub(super) ttl: u8,
    pub(super) mac: Option<[u8; 6]>,
    pub(super) flows: u16,
}

/// What counting a packet noticed that needs the policy's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Noted {
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
pub(super) struct FirstOfSide {
    pub(super) roles: (Role, Role),
    pub(super) rule: Option<usize>,
    pub(super) orig: (std::net::IpAddr, std::net::IpAddr),
}

impl FirstOfSide {
    pub(super) fn of(flow: &Flow) -> FirstOfSide {
        let orig = flow.orig();
        FirstOfSide { roles: (flow.orig_role, flow.resp_role), rule: flow.rule(), orig: (orig.src, orig.dst) }
    }
}

/// What counting one packet found.
#[derive(Clone, Copy, Debug)]
pub(super) struct Counted {
    pub(super) noted: Noted,
    /// The packet is the first of its side of the flow.
    pub(super) first_of_side: bool,
    /// The packet is the responder's first.
    pub(super) answered: bool,
    /// The packet carries its side's first payload: what it says.
    pub(super) said: Option<Said>,
    /// The packet is the originator's.
    pub(super) from_orig: bool,
    /// The packet is the originator's second SYN, sent before the SYN timeout with no
    /// answer yet: the flow's silent-drop check falls due at the timeout. (Only a retried
    /// SYN can be a silent drop, so a flood's single SYNs need no check, nor a timer.)
    pub(super) syn_retried: bool,
}

/// Counts a packet (and any fragments that waited for it) on its flow.
pub(super) fn count(
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
    let first_response = !from_orig && first_of_side;
    // Each side's first payload is looked at once; later packets cost one comparison.
    let said = (flow.app[side] == AppProto::Unknown && !p.head.is_empty()).then(|| {
        let said = app::classify(&p.head, flow.is_tcp());
        flow.app[side] = said.app;
        // A greeting counts from the responder, a bind from the originator.
        let exchange = p.head.exchange();
        if exchange != Exchange::Nothing && exchange.from_server() != from_orig {
            flow.exchange = exchange;
        }
        said
    });
    if !flow.is_tcp() {
        return Counted {
            noted: Noted::Nothing,
            first_of_side,
            answered: first_response,
            said,
            from_orig,
            syn_retried: false,
        };
    }
    let syn = flags & tcp_flags::SYN != 0;
    let ack = flags & tcp_flags::ACK != 0;
    let rst = flags & tcp_flags::RST != 0;
    if let Transport::Tcp { seq: Some(seq), len, .. } = p.transport {
        follow_sequence(flow, side, seq, len, flags);
    }
    let mut noted = Noted::Nothing;
    let mut syn_retried = false;
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
    let answered = flow.pkts[TO_CLIENT] > 0;
    let fin = flags & tcp_flags::FIN != 0;
    let t = &mut flow.tcp;
    if from_orig {
        t.note(TcpSeen::ORIG_FIN, fin);
        t.note(TcpSeen::ORIG_RST, rst);
        if syn && !ack {
            t.note(TcpSeen::ORIG_SYN, true);
            if !answered {
                flow.syns = flow.syns.saturating_add(1);
                let timed_out = p.ts.0 >= flow.start.0.saturating_add(syn_timeout);
                if flow.syns >= 2 && timed_out {
                    noted = Noted::RetriedSyn;
                }
                syn_retried = flow.syns == 2 && !timed_out;
            }
        }
    } else {
        t.note(TcpSeen::RESP_SYNACK, syn && ack);
        t.note(TcpSeen::RESP_FIN, fin);
        t.note(TcpSeen::RESP_RST, rst);
    }
    Counted { noted, first_of_side, answered: first_response, said, from_orig, syn_retried }
}

/// Tracks where each side's byte stream should continue; a segment that starts past that
/// point means the capture lost what came between (a lossy SPAN feed).
pub(super) fn follow_sequence(flow: &mut Flow, side: usize, seq: u32, len: Option<u32>, flags: u8) {
    let Some(len) = len else {
        // How far this segment reaches is unknown: stop expecting until the next one.
        flow.set_next_seq(side, None);
        return;
    };
    // SYN and FIN each take one sequence number.
    let flags_len = u32::from(flags & tcp_flags::SYN != 0) + u32::from(flags & tcp_flags::FIN != 0);
    let end = seq.wrapping_add(len).wrapping_add(flags_len);
    match flow.next_seq(side) {
        // Serial-number arithmetic: `seq` ahead of what was expected.
        Some(next) if (seq.wrapping_sub(next) as i32) > 0 && flags & tcp_flags::RST == 0 => {
            flow.gaps = flow.gaps.saturating_add(1);
            flow.set_next_seq(side, Some(end));
        }
        Some(next) if (end.wrapping_sub(next) as i32) > 0 => flow.set_next_seq(side, Some(end)),
        Some(_) => {}
        None => flow.set_next_seq(side, Some(end)),
    }
}

/// Recently ended TCP flows that had closed (FIN both ways, or a RST), by key hash: a
/// late retransmission of their FIN or RST joins them instead of opening a flow of its
/// own that would be judged (and alert) again. Direct-mapped, so bounded and without
/// allocation: a newer flow takes an older one's slot, and that older flow's late
/// retransmission then opens a flow as before.
pub(super) struct Closed {
    slots: Box<[(u64, Ts)]>,
}

impl Closed {
    const SLOTS: usize = 1 << 14;

    pub(super) fn new() -> Closed {
        Closed { slots: vec![(0, Ts(0)); Closed::SLOTS].into_boxed_slice() }
    }

    pub(super) fn remember(&mut self, hash: u64, ended: Ts) {
        self.slots[hash as usize & (Closed::SLOTS - 1)] = (hash, ended);
    }

    /// Whether the flow with key hash `hash` closed and ended at most `window` before `now`.
    pub(super) fn ended_within(&self, hash: u64, now: Ts, window: u64) -> bool {
        let (seen, ended) = self.slots[hash as usize & (Closed::SLOTS - 1)];
        seen == hash && hash != 0 && now.0 <= ended.0.saturating_add(window)
    }
}
