//! Answers that cannot mislead (issue 22): the compliance report names every input's
//! status, counts the flows the article covers, has a row for every rule and evidence
//! kind (saying why a row cannot apply), and reads compressed EVE logs like plain ones.

use std::path::Path;
use std::process::Command;

use exwatch::testkit::synth::Scenario;
use serde_json::Value;

use crate::report::{chromium, eve_log, policy, report, rows};

/// Runs `exwatch report` in `dir`, expecting it to write nothing: (status, stderr).
fn refused(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .current_dir(dir)
        .arg("report")
        .args(args)
        .args(["--json", "refused.json"])
        .output()
        .expect("run exwatch report");
    assert!(!dir.join("refused.json").exists(), "a refused report is not written");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}
use crate::util::{self, sa};

/// A capture of `sessions` client-to-Mailbox HTTPS flows and one Mailbox-to-Mailbox flow.
fn good(path: &Path, sessions: u16) {
    with_rdp(path, sessions, None);
}

/// [`good`], after RDP from external host `rdp` to a Mailbox server (a violation).
fn with_rdp(path: &Path, sessions: u16, rdp: Option<&str>) {
    let mut s = Scenario::new();
    if let Some(from) = rdp {
        s.tcp_session(sa(&format!("{from}:40000")), sa("10.10.1.12:3389"), 1);
    }
    for i in 0..sessions {
        s.tcp_session(sa(&format!("10.20.0.9:{}", 50_000 + i)), sa("10.10.1.11:443"), 2);
    }
    s.tcp_session(sa("10.10.1.11:50100"), sa("10.10.1.12:135"), 1);
    s.write_pcap(path).expect("write capture");
}

/// Runs `analyze --report` in `dir` on `files` (named relative to it).
fn analyze_report(dir: &Path, files: &[&str], extra: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .current_dir(dir)
        .arg("analyze")
        .args(files)
        .args(["--no-progress", "--workers", "1", "--eve-log", "run.eve", "--sensor-name", "s1"])
        .args(["--report", "report.html", "--report-json", "report.json", "--report-csv", "report.csv"])
        .args(extra)
        .output()
        .expect("run exwatch analyze");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Records in a classic little-endian pcap file, by walking its record headers.
fn records(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("capture");
    let (mut at, mut n) = (24, 0);
    while at + 16 <= bytes.len() {
        at += 16 + u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        n += 1;
    }
    n
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("JSON report")).expect("JSON")
}

/// A directory with `good.pcap` (3 RDP flows), `damaged.pcap` (6, cut inside its last
/// record: every record before it is read), `whole.pcap` (what it was cut from) and an
/// empty `empty.pcap`.
fn good_damaged_and_empty() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    with_rdp(&d.join("good.pcap"), 3, Some("198.51.100.7"));
    with_rdp(&d.join("whole.pcap"), 6, Some("198.51.100.8"));
    let bytes = std::fs::read(d.join("whole.pcap")).expect("capture");
    std::fs::write(d.join("damaged.pcap"), &bytes[..bytes.len() - 30]).expect("write");
    std::fs::write(d.join("empty.pcap"), b"").expect("write");
    dir
}

#[test]
fn a_report_over_a_damaged_an_empty_and_a_good_capture_names_each_inputs_status() {
    let dir = good_damaged_and_empty();
    let d = dir.path();
    std::fs::write(d.join("notes.txt"), b"these are not packets\n").expect("write");
    // A pcap header of link type 147 (USER0), which exwatch cannot decode, and one record.
    let mut user0 =
        vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 147, 0, 0, 0];
    user0.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, b'a', b'b', b'c', b'd']);
    std::fs::write(d.join("user0.pcap"), user0).expect("write");
    let files = ["good.pcap", "damaged.pcap", "empty.pcap", "notes.txt", "user0.pcap", "missing.pcap"];
    let (status, stderr) = analyze_report(d, &files, &[]);
    assert_eq!(status, 2, "inputs not read whole: {stderr}");
    let report = json(&d.join("report.json"));
    let inputs = report["inputs"].as_array().expect("inputs");
    let by_file = |name: &str| inputs.iter().find(|i| i["file"] == name).unwrap_or_else(|| panic!("{name}"));
    let good = by_file("good.pcap");
    assert_eq!(good["status"], "read");
    assert_eq!(good["detail"], Value::Null);
    assert_eq!(good["flows"], 5);
    assert_eq!(good["packets"].as_u64(), Some(records(&d.join("good.pcap"))), "{good}");
    assert!(good["first"].is_string() && good["last"].is_string(), "{good}");
    let damaged = by_file("damaged.pcap");
    assert_eq!(damaged["status"], "damaged");
    assert!(util::str_of(&damaged["detail"]).starts_with("damaged at record "), "{damaged}");
    assert!(damaged["flows"].as_u64() > Some(0), "the flows before the damage count: {damaged}");
    assert_eq!(by_file("empty.pcap")["status"], "not_a_capture");
    assert_eq!(by_file("empty.pcap")["flows"], 0);
    assert_eq!(by_file("notes.txt")["status"], "not_a_capture");
    assert!(util::str_of(&by_file("notes.txt")["detail"]).contains("not a pcap or pcapng"));
    assert_eq!(by_file("user0.pcap")["status"], "unreadable");
    assert!(util::str_of(&by_file("user0.pcap")["detail"]).contains("link type 147"));
    assert_eq!(by_file("missing.pcap")["status"], "unreadable");
    assert!(util::str_of(&by_file("missing.pcap")["detail"]).contains("No such file"));
    let conclusion = util::str_of(&report["conclusion"]["text"]);
    assert!(
        conclusion.contains("5 of 6 inputs not read whole (damaged.pcap damaged, empty.pcap not a capture, notes.txt not a capture, user0.pcap unreadable, missing.pcap unreadable)"),
        "{conclusion}"
    );
    // The CSV says where each finding was seen: the RDP of the good capture and the one
    // before the damage.
    let csv = std::fs::read_to_string(d.join("report.csv")).expect("CSV");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].ends_with("community_id,pcap_filename,sensor,exception"), "{csv}");
    for (capture, from) in [("good.pcap", "198.51.100.7"), ("damaged.pcap", "198.51.100.8")] {
        let line =
            lines.iter().find(|l| l.ends_with(&format!(",{capture},s1,"))).unwrap_or_else(|| panic!("{csv}"));
        assert!(line.contains(&format!(",external-to-mailbox,,violation,{from},10.10.1.12,3389,")), "{line}");
    }
    assert_eq!(lines.len(), 3, "{csv}");
    // The browser shows every input's status and the conclusion.
    let dom = chromium(d, &["--dump-dom"], &d.join("report.html"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains(&conclusion), "the page lacks the conclusion");
    for (file, class) in [
        ("good.pcap", "input read"),
        ("damaged.pcap", "input damaged"),
        ("empty.pcap", "input not_a_capture"),
        ("notes.txt", "input not_a_capture"),
        ("user0.pcap", "input unreadable"),
        ("missing.pcap", "input unreadable"),
    ] {
        let at = dom.find(&format!("<code>{file}</code>")).unwrap_or_else(|| panic!("{file} not listed"));
        let row = &dom[dom[..at].rfind("<tr").expect("its row")..at];
        assert!(row.contains(class), "{file}: {row}");
    }
    assert!(dom.contains("damaged at record "), "the damage's place is shown");

    // libpcap's reader tells a file that is not a capture the same way.
    let (_, stderr) = analyze_report(d, &["good.pcap", "notes.txt"], &["--reader", "libpcap"]);
    let report = json(&d.join("report.json"));
    assert_eq!(report["inputs"][1]["status"], "not_a_capture", "{stderr}");
    assert_eq!(report["inputs"][0]["status"], "read", "{stderr}");
}

#[test]
fn the_csv_names_the_capture_file_and_the_sensor_of_each_finding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = Scenario::new();
    s.tcp_session(sa("198.51.100.7:40000"), sa("10.10.1.12:3389"), 1);
    s.write_pcap(&dir.path().join("rdp.pcap")).expect("write");
    let (status, stderr) = analyze_report(dir.path(), &["rdp.pcap"], &[]);
    assert_eq!(status, 1, "{stderr}");
    let csv = std::fs::read_to_string(dir.path().join("report.csv")).expect("CSV");
    let line = csv.lines().nth(1).expect("a finding");
    assert!(line.contains("external-to-mailbox") && line.ends_with(",rdp.pcap,s1,"), "{line}");
}

#[test]
fn the_banner_counts_the_flows_the_article_covers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = Scenario::new();
    s.tcp_session(sa("10.20.0.9:50000"), sa("10.10.1.11:443"), 1);
    s.tcp_session(sa("10.10.1.11:50001"), sa("10.10.1.12:445"), 1);
    // Three flows that touch no Exchange server.
    for port in [80, 443, 8080] {
        s.tcp_session(sa(&format!("10.20.0.9:{}", 51_000 + port)), sa(&format!("203.0.113.9:{port}")), 1);
    }
    s.write_pcap(&dir.path().join("mixed.pcap")).expect("write");
    let (status, stderr) = analyze_report(dir.path(), &["mixed.pcap"], &[]);
    assert_eq!(status, 0, "{stderr}");
    let report = json(&dir.path().join("report.json"));
    assert_eq!(report["totals"]["flows"], 5);
    assert_eq!(report["totals"]["flows_in_scope"], 2);
    let text = util::str_of(&report["conclusion"]["text"]);
    assert!(
        text.starts_with("no violation or restriction found in 2 flows the article covers, of 5 read"),
        "{text}"
    );
    let dom = chromium(dir.path(), &["--dump-dom"], &dir.path().join("report.html"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains(&text), "the banner");
    assert!(dom.contains("<span id=\"flows-in-scope\">2</span>"), "the header's in-scope count");
    // The out-of-scope flows' role cell is not coloured as compliant traffic.
    let cells = report["role_matrix"].as_array().expect("role matrix");
    let cell = cells.iter().find(|c| c["dest_role"] == "external").expect("client to external");
    assert_eq!(cell["worst"], "out_of_scope");
}

#[test]
fn every_rule_and_evidence_kind_is_a_row_and_edge_rows_say_why_they_cannot_apply_without_an_edge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = dir.path().join("no-edge.toml");
    std::fs::write(
        &topology,
        "[organization]\nname = \"fabrikam\"\n\n[roles]\nmailbox = [\"10.10.1.11\", \"10.10.1.12\"]\n\
         domain_controller = [\"10.10.0.5\"]\ninternal_client = [\"10.20.0.0/16\"]\n",
    )
    .expect("write topology");
    good(&dir.path().join("good.pcap"), 2);
    log_of(
        &dir.path().join("good.pcap"),
        dir.path(),
        "good.eve",
        &["--topology", topology.to_str().unwrap()],
    );
    let made = report(dir.path(), &["good.eve"], &["--topology", topology.to_str().unwrap()]);
    assert_eq!(made.status, 0, "{}", made.stderr);
    let rows = rows(&made.json);
    let policy = policy();
    let dom = chromium(dir.path(), &["--dump-dom"], &made.html_path);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let ids = policy.rules.iter().map(|r| &r.id).chain(policy.evidence.iter().map(|e| &e.id));
    for id in ids {
        assert!(rows.contains_key(id), "no JSON row for {id}");
        assert!(dom.contains(&format!("id=\"rule-{id}\"")), "no rendered row for {id}");
    }
    assert_eq!(rows.len(), policy.rules.len() + policy.evidence.len());
    for rule in policy.rules.iter().filter(|r| r.id.starts_with("edge") || r.id.contains("bypasses-edge")) {
        let row = &rows[&rule.id];
        assert_eq!(row["status"], "not_applicable", "{}", rule.id);
        assert!(
            util::str_of(&row["why"]).contains("the topology has no Edge Transport server"),
            "{}: {}",
            rule.id,
            row["why"]
        );
    }
    assert_eq!(rows["subscribed-mailbox-to-edge"]["status"], "not_applicable");
    assert_eq!(rows["inbound-smtp"]["status"], "not_observed", "it can apply without an Edge");
    assert!(dom.contains("not applicable: the topology has no Edge Transport server"));
    // Evidence looked for on the Mailbox pair's traffic, and not found.
    assert_eq!(rows["restricted-silent-drop"]["status"], "none_found");
    assert_eq!(rows["restricted-silent-drop"]["kind"], "evidence");
    // A compliant row shows its ports and host pairs.
    assert_eq!(rows["client-https"]["status"], "compliant");
    assert_eq!(rows["client-https"]["ports"], serde_json::json!(["443/TCP"]));
    assert_eq!(rows["client-https"]["top_pairs"][0]["src_ip"], "10.20.0.9");
    assert_eq!(rows["client-https"]["top_pairs"][0]["flows"], 2);
    // The never-restrict legend names every evidence kind.
    let legend = &made.html[made.html.find("id=\"never-restrict\"").expect("section")..];
    let legend = &legend[..legend.find("</p>").expect("legend")];
    for e in &policy.evidence {
        assert!(legend.contains(&e.id), "the legend lacks {}", e.id);
    }
}

#[test]
fn report_exits_2_when_there_is_nothing_to_judge() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("alerts-only.eve"), "").expect("write");
    let made = report(dir.path(), &["alerts-only.eve"], &[]);
    assert_eq!(made.status, 2, "{}", made.stderr);
    assert!(made.stderr.contains("nothing to judge"), "{}", made.stderr);
}

/// `text` compressed with gzip.
fn gzip(text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text).expect("compress");
    encoder.finish().expect("gzip")
}

/// The report without what names its inputs' files (their names, sizes and digests).
fn without_input_files(mut json: Value) -> Value {
    for input in json["inputs"].as_array_mut().expect("inputs") {
        for key in ["file", "bytes", "sha256"] {
            input.as_object_mut().expect("input").remove(key);
        }
    }
    json
}

#[test]
fn gzip_and_zstd_eve_logs_beside_a_plain_one_give_the_report_of_all_plain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let eve = eve_log(&util::capture("sample-contoso.pcap"), d, "sample.eve");
    let text = std::fs::read_to_string(&eve).expect("EVE log");
    let lines: Vec<&str> = text.lines().collect();
    let third = lines.len() / 3;
    let part =
        |range: std::ops::Range<usize>| lines[range].iter().map(|l| format!("{l}\n")).collect::<String>();
    let parts = [part(0..third), part(third..2 * third), part(2 * third..lines.len())];
    for (i, p) in parts.iter().enumerate() {
        std::fs::write(d.join(format!("plain-{i}.eve")), p).expect("write");
    }
    std::fs::write(d.join("rotated-1.eve.gz"), gzip(parts[1].as_bytes())).expect("write");
    // Named without a suffix: the first bytes tell.
    std::fs::write(d.join("rotated-2"), zstd::encode_all(parts[2].as_bytes(), 3).expect("zstd"))
        .expect("write");
    let plain = report(d, &["plain-0.eve", "plain-1.eve", "plain-2.eve"], &[]);
    let mixed = report(d, &["plain-0.eve", "rotated-1.eve.gz", "rotated-2"], &[]);
    assert_eq!(plain.status, 1, "{}", plain.stderr);
    assert_eq!(mixed.status, plain.status, "{}", mixed.stderr);
    assert!(plain.json["totals"]["flows"].as_u64() > Some(100));
    assert_eq!(without_input_files(mixed.json.clone()), without_input_files(plain.json.clone()));
    assert_eq!(mixed.csv, plain.csv);
    // The header names each file by its own bytes.
    let bytes = std::fs::read(d.join("rotated-1.eve.gz")).expect("gz");
    assert_eq!(mixed.json["inputs"][1]["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(mixed.json["inputs"][1]["sha256"], exwatch::report::digest::sha256(&bytes).as_str());
    assert_eq!(mixed.json["inputs"][2]["status"], "read");

    // A truncated archive is read up to the damage, and said to be damaged.
    let whole = gzip(text.as_bytes());
    std::fs::write(d.join("cut.eve.gz"), &whole[..whole.len() * 2 / 3]).expect("write");
    let cut = report(d, &["cut.eve.gz"], &[]);
    assert_eq!(cut.status, 2, "{}", cut.stderr);
    let input = &cut.json["inputs"][0];
    assert_eq!(input["status"], "damaged", "{input}");
    assert!(util::str_of(&input["detail"]).contains("gzip-decompressed stream"), "{input}");
    assert!(input["flows"].as_u64() > Some(0), "{input}");
    assert!(util::str_of(&cut.json["conclusion"]["text"]).contains("cut.eve.gz damaged"));
}

/// Analyses the sample with flow events and `extra` arguments into `dir/name`.
fn sample_log(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    log_of(&util::capture("sample-contoso.pcap"), dir, name, extra)
}

/// Analyses `pcap` with flow events and `extra` arguments into `dir/name`.
fn log_of(pcap: &Path, dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let eve = dir.join(name);
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .arg("analyze")
        .arg(pcap)
        .args(["--flows", "--workers", "1", "--no-progress", "--fail-on", "never", "--eve-log"])
        .arg(&eve)
        .args(extra)
        .output()
        .expect("run exwatch analyze");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    eve
}

fn sha256_of(path: &Path) -> String {
    exwatch::report::digest::sha256(&std::fs::read(path).expect("file"))
}

#[test]
fn analyze_ends_its_log_with_a_stats_event_naming_the_topology_and_policy_it_judged_under() {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = sample_log(dir.path(), "sample.eve", &[]);
    let text = std::fs::read_to_string(&eve).expect("EVE log");
    let last: Value = serde_json::from_str(text.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["event_type"], "stats", "{last}");
    assert_eq!(
        last["policy"]["topology_sha256"],
        sha256_of(&util::repo().join("rules/topology.toml")).as_str()
    );
    assert_eq!(
        last["policy"]["policy_sha256"],
        sha256_of(&util::repo().join("rules/exchange.toml")).as_str()
    );
    assert_eq!(text.matches("\"event_type\":\"stats\"").count(), 1);
    // So a report from the log knows the capture's health.
    let made = report(dir.path(), &["sample.eve"], &[]);
    assert_eq!(made.json["health"]["stats"]["packets"], 5044, "{}", made.json["health"]);
    assert_eq!(
        made.json["inputs"][0]["judged_under"][0]["topology_sha256"],
        last["policy"]["topology_sha256"]
    );
}

#[test]
fn events_of_another_topology_or_policy_and_a_foreign_baseline_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    // The same roles, other bytes: another file, so another SHA-256.
    let topology = d.join("site.toml");
    let example = std::fs::read_to_string(util::repo().join("rules/topology.toml")).expect("topology");
    std::fs::write(&topology, format!("{example}\n# the site's copy\n")).expect("write");
    let policy = d.join("policy.toml");
    let rules = std::fs::read_to_string(util::repo().join("rules/exchange.toml")).expect("policy");
    std::fs::write(&policy, format!("{rules}\n# the site's copy\n")).expect("write");
    sample_log(d, "site.eve", &["--topology", topology.to_str().unwrap()]);
    sample_log(d, "policy.eve", &["--policy", policy.to_str().unwrap()]);

    let (status, stderr) = refused(d, &["site.eve"]);
    assert_eq!(status, 2, "{stderr}");
    let line = stderr.lines().find(|l| l.contains("site.eve")).unwrap_or_else(|| panic!("{stderr}"));
    for needle in [sha256_of(&topology), sha256_of(&util::repo().join("rules/topology.toml"))] {
        assert!(line.contains(&needle), "{line}");
    }
    assert!(line.contains("topology.toml (built in)") && line.contains("--allow-mixed"), "{line}");
    // Given the topology it was judged under, the log is accepted.
    let same = report(d, &["site.eve"], &["--topology", topology.to_str().unwrap()]);
    assert_eq!(same.status, 1, "{}", same.stderr);

    let (status, stderr) = refused(d, &["policy.eve"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&sha256_of(&policy)) && stderr.contains("policy SHA-256"), "{stderr}");

    let allowed = report(d, &["site.eve", "policy.eve"], &["--allow-mixed"]);
    assert_eq!(allowed.status, 1, "{}", allowed.stderr);
    let notes = allowed.json["health"]["notes"].to_string();
    assert!(
        notes.contains("Mixed inputs (--allow-mixed): site.eve") && notes.contains("policy.eve"),
        "{notes}"
    );

    // A baseline of another organization.
    std::fs::write(d.join("contoso.json"), std::fs::read(d.join("report.json")).expect("report"))
        .expect("copy");
    let fabrikam = d.join("fabrikam.toml");
    std::fs::write(&fabrikam, example.replace("name = \"contoso\"", "name = \"fabrikam\"")).expect("write");
    let foreign = ["--topology", fabrikam.to_str().unwrap(), "--allow-mixed"];
    let base = report(d, &["site.eve"], &foreign);
    assert_eq!(base.json["organization"], "fabrikam");
    std::fs::rename(d.join("report.json"), d.join("fabrikam.json")).expect("move");
    let (status, stderr) =
        refused(d, &["policy.eve", "--policy", policy.to_str().unwrap(), "--baseline", "fabrikam.json"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("fabrikam.json: a report of organization \"fabrikam\""), "{stderr}");
    let allowed = report(
        d,
        &["policy.eve"],
        &["--policy", policy.to_str().unwrap(), "--baseline", "fabrikam.json", "--allow-mixed"],
    );
    assert_eq!(allowed.status, 1, "{}", allowed.stderr);
    assert!(allowed.json["changes"].is_object());
    // The same organization's baseline needs no flag.
    let ours =
        report(d, &["policy.eve"], &["--policy", policy.to_str().unwrap(), "--baseline", "contoso.json"]);
    assert_eq!(ours.status, 1, "{}", ours.stderr);
}

/// The findings-over-time picture is labelled with the header's capture range.
#[test]
fn the_timelines_labels_are_the_headers_capture_range() {
    let dir = tempfile::tempdir().expect("temp dir");
    sample_log(dir.path(), "sample.eve", &[]);
    let made = report(dir.path(), &["sample.eve"], &[]);
    let when =
        |key: &str| util::str_of(&made.json["capture"][key]).trim_end_matches("+0000").replacen('T', " ", 1);
    let at = made.html.find("aria-label=\"findings over time\"").expect("the timeline");
    let picture = &made.html[at..at + made.html[at..].find("</svg>").expect("its end")];
    let labels: Vec<&str> =
        picture.split("class=\"axis\">").skip(1).map(|t| &t[..t.find('<').expect("text")]).collect();
    assert_eq!(labels[labels.len() - 2..], [format!("{} UTC", when("first")), when("last")], "{labels:?}");
}

/// The summary JSON's `files[]`: each capture's path, status (the words of the report's
/// `inputs[].status`), detail, packets and flows, whether the files are analysed as
/// captures of their own or read as one stream.
#[test]
fn the_summary_names_each_files_status_packets_and_flows() {
    let dir = good_damaged_and_empty();
    let d = dir.path();
    let paths = [d.join("good.pcap"), d.join("damaged.pcap"), d.join("empty.pcap")];
    let files: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    for extra in [&["--fail-on", "never"][..], &["--fail-on", "never", "--continuous", "--workers", "2"]] {
        let run = util::analyze(&files, extra);
        assert_eq!(run.status, 2, "{extra:?}: {}", run.stderr);
        let summary = run.summary.expect("summary");
        let listed = summary["files"].as_array().unwrap_or_else(|| panic!("files[]: {summary}"));
        let got: Vec<(&str, &str, u64, u64)> = listed
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap_or_default(),
                    f["status"].as_str().unwrap_or_default(),
                    f["packets"].as_u64().unwrap_or(u64::MAX),
                    f["flows"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect();
        let path = |i: usize| paths[i].to_str().expect("utf-8");
        assert_eq!(
            got,
            [
                (path(0), "read", records(&paths[0]), 5),
                (path(1), "damaged", records(&d.join("whole.pcap")) - 1, 8),
                (path(2), "not_a_capture", 0, 0),
            ],
            "{extra:?}: {summary}"
        );
        assert_eq!(listed[0]["detail"], Value::Null);
        assert!(util::str_of(&listed[1]["detail"]).starts_with("damaged at record "), "{}", listed[1]);
        assert!(listed[2]["detail"].is_string(), "{}", listed[2]);
        let read: u64 = got.iter().map(|f| f.2).sum();
        assert_eq!(summary["packets"]["read"].as_u64(), Some(read), "{extra:?}: the files add up to the run");
    }
}
