//! The command line as a user meets it: configuration errors, exit statuses, damaged
//! input, determinism across worker counts, and the bundled sample.

use std::path::Path;

use exwatch::testkit::synth::{self, wire::PcapWriter, OrgOptions, Scenario};

use crate::util::{self, analyze, capture, exwatch, sa, topology_file};

const SAMPLE: &str = "sample-contoso.pcap";

/// The options `captures/sample-contoso.pcap` was generated with (see README).
fn sample_options() -> OrgOptions {
    OrgOptions { packets: 4000, seed: 1, ..OrgOptions::default() }
}

fn example_topology() -> String {
    std::fs::read_to_string(util::repo().join("rules/topology.toml")).expect("example topology")
}

#[test]
fn bundled_sample_is_what_the_generator_writes() {
    let mut regenerated = Vec::new();
    {
        let mut writer = PcapWriter::new(&mut regenerated, 1).expect("header");
        synth::organization(&sample_options(), |ts, frame| writer.write(ts, frame, frame.len() as u32))
            .expect("generate");
    }
    let committed = std::fs::read(capture(SAMPLE)).expect("sample capture");
    assert!(committed == regenerated, "captures/{SAMPLE} differs from the generator's output: regenerate it");
}

#[test]
fn bundled_sample_gives_exactly_the_expected_findings() {
    let expected = synth::organization(&sample_options(), |_, _| Ok(())).expect("generate");
    assert!(expected.len() >= 10, "the sample should show many kinds of findings");
    let mut want: Vec<_> = expected
        .iter()
        .map(|e| (e.verdict.name().to_string(), e.rule.to_string(), e.src.to_string(), e.dst.to_string()))
        .collect();
    want.sort();
    let run = analyze(&[&capture(SAMPLE)], &[]);
    assert_eq!(run.findings(), want);
    assert_eq!(run.status, 1, "violations make the exit status 1");
    assert!(run.stderr.contains("throughput:"), "summary on stderr: {}", run.stderr);
}

/// `generate --bulk` (the benchmarks' larger-frame mix) writes bigger frames and still
/// knows exactly which findings its capture holds.
#[test]
fn generate_bulk_raises_the_frame_size_and_keeps_the_findings_known() {
    let dir = tempfile::tempdir().expect("temp dir");
    let [plain, bulk, expected] = ["plain.pcap", "bulk.pcap", "expected.txt"].map(|f| dir.path().join(f));
    let (status, _, stderr) = exwatch(&["generate", "--packets", "6000", path(&plain)]);
    assert_eq!(status, 0, "{stderr}");
    let (status, _, stderr) = exwatch(&[
        "generate",
        "--packets",
        "6000",
        "--bulk",
        "3",
        "--expected",
        path(&expected),
        path(&bulk),
    ]);
    assert_eq!(status, 0, "{stderr}");
    let mean = |file: &Path| {
        let run = analyze(&[file], &[]);
        let s = run.summary.expect("summary json");
        let frames = s["packets"]["read"].as_f64().expect("frames");
        (std::fs::metadata(file).expect("size").len() as f64 - 24.0) / frames - 16.0
    };
    let (small, large) = (mean(&plain), mean(&bulk));
    assert!((420.0..520.0).contains(&small) && (620.0..720.0).contains(&large), "{small} {large}");
    let mut want: Vec<String> = std::fs::read_to_string(&expected)
        .expect("expected findings")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    want.sort();
    let got: Vec<String> =
        analyze(&[&bulk], &[]).findings().iter().map(|(v, f, s, d)| format!("{v} {f} {s} {d}")).collect();
    assert_eq!(got, want);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn sorted_lines(run: &util::Run) -> Vec<String> {
    let mut lines: Vec<String> = run.events.iter().map(|e| e.to_string()).collect();
    lines.sort();
    lines
}

#[test]
fn events_do_not_depend_on_the_worker_count() {
    let one = analyze(&[&capture(SAMPLE)], &["--flows", "--workers", "1"]);
    assert!(one.flows().len() > 100 && !one.alerts().is_empty());
    for workers in ["2", "3", "7"] {
        let many = analyze(&[&capture(SAMPLE)], &["--flows", "--workers", workers]);
        assert_eq!(sorted_lines(&one), sorted_lines(&many), "--workers {workers}");
    }
}

#[test]
fn the_same_capture_gives_the_same_events_every_run() {
    let a = analyze(&[&capture(SAMPLE)], &["--flows", "--workers", "1"]);
    let b = analyze(&[&capture(SAMPLE)], &["--flows", "--workers", "1"]);
    let lines = |r: &util::Run| r.events.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    assert_eq!(lines(&a), lines(&b));
}

#[test]
fn summary_json_counts_what_was_read() {
    let run = analyze(&[&capture(SAMPLE)], &[]);
    let s = run.summary.expect("summary json");
    assert_eq!(s["packets"]["read"], 5044);
    assert_eq!(s["packets"]["decoded"], 5044);
    assert_eq!(s["packets"]["skipped"], 0);
    assert_eq!(s["findings"]["restriction"], 2);
    let rules = s["rules"].as_array().expect("rules");
    let https = rules.iter().find(|r| r["rule"] == "client-https").expect("client-https line");
    assert!(https["flows"].as_u64() > Some(50) && https["bytes"].as_u64() > Some(100_000));
    assert!(!s["top_violating_pairs"].as_array().expect("pairs").is_empty());
    assert!(s["throughput"]["packets_per_second"].as_f64() > Some(0.0));
}

#[test]
fn community_id_matches_the_published_vector() {
    let (_dir, topology) = topology_file("[roles]\nmailbox = [\"5.6.7.8\"]\n");
    let mut s = Scenario::new();
    s.tcp_session(sa("1.2.3.4:1122"), sa("5.6.7.8:3344"), 1);
    let run = util::analyze_scenario(&s, &["--topology", topology.to_str().expect("utf-8 path")]);
    let alerts = run.alerts();
    assert_eq!(alerts.len(), 1, "{:?}", run.events);
    assert_eq!(alerts[0]["community_id"], "1:wCb3OG7yAFWelaUydu0D+125CLM=");
    assert_eq!(alerts[0]["policy"]["rule"], "external-to-mailbox");
}

#[test]
fn a_missing_file_is_one_line_and_status_2_but_the_others_are_analysed() {
    let run = analyze(&[Path::new("/nonexistent/capture.pcap"), &capture(SAMPLE)], &[]);
    assert_eq!(run.status, 2);
    let lines: Vec<_> = run.stderr.lines().filter(|l| l.contains("/nonexistent/capture.pcap")).collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("cannot open"), "{}", lines[0]);
    assert!(!run.alerts().is_empty(), "the readable file was still analysed");
}

#[test]
fn a_file_cut_short_is_analysed_up_to_the_damage() {
    let whole = std::fs::read(capture(SAMPLE)).expect("sample");
    let dir = tempfile::tempdir().expect("temp dir");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() / 2]).expect("write");
    let run = analyze(&[&cut], &[]);
    assert_eq!(run.status, 2);
    let damage = run.stderr.lines().find(|l| l.contains("damaged at record")).expect("damage line");
    // The record and offset name the first record that does not fit in the file.
    let record: u64 = field_after(damage, "record ").parse().expect("record number");
    let offset: u64 = field_after(damage, "byte offset ").parse().expect("offset");
    assert!(offset < whole.len() as u64 / 2 && offset + 16 > whole.len() as u64 / 2 - 1600, "{damage}");
    assert_eq!(run.summary.as_ref().expect("summary")["packets"]["read"], record - 1);
    let full = analyze(&[&capture(SAMPLE)], &[]);
    let before_damage: Vec<_> = run.findings();
    assert!(!before_damage.is_empty(), "findings before the damage are written");
    for finding in &before_damage {
        assert!(full.findings().contains(finding), "{finding:?} is not a finding of the whole file");
    }
}

fn field_after<'a>(line: &'a str, label: &str) -> &'a str {
    let start = line.find(label).map(|i| i + label.len()).unwrap_or(line.len());
    line[start..].split(|c: char| !c.is_ascii_digit()).next().unwrap_or("")
}

#[test]
fn an_unsupported_link_type_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nflog.pcap");
    let mut writer = PcapWriter::new(std::fs::File::create(&path).expect("create"), 239).expect("header");
    writer.write(synth::EPOCH, &[0u8; 40], 40).expect("record");
    drop(writer);
    let run = analyze(&[&path], &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("link type 239 (NFLOG) is not supported"), "{}", run.stderr);
}

#[test]
fn garbage_frames_are_counted_by_reason_not_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("junk.pcap");
    let mut writer = PcapWriter::new(std::fs::File::create(&path).expect("create"), 1).expect("header");
    let arp = [[0xffu8; 12].as_slice(), &[0x08, 0x06], &[0u8; 28]].concat();
    let short_ip = [[0u8; 12].as_slice(), &[0x08, 0x00, 0x45, 0x00]].concat();
    for frame in [&[0u8; 5][..], &arp, &short_ip] {
        writer.write(synth::EPOCH, frame, frame.len() as u32).expect("record");
    }
    drop(writer);
    let run = analyze(&[&path], &[]);
    // Read, but nothing touched an Exchange server: status 2, with the summary.
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no flow touched a Mailbox or Edge address"), "{}", run.stderr);
    let s = run.summary.expect("summary");
    assert_eq!(s["packets"]["read"], 3);
    assert_eq!(s["packets"]["skipped"], 3);
    let reasons = s["packets"]["skipped_by_reason"].to_string();
    for reason in ["link_truncated", "not_ip", "ip_truncated"] {
        assert!(reasons.contains(reason), "{reasons}");
    }
}

#[test]
fn check_accepts_the_shipped_rules() {
    let (status, stdout, _) = exwatch(&["check"]);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("0 lint(s)"), "{stdout}");
}

#[test]
fn check_lints_unsupported_topologies_with_line_numbers() {
    let text = example_topology()
        .replace("edge              = [\"172.16.0.25\"]", "edge = [\"172.16.0.25\", \"172.16.0.26\"]");
    let (_dir, path) = topology_file(&text);
    let (status, stdout, _) = exwatch(&["check", "--topology", path.to_str().expect("utf-8")]);
    assert_eq!(status, 1, "{stdout}");
    let line =
        stdout.lines().find(|l| l.contains("172.16.0.26/32 has no [[edge_subscription]]")).expect("lint");
    assert!(line.contains("topology.toml:11:"), "{line}");
}

#[test]
fn topology_errors_name_file_line_and_key_with_status_2() {
    let text = example_topology().replace("\"10.10.0.6\"", "\"10.10.0.300\"");
    let (_dir, path) = topology_file(&text);
    for command in ["check", "analyze"] {
        let mut args = vec![command, "--topology", path.to_str().expect("utf-8")];
        if command == "analyze" {
            args.push("captures/sample-contoso.pcap");
        }
        let (status, _, stderr) = exwatch(&args);
        assert_eq!(status, 2, "{command}: {stderr}");
        assert!(
            stderr.contains("topology.toml:12: roles.domain_controller: `10.10.0.300`"),
            "{command}: {stderr}"
        );
    }
}

fn policy_error(edit: impl Fn(&str) -> String) -> String {
    let shipped = std::fs::read_to_string(util::repo().join("rules/exchange.toml")).expect("policy");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, edit(&shipped)).expect("write");
    let (status, _, stderr) = exwatch(&["check", "--policy", path.to_str().expect("utf-8")]);
    assert_eq!(status, 2, "{stderr}");
    stderr
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in policy") + 1
}

#[test]
fn policy_errors_name_file_line_and_rule() {
    let shipped = std::fs::read_to_string(util::repo().join("rules/exchange.toml")).expect("policy");
    let err = policy_error(|t| {
        t.replacen("to = [\"mailbox\", \"domain_controller\", \"skype\"]", "to = [\"mailboxes\"]", 1)
    });
    let line = line_of(&shipped, "to = [\"mailbox\", \"domain_controller\", \"skype\"]");
    assert!(
        err.contains(&format!(
            "policy.toml:{line}: rule[1] (\"exchange-internal\").to: `mailboxes` is not a role"
        )),
        "{err}"
    );

    let err = policy_error(|t| t.replacen("sid = 1930002", "sid = 1930001", 1));
    assert!(err.contains("sid 1930001 is used twice"), "{err}");

    let err = policy_error(|t| t.replacen("sid = 1930002", "sid = 9000002", 1));
    let line = line_of(&shipped, "id = \"client-https\"") - 1;
    assert!(
        err.contains(&format!("policy.toml:{line}: rule[3] (\"client-https\"): sid 9000002 is outside the range reserved for local rules")),
        "{err}"
    );

    let err = policy_error(|t| t.replacen("both_ways = true", "both_ways = true\nbothways = true", 1));
    assert!(err.contains("unknown field `bothways`"), "{err}");

    let err = policy_error(|t| t.replacen("schema = 1", "schema = 2", 1));
    let line = line_of(&shipped, "schema = 1");
    assert!(err.contains(&format!("policy.toml:{line}: schema: schema 2 is not supported")), "{err}");

    let err = policy_error(|t| t.replacen("ports = [443]", "ports = [\"443-80\"]", 1));
    assert!(err.contains("`443-80` is not a port or a range"), "{err}");
}

#[test]
fn another_policy_file_changes_behaviour_without_recompiling() {
    let policy = r#"
schema = 1
[policy]
name = "https-forbidden"
source = "a test"

[[rule]]
id = "no-https"
sid = 1000001
section = "test"
reason = "HTTPS is forbidden here"
verdict = "violation"
from = ["any"]
to = ["mailbox"]
proto = ["tcp"]
ports = ["440-450"]
"#;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).expect("write");
    let mut s = Scenario::new();
    s.tcp_session(sa("10.20.0.5:50000"), sa("10.10.1.11:443"), 1);
    s.tcp_session(sa("198.51.100.7:50001"), sa("10.10.1.11:3389"), 1);
    let run = util::analyze_scenario(&s, &["--policy", path.to_str().expect("utf-8")]);
    let want = vec![(
        "violation".to_string(),
        "no-https".to_string(),
        "10.20.0.5:50000".to_string(),
        "10.10.1.11:443".to_string(),
    )];
    assert_eq!(run.findings(), want);
    assert!(run.stderr.contains("matched no rule"), "{}", run.stderr);
}

#[test]
fn bad_flags_are_status_2() {
    for args in [
        &["analyze", "--fail-on", "warning", "captures/sample-contoso.pcap"][..],
        &["analyze", "--workers", "0", "captures/sample-contoso.pcap"],
        &["analyze", "--syn-timeout", "-1", "captures/sample-contoso.pcap"],
        &["analyze"],
    ] {
        let (status, _, stderr) = exwatch(args);
        assert_eq!(status, 2, "{args:?}: {stderr}");
        assert!(!stderr.is_empty());
    }
}

#[test]
fn help_explains_exit_statuses_and_defaults() {
    let (status, stdout, _) = exwatch(&["analyze", "--help"]);
    assert_eq!(status, 0);
    for needle in ["--eve-log", "--fail-on", "violation,restriction", "--workers", "--syn-timeout", "--flows"]
    {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    let (_, stdout, _) = exwatch(&["--help"]);
    assert!(stdout.contains("Exit status: 0 clean, 1 findings"), "{stdout}");
}

#[test]
fn a_full_flow_table_evicts_and_counts() {
    // Every alert written: an evicted flow that comes back alerts again, and the alert
    // bound would rightly count those repeats into aggregates.
    let full = analyze(&[&capture(SAMPLE)], &["--workers", "1", "--no-aggregate"]);
    let capped = analyze(&[&capture(SAMPLE)], &["--workers", "1", "--max-flows", "8", "--no-aggregate"]);
    let s = capped.summary.as_ref().expect("summary");
    let evicted = s["flows"]["evicted"].as_u64().expect("evicted");
    assert!(evicted > 100, "{s}");
    assert_eq!(s["flows"]["tracked"].as_u64(), Some(evicted + 8), "every flow but the last 8 was evicted");
    // Evicted flows come back when their next packet arrives; no finding is lost.
    for finding in full.findings() {
        assert!(capped.findings().contains(&finding), "{finding:?} lost under eviction");
    }
}

/// `check` refuses, with exit status 2, a topology `analyze` would refuse: a green check
/// must mean the run it feeds can judge something.
#[test]
fn check_refuses_a_topology_analyze_would_refuse() {
    let (_dir, path) = util::topology_file(
        "[organization]\nname = \"dcs-only\"\n\n[roles]\ndomain_controller = [\"10.1.0.5\"]\n",
    );
    let path = path.to_str().expect("utf-8");
    let (status, _, stderr) = util::exwatch(&["check", "--topology", path]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("lists no Mailbox and no Edge server"), "{stderr}");
    let (status, stdout, _) = util::exwatch(&["check", "--json", "--topology", path]);
    assert_eq!(status, 2, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON document");
    assert_eq!(doc["valid"], false, "{doc}");
    assert_eq!(doc["errors"][0]["key"], "roles", "{doc}");
    let (status, _, stderr) = util::exwatch(&["analyze", "--topology", path, "captures/sample-contoso.pcap"]);
    assert_eq!(status, 2, "and analyze refuses it too: {stderr}");
}

/// `--summary-json` says what the run concluded and with what: version, conclusion, exit
/// status, sensor, the capture's time range, and the topology's and policy's SHA-256 (the
/// ones the run's final stats event carries).
#[test]
fn the_summary_json_says_what_was_concluded_and_with_what() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (json, eve) = (dir.path().join("summary.json"), dir.path().join("eve.json"));
    let (status, _, stderr) = util::exwatch(&[
        "analyze",
        "captures/sample-contoso.pcap",
        "--flows",
        "--sensor-name",
        "hq-span",
        "--eve-log",
        eve.to_str().expect("utf-8"),
        "--summary-json",
        json.to_str().expect("utf-8"),
    ]);
    assert_eq!(status, 1, "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("summary")).expect("JSON");
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(summary["exit_status"], 1);
    assert_eq!(summary["sensor"], "hq-span");
    let conclusion = summary["conclusion"].as_str().unwrap_or_default();
    assert!(conclusion.starts_with("not compliant: 8 violation(s), 2 restriction(s)"), "{conclusion}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&eve)
        .expect("EVE")
        .lines()
        .map(|l| serde_json::from_str(l).expect("EVE line"))
        .collect();
    let stats = events.iter().rev().find(|e| e["event_type"] == "stats").expect("a final stats event");
    for key in ["topology_sha256", "policy_sha256"] {
        assert_eq!(summary[key], stats["policy"][key], "{key}");
        assert_eq!(summary[key].as_str().map(str::len), Some(64), "{key}");
    }
    let starts: Vec<&str> = events.iter().filter_map(|e| e["flow"]["start"].as_str()).collect();
    let ends: Vec<&str> = events.iter().filter_map(|e| e["flow"]["end"].as_str()).collect();
    assert_eq!(summary["capture"]["first"].as_str(), starts.iter().min().copied(), "{summary}");
    assert_eq!(summary["capture"]["last"].as_str(), ends.iter().max().copied(), "{summary}");

    // A damaged input: exit 2, and the conclusion says the run did not check it whole.
    let damaged = dir.path().join("damaged.pcap");
    let bytes = std::fs::read("captures/sample-contoso.pcap").expect("sample");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2 + 7]).expect("write");
    let (status, _, _) = util::exwatch(&[
        "analyze",
        damaged.to_str().expect("utf-8"),
        "--eve-log",
        "/dev/null",
        "--summary-json",
        json.to_str().expect("utf-8"),
    ]);
    assert_eq!(status, 2);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("summary")).expect("JSON");
    assert_eq!(summary["exit_status"], 2);
    assert!(summary["conclusion"].as_str().unwrap_or_default().starts_with("not checked whole"), "{summary}");
}

/// `analyze --bpf` judges only the frames the expression passes, one file read as a
/// stream or several files by jobs alike, and counts the others; a bad expression is
/// refused before anything is read.
#[test]
fn analyze_bpf_keeps_what_the_expression_passes_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("copy.pcap");
    std::fs::copy(util::capture(SAMPLE), &copy).expect("copy the sample");
    let sample = util::capture(SAMPLE);
    for files in [vec![sample.as_path()], vec![sample.as_path(), copy.as_path()]] {
        let run = util::analyze(&files, &["--flows", "--bpf", "tcp port 443"]);
        let flows = run.flows();
        assert!(!flows.is_empty(), "{}", run.stderr);
        for flow in &flows {
            assert!(flow["src_port"] == 443 || flow["dest_port"] == 443, "{flow}");
        }
        let summary = run.summary.clone().expect("summary JSON");
        let (read, filtered) = (&summary["packets"]["read"], &summary["packets"]["bpf_filtered"]);
        let total = 5044 * files.len() as u64;
        assert_eq!(read.as_u64().zip(filtered.as_u64()).map(|(r, f)| r + f), Some(total), "{summary}");
        assert!(filtered.as_u64() > Some(0), "{summary}");
    }
    let (status, _, stderr) =
        util::exwatch(&["analyze", "--bpf", "tcp port", "captures/sample-contoso.pcap"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("BPF filter \"tcp port\""), "{stderr}");
}
