//! The plain owned records the report [`Builder`](super::Builder) takes: one per EVE
//! event that matters to the report, built either from a parsed EVE line
//! ([`super::eve_input`]) or straight from the pipeline's [`Event`] ([`from_event`]).
//!
//! Both ways must give the same record for the same flow: times are kept to the
//! microsecond, as EVE writes them. This module converts; it never aggregates.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::counters::{Counter, Counters};
use crate::decode::{proto, Skip};
use crate::flow::{community_id, Direction, Event, Flow, TO_CLIENT, TO_SERVER};
use crate::output::eve::{proto_name, COMMUNITY_ID_SEED};
use crate::policy::{Engine, Role, Verdict};
use crate::time::Ts;

/// Microseconds since 1970-01-01 UTC, capture time (EVE's precision).
pub type Micros = u64;

/// A short text from a small vocabulary (protocols, states, codes): borrowed from
/// [`known`] when it is one of the usual values, so most records allocate none.
pub type Text = Cow<'static, str>;

/// The usual values of EVE's short fields.
const VOCABULARY: [&str; 23] = [
    "TCP",
    "UDP",
    "ICMP",
    "IPv6-ICMP",
    "new",
    "established",
    "closed",
    "S0",
    "S1",
    "SF",
    "REJ",
    "S2",
    "S3",
    "RSTO",
    "RSTR",
    "RSTOS0",
    "RSTRH",
    "SH",
    "SHR",
    "OTH",
    "high",
    "medium",
    "low",
];

/// `text` as a [`Text`]: a static string when it is a usual value, else a copy.
pub fn known(text: &str) -> Text {
    match VOCABULARY.iter().find(|&&v| v == text) {
        Some(&v) => Cow::Borrowed(v),
        None => Cow::Owned(text.to_string()),
    }
}

/// A packet timestamp in microseconds.
pub fn micros(ts: Ts) -> Micros {
    ts.0 / 1_000
}

/// Where the event was seen, and the flow it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The sensor's name (EVE `host`), when the event carries one.
    pub host: Option<String>,
    /// The capture file (EVE `pcap_filename`), when the event carries one.
    pub pcap_filename: Option<String>,
    pub community_id: String,
    /// The originator.
    pub src_ip: IpAddr,
    pub src_port: Option<u16>,
    /// The responder.
    pub dest_ip: IpAddr,
    pub dest_port: Option<u16>,
    /// EVE's `proto`: `TCP`, `UDP`, `ICMP`, `IPv6-ICMP` or a number.
    pub proto: Text,
    pub src_role: Role,
    pub dest_role: Role,
    /// The direction was inferred from the ports (picked up mid-stream).
    pub inferred: bool,
}

/// An EVE `flow` event: a flow that ended, with its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub ends: Endpoints,
    pub start: Micros,
    pub end: Micros,
    /// Packets and bytes, originator to responder then back.
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    /// EVE `flow.state`: `new`, `established` or `closed`.
    pub state: Text,
    /// Zeek's `conn_state` code.
    pub conn_state: Option<Text>,
    /// Sequence gaps: segments the capture point lost.
    pub gaps: u32,
    /// `OutOfScope` with no rule when no rule matched.
    pub verdict: Verdict,
    pub rule: Option<String>,
    /// The flows the event stands for: 1, or an aggregate flow record's
    /// `policy.aggregate.flows` (whose packets and bytes, all of them, are then in the
    /// `TO_SERVER` side of `pkts` and `bytes`, the shape of each flow being unknown).
    pub flows: u64,
}

impl FlowRecord {
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }

    /// An aggregate flow record: several flows, their shapes unknown.
    pub fn is_aggregate(&self) -> bool {
        self.flows != 1
    }

    /// Packets were seen one way only.
    pub fn one_sided(&self) -> bool {
        self.pkts[0] == 0 || self.pkts[1] == 0
    }
}

/// An EVE `alert` event: a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    pub ends: Endpoints,
    /// When the verdict became known.
    pub ts: Micros,
    /// The flow's first packet.
    pub flow_start: Micros,
    /// `Advisory`, `Violation` or `Restriction`.
    pub verdict: Verdict,
    /// The rule the flow matched (for restrictions: the rule protecting the pair).
    pub rule: String,
    /// Restrictions only: the evidence id.
    pub evidence: Option<String>,
    /// `high`, `medium` or `low`.
    pub confidence: Text,
    /// Verdict `accepted`: the id of the exception that accepted it.
    pub exception: Option<String>,
    /// The findings the event stands for: 1, or an aggregate alert's
    /// `policy.aggregate.flows` (its `flow_start` is then its `first_seen`).
    pub findings: u64,
}

/// An EVE `stats` event: a sensor's running counters (cumulative since it started).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsRecord {
    pub host: Option<String>,
    pub ts: Micros,
    pub packets: u64,
    pub decoded: u64,
    /// Skipped frames by reason code.
    pub skipped: Vec<(String, u64)>,
    /// Kernel and interface drops, and frames shed by a worker that fell behind.
    pub drops: u64,
    pub flows_evicted: u64,
    /// What the sensor judged under: its topology's and policy's SHA-256.
    pub judged_under: Option<JudgedUnder>,
    /// Flows tracked (Suricata's `stats.flow.total`): every flow, in scope or not.
    pub flows: u64,
    /// The sensor wrote flow events of in-scope flows only (`--flows=in-scope`).
    pub in_scope_flows: bool,
}

/// The topology and policy (their SHA-256) events were judged under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct JudgedUnder {
    pub topology_sha256: String,
    pub policy_sha256: String,
}

impl StatsRecord {
    /// The health of a run of `analyze`, from its counters, as of `ts`.
    pub fn of_run(host: Option<String>, ts: Micros, c: &Counters) -> StatsRecord {
        StatsRecord {
            host,
            ts,
            packets: c[Counter::Frames],
            decoded: c[Counter::Decoded],
            skipped: Skip::ALL
                .iter()
                .map(|s| (s.code().to_string(), c.skipped[s.index()]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            drops: c[Counter::KernelDropped] + c[Counter::InterfaceDropped] + c[Counter::Shed],
            flows_evicted: c[Counter::FlowsEvicted],
            judged_under: None,
            flows: c[Counter::Flows],
            in_scope_flows: false,
        }
    }
}

/// One event of interest to the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Flow(FlowRecord),
    Alert(AlertRecord),
    Stats(StatsRecord),
}

fn endpoints(flow: &Flow) -> Endpoints {
    let t = &flow.orig();
    let ports = matches!(t.proto, proto::TCP | proto::UDP);
    Endpoints {
        host: None,
        pcap_filename: None,
        community_id: community_id(COMMUNITY_ID_SEED, t),
        src_ip: t.src,
        src_port: ports.then_some(t.sport),
        dest_ip: t.dst,
        dest_port: ports.then_some(t.dport),
        proto: known(&proto_name(t.proto)),
        src_role: flow.orig_role,
        dest_role: flow.resp_role,
        inferred: flow.direction == Direction::Inferred,
    }
}

/// The record of a pipeline event, as `output::eve` would write it and
/// [`super::eve_input`] read it back (without `host` or `pcap_filename`, which the
/// caller sets when it knows them).
pub fn from_event(engine: &Engine, event: &Event) -> Record {
    let policy = &engine.policy;
    match event {
        Event::Flow { flow, .. } => {
            let rule = flow.rule().and_then(|r| policy.rules.get(r));
            Record::Flow(FlowRecord {
                ends: endpoints(flow),
                start: micros(flow.start),
                end: micros(flow.last),
                pkts: [flow.pkts[TO_SERVER], flow.pkts[TO_CLIENT]],
                bytes: [flow.bytes[TO_SERVER], flow.bytes[TO_CLIENT]],
                state: Cow::Borrowed(flow.state()),
                conn_state: Some(Cow::Borrowed(flow.conn_state())),
                gaps: flow.gaps,
                verdict: crate::output::eve::flow_verdict(engine, flow),
                rule: rule.map(|r| r.id.clone()),
                flows: 1,
            })
        }
        Event::Alert { ts, flow, verdict, rule, evidence, confidence, exception, .. } => {
            Record::Alert(AlertRecord {
                ends: endpoints(flow),
                ts: micros(*ts),
                flow_start: micros(flow.start),
                verdict: *verdict,
                rule: policy.rules.get(*rule).map(|r| r.id.clone()).unwrap_or_default(),
                evidence: evidence.and_then(|e| policy.evidence.get(e)).map(|e| e.id.clone()),
                confidence: Cow::Borrowed(confidence.name()),
                exception: exception
                    .and_then(|i| engine.topology.exceptions.get(usize::from(i)))
                    .map(|e| e.id.clone()),
                findings: 1,
            })
        }
    }
}

/// Parses EVE's `2026-11-27T04:55:14.123456+0000` (any offset) into microseconds UTC.
pub fn parse_timestamp(text: &str) -> Option<Micros> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000;
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset = match b.get(i) {
        None | Some(b'Z') => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let (oh, om) = if b.get(i + 3) == Some(&b':') {
                (num(i + 1, 2)?, num(i + 4, 2)?)
            } else {
                (num(i + 1, 2)?, num(i + 3, 2)?)
            };
            let secs = oh * 3600 + om * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    u64::try_from(secs * 1_000_000 + frac).ok()
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian (H. Hinnant's method).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// EVE's timestamp format for a time in microseconds.
pub fn format_timestamp(t: Micros) -> String {
    crate::time::timestamp(Ts(t.saturating_mul(1_000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for t in [0u64, 1_795_755_314_123_456, 951_782_400_000_000, 4_102_444_799_999_999] {
            assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t), "{}", format_timestamp(t));
        }
        assert_eq!(parse_timestamp("2026-11-27T05:55:14.5+0100"), Some(1_795_755_314_500_000));
        assert_eq!(parse_timestamp("2026-11-27T04:55:14Z"), Some(1_795_755_314_000_000));
        for bad in ["", "2026-11-27", "2026-13-27T04:55:14", "2026-11-27T04:55:14.1x", "20x6-11-27T04:55:14"]
        {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
