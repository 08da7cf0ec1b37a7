//! EVE JSON lines: Suricata's field names, so anything that ingests `eve.json` takes
//! exwatch's events as they are. The field list is a contract, documented in
//! `docs/eve.md` and pinned by golden tests.

use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;

use super::bound::Aggregate;
use super::soc::{self, Metadata};
pub use super::soc::{flow_alerted, flow_verdict, in_scope};
use super::summary::Counts;
use crate::counters::{Counter, Section};
use crate::decode::{proto, AppProto, Tunnel};
use crate::flow::{community_id, Confidence, EndReason, Event, Flow, TcpSeen, TO_CLIENT, TO_SERVER};
use crate::policy::{Engine, Evidence, EvidenceKind, Verdict};
use crate::telemetry::{aggregated_series, alert_series, Snapshot};
use crate::time::{timestamp, Ts};

/// Community ID seed; 0 is what Zeek and Suricata use unless told otherwise.
pub const COMMUNITY_ID_SEED: u16 = 0;

/// The names Suricata writes for IP protocols 0 to 143 (its `known_proto` table: IANA's
/// keywords, with `IP-in-IP` for 4 and `Any` for the unassigned "any ..." entries).
/// Protocols past the table are written as their number.
const PROTO_NAMES: [&str; 144] = [
    "HOPOPT",
    "ICMP",
    "IGMP",
    "GGP",
    "IP-in-IP",
    "ST",
    "TCP",
    "CBT",
    "EGP",
    "IGP",
    "BBN-RCC-MON",
    "NVP-II",
    "PUP",
    "ARGUS",
    "EMCON",
    "XNET",
    "CHAOS",
    "UDP",
    "MUX",
    "DCN-MEAS",
    "HMP",
    "PRM",
    "XNS-IDP",
    "TRUNK-1",
    "TRUNK-2",
    "LEAF-1",
    "LEAF-2",
    "RDP",
    "IRTP",
    "ISO-TP4",
    "NETBLT",
    "MFE-NSP",
    "MERIT-INP",
    "DCCP",
    "3PC",
    "IDPR",
    "XTP",
    "DDP",
    "IDPR-CMTP",
    "TP++",
    "IL",
    "IPv6",
    "SDRP",
    "IPv6-Route",
    "IPv6-Frag",
    "IDRP",
    "RSVP",
    "GRE",
    "DSR",
    "BNA",
    "ESP",
    "AH",
    "I-NLSP",
    "SwIPe",
    "NARP",
    "MOBILE",
    "TLSP",
    "SKIP",
    "IPv6-ICMP",
    "IPv6-NoNxt",
    "IPv6-Opts",
    "Any",
    "CFTP",
    "Any",
    "SAT-EXPAK",
    "KRYPTOLAN",
    "RVD",
    "IPPC",
    "Any",
    "SAT-MON",
    "VISA",
    "IPCU",
    "CPNX",
    "CPHB",
    "WSN",
    "PVP",
    "BR-SAT-MON",
    "SUN-ND",
    "WB-MON",
    "WB-EXPAK",
    "ISO-IP",
    "VMTP",
    "SECURE-VMTP",
    "VINES",
    "TTP",
    "NSFNET-IGP",
    "DGP",
    "TCF",
    "EIGRP",
    "OSPF",
    "Sprite-RPC",
    "LARP",
    "MTP",
    "AX.25",
    "OS",
    "MICP",
    "SCC-SP",
    "ETHERIP",
    "ENCAP",
    "Any",
    "GMTP",
    "IFMP",
    "PNNI",
    "PIM",
    "ARIS",
    "SCPS",
    "QNX",
    "A/N",
    "IPComp",
    "SNP",
    "Compaq-Peer",
    "IPX-in-IP",
    "VRRP",
    "PGM",
    "Any",
    "L2TP",
    "DDX",
    "IATP",
    "STP",
    "SRP",
    "UTI",
    "SMP",
    "SM",
    "PTP",
    "IS-IS",
    "FIRE",
    "CRTP",
    "CRUDP",
    "SSCOPMCE",
    "IPLT",
    "SPS",
    "PIPE",
    "SCTP",
    "FC",
    "RSVP-E2E-IGNORE",
    "Mobility",
    "UDPLite",
    "MPLS-in-IP",
    "manet",
    "HIP",
    "Shim6",
    "WESP",
    "ROHC",
    "Ethernet",
];

/// EVE's `proto`: Suricata's name for the protocol, or its number where it has none.
pub fn proto_name(p: u8) -> Cow<'static, str> {
    match PROTO_NAMES.get(usize::from(p)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(p.to_string()),
    }
}

/// Whether exwatch reads the protocol's ports (it decodes TCP's and UDP's only).
fn has_ports(proto: u8) -> bool {
    matches!(proto, proto::TCP | proto::UDP)
}

/// Where the events of a run were seen: Suricata's `host` (the sensor's name),
/// `in_iface` (a live capture's interface) and `pcap_filename` (the capture file a
/// flow's first packet came from, by the index the flow keeps).
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub host: Option<String>,
    pub in_iface: Option<String>,
    pub files: Vec<String>,
    /// Which flows get a `flow` event (`stats` `policy.flow_events`).
    pub flow_log: FlowLog,
}

/// Which flows a run writes `flow` events for, as its `stats` events say
/// (`policy.flow_events`), so that a report knows whether the flow events it reads are
/// every flow or only those the article covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowLog {
    #[default]
    Off,
    /// `--flows`: every flow.
    All,
    /// `--flows=in-scope`: the flows the article covers, bounded by the flow bound.
    InScope,
}

impl FlowLog {
    pub fn name(self) -> &'static str {
        match self {
            FlowLog::Off => "off",
            FlowLog::All => "all",
            FlowLog::InScope => "in-scope",
        }
    }
}

impl Origin {
    /// No `host`, `in_iface` or `pcap_filename`.
    pub const NONE: Origin = Origin { host: None, in_iface: None, files: Vec::new(), flow_log: FlowLog::Off };

    /// The name of input `file`; none past the 65,535th (flows keep a 16-bit index).
    fn file(&self, file: u16) -> Option<&str> {
        (file < u16::MAX).then(|| self.files.get(usize::from(file))).flatten().map(String::as_str)
    }
}

#[derive(Serialize)]
struct Header<'a> {
    timestamp: String,
    flow_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_iface: Option<&'a str>,
    event_type: &'a str,
    #[serde(skip_serializing_if = "<[u16]>::is_empty")]
    vlan: &'a [u16],
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u16>,
    community_id: String,
    /// Suricata's name for what the flow's first payloads were; absent before any.
    #[serde(skip_serializing_if = "Option::is_none")]
    app_proto: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pcap_filename: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

/// Suricata's `tunnel`: the outermost packet's addresses, ports and protocol, and how
/// many tunnels deep the flow was carried.
#[derive(Serialize)]
struct TunnelBody {
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: Cow<'static, str>,
    depth: u8,
}

impl TunnelBody {
    fn new(tunnel: &Tunnel) -> TunnelBody {
        let outer = &tunnel.outer;
        let ports = has_ports(outer.proto);
        TunnelBody {
            src_ip: outer.src.to_string(),
            src_port: ports.then_some(outer.sport),
            dest_ip: outer.dst.to_string(),
            dest_port: ports.then_some(outer.dport),
            proto: proto_name(outer.proto),
            depth: tunnel.depth,
        }
    }
}

impl Header<'_> {
    /// The header of an event on `flow`. `src_*` is the flow's originator, unless
    /// `to_client`: an alert's addresses follow the packet that fired, as Suricata's do,
    /// and a packet to the client came from the responder.
    fn new<'a>(
        event_type: &'a str,
        ts: Ts,
        (flow, tunnel): (&'a Flow, Option<&Tunnel>),
        origin: &'a Origin,
        to_client: bool,
    ) -> Header<'a> {
        let t = &flow.orig();
        let ports = has_ports(t.proto);
        let (src, dest) = if to_client {
            ((t.dst, t.dport), (t.src, t.sport))
        } else {
            ((t.src, t.sport), (t.dst, t.dport))
        };
        // An ICMP flow's tuple holds its first message's type and code where ports go.
        let icmp = matches!(t.proto, proto::ICMP | proto::ICMPV6);
        Header {
            timestamp: timestamp(ts),
            flow_id: flow.id,
            in_iface: origin.in_iface.as_deref(),
            event_type,
            vlan: flow.vlan.ids(),
            src_ip: src.0.to_string(),
            src_port: ports.then_some(src.1),
            dest_ip: dest.0.to_string(),
            dest_port: ports.then_some(dest.1),
            proto: proto_name(t.proto),
            icmp_type: icmp.then_some(t.sport),
            icmp_code: icmp.then_some(t.dport),
            community_id: community_id(COMMUNITY_ID_SEED, t),
            app_proto: AppProto::of_flow(flow.app[TO_SERVER], flow.app[TO_CLIENT]).name(),
            tunnel: tunnel.map(TunnelBody::new),
            pcap_filename: origin.file(flow.file),
            host: origin.host.as_deref(),
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
    /// The facts of `policy` again, as Suricata writes a rule's metadata, for pipelines
    /// that keep Suricata's fields only.
    metadata: Metadata,
}

#[derive(Serialize)]
struct PolicyBody<'a> {
    verdict: &'a str,
    rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<&'a str>,
    /// Restrictions: the address that sent the evidence (an ICMP error's or a reset's
    /// sender), when a packet carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence_source: Option<String>,
    /// The flow's originator and responder, whichever way the packet that fired went
    /// (the roles below are theirs).
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    src_role: &'a str,
    dest_role: &'a str,
    direction: &'a str,
    confidence: &'a str,
    section: &'a str,
    /// Zeek's `conn_state` of the flow when the alert was made: a TCP finding waits for
    /// the handshake, so a refused SYN (`REJ`) is told from a connection (`S1`).
    conn_state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// The id of the `[[exception]]` that accepted the finding (verdict `accepted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    exception: Option<&'a str>,
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
    /// Aggregate alerts: the first flows held, each with a flow event of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    flow_ids: Vec<u64>,
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
    /// `flow` events: whole seconds from the first packet to the last, as Suricata.
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<u64>,
    state: &'a str,
    /// `flow` events: why the flow ended (`timeout`, `forced`, `shutdown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// `flow` events: whether any finding on the flow raised an alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    alerted: Option<bool>,
}

impl FlowBody<'_> {
    /// The `flow` object: of an alert (`ended` none), or of a flow that ended, with
    /// whether it alerted and why it ended.
    fn new(flow: &Flow, ended: Option<(bool, EndReason)>) -> FlowBody<'static> {
        let with_end = ended.is_some();
        FlowBody {
            pkts_toserver: flow.pkts[TO_SERVER],
            pkts_toclient: flow.pkts[TO_CLIENT],
            bytes_toserver: flow.bytes[TO_SERVER],
            bytes_toclient: flow.bytes[TO_CLIENT],
            start: timestamp(flow.start),
            end: with_end.then(|| timestamp(flow.last)),
            age: with_end.then(|| flow.last.0.saturating_sub(flow.start.0) / 1_000_000_000),
            state: flow.state(),
            reason: ended.map(|(_, reason)| reason.name()),
            alerted: ended.map(|(alerted, _)| alerted),
        }
    }
}

#[derive(Serialize)]
struct AlertEvent<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    /// Suricata's: which way the packet that decided the alert went.
    direction: &'static str,
    alert: AlertBody<'a>,
    policy: PolicyBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<FlowBody<'a>>,
}

#[derive(Serialize)]
struct FlowEvent<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    flow: FlowBody<'a>,
    policy: FlowPolicy<'a>,
}

/// `policy` of a `flow` event: the flow's verdict and rule whatever the verdict (so a
/// report can be built from flow events alone), and what exwatch adds to Suricata's
/// `flow` object.
#[derive(Serialize)]
struct FlowPolicy<'a> {
    verdict: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    src_role: &'a str,
    dest_role: &'a str,
    direction: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    section: Option<&'a str>,
    /// Zeek's `conn_state` code.
    conn_state: &'a str,
    /// Sequence gaps: segments the capture never saw (when any).
    #[serde(skip_serializing_if = "Option::is_none")]
    gaps: Option<u32>,
    /// The `[[exception]]` that accepts the flow's finding (verdict `accepted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    exception: Option<&'a str>,
    /// An aggregate flow record: the flows it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregate: Option<AggregateBody>,
}

impl<'a> FlowPolicy<'a> {
    fn new(engine: &'a Engine, flow: &Flow) -> FlowPolicy<'a> {
        let rule = flow.rule().and_then(|r| engine.policy.rules.get(r));
        let orig = flow.orig();
        let exception = engine
            .flow_exception(flow.rule(), (orig.src, orig.dst), (orig.proto, orig.dport), flow.start)
            .and_then(|i| engine.topology.exceptions.get(i));
        FlowPolicy {
            verdict: flow_verdict(engine, flow).name(),
            exception: exception.map(|e| e.id.as_str()),
            rule: rule.map(|r| r.id.as_str()),
            src_role: flow.orig_role.name(),
            dest_role: flow.resp_role.name(),
            direction: flow.direction.name(),
            section: rule.map(|r| r.section.as_str()),
            conn_state: flow.conn_state(),
            gaps: (flow.gaps > 0).then_some(flow.gaps),
            aggregate: None,
        }
    }
}

/// Which way the packet that decided an alert went, as Suricata's alert `direction`
/// says: `to_server` (originator to responder) or `to_client`. A verdict is decided by
/// the flow's first packet, which went to the client when the responder's packet was
/// seen first; an ICMP error travels back to the originator; an injected RST comes from
/// the side it claims; SYNs (unanswered, altered or dropped between capture points) go
/// to the server.
fn alert_direction(flow: &Flow, evidence: Option<&Evidence>) -> &'static str {
    let to_client = match evidence.map(|e| e.kind) {
        None => flow.pkts[TO_SERVER] == 0 && flow.pkts[TO_CLIENT] > 0,
        Some(EvidenceKind::IcmpProhibited | EvidenceKind::IcmpRejected) => true,
        Some(EvidenceKind::ResetInjected) => {
            flow.tcp.seen(TcpSeen::RESP_RST) && !flow.tcp.seen(TcpSeen::ORIG_RST)
        }
        Some(EvidenceKind::SynUnanswered | EvidenceKind::OptionsAltered | EvidenceKind::SynDropped) => false,
    };
    if to_client {
        "to_client"
    } else {
        "to_server"
    }
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
    evidence: (Option<usize>, Option<&str>),
) {
    let (evidence, detail) = evidence;
    let found = (evidence, detail, None, None);
    alert_line(out, (engine, &Origin::NONE), ts, (flow, None), (verdict, confidence), rule, found, None)
}

/// Appends one aggregate line: for held-back alerts an `alert` with the finding and the
/// example flow of its first held-back alert, without that flow's `flow` object; for
/// held-back flow events a `flow` event of its example flow. Either with
/// `policy.aggregate`, and the last event it counts as its timestamp.
pub fn write_aggregate(out: &mut Vec<u8>, (engine, origin): (&Engine, &Origin), aggregate: &Aggregate) {
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
        flow_ids: aggregate.flow_ids.clone(),
    };
    let at = (engine, origin);
    match aggregate.example {
        Event::Alert { flow, tunnel, verdict, rule, evidence, confidence, exception, source, .. } => {
            let flow = (&flow, tunnel.as_ref());
            let found = (evidence, None, exception_id(engine, exception), source);
            alert_line(out, at, aggregate.last, flow, (verdict, confidence), rule, found, Some(body));
        }
        Event::Flow { ref flow, ref tunnel, reason, .. } => {
            let mut policy = FlowPolicy::new(engine, flow);
            policy.aggregate = Some(body);
            let event = FlowEvent {
                header: Header::new("flow", aggregate.last, (flow, tunnel.as_ref()), origin, false),
                flow: FlowBody::new(flow, Some((flow_alerted(engine, flow), reason))),
                policy,
            };
            write_line(out, &event);
        }
    }
}

/// The id of the topology's exception at `exception`.
fn exception_id(engine: &Engine, exception: Option<u16>) -> Option<&str> {
    exception.and_then(|i| engine.topology.exceptions.get(usize::from(i))).map(|e| e.id.as_str())
}

#[allow(clippy::too_many_arguments)]
fn alert_line(
    out: &mut Vec<u8>,
    (engine, origin): (&Engine, &Origin),
    ts: Ts,
    (flow, tunnel): (&Flow, Option<&Tunnel>),
    (verdict, confidence): (Verdict, Confidence),
    rule: usize,
    (evidence, detail, exception, source): (
        Option<usize>,
        Option<&str>,
        Option<&str>,
        Option<std::net::IpAddr>,
    ),
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
    let (category, severity) = soc::category(verdict);
    let source = source.map(|a| a.to_string());
    let metadata = alert_metadata(
        (verdict, confidence),
        (rule, evidence.map(|e| e.id.as_str()), source.as_deref(), exception),
        (flow, section, detail),
        aggregate.as_ref(),
    );
    let direction = alert_direction(flow, evidence);
    let t = flow.orig();
    let ports = has_ports(t.proto);
    let event = AlertEvent {
        header: Header::new("alert", ts, (flow, tunnel), origin, direction == "to_client"),
        direction,
        alert: AlertBody {
            action: "allowed",
            gid: 1,
            signature_id: sid,
            rev,
            severity,
            signature: format!("exwatch {id}: {reason}"),
            category,
            metadata,
        },
        policy: PolicyBody {
            verdict: verdict.name(),
            rule: &rule.id,
            evidence: evidence.map(|e| e.id.as_str()),
            evidence_source: source,
            src_ip: t.src.to_string(),
            src_port: ports.then_some(t.sport),
            dest_ip: t.dst.to_string(),
            dest_port: ports.then_some(t.dport),
            src_role: flow.orig_role.name(),
            dest_role: flow.resp_role.name(),
            direction: flow.direction.name(),
            confidence: confidence.name(),
            section,
            conn_state: flow.conn_state(),
            detail,
            exception,
            aggregate,
        },
        flow: with_flow.then(|| FlowBody::new(flow, None)),
    };
    write_line(out, &event);
}

/// `alert.metadata`: the verdict, rule, evidence, section, roles, direction,
/// confidence and detail of `policy`, an aggregate's count and window, and the pages of
/// `docs/rules.md` that explain the finding.
fn alert_metadata(
    (verdict, confidence): (Verdict, Confidence),
    (rule, evidence, source, exception): (&crate::policy::Rule, Option<&str>, Option<&str>, Option<&str>),
    (flow, section, detail): (&Flow, &str, Option<&str>),
    aggregate: Option<&AggregateBody>,
) -> Metadata {
    let mut m = Metadata::default();
    m.one("verdict", verdict.name())
        .one("rule", rule.id.as_str())
        .opt("evidence", evidence)
        .opt("evidence_source", source)
        .opt("exception", exception)
        .one("section", section)
        .one("orig_role", flow.orig_role.name())
        .one("resp_role", flow.resp_role.name())
        .one("direction", flow.direction.name())
        .one("confidence", confidence.name())
        .one("conn_state", flow.conn_state())
        .opt("detail", detail);
    if let Some(a) = aggregate {
        m.one("aggregate_by", a.by)
            .one("count", a.flows.to_string())
            .many("window", vec![a.first_seen.clone(), a.last_seen.clone()]);
    }
    let pages = evidence.into_iter().chain([rule.id.as_str()]).map(soc::rule_page).collect();
    m.many("reference", pages);
    m
}

/// Appends the EVE line of one event to `out`.
pub fn write_event(out: &mut Vec<u8>, engine: &Engine, event: &Event) {
    write_event_from(out, (engine, &Origin::NONE), event)
}

/// [`write_event`], with where the run saw it (`host`, `in_iface`, `pcap_filename`).
pub fn write_event_from(out: &mut Vec<u8>, (engine, origin): (&Engine, &Origin), event: &Event) {
    match *event {
        Event::Alert {
            ts,
            ref flow,
            ref tunnel,
            verdict,
            rule,
            evidence,
            confidence,
            detail,
            exception,
            source,
            ..
        } => {
            let detail = detail.map(|d| super::detail::text(engine, d));
            let found = (evidence, detail.as_deref(), exception_id(engine, exception), source);
            let flow = (flow, tunnel.as_ref());
            alert_line(out, (engine, origin), ts, flow, (verdict, confidence), rule, found, None)
        }
        Event::Flow { ref flow, ref tunnel, reason, .. } => {
            write_flow_from(out, (engine, origin), (flow, tunnel.as_ref()), reason)
        }
    }
}

/// Appends one EVE `flow` line (the flow has ended) to `out`, with the flow's verdict
/// and rule (`out_of_scope` and no rule when no rule matched).
pub fn write_flow(out: &mut Vec<u8>, engine: &Engine, flow: &Flow, reason: EndReason) {
    write_flow_from(out, (engine, &Origin::NONE), (flow, None), reason)
}

/// [`write_flow`], with where the flow was seen.
fn write_flow_from(
    out: &mut Vec<u8>,
    (engine, origin): (&Engine, &Origin),
    (flow, tunnel): (&Flow, Option<&Tunnel>),
    reason: EndReason,
) {
    let event = FlowEvent {
        header: Header::new("flow", flow.last, (flow, tunnel), origin, false),
        flow: FlowBody::new(flow, Some((flow_alerted(engine, flow), reason))),
        policy: FlowPolicy::new(engine, flow),
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
    /// The sensor's name, as on every Suricata event.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
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
    /// What the events were judged under: a report refuses events of another topology
    /// or policy than its own.
    topology_sha256: &'a str,
    policy_sha256: &'a str,
    /// Which flows get a `flow` event: `all`, `in-scope` or `off`.
    flow_events: &'static str,
}

/// Appends one EVE `stats` event (live counters, summed over workers) to `out`.
pub fn write_stats(out: &mut Vec<u8>, ts: Ts, engine: &Engine, snapshot: &Snapshot) {
    write_stats_from(out, ts, (engine, &Origin::NONE), snapshot)
}

/// [`write_stats`], with the sensor's name.
pub fn write_stats_from(
    out: &mut Vec<u8>,
    ts: Ts,
    (engine, origin): (&Engine, &Origin),
    snapshot: &Snapshot,
) {
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
            topology_sha256: &engine.topology.sha256,
            policy_sha256: &engine.policy.sha256,
            flow_events: origin.flow_log.name(),
        },
        host: origin.host.as_deref(),
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
    use crate::counters::Counters;
    use crate::policy::builtin;
    use crate::telemetry::Latency;

    /// The `stats` event is a contract like the alerts (docs/eve.md): pinned by
    /// `tests/golden/stats.jsonl`; rewrite it with EXWATCH_BLESS=1 after a deliberate
    /// change and review the diff.
    #[test]
    fn stats_event_matches_the_golden_file() {
        let policy = Arc::new(builtin::policy().expect("policy"));
        let engine = Engine::new(policy, Arc::new(builtin::topology().expect("topology")), 10);
        let mut counters = Counters::for_policy(&engine.policy);
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

    /// Suricata names the sensor on every event, `stats` included.
    #[test]
    fn stats_events_name_the_sensor() {
        let policy = Arc::new(builtin::policy().expect("policy"));
        let engine = Engine::new(policy, Arc::new(builtin::topology().expect("topology")), 10);
        let snapshot = Snapshot {
            counters: Counters::for_policy(&engine.policy),
            flows_active: 0,
            latency: Latency::default(),
            uptime: Duration::from_secs(1),
        };
        let origin = Origin { host: Some("span-7".into()), ..Origin::default() };
        let mut out = Vec::new();
        write_stats_from(&mut out, Ts(0), (&engine, &origin), &snapshot);
        let event: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(event["host"], "span-7");
        assert!(event.get("in_iface").is_none(), "Suricata's stats name no interface");
    }

    /// Suricata's protocol names: IANA's keywords from its table, a number past it.
    #[test]
    fn protocols_are_named_as_suricata_names_them() {
        let names: Vec<_> = [1, 2, 6, 17, 47, 50, 51, 58, 89, 103, 112, 132, 143, 144, 253]
            .into_iter()
            .map(|p| proto_name(p).into_owned())
            .collect();
        let want = [
            "ICMP",
            "IGMP",
            "TCP",
            "UDP",
            "GRE",
            "ESP",
            "AH",
            "IPv6-ICMP",
            "OSPF",
            "PIM",
            "VRRP",
            "SCTP",
            "Ethernet",
            "144",
            "253",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn timestamps_are_suricata_format() {
        assert_eq!(timestamp(Ts(0)), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(timestamp(Ts(1_795_755_314_123_456_789)), "2026-11-27T04:55:14.123456+0000");
        assert_eq!(timestamp(Ts(951_782_400_000_000_000)), "2000-02-29T00:00:00.000000+0000");
    }
}
