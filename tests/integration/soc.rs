//! What a SOC's Suricata pipeline keeps of an alert: `alert.metadata` (the facts of
//! `policy` for pipelines that drop it), Suricata's classifications with their
//! priorities, signature ids in the range reserved for local rules, and a page per rule
//! in docs/rules.md.

use std::collections::BTreeMap;

use exwatch::output::bound::LISTED;
use exwatch::output::soc;
use exwatch::testkit::synth::{wire::Segment, Scenario};
use serde_json::Value;

use crate::util::{self, sa};

/// The ids and sids of the policy file and the rule packs, rules and evidence alike.
fn policy_sids() -> BTreeMap<String, u64> {
    let mut files = vec![util::repo().join("rules/exchange.toml")];
    let packs = std::fs::read_dir(util::repo().join("rules/packs")).expect("rules/packs");
    files.extend(packs.filter_map(|e| e.ok().map(|e| e.path())));
    let mut sids = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("policy");
        let policy: toml::Value = toml::from_str(&text).expect("policy TOML");
        for table in ["rule", "evidence"] {
            for entry in policy.get(table).and_then(|t| t.as_array()).into_iter().flatten() {
                let id = entry["id"].as_str().expect("id").to_string();
                sids.insert(id, entry["sid"].as_integer().expect("sid") as u64);
            }
        }
    }
    sids
}

/// The headings of docs/rules.md (`## id`).
fn rule_pages() -> Vec<String> {
    let text = std::fs::read_to_string(util::repo().join("docs/rules.md")).expect("docs/rules.md");
    text.lines().filter_map(|l| l.strip_prefix("## ")).map(str::to_string).collect()
}

/// Alerts of every kind: one of each verdict, an injected reset, and a flood that the
/// bound turns into an aggregate alert.
fn scenario_alerts() -> Vec<Value> {
    let mut s = Scenario::new();
    s.tcp_session(sa("172.16.0.25:51514"), sa("198.51.100.7:3389"), 1);
    s.tcp_session(sa("10.20.0.9:50000"), sa("10.10.1.11:80"), 1);
    s.icmp_prohibited("10.10.0.1".parse().expect("address"), sa("10.10.1.11:50001"), sa("10.10.1.12:135"));
    for i in 0..8 {
        let syn = Segment::Tcp { flags: 0x02, seq: 1, ack: 0, payload: &[] };
        s.send(sa(&format!("198.51.100.{}:4000{i}", 10 + i)), sa("10.10.1.11:3389"), syn);
    }
    let run = util::analyze_scenario(&s, &["--workers", "1", "--alerts-per-key", "3"]);
    run.alerts().into_iter().cloned().collect()
}

/// Checks one alert's `alert.metadata` against its `policy`, its classification against
/// the shipped classification.config, and its signature id against the policy file.
fn check_alert(alert: &Value, sids: &BTreeMap<String, u64>, pages: &[String], what: &str) {
    let meta =
        alert["alert"]["metadata"].as_object().unwrap_or_else(|| panic!("{what}: no metadata: {alert}"));
    for (key, values) in meta {
        let strings = values.as_array().is_some_and(|v| !v.is_empty() && v.iter().all(Value::is_string));
        assert!(strings, "{what}: metadata.{key} is not an array of strings: {alert}");
    }
    let one = |key: &str| meta.get(key).and_then(|v| v[0].as_str()).map(str::to_string);
    let policy = &alert["policy"];
    for (key, field) in [
        ("verdict", "verdict"),
        ("rule", "rule"),
        ("section", "section"),
        ("orig_role", "src_role"),
        ("resp_role", "dest_role"),
        ("direction", "direction"),
        ("confidence", "confidence"),
        ("evidence", "evidence"),
        ("exception", "exception"),
        ("detail", "detail"),
    ] {
        assert_eq!(one(key).as_deref(), policy[field].as_str(), "{what}: metadata.{key}: {alert}");
    }
    // Addresses follow the packet that fired; the flow's ends stay in `policy`.
    let (packet, flow) =
        (["src_ip", "src_port", "dest_ip", "dest_port"], ["src_ip", "src_port", "dest_ip", "dest_port"]);
    let order: Vec<&Value> = match alert["direction"].as_str() {
        Some("to_server") => flow.iter().map(|k| &policy[*k]).collect(),
        Some("to_client") => [2, 3, 0, 1].iter().map(|&i| &policy[flow[i]]).collect(),
        other => panic!("{what}: direction {other:?}: {alert}"),
    };
    let top: Vec<&Value> = packet.iter().map(|k| &alert[*k]).collect();
    assert_eq!(top, order, "{what}: addresses vs direction and policy: {alert}");
    assert!(policy["src_ip"].is_string() && policy["dest_ip"].is_string(), "{what}: {alert}");
    assert_eq!(one("evidence_source").as_deref(), policy["evidence_source"].as_str(), "{what}: {alert}");
    let aggregate = &policy["aggregate"];
    assert_eq!(one("count"), aggregate["flows"].as_u64().map(|n| n.to_string()), "{what}: count: {alert}");
    assert_eq!(one("aggregate_by").as_deref(), aggregate["by"].as_str(), "{what}: {alert}");
    if aggregate.is_object() {
        let window: Vec<&str> =
            meta["window"].as_array().expect("window").iter().filter_map(Value::as_str).collect();
        assert_eq!(window, [&aggregate["first_seen"], &aggregate["last_seen"]], "{what}: window: {alert}");
    }
    // The pages of its evidence and rule exist in docs/rules.md.
    let finding = policy["evidence"].as_str().or(policy["rule"].as_str()).expect("finding id");
    let references: Vec<&str> =
        meta["reference"].as_array().expect("reference").iter().filter_map(Value::as_str).collect();
    assert_eq!(references[0], format!("docs/rules.md#{finding}"), "{what}: {alert}");
    for reference in &references {
        let id = reference.strip_prefix("docs/rules.md#").expect("a page of docs/rules.md");
        assert!(pages.iter().any(|p| p == id), "{what}: docs/rules.md has no page {id}");
    }
    // Category and severity: the shipped file's line for the verdict's classtype.
    let table = soc::parse_classifications(soc::CLASSIFICATION_CONFIG).expect("shipped classifications");
    let verdict = exwatch::policy::Verdict::from_name(policy["verdict"].as_str().expect("verdict"));
    let class =
        table.iter().find(|c| Some(c.name.as_str()) == verdict.map(soc::classtype)).expect("classtype");
    assert_eq!(alert["alert"]["category"], class.description.as_str(), "{what}: {alert}");
    assert_eq!(alert["alert"]["severity"], u64::from(class.priority), "{what}: {alert}");
    // The signature id: the policy file's, in the local range.
    let sid = alert["alert"]["signature_id"].as_u64().expect("signature_id");
    assert_eq!(Some(&sid), sids.get(finding), "{what}: {alert}");
    assert!((1_000_000..=1_999_999).contains(&sid), "{what}: sid {sid} outside the local range");
}

/// Every alert, on every capture in captures/ and on scenarios with one finding of each
/// verdict and an aggregate, carries its facts in `alert.metadata`, Suricata's
/// classification for its verdict, and its local-range id from the policy file.
#[test]
fn every_alert_carries_metadata_classification_and_a_local_id() {
    let (sids, pages) = (policy_sids(), rule_pages());
    let mut seen = BTreeMap::<String, usize>::new();
    let mut check = |alert: &Value, what: &str| {
        check_alert(alert, &sids, &pages, what);
        let kind = if alert["policy"]["aggregate"].is_object() { "aggregate" } else { "single" };
        *seen
            .entry(format!("{}/{kind}", alert["policy"]["verdict"].as_str().unwrap_or_default()))
            .or_default() += 1;
    };
    for file in crate::captures::every_capture() {
        let run = util::analyze(&[&file], &["--flows"]);
        for alert in run.alerts() {
            check(alert, &file.display().to_string());
        }
    }
    for alert in &scenario_alerts() {
        check(alert, "scenario");
    }
    for kind in ["violation/single", "advisory/single", "restriction/single", "violation/aggregate"] {
        assert!(seen.contains_key(kind), "no {kind} alert was checked: {seen:?}");
    }
}

/// Every rule and evidence id of the shipped policy has its page in docs/rules.md,
/// saying what it checks, the article's row, and what to do.
#[test]
fn every_rule_has_a_page() {
    let text = std::fs::read_to_string(util::repo().join("docs/rules.md")).expect("docs/rules.md");
    let pages = rule_pages();
    for (id, sid) in policy_sids() {
        assert!(pages.contains(&id), "docs/rules.md has no `## {id}`");
        let section = text.split(&format!("\n## {id}\n")).nth(1).expect("section");
        let section = section.split("\n## ").next().unwrap_or(section);
        for part in
            [format!("**sid** {sid}"), "**Checks:**".into(), "**Article:**".into(), "**What to do:**".into()]
        {
            assert!(section.contains(&part), "docs/rules.md#{id} lacks {part}");
        }
    }
}

/// `analyze --eve-log FILE` appends, as Suricata appends to eve.json: a second run
/// keeps the first run's lines whole and adds its own after them.
#[test]
fn analyze_appends_to_the_eve_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.json");
    let sample = util::capture("sample-contoso.pcap");
    let run = |file: &std::path::Path| {
        let args = ["analyze", file.to_str().expect("utf-8"), "--eve-log", eve.to_str().expect("utf-8")];
        let (status, _, stderr) =
            util::exwatch(&[&args[..], &["--no-progress", "--flows", "--workers", "1"]].concat());
        assert!(matches!(status, 0 | 1), "{stderr}");
        std::fs::read_to_string(&eve).expect("EVE log")
    };
    let first = run(&sample);
    assert!(first.lines().count() > 100, "{first}");
    let both = run(&sample);
    assert_eq!(both, format!("{first}{first}"), "the second run's lines follow the first's, kept whole");
}

/// Records the JSON type of every value under its path (array elements under `[]`).
fn types_of(
    value: &Value,
    path: String,
    types: &mut BTreeMap<String, std::collections::BTreeSet<&'static str>>,
) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(items) => {
            for item in items {
                types_of(item, format!("{path}[]"), types);
            }
            "array"
        }
        Value::Object(map) => {
            for (key, item) in map {
                types_of(item, format!("{path}.{key}"), types);
            }
            "object"
        }
    };
    types.entry(path).or_default().insert(kind);
}

/// One type per field: across every event of every capture in captures/, the
/// scenarios' alerts, the pinned `stats` event and the summaries, each field (by its
/// path) holds one JSON type, as a SIEM indexes it (`skipped_by_reason` is a map of
/// reason to count, not `[reason, count]` pairs).
#[test]
fn every_field_has_one_json_type() {
    let mut types = BTreeMap::new();
    for file in crate::captures::every_capture() {
        let run = util::analyze(&[&file], &["--flows"]);
        for event in &run.events {
            types_of(event, event["event_type"].as_str().unwrap_or("?").to_string(), &mut types);
        }
        if let Some(summary) = &run.summary {
            types_of(summary, "summary".into(), &mut types);
        }
    }
    for alert in &scenario_alerts() {
        types_of(alert, "alert".into(), &mut types);
    }
    let stats = std::fs::read_to_string(util::repo().join("tests/golden/stats.jsonl")).expect("stats golden");
    for line in stats.lines() {
        types_of(&serde_json::from_str(line).expect("stats JSON"), "stats".into(), &mut types);
    }
    assert!(types.contains_key("stats.policy.packets.skipped_by_reason.not_ip"), "{types:?}");
    let mixed: Vec<_> = types.iter().filter(|(_, kinds)| kinds.len() > 1).collect();
    assert!(mixed.is_empty(), "fields with more than one JSON type: {mixed:?}");
}

/// Suricata's meaning of addresses: an ICMP "administratively prohibited" from a
/// firewall travels to the flow's originator, so the alert's `src_*` is the responder
/// and `dest_*` the originator, `direction` `to_client`; the flow's ends stay in
/// `policy`, and the firewall that sent the error is named in `policy` and in
/// `alert.metadata`.
#[test]
fn a_restriction_names_the_firewall_and_addresses_follow_the_packet() {
    let mut s = Scenario::new();
    let (orig, resp) = (sa("10.10.1.11:50001"), sa("10.10.1.12:135"));
    s.icmp_prohibited("10.10.0.1".parse().expect("address"), orig, resp);
    let run = util::analyze_scenario(&s, &["--workers", "1"]);
    let alerts = run.alerts();
    assert_eq!(alerts.len(), 1, "{:?}", run.lines);
    let a = alerts[0];
    assert_eq!(a["direction"], "to_client", "{a}");
    let top = (util::endpoint(&a["src_ip"], &a["src_port"]), util::endpoint(&a["dest_ip"], &a["dest_port"]));
    assert_eq!(top, (resp.to_string(), orig.to_string()), "{a}");
    let p = &a["policy"];
    let flow = (util::endpoint(&p["src_ip"], &p["src_port"]), util::endpoint(&p["dest_ip"], &p["dest_port"]));
    assert_eq!(flow, (orig.to_string(), resp.to_string()), "{a}");
    assert_eq!(p["evidence_source"], "10.10.0.1", "{a}");
    assert_eq!(a["alert"]["metadata"]["evidence_source"], serde_json::json!(["10.10.0.1"]), "{a}");
}

/// A topology in which every responder of `file`'s flows, and every tunnel's far end,
/// is a Mailbox server: judged with it, a real capture raises alerts of its own
/// (tunnels, fragments and ICMP included), whatever network it was taken on.
fn responders_as_mailboxes(file: &std::path::Path) -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    let run = util::analyze(&[file], &["--flows", "--workers", "1"]);
    let mut mailboxes = std::collections::BTreeSet::new();
    for flow in run.flows() {
        mailboxes.extend(flow["dest_ip"].as_str().map(str::to_string));
        mailboxes.extend(flow["tunnel"]["dest_ip"].as_str().map(str::to_string));
    }
    if mailboxes.is_empty() {
        return None;
    }
    let list: Vec<String> = mailboxes.iter().map(|a| format!("{a:?}")).collect();
    Some(util::topology_file(&format!(
        "[organization]\nname = \"responders\"\n\n[roles]\nmailbox = [{}]\n",
        list.join(", ")
    )))
}

/// Severity of a verdict as the shipped classifications sort them (lower is worse).
fn severity(verdict: &str) -> u64 {
    exwatch::policy::Verdict::from_name(verdict)
        .filter(|v| v.is_finding())
        .map_or(u64::MAX, |v| u64::from(soc::category(v).1))
}

/// Checks that with `--flows` every alert joins exactly one flow event by `flow_id`,
/// that the flow event says it alerted, and that its verdict is the worst its written
/// findings got; that an aggregate alert names the flows it stands for (the first
/// `LISTED` of them, its own `flow_id` first), each joining exactly one flow event of
/// its own (never an aggregate flow record); and that every flow event has Suricata's
/// `age`, `reason`, `alerted`. Returns the alerts checked.
fn check_joins(run: &util::Run, what: &str) -> usize {
    let mut flows: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for flow in run.flows() {
        flows.entry(flow["flow_id"].as_u64().expect("flow_id")).or_default().push(flow);
        let f = &flow["flow"];
        assert!(f["age"].is_u64() && f["alerted"].is_boolean(), "{what}: {flow}");
        assert!(
            ["timeout", "forced", "shutdown"].contains(&f["reason"].as_str().unwrap_or("")),
            "{what}: {flow}"
        );
    }
    let joins = |id: u64, alert: &Value| {
        let joined = flows.get(&id).map_or(0, Vec::len);
        assert_eq!(joined, 1, "{what}: flow {id} of an alert joins {joined} flow events: {alert}");
        let flow = flows[&id][0];
        assert_eq!(flow["flow"]["alerted"], true, "{what}: {flow}");
        assert!(flow["policy"]["aggregate"].is_null(), "{what}: joins an aggregate flow record: {flow}");
    };
    let mut worst: BTreeMap<u64, u64> = BTreeMap::new();
    for alert in run.alerts() {
        let id = alert["flow_id"].as_u64().expect("flow_id");
        joins(id, alert);
        let aggregate = &alert["policy"]["aggregate"];
        if aggregate.is_null() {
            let s = severity(alert["policy"]["verdict"].as_str().expect("verdict"));
            let w = worst.entry(id).or_insert(u64::MAX);
            *w = (*w).min(s);
            continue;
        }
        let named: Vec<u64> = aggregate["flow_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: an aggregate alert names no flows: {alert}"))
            .iter()
            .map(|id| id.as_u64().expect("flow id"))
            .collect();
        let held = aggregate["flows"].as_u64().expect("flows");
        assert_eq!(named.len() as u64, held.min(LISTED as u64), "{what}: {alert}");
        assert_eq!(named.first(), Some(&id), "{what}: the example is the first flow held: {alert}");
        for flow_id in named {
            joins(flow_id, alert);
        }
    }
    for (id, w) in &worst {
        let flow = flows[id][0];
        assert_eq!(severity(flow["policy"]["verdict"].as_str().expect("verdict")), *w, "{what}: {flow}");
    }
    for flow in run.flows() {
        let alerted = flow["flow"]["alerted"] == true;
        let finding = severity(flow["policy"]["verdict"].as_str().expect("verdict")) < u64::MAX;
        assert_eq!(alerted, finding, "{what}: alerted iff the flow's verdict is a finding: {flow}");
    }
    run.alerts().len()
}

/// Alert-to-flow joins on every capture in captures/, judged with the example topology
/// and with one that makes every responder and tunnel end a Mailbox server (so tunnels,
/// fragments and ICMP errors raise alerts), with one worker and two; and on a flood the
/// alert bound turns into aggregates.
#[test]
fn every_alert_joins_exactly_one_flow_event() {
    let mut checked = BTreeMap::<String, usize>::new();
    for file in crate::captures::every_capture() {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let topology = responders_as_mailboxes(&file);
        for workers in ["1", "2"] {
            let run = util::analyze(&[&file], &["--flows", "--workers", workers]);
            *checked.entry(name.clone()).or_default() += check_joins(&run, &name);
            if let Some((_dir, path)) = &topology {
                let args = ["--flows", "--workers", workers, "--topology", path.to_str().expect("utf-8")];
                let run = util::analyze(&[&file], &args);
                *checked.entry(name.clone()).or_default() +=
                    check_joins(&run, &format!("{name} (responders)"));
            }
        }
    }
    for name in [
        "vxlan-http.pcap",
        "gre-teb-ethernet-http-nbns.pcap",
        "ipv4-fragments-udp-nfs.pcap",
        "sample-contoso.pcap",
    ] {
        assert!(checked.get(name).is_some_and(|n| *n > 0), "no alert of {name} was checked: {checked:?}");
    }
    // A flood past what an aggregate alert lists: with in-scope flows bounded too, the
    // flows no alert names are counted into aggregate flow records.
    let mut flood = Scenario::new();
    for i in 0..120u16 {
        let syn = Segment::Tcp { flags: 0x02, seq: 1, ack: 0, payload: &[] };
        flood.send(sa(&format!("198.51.100.{}:{}", 10 + i % 7, 40_000 + i)), sa("10.10.1.11:3389"), syn);
    }
    for flows in ["--flows", "--flows=in-scope"] {
        let args = [flows, "--workers", "2", "--alerts-per-key", "3", "--flows-per-key", "3"];
        let run = util::analyze_scenario(&flood, &args);
        assert!(run.alerts().iter().any(|a| a["policy"]["aggregate"].is_object()), "{:?}", run.lines);
        check_joins(&run, &format!("flood {flows}"));
        let records = run.flows().iter().filter(|f| f["policy"]["aggregate"].is_object()).count();
        assert_eq!(records > 0, flows == "--flows=in-scope", "{flows}: {:?}", run.lines);
        let stood_for: u64 =
            run.flows().iter().map(|f| f["policy"]["aggregate"]["flows"].as_u64().unwrap_or(1)).sum();
        assert_eq!(stood_for, 120, "{flows}: every flow once, in its own event or an aggregate");
    }
}

/// The names of the sample series on a `/metrics` page.
pub fn page_series(page: &str) -> std::collections::BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The metric names (exwatch's and the process's) a text of queries names.
pub fn named_metrics(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && word(bytes[i]) {
            i += 1;
        }
        let token = &text[start..i];
        let boundary = start == 0 || !word(bytes[start - 1]);
        if boundary && (token.starts_with("exwatch_") || token.starts_with("process_")) {
            names.insert(token.to_string());
        }
        i = i.max(start + 1);
    }
    names
}

/// The dashboard's queries, every `expr` of its panels.
pub fn dashboard_queries() -> String {
    let path = util::repo().join("packaging/grafana/exwatch-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push_str(target["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    exprs
}

/// The shipped alerting rules pass `promtool check rules` and `promtool test rules`,
/// whose series fire every alert the file defines; every metric they and the Grafana
/// dashboard name is on the `/metrics` page exwatch renders (the live page is checked
/// in `live::live_metrics_page_is_valid_and_latency_is_published`).
#[test]
fn prometheus_rules_fire_each_alert_and_name_served_metrics() {
    let dir = util::repo().join("packaging/prometheus");
    for args in [&["check", "rules", "exwatch-rules.yml"][..], &["test", "rules", "exwatch-rules.test.yml"]] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/setup.sh installs Debian's prometheus package)");
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("SUCCESS"), "promtool {args:?}:\n{said}");
    }
    let rules = std::fs::read_to_string(dir.join("exwatch-rules.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("exwatch-rules.test.yml")).expect("rule tests");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for alert in &alerts {
        // A test of the alert that expects it to fire (labels and annotations).
        let fires = tests
            .split("- eval_time:")
            .any(|t| t.contains(&format!("alertname: {alert}\n")) && t.contains("exp_labels:"));
        assert!(fires, "no test fires {alert}");
    }
    let policy = std::sync::Arc::new(exwatch::policy::builtin::policy().expect("policy"));
    let topology = std::sync::Arc::new(exwatch::policy::builtin::topology().expect("topology"));
    let engine = exwatch::policy::Engine::new(policy, topology, 10);
    let monitor = exwatch::telemetry::Monitor::new(&engine, 1);
    let served = page_series(&exwatch::telemetry::prometheus::render(&engine, &monitor));
    for name in named_metrics(&rules).into_iter().chain(named_metrics(&dashboard_queries())) {
        assert!(served.contains(&name), "{name} is not on the /metrics page: {served:?}");
    }
}

/// The contract scenario's capture (one finding of each verdict, their flows): its
/// alerts carry metadata, so their lines are longer than 1,024 bytes.
fn contract_pcap(dir: &std::path::Path) -> std::path::PathBuf {
    let mut s = Scenario::new();
    s.tcp_session(sa("172.16.0.25:51514"), sa("198.51.100.7:3389"), 1);
    s.tcp_session(sa("10.20.0.9:50000"), sa("10.10.1.11:80"), 1);
    s.icmp_prohibited("10.10.0.1".parse().expect("address"), sa("10.10.1.11:50001"), sa("10.10.1.12:135"));
    s.tcp_session(sa("[2001:db8:ff::7]:50002"), sa("[2001:db8:10::11]:443"), 1);
    let path = dir.join("contract.pcap");
    s.write_pcap(&path).expect("write pcap");
    path
}

/// The lines a regular EVE file gets for `pcap` (one worker: a fixed order).
fn regular_lines(pcap: &std::path::Path) -> Vec<String> {
    let run = util::analyze(&[pcap], &["--flows", "--workers", "1", "--sensor-name", "span-1"]);
    assert!(run.lines.iter().any(|l| l.len() > 1024), "a line longer than 1,024 bytes: {:?}", run.lines);
    run.lines
}

fn analyze_to(pcap: &std::path::Path, log: &str, filetype: &str) -> (i32, String) {
    let pcap = pcap.to_str().expect("utf-8");
    let args = ["analyze", pcap, "--eve-log", log, "--eve-filetype", filetype, "--flows", "--workers", "1"];
    let (status, _, stderr) =
        util::exwatch(&[&args[..], &["--sensor-name", "span-1", "--no-progress"]].concat());
    (status, stderr)
}

/// `--eve-filetype unix_stream`: socat, listening on a unix socket, receives exactly the
/// lines a file gets, none cut (some are longer than 1,024 bytes).
#[test]
fn unix_stream_output_is_read_back_whole_by_socat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = contract_pcap(dir.path());
    let (socket, received) = (dir.path().join("eve.sock"), dir.path().join("received.json"));
    let listen = format!("UNIX-LISTEN:{}", socket.display());
    let mut socat = std::process::Command::new("socat")
        .args(["-u", &listen, &format!("CREATE:{}", received.display())])
        .spawn()
        .expect("socat (scripts/setup.sh installs it)");
    let start = std::time::Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "socat never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, stderr) = analyze_to(&pcap, socket.to_str().expect("utf-8"), "unix_stream");
    // socat ends when exwatch closes the connection.
    let socat_status = socat.wait().expect("socat");
    assert!(matches!(status, 0 | 1) && socat_status.success(), "{status} {socat_status}: {stderr}");
    let got = std::fs::read_to_string(&received).expect("received");
    let got: Vec<String> = got.lines().map(str::to_string).collect();
    assert_eq!(got, regular_lines(&pcap), "the same lines as a file gets, none cut");
}

/// `--eve-filetype syslog` over UDP: a listener in the test receives one RFC 5424
/// message per event (facility local5, severity info, app `exwatch`, msgid `eve`),
/// each carrying a whole line, as a file gets it.
#[test]
fn syslog_output_over_udp_carries_whole_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = contract_pcap(dir.path());
    let want = regular_lines(&pcap);
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    listener.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let target = format!("udp:{}", listener.local_addr().expect("addr"));
    let reader = std::thread::spawn(move || {
        let mut messages = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = listener.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if messages.len() == want.len() {
                break;
            }
        }
        (messages, want)
    });
    let (status, stderr) = analyze_to(&pcap, &target, "syslog");
    assert!(matches!(status, 0 | 1), "{status}: {stderr}");
    let (messages, want) = reader.join().expect("reader");
    let mut lines = Vec::new();
    for message in &messages {
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
        let fields: Vec<&str> = message.splitn(8, ' ').collect();
        assert_eq!(fields.len(), 8, "{message}");
        assert_eq!(
            (fields[0], fields[3], fields[5], fields[6]),
            ("<174>1", "exwatch", "eve", "-"),
            "{message}"
        );
        assert!(fields[1].ends_with('Z') && fields[1].contains('T'), "{message}");
        lines.push(fields[7].to_string());
    }
    assert_eq!(lines, want, "one message per line, none cut");
}

/// `--flows=in-scope` writes the flow events of the flows the article covers only (no
/// `out_of_scope` verdict) and every alert still joins its flow; `--flows` alone keeps
/// writing every flow, which other tools' cross-checks need.
#[test]
fn flows_in_scope_writes_only_what_the_article_covers() {
    let sample = util::capture("sample-contoso.pcap");
    let every = util::analyze(&[&sample], &["--flows", "--workers", "1"]);
    let scoped = util::analyze(&[&sample], &["--flows=in-scope", "--workers", "1"]);
    let out =
        |run: &util::Run| run.flows().iter().filter(|f| f["policy"]["verdict"] == "out_of_scope").count();
    assert!(out(&every) > 0, "the sample has out-of-scope flows");
    assert_eq!(out(&scoped), 0, "{:?}", scoped.lines);
    assert_eq!(scoped.flows().len(), every.flows().len() - out(&every));
    assert_eq!(scoped.alerts(), every.alerts(), "the alerts do not change");
    check_joins(&scoped, "in-scope");
    let (status, _, stderr) = util::exwatch(&["analyze", sample.to_str().expect("utf-8"), "--flows=some"]);
    assert!(status == 2 && stderr.contains("--flows=some: not `all` or `in-scope`"), "{stderr}");
}

/// An accepted finding (an unexpired exception covers it) names its exception in
/// `alert.metadata`, is classified `not-suspicious`, and its flow event says `accepted`.
#[test]
fn an_accepted_finding_names_its_exception_in_the_metadata() {
    let topology = std::fs::read_to_string(util::repo().join("rules/topology.toml")).expect("topology");
    let text = format!(
        "{topology}\n[[exception]]\nid = \"CHG-1\"\nrule = \"external-to-mailbox\"\nfrom = [\"198.51.100.7\"]\nowner = \"o\"\nreason = \"r\"\nexpires = 2099-03-31\n"
    );
    let (_dir, path) = util::topology_file(&text);
    let mut s = Scenario::new();
    s.tcp_session(sa("198.51.100.7:50001"), sa("10.10.1.11:3389"), 1);
    let args = ["--flows", "--workers", "1", "--topology", path.to_str().expect("utf-8")];
    let run = util::analyze_scenario(&s, &args);
    let alerts = run.alerts();
    assert_eq!(alerts.len(), 1, "{:?}", run.lines);
    let a = alerts[0];
    assert_eq!(a["policy"]["verdict"], "accepted", "{a}");
    assert_eq!(a["alert"]["metadata"]["exception"], serde_json::json!(["CHG-1"]), "{a}");
    assert_eq!(
        (&a["alert"]["category"], &a["alert"]["severity"]),
        (&"Not Suspicious Traffic".into(), &3.into())
    );
    check_alert(a, &policy_sids(), &rule_pages(), "accepted");
    check_joins(&run, "accepted");
    assert_eq!(run.flows()[0]["policy"]["verdict"], "accepted", "{:?}", run.lines);
}

/// The report JSON `exwatch report` makes of the EVE lines `lines`.
fn report_of(lines: &[String]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("eve.json");
    std::fs::write(&log, lines.join("\n") + "\n").expect("write log");
    let json = dir.path().join("report.json");
    let args = ["report", log.to_str().expect("utf-8"), "--json", json.to_str().expect("utf-8")];
    let (status, _, stderr) = util::exwatch(&args);
    assert!(status == 0 || status == 1, "{status}: {stderr}");
    serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON")
}

/// Under a flood at an Exchange server, `--flows=in-scope` writes a few flow events per
/// key and counts the rest into aggregate flow records, the same with any worker count;
/// the report of that log counts every flow: in-scope flows from the flow events with
/// the aggregates' real counts, the whole traffic from the `stats` event (and says so),
/// exactly as the report of a log with every flow.
#[test]
fn in_scope_flows_are_bounded_under_a_flood_and_the_report_stays_exact() {
    let mut s = Scenario::new();
    let syn = || Segment::Tcp { flags: 0x02, seq: 1, ack: 0, payload: &[] };
    for i in 0..300u16 {
        // Spoofed SYNs at a Mailbox server's 443: in scope, verdict ok, no alert.
        s.send(sa(&format!("203.0.113.{}:{}", 1 + i % 200, 20_000 + i)), sa("10.10.1.11:443"), syn());
    }
    for i in 0..40u16 {
        // Out of scope: between two hosts of the Internet.
        s.send(sa(&format!("198.51.100.{}:{}", 1 + i, 30_000 + i)), sa("192.0.2.80:80"), syn());
    }
    s.tcp_session(sa("10.20.0.9:50000"), sa("10.10.1.11:443"), 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("flood.pcap");
    s.write_pcap(&pcap).expect("write scenario");
    let every = util::analyze(&[&pcap], &["--flows", "--workers", "1"]);
    let runs: Vec<util::Run> = ["1", "2"]
        .iter()
        .map(|w| util::analyze(&[&pcap], &["--flows=in-scope", "--flows-per-key", "5", "--workers", w]))
        .collect();
    let sorted = |run: &util::Run| {
        let mut lines = run.lines.clone();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&runs[0]), sorted(&runs[1]), "the same events with one worker and two");
    let scoped = &runs[0];
    check_joins(scoped, "in-scope flood");
    let flows = scoped.flows();
    assert!(flows.len() < 20, "{} flow events for a flood of 300 flows", flows.len());
    let records: Vec<&&Value> = flows.iter().filter(|f| f["policy"]["aggregate"].is_object()).collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let a = &records[0]["policy"]["aggregate"];
    assert_eq!(records[0]["policy"]["verdict"], "ok");
    assert_eq!(a["by"], "responder");
    assert_eq!(a["responders"], 1);
    let stood_for: u64 = flows.iter().map(|f| f["policy"]["aggregate"]["flows"].as_u64().unwrap_or(1)).sum();
    assert_eq!(stood_for, 301, "every in-scope flow once");
    let bytes = |run: &util::Run| -> u64 {
        run.flows()
            .iter()
            .filter(|f| f["policy"]["verdict"] != "out_of_scope")
            .map(|f| match f["policy"]["aggregate"]["bytes"].as_u64() {
                Some(b) => b,
                None => {
                    f["flow"]["bytes_toserver"].as_u64().expect("bytes")
                        + f["flow"]["bytes_toclient"].as_u64().expect("bytes")
                }
            })
            .sum()
    };
    assert_eq!(bytes(scoped), bytes(&every), "aggregates carry their flows' real bytes");

    let all = report_of(&every.lines);
    let bounded = report_of(&scoped.lines);
    assert_eq!(all["totals"]["flows"], 341, "{}", all["totals"]);
    assert_eq!(all["totals"]["flows_counted_from"], "flow_events");
    assert_eq!(bounded["totals"]["flows_counted_from"], "stats");
    for key in ["flows", "flows_in_scope"] {
        assert_eq!(bounded["totals"][key], all["totals"][key], "{key}: {}", bounded["totals"]);
    }
    assert_eq!(bounded["totals"]["bytes"], bytes(&every), "the in-scope flows' bytes");
}

/// An alert carries the flow's Zeek `conn_state` once its handshake resolved: a refused
/// SYN is `REJ`, a connection `S1` (as Zeek says of a handshake with no FIN yet), a SYN
/// nobody answered `S0`; each is still written as fired by its SYN (its timestamp, its
/// sender first, `to_server`), the same with one worker and two.
#[test]
fn an_alert_carries_the_conn_state_its_handshake_resolved_to() {
    let mut s = Scenario::new();
    let syn = || Segment::Tcp { flags: 0x02, seq: 1, ack: 0, payload: &[] };
    s.send(sa("198.51.100.7:50001"), sa("10.10.1.11:3389"), syn());
    s.send(
        sa("10.10.1.11:3389"),
        sa("198.51.100.7:50001"),
        Segment::Tcp { flags: 0x14, seq: 0, ack: 2, payload: &[] },
    );
    s.tcp_session(sa("198.51.100.8:50002"), sa("10.10.1.11:3389"), 1);
    s.send(sa("198.51.100.9:50003"), sa("10.10.1.11:3389"), syn());
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("handshakes.pcap");
    s.write_pcap(&pcap).expect("write scenario");
    let one = util::analyze(&[&pcap], &["--flows", "--workers", "1"]);
    let two = util::analyze(&[&pcap], &["--flows", "--workers", "2"]);
    let sorted = |run: &util::Run| {
        let mut lines = run.lines.clone();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&one), sorted(&two));
    check_joins(&one, "handshakes");
    let mut states = BTreeMap::new();
    for a in one.alerts() {
        let flow = one.flows().into_iter().find(|f| f["flow_id"] == a["flow_id"]).expect("its flow");
        assert_eq!(a["timestamp"], flow["flow"]["start"], "fired by the SYN: {a}");
        assert_eq!((&a["direction"], &a["src_ip"]), (&"to_server".into(), &flow["src_ip"]), "{a}");
        assert_eq!(
            a["alert"]["metadata"]["conn_state"],
            serde_json::json!([a["policy"]["conn_state"]]),
            "{a}"
        );
        states.insert(util::str_of(&a["src_ip"]), util::str_of(&a["policy"]["conn_state"]));
    }
    let want: BTreeMap<String, String> =
        [("198.51.100.7", "REJ"), ("198.51.100.8", "S1"), ("198.51.100.9", "S0")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(states, want, "{:?}", one.lines);
}

/// A report of a log whose findings the alert bound aggregated counts every finding, as
/// the report of the same capture with the bound off does.
#[test]
fn a_report_counts_the_findings_an_aggregate_alert_stands_for() {
    let sample = util::capture("sample-contoso.pcap");
    let bounded = util::analyze(&[&sample], &["--flows", "--workers", "2", "--alerts-per-key", "1"]);
    assert!(run_has_aggregates(&bounded), "{:?}", bounded.lines);
    let every = util::analyze(&[&sample], &["--flows", "--workers", "1", "--no-aggregate"]);
    let (a, b) = (report_of(&bounded.lines), report_of(&every.lines));
    assert_eq!(a["totals"]["findings"], b["totals"]["findings"]);
    assert_eq!(a["totals"]["findings"]["violation"], 8, "{}", a["totals"]);
}

fn run_has_aggregates(run: &util::Run) -> bool {
    run.alerts().iter().any(|a| a["policy"]["aggregate"].is_object())
}
