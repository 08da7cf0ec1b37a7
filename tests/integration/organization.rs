//! A real organization (SPEC sections 1, 3 and 9): roles as sets, the hybrid and
//! Unified Messaging packs, sites, exceptions and the `accepted` verdict, unicast DHCP.
//! Scenario captures built here, judged by the real binary against the topology
//! `ORG` below (IPv4 and IPv6 hosts in every role that has both).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use exwatch::testkit::synth::wire::Segment;
use exwatch::testkit::synth::Scenario;
use exwatch::time::Ts;
use serde_json::Value;

use crate::util::{self, Run};

const MAILBOX: &str = "10.1.10.11";
const MAILBOX_V6: &str = "2001:db8:1:10::11";
const MAILBOX_BRANCH: &str = "10.2.10.11";
const EDGE: &str = "172.16.0.25";
const EDGE_V6: &str = "2001:db8:16::25";
/// A domain controller that also serves DNS.
const DC: &str = "10.1.0.5";
const DC_V6: &str = "2001:db8:1::5";
const CLIENT_HQ: &str = "10.1.128.5";
const CLIENT_BRANCH: &str = "10.2.128.5";
/// Exchange Online: inline, and from the endpoints file (record 8).
const EXO: &str = "40.92.1.1";
const EXO_V6: &str = "2a01:111:f400::1";
const EXO_FILE: &str = "52.100.0.9";
const GATEWAY: &str = "10.1.50.5";
const GATEWAY_V6: &str = "2001:db8:1:50::5";
/// Not listed: external. The jump host of exception CHG-4711.
const JUMP: &str = "198.51.100.20";
const OLD_JUMP: &str = "198.51.100.21";
const JUMP_V6: &str = "2001:db8:99::20";

/// The capture's start: 2026-11-27, before CHG-4711 expires (2027-03-31) and after
/// CHG-1000 did (2026-01-31).
const START: Ts = Ts(1_795_755_314_000_000_000);

const ENDPOINTS: &str = r#"[
  {"id": 1, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online", "urls": ["outlook.office.com"],
   "ips": ["13.107.6.152/31"], "tcpPorts": "80,443", "udpPorts": "443", "expressRoute": true, "category": "Optimize", "required": true},
  {"id": 8, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online", "urls": ["*.mail.protection.outlook.com"],
   "ips": ["52.100.0.0/14"], "tcpPorts": "25", "expressRoute": false, "category": "Allow", "required": true},
  {"id": 46, "serviceArea": "Common", "serviceAreaDisplayName": "Microsoft 365 Common and Office Online", "urls": ["*.msftidentity.com"],
   "ips": ["20.20.32.0/19"], "tcpPorts": "80,443", "expressRoute": false, "category": "Allow", "required": true}
]"#;

fn org(edge: bool, version: u16) -> String {
    let packs = if version == 2016 { r#"["hybrid", "unified-messaging"]"# } else { r#"["hybrid"]"# };
    let gateway = if version == 2016 {
        format!("um_gateway = [\"{GATEWAY}\", \"{GATEWAY_V6}\"]\n")
    } else {
        String::new()
    };
    let mut text = format!(
        r#"[organization]
name = "fabrikam"
exchange_version = {version}
packs = {packs}

[roles]
mailbox = ["{MAILBOX}", "10.1.10.12", "{MAILBOX_BRANCH}", "{MAILBOX_V6}"]
domain_controller = ["{DC}", "{DC_V6}"]
dns = ["{DC}", "{DC_V6}"]
internal_client = ["10.1.128.0/17", "10.2.128.0/17"]
exchange_online = ["40.92.0.0/15", "2a01:111:f400::/48"]
exchange_online_endpoints = "endpoints.json"
{gateway}"#
    );
    if edge {
        text += &format!("edge = [\"{EDGE}\", \"{EDGE_V6}\"]\n");
    }
    text += r#"
[[site]]
name = "HQ"
networks = ["10.1.0.0/16", "2001:db8:1::/48"]

[[site]]
name = "Branch"
networks = ["10.2.0.0/16"]
restrict_internal_clients = true
"#;
    if edge {
        text += &format!("\n[[edge_subscription]]\nedge = [\"{EDGE}\", \"{EDGE_V6}\"]\nsite = \"HQ\"\n");
    }
    text += &format!(
        r#"
[[exception]]
id = "CHG-4711"
rule = "external-to-mailbox"
from = ["{JUMP}", "{JUMP_V6}"]
to = ["mailbox"]
ports = ["tcp/3389"]
owner = "secops@fabrikam.example"
reason = "jump host administration, approved by the CISO"
expires = 2027-03-31

[[exception]]
id = "CHG-1000"
rule = "*"
from = ["{OLD_JUMP}"]
to = ["mailbox"]
ports = ["tcp/3389"]
owner = "secops@fabrikam.example"
reason = "the old jump host"
expires = 2026-01-31

[[exception]]
id = "CHG-2000"
rule = "mailbox-to-external"
to = ["203.0.113.9"]
owner = "messaging@fabrikam.example"
reason = "a partner's archive, never used"
expires = 2027-06-30

[[exception]]
id = "RISK-12"
rule = "restricted-silent-drop"
from = ["mailbox"]
to = ["domain_controller"]
ports = ["tcp/445"]
owner = "netops@fabrikam.example"
reason = "SMB to the DC is filtered during the migration"
expires = 2027-01-15
"#
    );
    text
}

/// Writes the topology and the endpoints file beside it: (guard, topology path).
fn files(topology: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = util::topology_file(topology);
    std::fs::write(dir.path().join("endpoints.json"), ENDPOINTS).expect("write endpoints");
    (dir, path)
}

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().expect("host literal"), port)
}

fn scenario() -> Scenario {
    let mut s = Scenario::new();
    s.now = START;
    s
}

fn run_with(topology: &str, scenario: &Scenario, extra: &[&str]) -> Run {
    let (_dir, path) = files(topology);
    let mut args = vec!["--topology", path.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    util::analyze_scenario(scenario, &args)
}

fn run(scenario: &Scenario) -> Run {
    run_with(&org(true, 2016), scenario, &[])
}

/// (verdict, rule or evidence, src, dest) of every alert.
fn findings(run: &Run) -> Vec<(String, String, String, String)> {
    run.findings()
}

fn f(verdict: &str, id: &str, src: SocketAddr, dest: SocketAddr) -> (String, String, String, String) {
    (verdict.into(), id.into(), src.to_string(), dest.to_string())
}

/// Flows per rule from the summary (rules with flows only).
fn rule_flows(run: &Run) -> BTreeMap<String, u64> {
    let summary = run.summary.as_ref().unwrap_or_else(|| panic!("no summary: {}", run.stderr));
    summary["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| Some((util::str_of(&r["rule"]), r["flows"].as_u64().filter(|&n| n > 0)?)))
        .collect()
}

fn expect_flows(run: &Run, expected: &[(&str, u64)]) {
    let expected: BTreeMap<String, u64> = expected.iter().map(|&(r, n)| (r.to_string(), n)).collect();
    assert_eq!(rule_flows(run), expected, "stderr:\n{}", run.stderr);
}

fn alert_for<'a>(run: &'a Run, rule: &str) -> &'a Value {
    run.alerts()
        .into_iter()
        .find(|a| a["policy"]["rule"] == rule || a["policy"]["evidence"] == rule)
        .unwrap_or_else(|| panic!("no alert for {rule}: {:?}", run.lines))
}

// --- Roles as sets ---------------------------------------------------------------------

#[test]
fn a_dc_that_serves_dns_stays_never_restrict_for_mailbox_and_is_edge_dns_for_the_edge() {
    let mut s = scenario();
    let mut port = 40_001;
    for (mailbox, dc, edge) in [(MAILBOX, DC, EDGE), (MAILBOX_V6, DC_V6, EDGE_V6)] {
        s.udp_exchange(at(mailbox, port), at(dc, 53), 1);
        s.tcp_session(at(mailbox, port + 1), at(dc, 53), 1);
        s.udp_exchange(at(edge, port + 2), at(dc, 53), 1);
        s.tcp_session(at(edge, port + 3), at(dc, 53), 1);
        port += 10;
    }
    let run = run(&s);
    assert_eq!(findings(&run), []);
    assert_eq!(run.status, 0, "{}", run.stderr);
    expect_flows(&run, &[("exchange-internal", 4), ("edge-dns", 4)]);
    let flows = run.flows();
    assert!(flows.is_empty(), "no --flows asked");
}

// --- Hybrid -----------------------------------------------------------------------------

#[test]
fn hybrid_rows_follow_microsofts_figures_with_an_edge() {
    let mut s = scenario();
    let sessions = [
        (EXO, EDGE, 25),
        (EDGE, EXO, 25),
        (EXO_V6, EDGE_V6, 25),
        (EXO, MAILBOX, 443),
        (EXO_V6, MAILBOX_V6, 443),
        (MAILBOX, EXO, 443),
        (MAILBOX, EXO, 80),
        (MAILBOX_V6, EXO_V6, 443),
        // Judged as external:
        (MAILBOX, EXO, 25),
        (EXO, MAILBOX, 25),
        (MAILBOX, EXO, 8443),
        (EXO_V6, MAILBOX_V6, 3389),
        (MAILBOX, EXO_FILE, 587),
    ];
    for (i, (from, to, port)) in sessions.iter().enumerate() {
        s.tcp_session(at(from, 40_001 + i as u16), at(to, *port), 1);
    }
    let run = run(&s);
    let src = |i: usize| at(sessions[i].0, 40_001 + i as u16);
    let dst = |i: usize| at(sessions[i].1, sessions[i].2);
    let mut want = vec![
        f("violation", "outbound-smtp-bypasses-edge", src(8), dst(8)),
        f("violation", "inbound-smtp-bypasses-edge", src(9), dst(9)),
        f("violation", "mailbox-to-external", src(10), dst(10)),
        f("violation", "external-to-mailbox", src(11), dst(11)),
        f("violation", "mailbox-to-external", src(12), dst(12)),
    ];
    want.sort();
    assert_eq!(findings(&run), want);
    expect_flows(
        &run,
        &[
            ("hybrid-mail-edge", 3),
            ("hybrid-online-to-mailbox", 2),
            ("hybrid-mailbox-to-online", 3),
            ("outbound-smtp-bypasses-edge", 1),
            ("inbound-smtp-bypasses-edge", 1),
            ("mailbox-to-external", 2),
            ("external-to-mailbox", 1),
        ],
    );
    let external = alert_for(&run, "external-to-mailbox");
    assert_eq!(external["policy"]["src_role"], "exchange_online");
    // The finding on an address of the endpoints file names its record.
    let from_file = run.alerts().into_iter().find(|a| a["dest_ip"] == EXO_FILE).expect("alert to EXO_FILE");
    assert_eq!(
        from_file["policy"]["detail"],
        "Exchange Online address of Microsoft 365 endpoints record 8 (tcpPorts 25, udpPorts none)"
    );
}

#[test]
fn hybrid_mail_flows_between_exchange_online_and_mailbox_without_an_edge() {
    let mut s = scenario();
    s.tcp_session(at(EXO, 40_001), at(MAILBOX, 25), 1);
    s.tcp_session(at(MAILBOX_V6, 40_002), at(EXO_V6, 25), 1);
    s.tcp_session(at(MAILBOX, 40_003), at(EXO, 443), 1);
    let run = run_with(&org(false, 2016), &s, &[]);
    assert_eq!(findings(&run), []);
    expect_flows(&run, &[("hybrid-mail-mailbox", 2), ("hybrid-mailbox-to-online", 1)]);
}

// --- Unified Messaging -------------------------------------------------------------------

#[test]
fn um_rows_follow_microsofts_figures_on_2016() {
    let mut s = scenario();
    let mut port = 40_001;
    let mut expected_ok = 0;
    for (gateway, mailbox) in [(GATEWAY, MAILBOX), (GATEWAY_V6, MAILBOX_V6)] {
        for sip in [5060, 5062, 5063, 5065, 5066, 5067, 5068] {
            s.tcp_session(at(gateway, port), at(mailbox, sip), 1);
            s.udp_exchange(at(gateway, port + 1), at(mailbox, sip), 1);
            port += 2;
            expected_ok += 2;
        }
        s.tcp_session(at(gateway, port), at(mailbox, 5061), 1);
        // Play on Phone: the Mailbox server calls out.
        s.tcp_session(at(mailbox, port + 1), at(gateway, 5061), 1);
        // RTP both ways, to the ends of its range.
        s.udp_exchange(at(gateway, 20_000), at(mailbox, 1024), 2);
        s.udp_exchange(at(mailbox, 31_000), at(gateway, 65_535), 2);
        port += 2;
    }
    s.tcp_session(at(GATEWAY, 45_000), at(MAILBOX, 5070), 1);
    // Below the RTP range: neither SIP nor media.
    s.udp_exchange(at(GATEWAY_V6, 45_001), at(MAILBOX_V6, 1023), 1);
    let run = run(&s);
    let mut want = vec![
        f("violation", "um-gateway-other", at(GATEWAY, 45_000), at(MAILBOX, 5070)),
        f("violation", "um-gateway-other", at(GATEWAY_V6, 45_001), at(MAILBOX_V6, 1023)),
    ];
    want.sort();
    assert_eq!(findings(&run), want);
    let flows = rule_flows(&run);
    let sip: u64 = ["um-call-router-sip", "um-service-sip", "um-worker-sip"].iter().map(|r| flows[*r]).sum();
    assert_eq!(sip, expected_ok);
    assert_eq!(flows["um-call-router-sip-tls"], 4);
    assert_eq!(flows["um-rtp"], 4);
    assert_eq!(flows["um-gateway-other"], 2);
}

#[test]
fn on_2019_a_gateways_sip_is_external_traffic() {
    let mut s = scenario();
    s.tcp_session(at(GATEWAY, 40_001), at(MAILBOX, 5060), 1);
    s.udp_exchange(at(GATEWAY_V6, 40_002), at(MAILBOX_V6, 5060), 1);
    let run = run_with(&org(true, 2019), &s, &[]);
    let mut want = vec![
        f("violation", "external-to-mailbox", at(GATEWAY, 40_001), at(MAILBOX, 5060)),
        f("violation", "external-to-mailbox", at(GATEWAY_V6, 40_002), at(MAILBOX_V6, 5060)),
    ];
    want.sort();
    assert_eq!(findings(&run), want);
}

// --- Sites --------------------------------------------------------------------------------

#[test]
fn sites_have_their_own_client_rules_and_name_the_edges_subscription() {
    let mut s = scenario();
    s.tcp_session(at(CLIENT_HQ, 40_001), at(MAILBOX, 8080), 1);
    s.tcp_session(at(CLIENT_BRANCH, 40_002), at(MAILBOX_BRANCH, 8080), 1);
    s.tcp_session(at(CLIENT_BRANCH, 40_003), at(MAILBOX_BRANCH, 443), 1);
    s.tcp_session(at(EDGE, 40_004), at(MAILBOX, 25), 1);
    s.tcp_session(at(EDGE_V6, 40_005), at(MAILBOX_V6, 25), 1);
    s.tcp_session(at(EDGE, 40_006), at(MAILBOX_BRANCH, 25), 1);
    let run = run(&s);
    let mut want = vec![
        f("violation", "internal-client-restricted", at(CLIENT_BRANCH, 40_002), at(MAILBOX_BRANCH, 8080)),
        f("violation", "edge-unsubscribed-site", at(EDGE, 40_006), at(MAILBOX_BRANCH, 25)),
    ];
    want.sort();
    assert_eq!(findings(&run), want);
    expect_flows(
        &run,
        &[
            ("internal-client", 1),
            ("internal-client-restricted", 1),
            ("client-https", 1),
            ("edge-to-subscribed-mailbox", 2),
            ("edge-unsubscribed-site", 1),
        ],
    );
}

// --- Exceptions ---------------------------------------------------------------------------

fn exceptions_scenario() -> Scenario {
    let mut s = scenario();
    // Accepted: the jump host's RDP, twice over IPv4 and once over IPv6.
    s.tcp_session(at(JUMP, 40_001), at(MAILBOX, 3389), 1);
    s.tcp_session(at(JUMP, 40_002), at(MAILBOX_BRANCH, 3389), 1);
    s.tcp_session(at(JUMP_V6, 40_007), at(MAILBOX_V6, 3389), 1);
    // Not by port, over IPv6.
    s.tcp_session(at(JUMP_V6, 40_008), at(MAILBOX_V6, 22), 1);
    // Not by port: the exception names tcp/3389 only.
    s.tcp_session(at(JUMP, 40_003), at(MAILBOX, 3390), 1);
    // Expired: CHG-1000 ended on 2026-01-31.
    s.tcp_session(at(OLD_JUMP, 40_004), at(MAILBOX, 3389), 1);
    // Restriction evidence, accepted by RISK-12 but still visible.
    s.syn_unanswered(at(MAILBOX, 40_005), at(DC, 445), 2, 1.0);
    s.wait(5.0).tcp_session(at("10.1.10.12", 40_006), at(DC, 88), 1);
    s
}

#[test]
fn exceptions_accept_findings_by_rule_address_and_port_until_they_expire() {
    let run = run_with(&org(true, 2016), &exceptions_scenario(), &["--syn-timeout", "1.5"]);
    let mut want = vec![
        f("accepted", "external-to-mailbox", at(JUMP, 40_001), at(MAILBOX, 3389)),
        f("accepted", "external-to-mailbox", at(JUMP, 40_002), at(MAILBOX_BRANCH, 3389)),
        f("accepted", "external-to-mailbox", at(JUMP_V6, 40_007), at(MAILBOX_V6, 3389)),
        f("violation", "external-to-mailbox", at(JUMP, 40_003), at(MAILBOX, 3390)),
        f("violation", "external-to-mailbox", at(JUMP_V6, 40_008), at(MAILBOX_V6, 22)),
        f("violation", "external-to-mailbox", at(OLD_JUMP, 40_004), at(MAILBOX, 3389)),
        f("accepted", "restricted-silent-drop", at(MAILBOX, 40_005), at(DC, 445)),
    ];
    want.sort();
    assert_eq!(findings(&run), want, "{}", run.stderr);
    assert_eq!(run.status, 1, "the violations still fail the run");
    for alert in run.alerts() {
        let p = &alert["policy"];
        if p["verdict"] == "accepted" {
            assert_eq!(alert["alert"]["action"], "allowed");
            let id = if p["rule"] == "exchange-internal" { "RISK-12" } else { "CHG-4711" };
            assert_eq!(p["exception"], id, "{alert}");
        } else {
            assert!(p.get("exception").is_none(), "{alert}");
        }
    }
    let expired = run.alerts().into_iter().find(|a| a["src_ip"] == OLD_JUMP).expect("expired alert");
    assert_eq!(
        expired["policy"]["detail"],
        "exception CHG-1000 (owner secops@fabrikam.example) would accept this finding but expired on 2026-01-31"
    );
    let summary = run.summary.as_ref().expect("summary");
    assert_eq!(summary["findings"]["accepted"], 4);
    assert_eq!(summary["findings"]["exception_expired"], 1);
    let rule =
        |id: &str| summary["rules"].as_array().unwrap().iter().find(|r| r["rule"] == id).cloned().unwrap();
    assert_eq!(
        (rule("external-to-mailbox")["alerts"].as_u64(), rule("external-to-mailbox")["accepted"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(rule("restricted-silent-drop")["accepted"], 1);
    let listed: Vec<(String, u64, u64, String)> = summary["exceptions"]
        .as_array()
        .expect("exceptions")
        .iter()
        .map(|e| {
            (
                util::str_of(&e["id"]),
                e["accepted"].as_u64().unwrap(),
                e["expired_findings"].as_u64().unwrap(),
                util::str_of(&e["status"]),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("CHG-4711".into(), 3, 0, "used".into()),
            ("CHG-1000".into(), 0, 1, "expired".into()),
            ("CHG-2000".into(), 0, 0, "unused".into()),
            ("RISK-12".into(), 1, 0, "used".into()),
        ]
    );
    assert!(run.stderr.contains("CHG-2000"), "the text summary lists exceptions: {}", run.stderr);
}

#[test]
fn accepted_findings_never_fail_a_run_unless_fail_on_names_them() {
    let mut s = scenario();
    s.tcp_session(at(JUMP, 40_001), at(MAILBOX, 3389), 1);
    let topology = org(true, 2016);
    let run = run_with(&topology, &s, &[]);
    assert_eq!(findings(&run), [f("accepted", "external-to-mailbox", at(JUMP, 40_001), at(MAILBOX, 3389))]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let strict = run_with(&topology, &s, &["--fail-on", "violation,accepted"]);
    assert_eq!(strict.status, 1, "{}", strict.stderr);
}

// --- DHCP ---------------------------------------------------------------------------------

#[test]
fn unicast_dhcp_between_67_and_68_is_local_and_a_relays_67_to_67_is_judged() {
    let mut s = scenario();
    // A DHCP server off the topology renews a Mailbox server's lease, unicast both ways.
    s.udp_exchange(at(MAILBOX, 68), at("10.1.0.1", 67), 1);
    s.send(at("10.1.0.1", 67), at(MAILBOX_BRANCH, 68), Segment::Udp { payload: &[2; 300] });
    // A relay (the router) forwards to a DHCP server on a Mailbox address: 67 -> 67.
    s.udp_exchange(at("198.51.100.67", 67), at(MAILBOX, 67), 1);
    let run = run(&s);
    assert_eq!(
        findings(&run),
        [f("violation", "external-to-mailbox", at("198.51.100.67", 67), at(MAILBOX, 67))]
    );
    expect_flows(&run, &[("local-segment", 2), ("external-to-mailbox", 1)]);
    assert_eq!(run.summary.as_ref().unwrap()["flows"]["local"], 2);
}

#[test]
fn the_real_dhcp_of_a_capture_is_local() {
    // captures/real/raw-ip-ipv6-http.pcap carries a DHCP request (0.0.0.0:68 to
    // 255.255.255.255:67; see MANIFEST.tsv). No real capture we hold has unicast DHCP,
    // which the scenario above covers; this one holds the real bytes to the same rule.
    let run = util::analyze(&[&util::capture("real/raw-ip-ipv6-http.pcap")], &["--flows"]);
    assert!(run.read_whole(), "{}", run.stderr);
    let dhcp: Vec<&Value> = run.flows().into_iter().filter(|f| f["dest_port"] == 67).collect();
    assert!(!dhcp.is_empty(), "{:?}", run.lines);
    for flow in dhcp {
        assert_eq!(flow["policy"]["rule"], "local-segment", "{flow}");
        assert_eq!(flow["policy"]["src_role"], "local", "{flow}");
    }
}

// --- Worker-count invariance ---------------------------------------------------------------

#[test]
fn the_organizations_events_do_not_depend_on_the_worker_count() {
    let mut s = exceptions_scenario();
    s.tcp_session(at(EXO, 41_001), at(MAILBOX, 443), 1).tcp_session(
        at(MAILBOX, 41_002),
        at(EXO_FILE, 587),
        1,
    );
    s.udp_exchange(at(GATEWAY, 41_003), at(MAILBOX, 5060), 1).tcp_session(
        at(GATEWAY, 41_004),
        at(MAILBOX, 80),
        1,
    );
    s.udp_exchange(at(MAILBOX, 68), at("10.1.0.1", 67), 1);
    s.tcp_session(at(CLIENT_BRANCH, 41_005), at(MAILBOX_BRANCH, 8080), 1);
    let topology = org(true, 2016);
    let one = run_with(&topology, &s, &["--workers", "1", "--syn-timeout", "1.5", "--flows"]);
    let two = run_with(&topology, &s, &["--workers", "2", "--syn-timeout", "1.5", "--flows"]);
    let lines = |run: &Run| {
        let mut lines: Vec<String> = run.lines.iter().map(|l| util::without_file(l)).collect();
        lines.sort();
        lines
    };
    assert!(one.alerts().len() >= 8, "{:?}", one.lines);
    assert_eq!(lines(&one), lines(&two));
    assert_eq!(one.summary.as_ref().unwrap()["exceptions"], two.summary.as_ref().unwrap()["exceptions"]);
}

// --- check --------------------------------------------------------------------------------

#[test]
fn check_accepts_the_organization_and_refuses_bad_input_with_file_line_key_and_status_2() {
    let good = org(true, 2016);
    let (_dir, path) = files(&good);
    let (status, out, err) = util::exwatch(&["check", "--topology", path.to_str().unwrap()]);
    // Valid; the one warning is the exception that has expired.
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        out.contains("exception \"CHG-1000\" (owner secops@fabrikam.example) expired on 2026-01-31"),
        "{out}"
    );
    let cases: [(&str, &str, &str); 8] = [
        (
            r#"edge = ["172.16.0.25","#,
            r#"edge = ["10.1.0.5","#,
            ":14: roles.edge: Edge Transport server 10.1.0.5/32 also holds domain_controller, dns",
        ),
        (
            r#""10.1.10.12","#,
            r#""::ffff:10.1.10.11","#,
            ":7: roles.mailbox: `::ffff:10.1.10.11` is `10.1.10.11` again",
        ),
        (
            r#"packs = ["hybrid", "unified-messaging"]"#,
            r#"packs = ["hybrid", "voicemail"]"#,
            ":4: organization.packs: `voicemail` is not a pack",
        ),
        (
            "exchange_version = 2016",
            "exchange_version = 2019",
            ":4: organization.packs: unified-messaging needs exchange_version = 2016",
        ),
        (
            r#"networks = ["10.2.0.0/16"]"#,
            r#"networks = ["10.1.10.0/24"]"#,
            ":22: site[1].networks: 10.1.10.0/24 shares addresses with 10.1.0.0/16 of site \"HQ\"",
        ),
        ("expires = 2027-03-31", "expires = 2027-02-30", ":37: expires: invalid date"),
        (
            r#"rule = "external-to-mailbox""#,
            r#"rule = "rdp-to-mailbox""#,
            ":31: exception[0].rule: `rdp-to-mailbox` is not a rule or evidence id",
        ),
        (
            r#"owner = "secops@fabrikam.example"
reason = "jump host"#,
            r#"reason = "jump host"#,
            ":29: exception[0].owner: missing",
        ),
    ];
    for (from, to, want) in cases {
        let bad = good.replacen(from, to, 1);
        assert_ne!(bad, good, "{from}");
        let (_dir, path) = files(&bad);
        let (status, out, err) = util::exwatch(&["check", "--topology", path.to_str().unwrap()]);
        assert_eq!(status, 2, "{want}: {out}{err}");
        assert!(err.contains(&format!("topology.toml{want}")), "want {want:?} in {err}");
    }
    // A host inside a wider prefix of another role: a notice, shown once, not a warning.
    let nested = good.replace(r#"internal_client = ["10.1.128.0/17""#, r#"internal_client = ["10.1.0.0/16""#);
    let (_dir, path) = files(&nested);
    let (status, out, err) = util::exwatch(&["check", "--json", "--topology", path.to_str().unwrap()]);
    assert_eq!(status, 1, "only the expired exception warns: {out}{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["topology"]["lints"].as_array().unwrap().len(), 1, "{json}");
    let notice = &json["topology"]["notices"][0];
    assert_eq!(notice["line"], 7, "{json}");
    assert_eq!(
        notice["message"],
        "10.1.10.11/32 (mailbox) lies inside 10.1.0.0/16 (internal_client): the more specific prefix wins, so it holds mailbox only"
    );
    // A pack whose role is empty, and a role whose pack is off.
    let no_gateway = good.replace(&format!("um_gateway = [\"{GATEWAY}\", \"{GATEWAY_V6}\"]\n"), "");
    let (_dir, path) = files(&no_gateway);
    let (status, _, err) = util::exwatch(&["check", "--topology", path.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(
        err.contains(
            "topology.toml:4: organization.packs: pack unified-messaging is on but roles.um_gateway is empty"
        ),
        "{err}"
    );
    let pack_off =
        good.replace(r#"packs = ["hybrid", "unified-messaging"]"#, r#"packs = ["unified-messaging"]"#);
    let (_dir, path) = files(&pack_off);
    let (status, _, err) = util::exwatch(&["check", "--topology", path.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(err.contains("topology.toml:11: roles.exchange_online: the hybrid pack is off"), "{err}");
    // A missing endpoints file: the topology's line and key.
    let (dir, path) = files(&good);
    std::fs::remove_file(dir.path().join("endpoints.json")).unwrap();
    let (status, _, err) = util::exwatch(&["check", "--topology", path.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(err.contains("topology.toml:12: roles.exchange_online_endpoints: cannot read "), "{err}");
    // An endpoints file that is not Microsoft's format names the file and the record.
    let (dir, path) = files(&good);
    std::fs::write(dir.path().join("endpoints.json"), ENDPOINTS.replace("\"category\": \"Allow\", ", ""))
        .unwrap();
    let (status, _, err) = util::exwatch(&["check", "--topology", path.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(err.contains("endpoints.json: record 1 (id 8): not a Microsoft 365 endpoints record"), "{err}");
}

// --- The compliance report ------------------------------------------------------------------

#[test]
fn the_report_shows_accepted_rows_and_lists_every_exception_from_a_run_and_from_its_eve_log() {
    let (dir, topology) = files(&org(true, 2016));
    let pcap = dir.path().join("org.pcap");
    exceptions_scenario().write_pcap(&pcap).expect("write pcap");
    let out = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_string();
    let topology = topology.to_str().expect("UTF-8");
    let (status, _, err) = util::exwatch(&[
        "analyze",
        pcap.to_str().unwrap(),
        "--topology",
        topology,
        "--syn-timeout",
        "1.5",
        "--flows",
        "--no-progress",
        "--eve-log",
        &out("eve.json"),
        "--report-json",
        &out("run.json"),
        "--report-csv",
        &out("run.csv"),
        "--report",
        &out("run.html"),
    ]);
    assert_eq!(status, 1, "{err}");
    let (status, _, err) = util::exwatch(&[
        "report",
        &out("eve.json"),
        "--topology",
        topology,
        "--json",
        &out("eve-report.json"),
    ]);
    assert_eq!(status, 1, "{err}");
    for name in ["run.json", "eve-report.json"] {
        let json: Value = serde_json::from_slice(&std::fs::read(out(name)).expect("report")).expect("JSON");
        let exceptions: Vec<(String, u64, String)> = json["exceptions"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no exceptions"))
            .iter()
            .map(|e| (util::str_of(&e["id"]), e["accepted"].as_u64().unwrap(), util::str_of(&e["status"])))
            .collect();
        assert_eq!(
            exceptions,
            [
                ("CHG-4711".into(), 3, "used".into()),
                ("CHG-1000".into(), 0, "expired".into()),
                ("CHG-2000".into(), 0, "unused".into()),
                ("RISK-12".into(), 1, "used".into()),
            ],
            "{name}"
        );
        assert_eq!(json["totals"]["findings"]["accepted"], 4, "{name}");
        let rows: BTreeMap<String, String> = json["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["rows"].as_array().unwrap())
            .map(|r| (util::str_of(&r["rule"]), util::str_of(&r["status"])))
            .collect();
        // Violations beside the accepted findings keep the row a violation; the
        // accepted silent drop makes the never-restrict row `accepted`, not compliant.
        assert_eq!(rows["external-to-mailbox"], "violation", "{name}");
        assert_eq!(rows["exchange-internal"], "accepted", "{name}");
        // The accepted silent drop stays visible in the never-restrict matrix.
        let pair = json["never_restrict"]["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["a"] == DC && p["b"] == MAILBOX)
            .unwrap_or_else(|| panic!("{name}: no DC-Mailbox pair"));
        assert_eq!(pair["status"], "restricted", "{name}");
        assert_eq!(pair["evidence"][0][0], "restricted-silent-drop", "{name}");
    }
    let csv = std::fs::read_to_string(out("run.csv")).expect("CSV");
    assert!(csv.lines().next().unwrap().ends_with(",community_id,pcap_filename,sensor,exception"), "{csv}");
    assert_eq!(
        csv.lines().filter(|l| l.contains(",accepted,") && l.ends_with(",CHG-4711")).count(),
        3,
        "{csv}"
    );
    let html = std::fs::read_to_string(out("run.html")).expect("HTML");
    assert!(html.contains("id=\"exceptions\"") && html.contains("CHG-2000"), "the HTML lists exceptions");
}

// --- The alert bound ------------------------------------------------------------------------

#[test]
fn accepted_findings_are_aggregated_apart_from_the_rules_violations() {
    let mut s = scenario();
    for i in 0..20u16 {
        s.tcp_session(at(JUMP, 40_001 + i), at(MAILBOX, 3389), 1);
        s.tcp_session(at(&format!("203.0.113.{}", i + 1), 41_001 + i), at(MAILBOX, 3389), 1);
    }
    let run = run(&s);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let aggregates: Vec<&Value> =
        run.alerts().into_iter().filter(|a| a["policy"].get("aggregate").is_some()).collect();
    assert!(!aggregates.is_empty(), "a flood of 40 findings to one responder is bounded: {:?}", run.lines);
    let mut held = BTreeMap::new();
    for a in &aggregates {
        let p = &a["policy"];
        let verdict = util::str_of(&p["verdict"]);
        assert_eq!(p["exception"].as_str(), (verdict == "accepted").then_some("CHG-4711"), "{a}");
        *held.entry(verdict).or_insert(0) += p["aggregate"]["flows"].as_u64().unwrap();
    }
    // Written plus held back: every finding once, under its own verdict.
    let written = |verdict: &str| {
        run.alerts()
            .iter()
            .filter(|a| a["policy"].get("aggregate").is_none() && a["policy"]["verdict"] == verdict)
            .count() as u64
    };
    assert_eq!(written("accepted") + held.get("accepted").copied().unwrap_or(0), 20, "{held:?}");
    assert_eq!(written("violation") + held.get("violation").copied().unwrap_or(0), 20, "{held:?}");
}

// --- The worked example of docs/topology.md ---------------------------------------------------

const FABRIKAM: &str = "rules/examples/fabrikam.toml";

/// Writes a capture of the fabrikam example: (guard, pcap, expected findings).
fn fabrikam(packets: u64) -> (tempfile::TempDir, std::path::PathBuf, Vec<exwatch::testkit::synth::Expected>) {
    use exwatch::testkit::synth;
    let topology =
        exwatch::policy::Topology::load(&util::repo().join(FABRIKAM)).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("fabrikam.pcap");
    let file = std::io::BufWriter::new(std::fs::File::create(&pcap).expect("create pcap"));
    let mut writer = synth::wire::PcapWriter::new(file, 1).expect("pcap header");
    let options = synth::OrgOptions { packets, seed: 1, ..Default::default() };
    let expected = synth::site(&topology, &options, |ts, frame| writer.write(ts, frame, frame.len() as u32))
        .expect("generate");
    std::io::Write::flush(&mut writer.into_inner()).expect("flush");
    (dir, pcap, expected)
}

#[test]
fn the_worked_example_is_the_docs_and_check_accepts_it() {
    let text = std::fs::read_to_string(util::repo().join(FABRIKAM)).expect("example");
    let doc = std::fs::read_to_string(util::repo().join("docs/topology.md")).expect("docs/topology.md");
    let body: String =
        text.lines().skip_while(|l| l.starts_with('#') || l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert!(doc.contains(&body), "docs/topology.md shows {FABRIKAM} as it is (after its header comment)");
    let (status, out, err) =
        util::exwatch(&["check", "--topology", util::repo().join(FABRIKAM).to_str().unwrap()]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("0 lint(s)"), "{out}");
}

#[test]
fn the_worked_examples_generated_capture_gives_the_findings_it_expects_with_any_worker_count() {
    let (_dir, pcap, expected) = fabrikam(20_000);
    let topology = util::repo().join(FABRIKAM);
    let topology = topology.to_str().unwrap();
    let mut want: Vec<_> = expected
        .iter()
        .map(|e| (e.verdict.name().to_string(), e.rule.to_string(), e.src.to_string(), e.dst.to_string()))
        .collect();
    want.sort();
    for verdict in ["accepted", "violation", "advisory"] {
        assert!(want.iter().any(|w| w.0 == verdict), "the example shows {verdict} findings: {want:?}");
    }
    let one = util::analyze(&[&pcap], &["--topology", topology, "--no-aggregate", "--workers", "1"]);
    assert_eq!(one.findings(), want, "{}", one.stderr);
    let two = util::analyze(&[&pcap], &["--topology", topology, "--no-aggregate", "--workers", "2"]);
    let sorted = |run: &Run| {
        let mut lines: Vec<String> = run.lines.iter().map(|l| util::without_file(l)).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&one), sorted(&two));
    let flows = rule_flows(&one);
    for rule in
        ["hybrid-mail-edge", "hybrid-online-to-mailbox", "hybrid-mailbox-to-online", "um-rtp", "edge-dns"]
    {
        assert!(flows.get(rule).is_some_and(|&n| n > 0), "{rule}: {flows:?}");
    }
}

#[test]
fn learn_drafts_dcs_that_serve_dns_in_both_roles_and_suggests_the_um_gateway() {
    let (_dir, pcap, _) = fabrikam(20_000);
    let (status, draft, err) = util::exwatch(&["learn", "--no-progress", pcap.to_str().unwrap()]);
    assert_eq!(status, 0, "{err}");
    let table: toml::Table = toml::from_str(&draft).unwrap_or_else(|e| panic!("{e}\n{draft}"));
    let listed = |role: &str| -> Vec<String> {
        table["roles"]
            .get(role)
            .and_then(|v| v.as_array())
            .map_or_else(Vec::new, |a| a.iter().filter_map(|v| v.as_str()).map(String::from).collect())
    };
    for dc in ["10.1.0.5", "10.2.0.5"] {
        assert!(listed("domain_controller").contains(&dc.to_string()), "{draft}");
        assert!(listed("dns").contains(&dc.to_string()), "{draft}");
    }
    assert!(listed("um_gateway").is_empty(), "a suggestion only, commented out");
    assert!(draft.contains("# um_gateway = ["), "{draft}");
    assert!(draft.contains("#   \"10.1.50.5\",  # low: SIP "), "{draft}");
}
