//! Bounded memory under attack: a flood of distinct 5-tuples, of fragments whose first
//! fragment never comes and of spoofed SMTP senders to the Edge must not grow exwatch
//! past its caps; every eviction and drop is counted, and a violation in the middle of
//! the flood is still caught.

use std::process::Command;

use exwatch::testkit::synth::{self, wire::PcapWriter};

use crate::util;

/// Runs the binary with `args`, which write the summary to `summary`: (exit status,
/// stderr, peak resident memory in bytes as the summary reports it).
fn run_measured(args: &[&str], summary: &std::path::Path) -> (i32, String, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run exwatch");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).expect("summary")).expect("summary JSON");
    let rss = json["throughput"]["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), rss)
}

#[test]
fn a_flood_of_new_flows_and_orphan_fragments_stays_within_the_caps() {
    const SYNS: u64 = 300_000;
    const FRAGMENTS: u64 = 100_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flood.pcap");
    let mut writer =
        PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(&path).expect("create")), 1)
            .expect("header");
    let violation = synth::flood(SYNS, FRAGMENTS, |ts, frame| writer.write(ts, frame, frame.len() as u32))
        .expect("write flood");
    drop(writer);
    let eve = dir.path().join("eve.json");
    let summary = dir.path().join("summary.json");
    let path_arg = path.to_str().expect("utf-8");
    let (eve_arg, summary_arg) = (eve.to_str().expect("utf-8"), summary.to_str().expect("utf-8"));
    let common = ["analyze", path_arg, "--eve-log", eve_arg, "--summary-json", summary_arg, "--no-progress"];

    let capped =
        [&common[..], &["--max-flows", "10000", "--max-smtp-senders", "5000", "--workers", "2"]].concat();
    let (status, stderr, capped_rss) = run_measured(&capped, &summary);
    assert_eq!(status, 1, "the violation sets status 1:\n{stderr}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let evicted = s["flows"]["evicted"].as_u64().expect("evicted");
    let tracked = s["flows"]["tracked"].as_u64().expect("tracked");
    assert!(tracked > SYNS && evicted >= tracked - 10_000, "every flow past the cap is evicted: {s}");
    // About one SYN in eight goes to the Edge on 25, each from a new spoofed sender.
    let dropped = s["flows"]["smtp_senders_dropped"].as_u64().expect("smtp_senders_dropped");
    assert!(dropped > SYNS / 8 * 8 / 10, "senders past the table's cap are counted: {s}");
    let fragments = &s["packets"];
    let lost = fragments["fragments_orphaned"].as_u64().unwrap_or(0)
        + fragments["fragments_dropped"].as_u64().unwrap_or(0);
    assert_eq!(lost, FRAGMENTS, "every orphan fragment is counted: {s}");

    let events = std::fs::read_to_string(&eve).expect("eve");
    let alerts: Vec<serde_json::Value> =
        events.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(alerts.len(), 1, "the flood itself is allowed traffic");
    let alert = &alerts[0];
    assert_eq!(alert["policy"]["rule"], violation.rule);
    assert_eq!(util::endpoint(&alert["src_ip"], &alert["src_port"]), violation.src.to_string());

    // Without a tight cap the same flood holds every flow: the cap is what bounds memory.
    let roomy = [&common[..], &["--max-flows", "10000000", "--workers", "2"]].concat();
    let (_, _, roomy_rss) = run_measured(&roomy, &summary);
    assert!(
        capped_rss * 2 < roomy_rss,
        "peak RSS with 10,000 flows ({capped_rss} bytes) should be far below that with all {tracked} ({roomy_rss} bytes)"
    );
}
