//! The EVE output is a contract (docs/eve.md): golden files pin it byte for byte.
//! After a deliberate change of format, rewrite them with EXWATCH_BLESS=1 and review
//! the diff.

use exwatch::testkit::synth::{wire::Segment, Scenario};

use crate::util::{self, sa};

/// One finding of each verdict, with the flows that carry them.
fn contract_scenario() -> Scenario {
    let mut s = Scenario::new();
    // violation: the Edge reaching the Internet on 3389.
    s.tcp_session(sa("172.16.0.25:51514"), sa("198.51.100.7:3389"), 1);
    // advisory: plain HTTP from an internal client to a Mailbox server, over 802.1Q.
    s.link.vlans = [Some(10), None];
    s.tcp_session(sa("10.20.0.9:50000"), sa("10.10.1.11:80"), 1);
    s.link.vlans = [None, None];
    // restriction: a firewall refuses RPC between two Mailbox servers.
    s.icmp_prohibited("10.10.0.1".parse().expect("address"), sa("10.10.1.11:50001"), sa("10.10.1.12:135"));
    // allowed: an IPv6 client on 443 (a flow event only).
    s.tcp_session(sa("[2001:db8:ff::7]:50002"), sa("[2001:db8:10::11]:443"), 1);
    s
}

/// The options of the golden runs: one worker writes events in the order it finds
/// them, so the order is pinned too; a fixed sensor name stands for the hostname.
const GOLDEN_RUN: [&str; 5] = ["--flows", "--workers", "1", "--sensor-name", "sensor-1"];

#[test]
fn eve_lines_match_the_golden_file() {
    let run = util::analyze_scenario(&contract_scenario(), &GOLDEN_RUN);
    let got: String = run.lines.iter().map(|line| util::file_name_only(line) + "\n").collect();
    let golden = util::repo().join("tests/golden/eve.jsonl");
    if std::env::var_os("EXWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless golden file");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(got, want, "EVE output changed; if on purpose, rerun with EXWATCH_BLESS=1 and review");
}

/// The aggregate alert is pinned like the others: eight SYNs from eight sources at a
/// Mailbox server's 3389 with at most 3 alerts per key write 3 alerts, then one
/// aggregate of the other 5 when the window closes (the end of input here).
#[test]
fn an_aggregate_alert_matches_the_golden_file() {
    let mut s = Scenario::new();
    for i in 0..8 {
        let syn = Segment::Tcp { flags: 0x02, seq: 1, ack: 0, payload: &[] };
        s.send(sa(&format!("198.51.100.{}:4000{i}", 10 + i)), sa("10.10.1.11:3389"), syn);
    }
    let run =
        util::analyze_scenario(&s, &["--workers", "1", "--alerts-per-key", "3", "--sensor-name", "sensor-1"]);
    let got: String = run.lines.iter().map(|line| util::file_name_only(line) + "\n").collect();
    let golden = util::repo().join("tests/golden/aggregate.jsonl");
    if std::env::var_os("EXWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless golden file");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(got, want, "aggregate alert changed; if on purpose, rerun with EXWATCH_BLESS=1 and review");
}

/// Real captures whose events pin what Suricata writes beyond plain TCP: a triple VLAN
/// stack, VXLAN, ERSPAN type II (the ERSPAN header's VLAN), GRE, and ICMPv6 (echo and
/// neighbour discovery).
const SUBJECTS: [&str; 5] = [
    "real/vlan-qinqinq-http.pcap",
    "real/vxlan-http.pcap",
    "real/erspan-type2-http-midstream.pcap",
    "real/gre-teb-ethernet-http-nbns.pcap",
    "real/ipv6-routing-header.pcap",
];

fn subject_lines() -> String {
    let mut got = String::new();
    for name in SUBJECTS {
        let run = util::analyze(&[&util::capture(name)], &GOLDEN_RUN);
        assert!(run.read_whole(), "{name}: status {}: {}", run.status, run.stderr);
        for line in &run.lines {
            got.push_str(&util::file_name_only(line));
            got.push('\n');
        }
    }
    got
}

/// The `flow` and `alert` events of real tunnelled, tagged and ICMP traffic, pinned
/// (`tests/golden/eve-real.jsonl`; EXWATCH_BLESS=1 rewrites it).
#[test]
fn eve_lines_of_real_captures_match_the_golden_file() {
    let got = subject_lines();
    let golden = util::repo().join("tests/golden/eve-real.jsonl");
    if std::env::var_os("EXWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless golden file");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(got, want, "EVE output changed; if on purpose, rerun with EXWATCH_BLESS=1 and review");
}

/// What Suricata's documentation says of these captures' fields, checked on the events
/// themselves rather than through the golden file.
#[test]
fn real_captures_carry_suricatas_fields_with_suricatas_meaning() {
    let events = |name: &str| util::analyze(&[&util::capture(name)], &["--flows", "--workers", "1"]);
    // `vlan`: the whole stack, outermost first.
    let qinq = events("real/vlan-qinqinq-http.pcap");
    assert!(qinq.flows().iter().all(|f| f["vlan"] == serde_json::json!([30, 20, 10])), "{:?}", qinq.lines);
    // `tunnel`: the outer packet's addresses, ports and protocol, and the depth.
    let vxlan = events("real/vxlan-http.pcap");
    let tunnel = &vxlan.flows()[0]["tunnel"];
    assert_eq!(
        (tunnel["proto"].as_str(), tunnel["dest_port"].as_u64(), tunnel["depth"].as_u64()),
        (Some("UDP"), Some(4789), Some(1)),
        "{tunnel}"
    );
    assert!(tunnel["src_ip"].is_string() && tunnel["dest_ip"].is_string(), "{tunnel}");
    let erspan = events("real/erspan-type2-http-midstream.pcap");
    for flow in erspan.flows() {
        assert_eq!(flow["tunnel"]["proto"], "GRE", "{flow}");
        assert!(flow["tunnel"].get("src_port").is_none(), "GRE has no ports: {flow}");
        // The ERSPAN header's VLAN, as Suricata writes it for ERSPAN-carried frames.
        assert!(flow["vlan"].as_array().is_some_and(|v| v.len() == 1), "{flow}");
    }
    // ICMP: `icmp_type` and `icmp_code`, no ports; `flow.state` established only with
    // packets both ways.
    let icmp = events("real/ipv6-routing-header.pcap");
    let icmp: Vec<_> = icmp.flows().into_iter().filter(|f| f["proto"] == "IPv6-ICMP").cloned().collect();
    assert!(!icmp.is_empty());
    for flow in &icmp {
        assert!(flow["icmp_type"].is_u64() && flow["icmp_code"].is_u64(), "{flow}");
        assert!(flow.get("src_port").is_none() && flow.get("dest_port").is_none(), "{flow}");
        let both_ways = flow["flow"]["pkts_toserver"].as_u64() > Some(0)
            && flow["flow"]["pkts_toclient"].as_u64() > Some(0);
        assert_eq!(flow["flow"]["state"] == "established", both_ways, "{flow}");
    }
    // exwatch's own fields live in `policy`, never in Suricata's `flow`.
    for flow in qinq.flows().into_iter().chain(vxlan.flows()) {
        assert!(
            flow["flow"].get("conn_state").is_none() && flow["policy"]["conn_state"].is_string(),
            "{flow}"
        );
    }
}

/// Every line exwatch writes, on the bundled sample and on real captures (and the
/// `stats` event of the golden file), validates against Suricata's own EVE schema with
/// exwatch's `policy` key allowed (tests/schema/README.md). Python's `jsonschema`
/// checks it, as scripts/setup.sh installs it.
#[test]
fn every_line_validates_against_suricatas_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.jsonl");
    let mut lines = subject_lines();
    let sample = util::analyze(&[&util::capture("sample-contoso.pcap")], &["--flows"]);
    assert!(!sample.lines.is_empty() && sample.read_whole(), "{}", sample.stderr);
    for line in &sample.lines {
        lines.push_str(line);
        lines.push('\n');
    }
    lines.push_str(
        &std::fs::read_to_string(util::repo().join("tests/golden/stats.jsonl")).expect("stats golden"),
    );
    std::fs::write(&eve, &lines).expect("write lines");
    // The first Python that has jsonschema: the one on PATH (it may be a pyenv one, with
    // pip's jsonschema), else Debian's, where scripts/setup.sh installs it.
    let has_jsonschema = |python: &&str| {
        std::process::Command::new(python)
            .args(["-c", "import jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let python = ["python3", "/usr/bin/python3"].into_iter().find(has_jsonschema).unwrap_or("python3");
    let output = std::process::Command::new(python)
        .arg(util::repo().join("scripts/validate-eve.py"))
        .arg(&eve)
        .output()
        .expect("run python3 scripts/validate-eve.py (scripts/setup.sh installs python3 and its jsonschema)");
    let report = String::from_utf8_lossy(&output.stdout);
    let count = lines.lines().count();
    assert!(
        output.status.success() && report.contains(&format!("{count} lines, 0 failures")),
        "schema check failed (status {:?}):\n{report}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Suricata's alert `direction`: which way the packet that decided the alert went. An
/// RDP flow to a Mailbox server from the Internet, caught by its SYN (`to_server`) or,
/// when the capture starts late, by the server's answer (`to_client`); an ICMP error
/// travels back to the originator (`to_client`).
#[test]
fn alerts_say_which_way_the_deciding_packet_went() {
    use exwatch::decode::tcp_flags::{ACK, SYN};
    use exwatch::testkit::synth::wire::Segment;
    let (client, server) = (sa("198.51.100.7:40001"), sa("10.10.1.11:3389"));
    let tcp = |flags| Segment::Tcp { flags, seq: 1, ack: 1, payload: b"" };
    let direction = |s: &Scenario| {
        let run = util::analyze_scenario(s, &["--workers", "1"]);
        run.alerts().iter().map(|a| a["direction"].as_str().unwrap_or("none").to_string()).collect::<Vec<_>>()
    };
    let mut syn_first = Scenario::new();
    syn_first.send(client, server, tcp(SYN)).send(server, client, tcp(SYN | ACK));
    assert_eq!(direction(&syn_first), ["to_server"]);
    let mut answer_first = Scenario::new();
    answer_first.send(server, client, tcp(ACK)).send(client, server, tcp(ACK));
    assert_eq!(direction(&answer_first), ["to_client"]);
    let mut refused = Scenario::new();
    refused.icmp_prohibited(
        "10.10.0.1".parse().expect("address"),
        sa("10.10.1.11:50001"),
        sa("10.10.1.12:135"),
    );
    assert_eq!(direction(&refused), ["to_client"]);
}

/// Where Suricata says an offline event was seen: `host`, the sensor's name (the
/// hostname unless `--sensor-name` says otherwise; an empty name writes none), and
/// `pcap_filename`, the file the flow's first packet came from (here each of two
/// captures analysed as captures of their own).
#[test]
fn offline_events_name_the_sensor_and_the_capture_file() {
    let file = util::capture("real/vxlan-http.pcap");
    let other = util::capture("real/vlan-qinqinq-http.pcap");
    let default = util::analyze(&[&file, &other], &["--flows"]);
    let hosts: std::collections::BTreeSet<_> = default.events.iter().map(|e| e["host"].as_str()).collect();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert!(hosts.iter().all(|h| h.is_some_and(|h| !h.is_empty())), "{hosts:?}");
    // The run's final `stats` event is the whole run's: it names no capture file.
    let (stats, events): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
        default.events.iter().partition(|e| e["event_type"] == "stats");
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0]["pcap_filename"], serde_json::Value::Null);
    for event in events {
        let want = if event["vlan"].is_array() { &other } else { &file };
        assert_eq!(event["pcap_filename"], want.display().to_string(), "{event}");
    }
    let named = util::analyze(&[&file], &["--flows", "--sensor-name", "span-7"]);
    assert!(named.events.iter().all(|e| e["host"] == "span-7"), "{:?}", named.lines);
    let unnamed = util::analyze(&[&file], &["--flows", "--sensor-name", ""]);
    assert!(unnamed.events.iter().all(|e| e.get("host").is_none()), "{:?}", unnamed.lines);
}
