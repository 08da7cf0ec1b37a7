//! `exwatch report`: the compliance report built from EVE logs, checked against what the
//! generator says the sample holds, across sensors and baselines, against hostile
//! strings, and in a real headless browser. The JSON report is a contract
//! (docs/report.md): a golden file pins it; after a deliberate change, rewrite it with
//! EXWATCH_BLESS=1 and review the diff.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use exwatch::testkit::synth::{self, wire::PcapWriter, OrgOptions};
use serde_json::Value;
use sha2::Digest;

use crate::util::{self, capture};

/// The options `captures/sample-contoso.pcap` was generated with (see README).
fn sample_options() -> OrgOptions {
    OrgOptions { packets: 4000, seed: 1, ..OrgOptions::default() }
}

/// Analyses `pcap` with flow events into `dir/name`, one worker so the log is the same
/// on every run.
pub(crate) fn eve_log(pcap: &Path, dir: &Path, name: &str) -> PathBuf {
    let eve = dir.join(name);
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .arg("analyze")
        .arg(pcap)
        .args([
            "--flows",
            "--workers",
            "1",
            "--no-progress",
            "--fail-on",
            "never",
            "--sensor-name",
            "sensor-1",
        ])
        .arg("--eve-log")
        .arg(&eve)
        .output()
        .expect("run exwatch analyze");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    eve
}

/// What `exwatch report` wrote.
pub(crate) struct Made {
    pub status: i32,
    pub stderr: String,
    pub json: Value,
    pub html: String,
    pub csv: String,
    pub html_path: PathBuf,
}

/// Runs `exwatch report` in `dir` (so inputs named relative to it stay so in the report).
pub(crate) fn report(dir: &Path, logs: &[&str], extra: &[&str]) -> Made {
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .current_dir(dir)
        .arg("report")
        .args(logs)
        .args(["--html", "report.html", "--json", "report.json", "--csv", "report.csv"])
        .args(extra)
        .output()
        .expect("run exwatch report");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json =
        serde_json::from_str(&read("report.json")).unwrap_or_else(|e| panic!("JSON report: {e}; {stderr}"));
    Made {
        status: output.status.code().unwrap_or(-1),
        stderr,
        json,
        html: read("report.html"),
        csv: read("report.csv"),
        html_path: dir.join("report.html"),
    }
}

pub(crate) fn rows(json: &Value) -> BTreeMap<String, Value> {
    json["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .flat_map(|s| s["rows"].as_array().expect("rows").iter())
        .map(|r| (util::str_of(&r["rule"]), r.clone()))
        .collect()
}

pub(crate) fn policy() -> exwatch::policy::Policy {
    exwatch::policy::Policy::load(&util::repo().join("rules/exchange.toml")).expect("policy")
}

/// The sample's EVE log in a temp dir, as `sample.eve`.
fn sample() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = eve_log(&capture("sample-contoso.pcap"), dir.path(), "sample.eve");
    (dir, eve)
}

#[test]
fn report_of_the_sample_names_every_rule_with_the_status_its_findings_imply() {
    let expected = synth::organization(&sample_options(), |_, _| Ok(())).expect("generate");
    let policy = policy();
    let protecting: Vec<&str> =
        policy.rules.iter().filter(|r| r.never_restrict).map(|r| r.id.as_str()).collect();
    assert_eq!(protecting.len(), 1, "restrictions are reported on the one never-restrict rule");
    // The gravest verdict the generator expects of each rule.
    let mut want: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &expected {
        let (rule, status) = match e.verdict.name() {
            "restriction" => (protecting[0], "restriction"),
            "violation" => (e.rule, "violation"),
            _ => (e.rule, "advisory"),
        };
        let grave = |s: &str| ["advisory", "violation", "restriction"].iter().position(|x| *x == s);
        let slot = want.entry(rule).or_insert(status);
        if grave(status) > grave(slot) {
            *slot = status;
        }
    }
    let (dir, _) = sample();
    let made = report(dir.path(), &["sample.eve"], &[]);
    assert_eq!(made.status, 1, "the sample has violations: {}", made.stderr);
    let rows = rows(&made.json);
    for rule in &policy.rules {
        let row = rows.get(&rule.id).unwrap_or_else(|| panic!("no row for rule {}", rule.id));
        let status = util::str_of(&row["status"]);
        let flows = row["flows"].as_u64().expect("flows");
        assert_eq!(row["kind"], "rule");
        match want.get(rule.id.as_str()) {
            Some(&w) => assert_eq!(status, w, "rule {}", rule.id),
            None if !row["why"].is_null() && flows == 0 => {
                assert_eq!(status, "not_applicable", "rule {}", rule.id)
            }
            None if rule.verdict.name() == "out_of_scope" => {
                assert_eq!(
                    status,
                    if flows > 0 { "out_of_scope" } else { "not_observed" },
                    "rule {}",
                    rule.id
                )
            }
            None => {
                assert_eq!(status, if flows > 0 { "compliant" } else { "not_observed" }, "rule {}", rule.id)
            }
        }
        assert!(made.html.contains(&format!("id=\"rule-{}\"", rule.id)), "HTML row of {}", rule.id);
    }
    // Every evidence kind is a row too, restriction evidence on its own row.
    for evidence in &policy.evidence {
        let row = rows.get(&evidence.id).unwrap_or_else(|| panic!("no row for evidence {}", evidence.id));
        assert_eq!(row["kind"], "evidence");
        assert!(made.html.contains(&format!("id=\"rule-{}\"", evidence.id)), "HTML row of {}", evidence.id);
        let found = expected.iter().filter(|e| e.rule == evidence.id).count() as u64;
        assert_eq!(row["alerts"]["restriction"].as_u64(), Some(found), "evidence {}", evidence.id);
    }
    assert_eq!(rows.len(), policy.rules.len() + policy.evidence.len());
    // Traffic that was all compliant, and a rule that cannot match this topology (it has an Edge).
    assert_eq!(rows["client-https"]["status"], "compliant");
    assert!(rows["client-https"]["flows"].as_u64() > Some(10));
    assert_eq!(rows["client-https"]["ports"], serde_json::json!(["443/TCP"]));
    let top = rows["client-https"]["top_pairs"].as_array().expect("top pairs");
    assert!(!top.is_empty() && top.len() <= 5, "{top:?}");
    assert!(top.windows(2).all(|w| w[0]["flows"].as_u64() >= w[1]["flows"].as_u64()), "{top:?}");
    assert_eq!(rows["inbound-smtp"]["status"], "not_applicable");
    assert_eq!(rows["inbound-smtp"]["flows"], 0);
    assert_eq!(rows["inbound-smtp"]["why"], "not applicable: the topology has Edge Transport servers");
    assert_eq!(rows["client-https"]["why"], Value::Null);
    // Rows keep the policy file's order.
    let order: Vec<String> = made.json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["rows"].as_array().unwrap())
        .map(|r| util::str_of(&r["rule"]))
        .collect();
    let mut by_section: Vec<&str> = Vec::new();
    for r in &policy.rules {
        if !by_section.contains(&r.section.as_str()) {
            by_section.push(&r.section);
        }
    }
    for e in &policy.evidence {
        if !by_section.contains(&e.section.as_str()) {
            by_section.push(&e.section);
        }
    }
    let want_order: Vec<String> = by_section
        .iter()
        .flat_map(|s| {
            let rules = policy.rules.iter().filter(move |r| r.section == *s).map(|r| r.id.clone());
            rules.chain(policy.evidence.iter().filter(move |e| e.section == *s).map(|e| e.id.clone()))
        })
        .collect();
    assert_eq!(order, want_order);
    // Every expected finding is in the CSV, once per aggregated finding.
    let findings = made.json["totals"]["findings"].clone();
    let count = |v: &str| expected.iter().filter(|e| e.verdict.name() == v).count() as u64;
    assert_eq!(findings["violation"].as_u64(), Some(count("violation")));
    assert_eq!(findings["restriction"].as_u64(), Some(count("restriction")));
    assert_eq!(findings["advisory"].as_u64(), Some(count("advisory")));
    assert!(made.csv.starts_with("section,rule,evidence,verdict,src_ip,dest_ip,dest_port,proto,count,"));
    for e in &expected {
        let needle = format!(",{},{},{},", e.src.ip(), e.dst.ip(), e.dst.port());
        assert!(made.csv.contains(&needle), "CSV lacks {needle}");
    }
    assert!(util::str_of(&made.json["conclusion"]["text"]).starts_with("not compliant: "));
}

#[test]
fn a_clean_capture_concludes_no_violation_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = exwatch::testkit::synth::Scenario::new();
    s.tcp_session(util::sa("10.20.0.9:50000"), util::sa("10.10.1.11:443"), 3);
    s.tcp_session(util::sa("10.10.1.11:50001"), util::sa("10.10.1.12:135"), 1);
    let pcap = dir.path().join("clean.pcap");
    s.write_pcap(&pcap).expect("write");
    eve_log(&pcap, dir.path(), "clean.eve");
    let made = report(dir.path(), &["clean.eve"], &[]);
    assert_eq!(made.status, 0, "{}", made.stderr);
    let text = util::str_of(&made.json["conclusion"]["text"]);
    assert!(
        text.starts_with("no violation or restriction found in 2 flows the article covers, of 2 read, over "),
        "{text}"
    );
    let rows = rows(&made.json);
    assert_eq!(rows["client-https"]["status"], "compliant");
    assert_eq!(rows["exchange-internal"]["status"], "compliant");
    assert_eq!(rows["edge-perimeter"]["status"], "not_observed");
    let pairs = made.json["never_restrict"]["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0]["status"], "traffic");
    assert_eq!(pairs[0]["ports"][0], "135/TCP");
    assert!(made.html.contains("not evidence of compliance"), "the report says what not observed means");
    assert!(made.stderr.contains("built-in example \"contoso\""), "{}", made.stderr);
    let topology = util::repo().join("rules/topology.toml");
    let site = report(dir.path(), &["clean.eve"], &["--topology", topology.to_str().unwrap()]);
    assert!(!site.stderr.contains("built-in example"), "{}", site.stderr);
    assert_eq!(site.json["topology"]["file"], topology.to_str().unwrap());
    assert_eq!(
        site.json["topology"]["sha256"], made.json["topology"]["sha256"],
        "the same bytes as the built-in one"
    );
}

/// Rewrites every event of an EVE log as if sensor `host` had written it.
fn as_sensor(eve: &Path, host: &str, out: &Path) {
    let text = std::fs::read_to_string(eve).expect("EVE log");
    let lines: String = text
        .lines()
        .map(|l| {
            let mut event: serde_json::Map<String, Value> = serde_json::from_str(l).expect("EVE line");
            event.insert("host".into(), Value::String(host.into()));
            // A capture file named by the log is named the same on every machine.
            if let Some(name) = event.get_mut("pcap_filename") {
                *name = Value::String("sample-contoso.pcap".into());
            }
            serde_json::to_string(&event).expect("line") + "\n"
        })
        .collect();
    std::fs::write(out, lines).expect("write EVE log");
}

/// The flow and alert events of an EVE log: what dedup can find copies of (each sensor's
/// `stats` events are its own).
fn flow_and_alert_events(eve: &Path) -> u64 {
    let text = std::fs::read_to_string(eve).expect("EVE log");
    text.lines().filter(|l| !l.contains("\"event_type\":\"stats\"")).count() as u64
}

#[test]
fn two_sensors_seeing_the_same_capture_count_each_flow_once() {
    let (dir, eve) = sample();
    let one = report(dir.path(), &["sample.eve"], &[]);
    as_sensor(&eve, "sensor-a", &dir.path().join("a.eve"));
    as_sensor(&eve, "sensor-b", &dir.path().join("b.eve"));
    let two = report(dir.path(), &["a.eve", "b.eve"], &[]);
    let events = flow_and_alert_events(&eve);
    assert_eq!(two.json["totals"]["flows"], one.json["totals"]["flows"]);
    assert_eq!(two.json["totals"]["findings"], one.json["totals"]["findings"]);
    assert_eq!(
        two.json["totals"]["duplicates"].as_u64(),
        Some(events),
        "every event of the second sensor is a copy"
    );
    assert_eq!(one.json["totals"]["duplicates"], 0);
    assert_eq!(rows(&two.json)["client-https"]["flows"], rows(&one.json)["client-https"]["flows"]);
    let sensors: Vec<String> =
        two.json["sensors"].as_array().unwrap().iter().map(|s| util::str_of(&s["name"])).collect();
    assert_eq!(sensors, ["sensor-a", "sensor-b"]);
    assert_eq!(two.json["inputs"][0]["sensors"][0], "sensor-a");
    assert_eq!(two.json["inputs"].as_array().map(Vec::len), Some(2));
    // The same flows a minute apart are other flows.
    let text = std::fs::read_to_string(dir.path().join("b.eve")).unwrap();
    let shifted = text.replace("T04:55:", "T04:57:");
    std::fs::write(dir.path().join("later.eve"), shifted).unwrap();
    let both = report(dir.path(), &["a.eve", "later.eve"], &[]);
    assert_eq!(both.json["totals"]["flows"].as_u64(), one.json["totals"]["flows"].as_u64().map(|n| 2 * n));
}

#[test]
fn more_logs_than_reader_threads_and_standard_input_give_the_same_counts() {
    let (dir, eve) = sample();
    let one = report(dir.path(), &["sample.eve"], &[]);
    let names: Vec<String> =
        (0..=exwatch::report::logs::MAX_READER_THREADS).map(|i| format!("s{i}.eve")).collect();
    for (i, name) in names.iter().enumerate() {
        as_sensor(&eve, &format!("sensor-{i}"), &dir.path().join(name));
    }
    let logs: Vec<&str> = names.iter().map(String::as_str).collect();
    let many = report(dir.path(), &logs, &[]);
    let events = flow_and_alert_events(&eve);
    assert_eq!(many.json["totals"]["flows"], one.json["totals"]["flows"]);
    assert_eq!(many.json["totals"]["findings"], one.json["totals"]["findings"]);
    assert_eq!(many.json["totals"]["duplicates"].as_u64(), Some(events * (names.len() as u64 - 1)));
    assert_eq!(many.json["inputs"].as_array().map(Vec::len), Some(names.len()));
    for (i, input) in many.json["inputs"].as_array().unwrap().iter().enumerate() {
        assert_eq!(input["file"], names[i].as_str(), "inputs in argument order");
        assert_eq!(input["events"].as_u64(), Some(events + 1), "and the run's final stats event");
    }
    // Capture files named by the events are listed per input.
    let text = std::fs::read_to_string(&eve).unwrap();
    let named: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut event: Value = serde_json::from_str(l).expect("EVE line");
            event["pcap_filename"] = format!("cap-{}.pcap", i % 3).into();
            event.to_string() + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("named.eve"), named).unwrap();
    let named = report(dir.path(), &["named.eve"], &[]);
    assert_eq!(
        named.json["inputs"][0]["captures"],
        serde_json::json!(["cap-0.pcap", "cap-1.pcap", "cap-2.pcap"])
    );
    assert!(named.html.contains("captures: cap-0.pcap, cap-1.pcap, cap-2.pcap"));
    // Standard input, named `-`.
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .current_dir(dir.path())
        .args(["report", "-", "--json", "stdin.json"])
        .stdin(std::fs::File::open(&eve).expect("EVE log"))
        .output()
        .expect("run exwatch report");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&std::fs::read(dir.path().join("stdin.json")).unwrap()).unwrap();
    assert_eq!(json["totals"], one.json["totals"]);
    assert_eq!(json["inputs"][0]["file"], "-");
    assert_eq!(json["inputs"][0]["sha256"], one.json["inputs"][0]["sha256"]);
}

/// The sample without the frames to or from `host`.
fn sample_without(host: IpAddr, out: &Path) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).expect("create"));
    let mut writer = PcapWriter::new(&mut file, 1).expect("header");
    synth::organization(&sample_options(), |ts, frame| {
        let touches = match etherparse::SlicedPacket::from_ethernet(frame).ok().and_then(|p| p.net) {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                [h.source_addr(), h.destination_addr()].iter().any(|a| IpAddr::V4(*a) == host)
            }
            _ => false,
        };
        if touches {
            Ok(())
        } else {
            writer.write(ts, frame, frame.len() as u32)
        }
    })
    .expect("generate");
}

fn finding_keys(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!("{} {} {} {} {}", f["rule"], f["evidence"], f["src_ip"], f["dest_ip"], f["dest_port"])
        })
        .collect()
}

#[test]
fn a_baseline_without_some_flows_lists_exactly_their_findings_as_new() {
    let (dir, _) = sample();
    let full = report(dir.path(), &["sample.eve"], &[]);
    // An external host whose traffic was all violations: the one to leave out.
    let all: Vec<Value> = rows(&full.json)
        .values()
        .flat_map(|r| r["findings"].as_array().cloned().unwrap_or_default())
        .collect();
    let host = all
        .iter()
        .find(|f| f["rule"] == "external-to-mailbox")
        .map(|f| util::str_of(&f["src_ip"]))
        .expect("an external-to-mailbox finding");
    let removed: Vec<&Value> =
        all.iter().filter(|f| f["src_ip"] == host.as_str() || f["dest_ip"] == host.as_str()).collect();
    assert!(!removed.is_empty());
    let filtered = dir.path().join("filtered.pcap");
    sample_without(host.parse().expect("address"), &filtered);
    let sub = tempfile::tempdir().expect("temp dir");
    eve_log(&filtered, sub.path(), "filtered.eve");
    let before = report(sub.path(), &["filtered.eve"], &[]);
    std::fs::copy(sub.path().join("report.json"), dir.path().join("baseline.json")).expect("copy");
    let made = report(dir.path(), &["sample.eve"], &["--baseline", "baseline.json"]);
    let changes = &made.json["changes"];
    let new = finding_keys(&changes["new_findings"]);
    let want: BTreeSet<String> = removed
        .iter()
        .map(|f| {
            format!("{} {} {} {} {}", f["rule"], f["evidence"], f["src_ip"], f["dest_ip"], f["dest_port"])
        })
        .collect();
    assert_eq!(new, want);
    assert_eq!(changes["gone_findings"].as_array().map(Vec::len), Some(0));
    assert_eq!(changes["baseline"]["file"], "baseline.json");
    assert!(before.json["totals"]["flows"].as_u64() < full.json["totals"]["flows"].as_u64());
    assert!(made.html.contains("New findings ("), "the HTML shows the changes");
    // Against itself, nothing changed.
    std::fs::copy(dir.path().join("report.json"), dir.path().join("same.json")).expect("copy");
    let same = report(dir.path(), &["sample.eve"], &["--baseline", "same.json"]);
    let c = &same.json["changes"];
    for list in ["status_changed", "new_findings", "gone_findings", "pairs_lost_traffic"] {
        assert_eq!(c[list].as_array().map(Vec::len), Some(0), "{list}");
    }
    // Reversed, the findings are gone and the statuses of their rows may change.
    std::fs::copy(dir.path().join("same.json"), sub.path().join("full.json")).expect("copy");
    let reversed = report(sub.path(), &["filtered.eve"], &["--baseline", "full.json"]);
    assert_eq!(finding_keys(&reversed.json["changes"]["gone_findings"]), want);
}

#[test]
fn a_never_restrict_pair_that_lost_its_traffic_is_listed() {
    let (dir, _) = sample();
    let full = report(dir.path(), &["sample.eve"], &[]);
    std::fs::copy(dir.path().join("report.json"), dir.path().join("baseline.json")).expect("copy");
    let dc = "10.10.0.6";
    let lost: BTreeSet<String> = full.json["never_restrict"]["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .filter(|p| p["a"] == dc || p["b"] == dc)
        .map(|p| format!("{} {}", p["a"], p["b"]))
        .collect();
    assert!(!lost.is_empty(), "the sample has traffic with {dc}");
    let filtered = dir.path().join("no-dc.pcap");
    sample_without(dc.parse().expect("address"), &filtered);
    eve_log(&filtered, dir.path(), "no-dc.eve");
    let made = report(dir.path(), &["no-dc.eve"], &["--baseline", "baseline.json"]);
    let changes = &made.json["changes"];
    let got: BTreeSet<String> = changes["pairs_lost_traffic"]
        .as_array()
        .expect("pairs lost")
        .iter()
        .map(|p| format!("{} {}", p["a"], p["b"]))
        .collect();
    assert_eq!(got, lost);
    // Every row whose status differs between the two reports is listed, and no other.
    let (before, after) = (rows(&full.json), rows(&made.json));
    let want: BTreeSet<String> = after
        .iter()
        .filter(|(rule, row)| before[*rule]["status"] != row["status"])
        .map(|(rule, row)| format!("{rule} {} {}", before[rule]["status"], row["status"]))
        .collect();
    let listed: BTreeSet<String> = changes["status_changed"]
        .as_array()
        .expect("status changes")
        .iter()
        .map(|c| format!("{} {} {}", util::str_of(&c["rule"]), c["before"], c["after"]))
        .collect();
    assert_eq!(listed, want);
    assert!(
        made.html.contains("lost their traffic (1)")
            || made.html.contains(&format!("lost their traffic ({})", lost.len()))
    );
}

#[test]
fn stats_events_feed_capture_health() {
    let (dir, eve) = sample();
    // The log's own final stats event (the analyze run's) left out: this is a live sensor's.
    let mut text: String = std::fs::read_to_string(&eve)
        .expect("EVE log")
        .lines()
        .filter(|l| !l.contains("\"event_type\":\"stats\""))
        .map(|l| format!("{l}\n"))
        .collect();
    // What a live sensor writes with --stats-interval: cumulative counters, the last counts.
    // The first as earlier exwatch wrote `skipped_by_reason` (pairs), the last as a map.
    let first = "[[\"truncated\",1]]";
    let last = "{\"truncated\":3}";
    for (ts, pkts, drops, by_reason) in
        [("04:55:14.010000", 100, 1, first), ("04:55:14.020000", 5044, 7, last)]
    {
        text.push_str(&format!(
            "{{\"timestamp\":\"2026-11-27T{ts}+0000\",\"event_type\":\"stats\",\"stats\":{{\"uptime\":1,\"capture\":{{\"kernel_packets\":{pkts},\"kernel_drops\":{drops},\"kernel_ifdrops\":0}},\"decoder\":{{\"pkts\":{pkts},\"bytes\":1}},\"flow\":{{\"total\":1,\"active\":0}}}},\"policy\":{{\"capture\":{{\"shed\":0}},\"packets\":{{\"decoded\":{pkts},\"skipped\":3,\"skipped_by_reason\":{by_reason}}},\"flows\":{{\"evicted\":2,\"timed_out\":0}},\"findings\":{{}},\"alerts\":{{}}}}}}\n"
        ));
    }
    // A line that is no EVE event, and events of a rule this policy lacks.
    text.push_str("garbage\n");
    let foreign = std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .find(|l| l.contains("\"rule\":\"client-https\""))
        .unwrap()
        .replace("client-https", "rule-of-another-policy")
        .replace("\"community_id\":\"1:", "\"community_id\":\"1:another-flow");
    text.push_str(&(foreign + "\n"));
    std::fs::write(dir.path().join("stats.eve"), text).expect("write");
    let made = report(dir.path(), &["stats.eve"], &[]);
    assert_eq!(made.json["inputs"][0]["unreadable_lines"], 1);
    assert_eq!(made.json["totals"]["unknown_rule_events"], 1);
    let stats = &made.json["health"]["stats"];
    assert_eq!(stats["packets"], 5044);
    assert_eq!(stats["drops"], 7);
    assert_eq!(stats["skipped"], 3);
    assert_eq!(stats["flows_evicted"], 2);
    assert_eq!(stats["skipped_by_reason"], serde_json::json!([["truncated", 3]]));
    let notes = made.json["health"]["notes"].to_string();
    assert!(notes.contains("dropped 7 packets"), "{notes}");
    assert!(notes.contains("1 lines of the input were not EVE events"), "{notes}");
    assert!(notes.contains("1 events name rules this policy does not have"), "{notes}");
    let health = &made.json["health"];
    assert_eq!(health["midstream"], 2, "the sample's two mid-stream pickups");
    assert_eq!(health["one_sided"], 2);
    let states: u64 = health["flow_states"].as_array().unwrap().iter().map(|s| s[1].as_u64().unwrap()).sum();
    assert_eq!(Some(states), made.json["totals"]["flows"].as_u64(), "every flow has a state");
    assert!(health["flow_states"].to_string().contains("\"closed\""));
}

#[test]
fn hostile_strings_in_a_policy_reason_and_a_sensor_name_come_out_escaped() {
    let (dir, eve) = sample();
    let policy = std::fs::read_to_string(util::repo().join("rules/exchange.toml")).expect("policy");
    let reason = "Autodiscover, ActiveSync, EWS, OAB, Outlook Anywhere, MAPI over HTTP and Outlook on the web use 443/TCP";
    assert!(policy.contains(reason));
    let hostile = policy.replace(reason, "<script>alert('reason')</script> & <img src=x onerror=alert(1)>");
    std::fs::write(dir.path().join("hostile.toml"), hostile).expect("write policy");
    as_sensor(&eve, "<script>alert(\"sensor\")</script>", &dir.path().join("hostile.eve"));
    // The log was judged under the shipped policy, the report uses another on purpose.
    let made = report(dir.path(), &["hostile.eve"], &["--policy", "hostile.toml", "--allow-mixed"]);
    assert!(!made.html.to_lowercase().contains("<script"), "a script element got through");
    assert!(!made.html.contains("<img"), "an img element got through");
    assert!(made.html.contains("&lt;script&gt;alert('reason')&lt;/script&gt; &amp; &lt;img"));
    assert!(made.html.contains("&lt;script&gt;alert(&quot;sensor&quot;)&lt;/script&gt;"));
    assert_eq!(made.json["sensors"][0]["name"], "<script>alert(\"sensor\")</script>");
}

#[test]
fn the_json_report_of_the_sample_matches_the_golden_file() {
    let (dir, eve) = sample();
    // A fixed sensor name, so the report does not depend on the machine's hostname.
    let log = dir.path().join("sensor-1.eve");
    as_sensor(&eve, "sensor-1", &log);
    let made = report(dir.path(), &["sensor-1.eve"], &[]);
    assert_eq!(made.json["schema"], 2);
    // The EVE log's own bytes are pinned by the EVE golden file, not here: check its
    // size and digest, then leave them out of the comparison.
    let bytes = std::fs::read(&log).expect("EVE log");
    let digest: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(made.json["inputs"][0]["sha256"], digest.as_str());
    assert_eq!(made.json["inputs"][0]["bytes"].as_u64(), Some(bytes.len() as u64));
    let got = std::fs::read_to_string(dir.path().join("report.json"))
        .expect("report")
        .replace(&format!("\"sha256\": \"{digest}\""), "\"sha256\": \"(the EVE log's)\"")
        .replace(&format!("\"bytes\": {},", bytes.len()), "\"bytes\": \"(the EVE log's)\",");
    let golden = util::repo().join("tests/golden/report-sample.json");
    if std::env::var_os("EXWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless golden file");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(got, want, "JSON report changed; if on purpose, rerun with EXWATCH_BLESS=1 and review");
}

#[test]
fn report_needs_an_output_and_readable_inputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (status, _, stderr) = util::exwatch(&["report", "missing.eve"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("--html"), "{stderr}");
    let missing = dir.path().join("missing.eve");
    let html = dir.path().join("r.html");
    let (status, _, stderr) =
        util::exwatch(&["report", missing.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(stderr.contains("missing.eve"), "{stderr}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": 7}").unwrap();
    let (dir2, _) = sample();
    let eve = dir2.path().join("sample.eve");
    let (status, _, stderr) = util::exwatch(&[
        "report",
        eve.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--baseline",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(status, 2);
    assert!(stderr.contains("schema 7"), "{stderr}");
}

/// Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) with a
/// profile of its own and nothing that reaches the network, for two minutes at most.
pub(crate) fn chromium(dir: &Path, args: &[&str], page: &Path) -> std::process::Output {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: scripts/setup.sh installs it"
    );
    let profile = tempfile::tempdir_in(dir).expect("profile dir");
    // A browser that hangs fails the test rather than the whole run.
    Command::new("timeout")
        .args(["120", "/usr/bin/chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(page)
        .output()
        .expect("run timeout and /usr/bin/chromium")
}

#[test]
fn a_real_browser_renders_every_rule_and_the_conclusion() {
    let (dir, _) = sample();
    let made = report(dir.path(), &["sample.eve"], &[]);
    let dom = chromium(dir.path(), &["--dump-dom"], &made.html_path);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let conclusion = util::str_of(&made.json["conclusion"]["text"]);
    assert!(dom.contains(&conclusion), "the rendered page lacks the conclusion {conclusion:?}");
    for rule in &policy().rules {
        assert!(
            dom.contains(&format!("id=\"rule-{}\"", rule.id)),
            "the rendered page lacks rule {}",
            rule.id
        );
    }
    assert!(dom.contains("<svg"), "the pictures are inline SVG");
    // No external asset: the only URL is the SVG namespace, and nothing is loaded.
    let without_namespace = made.html.replace("http://www.w3.org/2000/svg", "");
    for needle in ["http://", "https://", "src=", "<link", "<script", "@import", "url("] {
        assert!(!without_namespace.contains(needle), "the page holds {needle:?}");
    }

    let shot = dir.path().join("first-page.png");
    let out = chromium(
        dir.path(),
        &[&format!("--screenshot={}", shot.display()), "--window-size=1280,2000"],
        &made.html_path,
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot)
            .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr))),
    ));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("PNG frame");
    assert_eq!((info.width, info.height), (1280, 2000));
    let channels = info.color_type.samples();
    let pixels = &pixels[..info.buffer_size()];
    let (mut colours, mut inked) = (BTreeSet::new(), 0usize);
    for px in pixels.chunks(channels) {
        colours.insert(px[..3].to_vec());
        inked += usize::from(px[..3].iter().any(|&c| c < 200));
    }
    let share = inked as f64 / (pixels.len() / channels) as f64;
    assert!(colours.len() > 50, "a near-blank page: {} colours", colours.len());
    assert!(share > 0.02, "a near-blank page: {:.2}% of pixels inked", share * 100.0);
}

/// `analyze --report` builds, in the same run, the report `exwatch report` builds from
/// that run's EVE log: the same rows, findings, pairs and pictures; only the inputs (the
/// capture rather than the log) and the capture health it can add (packets read) differ.
#[test]
fn analyze_report_equals_the_report_built_from_its_eve_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .current_dir(dir.path())
        .arg("analyze")
        .arg(capture("sample-contoso.pcap"))
        .args(["--flows", "--workers", "2", "--no-progress", "--eve-log", "run.eve"])
        .args(["--report", "run.html", "--report-json", "run.json", "--report-csv", "run.csv"])
        .output()
        .expect("run exwatch analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "the sample's findings: {stderr}");
    assert!(stderr.contains("exwatch report: not compliant"), "{stderr}");
    let made = report(dir.path(), &["run.eve"], &[]);
    let in_run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).expect("run.json"))
            .expect("JSON");
    let map = in_run.as_object().expect("object");
    assert!(map.len() > 5, "{in_run}");
    for (key, value) in map {
        match key.as_str() {
            "inputs" => assert_eq!(
                value[0]["bytes"],
                std::fs::metadata(capture("sample-contoso.pcap")).expect("size").len()
            ),
            "health" => assert_eq!(value["stats"]["packets"], 5044),
            "sensors" => {}
            _ => assert_eq!(value, &made.json[key], "{key} differs between analyze --report and report"),
        }
    }
    let csv = std::fs::read_to_string(dir.path().join("run.csv")).expect("run.csv");
    assert_eq!(csv, made.csv, "the CSV of findings is the same");
    let html = std::fs::read_to_string(dir.path().join("run.html")).expect("run.html");
    assert!(html.contains("not compliant") && html.contains("client-https"), "an HTML report");
}
