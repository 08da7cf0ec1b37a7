//! The benchmark scripts under benches/ on a tiny capture: they fail on a failed run, and
//! the JSON, CSV and SVG they write have the shape their headers document, one record per
//! run and tool. No timing is asserted: only that every measure is there and is a number.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use crate::util::repo;

/// A temp dir holding a 2,000-packet capture from `exwatch generate`.
fn tiny_capture() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("tiny.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["generate", capture.to_str().expect("utf-8 path"), "--packets", "2000"])
        .output()
        .expect("run exwatch generate");
    assert!(out.status.success(), "exwatch generate: {}", String::from_utf8_lossy(&out.stderr));
    (dir, capture)
}

/// `bash benches/SCRIPT ARGS` from the repository root, with the test's exwatch binary.
fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(repo().join("benches").join(name))
        .args(args)
        .current_dir(repo())
        .env("EXWATCH", env!("CARGO_BIN_EXE_exwatch"))
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run benches/{name}: {e}"))
}

fn assert_ok(name: &str, out: &Output) {
    assert!(
        out.status.success(),
        "benches/{name} exited with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `object[field]` is a number (and not negative), for every field named.
fn assert_numbers(object: &Value, fields: &[&str]) {
    for field in fields {
        let v = &object[*field];
        assert!(v.as_f64().is_some_and(|n| n >= 0.0), "{field} is not a number >= 0 in {object}");
    }
}

/// `object` has exactly these fields.
fn assert_fields(object: &Value, fields: &[&str]) {
    let mut have: Vec<&str> = object.as_object().expect("an object").keys().map(String::as_str).collect();
    let mut want = fields.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "fields of {object}");
}

#[test]
fn against_cat_fails_on_a_failed_run_instead_of_timing_it() {
    let (dir, capture) = tiny_capture();
    let json = dir.path().join("against-cat.json");
    let out = script(
        "against-cat.sh",
        &[capture.to_str().expect("utf-8 path"), "2", "--", "--workers", "0"],
        &[("JSON", json.to_str().expect("utf-8 path"))],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "status; stderr: {stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("against-cat: failed with status 2: ") && l.ends_with("--workers 0")),
        "no line naming the command and its status: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("x cat"), "a failed run was timed");
    assert!(!json.exists(), "JSON written for a failed run");
}

#[test]
fn against_cat_writes_json_of_every_run() {
    let (dir, capture) = tiny_capture();
    let json = dir.path().join("against-cat.json");
    let out = script(
        "against-cat.sh",
        &[capture.to_str().expect("utf-8 path"), "2", "--", "--workers", "1"],
        &[("JSON", json.to_str().expect("utf-8 path"))],
    );
    assert_ok("against-cat.sh", &out);
    let doc = read_json(&json);
    assert_fields(
        &doc,
        &["capture", "bytes", "page_cache", "runs", "cores", "analyze_args", "records", "tools"],
    );
    assert_eq!(doc["capture"], capture.to_str().expect("utf-8 path"));
    assert_eq!(doc["bytes"], std::fs::metadata(&capture).expect("capture").len());
    assert_eq!(doc["page_cache"], "reread", "the default");
    assert_eq!(doc["runs"], 2);
    assert_eq!(doc["analyze_args"], serde_json::json!(["--workers", "1"]));
    let records = doc["records"].as_array().expect("records");
    let mut seen: Vec<(String, u64)> = Vec::new();
    for r in records {
        assert_fields(r, &["tool", "round", "seconds", "x_cat"]);
        let tool = r["tool"].as_str().expect("tool").to_string();
        assert_numbers(r, &["round", "seconds"]);
        if tool == "cat" {
            assert!(r["x_cat"].is_null(), "cat's ratio to itself: {r}");
        } else {
            assert_eq!(tool, "exwatch");
            assert_numbers(r, &["x_cat"]);
        }
        seen.push((tool, r["round"].as_u64().expect("round")));
    }
    seen.sort();
    let want: Vec<(String, u64)> = [("cat", 1), ("cat", 2), ("exwatch", 1), ("exwatch", 2)]
        .iter()
        .map(|(t, n)| (t.to_string(), *n))
        .collect();
    assert_eq!(seen, want, "one record per run and tool");
    let tools = doc["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 2);
    for t in tools {
        assert_fields(t, &["tool", "median_seconds", "min_seconds", "max_seconds", "median_x_cat"]);
        assert_numbers(t, &["median_seconds", "min_seconds", "max_seconds"]);
        assert_eq!(t["median_x_cat"].is_null(), t["tool"] == "cat", "{t}");
    }
}

#[test]
fn against_cat_keeps_the_page_cache_when_asked_and_refuses_other_states() {
    let (dir, capture) = tiny_capture();
    let json = dir.path().join("against-cat.json");
    let path = capture.to_str().expect("utf-8 path");
    let out = script(
        "against-cat.sh",
        &[path, "1"],
        &[("JSON", json.to_str().expect("utf-8 path")), ("PAGE_CACHE", "keep")],
    );
    assert_ok("against-cat.sh", &out);
    assert_eq!(read_json(&json)["page_cache"], "keep");
    assert!(String::from_utf8_lossy(&out.stdout).contains("page cache: keep"), "the state is said");

    let out = script("against-cat.sh", &[path, "1"], &[("PAGE_CACHE", "cold")]);
    assert_eq!(out.status.code(), Some(2), "status for an unknown state");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "against-cat: PAGE_CACHE must be reread or keep, not 'cold'"
    );
}

#[test]
fn peers_writes_json_of_every_run_and_skips_named_peers() {
    let (dir, capture) = tiny_capture();
    let json = dir.path().join("peers.json");
    let out = script(
        "peers.sh",
        &[],
        &[
            ("CAPTURE", capture.to_str().expect("utf-8 path")),
            ("RUNS", "2"),
            ("SKIP", "suricata ndpiReader tshark"),
            ("EXWATCH_PEERS_INSTALL", "0"),
            ("JSON", json.to_str().expect("utf-8 path")),
        ],
    );
    assert_ok("peers.sh", &out);
    let doc = read_json(&json);
    assert_fields(
        &doc,
        &[
            "script",
            "capture",
            "packets",
            "bytes",
            "page_cache",
            "runs",
            "cores",
            "cpu_model",
            "records",
            "tools",
        ],
    );
    assert_eq!(doc["script"], "peers");
    assert_eq!(doc["page_cache"], "reread", "the default");
    assert_eq!(doc["runs"], 2);
    assert_numbers(&doc, &["bytes", "cores"]);
    let tools = doc["tools"].as_array().expect("tools");
    let status = |name: &str| {
        tools.iter().find(|t| t["tool"] == name).map(|t| t["status"].clone()).unwrap_or(Value::Null)
    };
    for skipped in ["suricata", "ndpiReader", "tshark"] {
        assert_eq!(status(skipped), "skipped", "{skipped} in {tools:?}");
    }
    assert_eq!(status("cat (floor)"), "ok");
    let timed: Vec<&Value> = tools.iter().filter(|t| t["status"] == "ok").collect();
    assert!(
        timed.iter().any(|t| t["tool"].as_str().is_some_and(|n| n.starts_with("exwatch 1 worker"))),
        "exwatch not timed: {tools:?}"
    );
    let records = doc["records"].as_array().expect("records");
    for t in tools {
        assert_fields(
            t,
            &[
                "tool",
                "version",
                "command",
                "status",
                "median_wall_seconds",
                "min_wall_seconds",
                "max_wall_seconds",
                "median_cpu_seconds",
                "min_cpu_seconds",
                "max_cpu_seconds",
                "max_peak_rss_kib",
                "median_x_cat",
            ],
        );
        let mut rounds: Vec<u64> = records
            .iter()
            .filter(|r| r["tool"] == t["tool"])
            .map(|r| r["round"].as_u64().expect("round"))
            .collect();
        rounds.sort_unstable();
        if t["status"] == "ok" {
            assert_eq!(rounds, [1, 2], "one record per run of {}", t["tool"]);
            assert_numbers(
                t,
                &[
                    "median_wall_seconds",
                    "min_wall_seconds",
                    "max_wall_seconds",
                    "median_cpu_seconds",
                    "min_cpu_seconds",
                    "max_cpu_seconds",
                    "max_peak_rss_kib",
                ],
            );
            assert!(t["max_peak_rss_kib"].as_u64().is_some_and(|k| k > 0), "peak RSS of {t}");
        } else {
            assert!(rounds.is_empty(), "records of {} ({})", t["tool"], t["status"]);
        }
    }
    for r in records {
        assert_fields(
            r,
            &[
                "tool",
                "round",
                "wall_seconds",
                "user_seconds",
                "sys_seconds",
                "cpu_seconds",
                "peak_rss_kib",
                "x_cat",
            ],
        );
        assert_numbers(
            r,
            &["round", "wall_seconds", "user_seconds", "sys_seconds", "cpu_seconds", "peak_rss_kib"],
        );
        assert_eq!(r["x_cat"].is_null(), r["tool"] == "cat (floor)", "{r}");
    }
    // The table beside the JSON: spread and CPU columns.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("spread (s)") && stdout.contains("cpu_s") && stdout.contains("rss_MiB"),
        "{stdout}"
    );
}

#[test]
fn peers_rejects_an_unknown_peer_in_skip() {
    let out = script("peers.sh", &[], &[("SKIP", "suricata snort"), ("EXWATCH_PEERS_INSTALL", "0")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SKIP: unknown peer 'snort'"), "{stderr}");
}

/// Why the live replay cannot run here, if it cannot.
fn live_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: network namespaces need root".into());
    }
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ["ip", "tcpreplay", "curl", "python3"].iter().find(|t| !found(t)).map(|t| format!("{t} not installed"))
}

const LIVE_FIELDS: [&str; 17] = [
    "tool",
    "generator",
    "rate",
    "offered_pps",
    "run",
    "achieved_pps",
    "sent",
    "received",
    "summary_read",
    "kernel_drops",
    "interface_drops",
    "shed",
    "lost",
    "loss_pct",
    "cpu_seconds",
    "cpu_s_per_mpkt",
    "peak_rss_kib",
];

/// `benches/live-replay.sh` on the tiny capture, two runs at 4,000 pps without Suricata,
/// with `env` added: its temp dir (keep it alive), its results dir and what it printed.
/// `None` (said on stderr, with the test's name) where live replays cannot run.
fn live_replay(test: &str, env: &[(&str, &str)]) -> Option<(TempDir, PathBuf, Output)> {
    if let Some(why) = live_unavailable() {
        eprintln!("benches::{test}: skipped: {why}");
        return None;
    }
    let (dir, capture) = tiny_capture();
    let results = dir.path().join("results");
    let mut all = vec![
        ("CAPTURE", capture.to_str().expect("utf-8 path")),
        ("RUNS", "2"),
        ("RATES", "4000"),
        ("SURICATA", "0"),
        ("RESULTS", results.to_str().expect("utf-8 path")),
    ];
    all.extend_from_slice(env);
    let out = script("live-replay.sh", &[], &all);
    assert_ok("live-replay.sh", &out);
    Some((dir, results, out))
}

#[test]
fn live_replay_writes_json_csv_and_an_svg_of_every_run() {
    let Some((_dir, results, out)) = live_replay("live_replay_writes_json_csv_and_an_svg_of_every_run", &[])
    else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    for run in 1..=2 {
        assert!(stderr.contains(&format!("run {run}/2, exwatch, 4000 pps: reached ")), "progress: {stderr}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("highest rate with zero loss in every run"), "headline: {stdout}");

    let doc = read_json(&results.join("runs.json"));
    assert_eq!(doc["script"], "live-replay");
    assert_eq!(doc["runs"], 2);
    assert_eq!(doc["generator"], "tcpreplay");
    let frames = doc["packets"].as_u64().expect("packets");
    assert!(frames >= 2000, "frames in the capture: {frames}");
    let records = doc["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "one record per run: {records:?}");
    for (i, r) in records.iter().enumerate() {
        assert_fields(r, &LIVE_FIELDS);
        assert_eq!(r["tool"], "exwatch");
        assert_eq!(r["rate"], "4000");
        assert_eq!(r["offered_pps"], 4000);
        assert_eq!(r["run"], i + 1);
        assert_numbers(
            r,
            &[
                "achieved_pps",
                "sent",
                "received",
                "summary_read",
                "kernel_drops",
                "interface_drops",
                "shed",
                "lost",
                "loss_pct",
                "cpu_seconds",
                "cpu_s_per_mpkt",
                "peak_rss_kib",
            ],
        );
        // Every frame of the capture went out once, and exwatch's own counts agree.
        assert_eq!(r["sent"], frames, "{r}");
        assert_eq!(r["received"], r["summary_read"], "{r}");
        let dir = results.join(format!("exwatch-4000-run{}", i + 1));
        for kept in ["exwatch.txt", "generator.txt", "summary.json", "metrics.txt"] {
            assert!(dir.join(kept).is_file(), "{kept} not kept in {}", dir.display());
        }
        assert_eq!(read_json(&dir.join("summary.json"))["packets"]["read"], r["summary_read"]);
    }
    let summary = doc["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["runs"], 2);
    // The same capture analysed offline in every run, and the live path's cost over it.
    let offline = &doc["offline"];
    assert_eq!(offline["runs"].as_array().map(Vec::len), Some(2), "{offline}");
    assert_numbers(offline, &["median_cpu_s_per_mpkt", "min_cpu_s_per_mpkt", "max_cpu_s_per_mpkt"]);
    let ratio = summary[0]["live_to_offline"].as_f64().expect("live over offline");
    let (live, off) =
        (summary[0]["median_cpu_s_per_mpkt"].as_f64(), offline["median_cpu_s_per_mpkt"].as_f64());
    assert!((ratio - live.unwrap_or(0.0) / off.unwrap_or(1.0)).abs() < 1e-9, "{doc}");
    assert!(stdout.contains("live over offline: 4000 "), "{stdout}");
    assert!(doc["zero_loss"].as_object().is_some_and(|z| z.contains_key("exwatch")), "{doc}");

    // The CSV: a header of the same fields, the same records.
    let csv = std::fs::read_to_string(results.join("runs.csv")).expect("runs.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(LIVE_FIELDS.join(",").as_str()));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), records.len());
    for (row, r) in rows.iter().zip(records) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), LIVE_FIELDS.len(), "{row}");
        for (cell, field) in cells.iter().zip(LIVE_FIELDS) {
            let want = match &r[field] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            };
            assert_eq!(*cell, want, "{field} in {row}");
        }
    }

    // The SVG parses as XML (Python's parser, as the plot is written by Python), and its
    // dots are the records': one per run and measure, at the measured values.
    let svg = results.join("loss-cpu.svg");
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import json, sys, xml.etree.ElementTree as ET\n\
             root = ET.parse(sys.argv[1]).getroot()\n\
             assert root.tag == '{http://www.w3.org/2000/svg}svg', root.tag\n\
             print(json.dumps([{k[5:]: v for k, v in e.attrib.items() if k.startswith('data-')}\n\
                               for e in root.iter() if e.get('class') == 'point']))",
        ])
        .arg(&svg)
        .output()
        .expect("run python3");
    assert!(
        parsed.status.success(),
        "{} is not SVG: {}",
        svg.display(),
        String::from_utf8_lossy(&parsed.stderr)
    );
    let points: Vec<Value> = serde_json::from_slice(&parsed.stdout).expect("points as JSON");
    assert_eq!(points.len(), 2 * records.len(), "{points:?}");
    for r in records {
        for metric in ["loss_pct", "cpu_s_per_mpkt"] {
            let point = points
                .iter()
                .find(|p| {
                    p["tool"] == r["tool"]
                        && p["run"].as_str().and_then(|n| n.parse::<u64>().ok()) == r["run"].as_u64()
                        && p["metric"] == metric
                })
                .unwrap_or_else(|| panic!("no {metric} point for {r}"));
            assert_eq!(point["rate"], r["rate"]);
            let number = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).expect("a number");
            assert_eq!(number(&point["x"]), r["achieved_pps"].as_f64().expect("achieved"), "{point}");
            assert_eq!(number(&point["y"]), r[metric].as_f64().expect("measure"), "{point}");
        }
    }
}

/// A baseline build runs live at every rate of every run, in turns with the build under
/// test (the one run first in odd runs, the other in even ones), and is recorded and
/// summed up as a tool of its own.
#[test]
fn live_replay_runs_a_baseline_in_turns() {
    let env = [("OFFLINE", "0"), ("EXWATCH_BASELINE", env!("CARGO_BIN_EXE_exwatch"))];
    let Some((_dir, results, out)) = live_replay("live_replay_runs_a_baseline_in_turns", &env) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = |tool: &str, run: u32| {
        stderr
            .find(&format!("run {run}/2, {tool}, 4000 pps: reached "))
            .unwrap_or_else(|| panic!("no {tool} line for run {run}: {stderr}"))
    };
    assert!(at("exwatch", 1) < at("baseline", 1), "run 1 runs exwatch first: {stderr}");
    assert!(at("baseline", 2) < at("exwatch", 2), "run 2 runs the baseline first: {stderr}");

    let doc = read_json(&results.join("runs.json"));
    let records = doc["records"].as_array().expect("records");
    for tool in ["exwatch", "baseline"] {
        let runs: Vec<u64> =
            records.iter().filter(|r| r["tool"] == tool).filter_map(|r| r["run"].as_u64()).collect();
        assert_eq!(runs, [1, 2], "{tool}'s records: {records:?}");
        for run in 1..=2 {
            let summary = results.join(format!("{tool}-4000-run{run}")).join("summary.json");
            assert!(summary.is_file(), "{} not kept", summary.display());
        }
    }
    let summary = doc["summary"].as_array().expect("summary");
    let tools: Vec<&str> = summary.iter().filter_map(|s| s["tool"].as_str()).collect();
    assert_eq!(tools, ["exwatch", "baseline"], "{summary:?}");
    assert!(summary.iter().all(|s| s["runs"] == 2), "{summary:?}");
}
