//! EVE JSON lines: Suricata's field names, so anything that ingests `eve.json` takes
//! exwatch's events as they are. The field list is a contract, documented in
//! `docs/eve.md` and pinned by golden tests.

use std::io::Write;

use serde::Serialize;

use std::sync::atomic::Ordering;

use crate::decode::{proto, Skip, Ts};
use crate::flow::{community_id, Confidence, Flow, TO_CLIENT, TO_SERVER};
use crate::pipeline::Monitor;
use crate::policy::{Engine, Verdict};
use crate::telemetry::total;

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
    flow: FlowBody<'a>,
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
        },
        flow: FlowBody::new(flow, false),
    };
    write_line(out, &event);
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

#[derive(Serialize)]
struct StatsEvent<'a> {
    timestamp: String,
    event_type: &'a str,
    stats: serde_json::Value,
}

/// Appends one EVE `stats` event (live counters, summed over workers) to `out`.
pub fn write_stats(out: &mut Vec<u8>, ts: Ts, engine: &Engine, monitor: &Monitor) {
    let g = &monitor.gauges;
    let capture = monitor.capture_stats();
    let skipped: serde_json::Map<String, serde_json::Value> = Skip::ALL
        .iter()
        .map(|s| (s.code().to_string(), total(g, |w| &w.skipped[s.index()]).into()))
        .collect();
    let mut alerts = serde_json::Map::new();
    for (i, rule) in engine.policy.rules.iter().enumerate() {
        alerts.insert(rule.id.clone(), total(g, |w| &w.rule_alerts[i]).into());
    }
    for (i, evidence) in engine.policy.evidence.iter().enumerate() {
        alerts.insert(evidence.id.clone(), total(g, |w| &w.evidence_alerts[i]).into());
    }
    let event = StatsEvent {
        timestamp: timestamp(ts),
        event_type: "stats",
        stats: serde_json::json!({
            "uptime": monitor.started.elapsed().as_secs(),
            "capture": {
                "kernel_packets": capture.received,
                "kernel_drops": capture.kernel_dropped,
                "kernel_ifdrops": capture.interface_dropped,
                "shed": monitor.shed.load(Ordering::Relaxed),
            },
            "decoder": {
                "pkts": total(g, |w| &w.frames),
                "bytes": total(g, |w| &w.frame_bytes),
                "decoded": total(g, |w| &w.decoded),
                "skipped": skipped,
            },
            "flow": {
                "active": total(g, |w| &w.flows_active),
                "total": total(g, |w| &w.flows),
                "evicted": total(g, |w| &w.flows_evicted),
                "timed_out": total(g, |w| &w.flows_timed_out),
            },
            "alerts": alerts,
        }),
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
    use super::*;

    #[test]
    fn timestamps_are_suricata_format() {
        assert_eq!(timestamp(Ts(0)), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(timestamp(Ts(1_795_755_314_123_456_789)), "2026-11-27T04:55:14.123456+0000");
        assert_eq!(timestamp(Ts(951_782_400_000_000_000)), "2000-02-29T00:00:00.000000+0000");
    }
}
