//! A green run means something (SPEC section 4): exwatch exits 2, with one line saying
//! why, when it checked nothing a team could rely on, and says which topology it judged
//! against.

use std::path::Path;

use exwatch::testkit::synth::{wire::PcapWriter, Scenario};

use crate::util::{self, analyze, capture, sa, topology_file};

/// A capture with a file header and no record.
fn empty_capture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("empty.pcap");
    PcapWriter::new(std::fs::File::create(&path).expect("create"), 1).expect("header");
    path
}

#[test]
fn a_capture_with_no_packet_is_status_2_without_a_table_of_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = analyze(&[&empty_capture(dir.path())], &[]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no packet was read from any input"), "{}", run.stderr);
    assert!(!run.stderr.contains("exwatch summary"), "no summary of zeros:\n{}", run.stderr);
}

#[test]
fn a_topology_without_mailbox_or_edge_is_status_2() {
    for text in ["", "[roles]\ndomain_controller = [\"10.10.0.5\"]\n"] {
        let (_dir, topology) = topology_file(text);
        let run =
            analyze(&[&capture("sample-contoso.pcap")], &["--topology", topology.to_str().expect("utf-8")]);
        assert_eq!(run.status, 2, "{text:?}: {}", run.stderr);
        assert!(run.stderr.contains("lists no Mailbox and no Edge server"), "{}", run.stderr);
        assert!(run.events.is_empty());
    }
}

#[test]
fn a_topology_of_another_site_is_status_2_with_the_summary() {
    let (_dir, topology) = topology_file("[roles]\nmailbox = [\"192.0.2.10\"]\nedge = [\"192.0.2.25\"]\n");
    let run = analyze(&[&capture("sample-contoso.pcap")], &["--topology", topology.to_str().expect("utf-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no flow touched a Mailbox or Edge address of"), "{}", run.stderr);
    assert!(run.stderr.contains("is this the topology of the network captured?"), "{}", run.stderr);
    let summary = run.summary.expect("the summary shows what was seen");
    assert_eq!(summary["flows"]["touching_exchange"], 0);
    assert!(summary["flows"]["tracked"].as_u64() > Some(100));
}

#[test]
fn without_topology_the_builtin_example_is_named_whatever_the_current_directory_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A site's own rules/topology.toml in the current directory is not what is used.
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    std::fs::write(dir.path().join("rules/topology.toml"), "[roles]\nmailbox = [\"192.0.2.10\"]\n")
        .expect("write");
    let summary = dir.path().join("summary.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .current_dir(dir.path())
        .args(["analyze", "--no-progress", "--eve-log", "/dev/null", "--summary-json"])
        .arg(&summary)
        .arg(capture("sample-contoso.pcap"))
        .output()
        .expect("run exwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the sample's findings: {stderr}");
    assert!(stderr.contains("judging against the built-in example \"contoso\", not your site's"), "{stderr}");
    assert!(stderr.contains("topology built-in example \"contoso\""), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(json["topology"], "built-in example \"contoso\"");
}

#[test]
fn topology_lints_are_repeated_as_warnings() {
    let text = std::fs::read_to_string(util::repo().join("rules/topology.toml"))
        .expect("example")
        .replace("edge              = [\"172.16.0.25\"]", "edge = [\"172.16.0.25\", \"172.16.0.26\"]");
    let (_dir, topology) = topology_file(&text);
    let mut s = Scenario::new();
    s.tcp_session(sa("10.20.0.9:50000"), sa("10.10.1.11:443"), 1);
    let run = util::analyze_scenario(&s, &["--topology", topology.to_str().expect("utf-8")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let warnings = run.summary.as_ref().expect("summary")["warnings"].to_string();
    assert!(warnings.contains("172.16.0.26/32 has no [[edge_subscription]]"), "{warnings}");
    assert!(
        run.stderr.contains("warning: ") && run.stderr.contains("172.16.0.26/32 has no"),
        "{}",
        run.stderr
    );
}
