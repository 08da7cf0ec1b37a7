//! Two capture points, one packet: what a firewall between them did to the TCP
//! handshakes of traffic that must never be restricted.
//!
//! - A handshake packet seen at both points whose options differ was rewritten between
//!   them (MSS clamping, stripped options): the "altered bits on the wire" the article
//!   forbids between Exchange servers.
//! - A SYN seen at the first point, sent while the second point was capturing, and never
//!   seen there, was dropped between them.
//!
//! It reads both captures whole, keeps only SYN and SYN-ACK packets, and judges each
//! pair once with the policy engine. It never tracks flows.

use std::collections::HashMap;

use crate::capture::{CaptureError, FrameSource, Next};
use crate::decode::{self, tcp_flags, SynOptions, TcpOptions, Tuple};
use crate::flow::{flow_id, Confidence, Detail, Direction, Event, Flow, FlowKey};
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
    /// SYNs of the first capture, sent while the second was capturing, never seen there.
    pub missing: u64,
    /// Handshake packets of the first capture not remembered (table full).
    pub untracked: u64,
}

/// Which way the packets went between the points, judged by their TTL or hop limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Most SYNs lost hops from the first point to the second, as the order requires.
    AsGiven,
    /// Most SYNs had more hops left at the second point: it is the upstream one.
    LooksSwapped,
    /// No matched SYN changed TTL (the points are on one segment), or none matched.
    Unknown,
}

/// The whole outcome of a comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Restriction alerts on traffic that must never be restricted, in the second
    /// capture's order (options altered), then the first's (SYNs dropped); each says in
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

/// A handshake packet of the first capture.
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

/// Compares the handshake packets of two captures of the same traffic taken at two
/// points, `first` nearer the senders.
pub fn compare(
    engine: &Engine,
    first: &mut dyn FrameSource,
    second: &mut dyn FrameSource,
) -> Result<Comparison, CompareError> {
    let mut counts = Counts::default();
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    while let Next::Frame(frame) = first.next_frame()? {
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
    let mut findings = Vec::new();
    let mut span: Option<(Ts, Ts)> = None;
    let (mut downstream, mut upstream) = (0u64, 0u64);
    while let Next::Frame(frame) = second.next_frame()? {
        // Any packet shows the second point was capturing then.
        let at = frame.ts;
        span = Some(span.map_or((at, at), |(start, end)| (start.min(at), end.max(at))));
        let Some((key, ts, ttl, options)) = handshake(&frame) else {
            continue;
        };
        counts.second_handshakes += 1;
        let Some(before) = seen.remove(&key) else {
            continue;
        };
        counts.matched += 1;
        if key.2 & tcp_flags::ACK == 0 {
            match before.ttl.cmp(&ttl) {
                std::cmp::Ordering::Greater => downstream += 1,
                std::cmp::Ordering::Less => upstream += 1,
                std::cmp::Ordering::Equal => {}
            }
        }
        if before.options != options {
            counts.altered += 1;
            let detail = Detail::OptionsAltered {
                mss: [before.options.mss, options.mss],
                len: [before.options.raw().len() as u8, options.raw().len() as u8],
            };
            findings.extend(restriction(engine, key, before.ts, ts, EvidenceKind::OptionsAltered, detail));
        }
    }
    if counts.matched == 0 && (counts.first_handshakes > 0 || counts.second_handshakes > 0) {
        return Err(CompareError::NothingShared {
            first: counts.first_handshakes,
            second: counts.second_handshakes,
        });
    }
    if let Some((start, end)) = span {
        let mut missing: Vec<_> = seen
            .into_iter()
            .filter(|((_, _, flags), s)| {
                flags & tcp_flags::ACK == 0
                    && s.ts.0 >= start.0.saturating_add(EDGE_NS)
                    && s.ts.0.saturating_add(EDGE_NS) <= end.0
            })
            .collect();
        missing.sort_unstable_by_key(|((tuple, seq, _), s)| (s.ts, FlowKey::of(tuple), *seq));
        for (key, s) in missing {
            counts.missing += 1;
            let detail = Detail::DroppedBetweenPoints;
            findings.extend(restriction(engine, key, s.ts, s.ts, EvidenceKind::SynDropped, detail));
        }
    }
    let order = match (downstream, upstream) {
        (d, u) if u > d => Order::LooksSwapped,
        (0, 0) => Order::Unknown,
        _ => Order::AsGiven,
    };
    Ok(Comparison { findings, counts, order })
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
