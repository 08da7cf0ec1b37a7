//! Replay throughput: how far each stage of exwatch is from just reading the capture.
//!
//! `cargo bench --bench replay` (set `EXWATCH_BENCH_PACKETS` and `EXWATCH_BENCH_FLOOD` for a
//! quicker, smaller run; `EXWATCH_BENCH_BULK=3` for larger frames, about 670 bytes on
//! average instead of 470: `exwatch generate --bulk`; `EXWATCH_BENCH_POOL=20000` for the
//! traffic of a busy port instead, that many flows open at once: `exwatch generate --pool`).
//! A custom harness rather than criterion: each case is one pass over a large file, timed
//! in rounds that each read the file first (the floor, then the case: A B A B ...), so the
//! machine's drift hits both alike; a case's figures are the median time of its rounds and
//! the median of its per-round ratio to the floor.
//!
//! Cases, each compared with the first:
//! - `read file`: the bytes read in 1 MiB chunks, like `cat FILE > /dev/null`: the floor
//!   no analysis can beat (the file is in the page cache after the first pass, so this
//!   is memory speed, not disk speed; the capture is dropped from the cache and read
//!   once first, as `benches/page-cache.sh` does, so the floor is that of a file read
//!   from disk, not of one just written);
//! - `libpcap read`, `native read`: every frame handed out by each reader, counted;
//! - `read+decode`: the native reader plus `decode::decode` on every frame, one thread;
//! - `pipeline`: `pipeline::analyze` end to end with 1 worker, then one per core, then
//!   one per core with libpcap's reader;
//! - `4 files`: the same capture cut into 4 consecutive files, as `tcpdump -C` rotates
//!   one, through `pipeline::analyze`: as independent captures by 1 job, then by 2 (or one per
//!   core, up to 4), then in order as one stream (`--continuous`) with one worker per core.

use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exwatch::capture::{FrameSource, Next, PcapFile, Savefile};
use exwatch::counters::Counter;
use exwatch::decode;
use exwatch::flow::Tracker;
use exwatch::output::Sink;
use exwatch::pipeline::{self, FileReader, Outputs, Settings};
use exwatch::policy::{Engine, Policy, Topology, DEFAULT_MAX_SMTP_SENDERS};
use exwatch::testkit::synth::{self, wire::PcapWriter, OrgOptions};

/// Enough packets that a pass takes long enough to time, and that the flow tables grow
/// to a realistic size; the whole default bench stays within a few minutes on 2 cores.
const DEFAULT_PACKETS: u64 = 1_000_000;
const SEED: u64 = 1;
/// Rounds per case (a floor pass and a case pass each); its medians are reported.
const RUNS: usize = 5;

fn main() {
    // Cargo passes `--bench` (and any filter after `--`); there is only one benchmark
    // here, so nothing is selectable and no argument changes what runs.
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        eprintln!("replay: ignoring argument {arg:?}");
    }
    let packets = match std::env::var("EXWATCH_BENCH_PACKETS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_PACKETS={v:?} is not a packet count")),
        Err(_) => DEFAULT_PACKETS,
    };
    let bulk = match std::env::var("EXWATCH_BENCH_BULK") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_BULK={v:?} is not a segment count")),
        Err(_) => 0,
    };
    let pool = match std::env::var("EXWATCH_BENCH_POOL") {
        Ok(v) => Some(v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_POOL={v:?} is not a flow count"))),
        Err(_) => None,
    };
    let path = match pool {
        Some(flows) => pool_capture(packets, flows),
        None => capture(packets, bulk),
    }
    .expect("generating the synthetic capture");
    cache_as_read_from_disk(&path);
    let file_bytes = std::fs::metadata(&path).expect("capture metadata").len();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engine = engine();

    // The reader passes count the frames, so every rate is per packet actually read
    // (the generator finishes open flows past the requested count).
    let frames = read_only(&mut PcapFile::open(&path).expect("opening the capture"));
    println!(
        "replay: {cores} cores, {frames} packets, {:.1} MiB ({}), medians of {RUNS} rounds, each after a floor pass",
        file_bytes as f64 / (1 << 20) as f64,
        path.display()
    );
    let floor = || {
        read_file(&path);
    };
    let case = |name: &str, run: &mut dyn FnMut() -> String| {
        let (time, ratio, note) = rounds(&floor, run);
        let secs = time.as_secs_f64();
        println!(
            "  {name:<16} {:>9.3} s {:>8.2} Mpkt/s {:>9.1} MB/s {:>6.2}x floor  {note}",
            secs,
            frames as f64 / secs / 1e6,
            file_bytes as f64 / secs / 1e6,
            ratio,
        );
    };
    case("read file (floor)", &mut || {
        read_file(&path);
        String::new()
    });
    case("libpcap read", &mut || {
        format!("frames={}", read_only(&mut PcapFile::open(&path).expect("opening the capture")))
    });
    case("native read", &mut || {
        format!("frames={}", read_only(&mut Savefile::open(&path).expect("opening the capture")))
    });
    case("read+decode", &mut || format!("decoded={}", read_decode(&path)));
    case("+flows+policy", &mut || format!("flows={}", read_decode_track(&engine, &path)));

    // With one core, the second pipeline case would repeat the first.
    let mut worker_counts = vec![1];
    if cores > 1 {
        worker_counts.push(cores);
    }
    for workers in worker_counts {
        case(&format!("pipeline {workers}w"), &mut || {
            run_pipeline(&engine, &path, workers, FileReader::Native)
        });
    }
    case(&format!("pipeline {cores}w pcap"), &mut || {
        run_pipeline(&engine, &path, cores, FileReader::Libpcap)
    });

    // The rates stay per packet and byte of the whole capture: the pieces hold the same
    // records, and only 3 more file headers.
    let pieces = pieces(&path, frames).expect("cutting the capture into pieces");
    for jobs in [1, cores.clamp(2, PIECES as usize)] {
        let options = Settings { jobs, ..Settings::default() };
        case(&format!("{PIECES} files {jobs}j"), &mut || run_files(&engine, &pieces, &options));
    }
    let options = Settings { workers: cores, continuous: true, ..Settings::default() };
    case(&format!("{PIECES} files cont {cores}w"), &mut || run_files(&engine, &pieces, &options));

    // A flood of new 5-tuples: throughput and peak memory against the flow cap, from
    // which the cost of one tracked flow follows.
    // The flood is ten million 5-tuples; EXWATCH_BENCH_FLOOD sets another size.
    let syns = match std::env::var("EXWATCH_BENCH_FLOOD") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("EXWATCH_BENCH_FLOOD={v:?} is not a SYN count")),
        Err(_) => 10_000_000,
    };
    let flood = flood_capture(syns).expect("generating the flood capture");
    println!("flood: {syns} spoofed SYNs + {} orphan fragments, exwatch analyze, {cores} workers", syns / 10);
    let mut points = Vec::new();
    for max_flows in [10_000, 100_000, 1_000_000] {
        let (secs, rss) = flood_run(&flood, max_flows, cores);
        let rate = (syns + syns / 10) as f64 / secs / 1e6;
        println!("  --max-flows {max_flows:<9} {secs:>7.3} s {rate:>8.2} Mpkt/s  peak RSS {rss:>7.1} MiB");
        points.push((max_flows as f64, rss));
    }
    // Only a flood that fills the largest table says what a flow costs.
    let filled = points.last().is_some_and(|&(max_flows, _)| syns as f64 >= max_flows);
    if let (Some(first), Some(last), true) = (points.first(), points.last(), filled) {
        let per_flow = (last.1 - first.1) * 1024.0 * 1024.0 / (last.0 - first.0);
        println!("  memory per tracked flow: about {per_flow:.0} bytes");
    }
}

/// Runs `RUNS` rounds of `floor` then `case`: the median time of `case`, the median of
/// its per-round ratio to the floor, and what its last run returned.
fn rounds(floor: &dyn Fn(), case: &mut dyn FnMut() -> String) -> (Duration, f64, String) {
    let (mut times, mut ratios, mut note) = (Vec::new(), Vec::new(), String::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        floor();
        let floor_time = started.elapsed();
        let started = Instant::now();
        note = black_box(case());
        let time = started.elapsed();
        times.push(time);
        ratios.push(time.as_secs_f64() / floor_time.as_secs_f64());
    }
    times.sort();
    ratios.sort_by(f64::total_cmp);
    (times[RUNS / 2], ratios[RUNS / 2], note)
}

/// The capture for `packets`, generated on first use and then reused: generation
/// takes longer than all the cases together. The name carries seed and size, so
/// another size never picks up a stale file; delete target/bench-data to rebuild
/// after changing the generator.
fn capture(packets: u64, bulk: u64) -> io::Result<PathBuf> {
    let name = match bulk {
        0 => format!("org-seed{SEED}-{packets}.pcap"),
        _ => format!("org-seed{SEED}-{packets}-bulk{bulk}.pcap"),
    };
    cached(&name, |emit| {
        let options = OrgOptions { packets, seed: SEED, bulk, ..OrgOptions::default() };
        synth::organization(&options, emit).map(drop)
    })
}

/// The busy-port capture (`exwatch generate --pool FLOWS`): `packets` packets drawn from
/// `flows` concurrently open flows, interleaved packet by packet.
fn pool_capture(packets: u64, flows: usize) -> io::Result<PathBuf> {
    cached(&format!("pool-seed{SEED}-{packets}-{flows}.pcap"), |emit| {
        let options = synth::pool::PoolOptions { packets, flows, seed: SEED };
        synth::pool::pool(&options, emit).map(drop)
    })
}

/// The flood capture: `syns` spoofed SYNs and a tenth as many orphan fragments.
fn flood_capture(syns: u64) -> io::Result<PathBuf> {
    cached(&format!("flood-{syns}.pcap"), |emit| synth::flood(syns, syns / 10, emit).map(drop))
}

type Emit<'a> = &'a mut dyn FnMut(exwatch::time::Ts, &[u8]) -> io::Result<()>;

/// A generated capture under target/bench-data, written on first use.
fn cached(name: &str, generate: impl FnOnce(Emit<'_>) -> io::Result<()>) -> io::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("bench-data");
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("replay: generating {}", path.display());
    // Written beside the final name and renamed at the end, so an interrupted run
    // never leaves a truncated file that later runs would take as complete.
    let partial = path.with_extension("pcap.partial");
    let file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial)?);
    let mut writer = PcapWriter::new(file, 1)?;
    generate(&mut |ts, frame| writer.write(ts, frame, frame.len() as u32))?;
    io::Write::flush(&mut writer.into_inner())?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// Drops `path` from the page cache, so that the first pass caches it as read-ahead
/// does a file read from disk (in large pieces) rather than as it was written (in the
/// writer's small pieces, which costs the floor about twice as much to read). A cache
/// that cannot be dropped is said and the bench goes on.
fn cache_as_read_from_disk(path: &Path) {
    let dropped = std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .and_then(|()| {
            std::process::Command::new("dd")
                .arg(format!("if={}", path.display()))
                .args(["iflag=nocache", "count=0", "status=none"])
                .status()
        })
        .is_ok_and(|status| status.success());
    if !dropped {
        eprintln!("replay: could not drop {} from the page cache; timing it as it is cached", path.display());
    }
}

/// Files the capture is cut into for the many-files cases.
const PIECES: u64 = 4;

/// The capture `whole` (holding `frames` records) cut into `PIECES` consecutive
/// files with the same header, each cached like the whole.
fn pieces(whole: &Path, frames: u64) -> io::Result<Vec<PathBuf>> {
    (0..PIECES)
        .map(|i| {
            let (from, to) = (frames * i / PIECES, frames * (i + 1) / PIECES);
            let stem = whole.file_stem().and_then(|s| s.to_str()).unwrap_or("capture");
            cached(&format!("{stem}.{i}of{PIECES}.pcap"), |emit| {
                let mut source = Savefile::open(whole).map_err(io::Error::other)?;
                let mut record = 0u64;
                while let Next::Frame(frame) = source.next_frame().map_err(io::Error::other)? {
                    if record >= to {
                        break;
                    }
                    if record >= from {
                        emit(frame.ts, frame.data)?;
                    }
                    record += 1;
                }
                Ok(())
            })
        })
        .collect()
}

/// Runs the exwatch binary on the flood with a flow cap: (seconds, peak RSS in MiB, as
/// the binary's summary reports it).
fn flood_run(path: &Path, max_flows: u64, workers: usize) -> (f64, f64) {
    let summary = path.with_extension("summary.json");
    let started = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .arg("analyze")
        .arg(path)
        .args(["--eve-log", "/dev/null", "--no-progress", "--max-flows", &max_flows.to_string()])
        .args(["--workers", &workers.to_string()])
        .arg("--summary-json")
        .arg(&summary)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running exwatch");
    let secs = started.elapsed().as_secs_f64();
    assert!(status.code().is_some_and(|c| c < 2), "exwatch failed: {status}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("summary JSON");
    let rss = json["throughput"]["peak_rss_bytes"].as_f64().expect("peak_rss_bytes");
    (secs, rss / (1 << 20) as f64)
}

/// The engine the binary builds by default: the bundled policy and topology, which are
/// also what the synthetic organization is modelled on.
fn engine() -> Arc<Engine> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let load = |name: &str| {
        let path = root.join("rules").join(name);
        let text = std::fs::read_to_string(&path).expect("reading the bundled rules");
        (path, text)
    };
    let (path, text) = load("exchange.toml");
    let policy = Policy::parse(&path, &text).expect("parsing rules/exchange.toml");
    let (path, text) = load("topology.toml");
    let topology = Topology::parse(&path, &text).expect("parsing rules/topology.toml");
    Arc::new(Engine::new(Arc::new(policy), Arc::new(topology), DEFAULT_MAX_SMTP_SENDERS))
}

/// The floor: the file's bytes, read as `cat` reads them.
fn read_file(path: &Path) -> u64 {
    let mut file = std::fs::File::open(path).expect("opening the capture");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = io::Read::read(&mut file, &mut buf).expect("reading the capture");
        if n == 0 {
            return total;
        }
        total += black_box(n) as u64;
    }
}

/// Every frame a reader hands out, touched only to be counted.
fn read_only(source: &mut dyn FrameSource) -> u64 {
    let mut frames = 0u64;
    while let Next::Frame(frame) = source.next_frame().expect("reading the capture") {
        black_box(frame.data);
        frames += 1;
    }
    frames
}

/// The native reader plus decoding, on this thread: the per-frame cost the workers share.
fn read_decode(path: &Path) -> u64 {
    let mut source = Savefile::open(path).expect("opening the capture");
    let mut decoded = 0u64;
    while let Next::Frame(frame) = source.next_frame().expect("reading the capture") {
        // black_box keeps the unused packet from being optimised away with its parse.
        let packet = black_box(decode::decode(frame.link, frame.ts, frame.wire_len, frame.data));
        decoded += u64::from(packet.is_ok());
    }
    decoded
}

/// Reading, decoding and the flow table with the policy, all on this thread: the work
/// of the pipeline without its threads and channels.
fn read_decode_track(engine: &Arc<Engine>, path: &Path) -> u64 {
    let mut source = Savefile::open(path).expect("opening the capture");
    let mut tracker = Tracker::new(Arc::new(engine.split(1)), Default::default());
    while let Next::Frame(frame) = source.next_frame().expect("reading the capture") {
        if let Ok(packet) = decode::decode(frame.link, frame.ts, frame.wire_len, frame.data) {
            tracker.packet(&packet);
        }
        tracker.drain_events().for_each(drop);
    }
    tracker.finish();
    tracker.counters()[Counter::Flows]
}

/// Everything the binary does for one file, with events thrown away so the disk is
/// not measured. The counts show the work happened (and match between worker counts).
fn run_pipeline(engine: &Arc<Engine>, path: &Path, workers: usize, file_reader: FileReader) -> String {
    let options = Settings { workers, file_reader, ..Settings::default() };
    run_files(engine, &[path.to_path_buf()], &options)
}

/// `pipeline::analyze` on `files`, events thrown away; the counts of the work done.
/// Each run gets empty cross-flow tables, as a run of the binary does: senders left by an
/// earlier pass would change the findings.
fn run_files(engine: &Arc<Engine>, files: &[PathBuf], options: &Settings) -> String {
    let report =
        pipeline::analyze(Arc::new(engine.split(1)), files, options, Outputs::eve(&Sink::Discard), &|_| {})
            .expect("running the pipeline");
    assert!(report.errors.is_empty(), "capture errors: {:?}", report.errors);
    let c = &report.counters;
    let findings = c[Counter::Advisories] + c[Counter::Violations] + c[Counter::Restrictions];
    format!("flows={} alerts={findings}", c[Counter::Flows])
}
