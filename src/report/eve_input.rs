//! EVE lines in: one JSON line parsed into a [`Record`], borrowing from the line where
//! it can. It parses; it never reads files (see [`super::logs`]), judges or aggregates.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::records::{
    known, parse_timestamp, AlertRecord, Endpoints, FlowRecord, JudgedUnder, Micros, Record, StatsRecord,
};
use crate::policy::{Role, Verdict};

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pcap_filename: Option<Cow<'a, str>>,
    #[serde(default)]
    src_ip: Option<IpAddr>,
    #[serde(default)]
    src_port: Option<u16>,
    #[serde(default)]
    dest_ip: Option<IpAddr>,
    #[serde(default)]
    dest_port: Option<u16>,
    #[serde(borrow, default)]
    proto: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    community_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    policy: Option<RawPolicy<'a>>,
    #[serde(borrow, default)]
    flow: Option<RawFlow<'a>>,
    #[serde(default)]
    stats: Option<RawStats>,
}

/// `policy`: a flow's or an alert's verdict; on a flow event also `conn_state` and
/// `gaps`; on a `stats` event exwatch's own counters.
#[derive(Deserialize)]
struct RawPolicy<'a> {
    #[serde(borrow, default)]
    verdict: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    rule: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    evidence: Option<Cow<'a, str>>,
    /// An alert's flow: its originator and responder (the top level follows the packet
    /// that fired; events written before this was so have the flow's ends there).
    #[serde(default)]
    src_ip: Option<IpAddr>,
    #[serde(default)]
    src_port: Option<u16>,
    #[serde(default)]
    dest_ip: Option<IpAddr>,
    #[serde(default)]
    dest_port: Option<u16>,
    #[serde(borrow, default)]
    exception: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dest_role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    direction: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    confidence: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    conn_state: Option<Cow<'a, str>>,
    #[serde(default)]
    gaps: u32,
    #[serde(default)]
    capture: RawOwnCapture,
    #[serde(default)]
    packets: RawOwnPackets,
    #[serde(default)]
    flows: RawOwnFlows,
    #[serde(borrow, default)]
    topology_sha256: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    policy_sha256: Option<Cow<'a, str>>,
    /// An aggregate flow record: the flows, packets and bytes it stands for.
    #[serde(borrow, default)]
    aggregate: Option<RawAggregate<'a>>,
    /// `stats`: which flows got a flow event (`all`, `in-scope`, `off`).
    #[serde(borrow, default)]
    flow_events: Option<Cow<'a, str>>,
}

/// `stats` `policy.capture`: frames exwatch shed.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOwnCapture {
    shed: u64,
}

/// `stats` `policy.packets`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOwnPackets {
    decoded: u64,
    skipped_by_reason: ByReason,
}

/// `skipped_by_reason`: a map of reason to count; earlier exwatch logs wrote
/// `[reason, count]` pairs, still read.
#[derive(Deserialize)]
#[serde(untagged)]
enum ByReason {
    Map(BTreeMap<String, u64>),
    Pairs(Vec<(String, u64)>),
}

impl Default for ByReason {
    fn default() -> ByReason {
        ByReason::Pairs(Vec::new())
    }
}

impl ByReason {
    fn pairs(self) -> Vec<(String, u64)> {
        match self {
            ByReason::Map(map) => map.into_iter().collect(),
            ByReason::Pairs(pairs) => pairs,
        }
    }
}

/// `stats` `policy.flows`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOwnFlows {
    evicted: u64,
}

/// `policy.aggregate` of an aggregate alert or flow record.
#[derive(Deserialize)]
struct RawAggregate<'a> {
    flows: u64,
    #[serde(default)]
    pkts: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(borrow, default)]
    first_seen: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct RawFlow<'a> {
    #[serde(default)]
    pkts_toserver: u64,
    #[serde(default)]
    pkts_toclient: u64,
    #[serde(default)]
    bytes_toserver: u64,
    #[serde(default)]
    bytes_toclient: u64,
    #[serde(borrow, default)]
    start: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    end: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
    /// Where logs written before `policy` held them kept `conn_state` and `gaps`.
    #[serde(borrow, default)]
    conn_state: Option<Cow<'a, str>>,
    #[serde(default)]
    gaps: u32,
}

/// `stats`: Suricata's counters (exwatch's own are in `policy`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStats {
    capture: RawCapture,
    decoder: RawDecoder,
    flow: RawFlowStats,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFlowStats {
    total: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCapture {
    kernel_drops: u64,
    kernel_ifdrops: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDecoder {
    pkts: u64,
}

/// What became of one line.
// Moved once per line and never stored: boxing the record would cost an allocation an
// event on the report's hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Record(Record),
    /// Valid EVE, of no interest to the report (another event type, or a flow event
    /// written before flow events carried their verdict).
    Ignored,
    /// Not an EVE event exwatch can read.
    Unreadable,
}

/// Parses one EVE line.
pub fn parse_line(line: &[u8]) -> Parsed {
    let Ok(raw) = serde_json::from_slice::<RawEvent<'_>>(line) else {
        return Parsed::Unreadable;
    };
    let Some(ts) = parse_timestamp(&raw.timestamp) else {
        return Parsed::Unreadable;
    };
    match raw.event_type.as_ref() {
        "flow" | "alert" => flow_or_alert(raw, ts),
        "stats" => {
            let stats = raw.stats.unwrap_or_default();
            let in_scope_flows =
                raw.policy.as_ref().is_some_and(|p| p.flow_events.as_deref() == Some("in-scope"));
            let (shed, decoded, skipped, evicted, judged_under) = match raw.policy {
                Some(p) => {
                    let judged_under = match (p.topology_sha256, p.policy_sha256) {
                        (Some(t), Some(p)) => Some(JudgedUnder {
                            topology_sha256: t.into_owned(),
                            policy_sha256: p.into_owned(),
                        }),
                        _ => None,
                    };
                    (
                        p.capture.shed,
                        p.packets.decoded,
                        p.packets.skipped_by_reason.pairs(),
                        p.flows.evicted,
                        judged_under,
                    )
                }
                None => (0, 0, Vec::new(), 0, None),
            };
            Parsed::Record(Record::Stats(StatsRecord {
                host: raw.host.map(Cow::into_owned),
                ts,
                packets: stats.decoder.pkts,
                decoded,
                skipped: skipped.into_iter().filter(|(_, n)| *n > 0).collect(),
                drops: stats.capture.kernel_drops + stats.capture.kernel_ifdrops + shed,
                flows_evicted: evicted,
                judged_under,
                flows: stats.flow.total,
                in_scope_flows,
            }))
        }
        _ => Parsed::Ignored,
    }
}

fn flow_or_alert(raw: RawEvent<'_>, ts: Micros) -> Parsed {
    let Some(policy) = raw.policy else {
        return Parsed::Ignored;
    };
    // An aggregate alert has no `flow` object: its window stands for one.
    let aggregate_alert = raw.event_type == "alert" && policy.aggregate.is_some();
    let flow = match raw.flow {
        Some(flow) => flow,
        None if aggregate_alert => RawFlow::default(),
        None => return Parsed::Ignored,
    };
    let (src_ip, src_port, dest_ip, dest_port) = match policy.src_ip {
        Some(_) => (policy.src_ip, policy.src_port, policy.dest_ip, policy.dest_port),
        None => (raw.src_ip, raw.src_port, raw.dest_ip, raw.dest_port),
    };
    let (Some(src_ip), Some(dest_ip), Some(verdict)) =
        (src_ip, dest_ip, policy.verdict.as_deref().and_then(Verdict::from_name))
    else {
        return Parsed::Unreadable;
    };
    let role = |r: &Option<Cow<'_, str>>| r.as_deref().and_then(Role::from_name).unwrap_or(Role::External);
    let ends = Endpoints {
        host: raw.host.map(Cow::into_owned),
        pcap_filename: raw.pcap_filename.map(Cow::into_owned),
        community_id: raw.community_id.map(Cow::into_owned).unwrap_or_default(),
        src_ip,
        src_port,
        dest_ip,
        dest_port,
        proto: raw.proto.map_or(Cow::Borrowed(""), |p| known(&p)),
        src_role: role(&policy.src_role),
        dest_role: role(&policy.dest_role),
        inferred: policy.direction.as_deref() == Some("inferred"),
    };
    let first_seen =
        policy.aggregate.as_ref().and_then(|a| a.first_seen.as_deref()).and_then(parse_timestamp);
    let start = flow.start.as_deref().and_then(parse_timestamp).or(first_seen).unwrap_or(ts);
    if raw.event_type == "flow" {
        let (flows, pkts, bytes) = match &policy.aggregate {
            Some(a) => (a.flows.max(1), [a.pkts, 0], [a.bytes, 0]),
            None => (1, [flow.pkts_toserver, flow.pkts_toclient], [flow.bytes_toserver, flow.bytes_toclient]),
        };
        return Parsed::Record(Record::Flow(FlowRecord {
            ends,
            start,
            end: flow.end.as_deref().and_then(parse_timestamp).unwrap_or(ts),
            pkts,
            bytes,
            flows,
            state: flow.state.map_or(Cow::Borrowed(""), |s| known(&s)),
            conn_state: policy.conn_state.or(flow.conn_state).map(|c| known(&c)),
            gaps: policy.gaps.max(flow.gaps),
            verdict,
            rule: policy.rule.map(Cow::into_owned),
        }));
    }
    let Some(rule) = policy.rule else {
        return Parsed::Unreadable;
    };
    Parsed::Record(Record::Alert(AlertRecord {
        ends,
        ts,
        flow_start: start,
        verdict,
        rule: rule.into_owned(),
        evidence: policy.evidence.map(Cow::into_owned),
        confidence: policy.confidence.map_or(Cow::Borrowed("high"), |c| known(&c)),
        exception: policy.exception.map(Cow::into_owned),
        findings: policy.aggregate.as_ref().filter(|_| aggregate_alert).map_or(1, |a| a.flows.max(1)),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::path::Path;

    use super::*;
    use crate::decode::{proto, Tuple};
    use crate::flow::{Confidence, Direction, EndReason, Event, Flow, FlowKey};
    use crate::output::eve;
    use crate::policy::{Engine, Facts, Policy, Topology};
    use crate::report::records::from_event;
    use crate::time::Ts;

    fn engine() -> Engine {
        let policy = Policy::parse(Path::new("exchange.toml"), include_str!("../../rules/exchange.toml"));
        let topology = Topology::parse(Path::new("topology.toml"), include_str!("../../rules/topology.toml"));
        Engine::new(Arc::new(policy.expect("policy")), Arc::new(topology.expect("topology")), 10)
    }

    fn flow(engine: &Engine, src: &str, dst: &str, sport: u16, dport: u16, protocol: u8) -> Flow {
        let orig =
            Tuple { src: src.parse().unwrap(), dst: dst.parse().unwrap(), sport, dport, proto: protocol };
        let start = Ts(1_795_755_314_123_456_789);
        let judgement = engine.judge(&Facts {
            orig: orig.src,
            resp: orig.dst,
            resp_port: dport,
            proto: protocol,
            ts: start,
            plaintext: false,
        });
        let mut f = Flow::new(
            FlowKey::of(&orig),
            orig,
            Direction::Inferred,
            42,
            start,
            Default::default(),
            judgement,
        );
        f.last = Ts(start.0 + 2_500_000_789);
        f.pkts = [5, 3];
        f.bytes = [420, 1337];
        f.gaps = 2;
        f
    }

    fn parsed(line: &[u8]) -> Record {
        match parse_line(line) {
            Parsed::Record(record) => record,
            other => panic!("{other:?}: {}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn a_flow_converted_directly_equals_the_flow_written_and_read_back() {
        let engine = engine();
        let flows = [
            flow(&engine, "10.20.0.9", "10.10.1.11", 50000, 443, proto::TCP),
            flow(&engine, "198.51.100.7", "10.10.1.11", 50001, 3389, proto::TCP),
            flow(&engine, "10.10.1.11", "10.10.0.53", 5353, 53, proto::UDP),
            flow(&engine, "2001:db8:ff::7", "2001:db8:10::11", 8, 0, proto::ICMPV6),
            flow(&engine, "192.0.2.1", "192.0.2.2", 1, 2, proto::UDP),
        ];
        for f in flows {
            let mut line = Vec::new();
            eve::write_flow(&mut line, &engine, &f, EndReason::Timeout);
            let direct = from_event(
                &engine,
                &Event::Flow { flow: f, tunnel: None, reason: EndReason::Timeout, at: f.last },
            );
            assert_eq!(parsed(&line), direct, "{}", String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn an_alert_converted_directly_equals_the_alert_written_and_read_back() {
        let engine = engine();
        let f = flow(&engine, "10.10.1.11", "10.10.1.12", 50001, 135, proto::TCP);
        let rule = f.rule().expect("a rule");
        let mut line = Vec::new();
        eve::write_alert(
            &mut line,
            &engine,
            f.last,
            &f,
            (Verdict::Restriction, Confidence::Low),
            rule,
            (Some(1), None),
        );
        let event = Event::Alert {
            ts: f.last,
            at: f.last,
            flow: f,
            tunnel: None,
            verdict: Verdict::Restriction,
            rule,
            evidence: Some(1),
            confidence: Confidence::Low,
            detail: None,
            source: None,
            exception: None,
        };
        assert_eq!(parsed(&line), from_event(&engine, &event));
    }

    #[test]
    fn accepted_flows_and_alerts_converted_directly_equal_those_written_and_read_back() {
        let policy = Policy::parse(Path::new("exchange.toml"), include_str!("../../rules/exchange.toml"));
        let text = format!(
            "{}\n[[exception]]\nid = \"CHG-1\"\nrule = \"external-to-mailbox\"\nfrom = [\"198.51.100.7\"]\nowner = \"o\"\nreason = \"r\"\nexpires = 2027-03-31\n",
            include_str!("../../rules/topology.toml")
        );
        let topology = Topology::parse(Path::new("topology.toml"), &text);
        let engine =
            Engine::new(Arc::new(policy.expect("policy")), Arc::new(topology.expect("topology")), 10);
        let f = flow(&engine, "198.51.100.7", "10.10.1.11", 50001, 3389, proto::TCP);
        let mut line = Vec::new();
        eve::write_flow(&mut line, &engine, &f, EndReason::Timeout);
        let direct = from_event(
            &engine,
            &Event::Flow { flow: f, tunnel: None, reason: EndReason::Timeout, at: f.last },
        );
        let Record::Flow(ref record) = direct else { panic!("not a flow") };
        assert_eq!(record.verdict, Verdict::Accepted);
        assert_eq!(parsed(&line), direct, "{}", String::from_utf8_lossy(&line));
        let event = Event::Alert {
            ts: f.last,
            at: f.last,
            flow: f,
            tunnel: None,
            verdict: Verdict::Accepted,
            rule: f.rule().expect("a rule"),
            evidence: None,
            confidence: Confidence::Medium,
            detail: None,
            exception: Some(0),
            source: None,
        };
        let mut line = Vec::new();
        eve::write_event(&mut line, &engine, &event);
        let direct = from_event(&engine, &event);
        let Record::Alert(ref alert) = direct else { panic!("not an alert") };
        assert_eq!(alert.exception.as_deref(), Some("CHG-1"));
        assert_eq!(parsed(&line), direct, "{}", String::from_utf8_lossy(&line));
    }

    #[test]
    fn host_and_pcap_filename_are_read_when_present() {
        let line = br#"{"timestamp":"2026-11-27T04:55:14.000080+0000","event_type":"flow","host":"s1","pcap_filename":"a.pcap","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2","dest_port":2,"proto":"TCP","community_id":"1:x","policy":{"verdict":"ok","rule":"r","src_role":"mailbox","dest_role":"mailbox","direction":"observed"},"flow":{"pkts_toserver":1,"pkts_toclient":1,"bytes_toserver":1,"bytes_toclient":1,"start":"2026-11-27T04:55:14.000000+0000","end":"2026-11-27T04:55:14.000080+0000","state":"new"}}"#;
        let Record::Flow(f) = parsed(line) else { panic!("not a flow") };
        assert_eq!((f.ends.host.as_deref(), f.ends.pcap_filename.as_deref()), (Some("s1"), Some("a.pcap")));
        assert_eq!(f.start, 1_795_755_314_000_000);
        assert_eq!(parse_line(b"not json"), Parsed::Unreadable);
        assert_eq!(
            parse_line(br#"{"timestamp":"2026-11-27T04:55:14Z","event_type":"dns"}"#),
            Parsed::Ignored
        );
        // A flow event written before flow events carried their verdict.
        let old = br#"{"timestamp":"2026-11-27T04:55:14Z","event_type":"flow","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","flow":{}}"#;
        assert_eq!(parse_line(old), Parsed::Ignored);
    }

    /// A `stats` event as `live` writes it (Suricata's counters under `stats`, exwatch's
    /// own under `policy`) gives the report the same capture health.
    #[test]
    fn a_stats_event_as_written_is_read_back() {
        use crate::counters::{Counter, Counters};
        use crate::telemetry::{Latency, Snapshot};
        let engine = engine();
        let mut counters = Counters::for_policy(&engine.policy);
        counters[Counter::Frames] = 1000;
        counters[Counter::Decoded] = 990;
        counters[Counter::KernelDropped] = 4;
        counters[Counter::Shed] = 3;
        counters[Counter::FlowsEvicted] = 2;
        counters.skipped[crate::decode::Skip::NotIp.index()] = 10;
        let snapshot = Snapshot {
            counters,
            flows_active: 0,
            latency: Latency::default(),
            uptime: std::time::Duration::from_secs(1),
        };
        let mut line = Vec::new();
        eve::write_stats(&mut line, Ts(1_795_755_314_000_000_000), &engine, &snapshot);
        let Record::Stats(s) = parsed(line.trim_ascii_end()) else { panic!("not stats") };
        assert_eq!((s.packets, s.decoded, s.drops, s.flows_evicted), (1000, 990, 7, 2));
        assert_eq!(s.skipped, [("not_ip".to_string(), 10)]);
    }

    /// A flow line and an alert line as a sensor writes them.
    fn sample_lines() -> Vec<Vec<u8>> {
        let engine = engine();
        let f = flow(&engine, "198.51.100.7", "10.10.1.11", 50001, 3389, proto::TCP);
        let (mut flow_line, mut alert_line) = (Vec::new(), Vec::new());
        eve::write_flow(&mut flow_line, &engine, &f, EndReason::Timeout);
        let rule = f.rule().expect("a rule");
        eve::write_alert(
            &mut alert_line,
            &engine,
            f.last,
            &f,
            (Verdict::Violation, Confidence::High),
            rule,
            Default::default(),
        );
        vec![flow_line, alert_line]
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_line(&bytes);
            let _ = parse_timestamp(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn mutated_lines_never_panic(which in 0usize..2, at in 0usize..2000, value in proptest::prelude::any::<u8>(), cut in 0usize..2000) {
            let mut line = sample_lines().swap_remove(which);
            let at = at % line.len();
            line[at] = value;
            line.truncate(cut.max(1));
            let _ = parse_line(&line);
        }
    }
}
