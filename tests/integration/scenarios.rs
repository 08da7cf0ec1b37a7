//! Policy scenarios: captures built in code with `exwatch::testkit::synth::Scenario`, run through
//! the real binary, asserting the exact findings that SPEC sections 2 and 3 and
//! rules/exchange.toml call for.
//!
//! Layout: helpers first, then one test per row of the SPEC's policy table, then
//! mid-stream pickups, open-proxy probes, restriction evidence, encapsulation and IP
//! versions, fragments, and `--fail-on`.
//!
//! Allowed flows are checked twice: no alert, and the run's summary counts every flow
//! under the expected `ok` rule. Without the second check an allowed flow could "pass"
//! by being dropped, mis-decoded or matched by another rule that happens to be `ok`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use exwatch::decode::tcp_flags::{ACK, SYN};
use exwatch::testkit::synth::wire::{Link, Segment};
use exwatch::testkit::synth::Scenario;
use serde_json::Value;

use crate::util::{self, Run};

// --- Hosts --------------------------------------------------------------------------

// Roles of the example topology (rules/topology.toml).
/// A Mailbox server in the Edge's subscribed site (HQ).
const MAILBOX: &str = "10.10.1.11";
/// The other Mailbox server of HQ.
const MAILBOX_HQ2: &str = "10.10.1.12";
/// A Mailbox server outside the Edge's subscribed site.
const MAILBOX_BRANCH: &str = "10.10.2.11";
const MAILBOX_V6: &str = "2001:db8:10::11";
const EDGE: &str = "172.16.0.25";
const DC: &str = "10.10.0.5";
const SKYPE: &str = "10.10.3.20";
const DNS: &str = "10.10.0.53";
/// The Edge's configured open-proxy-detection proxy is `PROXY:PROXY_PORT`.
const PROXY: &str = "10.10.9.9";
const PROXY_PORT: u16 = 3128;
/// In the internal_client prefix 10.20.0.0/16.
const CLIENT: &str = "10.20.0.5";

// Hosts the topology does not list, hence external.
const EXTERNAL: &str = "198.51.100.7";
const EXTERNAL_V6: &str = "2001:db8:ff::7";
/// An Internet mail server that sends SMTP to the Edge.
const MTA: &str = "198.51.100.200";
/// A public resolver, for DNS that should have gone to the `dns` role.
const PUBLIC_DNS: &str = "192.0.2.53";
/// A router/firewall that answers with ICMP errors.
const ROUTER: &str = "10.10.0.1";
const ROUTER_V6: &str = "2001:db8:10::1";

/// A second IPv6 Mailbox server, only in the topologies these tests write.
const MAILBOX_V6_2: &str = "2001:db8:10::12";

/// Where open-proxy detection probes (SOCKS, Wingate/Telnet, HTTP CONNECT/POST).
const PROBE_PORTS: [u16; 6] = [1080, 1081, 23, 6588, 3128, 80];

/// Client ports are handed out from here: above every port the policy names, so a
/// client port is never mistaken for a service.
const FIRST_CLIENT_PORT: u16 = 40_001;

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().unwrap_or_else(|_| panic!("bad host literal {host}")), port)
}

// --- Sites (topologies) ---------------------------------------------------------------

/// The site a capture is judged against: the example topology, or a variant of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Site {
    edge: bool,
    dns: bool,
    restrict_internal_clients: bool,
    /// Adds `MAILBOX_V6_2`, so that two IPv6 Mailbox servers exist.
    second_v6_mailbox: bool,
}

/// rules/topology.toml. Runs against it pass no `--topology`, which also checks that it
/// is the binary's default.
const EXAMPLE: Site =
    Site { edge: true, dns: true, restrict_internal_clients: false, second_v6_mailbox: false };
/// The seed's "no Edge Transport servers" topology.
const NO_EDGE: Site = Site { edge: false, ..EXAMPLE };
const NO_DNS: Site = Site { dns: false, ..EXAMPLE };
const RESTRICTED: Site = Site { restrict_internal_clients: true, ..EXAMPLE };
const TWO_V6_MAILBOXES: Site = Site { second_v6_mailbox: true, ..EXAMPLE };

impl Site {
    /// The topology file (SPEC section 1): the example, minus or plus what `self` says.
    fn topology(self) -> String {
        let mut mailboxes = vec![MAILBOX, MAILBOX_HQ2, MAILBOX_BRANCH, MAILBOX_V6];
        if self.second_v6_mailbox {
            mailboxes.push(MAILBOX_V6_2);
        }
        let mut text = format!(
            "[organization]\nname = \"contoso\"\nrestrict_internal_clients = {}\n\n[roles]\n\
             mailbox = {mailboxes:?}\ndomain_controller = [\"{DC}\", \"10.10.0.6\"]\n\
             skype = [\"{SKYPE}\"]\ninternal_client = [\"10.20.0.0/16\"]\n",
            self.restrict_internal_clients,
        );
        if self.dns {
            text += &format!("dns = [\"{DNS}\"]\n");
        }
        if self.edge {
            text += &format!(
                "edge = [\"{EDGE}\"]\n\n[[edge_subscription]]\nedge = [\"{EDGE}\"]\nsite = \"HQ\"\n\
                 mailbox = [\"{MAILBOX}\", \"{MAILBOX_HQ2}\"]\n\n\
                 [open_proxy_detection]\nproxy = [\"{PROXY}:{PROXY_PORT}\"]\n"
            );
        }
        text
    }
}

/// Runs `exwatch analyze` on `scenario` against `site`, with `extra` arguments.
fn run(site: Site, scenario: &Scenario, extra: &[&str]) -> Run {
    // The guard keeps the topology file alive until the run is over.
    let topology = (site != EXAMPLE).then(|| util::topology_file(&site.topology()));
    let mut args = Vec::new();
    if let Some((_, path)) = &topology {
        args.extend(["--topology", path.to_str().expect("temp path is UTF-8")]);
    }
    args.extend_from_slice(extra);
    util::analyze_scenario(scenario, &args)
}

// --- Expected findings ------------------------------------------------------------------

/// (verdict, finding id, src, dest), as [`Run::findings`] gives them.
type Finding = (String, String, String, String);

fn finding(verdict: &str, id: &str, src: SocketAddr, dest: SocketAddr) -> Finding {
    (verdict.into(), id.into(), src.to_string(), dest.to_string())
}

fn violation(rule: &str, src: SocketAddr, dest: SocketAddr) -> Finding {
    finding("violation", rule, src, dest)
}

fn advisory(rule: &str, src: SocketAddr, dest: SocketAddr) -> Finding {
    finding("advisory", rule, src, dest)
}

fn restriction(evidence: &str, src: SocketAddr, dest: SocketAddr) -> Finding {
    finding("restriction", evidence, src, dest)
}

/// Asserts the run's exact findings, and the exit status the default `--fail-on`
/// (violation,restriction) gives them (which also rules out a status 2 run that wrote
/// nothing passing as "no findings").
fn assert_findings(run: &Run, mut expected: Vec<Finding>) {
    expected.sort();
    assert_eq!(run.findings(), expected, "findings; stderr:\n{}", run.stderr);
    let fails = expected.iter().any(|(verdict, ..)| verdict == "violation" || verdict == "restriction");
    assert_eq!(run.status, i32::from(fails), "exit status; stderr:\n{}", run.stderr);
}

/// Flows per matched rule, from the run's summary (rules that matched no flow left out).
fn rule_flows(run: &Run) -> BTreeMap<String, u64> {
    let summary = run.summary.as_ref().unwrap_or_else(|| panic!("no summary; stderr:\n{}", run.stderr));
    let rules = summary["rules"].as_array().expect("summary has a rules array");
    rules
        .iter()
        .filter_map(|r| {
            let flows = r["flows"].as_u64().filter(|&n| n > 0)?;
            Some((util::str_of(&r["rule"]), flows))
        })
        .collect()
}

/// Asserts that the summary counts exactly these flows per rule.
fn assert_rule_flows(run: &Run, expected: &[(&str, u64)]) {
    let expected: BTreeMap<String, u64> = expected.iter().map(|&(rule, n)| (rule.to_string(), n)).collect();
    assert_eq!(rule_flows(run), expected, "flows per rule; stderr:\n{}", run.stderr);
}

// --- Policy-table rows: one flow per (protocol, client, server, port) ----------------------

/// One flow of a policy-table row: a whole TCP session, or a UDP request and answer.
#[derive(Clone, Copy, Debug)]
struct Flow {
    udp: bool,
    from: &'static str,
    to: &'static str,
    port: u16,
}

fn tcp(from: &'static str, to: &'static str, port: u16) -> Flow {
    Flow { udp: false, from, to, port }
}

fn udp(from: &'static str, to: &'static str, port: u16) -> Flow {
    Flow { udp: true, from, to, port }
}

/// Runs `flows` (each from its own client port) against `site`: the run, and each
/// flow's (client, server) addresses.
fn run_flows(site: Site, flows: &[Flow]) -> (Run, Vec<(SocketAddr, SocketAddr)>) {
    let mut scenario = Scenario::new();
    let mut pairs = Vec::new();
    for (flow, client_port) in flows.iter().zip(FIRST_CLIENT_PORT..) {
        let (client, server) = (at(flow.from, client_port), at(flow.to, flow.port));
        if flow.udp {
            scenario.udp_exchange(client, server, 1);
        } else {
            scenario.tcp_session(client, server, 1);
        }
        pairs.push((client, server));
    }
    (run(site, &scenario, &[]), pairs)
}

/// Asserts that every flow of `flows` is allowed by the `ok` (or out-of-scope) `rule`.
fn assert_allowed(site: Site, flows: &[Flow], rule: &str) {
    let (run, _) = run_flows(site, flows);
    assert_findings(&run, Vec::new());
    assert_rule_flows(&run, &[(rule, flows.len() as u64)]);
}

/// Asserts that every flow of `flows` gets one finding of `verdict` from `rule`, with
/// the client as source and the server as destination.
fn assert_flagged(site: Site, flows: &[Flow], verdict: &str, rule: &str) {
    let (run, pairs) = run_flows(site, flows);
    let expected = pairs.iter().map(|&(client, server)| finding(verdict, rule, client, server)).collect();
    assert_findings(&run, expected);
    assert_rule_flows(&run, &[(rule, flows.len() as u64)]);
}

// Clients and services.

#[test]
fn clients_to_mailbox_on_443_are_ok() {
    assert_allowed(EXAMPLE, &[tcp(EXTERNAL, MAILBOX, 443), tcp(CLIENT, MAILBOX, 443)], "client-https");
}

#[test]
fn clients_to_mailbox_on_80_are_advisory_client_http() {
    let flows = [tcp(EXTERNAL, MAILBOX, 80), tcp(CLIENT, MAILBOX_BRANCH, 80)];
    assert_flagged(EXAMPLE, &flows, "advisory", "client-http");
}

#[test]
fn clients_to_mailbox_on_993_995_587_are_ok_each_on_its_own_row() {
    for (port, rule) in [(993, "client-imap4"), (995, "client-pop3"), (587, "client-smtp-submission")] {
        let flows = [tcp(EXTERNAL, MAILBOX, port), tcp(CLIENT, MAILBOX_BRANCH, port)];
        assert_allowed(EXAMPLE, &flows, rule);
    }
}

#[test]
fn clients_to_mailbox_on_143_110_are_advisories_of_the_imap4_and_pop3_rows() {
    for (port, rule) in [(143, "client-imap4-plaintext"), (110, "client-pop3-plaintext")] {
        let flows = [tcp(EXTERNAL, MAILBOX, port), tcp(CLIENT, MAILBOX_BRANCH, port)];
        assert_flagged(EXAMPLE, &flows, "advisory", rule);
    }
}

#[test]
fn internal_client_to_mailbox_on_25_is_ok() {
    assert_allowed(EXAMPLE, &[tcp(CLIENT, MAILBOX, 25)], "client-smtp-25");
}

// Inbound mail without and with an Edge.

#[test]
fn external_to_mailbox_on_25_is_ok_without_edge() {
    assert_allowed(NO_EDGE, &[tcp(MTA, MAILBOX, 25)], "inbound-smtp");
}

#[test]
fn external_to_mailbox_on_25_bypasses_edge_when_an_edge_exists() {
    assert_flagged(EXAMPLE, &[tcp(MTA, MAILBOX, 25)], "violation", "inbound-smtp-bypasses-edge");
}

#[test]
fn external_to_mailbox_on_other_ports_is_violation_external_to_mailbox() {
    let flows =
        [tcp(EXTERNAL, MAILBOX, 3389), tcp(EXTERNAL, MAILBOX_BRANCH, 445), udp(EXTERNAL, MAILBOX, 161)];
    assert_flagged(EXAMPLE, &flows, "violation", "external-to-mailbox");
    // Not a matter of the Edge: without one, only 25/TCP joins the client ports.
    assert_flagged(NO_EDGE, &flows, "violation", "external-to-mailbox");
}

// Internal clients and DNS servers to Mailbox servers.

/// Internal traffic to Mailbox servers on ports that are not client ports.
const INTERNAL_TO_MAILBOX: [Flow; 3] = [
    Flow { udp: false, from: CLIENT, to: MAILBOX, port: 135 },
    Flow { udp: false, from: CLIENT, to: MAILBOX_BRANCH, port: 445 },
    Flow { udp: false, from: DNS, to: MAILBOX, port: 3389 },
];

#[test]
fn internal_client_and_dns_to_mailbox_on_other_ports_are_ok() {
    assert_allowed(EXAMPLE, &INTERNAL_TO_MAILBOX, "internal-client");
}

#[test]
fn internal_client_and_dns_to_mailbox_on_other_ports_violate_when_restricted() {
    assert_flagged(RESTRICTED, &INTERNAL_TO_MAILBOX, "violation", "internal-client-restricted");
    // The client ports stay allowed.
    assert_allowed(RESTRICTED, &[tcp(CLIENT, MAILBOX, 443)], "client-https");
    assert_allowed(RESTRICTED, &[tcp(CLIENT, MAILBOX, 25)], "client-smtp-25");
}

// Outbound mail and name resolution from Mailbox servers.

#[test]
fn mailbox_to_external_on_25_is_ok_without_edge() {
    assert_allowed(NO_EDGE, &[tcp(MAILBOX, MTA, 25)], "outbound-smtp");
}

#[test]
fn mailbox_to_external_on_25_bypasses_edge_when_an_edge_exists() {
    assert_flagged(EXAMPLE, &[tcp(MAILBOX, MTA, 25)], "violation", "outbound-smtp-bypasses-edge");
}

#[test]
fn mailbox_to_dns_on_53_udp_and_tcp_is_ok() {
    assert_allowed(EXAMPLE, &[udp(MAILBOX, DNS, 53), tcp(MAILBOX_BRANCH, DNS, 53)], "mailbox-dns");
}

#[test]
fn mailbox_to_any_address_on_53_is_ok_when_no_dns_role() {
    let flows = [udp(MAILBOX, PUBLIC_DNS, 53), tcp(MAILBOX, PUBLIC_DNS, 53), udp(MAILBOX_BRANCH, CLIENT, 53)];
    assert_allowed(NO_DNS, &flows, "mailbox-dns-any");
}

#[test]
fn mailbox_to_external_on_53_is_advisory_when_a_dns_role_exists() {
    // SPEC section 2: the article names a DNS server, not which one.
    let flows = [udp(MAILBOX, PUBLIC_DNS, 53), tcp(MAILBOX, PUBLIC_DNS, 53)];
    assert_flagged(EXAMPLE, &flows, "advisory", "mailbox-dns-unlisted");
}

#[test]
fn mailbox_to_edge_on_53_is_a_violation_with_or_without_a_dns_role() {
    // Mailbox <-> Edge is 25 and 50636 only: an Edge is never a Mailbox server's DNS
    // server, even when "any address" may be one.
    for site in [EXAMPLE, NO_DNS] {
        let flows = [udp(MAILBOX, EDGE, 53), tcp(MAILBOX_HQ2, EDGE, 53)];
        assert_flagged(site, &flows, "violation", "edge-perimeter");
    }
}

#[test]
fn mailbox_to_external_on_other_ports_is_violation_mailbox_to_external() {
    let flows =
        [tcp(MAILBOX, EXTERNAL, 443), tcp(MAILBOX_BRANCH, EXTERNAL, 3389), udp(MAILBOX, EXTERNAL, 123)];
    assert_flagged(EXAMPLE, &flows, "violation", "mailbox-to-external");
}

#[test]
fn mailbox_to_internal_client_and_dns_on_any_port_is_ok() {
    let flows = [tcp(MAILBOX, CLIENT, 445), tcp(MAILBOX_BRANCH, CLIENT, 3389), tcp(MAILBOX, DNS, 135)];
    assert_allowed(EXAMPLE, &flows, "mailbox-to-internal");
}

// Mail flow through the Edge.

#[test]
fn external_to_edge_on_25_is_ok() {
    assert_allowed(EXAMPLE, &[tcp(MTA, EDGE, 25)], "edge-inbound-smtp");
}

#[test]
fn edge_to_subscribed_mailbox_on_25_is_ok() {
    assert_allowed(
        EXAMPLE,
        &[tcp(EDGE, MAILBOX, 25), tcp(EDGE, MAILBOX_HQ2, 25)],
        "edge-to-subscribed-mailbox",
    );
}

#[test]
fn subscribed_mailbox_to_edge_on_25_and_edgesync_on_50636_are_ok() {
    assert_allowed(EXAMPLE, &[tcp(MAILBOX, EDGE, 25)], "subscribed-mailbox-to-edge");
    assert_allowed(EXAMPLE, &[tcp(MAILBOX_HQ2, EDGE, 50636)], "edgesync");
}

#[test]
fn edge_to_external_on_25_is_ok() {
    assert_allowed(EXAMPLE, &[tcp(EDGE, MTA, 25)], "edge-outbound-smtp");
}

#[test]
fn edge_to_dns_on_53_udp_and_tcp_is_ok() {
    assert_allowed(EXAMPLE, &[udp(EDGE, DNS, 53), tcp(EDGE, DNS, 53)], "edge-dns");
}

#[test]
fn edge_to_external_on_53_is_ok_when_no_dns_role() {
    assert_allowed(NO_DNS, &[udp(EDGE, PUBLIC_DNS, 53), tcp(EDGE, PUBLIC_DNS, 53)], "edge-dns-any");
}

#[test]
fn edge_to_external_on_53_is_advisory_when_a_dns_role_exists() {
    let flows = [udp(EDGE, PUBLIC_DNS, 53), tcp(EDGE, PUBLIC_DNS, 53)];
    assert_flagged(EXAMPLE, &flows, "advisory", "edge-dns-unlisted");
}

#[test]
fn mailbox_outside_the_subscribed_site_and_edge_violate_both_ways() {
    let flows =
        [tcp(EDGE, MAILBOX_BRANCH, 25), tcp(MAILBOX_BRANCH, EDGE, 25), tcp(MAILBOX_BRANCH, EDGE, 50636)];
    assert_flagged(EXAMPLE, &flows, "violation", "edge-unsubscribed-site");
}

#[test]
fn anything_else_to_or_from_edge_is_edge_perimeter_violation() {
    let flows = [
        tcp(CLIENT, EDGE, 443), // Edge has no part in client traffic
        tcp(EDGE, EXTERNAL, 3389),
        tcp(EXTERNAL, EDGE, 443), // the Internet reaches the Edge on 25/TCP only
        tcp(EDGE, MAILBOX, 3389), // even the subscribed site: 25/TCP only that way
        tcp(DC, EDGE, 389),
    ];
    assert_flagged(EXAMPLE, &flows, "violation", "edge-perimeter");
}

// Ground rules: inside the organization, and out of scope.

#[test]
fn mailbox_with_mailbox_domain_controller_and_skype_on_any_port_is_ok() {
    let flows = [
        tcp(MAILBOX, MAILBOX_BRANCH, 135),
        tcp(MAILBOX_BRANCH, MAILBOX, 64_327),
        tcp(MAILBOX, DC, 88),
        udp(MAILBOX_BRANCH, DC, 389),
        tcp(DC, MAILBOX, 49_152),
        tcp(MAILBOX, SKYPE, 5061),
        tcp(SKYPE, MAILBOX, 443),
    ];
    assert_allowed(EXAMPLE, &flows, "exchange-internal");
}

#[test]
fn flows_touching_neither_mailbox_nor_edge_produce_nothing() {
    let flows = [
        tcp(CLIENT, EXTERNAL, 443),
        tcp(EXTERNAL, CLIENT, 3389),
        tcp(CLIENT, DC, 389),
        udp(DC, DNS, 53),
        tcp(SKYPE, EXTERNAL, 5061),
    ];
    let (run, _) = run_flows(EXAMPLE, &flows);
    assert!(run.alerts().is_empty(), "{:?}", run.alerts());
    assert_rule_flows(&run, &[("out-of-scope", flows.len() as u64)]);
    // Nothing here touched an Exchange server: a green run would mean nothing (SPEC 4).
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no flow touched a Mailbox or Edge address"), "{}", run.stderr);
}

// --- Direction ------------------------------------------------------------------------

/// Asserts the `policy.direction` of every alert, by the flow's originator (`policy`'s).
fn assert_directions(run: &Run, expected: &[(SocketAddr, &str)]) {
    let mut actual: Vec<(String, String)> = run
        .alerts()
        .iter()
        .map(|a| {
            let p = &a["policy"];
            (util::endpoint(&p["src_ip"], &p["src_port"]), util::str_of(&p["direction"]))
        })
        .collect();
    actual.sort();
    let mut expected: Vec<(String, String)> =
        expected.iter().map(|(src, direction)| (src.to_string(), direction.to_string())).collect();
    expected.sort();
    assert_eq!(actual, expected, "policy.direction by source");
}

#[test]
fn midstream_pickup_keeps_the_client_as_source_and_marks_direction_inferred() {
    // 3389 is named by no rule: the lower port is the service. 25 is named by the policy.
    let (rdp_client, rdp) = (at(EXTERNAL, 40_001), at(MAILBOX, 3389));
    let (smtp_client, smtp) = (at(MTA, 40_002), at(MAILBOX, 25));
    let mut scenario = Scenario::new();
    scenario.tcp_midstream(rdp_client, rdp, 2).tcp_midstream(smtp_client, smtp, 2);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(
        &run,
        vec![
            violation("external-to-mailbox", rdp_client, rdp),
            violation("inbound-smtp-bypasses-edge", smtp_client, smtp),
        ],
    );
    assert_directions(&run, &[(rdp_client, "inferred"), (smtp_client, "inferred")]);
}

#[test]
fn midstream_pickup_prefers_the_port_the_policy_names_over_the_lower_port() {
    // EdgeSync: the client's port (a Windows client port, 49152-65535) is lower than the
    // service's (50636), and both are in the dynamic range: the policy names 50636, so
    // it is the service (SPEC section 2, hint 4). Judged the other way round it would be
    // an edge-perimeter violation (Edge to a Mailbox server on 49153).
    let mut scenario = Scenario::new();
    scenario.tcp_midstream(at(MAILBOX, 49_153), at(EDGE, 50636), 2);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, Vec::new());
    assert_rule_flows(&run, &[("edgesync", 1)]);
}

#[test]
fn session_with_handshake_is_direction_observed() {
    let (client, server) = (at(EXTERNAL, 40_001), at(MAILBOX, 3389));
    let mut scenario = Scenario::new();
    scenario.tcp_session(client, server, 1);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, vec![violation("external-to-mailbox", client, server)]);
    assert_directions(&run, &[(client, "observed")]);
}

#[test]
fn udp_originator_is_the_first_sender_even_from_a_lower_port() {
    // SPEC section 2: the first UDP sender opened the flow. Neither port is named by
    // the policy, and the sender's is the lower one: no reason to turn the flow round.
    let (prober, target) = (at(EXTERNAL, 20_000), at(MAILBOX, 33_434));
    let mut scenario = Scenario::new();
    scenario.send(prober, target, Segment::Udp { payload: &[0; 32] });
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, vec![violation("external-to-mailbox", prober, target)]);
    assert_directions(&run, &[(prober, "observed")]);
}

// --- Open-proxy detection ---------------------------------------------------------------

/// An Internet server sends SMTP to the Edge: the Edge may then probe it.
fn smtp_to_edge(scenario: &mut Scenario) {
    scenario.tcp_session(at(MTA, 40_001), at(EDGE, 25), 2);
}

/// The Edge probes `host` on every open-proxy port; returns each probe's (client, server).
fn probe_all_ports(scenario: &mut Scenario, host: &str) -> Vec<(SocketAddr, SocketAddr)> {
    PROBE_PORTS
        .iter()
        .zip(41_001..)
        .map(|(&port, client_port)| {
            let pair = (at(EDGE, client_port), at(host, port));
            scenario.tcp_session(pair.0, pair.1, 1);
            pair
        })
        .collect()
}

#[test]
fn edge_probing_a_recent_smtp_sender_is_ok() {
    let mut scenario = Scenario::new();
    smtp_to_edge(&mut scenario);
    scenario.wait(5.0);
    probe_all_ports(&mut scenario, MTA);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, Vec::new());
    assert_rule_flows(&run, &[("edge-inbound-smtp", 1), ("edge-open-proxy-probe", PROBE_PORTS.len() as u64)]);
}

#[test]
fn edge_probing_a_host_that_never_sent_smtp_is_violation() {
    let mut scenario = Scenario::new();
    smtp_to_edge(&mut scenario);
    let probes = probe_all_ports(&mut scenario, EXTERNAL);
    let run = run(EXAMPLE, &scenario, &[]);
    let expected =
        probes.iter().map(|&(edge, host)| violation("edge-not-open-proxy-probe", edge, host)).collect();
    assert_findings(&run, expected);
}

#[test]
fn edge_probe_more_than_an_hour_after_the_smtp_is_violation() {
    let mut scenario = Scenario::new();
    smtp_to_edge(&mut scenario);
    scenario.wait(3601.0);
    let probes = probe_all_ports(&mut scenario, MTA);
    let run = run(EXAMPLE, &scenario, &[]);
    let expected =
        probes.iter().map(|&(edge, host)| violation("edge-not-open-proxy-probe", edge, host)).collect();
    assert_findings(&run, expected);
}

#[test]
fn edge_to_the_configured_proxy_is_ok() {
    // No SMTP in the capture: the proxy is allowed for itself.
    let mut scenario = Scenario::new();
    scenario.tcp_session(at(EDGE, 40_001), at(PROXY, PROXY_PORT), 2);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, Vec::new());
    assert_rule_flows(&run, &[("edge-open-proxy-via-proxy", 1)]);
}

// --- Restriction evidence -----------------------------------------------------------------

#[test]
fn icmp_prohibited_between_ipv4_mailboxes_is_restriction() {
    let (client, server) = (at(MAILBOX, 40_001), at(MAILBOX_BRANCH, 135));
    let mut scenario = Scenario::new();
    scenario.icmp_prohibited(ROUTER.parse().expect("router"), client, server);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, vec![restriction("restricted-icmp-prohibited", client, server)]);
}

#[test]
fn icmpv6_prohibited_between_ipv6_mailboxes_is_restriction() {
    let (client, server) = (at(MAILBOX_V6, 40_001), at(MAILBOX_V6_2, 445));
    let mut scenario = Scenario::new();
    scenario.icmp_prohibited(ROUTER_V6.parse().expect("router"), client, server);
    let run = run(TWO_V6_MAILBOXES, &scenario, &[]);
    assert_findings(&run, vec![restriction("restricted-icmp-prohibited", client, server)]);
}

#[test]
fn icmp_prohibited_outside_never_restrict_pairs_is_not_restriction() {
    // Internal clients may be restricted (optional), and external clients are: a filter
    // saying so is no finding. The Mailbox pair in the same capture shows the ICMP
    // errors were read.
    let router = ROUTER.parse().expect("router");
    let protected = (at(MAILBOX, 40_003), at(MAILBOX_BRANCH, 135));
    let mut scenario = Scenario::new();
    scenario
        .icmp_prohibited(router, at(CLIENT, 40_001), at(MAILBOX, 135))
        .icmp_prohibited(router, at(EXTERNAL, 40_002), at(MAILBOX, 443))
        .icmp_prohibited(router, protected.0, protected.1);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, vec![restriction("restricted-icmp-prohibited", protected.0, protected.1)]);
}

/// A Mailbox server opening LDAP to a domain controller: a pair never to restrict.
fn mailbox_to_dc() -> (SocketAddr, SocketAddr) {
    (at(MAILBOX, 40_001), at(DC, 389))
}

/// Shorter than the default, so that two retries 1 s apart outlast it.
const SYN_TIMEOUT: [&str; 2] = ["--syn-timeout", "1.5"];

/// SYNs at 0, 1 and 2 s, never answered.
fn silent_drop() -> Scenario {
    let (client, server) = mailbox_to_dc();
    let mut scenario = Scenario::new();
    scenario.syn_unanswered(client, server, 2, 1.0);
    scenario
}

#[test]
fn retried_unanswered_syn_between_mailbox_and_dc_is_silent_drop() {
    let (client, server) = mailbox_to_dc();
    let run = run(EXAMPLE, &silent_drop(), &SYN_TIMEOUT);
    assert_findings(&run, vec![restriction("restricted-silent-drop", client, server)]);
}

#[test]
fn single_syn_never_retried_is_not_silent_drop() {
    let (client, server) = mailbox_to_dc();
    let mut scenario = Scenario::new();
    scenario.syn_unanswered(client, server, 0, 1.0);
    // Later traffic, so that capture time runs well past the SYN timeout.
    scenario.wait(5.0).tcp_session(at(MAILBOX_HQ2, 40_002), at(DC, 88), 1);
    let run = run(EXAMPLE, &scenario, &SYN_TIMEOUT);
    assert_findings(&run, Vec::new());
}

#[test]
fn retried_syn_answered_by_a_session_is_not_silent_drop() {
    // The first SYN is lost; the retry 1 s later (within the timeout) opens a session.
    let (client, server) = mailbox_to_dc();
    let mut scenario = Scenario::new();
    scenario.syn_unanswered(client, server, 0, 1.0).wait(1.0).tcp_session(client, server, 2);
    scenario.wait(5.0).tcp_session(at(MAILBOX_HQ2, 40_002), at(DC, 88), 1);
    let run = run(EXAMPLE, &scenario, &SYN_TIMEOUT);
    assert_findings(&run, Vec::new());
    assert_rule_flows(&run, &[("exchange-internal", 2)]);
}

/// SYNs at 0 and 1 s, the SYN-ACK `answer_after` seconds after the retry, then later
/// traffic so that capture time runs past the SYN timeout.
fn retried_syn_answered_after(answer_after: f64) -> Scenario {
    let (client, server) = mailbox_to_dc();
    let mut scenario = Scenario::new();
    scenario.syn_unanswered(client, server, 1, 1.0).wait(answer_after);
    scenario.send(server, client, Segment::Tcp { flags: SYN | ACK, seq: 1, ack: 1, payload: &[] });
    scenario.send(client, server, Segment::Tcp { flags: ACK, seq: 1, ack: 1, payload: &[] });
    scenario.wait(5.0).tcp_session(at(MAILBOX_HQ2, 40_002), at(DC, 88), 1);
    scenario
}

#[test]
fn retried_syn_answered_before_the_timeout_is_not_silent_drop() {
    // SYN-ACK at 1.2 s: within the 1.5 s timeout.
    let run = run(EXAMPLE, &retried_syn_answered_after(0.2), &SYN_TIMEOUT);
    assert_findings(&run, Vec::new());
}

#[test]
fn retried_syn_answered_only_after_the_timeout_is_silent_drop() {
    // SYN-ACK at 2 s: the 1.5 s timeout had passed; a late answer does not undo it.
    let (client, server) = mailbox_to_dc();
    let run = run(EXAMPLE, &retried_syn_answered_after(1.0), &SYN_TIMEOUT);
    assert_findings(&run, vec![restriction("restricted-silent-drop", client, server)]);
}

#[test]
fn restriction_exits_1_by_default_and_0_with_fail_on_violation() {
    let (client, server) = mailbox_to_dc();
    let expected = vec![restriction("restricted-silent-drop", client, server)];

    let default = run(EXAMPLE, &silent_drop(), &SYN_TIMEOUT);
    assert_eq!((default.findings(), default.status), (expected.clone(), 1), "stderr:\n{}", default.stderr);

    let args = [&SYN_TIMEOUT[..], &["--fail-on", "violation"]].concat();
    let violation_only = run(EXAMPLE, &silent_drop(), &args);
    assert_eq!(
        (violation_only.findings(), violation_only.status),
        (expected, 0),
        "stderr:\n{}",
        violation_only.stderr
    );
}

// --- Encapsulation and IP versions ---------------------------------------------------------

/// An external host reaching a Mailbox server on RDP, carried over `link`: the run and
/// the expected finding.
fn rdp_to_mailbox_over(link: Link) -> (Run, Finding) {
    let (client, server) = (at(EXTERNAL, 40_001), at(MAILBOX, 3389));
    let mut scenario = Scenario { link, ..Scenario::new() };
    scenario.tcp_session(client, server, 2);
    (run(EXAMPLE, &scenario, &[]), violation("external-to-mailbox", client, server))
}

/// The `vlan` array of every alert (Null when absent).
fn alert_vlans(run: &Run) -> Vec<Value> {
    run.alerts().iter().map(|a| a["vlan"].clone()).collect()
}

/// Asserts that the violation over `vlans` is the untagged one, and that its alert
/// carries `vlan` as Suricata writes it: the whole tag stack, outermost first.
fn assert_tagged_rdp_violation(vlans: [Option<u16>; 2]) {
    let (untagged, expected) = rdp_to_mailbox_over(Link::default());
    assert_findings(&untagged, vec![expected.clone()]);
    assert_eq!(alert_vlans(&untagged), [Value::Null], "untagged alert has no vlan");

    let (tagged, _) = rdp_to_mailbox_over(Link { vlans });
    assert_findings(&tagged, vec![expected]);
    let stack: Vec<u16> = vlans.iter().flatten().copied().collect();
    let vlan = alert_vlans(&tagged).pop().expect("one alert");
    assert_eq!(vlan, serde_json::json!(stack), "alert vlan {vlan}");
}

#[test]
fn violation_over_8021q_is_the_same_finding_and_carries_vlan() {
    assert_tagged_rdp_violation([Some(10), None]);
}

#[test]
fn violation_over_qinq_is_the_same_finding_and_carries_vlan() {
    assert_tagged_rdp_violation([Some(100), Some(10)]);
}

#[test]
fn ipv6_flows_are_judged_like_ipv4() {
    let (client, rdp, https) = (at(EXTERNAL_V6, 40_001), at(MAILBOX_V6, 3389), at(MAILBOX_V6, 443));
    let client2 = at(EXTERNAL_V6, 40_002);
    let mut scenario = Scenario::new();
    scenario.tcp_session(client, rdp, 1).tcp_session(client2, https, 1);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, vec![violation("external-to-mailbox", client, rdp)]);
    assert_rule_flows(&run, &[("client-https", 1), ("external-to-mailbox", 1)]);
}

// --- Fragments -----------------------------------------------------------------------------

/// Sends a 3000-byte UDP datagram from an external host to a Mailbox server as three
/// IPv4 fragments in `order`, and checks: one finding with the real ports, one flow,
/// no port-0 flow, and every fragment counted in the flow.
fn assert_fragmented_datagram_is_one_flow(order: [usize; 3]) {
    let (src, dst) = (at(EXTERNAL, 40_001), at(MAILBOX, 161));
    let mut scenario = Scenario::new();
    // 8 + 3000 bytes of UDP in 1480-byte pieces: 1480, 1480, 48.
    scenario.udp_fragmented(src, dst, 3000, 1480, &order);
    let run = run(EXAMPLE, &scenario, &["--flows"]);
    assert_findings(&run, vec![violation("external-to-mailbox", src, dst)]);

    let flows = run.flows();
    for flow in &flows {
        for port in ["src_port", "dest_port"] {
            assert!(flow[port].as_u64().is_some_and(|p| p != 0), "flow without a real {port}: {flow}");
        }
    }
    assert_eq!(flows.len(), 1, "one flow per datagram: {flows:?}");
    assert_eq!(flows[0]["flow"]["pkts_toserver"].as_u64(), Some(order.len() as u64), "{}", flows[0]);
}

#[test]
fn fragmented_udp_in_order_is_one_flow_with_real_ports() {
    assert_fragmented_datagram_is_one_flow([0, 1, 2]);
}

#[test]
fn fragmented_udp_out_of_order_is_one_flow_with_real_ports() {
    // The last fragment first: it must wait for the first one, not become a flow.
    assert_fragmented_datagram_is_one_flow([2, 0, 1]);
}

// --- Exit status ---------------------------------------------------------------------------

#[test]
fn advisory_only_exits_0_by_default_and_1_with_fail_on_advisory() {
    let (client, server) = (at(CLIENT, 40_001), at(MAILBOX, 80));
    let mut scenario = Scenario::new();
    scenario.tcp_session(client, server, 1);
    let expected = vec![advisory("client-http", client, server)];

    let default = run(EXAMPLE, &scenario, &[]);
    assert_eq!((default.findings(), default.status), (expected.clone(), 0), "stderr:\n{}", default.stderr);

    let strict = run(EXAMPLE, &scenario, &["--fail-on", "advisory"]);
    assert_eq!((strict.findings(), strict.status), (expected, 1), "stderr:\n{}", strict.stderr);
}

#[test]
fn fail_on_never_exits_0_with_violations() {
    let (client, server) = (at(EXTERNAL, 40_001), at(MAILBOX, 3389));
    let mut scenario = Scenario::new();
    scenario.tcp_session(client, server, 1);
    let run = run(EXAMPLE, &scenario, &["--fail-on", "never"]);
    assert_eq!(
        (run.findings(), run.status),
        (vec![violation("external-to-mailbox", client, server)], 0),
        "stderr:\n{}",
        run.stderr
    );
}

/// A session between a Mailbox server and a domain controller whose responder's packets
/// carry `server_ttl`, ended by a RST that claims to come from the responder and carries
/// `reset_ttl`.
fn reset_scenario(server_ttl: u8, reset_ttl: u8) -> Scenario {
    let (client, server) = mailbox_to_dc();
    let tcp = |flags, payload: &'static [u8]| Segment::Tcp { flags, seq: 1, ack: 1, payload };
    let mut s = Scenario::new();
    s.send(client, server, tcp(SYN, b""));
    s.ttl = server_ttl;
    s.send(server, client, tcp(SYN | ACK, b""));
    s.ttl = 64;
    s.send(client, server, tcp(ACK, b"")).send(client, server, tcp(ACK, b"request"));
    s.ttl = server_ttl;
    s.send(server, client, tcp(ACK, b"response"));
    s.ttl = reset_ttl;
    s.send(server, client, tcp(exwatch::decode::tcp_flags::RST | ACK, b""));
    s
}

#[test]
fn reset_with_a_foreign_ttl_between_mailbox_and_dc_is_an_injected_reset() {
    let (client, server) = mailbox_to_dc();
    let run = run(EXAMPLE, &reset_scenario(128, 61), &[]);
    assert_findings(&run, vec![restriction("restricted-injected-reset", client, server)]);
}

#[test]
fn reset_with_the_responders_own_ttl_is_not_evidence() {
    let run = run(EXAMPLE, &reset_scenario(128, 128), &[]);
    assert_findings(&run, Vec::new());
}

fn confidences(run: &Run) -> Vec<String> {
    run.alerts().iter().map(|a| util::str_of(&a["policy"]["confidence"])).collect()
}

#[test]
fn a_silent_drop_on_a_feed_that_never_showed_the_reverse_direction_is_low_confidence() {
    let run = run(EXAMPLE, &silent_drop(), &SYN_TIMEOUT);
    assert_eq!(confidences(&run), ["low"]);
    assert!(run.stderr.contains("feed: 1 flows seen in one direction only"), "{}", run.stderr);
}

#[test]
fn a_silent_drop_after_the_responder_answered_other_flows_is_high_confidence() {
    let (client, server) = mailbox_to_dc();
    let mut scenario = Scenario::new();
    // The domain controller's answers on another flow show the feed carries its side.
    scenario.tcp_session(at(MAILBOX, 40_009), at(DC, 88), 1);
    scenario.syn_unanswered(client, server, 2, 1.0);
    let run = run(EXAMPLE, &scenario, &SYN_TIMEOUT);
    assert_findings(&run, vec![restriction("restricted-silent-drop", client, server)]);
    assert_eq!(confidences(&run), ["high"]);
}

#[test]
fn findings_on_inferred_flows_are_medium_confidence() {
    let mut scenario = Scenario::new();
    scenario.tcp_midstream(at(EXTERNAL, 40_001), at(MAILBOX, 3389), 2);
    scenario.tcp_session(at(EXTERNAL, 40_002), at(MAILBOX, 3389), 1);
    let run = run(EXAMPLE, &scenario, &[]);
    let mut got = confidences(&run);
    got.sort();
    assert_eq!(got, ["high", "medium"]);
}

#[test]
fn reset_from_another_mac_with_the_same_ttl_is_an_injected_reset() {
    let (client, server) = mailbox_to_dc();
    let mut scenario = reset_scenario(128, 128);
    // The reset (the last frame) left a device other than the one the responder's
    // packets came through.
    scenario.frames.last_mut().expect("reset frame").data[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    let run = run(EXAMPLE, &scenario, &[]);
    assert_findings(&run, vec![restriction("restricted-injected-reset", client, server)]);
}

#[test]
fn segments_the_feed_lost_are_counted_as_gaps() {
    let (client, server) = (at(CLIENT, 40_001), at(MAILBOX, 443));
    let tcp = |flags, seq, payload: &'static [u8]| Segment::Tcp { flags, seq, ack: 1, payload };
    let mut s = Scenario::new();
    s.send(client, server, tcp(SYN, 100, b""))
        .send(server, client, tcp(SYN | ACK, 500, b""))
        .send(client, server, tcp(ACK, 101, b"first"))
        // A retransmission is no gap; a segment 1000 bytes further on is.
        .send(client, server, tcp(ACK, 101, b"first"))
        .send(client, server, tcp(ACK, 1106, b"later"));
    let run = run(EXAMPLE, &s, &["--flows"]);
    let flows = run.flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["policy"]["gaps"], 1);
    assert!(run.stderr.contains("1 with sequence gaps"), "{}", run.stderr);
}

/// A flow that closed (FIN both ways, or a RST) ends after the closed timeout (5 s), not
/// the TCP idle timeout (300 s) its first packet scheduled: the table holds live flows,
/// not every connection of the last five minutes. An open flow quiet for as long stays.
#[test]
fn closed_flows_end_after_the_closed_timeout_and_open_ones_stay() {
    let mut scenario = Scenario::new();
    scenario.tcp_session(at(CLIENT, 40_001), at(MAILBOX, 443), 1);
    scenario.tcp_refused(at(CLIENT, 40_002), at(MAILBOX, 443));
    scenario.tcp_midstream(at(CLIENT, 40_003), at(MAILBOX, 443), 1);
    scenario.wait(6.0).tcp_midstream(at(CLIENT, 40_003), at(MAILBOX, 443), 1);
    let run = util::analyze_scenario(&scenario, &["--flows"]);
    let flows = &run.summary.as_ref().expect("summary")["flows"];
    assert_eq!(flows["tracked"], 3, "{flows}");
    assert_eq!(flows["timed_out"], 2, "{flows}");
    let open: Vec<_> = run.flows().into_iter().filter(|f| f["src_port"] == 40_003).collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["flow"]["pkts_toserver"], 2);
}

/// A client's FIN retransmitted after its closed connection ended (the closed timeout is
/// 5 s) joins that connection, as Zeek counts one: it is not a second flow, picked up
/// mid-stream, that alerts again.
#[test]
fn a_late_fin_retransmission_joins_its_ended_flow() {
    let (client, server) = (at(EXTERNAL, 40_001), at(MAILBOX, 3389));
    let mut scenario = Scenario::new();
    scenario.tcp_session(client, server, 1).wait(8.0);
    scenario.send(
        client,
        server,
        Segment::Tcp { flags: exwatch::decode::tcp_flags::FIN | ACK, seq: 1, ack: 1, payload: &[] },
    );
    scenario.wait(1.0);
    scenario.send(
        client,
        server,
        Segment::Tcp { flags: exwatch::decode::tcp_flags::FIN | ACK, seq: 1, ack: 1, payload: &[] },
    );
    for workers in ["1", "2"] {
        let run = run(EXAMPLE, &scenario, &["--flows", "--workers", workers]);
        assert_findings(&run, vec![violation("external-to-mailbox", client, server)]);
        assert_eq!(run.flows().len(), 1, "{:?}", run.lines);
        assert!(run.stderr.contains("late retransmissions: 2 FIN or RST packets"), "{}", run.stderr);
    }
    // Long after the closed timeout, a FIN is a flow of its own again.
    let mut late = Scenario::new();
    late.tcp_session(client, server, 1).wait(30.0);
    late.send(
        client,
        server,
        Segment::Tcp { flags: exwatch::decode::tcp_flags::FIN | ACK, seq: 1, ack: 1, payload: &[] },
    );
    let run = run(EXAMPLE, &late, &["--flows"]);
    assert_eq!(run.flows().len(), 2, "{:?}", run.lines);
}

/// `--since`/`--until` keep the flows that started inside the period, with 1 and 2
/// workers alike: one session before, one inside and one after it; a flow that began
/// before the period and goes on inside it is not kept. A bad time is refused.
#[test]
fn since_and_until_keep_the_flows_that_started_inside_the_period() {
    let (server, inside, before, after) =
        (at(MAILBOX, 3389), at(EXTERNAL, 40_002), at(EXTERNAL, 40_001), at(EXTERNAL, 40_003));
    let mut scenario = Scenario::new();
    // EPOCH is 2026-11-27T04:55:14Z.
    scenario.send(before, server, Segment::Tcp { flags: SYN, seq: 0, ack: 0, payload: &[] });
    scenario.wait(100.0).tcp_session(inside, server, 1);
    scenario.send(server, before, Segment::Tcp { flags: SYN | ACK, seq: 0, ack: 1, payload: &[] });
    scenario.wait(100.0).tcp_session(after, server, 1);
    let period = ["--since", "2026-11-27T04:56:00Z", "--until", "2026-11-27T04:57:30+00:00"];
    for workers in ["1", "2"] {
        let run = run(EXAMPLE, &scenario, &[&period[..], &["--flows", "--workers", workers]].concat());
        assert_findings(&run, vec![violation("external-to-mailbox", inside, server)]);
        assert_eq!(run.flows().len(), 1, "{:?}", run.lines);
        let summary = run.summary.clone().expect("summary");
        assert_eq!(summary["flows"]["tracked"], 1, "{summary}");
    }
    let all = run(EXAMPLE, &scenario, &["--flows"]);
    assert_eq!(all.flows().len(), 3, "without a period every flow is kept: {:?}", all.lines);
    // exwatch report keeps the same period of a log that holds every flow.
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, json) = (dir.path().join("eve.json"), dir.path().join("report.json"));
    std::fs::write(&log, all.lines.join("\n") + "\n").expect("write the log");
    let flows_in = |extra: &[&str]| {
        let mut args = vec!["report", log.to_str().expect("utf-8"), "--json", json.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        let (status, _, stderr) = util::exwatch(&args);
        assert_eq!(status, 1, "{stderr}");
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
        report["totals"]["flows"].as_u64()
    };
    assert_eq!(flows_in(&[]), Some(3));
    assert_eq!(flows_in(&period), Some(1));
    let (status, _, stderr) =
        util::exwatch(&["analyze", "--since", "yesterday", "captures/sample-contoso.pcap"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("--since \"yesterday\": not an RFC 3339 time"), "{stderr}");
}
