//! What a flood of findings costs in EVE bytes, with the alert bound on and off, with
//! and without `--flows` (every flow, never bounded, or `--flows=in-scope`, bounded like
//! the alerts): `cargo bench --bench bound` (`EXWATCH_BENCH_ALERT_FLOOD` sets
//! the number of spoofed SYNs, a million by default).
//!
//! The capture is `testkit::synth::alerts::alert_flood`: spoofed SYNs from the Internet
//! at one Mailbox port, a 1,000-port scan of the Edge among them and two unrelated
//! violations. Each case is one run of the exwatch binary writing its EVE log to a file;
//! the line is its time, the lines and bytes written, and the bytes per million packets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use exwatch::testkit::synth::{alerts, wire::PcapWriter};

const DEFAULT_SYNS: u64 = 1_000_000;
const SCANNED_PORTS: u64 = 1_000;

fn main() {
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        eprintln!("bound: ignoring argument {arg:?}");
    }
    let syns = match std::env::var("EXWATCH_BENCH_ALERT_FLOOD") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_ALERT_FLOOD={v:?} is not a SYN count")),
        Err(_) => DEFAULT_SYNS,
    };
    let dir = target().join("bench-data");
    std::fs::create_dir_all(&dir).expect("bench-data directory");
    let pcap = dir.join(format!("alert-flood-{syns}.pcap"));
    if !pcap.exists() {
        let partial = pcap.with_extension("pcap.partial");
        let file =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial).expect("create"));
        let mut writer = PcapWriter::new(file, 1).expect("pcap header");
        alerts::alert_flood(syns, SCANNED_PORTS, |ts, frame| writer.write(ts, frame, frame.len() as u32))
            .expect("writing the flood");
        std::io::Write::flush(&mut writer.into_inner()).expect("flush");
        std::fs::rename(&partial, &pcap).expect("rename");
    }
    let packets = syns + SCANNED_PORTS + 2;
    let capture_bytes = std::fs::metadata(&pcap).expect("capture").len();
    println!(
        "bound: {packets} packets ({syns} spoofed SYNs at one Mailbox port, a {SCANNED_PORTS}-port scan, 2 violations), {:.1} MB of capture",
        capture_bytes as f64 / 1e6
    );
    for (name, extra) in [
        ("bound on", &[][..]),
        ("bound off", &["--no-aggregate"][..]),
        ("bound on, --flows", &["--flows"][..]),
        ("bound off, --flows", &["--no-aggregate", "--flows"][..]),
        ("bound on, in-scope", &["--flows=in-scope"][..]),
    ] {
        let eve = dir.join("alert-flood.eve.json");
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_exwatch"))
            .arg("analyze")
            .arg(&pcap)
            .arg("--eve-log")
            .arg(&eve)
            .arg("--no-progress")
            .args(extra)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running exwatch");
        let secs = started.elapsed().as_secs_f64();
        assert!(status.code().is_some_and(|c| c < 2), "exwatch failed: {status}");
        let (lines, bytes) = measure(&eve);
        println!(
            "  {name:<20} {secs:>7.3} s  {:>9} alert lines {:>9} flow lines {:>12} EVE bytes  {:>12.0} bytes per million packets",
            lines.0,
            lines.1,
            bytes,
            bytes as f64 * 1e6 / packets as f64
        );
        let _ = std::fs::remove_file(&eve);
    }
}

/// ((alert lines, flow lines), bytes) of an EVE log.
fn measure(eve: &Path) -> ((u64, u64), u64) {
    let text = std::fs::read_to_string(eve).expect("EVE log");
    let alerts = text.lines().filter(|l| l.contains("\"event_type\":\"alert\"")).count() as u64;
    let flows = text.lines().filter(|l| l.contains("\"event_type\":\"flow\"")).count() as u64;
    ((alerts, flows), text.len() as u64)
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from)
}
