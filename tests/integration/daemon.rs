//! The daemon kit (packaging/) as an operator installs it (issue 22): the units verify
//! on the installed layout, a configuration error is not restarted forever, and the EVE
//! log is rotated by size between the daily logrotate runs.

use std::path::Path;
use std::process::Command;

use crate::util::{self, exwatch};

fn packaging(name: &str) -> String {
    std::fs::read_to_string(util::repo().join("packaging").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Copies `from` to `root` + `to`, making the directories.
fn install(root: &Path, from: &Path, to: &str) {
    let at = root.join(to.trim_start_matches('/'));
    std::fs::create_dir_all(at.parent().expect("a directory")).expect("make directories");
    std::fs::copy(from, &at).unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), at.display()));
}

/// The kit installed where docs/operations.md says, in a root of its own beside the
/// system's units and the programs the units run: `systemd-analyze verify --root` then
/// checks the units as systemd would load them there, their commands included.
#[test]
fn the_units_verify_on_the_installed_layout() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("daemon::the_units_verify_on_the_installed_layout: skipped: no systemd-analyze");
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    let units = r.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).expect("units dir");
    for entry in std::fs::read_dir("/usr/lib/systemd/system").expect("the system's units") {
        let entry = entry.expect("entry");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), units.join(entry.file_name())).expect("copy unit");
        }
    }
    install(r, Path::new(env!("CARGO_BIN_EXE_exwatch")), "/usr/bin/exwatch");
    install(r, Path::new("/bin/kill"), "/bin/kill");
    install(r, Path::new("/usr/sbin/logrotate"), "/usr/sbin/logrotate");
    let kit = util::repo().join("packaging");
    for (file, at) in [
        ("exwatch.service", "/etc/systemd/system/exwatch.service"),
        ("exwatch-logrotate.service", "/etc/systemd/system/exwatch-logrotate.service"),
        ("exwatch-logrotate.timer", "/etc/systemd/system/exwatch-logrotate.timer"),
        ("live.toml", "/etc/exwatch/live.toml"),
        ("exwatch.logrotate", "/etc/logrotate.d/exwatch"),
    ] {
        install(r, &kit.join(file), at);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .args(["exwatch.service", "exwatch-logrotate.service", "exwatch-logrotate.timer"])
        .output()
        .expect("systemd-analyze verify");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    // A unit whose command is missing from the layout fails: the check is real.
    std::fs::remove_file(r.join("usr/sbin/logrotate")).expect("remove");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .arg("exwatch-logrotate.service")
        .output()
        .expect("systemd-analyze verify");
    assert!(!out.status.success(), "verify passed without /usr/sbin/logrotate");
}

/// A configuration error exits 2, which the unit does not restart; any other failure is
/// restarted at most 5 times in 10 minutes.
#[test]
fn a_configuration_error_is_not_restarted_forever() {
    let unit = packaging("exwatch.service");
    for line in [
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StartLimitIntervalSec=10min",
        "StartLimitBurst=5",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let start = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let mut args: Vec<&str> = start.split_whitespace().skip(1).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("live.toml");
    let shipped = packaging("live.toml");
    std::fs::write(&config, format!("{shipped}\nbogus_key = 1\n")).expect("write");
    let at = args.iter().position(|a| *a == "--config").expect("--config") + 1;
    let path = config.to_str().expect("UTF-8 path");
    args[at] = path;
    let (status, _, stderr) = exwatch(&args);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("bogus_key"), "{stderr}");
}

/// The shipped snippet, run as the timer runs it: a log past maxsize is rotated although
/// a day has not passed, a small one is not. The sizes are scaled down (1G to 1k), the
/// paths moved into a temp dir, and the owner and the signal to the service left out.
#[test]
fn logrotate_rotates_the_log_by_size_between_daily_runs() {
    if Command::new("logrotate").arg("--version").output().is_err() {
        eprintln!("daemon::logrotate_rotates_the_log_by_size_between_daily_runs: skipped: no logrotate");
        return;
    }
    let snippet = packaging("exwatch.logrotate");
    assert!(snippet.lines().any(|l| l.trim() == "maxsize 1G"), "{snippet}");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("eve.json");
    let config: String = snippet
        .replace("/var/log/exwatch/eve.json", log.to_str().expect("UTF-8 path"))
        .replace("maxsize 1G", "maxsize 1k")
        .lines()
        .filter(|l| !l.trim_start().starts_with("create ") && !l.contains("systemctl"))
        .map(|l| format!("{l}\n"))
        .collect();
    let conf = dir.path().join("exwatch.logrotate");
    std::fs::write(&conf, config).expect("write config");
    let state = dir.path().join("state");
    let run = || {
        let out =
            Command::new("logrotate").arg("--state").arg(&state).arg(&conf).output().expect("logrotate");
        assert!(out.status.success(), "logrotate: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(&log, "{}\n").expect("write");
    run();
    assert!(!dir.path().join("eve.json.1").exists(), "a small log is left for the daily run");
    std::fs::write(&log, "{\"event_type\":\"flow\"}\n".repeat(100)).expect("write");
    run();
    assert!(dir.path().join("eve.json.1").exists(), "a log past maxsize is rotated the same day");
}
