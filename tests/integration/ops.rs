//! What an operator meets around the runs themselves (issue 13): how output errors end a
//! run, the version, the configuration file, completions and the man page, the shipped
//! systemd unit and logrotate snippet.

use std::io::Write;
use std::process::Command;

use crate::util::{capture, exwatch};

/// Offline, an EVE log that cannot be written ends the run with status 2 and a line
/// naming the log (the run can be done again; a live capture counts and goes on).
#[test]
fn analyze_to_a_full_device_exits_2_naming_the_log() {
    let sample = capture("sample-contoso.pcap");
    let (status, _, stderr) = exwatch(&[
        "analyze",
        sample.to_str().expect("UTF-8 path"),
        "--no-progress",
        "--eve-log",
        "/dev/full",
    ]);
    assert_eq!(status, 2, "stderr:\n{stderr}");
    assert!(stderr.contains("/dev/full") && stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The shipped systemd unit passes `systemd-analyze verify` without a word (it exits 0
/// even on unknown keys, so its output must be empty too), and `systemd-analyze security`
/// rates it well: only the two capture capabilities, a dedicated user, the system
/// read-only. Skipped, saying why, where systemd-analyze is missing.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(crate::util::repo().join("packaging/exwatch.service")).expect("unit");
    for line in [
        "User=exwatch",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "LogsDirectory=exwatch",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "ops::systemd_unit_verifies_and_is_hardened: skipped: no systemd-analyze"
        );
        return;
    }
    // verify wants ExecStart's program to exist: the one just built stands in for it.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("exwatch.service");
    std::fs::write(&path, unit.replace("/usr/bin/exwatch", env!("CARGO_BIN_EXE_exwatch")))
        .expect("write unit");
    let out =
        Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().expect("verify");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("security");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}{}", String::from_utf8_lossy(&out.stderr)));
    let _ = writeln!(std::io::stderr(), "ops::systemd-analyze security: exposure {exposure}");
    assert!(exposure <= 2.5, "exposure {exposure} (1.8 when the unit was written):\n{report}");
}

/// A `live --config` file in a temp dir, and the run of `exwatch live --config F extra...`.
fn live_with_config(contents: &str, extra: &[&str]) -> (String, i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("live.toml");
    std::fs::write(&path, contents).expect("write config");
    let path = path.to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["live", "--config", &path];
    args.extend(extra);
    let (status, _, stderr) = exwatch(&args);
    (path, status, stderr)
}

/// An interface name that does not exist: `live` fails on it (status 2, naming it) only
/// once every setting is valid, so reaching it shows the configuration was taken.
fn no_interface(tag: &str) -> String {
    format!("exwno{tag}{}", std::process::id() % 10_000)
}

#[test]
fn live_config_unknown_key_names_file_line_and_key() {
    let (path, status, stderr) =
        live_with_config("interface = \"eth1\"\n\n# a comment\nbogus_key = 1\n", &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&format!("{path}:4: bogus_key: unknown field `bogus_key`")), "{stderr}");
    assert!(stderr.contains("expected one of `interface`"), "lists the valid keys: {stderr}");
}

#[test]
fn live_config_wrong_type_and_bad_value_name_where_they_were_set() {
    let (path, status, stderr) = live_with_config("interface = \"eth1\"\nworkers = \"two\"\n", &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&format!("{path}:2: workers: invalid type")), "{stderr}");

    let (path, status, stderr) = live_with_config("interface = \"eth1\"\nflows = \"some\"\n", &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--flows=some: not `all` or `in-scope`"), "{stderr}");
    assert!(stderr.contains(&format!("(set at {path}:2: flows)")), "{stderr}");

    let (path, status, stderr) = live_with_config("interface = \"eth1\"\n\nsyn_timeout = -1\n", &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--syn-timeout -1: must be a positive number"), "{stderr}");
    assert!(stderr.contains(&format!("(set at {path}:3: syn_timeout)")), "{stderr}");

    let (path, status, stderr) = live_with_config("interface = \"eth1\"\nstats_interval = [1]\n", &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&format!("{path}:2: stats_interval: invalid type")), "{stderr}");
}

/// A flow cap past what a table can index is refused; a large one within it runs (its
/// memory is reserved only up to a bound, not for the whole cap).
#[test]
fn max_flows_past_the_table_index_exits_2_and_a_large_one_runs() {
    let sample = crate::util::repo().join("captures/sample-contoso.pcap");
    let sample = sample.to_str().expect("utf-8");
    let (status, _, stderr) = exwatch(&[
        "analyze",
        sample,
        "--eve-log",
        "/dev/null",
        "--no-progress",
        "--max-flows",
        "100000000000",
    ]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--max-flows 100000000000: at most 4294967294"), "{stderr}");
    let (status, _, stderr) =
        exwatch(&["analyze", sample, "--eve-log", "/dev/null", "--no-progress", "--max-flows", "4000000000"]);
    assert!(status < 2, "{stderr}");
    assert!(stderr.contains("204 tracked"), "{stderr}");
}

/// A setting given both ways: the flag wins; given only in the file, the file's is used.
#[test]
fn live_flags_override_the_config_file() {
    let (from_file, from_flag) = (no_interface("f"), no_interface("c"));
    let config = format!("interface = \"{from_file}\"\nworkers = 0\n");
    let (_, status, stderr) = live_with_config(&config, &["--interface", &from_flag, "--workers", "1"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&from_flag) && !stderr.contains(&from_file), "the flag wins: {stderr}");
    let (_, status, stderr) = live_with_config(&format!("interface = \"{from_file}\"\n"), &[]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&from_file) && stderr.contains("no such interface"), "{stderr}");
}

/// The example shipped beside the systemd unit is a valid configuration (its topology,
/// a site's, is replaced by the example one; the interface by one that does not exist).
#[test]
fn shipped_live_config_is_valid() {
    let example = crate::util::repo().join("packaging/live.toml");
    let topology = crate::util::repo().join("rules/topology.toml");
    let interface = no_interface("s");
    let (status, _, stderr) = exwatch(&[
        "live",
        "--config",
        example.to_str().expect("UTF-8 path"),
        "--topology",
        topology.to_str().expect("UTF-8 path"),
        "--interface",
        &interface,
    ]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains(&interface) && stderr.contains("no such interface"), "{stderr}");
}

/// `--version` names the commit it was built from: the checkout's HEAD when built in
/// one (as CI does, in a clean clone), "unknown" otherwise.
#[test]
fn version_names_the_commit() {
    let (status, stdout, _) = exwatch(&["--version"]);
    assert_eq!(status, 0);
    let head = Command::new("git")
        .arg("-C")
        .arg(crate::util::repo())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let commit = head.unwrap_or_else(|| "unknown".to_string());
    assert_eq!(stdout.trim(), format!("exwatch {} (commit {commit})", env!("CARGO_PKG_VERSION")));
}

/// Completion scripts come from the flags' definitions; bash's parses.
#[test]
fn completions_are_generated_from_the_flags() {
    let (status, script, stderr) = exwatch(&["completions", "bash"]);
    assert_eq!(status, 0, "{stderr}");
    for word in ["--interface", "--config", "--eve-log", "completions", "analyze"] {
        assert!(script.contains(word), "the bash completion lacks {word}");
    }
    let mut bash =
        Command::new("bash").arg("-n").stdin(std::process::Stdio::piped()).spawn().expect("run bash -n");
    bash.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("feed bash");
    assert!(bash.wait().expect("bash").success(), "bash -n refuses the completion script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (status, script, _) = exwatch(&["completions", shell]);
        assert!(status == 0 && script.contains("eve-log"), "{shell}");
    }
    let (status, _, _) = exwatch(&["completions", "tcsh"]);
    assert_eq!(status, 2, "an unknown shell is a usage error");
}

/// The man pages come from the flags' definitions and format without a warning.
#[test]
fn man_pages_are_generated_and_format_cleanly() {
    let (status, page, _) = exwatch(&["man"]);
    assert_eq!(status, 0);
    assert!(page.contains(".TH exwatch 1"), "{page}");
    let (status, live, _) = exwatch(&["man", "live"]);
    assert_eq!(status, 0);
    assert!(live.contains(".TH exwatch-live 1") && live.contains("\\-\\-config"), "{live}");
    let (status, _, stderr) = exwatch(&["man", "nonesuch"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("no such command (one of analyze"), "{stderr}");
    if Command::new("groff").arg("--version").output().is_err() {
        let _ = writeln!(std::io::stderr(), "ops::man_pages: formatting not checked: no groff");
        return;
    }
    for page in [page, live] {
        let mut groff = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run groff");
        groff.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("feed groff");
        let out = groff.wait_with_output().expect("groff");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && warnings.is_empty(), "groff: {warnings}");
    }
}

/// `check --json`: one document with the policy, the topology and its lints, or the
/// error with file, line and key; the exit status as without --json.
#[test]
fn check_json_reports_lints_and_errors() {
    let (status, stdout, _) = exwatch(&["check", "--json"]);
    assert_eq!(status, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(report["version"], 1);
    assert_eq!(report["valid"], true);
    assert_eq!(report["topology"]["builtin_example"], true);
    assert!(report["policy"]["rules"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert_eq!(report["topology"]["lints"], serde_json::json!([]));

    let example = std::fs::read_to_string(crate::util::repo().join("rules/topology.toml")).expect("topology");
    let linted =
        example.replace("edge              = [\"172.16.0.25\"]", "edge = [\"172.16.0.25\", \"172.16.0.26\"]");
    let (_dir, path) = crate::util::topology_file(&linted);
    let (status, stdout, _) = exwatch(&["check", "--json", "--topology", path.to_str().expect("UTF-8")]);
    assert_eq!(status, 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let lint = &report["topology"]["lints"][0];
    assert_eq!(lint["line"], 11, "{report}");
    assert!(lint["message"].as_str().is_some_and(|m| m.contains("172.16.0.26/32")), "{report}");

    let broken = example.replace("\"10.10.0.6\"", "\"10.10.0.300\"");
    let (_dir, path) = crate::util::topology_file(&broken);
    let (status, stdout, stderr) = exwatch(&["check", "--json", "--topology", path.to_str().expect("UTF-8")]);
    assert_eq!(status, 2, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(report["valid"], false);
    let error = &report["errors"][0];
    assert_eq!(error["line"], 12, "{report}");
    assert_eq!(error["key"], "roles.domain_controller", "{report}");
    assert_eq!(error["file"], path.to_str().expect("UTF-8"), "{report}");
    assert!(stderr.contains("topology.toml:12: roles.domain_controller"), "{stderr}");
}

/// Runs exwatch with its standard output a pipe of which only the first line is read
/// (as `| head -1` does; `read_first` false closes it unread): (status, first line, stderr).
fn into_closed_pipe(args: &[&str], read_first: bool) -> (i32, String, String) {
    use std::io::{BufRead, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run exwatch");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    if read_first {
        std::io::BufReader::new(stdout).read_line(&mut first).expect("read a line");
    } else {
        drop(stdout);
    }
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    let status = child.wait().expect("wait").code().unwrap_or(-1);
    (status, first, stderr)
}

/// `analyze --eve-log - | head -1` ends the run quietly: status 0 (not 1 for the
/// findings, not 2 for an error), no "Broken pipe", and the summary still on stderr. The
/// output (the sample with --flows, about 100 KB) is larger than a pipe holds, so exwatch
/// is still writing when the pipe closes. Both ways of reading files are covered.
#[test]
fn analyze_into_a_closed_pipe_ends_quietly_with_status_0() {
    let sample = capture("sample-contoso.pcap");
    let sample = sample.to_str().expect("UTF-8 path");
    for files in [vec![sample], vec![sample, sample]] {
        let mut args = vec!["analyze", "--flows", "--eve-log", "-", "--no-progress"];
        args.extend(&files);
        let (status, first, stderr) = into_closed_pipe(&args, true);
        assert_eq!(status, 0, "{} file(s); stderr:\n{stderr}", files.len());
        let event: serde_json::Value = serde_json::from_str(&first).expect("the first line is an event");
        assert!(event["event_type"].is_string(), "{first}");
        assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
        let said =
            |l: &&str| l.starts_with("exwatch: ") && !l.contains("judging against the built-in example");
        assert!(!stderr.lines().any(|l| said(&l)), "no error line:\n{stderr}");
        assert!(stderr.contains("exwatch summary") && stderr.contains("throughput:"), "{stderr}");
    }
    for args in [&["man"][..], &["check"], &["check", "--json"], &["completions", "bash"]] {
        let (status, _, stderr) = into_closed_pipe(args, false);
        assert_eq!(status, 0, "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// `--summary-json -` writes the summary to standard output; with the EVE log there too
/// it is refused (exit 2), since the two would mix.
#[test]
fn summary_json_dash_is_standard_output() {
    let sample = capture("sample-contoso.pcap");
    let sample = sample.to_str().expect("UTF-8 path");
    let (status, stdout, stderr) =
        exwatch(&["analyze", sample, "--no-progress", "--eve-log", "/dev/null", "--summary-json", "-"]);
    assert_eq!(status, 1, "the sample has violations; stderr:\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("the summary, as JSON");
    assert!(summary["packets"]["read"].as_u64().is_some_and(|n| n > 0), "{summary}");
    assert!(stderr.contains("exwatch summary"), "the text summary still goes to stderr:\n{stderr}");

    let (status, stdout, stderr) = exwatch(&["analyze", sample, "--summary-json", "-"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("--summary-json -"), "{stderr}");
}

/// Errors of a run are said after the summary, each on a line of its own, never inside
/// the summary block.
#[test]
fn errors_come_after_the_summary_not_inside_it() {
    let sample = capture("sample-contoso.pcap");
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pcap");
    for extra in [&[][..], &["--continuous"]] {
        let mut args = vec![
            "analyze",
            "--no-progress",
            "--eve-log",
            "/dev/null",
            sample.to_str().expect("UTF-8"),
            missing.to_str().expect("UTF-8"),
        ];
        args.extend(extra);
        let (status, _, stderr) = exwatch(&args);
        assert_eq!(status, 2, "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        let start = lines.iter().position(|l| l.starts_with("exwatch summary")).expect("summary");
        let end = lines.iter().position(|l| l.starts_with("throughput:")).expect("throughput line");
        let error = lines.iter().position(|l| l.contains("missing.pcap")).expect("the error");
        assert!(error > end, "{extra:?}: the error is inside the summary:\n{stderr}");
        assert!(lines[start..=end].iter().all(|l| !l.starts_with("exwatch:")), "{stderr}");
        assert!(lines[error].starts_with("exwatch: "), "{stderr}");
    }
}
