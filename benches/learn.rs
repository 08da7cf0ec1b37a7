//! `exwatch learn` beside `exwatch analyze`, on the same generated capture: learning
//! shares the pipeline (decode, flow tables) and adds an observer of ended flows, so it
//! should run at analyze's speed; the same observer attached to analyze (its warnings of
//! unlisted hosts) should not slow analyze down.
//!
//! `cargo bench --bench learn` (`EXWATCH_BENCH_PACKETS`, default 1,000,000, sets the
//! capture's size). The capture is traffic of the two-site organization of
//! `tests/fixtures/learn/two-sites.toml`, written by `synth::site` once and cached
//! under target/bench-data. Cases run interleaved, one pass of each in turn, so a
//! machine that slows down during the run slows every case alike; the median of the
//! passes is printed, in wall time and in CPU time of all threads (on a machine shared
//! with other work, CPU time says more of the cost).
//!
//! Cases:
//! - `analyze`: `pipeline::analyze`, EVE lines formatted and thrown away, no observer;
//! - `analyze+noop`: the same with an observer that does nothing: what handing every
//!   ended flow to the writer thread costs, apart from the learner;
//! - `analyze+warn`: the same with the learner attached and its warnings computed at
//!   the end, as `exwatch analyze` runs;
//! - `learn`: `pipeline::analyze` with no EVE output and the learner, then the draft
//!   written as TOML, as `exwatch learn` runs;
//! - and the learner alone, fed the run's ended flows from memory: its cost per flow.

use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exwatch::counters::Counter;
use exwatch::flow::{Event, Flow};
use exwatch::learn::{self, Draft, Learner};
use exwatch::output::Sink;
use exwatch::pipeline::{self, Observer, Outputs, Settings};
use exwatch::policy::{builtin, Engine, Topology, DEFAULT_MAX_SMTP_SENDERS};
use exwatch::testkit::synth::{self, wire::PcapWriter, OrgOptions};

const DEFAULT_PACKETS: u64 = 1_000_000;
const SEED: u64 = 1;
/// Passes of each case; the median is printed.
const RUNS: usize = 7;
const FIXTURE: &str = "tests/fixtures/learn/two-sites.toml";

fn main() {
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        eprintln!("learn: ignoring argument {arg:?}");
    }
    let packets = match std::env::var("EXWATCH_BENCH_PACKETS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_PACKETS={v:?} is not a packet count")),
        Err(_) => DEFAULT_PACKETS,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let topology = Arc::new(Topology::load(&root.join(FIXTURE)).expect("the fixture topology"));
    let path = capture(&topology, packets).expect("generating the capture");
    let policy = Arc::new(builtin::policy().expect("the bundled policy"));
    let engine = Arc::new(Engine::new(policy, Arc::clone(&topology), DEFAULT_MAX_SMTP_SENDERS));
    let settings = Settings::default();
    let files = [path.clone()];

    type Case<'a> = (&'a str, Box<dyn Fn() -> (u64, String) + 'a>);
    let cases: Vec<Case<'_>> = vec![
        (
            "analyze",
            Box::new(|| {
                let report = pipeline::analyze(
                    Arc::new(engine.split(1)),
                    &files,
                    &settings,
                    Outputs::eve(&Sink::Discard),
                    &|_| {},
                )
                .expect("analyze");
                (report.counters[Counter::Frames], format!("alerts={}", report.counters[Counter::Violations]))
            }),
        ),
        (
            "analyze+noop",
            Box::new(|| {
                let mut noop = Noop;
                let outputs = Outputs { sink: &Sink::Discard, observer: Some(&mut noop) };
                let report =
                    pipeline::analyze(Arc::new(engine.split(1)), &files, &settings, outputs, &|_| {})
                        .expect("analyze");
                (report.counters[Counter::Frames], "flows delivered, nothing done".into())
            }),
        ),
        (
            "analyze+warn",
            Box::new(|| {
                let mut learner = Learner::new(learn::Settings::default());
                let outputs = Outputs { sink: &Sink::Discard, observer: Some(&mut learner) };
                let report =
                    pipeline::analyze(Arc::new(engine.split(1)), &files, &settings, outputs, &|_| {})
                        .expect("analyze");
                let warnings = learn::unlisted(&learner, &topology);
                (report.counters[Counter::Frames], format!("warnings={}", warnings.len()))
            }),
        ),
        (
            "learn",
            Box::new(|| {
                let mut learner = Learner::new(learn::Settings::default());
                let outputs = Outputs { sink: &Sink::Off, observer: Some(&mut learner) };
                let report =
                    pipeline::analyze(Arc::new(engine.split(1)), &files, &settings, outputs, &|_| {})
                        .expect("learn");
                let draft = Draft::new(&learner);
                let toml = draft.to_toml("bench");
                (
                    report.counters[Counter::Frames],
                    format!("hosts={} toml={}B", draft.hosts.len(), toml.len()),
                )
            }),
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut notes = vec![String::new(); cases.len()];
    let mut frames = 0;
    for _ in 0..RUNS {
        for (i, (_, case)) in cases.iter().enumerate() {
            let (started, cpu_started) = (Instant::now(), cpu_time());
            let (n, note) = black_box(case());
            times[i].push(started.elapsed());
            cpu[i].push(cpu_time().saturating_sub(cpu_started));
            (frames, notes[i]) = (n, note);
        }
    }
    // The learner alone, on the run's ended flows: its cost per flow on the writer thread.
    let flows = ended_flows(&engine, &files, &settings);
    let per_flow = {
        let mut passes: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let mut learner = Learner::new(learn::Settings::default());
                let started = Instant::now();
                for flow in &flows {
                    learner.flow(flow);
                }
                black_box(&learner);
                started.elapsed()
            })
            .collect();
        passes.sort();
        passes[passes.len() / 2].as_secs_f64() / flows.len().max(1) as f64
    };
    println!(
        "learn: {frames} packets of {FIXTURE} ({}), {} workers, median of {RUNS} interleaved passes",
        path.display(),
        settings.workers
    );
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    let base = median(&mut times[0].clone()).as_secs_f64();
    let cpu_base = median(&mut cpu[0].clone()).as_secs_f64().max(1e-9);
    for (i, (name, _)) in cases.iter().enumerate() {
        let secs = median(&mut times[i]).as_secs_f64();
        let cpu_secs = median(&mut cpu[i]).as_secs_f64();
        println!(
            "  {name:<13} {secs:>8.3} s {:>12.0} packets/s {:>6.3}x analyze; cpu {cpu_secs:>6.3} s {:>6.3}x  {}",
            frames as f64 / secs,
            secs / base,
            cpu_secs / cpu_base,
            notes[i]
        );
    }
    println!(
        "  the learner alone: {:.0} ns per ended flow ({} flows, {:.1} flows per 1,000 packets)",
        per_flow * 1e9,
        flows.len(),
        flows.len() as f64 * 1000.0 / frames.max(1) as f64
    );
}

/// An observer that does nothing: what delivering every ended flow to the writer costs.
struct Noop;

impl Observer for Noop {
    fn event(&mut self, _engine: &Engine, event: &Event) {
        black_box(event);
    }
}

/// Every ended flow of a run, as the observer sees them.
fn ended_flows(engine: &Arc<Engine>, files: &[PathBuf], settings: &Settings) -> Vec<Flow> {
    struct Collect(Vec<Flow>);
    impl Observer for Collect {
        fn event(&mut self, _engine: &Engine, event: &Event) {
            if let Event::Flow { flow, .. } = event {
                self.0.push(*flow);
            }
        }
    }
    let mut collect = Collect(Vec::new());
    let outputs = Outputs { sink: &Sink::Off, observer: Some(&mut collect) };
    pipeline::analyze(Arc::new(engine.split(1)), files, settings, outputs, &|_| {})
        .expect("collecting flows");
    collect.0
}

/// CPU time of the process so far (user and system, all threads), from
/// `/proc/self/stat`: on a shared machine it moves less than wall time with the load
/// of others. Zero where the file is missing.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// The capture of the fixture organization, generated on first use under
/// target/bench-data (the name carries seed and size).
fn capture(topology: &Topology, packets: u64) -> io::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("bench-data");
    let path = dir.join(format!("two-sites-seed{SEED}-{packets}.pcap"));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("learn: generating {}", path.display());
    let partial = path.with_extension("pcap.partial");
    let file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial)?);
    let mut writer = PcapWriter::new(file, 1)?;
    let options = OrgOptions { packets, seed: SEED, ..OrgOptions::default() };
    synth::site(topology, &options, |ts, frame| writer.write(ts, frame, frame.len() as u32))?;
    io::Write::flush(&mut writer.into_inner())?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}
