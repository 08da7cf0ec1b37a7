//! Helpers shared by the integration tests: run the binary, read its EVE output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use exwatch::testkit::synth::Scenario;
use serde_json::Value;

/// Parses a socket address literal of a test.
pub fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|_| panic!("bad address literal {text}"))
}

/// The repository root (where captures/ and rules/ are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under captures/.
pub fn capture(name: &str) -> PathBuf {
    repo().join("captures").join(name)
}

/// What one run of `exwatch` left behind.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    /// The EVE log as written, one line per event.
    pub lines: Vec<String>,
    pub events: Vec<Value>,
    pub stderr: String,
    pub summary: Option<Value>,
}

impl Run {
    /// Whether every input was read whole: status 0 or 1, or 2 only because no flow
    /// touched the topology's Mailbox or Edge servers (a real capture of another
    /// network, judged with the example topology).
    pub fn read_whole(&self) -> bool {
        let foreign = self.status == 2
            && self.stderr.contains("no flow touched a Mailbox or Edge address")
            && self.summary.as_ref().is_some_and(|s| s["errors"].as_array().is_some_and(|e| e.is_empty()));
        matches!(self.status, 0 | 1) || foreign
    }

    pub fn alerts(&self) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event_type"] == "alert").collect()
    }

    pub fn flows(&self) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event_type"] == "flow").collect()
    }

    /// (verdict, finding id, src, dest) of every alert, sorted: src and dest are the
    /// flow's originator and responder (`policy`'s, whichever way the packet that fired
    /// went). The finding id is the evidence for restrictions and the rule otherwise.
    pub fn findings(&self) -> Vec<(String, String, String, String)> {
        let mut out: Vec<_> = self
            .alerts()
            .iter()
            .map(|e| {
                let p = &e["policy"];
                let id = p.get("evidence").unwrap_or(&p["rule"]);
                (
                    str_of(&p["verdict"]),
                    str_of(id),
                    endpoint(&p["src_ip"], &p["src_port"]),
                    endpoint(&p["dest_ip"], &p["dest_port"]),
                )
            })
            .collect();
        out.sort();
        out
    }
}

pub fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// `ip:port` as SocketAddr formats it (brackets for IPv6), or the bare address.
pub fn endpoint(ip: &Value, port: &Value) -> String {
    let ip = str_of(ip);
    match port.as_u64() {
        Some(port) => match ip.parse::<std::net::IpAddr>() {
            Ok(addr) => SocketAddr::new(addr, port as u16).to_string(),
            Err(_) => format!("{ip}:{port}"),
        },
        None => ip,
    }
}

/// A line with its `pcap_filename` cut to the file's name: the directory is a
/// temporary one, or wherever the repository was checked out.
pub fn file_name_only(line: &str) -> String {
    const KEY: &str = "\"pcap_filename\":\"";
    let Some(at) = line.find(KEY).map(|at| at + KEY.len()) else {
        return line.to_string();
    };
    let end = at + line[at..].find('"').expect("closing quote");
    let name = line[at..end].rsplit('/').next().unwrap_or_default();
    format!("{}{name}{}", &line[..at], &line[end..])
}

/// A line without its `pcap_filename`: for comparing runs that read the same packets
/// from files of other names (compressed, standard input).
pub fn without_file(line: &str) -> String {
    const KEY: &str = "\"pcap_filename\":\"";
    let Some(at) = line.find(KEY) else {
        return line.to_string();
    };
    let end = at + KEY.len() + line[at + KEY.len()..].find('"').expect("closing quote") + 1;
    let end = if line[end..].starts_with(',') { end + 1 } else { end };
    format!("{}{}", &line[..at], &line[end..])
}

/// Runs `exwatch analyze` on `files` with extra arguments; events go to a file.
pub fn analyze(files: &[&Path], extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.json");
    let summary = dir.path().join("summary.json");
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .arg("analyze")
        .args(files)
        .arg("--eve-log")
        .arg(&eve)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--no-progress")
        .args(extra)
        .output()
        .expect("run exwatch");
    let lines: Vec<String> =
        std::fs::read_to_string(&eve).unwrap_or_default().lines().map(String::from).collect();
    let events = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad EVE line {l}: {e}")))
        .collect();
    let summary = std::fs::read(&summary).ok().and_then(|b| serde_json::from_slice(&b).ok());
    Run {
        status: output.status.code().unwrap_or(-1),
        lines,
        events,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        summary,
    }
}

/// Writes `scenario` to a temporary pcap and analyses it with `extra` arguments.
pub fn analyze_scenario(scenario: &Scenario, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("scenario.pcap");
    scenario.write_pcap(&pcap).expect("write scenario");
    analyze(&[&pcap], extra)
}

/// Writes a topology file into a temp dir that lives as long as the returned guard.
pub fn topology_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("topology.toml");
    std::fs::write(&path, text).expect("write topology");
    (dir, path)
}

/// Runs the binary with arbitrary arguments: (status, stdout, stderr).
pub fn exwatch(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_exwatch")).args(args).output().expect("run exwatch");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
