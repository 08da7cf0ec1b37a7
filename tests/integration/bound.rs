//! The alert bound (issue 15): a flood of findings writes a few alert lines and
//! aggregates whose counts add up exactly; a scan is one aggregate with its port count;
//! unrelated violations inside the flood are still written at once; the summary's
//! counts are the same with the bound on or off; and any worker count gives the same
//! events, aggregates included.

use std::path::Path;

use exwatch::testkit::synth::{alerts, wire::PcapWriter};
use serde_json::Value;

use crate::util::{self, Run};

/// Spoofed SYNs at one Mailbox port. The flood is a million; the debug binary
/// takes about 3 s per 200,000 on 2 cores, and the test runs it five times, so this is
/// a fifth of that: the bound does not depend on the size, only the held-back count does.
const SYNS: u64 = 200_000;
const SCANNED_PORTS: u64 = 1_000;

fn write_flood(path: &Path) -> alerts::AlertFlood {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut writer = PcapWriter::new(file, 1).expect("header");
    let flood =
        alerts::alert_flood(SYNS, SCANNED_PORTS, |ts, frame| writer.write(ts, frame, frame.len() as u32))
            .expect("write flood");
    std::io::Write::flush(&mut writer.into_inner()).expect("flush");
    flood
}

fn aggregates(run: &Run) -> Vec<&Value> {
    run.alerts().into_iter().filter(|a| a["policy"].get("aggregate").is_some()).collect()
}

fn single(run: &Run) -> Vec<&Value> {
    run.alerts().into_iter().filter(|a| a["policy"].get("aggregate").is_none()).collect()
}

fn summary_counts(run: &Run) -> (Value, Value) {
    let s = run.summary.as_ref().expect("summary");
    let rules: Vec<Value> = s["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| serde_json::json!([r["rule"], r["flows"], r["bytes"], r["alerts"]]))
        .collect();
    let f = &s["findings"];
    (Value::Array(rules), serde_json::json!([f["violation"], f["advisory"], f["restriction"]]))
}

fn sorted(run: &Run) -> Vec<String> {
    let mut lines = run.lines.clone();
    lines.sort();
    lines
}

#[test]
fn a_flood_of_findings_is_a_few_lines_with_exact_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("alert-flood.pcap");
    let flood = write_flood(&pcap);
    let run = util::analyze(&[&pcap], &["--workers", "1"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let lines = run.lines.len();
    assert!(lines <= 300, "{lines} alert lines for a flood of {SYNS} SYNs");

    // The flood: the first few written, the rest in aggregates, all flows accounted for.
    let target = flood.target.to_string();
    let at_target = |a: &&Value| util::endpoint(&a["dest_ip"], &a["dest_port"]) == target;
    let written = single(&run).into_iter().filter(at_target).count() as u64;
    let held: u64 = aggregates(&run)
        .into_iter()
        .filter(|a| a["policy"]["rule"] == "external-to-mailbox")
        .map(|a| a["policy"]["aggregate"]["flows"].as_u64().expect("flows"))
        .sum();
    assert_eq!(written + held, SYNS, "{written} written + {held} aggregated");
    assert!(written <= 10, "{written}");
    let by_responder: Vec<_> =
        aggregates(&run).into_iter().filter(|a| a["policy"]["aggregate"]["by"] == "responder").collect();
    assert_eq!(by_responder.len(), 1, "{by_responder:?}");
    let a = &by_responder[0]["policy"]["aggregate"];
    assert_eq!(a["pkts"].as_u64(), a["flows"].as_u64(), "one SYN each: {a}");
    assert_eq!((a["responders"].as_u64(), a["ports"].as_u64()), (Some(1), Some(1)));
    let originators = a["originators"].as_u64().expect("originators");
    assert!(originators.abs_diff(held) < held / 10, "{originators} distinct sources of {held}");

    // The scan: one originator across 1,000 ports of the Edge is one aggregate.
    let scanner = flood.scanner.to_string();
    let from_scanner = |a: &&Value| a["src_ip"] == scanner.as_str();
    let scan: Vec<_> = aggregates(&run).into_iter().filter(from_scanner).collect();
    assert_eq!(scan.len(), 1, "{scan:?}");
    let s = &scan[0]["policy"]["aggregate"];
    assert_eq!(
        (s["by"].as_str(), scan[0]["policy"]["rule"].as_str()),
        (Some("originator"), Some("edge-perimeter"))
    );
    let scan_written = single(&run).into_iter().filter(from_scanner).count() as u64;
    assert_eq!(s["written"].as_u64(), Some(scan_written));
    assert_eq!(s["flows"].as_u64().expect("flows") + scan_written, SCANNED_PORTS);
    let ports = s["ports"].as_u64().expect("ports");
    assert!(ports.abs_diff(SCANNED_PORTS - scan_written) < SCANNED_PORTS / 20, "{ports} ports");

    // Unrelated violations inside the flood are written at once, on their own.
    for v in &flood.violations {
        let found: Vec<_> = run
            .alerts()
            .into_iter()
            .filter(|a| util::endpoint(&a["src_ip"], &a["src_port"]) == v.src.to_string())
            .collect();
        assert_eq!(found.len(), 1, "{v:?}");
        assert_eq!(found[0]["policy"]["rule"], v.rule);
        assert!(found[0]["policy"].get("aggregate").is_none(), "{v:?}");
    }

    // Counted everywhere: the summary says how many were held back, under which rule.
    let summary = run.summary.as_ref().expect("summary");
    let aggregated = summary["findings"]["aggregated"].as_u64().expect("aggregated");
    let by_rule: u64 = summary["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["aggregated"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(aggregated, by_rule);
    let in_lines: u64 =
        aggregates(&run).iter().map(|a| a["policy"]["aggregate"]["flows"].as_u64().unwrap_or(0)).sum();
    assert_eq!(aggregated, in_lines);
    assert_eq!(summary["findings"]["aggregates"].as_u64(), Some(aggregates(&run).len() as u64));

    // The bound off: every alert written, and the same counts in the summary. The EVE
    // lines are counted, not parsed: 200,000 of them take the debug build a while.
    let eve = dir.path().join("off.json");
    let summary_path = dir.path().join("off-summary.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .arg("analyze")
        .arg(&pcap)
        .args(["--workers", "1", "--no-aggregate", "--no-progress", "--eve-log"])
        .arg(&eve)
        .arg("--summary-json")
        .arg(&summary_path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run exwatch");
    assert_eq!(status.code(), Some(1));
    let written = std::fs::read(&eve).expect("eve").iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(written, SYNS + SCANNED_PORTS + 2);
    let off = Run {
        status: 1,
        lines: Vec::new(),
        events: Vec::new(),
        stderr: String::new(),
        summary: Some(serde_json::from_slice(&std::fs::read(&summary_path).expect("summary")).expect("json")),
    };
    assert_eq!(summary_counts(&off), summary_counts(&run));
    assert_eq!(off.summary.as_ref().expect("summary")["findings"]["aggregated"].as_u64(), Some(0));

    // Any worker count: the same events, aggregates included.
    let one = sorted(&run);
    for workers in ["2", "3"] {
        let many = util::analyze(&[&pcap], &["--workers", workers]);
        assert_eq!(summary_counts(&many), summary_counts(&run), "--workers {workers}");
        let findings = &many.summary.as_ref().expect("summary")["findings"];
        assert_eq!(findings["reorder_overflow"].as_u64(), Some(0), "--workers {workers}: {findings}");
        assert!(sorted(&many) == one, "--workers {workers} wrote other events");
    }
}

/// Independent files are bounded each on its own: two copies of a small flood give two
/// sets of aggregates, and the same events with one job or two.
#[test]
fn each_file_is_bounded_on_its_own_whatever_the_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    for path in [&a, &b] {
        let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
        let mut writer = PcapWriter::new(file, 1).expect("header");
        alerts::alert_flood(3_000, 100, |ts, frame| writer.write(ts, frame, frame.len() as u32))
            .expect("flood");
        std::io::Write::flush(&mut writer.into_inner()).expect("flush");
    }
    let one = util::analyze(&[&a, &b], &["--jobs", "1"]);
    let two = util::analyze(&[&a, &b], &["--jobs", "2"]);
    assert_eq!(sorted(&one), sorted(&two));
    let alone = util::analyze(&[&a], &[]);
    assert_eq!(aggregates(&one).len(), 2 * aggregates(&alone).len());
    assert_eq!(one.lines.len(), 2 * alone.lines.len());
}

#[test]
fn the_bound_and_its_defaults_are_in_the_help() {
    let (status, stdout, _) = util::exwatch(&["analyze", "--help"]);
    assert_eq!(status, 0);
    for needle in [
        "--alerts-per-key",
        "[default: 5]",
        "--aggregate-window",
        "[default: 60]",
        "--max-alert-rate",
        "[default: 100]",
        "--no-aggregate",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from --help:\n{stdout}");
    }
    let (status, _, stderr) =
        util::exwatch(&["analyze", "--aggregate-window", "0", "captures/sample-contoso.pcap"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("--aggregate-window"), "{stderr}");
}

/// `/metrics` says how many findings were aggregated, in total and by rule.
#[test]
fn metrics_count_what_the_bound_held_back() {
    use exwatch::counters::{Counter, Counters};
    use exwatch::policy::{builtin, Engine};
    use exwatch::telemetry::{prometheus, Latency, Snapshot};
    let engine = Engine::new(
        std::sync::Arc::new(builtin::policy().expect("policy")),
        std::sync::Arc::new(builtin::topology().expect("topology")),
        10,
    );
    let mut counters = Counters::for_policy(&engine.policy);
    let rule = engine.policy.rules.iter().position(|r| r.id == "external-to-mailbox").expect("rule");
    counters.rules[rule].alerts = 9;
    counters.rules[rule].aggregated = 7;
    counters[Counter::AlertsAggregated] = 7;
    let snapshot = Snapshot {
        counters,
        flows_active: 0,
        latency: Latency::default(),
        uptime: std::time::Duration::ZERO,
    };
    let page = prometheus::page(&engine, &snapshot);
    assert!(page.contains("\nexwatch_alerts_aggregated_total 7\n"), "{page}");
    assert!(
        page.contains(
            "exwatch_alerts_aggregated_by_rule_total{rule=\"external-to-mailbox\",verdict=\"violation\"} 7"
        ),
        "{page}"
    );
}
