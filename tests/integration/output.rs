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

#[test]
fn eve_lines_match_the_golden_file() {
    let run = util::analyze_scenario(&contract_scenario(), &["--flows", "--workers", "1"]);
    // One worker writes events in the order it finds them, so the order is pinned too.
    let got = run.lines.join("\n") + "\n";
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
    let run = util::analyze_scenario(&s, &["--workers", "1", "--alerts-per-key", "3"]);
    let got = run.lines.join("\n") + "\n";
    let golden = util::repo().join("tests/golden/aggregate.jsonl");
    if std::env::var_os("EXWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless golden file");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(got, want, "EVE output changed; if on purpose, rerun with EXWATCH_BLESS=1 and review");
}
