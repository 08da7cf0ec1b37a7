//! Flows: the per-worker flow table, TCP state, fragment association and timers.
//!
//! A [`Tracker`] belongs to one worker and is never shared: frames are routed so that a
//! flow's packets, its fragments and the ICMP errors about it all reach the same worker.
//! The tracker asks the policy engine for a verdict once per flow and turns findings
//! into [`Event`]s. All timing is packet time; nothing here reads the clock.

mod direction;
mod evidence;
mod expiry;
mod frag;
mod key;
mod table;
mod tcp;
mod timers;
mod tracker;

use crate::decode::{proto, AppProto, Exchange, Tuple, Vlans};
use crate::policy::{Judgement, Role};
use crate::time::Ts;
pub use key::{community_id, FlowKey};
pub use table::MAX_FLOWS;
pub use tracker::{flow_id, Event, Keyed, Settings, Tracker};

/// How the originator of a flow was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The TCP SYN sender, or the first UDP/ICMP sender.
    Observed,
    /// Picked up mid-stream: the responder was inferred from the ports.
    Inferred,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Observed => "observed",
            Direction::Inferred => "inferred",
        }
    }
}

/// Why a flow ended, as Suricata's `flow.reason` says: idle past its timeout; ended
/// early by exwatch (the table was full, a new SYN reused a closed flow's tuple, or
/// the flow was never held in the table); or the end of input (a stop, live).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Timeout,
    Forced,
    Shutdown,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Forced => "forced",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// How sure a finding is, given what the capture shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    High,
    /// The flow was picked up mid-stream: its direction was inferred from the ports.
    Medium,
    /// The capture never showed traffic from the responder's host to the originator's:
    /// it may see one direction only (a one-sided SPAN feed), so an unanswered SYN is no
    /// proof of a silent drop.
    Low,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        }
    }
}

/// What a finding says beyond its verdict: why its confidence is what it is, or what its
/// evidence saw. `Copy`, so events stay plain values; rendered to text by the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// The flow's first datagram came from a port the policy names to one it does not.
    ReplyBeforeRequest,
    /// A TCP flow picked up mid-stream: what decided who opened it.
    Inferred(Hint),
    /// A reset with TTL `ttl` where its claimed sender showed `expected` (or, with `mac`,
    /// the same TTL from another source MAC address): on this flow (`flows` 0) or on
    /// `flows` earlier flows in a row to the same host.
    ResetUnlike { ttl: u8, expected: u8, mac: bool, flows: u16 },
    /// `exwatch compare`: a handshake packet's TCP options differ between the two capture
    /// points (their MSS, and their length in bytes), at the point `near` its sender
    /// first.
    OptionsAltered { mss: [Option<u16>; 2], len: [u8; 2], near: Point },
    /// `exwatch compare`: a SYN seen at the capture point `near` its sender never reached
    /// the other.
    DroppedBetweenPoints { near: Point },
    /// An exception of the topology (an index into its exceptions) covers the finding
    /// but had expired when the flow started.
    ExceptionExpired { exception: u16 },
    /// An end of the flow is an Exchange Online address from the Microsoft 365
    /// endpoints file's record `id`.
    EndpointsRecord { id: u32 },
}

/// One of the two captures `exwatch compare` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    First,
    Second,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::First => "first",
            Point::Second => "second",
        }
    }

    pub fn other(self) -> Point {
        match self {
            Point::First => Point::Second,
            Point::Second => Point::First,
        }
    }
}

impl std::fmt::Display for Detail {
    /// The text of `policy.detail`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Detail::ReplyBeforeRequest => f.write_str(
                "reply seen before its request: the request may predate the capture or be missing from a one-sided feed",
            ),
            Detail::Inferred(hint) => write!(f, "picked up mid-stream, direction from {hint}"),
            Detail::ResetUnlike { ttl, expected, mac, flows } => {
                if mac {
                    write!(f, "reset from another source MAC address than its sender's (TTL {ttl})")?;
                } else {
                    write!(f, "reset with TTL {ttl} where its sender showed TTL {expected}")?;
                }
                match flows {
                    0 => f.write_str(" on this flow"),
                    1 => f.write_str(" on 1 earlier flow to this host"),
                    n => write!(f, " on {n} earlier flows to this host"),
                }
            }
            Detail::OptionsAltered { mss, len, near } => {
                let (near, far) = (near.name(), near.other().name());
                match mss {
                    [Some(a), Some(b)] if a != b => write!(f, "MSS {a} at the {near} capture point, {b} at the {far}"),
                    [Some(a), None] => write!(f, "MSS option ({a}) stripped between the capture points"),
                    _ => write!(
                        f,
                        "TCP options differ: {} bytes at the {near} capture point, {} at the {far}",
                        len[0], len[1]
                    ),
                }
            }
            Detail::DroppedBetweenPoints { near } => write!(
                f,
                "SYN seen at the {} capture point, never at the {}: dropped between them",
                near.name(),
                near.other().name()
            ),
            Detail::ExceptionExpired { exception } => {
                write!(f, "exception #{exception} of the topology covers this finding but had expired")
            }
            Detail::EndpointsRecord { id } => {
                write!(f, "Exchange Online address of Microsoft 365 endpoints record {id}")
            }
        }
    }
}

/// What decided who opened a TCP flow picked up mid-stream, the first of SPEC section 2's
/// hints that decides: the first payload, then the ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Not mid-stream: a SYN or SYN-ACK said it.
    Handshake,
    /// The first payload in either direction: its protocol, and whether a client sends it.
    Payload { app: AppProto, client: bool },
    /// A port the policy names, outside the dynamic range 49152-65535.
    NamedStaticPort,
    /// A port outside the dynamic range, the other inside it.
    StaticPort,
    /// A port the policy names.
    NamedPort,
    /// The lower port.
    LowerPort,
}

impl Hint {
    /// Decided by ports only, which a payload outranks.
    pub fn is_ports(self) -> bool {
        !matches!(self, Hint::Handshake | Hint::Payload { .. })
    }
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Hint::Handshake => f.write_str("the handshake"),
            Hint::Payload { app, client } => write!(
                f,
                "the first payload ({} from the {})",
                app.name().unwrap_or("payload"),
                if client { "client" } else { "server" }
            ),
            Hint::NamedStaticPort => {
                f.write_str("the ports (a port the policy names, outside the dynamic range)")
            }
            Hint::StaticPort => {
                f.write_str("the ports (one outside the dynamic range 49152-65535, one inside)")
            }
            Hint::NamedPort => f.write_str("the ports (a port the policy names)"),
            Hint::LowerPort => f.write_str("the ports (the lower one taken as the service)"),
        }
    }
}

/// TCP events seen on a flow, per side, a bit each; enough to derive Zeek's `conn_state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSeen(u8);

impl TcpSeen {
    pub const ORIG_SYN: u8 = 1;
    pub const RESP_SYNACK: u8 = 1 << 1;
    pub const ORIG_FIN: u8 = 1 << 2;
    pub const RESP_FIN: u8 = 1 << 3;
    pub const ORIG_RST: u8 = 1 << 4;
    pub const RESP_RST: u8 = 1 << 5;

    /// Whether every one of `events` (bits above) was seen.
    pub fn seen(self, events: u8) -> bool {
        self.0 & events == events
    }

    /// Records `events` (bits above) as seen when `seen` holds.
    pub fn note(&mut self, events: u8, seen: bool) {
        if seen {
            self.0 |= events;
        }
    }

    /// Forgets `events`.
    pub fn forget(&mut self, events: u8) {
        self.0 &= !events;
    }

    /// The FINs and RSTs with their sides traded, and no handshake: what a flow whose
    /// originator was wrong had seen.
    pub fn turned_round(self) -> TcpSeen {
        let mut t = TcpSeen::default();
        t.note(TcpSeen::ORIG_FIN, self.seen(TcpSeen::RESP_FIN));
        t.note(TcpSeen::RESP_FIN, self.seen(TcpSeen::ORIG_FIN));
        t.note(TcpSeen::ORIG_RST, self.seen(TcpSeen::RESP_RST));
        t.note(TcpSeen::RESP_RST, self.seen(TcpSeen::ORIG_RST));
        t
    }
}

/// Index of the originator-to-responder side in per-side arrays.
pub const TO_SERVER: usize = 0;
/// Index of the responder-to-originator side in per-side arrays.
pub const TO_CLIENT: usize = 1;

/// One flow's state. Small and `Copy`, so events can carry a snapshot: a full table
/// holds one per tracked flow, so nothing here repeats the key (the originator's tuple
/// is the key's endpoints in order, [`Flow::orig`]) or is rare (a tunnel's outer
/// addresses are kept beside the table and travel with the [`Event`]).
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub key: FlowKey,
    /// The originator's ports as it sent them (for ICMP, its first message's type and
    /// code), and whether it is the key's lower endpoint.
    orig_ports: [u16; 2],
    /// Yes/no facts, a bit each: whether the originator is the key's lower endpoint and
    /// each side's sequence number is known ([`mark`]), and the [`Mark`]s.
    marks: u8,
    pub direction: Direction,
    pub id: u64,
    pub start: Ts,
    pub last: Ts,
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    pub tcp: TcpSeen,
    /// SYNs sent by the originator before any answer.
    pub syns: u8,
    /// The VLAN stack of the flow's first packet, outermost first.
    pub vlan: Vlans,
    /// The matched rule ([`Flow::rule`]: an index into the policy, which holds at most
    /// `u16::MAX` rules, or [`NO_RULE`]) and the roles it was judged with.
    rule: u16,
    pub orig_role: Role,
    pub resp_role: Role,
    /// TTL (hop limit) and source MAC of each side's first packet that is not a RST.
    pub ttl: [Option<u8>; 2],
    pub mac: [Option<[u8; 6]>; 2],
    /// The sequence number each side's next segment should carry, once known
    /// ([`Flow::next_seq`]).
    next_seq: [u32; 2],
    /// Segments that skipped ahead of that: data the capture never saw.
    pub gaps: u32,
    /// ICMP errors that quoted one of the flow's packets.
    pub icmp_errors: u32,
    /// The input the flow's first packet came from: an index into the run's capture
    /// files, named only when an event is formatted (EVE `pcap_filename`).
    pub file: u16,
    /// What each side's first payload was (`TO_SERVER`, `TO_CLIENT`), as `app_proto`
    /// names it.
    pub app: [AppProto; 2],
    /// Picked up mid-stream: what decided who opened the flow.
    pub hint: Hint,
    /// What a side's first payload said that only Exchange says: the responder's
    /// greeting, or the originator's RPC bind to an Exchange interface (what learn
    /// takes as evidence of a server a client-side capture shows to one host only).
    pub exchange: Exchange,
}

/// The bits of [`Flow::marks`] the flow keeps for itself; [`Mark`] has the others.
mod mark {
    pub const ORIG_LOW: u8 = 1;
    /// Each side's sequence number is known, `SEQ_KNOWN << side`.
    pub const SEQ_KNOWN: u8 = 1 << 1;
}

/// What a flow can be marked with ([`Flow::is`], [`Flow::set`]): a bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mark {
    /// The flow's first packet came out of a tunnel (the flow's events say which).
    Tunneled = 1 << 3,
    /// Restriction evidence was already reported for this flow.
    Restricted = 1 << 4,
    /// The first datagram looked like a reply (see [`Detail::ReplyBeforeRequest`]).
    ReplyFirst = 1 << 5,
    /// The client's first payload on a TCP flow was not TLS (a policy `when`).
    Plaintext = 1 << 6,
    /// The finding of the flow's first packet waits for the handshake to resolve (the
    /// responder's SYN-ACK or a RST, the SYN timeout, or the flow's end), so that its
    /// alert carries a `conn_state` that tells a refused SYN from a connection.
    AlertHeld = 1 << 7,
}

/// A flow's `rule` when none matched: a policy holds at most `u16::MAX` rules, so no
/// index is this.
const NO_RULE: u16 = u16::MAX;

/// A policy's rule index as a flow keeps it.
fn rule_index(rule: Option<usize>) -> u16 {
    rule.and_then(|r| u16::try_from(r).ok()).unwrap_or(NO_RULE)
}

impl Flow {
    /// The matched rule: an index into the policy's rules.
    pub fn rule(&self) -> Option<usize> {
        (self.rule != NO_RULE).then_some(usize::from(self.rule))
    }

    /// Judged again (the direction changed): the rule and the roles.
    pub fn set_judgement(&mut self, judgement: Judgement) {
        (self.rule, self.orig_role, self.resp_role) =
            (rule_index(judgement.rule), judgement.orig_role, judgement.resp_role);
    }

    fn mark(&self, bits: u8) -> bool {
        self.marks & bits != 0
    }

    fn set_mark(&mut self, bits: u8, on: bool) {
        if on {
            self.marks |= bits;
        } else {
            self.marks &= !bits;
        }
    }

    /// Whether the flow has `mark`.
    pub fn is(&self, mark: Mark) -> bool {
        self.mark(mark as u8)
    }

    /// Gives the flow `mark`, or takes it away.
    pub fn set(&mut self, mark: Mark, on: bool) {
        self.set_mark(mark as u8, on);
    }

    /// The sequence number side `side`'s next segment should carry, once known.
    pub fn next_seq(&self, side: usize) -> Option<u32> {
        self.mark(mark::SEQ_KNOWN << side).then_some(self.next_seq[side])
    }

    pub fn set_next_seq(&mut self, side: usize, seq: Option<u32>) {
        self.set_mark(mark::SEQ_KNOWN << side, seq.is_some());
        self.next_seq[side] = seq.unwrap_or(0);
    }

    /// The two sides' sequence numbers trade places (the flow's direction was wrong).
    pub(super) fn swap_seqs(&mut self) {
        let known = [self.next_seq(TO_SERVER), self.next_seq(TO_CLIENT)];
        self.set_next_seq(TO_SERVER, known[TO_CLIENT]);
        self.set_next_seq(TO_CLIENT, known[TO_SERVER]);
    }

    /// A flow with key `key` opened by `orig` (a tuple with the key's addresses).
    pub fn new(
        key: FlowKey,
        orig: Tuple,
        direction: Direction,
        id: u64,
        start: Ts,
        vlan: Vlans,
        judgement: Judgement,
    ) -> Flow {
        let mut flow = Flow {
            key,
            orig_ports: [0; 2],
            marks: mark::ORIG_LOW,
            direction,
            id,
            start,
            last: start,
            pkts: [0; 2],
            bytes: [0; 2],
            tcp: TcpSeen::default(),
            syns: 0,
            vlan,
            rule: rule_index(judgement.rule),
            orig_role: judgement.orig_role,
            resp_role: judgement.resp_role,
            ttl: [None; 2],
            mac: [None; 2],
            next_seq: [0; 2],
            gaps: 0,
            icmp_errors: 0,
            file: 0,
            app: [AppProto::Unknown; 2],
            hint: Hint::Handshake,
            exchange: Exchange::Nothing,
        };
        flow.set_orig(&orig);
        flow
    }

    /// The flow as its originator sent it (for ICMP, the first type and code as ports).
    pub fn orig(&self) -> Tuple {
        let (src, dst) = if self.mark(mark::ORIG_LOW) { (0, 1) } else { (1, 0) };
        Tuple {
            src: self.key.addr(src),
            dst: self.key.addr(dst),
            sport: self.orig_ports[0],
            dport: self.orig_ports[1],
            proto: self.key.proto,
        }
    }

    /// Makes `orig` (a tuple with the key's addresses) the flow's originator.
    pub fn set_orig(&mut self, orig: &Tuple) {
        self.orig_ports = [orig.sport, orig.dport];
        let low = self.key.addr(0);
        let orig_low = if low == self.key.addr(1) {
            // One host at both ends: the ports tell them apart.
            self.key.port(0) == orig.sport
        } else {
            low == orig.src
        };
        self.set_mark(mark::ORIG_LOW, orig_low);
    }

    /// Whether the packet's source is this flow's originator.
    #[inline]
    pub fn is_from_orig(&self, tuple: &Tuple) -> bool {
        let side = usize::from(!self.mark(mark::ORIG_LOW));
        tuple.src == self.key.addr(side) && (tuple.sport == self.orig_ports[0] || is_icmp(tuple.proto))
    }

    pub fn is_tcp(&self) -> bool {
        self.key.proto == proto::TCP
    }

    /// Zeek's `conn_state` code for the flow as seen so far.
    pub fn conn_state(&self) -> &'static str {
        if !self.is_tcp() {
            return match (self.pkts[TO_SERVER] > 0, self.pkts[TO_CLIENT] > 0) {
                (true, true) => "SF",
                (true, false) => "S0",
                _ => "SHR",
            };
        }
        let t = &self.tcp;
        let resp_spoke = self.pkts[TO_CLIENT] > 0;
        if !t.seen(TcpSeen::ORIG_SYN) {
            return match (t.seen(TcpSeen::RESP_SYNACK), t.seen(TcpSeen::RESP_RST), t.seen(TcpSeen::RESP_FIN))
            {
                (true, true, _) => "RSTRH",
                (true, false, true) => "SHR",
                _ => "OTH",
            };
        }
        if !t.seen(TcpSeen::RESP_SYNACK) {
            return if t.seen(TcpSeen::RESP_RST) {
                "REJ"
            } else if t.seen(TcpSeen::ORIG_RST) {
                "RSTOS0"
            } else if t.seen(TcpSeen::ORIG_FIN) {
                "SH"
            } else if resp_spoke {
                "OTH"
            } else {
                "S0"
            };
        }
        if t.seen(TcpSeen::ORIG_RST) {
            "RSTO"
        } else if t.seen(TcpSeen::RESP_RST) {
            "RSTR"
        } else {
            match (t.seen(TcpSeen::ORIG_FIN), t.seen(TcpSeen::RESP_FIN)) {
                (true, true) => "SF",
                (true, false) => "S2",
                (false, true) => "S3",
                (false, false) => "S1",
            }
        }
    }

    /// EVE's `flow.state`, as Suricata means it: `closed` once the TCP connection ended,
    /// `established` once packets were seen both ways, `new` until then (so a flow
    /// whose packets all went one way stays `new`, SYN-ACK or not).
    pub fn state(&self) -> &'static str {
        if self.is_closed() {
            "closed"
        } else if self.pkts[TO_SERVER] > 0 && self.pkts[TO_CLIENT] > 0 {
            "established"
        } else {
            "new"
        }
    }

    /// Whether the TCP connection has ended (both FINs or a RST).
    pub fn is_closed(&self) -> bool {
        let t = &self.tcp;
        self.is_tcp()
            && (t.seen(TcpSeen::ORIG_RST)
                || t.seen(TcpSeen::RESP_RST)
                || (t.seen(TcpSeen::ORIG_FIN) && t.seen(TcpSeen::RESP_FIN)))
    }

    /// Whether the responder answered: a SYN-ACK, packets both ways on a flow picked up
    /// mid-stream (more than a lone RST from the responder), or any datagram back. A
    /// refused or unanswered SYN is no evidence.
    pub fn is_answered(&self) -> bool {
        let both = self.pkts[TO_SERVER] > 0 && self.pkts[TO_CLIENT] > 0;
        if self.is_tcp() {
            let more_than_a_reset = self.pkts[TO_CLIENT] > 1 || !self.tcp.seen(TcpSeen::RESP_RST);
            self.tcp.seen(TcpSeen::RESP_SYNACK)
                || (!self.tcp.seen(TcpSeen::ORIG_SYN) && both && more_than_a_reset)
        } else {
            self.pkts[TO_CLIENT] > 0
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes[TO_SERVER] + self.bytes[TO_CLIENT]
    }
}

fn is_icmp(proto: u8) -> bool {
    matches!(proto, proto::ICMP | proto::ICMPV6)
}

#[cfg(test)]
mod tests;
