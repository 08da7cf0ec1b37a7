//! Verdicts a team can gate on: background traffic that never leaves the segment is not
//! "external", ports never turn a UDP flow round, ICMP errors belong to the flow they
//! quote (fragments included), and the evidence firewalls really leave (SPEC section 2
//! and its clarifications). Captures built in code, and the real background traffic of
//! two captures in captures/real judged with a topology that gives their hosts roles.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use exwatch::decode::tcp_flags::{ACK, RST, SYN};
use exwatch::testkit::synth::wire::{self, Segment};
use exwatch::testkit::synth::Scenario;
use serde_json::Value;

use crate::util::{self, Run};

/// A site on one IPv4 and one IPv6 segment: Mailbox servers, a domain controller and an
/// Edge, with the segment's clients listed as internal (so 10.1.10.255 is the directed
/// broadcast of a listed prefix).
const SITE: &str = r#"
[organization]
name = "fabrikam"

[roles]
mailbox           = ["10.1.10.11", "10.1.10.12", "2001:db8:1:10::11"]
domain_controller = ["10.1.10.5", "2001:db8:1:10::5"]
edge              = ["10.1.20.25", "2001:db8:1:20::25"]
internal_client   = ["10.1.10.0/24", "2001:db8:1:10::/64"]

[[edge_subscription]]
edge    = ["10.1.20.25", "2001:db8:1:20::25"]
site    = "HQ"
mailbox = ["10.1.10.11", "10.1.10.12", "2001:db8:1:10::11"]
"#;

const MAILBOX: &str = "10.1.10.11";
const MAILBOX_2: &str = "10.1.10.12";
const MAILBOX_V6: &str = "2001:db8:1:10::11";
const DC: &str = "10.1.10.5";
const EDGE: &str = "10.1.20.25";
const EDGE_V6: &str = "2001:db8:1:20::25";
const CLIENT: &str = "10.1.10.100";
const ROUTER: &str = "10.1.10.1";
const ROUTER_V6: &str = "fd00:1::1";
const INTERNET: &str = "198.51.100.7";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|_| panic!("bad address literal {text}"))
}

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(host), port)
}

/// Runs `exwatch analyze` on `scenario` against `topology`.
fn run_on(topology: &str, scenario: &Scenario, extra: &[&str]) -> Run {
    let (_dir, path) = util::topology_file(topology);
    let mut args = vec!["--topology", path.to_str().expect("temp path is UTF-8")];
    args.extend_from_slice(extra);
    util::analyze_scenario(scenario, &args)
}

fn run(scenario: &Scenario) -> Run {
    run_on(SITE, scenario, &[])
}

type Finding = (String, String, String, String);

fn finding(verdict: &str, id: &str, src: SocketAddr, dest: SocketAddr) -> Finding {
    (verdict.into(), id.into(), src.to_string(), dest.to_string())
}

/// Asserts the run's exact findings and the exit status they give.
fn assert_findings(run: &Run, mut expected: Vec<Finding>) {
    expected.sort();
    assert_eq!(run.findings(), expected, "findings; stderr:\n{}", run.stderr);
    let fails = expected.iter().any(|(verdict, ..)| verdict == "violation" || verdict == "restriction");
    assert_eq!(run.status, i32::from(fails), "exit status; stderr:\n{}", run.stderr);
}

fn summary<'a>(run: &'a Run, section: &str, key: &str) -> &'a Value {
    &run.summary.as_ref().unwrap_or_else(|| panic!("no summary; stderr:\n{}", run.stderr))[section][key]
}

/// Flows the summary counts under `rule`.
fn rule_flows(run: &Run, rule: &str) -> u64 {
    let rules = run.summary.as_ref().expect("summary")["rules"].as_array().expect("rules").clone();
    rules.iter().find(|r| r["rule"] == rule).and_then(|r| r["flows"].as_u64()).unwrap_or(0)
}

// --- Item 1: the local scope --------------------------------------------------------------

/// The background of a default Windows Server whose IPv4 and IPv6 addresses are `v4` and
/// `v6`, on the site's segment.
fn background(v4: &str, v6: &str) -> Scenario {
    let mut s = Scenario::new();
    s.windows_background(
        v4.parse().expect("v4"),
        Ipv4Addr::new(10, 1, 10, 255),
        "fe80::4dc7:f593:1f7b:dc11".parse().expect("link-local"),
        v6.parse().expect("v6"),
        (ROUTER.parse().expect("router"), ROUTER_V6.parse().expect("router v6")),
        ("10.1.10.1".parse().expect("peer"), "2001:db8:1:10::1".parse::<Ipv6Addr>().expect("peer v6")),
    );
    s
}

/// Flows of [`background`]: 7 over IPv4 (LLMNR, mDNS, SSDP, NBNS, NetBIOS datagram,
/// DHCP, IGMP), 4 over IPv6 (LLMNR, mDNS, SSDP, DHCPv6) and 7 of neighbour discovery
/// and MLD (a solicitation and its advertisement are one flow).
const BACKGROUND_FLOWS: u64 = 18;

#[test]
fn the_background_of_a_mailbox_server_is_local_not_external() {
    let run = run(&background(MAILBOX, MAILBOX_V6));
    assert_findings(&run, Vec::new());
    assert_eq!(summary(&run, "flows", "local"), BACKGROUND_FLOWS, "stderr:\n{}", run.stderr);
    assert_eq!(rule_flows(&run, "local-segment"), BACKGROUND_FLOWS);
    // Path MTU discovery: two errors, counted, and no flow of their own.
    assert_eq!(summary(&run, "packets", "icmp_errors"), 2);
    assert_eq!(summary(&run, "flows", "tracked"), BACKGROUND_FLOWS);
}

#[test]
fn the_background_of_an_edge_is_local_not_perimeter_traffic() {
    let run = run(&background(EDGE, EDGE_V6));
    assert_findings(&run, Vec::new());
    assert_eq!(summary(&run, "flows", "local"), BACKGROUND_FLOWS, "stderr:\n{}", run.stderr);
}

#[test]
fn the_local_scope_is_a_rule_a_site_may_change() {
    // With the rule made a violation, the same background is reported: the policy file,
    // not code, decides.
    let policy = std::fs::read_to_string(util::repo().join("rules/exchange.toml")).expect("policy");
    let changed = policy.replacen(
        "verdict = \"out_of_scope\"\nfrom = [\"local\"]",
        "verdict = \"violation\"\nfrom = [\"local\"]",
        1,
    );
    assert_ne!(policy, changed, "the local rule is where this test expects it");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, changed).expect("write policy");
    let mut s = Scenario::new();
    s.send(at(MAILBOX, 54_418), at("224.0.0.252", 5355), Segment::Udp { payload: &[0; 30] });
    let run = run_on(SITE, &s, &["--policy", file.to_str().expect("utf-8")]);
    assert_findings(
        &run,
        vec![finding("violation", "local-segment", at(MAILBOX, 54_418), at("224.0.0.252", 5355))],
    );
    let alert = run.alerts()[0];
    assert_eq!(
        (&alert["policy"]["src_role"], &alert["policy"]["dest_role"]),
        (&"mailbox".into(), &"local".into())
    );
}

#[test]
fn a_packet_too_big_from_a_router_is_evidence_on_the_quoted_flow_not_a_flow() {
    // The Mailbox server's session to a client; the router's "packet too big" quoting
    // one of its segments is counted on that flow and judged as nothing.
    let (mailbox, client) = (at(MAILBOX_V6, 443), at("2001:db8:1:10::100", 50_001));
    let mut s = Scenario::new();
    s.tcp_session(client, mailbox, 1);
    let big = [0x5a; 1300];
    let quoted =
        wire::ip_packet(mailbox, client, 64, Segment::Tcp { flags: ACK, seq: 1, ack: 1, payload: &big });
    s.icmp_error(ip(ROUTER_V6), 2, 0, &quoted);
    let run = run_on(SITE, &s, &["--flows"]);
    assert_findings(&run, Vec::new());
    assert_eq!(run.flows().len(), 1, "{:?}", run.flows());
    assert_eq!(summary(&run, "packets", "icmp_errors"), 1);
}

/// Real captures: their background traffic (SSDP and DHCPv6 in one, LLMNR, NBNS and
/// DHCPv6 bridged inside GRE in the other) gives no finding once their hosts have roles.
fn assert_no_background_finding(capture: &str, topology: &str) {
    let run = util::analyze(&[&util::capture(&format!("real/{capture}"))], &["--topology", topology]);
    let background = |a: &Value| {
        [&a["src_ip"], &a["dest_ip"]].into_iter().any(|addr| {
            let addr: IpAddr = util::str_of(addr).parse().expect("address");
            match addr {
                // The directed broadcasts of the two captures' subnets.
                IpAddr::V4(v4) => {
                    v4.is_multicast()
                        || v4.is_broadcast()
                        || ["10.0.0.255", "192.168.69.255"].contains(&&*v4.to_string())
                }
                IpAddr::V6(v6) => v6.is_multicast() || v6.is_unicast_link_local(),
            }
        })
    };
    let found: Vec<_> = run.alerts().into_iter().filter(|a| background(a)).collect();
    assert!(found.is_empty(), "{capture}: findings from background traffic: {found:?}");
    let local = summary(&run, "flows", "local").as_u64().unwrap_or(0);
    assert!(local > 0, "{capture}: no local flow counted; stderr:\n{}", run.stderr);
}

#[test]
fn real_background_traffic_of_a_windows_host_with_a_role_gives_no_finding() {
    // mixed-http-https-dns-vlan-medium.pcap: SSDP and DHCPv6 from fe80::4dc7:f593:1f7b:dc11,
    // RIPv1 from 10.0.0.138 to 10.0.0.255. The hosts are given Exchange roles, and the
    // link-local one is even listed: `local` is tried before the topology's roles.
    let topology = "[roles]\nmailbox = [\"10.0.0.1\", \"fe80::4dc7:f593:1f7b:dc11\"]\n\
                    domain_controller = [\"10.0.0.138\"]\ninternal_client = [\"10.0.0.0/24\"]\n";
    let (_dir, path) = util::topology_file(topology);
    assert_no_background_finding("mixed-http-https-dns-vlan-medium.pcap", path.to_str().expect("utf-8"));

    // gre-teb-ethernet-http-nbns.pcap: LLMNR, NBNS to 192.168.69.255 and DHCPv6, from
    // 192.168.69.2 and its link-local address, in Ethernet frames inside GRE.
    let topology = "[roles]\nmailbox = [\"192.168.69.2\"]\nedge = [\"192.168.69.10\"]\n\
                    internal_client = [\"192.168.69.0/24\"]\n";
    let (_dir, path) = util::topology_file(topology);
    assert_no_background_finding("gre-teb-ethernet-http-nbns.pcap", path.to_str().expect("utf-8"));
}

// --- Item 2: no port bypass ----------------------------------------------------------------

const REPLY_FIRST: &str =
    "reply seen before its request: the request may predate the capture or be missing from a one-sided feed";

/// Asserts every alert is low confidence, direction observed, and says it looks like a
/// reply.
fn assert_reply_first(run: &Run) {
    for alert in run.alerts() {
        let policy = &alert["policy"];
        assert_eq!(policy["confidence"], "low", "{alert}");
        assert_eq!(policy["direction"], "observed", "{alert}");
        assert_eq!(policy["detail"], REPLY_FIRST, "{alert}");
    }
}

#[test]
fn udp_from_port_53_or_443_is_judged_from_its_sender() {
    let udp = Segment::Udp { payload: &[0; 60] };
    let mut s = Scenario::new();
    s.send(at(INTERNET, 53), at(MAILBOX, 40_004), udp).send(at(INTERNET, 53), at(EDGE, 40_004), udp).send(
        at(INTERNET, 443),
        at(MAILBOX_2, 40_005),
        udp,
    );
    let run = run(&s);
    assert_findings(
        &run,
        vec![
            finding("violation", "external-to-mailbox", at(INTERNET, 53), at(MAILBOX, 40_004)),
            finding("violation", "edge-perimeter", at(INTERNET, 53), at(EDGE, 40_004)),
            finding("violation", "external-to-mailbox", at(INTERNET, 443), at(MAILBOX_2, 40_005)),
        ],
    );
    assert_reply_first(&run);
}

#[test]
fn a_restricted_client_sending_from_53_or_443_to_a_high_port_is_a_violation() {
    let topology =
        SITE.replace("name = \"fabrikam\"", "name = \"fabrikam\"\nrestrict_internal_clients = true");
    let udp = Segment::Udp { payload: &[0; 60] };
    let mut s = Scenario::new();
    s.send(at(CLIENT, 53), at(MAILBOX, 40_004), udp).send(at(CLIENT, 443), at(MAILBOX, 40_005), udp);
    let run = run_on(&topology, &s, &[]);
    assert_findings(
        &run,
        vec![
            finding("violation", "internal-client-restricted", at(CLIENT, 53), at(MAILBOX, 40_004)),
            finding("violation", "internal-client-restricted", at(CLIENT, 443), at(MAILBOX, 40_005)),
        ],
    );
    assert_reply_first(&run);
}

#[test]
fn with_a_dns_role_a_datagram_from_port_53_keeps_its_roles() {
    let topology =
        SITE.replace("internal_client   =", "dns               = [\"10.1.10.53\"]\ninternal_client   =");
    let mut s = Scenario::new();
    s.send(at(INTERNET, 53), at(MAILBOX, 40_004), Segment::Udp { payload: &[0; 60] });
    // A real query and its answer: the Mailbox server asked first, all is well.
    s.udp_exchange(at(MAILBOX, 40_010), at("10.1.10.53", 53), 1);
    let run = run_on(&topology, &s, &[]);
    assert_findings(
        &run,
        vec![finding("violation", "external-to-mailbox", at(INTERNET, 53), at(MAILBOX, 40_004))],
    );
    let alert = run.alerts()[0];
    assert_eq!(
        (&alert["policy"]["src_role"], &alert["policy"]["dest_role"]),
        (&"external".into(), &"mailbox".into())
    );
    assert_eq!(rule_flows(&run, "mailbox-dns"), 1);
}

#[test]
fn a_datagram_between_two_unnamed_ports_is_not_called_a_reply() {
    let mut s = Scenario::new();
    s.send(at(INTERNET, 20_000), at(MAILBOX, 33_434), Segment::Udp { payload: &[0; 32] });
    let run = run(&s);
    let alert = run.alerts()[0];
    assert_eq!(alert["policy"]["confidence"], "high");
    assert!(alert["policy"].get("detail").is_none(), "{alert}");
}

// --- Item 3: fragments stay whole in evidence ----------------------------------------------

/// A 2000-byte Kerberos datagram from a Mailbox server to the DC in two IPv4 fragments;
/// a filter refuses the second with ICMP 3/13.
#[test]
fn a_refused_later_fragment_is_a_restriction_on_its_datagrams_flow() {
    let (mailbox, dc) = (at(MAILBOX, 40_001), at(DC, 88));
    let mut s = Scenario::new();
    s.udp_fragmented(mailbox, dc, 2000, 1480, &[0, 1]);
    let second = s.frames.last().expect("second fragment").data[14..].to_vec();
    s.icmp_error(ip(ROUTER), 3, 13, &second);
    let run = run_on(SITE, &s, &["--flows"]);
    assert_findings(&run, vec![finding("restriction", "restricted-icmp-prohibited", mailbox, dc)]);
    for event in &run.events {
        assert_ne!(event["src_port"], 0, "a port-0 flow or finding: {event}");
    }
}

#[test]
fn a_refused_later_fragment_whose_first_was_never_seen_makes_no_port_0_finding() {
    let (mailbox, dc) = (at(MAILBOX, 40_001), at(DC, 88));
    let mut whole = Scenario::new();
    whole.udp_fragmented(mailbox, dc, 2000, 1480, &[1]);
    let second = whole.frames[0].data[14..].to_vec();
    let mut s = Scenario::new();
    s.icmp_error(ip(ROUTER), 3, 13, &second);
    // A Mailbox server's HTTPS beside it, so the run has judged something (SPEC 4).
    s.tcp_session(at(CLIENT, 50_000), at(MAILBOX, 443), 1);
    let run = run(&s);
    assert_findings(&run, Vec::new());
    assert_eq!(summary(&run, "packets", "icmp_unmatched"), 1);
}

// --- Item 4: the evidence firewalls really leave ---------------------------------------------

#[test]
fn a_third_partys_port_unreachable_is_a_reject_and_the_destinations_own_is_not() {
    let (mailbox, dc) = (at(MAILBOX, 40_001), at(DC, 389));
    let mut s = Scenario::new();
    // A router's `REJECT --reject-with icmp-port-unreachable` of an LDAP SYN.
    let syn = wire::ip_packet(mailbox, dc, 64, Segment::Tcp { flags: SYN, seq: 1, ack: 0, payload: &[] });
    s.ip(&syn).icmp_error(ip(ROUTER), 3, 3, &syn);
    // The DC itself saying nothing listens on a UDP port: an answer, not a filter.
    let (mailbox2, dc_udp) = (at(MAILBOX_2, 40_002), at(DC, 3000));
    let probe = wire::ip_packet(mailbox2, dc_udp, 64, Segment::Udp { payload: &[0; 20] });
    s.ip(&probe).icmp_error(ip(DC), 3, 3, &probe);
    let run = run(&s);
    assert_findings(&run, vec![finding("restriction", "restricted-icmp-rejected", mailbox, dc)]);
}
#[test]
fn a_reset_is_compared_with_what_its_sender_showed_on_other_flows() {
    let (mailbox, dc) = (at(MAILBOX, 40_001), at(DC, 389));
    let tcp = |flags| Segment::Tcp { flags, seq: 1, ack: 1, payload: &[] };
    let mut s = Scenario::new();
    // The DC's Kerberos answers arrive with TTL 63 (one router away)...
    s.ttl = 63;
    s.send(at(DC, 88), at(MAILBOX, 40_000), Segment::Udp { payload: &[0; 100] });
    s.ttl = 64;
    s.send(at(MAILBOX, 40_000), at(DC, 88), Segment::Udp { payload: &[0; 100] });
    // ...and the router's `REJECT --reject-with tcp-reset` of LDAP, seconds later, with
    // its own TTL 64, answers the very first SYN.
    s.wait(2.0).send(mailbox, dc, tcp(SYN)).send(dc, mailbox, tcp(RST | ACK));
    let run = run(&s);
    assert_findings(&run, vec![finding("restriction", "restricted-injected-reset", mailbox, dc)]);
    // One earlier flow is what stood behind the comparison.
    let policy = &run.alerts()[0]["policy"];
    assert_eq!(policy["confidence"], "medium", "{policy}");
    assert_eq!(
        policy["detail"],
        "reset with TTL 64 where its sender showed TTL 63 on 1 earlier flow to this host"
    );
    // The reset's source address is the evidence's source; the alert's addresses follow
    // the reset (to the client), the flow's ends stay in `policy`.
    let alert = run.alerts()[0];
    assert_eq!(policy["evidence_source"], dc.ip().to_string(), "{alert}");
    assert_eq!(alert["alert"]["metadata"]["evidence_source"][0], dc.ip().to_string(), "{alert}");
    assert_eq!((&alert["direction"], &alert["src_ip"]), (&"to_client".into(), &dc.ip().to_string().into()));
    // With two earlier flows agreeing, high.
    let mut s2 = Scenario::new();
    s2.ttl = 63;
    s2.send(at(DC, 88), at(MAILBOX, 40_000), Segment::Udp { payload: &[0; 100] }).send(
        at(DC, 445),
        at(MAILBOX, 40_003),
        Segment::Udp { payload: &[0; 100] },
    );
    s2.ttl = 64;
    s2.wait(2.0).send(mailbox, dc, tcp(SYN)).send(dc, mailbox, tcp(RST | ACK));
    let run = run_on(SITE, &s2, &[]);
    assert_eq!(run.alerts()[0]["policy"]["confidence"], "high");
}

#[test]
fn a_reset_with_the_ttl_its_sender_showed_elsewhere_is_an_answer() {
    let (mailbox, dc) = (at(MAILBOX, 40_001), at(DC, 389));
    let tcp = |flags| Segment::Tcp { flags, seq: 1, ack: 1, payload: &[] };
    let mut s = Scenario::new();
    s.ttl = 63;
    s.send(at(DC, 88), at(MAILBOX, 40_000), Segment::Udp { payload: &[0; 100] });
    s.ttl = 64;
    s.wait(2.0).send(mailbox, dc, tcp(SYN));
    s.ttl = 63;
    s.send(dc, mailbox, tcp(RST | ACK));
    let run = run(&s);
    assert_findings(&run, Vec::new());
}

#[test]
fn a_capture_ending_inside_the_syn_timeout_proves_no_silent_drop() {
    // SYNs at 0 and 1 s, and the capture ends at 1 s: the default 3 s timeout never
    // passed, so the drop is undetermined, not a restriction. The same SYNs with a
    // later packet in the capture past the timeout are one.
    let (mailbox, dc) = (at(MAILBOX, 40_001), at(DC, 389));
    let mut s = Scenario::new();
    s.syn_unanswered(mailbox, dc, 1, 1.0);
    let ended = run(&s);
    assert_findings(&ended, Vec::new());
    assert_eq!(summary(&ended, "flows", "syn_undetermined"), 1, "stderr:\n{}", ended.stderr);

    s.wait(5.0).send(
        at(CLIENT, 40_002),
        at(MAILBOX, 443),
        Segment::Tcp { flags: SYN, seq: 1, ack: 0, payload: &[] },
    );
    for workers in ["1", "3"] {
        let later = run_on(SITE, &s, &["--workers", workers]);
        assert_findings(&later, vec![finding("restriction", "restricted-silent-drop", mailbox, dc)]);
        assert_eq!(summary(&later, "flows", "syn_undetermined"), 0);
    }
}

/// An Internet server's SMTP to the Edge (`EDGE`), then the Edge probing it on 1080.
fn smtp_then_probe(smtp: impl FnOnce(&mut Scenario, SocketAddr, SocketAddr), wait: f64) -> Run {
    let (mta, edge) = (at(INTERNET, 40_001), at(EDGE, 25));
    let mut s = Scenario::new();
    smtp(&mut s, mta, edge);
    s.wait(wait).tcp_session(at(EDGE, 41_001), at(INTERNET, 1080), 1);
    run(&s)
}

#[test]
fn only_answered_smtp_makes_an_open_proxy_probe_legitimate() {
    let probe = vec![finding("violation", "edge-not-open-proxy-probe", at(EDGE, 41_001), at(INTERNET, 1080))];
    let answered = smtp_then_probe(
        |s, mta, edge| {
            s.tcp_session(mta, edge, 2);
        },
        5.0,
    );
    assert_findings(&answered, Vec::new());
    // A SYN the Edge never answered is no SMTP.
    let unanswered = smtp_then_probe(
        |s, mta, edge| {
            s.syn_unanswered(mta, edge, 1, 1.0);
        },
        5.0,
    );
    assert_findings(&unanswered, probe);
}

#[test]
fn the_open_proxy_window_runs_from_the_last_packet_of_the_smtp() {
    // A mail session of 70 minutes (a segment every 200 s), then a probe 10 minutes after
    // its last packet: within the hour counted from there, not from its first packet.
    let session = |s: &mut Scenario, mta: SocketAddr, edge: SocketAddr| {
        let tcp = |flags| Segment::Tcp { flags, seq: 1, ack: 1, payload: b"DATA" };
        s.send(mta, edge, tcp(SYN)).send(edge, mta, tcp(SYN | ACK));
        for _ in 0..21 {
            s.wait(200.0).send(mta, edge, tcp(ACK)).send(edge, mta, tcp(ACK));
        }
    };
    assert_findings(&smtp_then_probe(session, 600.0), Vec::new());
}

#[test]
fn a_reordered_handshake_judges_the_flow_again_with_its_observed_direction() {
    // The server's data arrives first: the lower port (1500) looks like the service, so
    // the Mailbox server is taken for the client. Then the SYN and SYN-ACK, reordered by
    // the SPAN port, show the Internet host opened the flow: a new verdict, its own event.
    let (client, mailbox) = (at(INTERNET, 1500), at(MAILBOX, 33_000));
    let tcp = |flags, payload: &'static [u8]| Segment::Tcp { flags, seq: 1, ack: 1, payload };
    let mut s = Scenario::new();
    s.send(mailbox, client, tcp(ACK, b"data"))
        .send(client, mailbox, tcp(SYN, b""))
        .send(mailbox, client, tcp(SYN | ACK, b""))
        .send(client, mailbox, tcp(ACK, b"more"));
    let run = run_on(SITE, &s, &["--flows"]);
    assert_findings(
        &run,
        vec![
            finding("violation", "mailbox-to-external", mailbox, client),
            finding("violation", "external-to-mailbox", client, mailbox),
        ],
    );
    let directions: Vec<_> = run.alerts().iter().map(|a| util::str_of(&a["policy"]["direction"])).collect();
    assert_eq!(directions, ["inferred", "observed"]);
    let flows = run.flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (&flows[0]["src_port"], &flows[0]["flow"]["pkts_toserver"]),
        (&1500.into(), &2.into()),
        "{}",
        flows[0]
    );

    // When the ports had it right, the SYN only makes the direction observed: no event.
    let (client, mailbox) = (at(INTERNET, 40_001), at(MAILBOX, 3389));
    let mut s = Scenario::new();
    s.send(client, mailbox, tcp(ACK, b"data")).send(client, mailbox, tcp(SYN, b"")).send(
        mailbox,
        client,
        tcp(SYN | ACK, b""),
    );
    assert_findings(
        &run_on(SITE, &s, &[]),
        vec![finding("violation", "external-to-mailbox", client, mailbox)],
    );
}

#[test]
fn the_new_evidence_is_the_same_with_any_worker_count() {
    // Background, a bypass attempt, a refused fragment, a reset compared with another
    // flow and a silent drop whose timeout ends after the pair's last packet, in one
    // capture: every worker count gives the same events.
    let mut s = background(MAILBOX, MAILBOX_V6);
    s.send(at(INTERNET, 53), at(MAILBOX, 40_004), Segment::Udp { payload: &[0; 60] });
    s.udp_fragmented(at(MAILBOX, 40_001), at(DC, 88), 2000, 1480, &[0, 1]);
    let second = s.frames.last().expect("second fragment").data[14..].to_vec();
    s.icmp_error(ip(ROUTER), 3, 13, &second);
    s.ttl = 63;
    s.send(at(DC, 88), at(MAILBOX_2, 40_000), Segment::Udp { payload: &[0; 100] });
    s.ttl = 64;
    let tcp = |flags| Segment::Tcp { flags, seq: 1, ack: 1, payload: &[] };
    s.send(at(MAILBOX_2, 40_001), at(DC, 389), tcp(SYN)).send(
        at(DC, 389),
        at(MAILBOX_2, 40_001),
        tcp(RST | ACK),
    );
    s.syn_unanswered(at(MAILBOX, 40_002), at(DC, 445), 1, 1.0);
    s.wait(5.0).tcp_session(at(CLIENT, 40_003), at(MAILBOX, 443), 1);
    let mut runs = ["1", "2", "3", "4"].map(|workers| {
        // Each run writes the scenario to a temp dir of its own: compare the file's name.
        let run = run_on(SITE, &s, &["--flows", "--workers", workers]);
        let mut lines: Vec<String> = run.lines.iter().map(|l| crate::util::file_name_only(l)).collect();
        lines.sort();
        lines
    });
    let first = std::mem::take(&mut runs[0]);
    assert!(first.iter().any(|l| l.contains("restricted-silent-drop")), "{first:?}");
    for other in &runs[1..] {
        assert_eq!(&first, other);
    }
}

/// A tunnel that ends on an Exchange server is traffic to that server (SPEC section 2):
/// VXLAN from an unlisted host to a Mailbox server's 4789 is the outside reaching it,
/// judged once for each flow that starts inside the tunnel, the same with any worker
/// count; while the tunnel's ends have no role, only the inner flows are judged.
#[test]
fn a_tunnel_ending_on_a_mailbox_server_is_judged_as_traffic_to_it() {
    let capture = util::capture("real/vxlan-http.pcap");
    let tunnel_alerts = |run: &Run| -> Vec<(String, String, String)> {
        let mut found: Vec<_> = run
            .alerts()
            .iter()
            .filter(|a| a["dest_port"] == 4789)
            .map(|a| {
                (util::str_of(&a["policy"]["rule"]), util::str_of(&a["src_ip"]), util::str_of(&a["dest_ip"]))
            })
            .collect();
        found.sort();
        found
    };
    let (_dir, ends) = util::topology_file("[roles]\nmailbox = [\"10.1.1.172\"]\n");
    let ends = ends.to_str().expect("utf-8");
    let run = util::analyze(&[&capture], &["--topology", ends, "--no-aggregate"]);
    let found = tunnel_alerts(&run);
    let inner_flows = util::analyze(&[&capture], &["--topology", ends, "--flows"]).flows().len();
    assert!(!found.is_empty() && found.len() <= inner_flows, "{found:?}; {}", run.stderr);
    let want = ("external-to-mailbox".to_string(), "10.1.200.131".to_string(), "10.1.1.172".to_string());
    assert!(found.iter().all(|f| *f == want), "{found:?}");
    assert_eq!(run.status, 1, "{}", run.stderr);
    let two = util::analyze(&[&capture], &["--topology", ends, "--no-aggregate", "--workers", "2"]);
    assert_eq!(tunnel_alerts(&two), found, "any worker count");

    // The inner flow's server is the Mailbox server, the tunnel's ends have no role.
    let (_dir, inner) = util::topology_file("[roles]\nmailbox = [\"54.86.237.188\"]\n");
    let run = util::analyze(&[&capture], &["--topology", inner.to_str().expect("utf-8")]);
    assert!(tunnel_alerts(&run).is_empty(), "{:?}", run.alerts());
}
