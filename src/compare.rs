//! Two capture points, one packet: what a firewall between them did to the TCP
//! handshakes of traffic that must never be restricted.
//!
//! - A handshake packet seen at both points whose options differ was rewritten between
//!   them (MSS clamping, stripped options): the "altered bits on the wire" the article
//!   forbids between Exchange servers.
//! - A SYN seen at the point nearer its sender, sent while the other point was
//!   capturing, and never seen there, was dropped between them.
//!
//! Each handshake is judged in its own direction: which point is nearer a packet's
//! sender follows from the TTLs (hop limits) of the packets seen at both points, those
//! of the same host pair first (a packet loses hops on its way, so it shows more left at
//! the point nearer its sender), then the sender's own packets to anyone, then the whole
//! run's; without any, the first capture is taken as nearer. So one run finds drops and
//! rewrites both ways, and "the order looks swapped" only when every direction of SYNs
//! says so.
//!
//! It reads both captures whole, keeps only SYN and SYN-ACK packets, and judges each
//! pair once with the policy engine. It never tracks flows.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::capture::{CaptureError, FrameSource, Next};
use crate::decode::{self, tcp_flags, SynOptions, TcpOptions, Tuple};
use crate::flow::{flow_id, Confidence, Detail, Direction, Event, Flow, FlowKey, Point};
use crate::policy::{Engine, EvidenceKind, Facts, Verdict};
use crate::time::Ts;
use crate::time::SECOND;

/// Handshake packets remembered from the first capture at most; more are counted.
pub const MAX_HANDSHAKES: usize = 1 << 20;

/// A SYN sent this long before the second capture began, or after it ended, may simply
/// have fallen outside it: only SYNs well inside its time range count as dropped.
const EDGE_NS: u64 = SECOND;

/// What the comparison counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub first_handshakes: u64,
    pub second_handshakes: u64,
    /// Handshake packets seen at both points.
    pub matched: u64,
    /// Matched handshake packets whose options differ.
    pub altered: u64,
    /// SYNs seen at the point nearer their sender, sent while the other was capturing,
    /// never seen there.
    pub missing: u64,
    /// Handshake packets not remembered (table full).
    pub untracked: u64,
}

/// Which way the SYNs went between the points, judged by their TTL or hop limit, over
/// the directions (sender, receiver) of the SYNs seen at both points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Every direction's SYNs lost hops from the first point to the second.
    AsGiven,
    /// Every direction's SYNs had more hops left at the second point: it is the one
    /// nearer the senders.
    LooksSwapped,
    /// SYNs went from the first point to the second in some directions and the other
    /// way in others: each direction was judged on its own.
    BothWays,
    /// No matched SYN changed TTL (the points are on one segment), or none matched.
    Unknown,
}

/// The whole outcome of a comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Restriction alerts on traffic that must never be restricted, in the second
    /// capture's order (options altered), then by time (SYNs dropped); each says in
    /// its detail what the evidence saw.
    pub findings: Vec<Event>,
    pub counts: Counts,
    pub order: Order,
}

impl Comparison {
    /// The findings of one evidence kind.
    pub fn evidence_count(&self, engine: &Engine, kind: EvidenceKind) -> usize {
        let evidence = engine.evidence(kind);
        let is = |event: &&Event| matches!(event, Event::Alert { evidence: e, .. } if e.is_some() && *e == evidence);
        self.findings.iter().filter(is).count()
    }
}

/// Why two captures could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(
        "the two captures share no TCP handshake ({first} in the first, {second} in the second): are they of the same traffic, at the same time?"
    )]
    NothingShared { first: u64, second: u64 },
}

/// A handshake packet as one point saw it.
#[derive(Clone, Copy)]
struct Seen {
    ts: Ts,
    ttl: u8,
    options: TcpOptions,
}

/// What identifies a handshake packet at both points: its tuple, sequence number and
/// flags.
type Key = (Tuple, u32, u8);

/// One handshake packet as read: its key, time, TTL and options.
fn handshake(frame: &crate::capture::Frame<'_>) -> Option<(Key, Ts, u8, TcpOptions)> {
    let SynOptions { tuple, seq, flags, options } = decode::syn_options(frame.link, frame.data)?;
    let ttl = decode::decode(frame.link, frame.ts, frame.wire_len, frame.data).map_or(0, |p| p.ttl);
    Some(((tuple, seq, flags), frame.ts, ttl, options))
}

/// Votes of packets seen at both points: positive when they had more hops left at the
/// first point (it is nearer their sender), negative at the second.
#[derive(Default)]
struct Votes {
    /// By (sender, receiver), every handshake packet.
    pairs: HashMap<(IpAddr, IpAddr), i64>,
    /// By sender, every handshake packet.
    senders: HashMap<IpAddr, i64>,
    /// By (sender, receiver), SYNs only: the run's order.
    syns: HashMap<(IpAddr, IpAddr), i64>,
    all: i64,
}

impl Votes {
    fn add(&mut self, tuple: &Tuple, syn: bool, first_ttl: u8, second_ttl: u8) {
        let vote = match first_ttl.cmp(&second_ttl) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => return,
        };
        *self.pairs.entry((tuple.src, tuple.dst)).or_default() += vote;
        *self.senders.entry(tuple.src).or_default() += vote;
        if syn {
            *self.syns.entry((tuple.src, tuple.dst)).or_default() += vote;
        }
        self.all += vote;
    }

    /// The point nearer `sender` on its way to `receiver`: by the pair's packets that
    /// way, then the other way, then the sender's packets, the receiver's, and the run's;
    /// the first point when nothing tells.
    fn near(&self, sender: IpAddr, receiver: IpAddr) -> Point {
        let said = [
            self.pairs.get(&(sender, receiver)).copied().unwrap_or(0),
            -self.pairs.get(&(receiver, sender)).copied().unwrap_or(0),
            self.senders.get(&sender).copied().unwrap_or(0),
            -self.senders.get(&receiver).copied().unwrap_or(0),
            self.all,
        ];
        match said.into_iter().find(|&v| v != 0) {
            Some(v) if v < 0 => Point::Second,
            _ => Point::First,
        }
    }

    fn order(&self) -> Order {
        let down = self.syns.values().filter(|&&v| v > 0).count();
        let up = self.syns.values().filter(|&&v| v < 0).count();
        match (down, up) {
            (0, 0) => Order::Unknown,
            (_, 0) => Order::AsGiven,
            (0, _) => Order::LooksSwapped,
            _ => Order::BothWays,
        }
    }
}

/// The time range a capture covers, by any of its packets.
fn widen(span: &mut Option<(Ts, Ts)>, at: Ts) {
    *span = Some(span.map_or((at, at), |(start, end)| (start.min(at), end.max(at))));
}

/// Whether `at` lies well inside `span` (a SYN near its edges may have fallen outside).
fn inside(span: Option<(Ts, Ts)>, at: Ts) -> bool {
    span.is_some_and(|(start, end)| {
        at.0 >= start.0.saturating_add(EDGE_NS) && at.0.saturating_add(EDGE_NS) <= end.0
    })
}

/// Compares the handshake packets of two captures of the same traffic taken at two
/// points; each handshake is judged in its own direction (see the module's doc).
pub fn compare(
    engine: &Engine,
    first: &mut dyn FrameSource,
    second: &mut dyn FrameSource,
) -> Result<Comparison, CompareError> {
    let mut counts = Counts::default();
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    let mut spans: [Option<(Ts, Ts)>; 2] = [None, None];
    while let Next::Frame(frame) = first.next_frame()? {
        widen(&mut spans[0], frame.ts);
        let Some((key, ts, ttl, options)) = handshake(&frame) else {
            continue;
        };
        counts.first_handshakes += 1;
        if seen.len() < MAX_HANDSHAKES {
            // A retransmission is the same evidence as the packet it repeats.
            seen.entry(key).or_insert(Seen { ts, ttl, options });
        } else {
            counts.untracked += 1;
        }
    }
    let mut votes = Votes::default();
    // Handshake packets seen at the second point only, and those seen at both whose
    // options differ, in the second capture's order.
    let mut second_only: HashMap<Key, Seen> = HashMap::new();
    let mut altered: Vec<(Key, Seen, Seen)> = Vec::new();
    while let Next::Frame(frame) = second.next_frame()? {
        // Any packet shows the second point was capturing then.
        widen(&mut spans[1], frame.ts);
        let Some((key, ts, ttl, options)) = handshake(&frame) else {
            continue;
        };
        counts.second_handshakes += 1;
        let now = Seen { ts, ttl, options };
        let Some(before) = seen.remove(&key) else {
            if second_only.len() < MAX_HANDSHAKES {
                second_only.entry(key).or_insert(now);
            } else {
                counts.untracked += 1;
            }
            continue;
        };
        counts.matched += 1;
        votes.add(&key.0, key.2 & tcp_flags::ACK == 0, before.ttl, ttl);
        if before.options != options {
            altered.push((key, before, now));
        }
    }
    if counts.matched == 0 && (counts.first_handshakes > 0 || counts.second_handshakes > 0) {
        return Err(CompareError::NothingShared {
            first: counts.first_handshakes,
            second: counts.second_handshakes,
        });
    }
    let mut findings = Vec::new();
    for (key, at_first, at_second) in altered {
        counts.altered += 1;
        let near = votes.near(key.0.src, key.0.dst);
        let (before, after) = match near {
            Point::First => (at_first, at_second),
            Point::Second => (at_second, at_first),
        };
        let detail = Detail::OptionsAltered {
            mss: [before.options.mss, after.options.mss],
            len: [before.options.raw().len() as u8, after.options.raw().len() as u8],
            near,
        };
        let ts = before.ts.max(after.ts);
        findings.extend(restriction(engine, key, before.ts, ts, EvidenceKind::OptionsAltered, detail));
    }
    // A SYN seen at one point only was dropped between them when that point is the one
    // nearer its sender and the other was capturing when it was sent.
    let mut missing: Vec<(Key, Seen, Point)> = Vec::new();
    for (point, only) in [(Point::First, seen), (Point::Second, second_only)] {
        let other = match point {
            Point::First => spans[1],
            Point::Second => spans[0],
        };
        missing.extend(
            only.into_iter()
                .filter(|((tuple, _, flags), s)| {
                    flags & tcp_flags::ACK == 0
                        && inside(other, s.ts)
                        && votes.near(tuple.src, tuple.dst) == point
                })
                .map(|(key, s)| (key, s, point)),
        );
    }
    missing.sort_unstable_by_key(|((tuple, seq, _), s, _)| (s.ts, FlowKey::of(tuple), *seq));
    for (key, s, near) in missing {
        counts.missing += 1;
        let detail = Detail::DroppedBetweenPoints { near };
        findings.extend(restriction(engine, key, s.ts, s.ts, EvidenceKind::SynDropped, detail));
    }
    Ok(Comparison { findings, counts, order: votes.order() })
}

/// The restriction finding of a handshake packet, if its flow must never be restricted
/// and the policy reports this evidence. `start` is when the first point saw it, `ts`
/// when the evidence became known.
fn restriction(
    engine: &Engine,
    (tuple, _, flags): Key,
    start: Ts,
    ts: Ts,
    kind: EvidenceKind,
    detail: Detail,
) -> Option<Event> {
    // The SYN's sender opened the flow; a SYN-ACK's receiver did.
    let orig = if flags & tcp_flags::ACK != 0 {
        Tuple { src: tuple.dst, dst: tuple.src, sport: tuple.dport, dport: tuple.sport, ..tuple }
    } else {
        tuple
    };
    let judgement = engine.judge(&Facts {
        orig: orig.src,
        resp: orig.dst,
        resp_port: orig.dport,
        proto: orig.proto,
        ts: start,
        plaintext: false,
    });
    let rule = judgement.rule.filter(|&r| engine.never_restrict(r))?;
    let evidence = engine.evidence(kind)?;
    let key = FlowKey::of(&orig);
    let flow =
        Flow::new(key, orig, Direction::Observed, flow_id(&key, start), start, Default::default(), judgement);
    Some(Event::Alert {
        ts,
        at: ts,
        flow,
        tunnel: None,
        verdict: Verdict::Restriction,
        rule,
        evidence: Some(evidence),
        confidence: Confidence::High,
        detail: Some(detail),
        source: None,
        exception: None,
    })
}
