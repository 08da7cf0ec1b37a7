//! EVE JSON lines: Suricata's field names, so anything that ingests `eve.json` takes
//! exwatch's events as they are. The field list is a contract, documented in
//! `docs/eve.md` and pinned by golden tests.

use std::io::Write;

use serde::Serialize;

use super::bound::Aggregate;
use super::summary::Counts;
use crate::decode::{proto, Ts};
use crate::flow::{community_id, Confidence, Event, Flow, TO_CLIENT, TO_SERVER};
use crate::policy::{Engine, Verdict};
use crate::telemetry::{aggregated_series, alert_series, Counter, Section, Snapshot};

/// Community ID seed; 0 is what Zeek and Suricata use unless told otherwise.
pub const COMMUNITY_ID_SEED: u16 = 0;

/// Suricata's timestamp format: `2026-11-27T04:55:14.123456+0000` (UTC).
pub fn timestamp(ts: Ts) -> String {
    let secs = ts.0 / 1_000_000_000;
    let micros = (ts.0 % 1_000_000_000) / 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+0000", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// EVE's `proto`: the IANA keyword Suricata writes, or the protocol number.
pub fn proto_name(p: u8) -> String {
    match p {
        proto::TCP => "TCP".into(),
        proto::UDP => "UDP".into(),
        proto::ICMP => "ICMP".into(),
        proto::ICMPV6 => "IPv6-ICMP".into(),
        other => other.to_string(),
    }
}

#[derive(Serialize)]
struct Header<'a> {
    timestamp: String,
    flow_id: u64,
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<[u16; 1]>,
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: String,
    community_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelBody>,
}

#[derive(Serialize)]
struct TunnelBody {
    proto: &'static str,
    depth: u8,
}

impl Header<'_> {
    fn new<'a>(event_type: &'a str, ts: Ts, flow: &Flow) -> Header<'a> {
        let t = &flow.orig;
        let ports = matches!(t.proto, proto::TCP | proto::UDP);
        Header {
            timestamp: timestamp(ts),
            flow_id: flow.id,
            event_type,
            vlan: flow.vlan.map(|v| [v]),
            src_ip: t.src.to_string(),
            src_port: ports.then_some(t.sport),
            dest_ip: t.dst.to_string(),
            dest_port: ports.then_some(t.dport),
            proto: proto_name(t.proto),
            community_id: community_id(COMMUNITY_ID_SEED, t),
            tunnel: flow.tunnel.map(|t| TunnelBody { proto: t.kind.name(), depth: t.depth }),
        }
    }
}

#[derive(Serialize)]
struct AlertBody<'a> {
    action: &'a str,
    gid: u32,
    signature_id: u32,
    rev: u32,
    severity: u8,
    signature: String,
    category: &'a str,
}

#[derive(Serialize)]
struct PolicyBody<'a> {
    verdict: &'a str,
    rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<&'a str>,
    src_role: &'a str,
    dest_role: &'a str,
    direction: &'a str,
    confidence: &'a str,
    section: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregate: Option<AggregateBody>,
}

/// `policy.aggregate`: what one key of the alert bound held back in one window.
#[derive(Serialize)]
struct AggregateBody {
    by: &'static str,
    flows: u64,
    pkts: u64,
    bytes: u64,
    originators: u64,
    responders: u64,
    ports: u64,
    estimated: bool,
    first_seen: String,
    last_seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<u64>,
}

#[derive(Serialize)]
struct FlowBody<'a> {
    pkts_toserver: u64,
    pkts_toclient: u64,
    bytes_toserver: u64,
    bytes_toclient: u64,
    start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_state: Option<&'a str>,
    /// Sequence gaps: segments the capture never saw (flow events, when any).
    #[serde(skip_serializing_if = "Option::is_none")]
    gaps: Option<u32>,
}

impl FlowBody<'_> {
    fn new(flow: &Flow, with_end: bool) -> FlowBody<'static> {
        FlowBody {
            pkts_toserver: flow.pkts[TO_SERVER],
            pkts_toclient: flow.pkts[TO_CLIENT],
            bytes_toserver: flow.bytes[TO_SERVER],
            bytes_toclient: flow.bytes[TO_CLIENT],
            start: timestamp(flow.start),
            end: with_end.then(|| timestamp(flow.last)),
            state: flow.state(),
            conn_state: with_end.then(|| flow.conn_state()),
            gaps: (with_end && flow.gaps > 0).then_some(flow.gaps),
        }
    }
}

#[derive(Serialize)]
struct AlertEvent<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    alert: AlertBody<'a>,
    policy: PolicyBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<FlowBody<'a>>,
}

#[derive(Serialize)]
struct FlowEvent<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    policy: FlowPolicyBody<'a>,
    flow: FlowBody<'a>,
}

/// The verdict of a flow event, whatever it is (`ok` included), so that a report can be
/// built from the event stream alone.
#[derive(Serialize)]
struct FlowPolicyBody<'a> {
    verdict: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    src_role: &'a str,
    dest_role: &'a str,
    direction: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    section: Option<&'a str>,
}

/// Appends one EVE `alert` line to `out`. `detail` says what the evidence saw, where
/// there is more to say than the evidence's reason.
pub fn write_alert(
    out: &mut Vec<u8>,
    engine: &Engine,
    ts: Ts,
    flow: &Flow,
    (verdict, confidence): (Verdict, Confidence),
    rule: usize,
    (evidence, detail): (Option<usize>, Option<&str>),
) {
    alert_line(out, engine, ts, flow, (verdict, confidence), rule, (evidence, detail), None);
}

/// Appends one aggregate `alert` line: the finding and the example flow of its first
/// held-back alert, without that flow's `flow` object, and `policy.aggregate`. Its
/// timestamp is the last alert it counts.
pub fn write_aggregate(out: &mut Vec<u8>, engine: &Engine, aggregate: &Aggregate) {
    let Event::Alert { flow, verdict, rule, evidence, confidence, .. } = aggregate.example else {
        return;
    };
    let body = AggregateBody {
        by: aggregate.by.name(),
        flows: aggregate.flows,
        pkts: aggregate.packets,
        bytes: aggregate.bytes,
        originators: aggregate.originators,
        responders: aggregate.responders,
        ports: aggregate.ports,
        estimated: aggregate.estimated,
        first_seen: timestamp(aggregate.first),
        last_seen: timestamp(aggregate.last),
        written: aggregate.written,
    };
    alert_line(out, engine, aggregate.last, &flow, (verdict, confidence), rule, (evidence, None), Some(body));
}

#[allow(clippy::too_many_arguments)]
fn alert_line(
    out: &mut Vec<u8>,
    engine: &Engine,
    ts: Ts,
    flow: &Flow,
    (verdict, confidence): (Verdict, Confidence),
    rule: usize,
    (evidence, detail): (Option<usize>, Option<&str>),
    aggregate: Option<AggregateBody>,
) {
    let with_flow = aggregate.is_none();
    let policy = &engine.policy;
    let rule = &policy.rules[rule];
    let evidence = evidence.and_then(|e| policy.evidence.get(e));
    let (sid, rev, id, section, reason) = match evidence {
        Some(e) => (e.sid, e.rev, e.id.as_str(), e.section.as_str(), e.reason.as_str()),
        None => (rule.sid, rule.rev, rule.id.as_str(), rule.section.as_str(), rule.reason.as_str()),
    };
    let (severity, category) = match verdict {
        Verdict::Advisory => (3, "Potential Corporate Privacy Violation"),
        _ => (1, "Policy Violation"),
    };
    let event = AlertEvent {
        header: Header::new("alert", ts, flow),
        alert: AlertBody {
            action: "allowed",
            gid: 1,
            signature_id: sid,
            rev,
            severity,
            signature: format!("exwatch {id}: {reason}"),
            category,
        },
        policy: PolicyBody {
            verdict: verdict.name(),
            rule: &rule.id,
            evidence: evidence.map(|e| e.id.as_str()),
            src_role: flow.orig_role.name(),
            dest_role: flow.resp_role.name(),
            direction: flow.direction.name(),
            confidence: confidence.name(),
            section,
            detail,
            aggregate,
        },
        flow: with_flow.then(|| FlowBody::new(flow, false)),
    };
    write_line(out, &event);
}

/// Appends the EVE line of one event to `out`.
pub fn write_event(out: &mut Vec<u8>, engine: &Engine, event: &Event) {
    match *event {
        Event::Alert { ts, flow, verdict, rule, evidence, confidence, detail } => write_alert(
            out,
            engine,
            ts,
            &flow,
            (verdict, confidence),
            rule,
            (evidence, detail.map(|d| d.to_string()).as_deref()),
        ),
        Event::Flow { flow } => write_flow(out, engine, &flow),
    }
}

/// Appends one EVE `flow` line (the flow has ended) to `out`, with the flow's verdict
/// and rule (`out_of_scope` and no rule when no rule matched).
pub fn write_flow(out: &mut Vec<u8>, engine: &Engine, flow: &Flow) {
    let rule = flow.rule.and_then(|r| engine.policy.rules.get(r));
    let event = FlowEvent {
        header: Header::new("flow", flow.last, flow),
        policy: FlowPolicyBody {
            verdict: rule.map_or(Verdict::OutOfScope, |r| r.verdict).name(),
            rule: rule.map(|r| r.id.as_str()),
            src_role: flow.orig_role.name(),
            dest_role: flow.resp_role.name(),
            direction: flow.direction.name(),
            section: rule.map(|r| r.section.as_str()),
        },
        flow: FlowBody::new(flow, true),
    };
    write_line(out, &event);
}

/// An EVE `stats` event: Suricata's counters where Suricata has the same one (their
/// `suricata` path in the counter table), everything else in the `policy` object.
#[derive(Serialize)]
struct StatsEvent<'a> {
    timestamp: String,
    event_type: &'static str,
    stats: SuricataStats<'a>,
    policy: PolicyStats<'a>,
}

/// `stats`: `uptime`, then each group of the counter table's Suricata paths (`capture`,
/// `decoder`, `flow`), with `flow.active` from the flow tables.
struct SuricataStats<'a>(&'a Snapshot);

impl Serialize for SuricataStats<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let snapshot = self.0;
        let mut groups: Vec<(&str, Vec<(&str, u64)>)> = Vec::new();
        for counter in Counter::ALL {
            let Some((group, key)) = counter.def().suricata.and_then(|path| path.split_once('.')) else {
                continue;
            };
            let value = snapshot.counters[counter];
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, entries)) => entries.push((key, value)),
                None => groups.push((group, vec![(key, value)])),
            }
        }
        match groups.iter_mut().find(|(g, _)| *g == "flow") {
            Some((_, entries)) => entries.push(("active", snapshot.flows_active)),
            None => groups.push(("flow", vec![("active", snapshot.flows_active)])),
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("uptime", &snapshot.uptime.as_secs())?;
        for (group, entries) in &groups {
            map.serialize_entry(group, &Entries(entries))?;
        }
        map.end()
    }
}

struct Entries<'a>(&'a [(&'a str, u64)]);

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// `policy` of a `stats` event: exwatch's own counters, by section as in the summary,
/// and the findings by rule or evidence.
#[derive(Serialize)]
struct PolicyStats<'a> {
    capture: Counts,
    packets: Counts,
    flows: Counts,
    findings: Counts,
    alerts: Entries<'a>,
    /// Of `alerts`, the findings the alert bound held back, by rule or evidence.
    aggregated: Entries<'a>,
}

/// Appends one EVE `stats` event (live counters, summed over workers) to `out`.
pub fn write_stats(out: &mut Vec<u8>, ts: Ts, engine: &Engine, snapshot: &Snapshot) {
    let c = &snapshot.counters;
    let own = |section| Counts::select(section, c, |def| def.suricata.is_none());
    let alerts: Vec<(&str, u64)> = alert_series(engine, c).map(|(id, _, n)| (id, n)).collect();
    let aggregated: Vec<(&str, u64)> = aggregated_series(engine, c).map(|(id, _, n)| (id, n)).collect();
    let event = StatsEvent {
        timestamp: timestamp(ts),
        event_type: "stats",
        stats: SuricataStats(snapshot),
        policy: PolicyStats {
            capture: own(Section::Capture),
            packets: own(Section::Packets),
            flows: own(Section::Flows),
            findings: own(Section::Findings),
            alerts: Entries(&alerts),
            aggregated: Entries(&aggregated),
        },
    };
    write_line(out, &event);
}

fn write_line(out: &mut Vec<u8>, event: &impl Serialize) {
    // Serializing plain structs into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, event).is_ok() {
        let _ = out.write_all(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::policy::builtin;
    use crate::telemetry::{Counters, Latency};

    /// The `stats` event is a contract like the alerts (docs/eve.md): pinned by
    /// `tests/golden/stats.jsonl`; rewrite it with EXWATCH_BLESS=1 after a deliberate
    /// change and review the diff.
    #[test]
    fn stats_event_matches_the_golden_file() {
        let policy = Arc::new(builtin::policy().expect("policy"));
        let engine = Engine::new(policy, Arc::new(builtin::topology().expect("topology")), 10);
        let mut counters = Counters::for_engine(&engine);
        for (i, counter) in Counter::ALL.into_iter().enumerate() {
            counters[counter] = 100 + i as u64;
        }
        counters.skipped[crate::decode::Skip::NotIp.index()] = 3;
        counters.rules[0].alerts = 5;
        counters.rules[0].aggregated = 3;
        counters.evidence[1] = 2;
        let snapshot = Snapshot {
            counters,
            flows_active: 7,
            latency: Latency::default(),
            uptime: Duration::from_secs(42),
        };
        let mut out = Vec::new();
        write_stats(&mut out, Ts(1_795_755_314_123_456_789), &engine, &snapshot);
        let got = String::from_utf8(out).expect("utf-8");
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/stats.jsonl");
        if std::env::var_os("EXWATCH_BLESS").is_some() {
            std::fs::write(golden, &got).expect("bless golden file");
        }
        let want = std::fs::read_to_string(golden).expect("golden file");
        assert_eq!(got, want, "stats event changed; if on purpose, rerun with EXWATCH_BLESS=1 and review");
    }

    #[test]
    fn timestamps_are_suricata_format() {
        assert_eq!(timestamp(Ts(0)), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(timestamp(Ts(1_795_755_314_123_456_789)), "2026-11-27T04:55:14.123456+0000");
        assert_eq!(timestamp(Ts(951_782_400_000_000_000)), "2000-02-29T00:00:00.000000+0000");
    }
}
