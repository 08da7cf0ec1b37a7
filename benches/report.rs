//! Report throughput: `exwatch report` over an EVE log of a million flow events (and the
//! alerts of their findings), written by `output::eve` itself so the lines are exactly
//! what a sensor writes.
//!
//! `cargo bench --bench report` (`EXWATCH_BENCH_EVENTS` for another number of flows).
//! Best of a few passes, as the replay bench does. Cases:
//! - `parse`: every line through `report::eve_input::parse_line`, one thread;
//! - `build`: `report::build` end to end (read, hash, parse, dedup, aggregate, finish);
//! - `render`: the HTML, JSON and CSV of the report built.

use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exwatch::decode::{proto, Tuple};
use exwatch::flow::{Confidence, Direction, Flow, FlowKey};
use exwatch::output::eve;
use exwatch::policy::{Engine, Facts, Policy, Topology};
use exwatch::report::{self, eve_input, model::FileRef, Meta};
use exwatch::time::Ts;

const DEFAULT_FLOWS: u64 = 1_000_000;
const RUNS: usize = 3;

fn main() {
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        eprintln!("report: ignoring argument {arg:?}");
    }
    let flows = match std::env::var("EXWATCH_BENCH_EVENTS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_EVENTS={v:?} is not a flow count")),
        Err(_) => DEFAULT_FLOWS,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let started = Instant::now();
    let (path, events) = write_log(&engine, dir.path(), flows).expect("writing the EVE log");
    let bytes = std::fs::metadata(&path).expect("EVE log").len();
    println!(
        "report: EVE log of {events} events ({flows} flow events and their alerts), {:.1} MB, written in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let (parse, parsed) = best(|| {
        let reader = BufReader::with_capacity(1 << 16, std::fs::File::open(&path).expect("open"));
        let mut n = 0u64;
        for line in reader.split(b'\n') {
            let line = line.expect("read");
            if matches!(eve_input::parse_line(&line), eve_input::Parsed::Record(_)) {
                n += 1;
            }
        }
        n
    });
    assert_eq!(parsed, events, "every line is a record");
    line("parse", parse, events, bytes);

    let meta = || Meta {
        policy: FileRef { file: "rules/exchange.toml".into(), sha256: String::new() },
        topology: FileRef { file: "rules/topology.toml".into(), sha256: String::new() },
    };
    let (build, built) = best(|| {
        report::build(
            Arc::clone(&engine.policy),
            Arc::clone(&engine.topology),
            meta(),
            std::slice::from_ref(&path),
            None,
            (false, None),
        )
        .expect("report")
    });
    assert_eq!(built.totals.flows, flows, "every flow counted once");
    line("build", build, events, bytes);
    if let Some(peak) = peak_memory() {
        println!("report: peak resident memory {peak} (the log is {:.0} MB)", bytes as f64 / 1e6);
    }

    let ((render, _), size) = best(|| {
        let html = report::html::render(&built);
        let json = report::json::render(&built);
        let csv = report::csv::render(&built);
        black_box(html.len() + json.len() + csv.len())
    });
    println!(
        "report: {:<8} {:>8.3} s  ({:.1} KB of HTML, JSON and CSV)",
        "render",
        render.as_secs_f64(),
        size as f64 / 1e3
    );
}

fn line(name: &str, (took, cpu): (Duration, f64), events: u64, bytes: u64) {
    let secs = took.as_secs_f64();
    println!(
        "report: {name:<8} {secs:>8.3} s  {:>10.0} events/s  {:>7.1} MB/s  ({cpu:.3} s of CPU a pass)",
        events as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// CPU seconds (user and system, all threads) the process has used so far: with the
/// wall time, it tells a slow pass from a machine busy with other work.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |usage| {
        (usage.user_time().num_microseconds() + usage.system_time().num_microseconds()) as f64 / 1e6
    })
}

/// The process's peak resident set (`VmHWM`), where /proc tells it.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_string())
}

/// The fastest of a few passes (wall time), with the CPU time of a pass on average.
fn best<T>(mut run: impl FnMut() -> T) -> ((Duration, f64), T) {
    let mut fastest = Duration::MAX;
    let mut last = None;
    let cpu = cpu_seconds();
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = run();
        fastest = fastest.min(started.elapsed());
        last = Some(out);
    }
    let cpu = (cpu_seconds() - cpu) / RUNS as f64;
    ((fastest, cpu), last.expect("at least one run"))
}

fn engine() -> Engine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = Policy::load(&root.join("rules/exchange.toml")).expect("policy");
    let topology = Topology::load(&root.join("rules/topology.toml")).expect("topology");
    Engine::new(Arc::new(policy), Arc::new(topology), 100_000)
}

/// Writes `flows` flow events (and an alert for each finding) of a site shaped like the
/// example organization: many clients on the client ports, server-to-server traffic,
/// DNS, and a share of violations and advisories. Returns the path and the event count.
fn write_log(engine: &Engine, dir: &Path, flows: u64) -> std::io::Result<(PathBuf, u64)> {
    let path = dir.join("eve.json");
    let mut out = BufWriter::new(std::fs::File::create(&path)?);
    let mailbox = [[10, 10, 1, 11], [10, 10, 1, 12], [10, 10, 2, 11]].map(v4);
    let dcs = [[10, 10, 0, 5], [10, 10, 0, 6]].map(v4);
    let mut line = Vec::with_capacity(1024);
    let mut events = 0;
    let t0 = 1_795_755_314_000_000_000u64;
    for i in 0..flows {
        let m = mailbox[(i % 3) as usize];
        let client = v4([10, 20, (i >> 8 & 0x3f) as u8, (i & 0xff) as u8]);
        let external = v4([198, 51, 100, (i % 251) as u8]);
        let (src, dst, dport, protocol) = match i % 20 {
            0..=9 => (client, m, 443, proto::TCP),
            10 => (client, m, 80, proto::TCP),
            11 => (client, m, 993, proto::TCP),
            12 => (external, m, 443, proto::TCP),
            13 => (external, m, 3389, proto::TCP),
            14 => (m, dcs[(i % 2) as usize], 389, proto::TCP),
            15 => (m, mailbox[((i + 1) % 3) as usize], 64327, proto::TCP),
            16 => (m, v4([10, 10, 0, 53]), 53, proto::UDP),
            17 => (m, external, 25, proto::TCP),
            18 => (v4([172, 16, 0, 25]), m, 25, proto::TCP),
            _ => (client, v4([10, 30, 0, (i % 200) as u8]), 445, proto::TCP),
        };
        let sport = 1024 + (i % 60_000) as u16;
        let orig = Tuple { src, dst, sport, dport, proto: protocol };
        let start = Ts(t0 + i * 200_000);
        let judgement = engine.judge(&Facts {
            orig: src,
            resp: dst,
            resp_port: dport,
            proto: protocol,
            ts: start,
            plaintext: false,
        });
        let mut flow =
            Flow::new(FlowKey::of(&orig), orig, Direction::Observed, i, start, Default::default(), judgement);
        flow.pkts = [6 + i % 5, 4 + i % 7];
        flow.bytes = [600 + i % 1500, 2000 + i % 40_000];
        flow.last = Ts(start.0 + 50_000_000 + (i % 1000) * 1_000_000);
        line.clear();
        if let Some(rule) = flow.rule() {
            let verdict = engine.policy.rules[rule].verdict;
            if verdict.is_finding() {
                eve::write_alert(
                    &mut line,
                    engine,
                    start,
                    &flow,
                    (verdict, Confidence::High),
                    rule,
                    (None, None),
                );
                events += 1;
            }
        }
        eve::write_flow(&mut line, engine, &flow, exwatch::flow::EndReason::Timeout);
        events += 1;
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok((path, events))
}

fn v4(octets: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(octets))
}
