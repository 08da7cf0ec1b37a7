//! The `exwatch` binary: parse flags, validate them into settings, run, map the outcome
//! to an exit status (0 clean, 1 findings listed in `--fail-on`, 2 bad input or config).

mod cli;

use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Parser;

use exwatch::capture::{FrameSource, LiveCapture};
use exwatch::output::Summary;
use exwatch::pipeline::{self, Mode, Monitor, Report};
use exwatch::policy::{Engine, Verdict};
use exwatch::telemetry::prometheus;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("exwatch: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: cli::Args) -> Result<u8, String> {
    match args.command {
        cli::Command::Analyze(flags) => analyze(cli::AnalyzeSettings::from_flags(flags)?),
        cli::Command::Live(flags) => live(cli::LiveSettings::from_flags(flags)?),
        cli::Command::Check(flags) => check(&flags),
        cli::Command::Compare(flags) => compare(&flags),
        cli::Command::Report(flags) => report(&flags),
        cli::Command::Generate(flags) => generate(&flags),
    }
}

fn analyze(settings: cli::AnalyzeSettings) -> Result<u8, String> {
    for notice in settings.notices() {
        eprintln!("exwatch: {notice}");
    }
    let engine = settings.run.engine();
    let bar = (settings.progress && std::io::stderr().is_terminal())
        .then(|| cli::progress_bar(settings.total_bytes()));
    let progress = |bytes: u64| {
        if let Some(bar) = &bar {
            // Jobs reading files side by side report totals that may arrive out of order.
            bar.set_position(bytes.max(bar.position()));
        }
    };
    let sink = settings.sink();
    let report =
        pipeline::run_files(Arc::clone(&engine), &settings.files, &settings.run.pipeline, &sink, &progress)
            .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    summarize(&engine, &settings.run, &report, settings.not_captures_total())?;
    if !report.errors.is_empty() {
        return Ok(2);
    }
    let c = &report.counters;
    let found = |v: Verdict| match v {
        Verdict::Violation => c.violations,
        Verdict::Restriction => c.restrictions,
        Verdict::Advisory => c.advisories,
        _ => 0,
    };
    Ok(if settings.fail_on.iter().any(|&v| found(v) > 0) { 1 } else { 0 })
}

fn live(settings: cli::LiveSettings) -> Result<u8, String> {
    let engine = settings.run.engine();
    let capture = LiveCapture::open(&settings.interface, &settings.capture).map_err(|e| e.to_string())?;
    let monitor = Monitor::new(&engine, settings.run.pipeline.workers);
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once, should a clean stop hang.
        signal_hook::flag::register_conditional_shutdown(signal, 2, Arc::clone(&monitor.stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&monitor.stop)))
            .map_err(|e| format!("installing signal handlers: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&monitor.reopen))
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let sink = settings.sink();
    let out =
        sink.open().map_err(|e| format!("{}: cannot open EVE log: {e}", settings.run.eve_log.display()))?;
    let listener = match settings.metrics {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?),
        None => None,
    };
    if let Some(user) = &settings.user {
        drop_privileges(user)?;
    }
    eprintln!(
        "exwatch: watching {} (SIGINT or SIGTERM to stop, SIGHUP to reopen the EVE log)",
        settings.interface
    );
    let run = pipeline::Run {
        mode: Mode::Live,
        options: &settings.run.pipeline,
        sink: &sink,
        monitor: &monitor,
        stats_interval: settings.stats_interval,
    };
    let report = std::thread::scope(|scope| {
        let server = listener.map(|l| scope.spawn(|| prometheus::serve(l, &engine, &monitor)));
        let mut sources = std::iter::once(Ok(Box::new(capture) as Box<dyn FrameSource>));
        let report = run.run(Arc::clone(&engine), &mut sources, out, &|_| {});
        monitor.stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(e))) = server.map(|s| s.join()) {
            eprintln!("exwatch: metrics endpoint stopped: {e}");
        }
        report
    })
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    summarize(&engine, &settings.run, &report, 0)?;
    Ok(if report.errors.is_empty() { 0 } else { 2 })
}

/// Gives up root for `user` (its uid, gid and only that group).
fn drop_privileges(user: &str) -> Result<(), String> {
    use nix::unistd::{setgid, setgroups, setuid, User};
    let account = User::from_name(user)
        .map_err(|e| format!("--user {user}: {e}"))?
        .ok_or_else(|| format!("--user {user}: no such user"))?;
    setgroups(&[account.gid])
        .and_then(|_| setgid(account.gid))
        .and_then(|_| setuid(account.uid))
        .map_err(|e| format!("--user {user}: cannot drop privileges: {e}"))
}

/// Prints the summary, and writes it as JSON when asked; `not_captures` counts the files
/// found in directories that were skipped.
fn summarize(
    engine: &Engine,
    settings: &cli::RunSettings,
    report: &Report,
    not_captures: usize,
) -> Result<(), String> {
    let summary =
        Summary::new(engine, &settings.config.topology_name, report).with_not_captures(not_captures);
    eprint!("{}", summary.render());
    if let Some(path) = &settings.summary_json {
        let json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?;
    }
    Ok(())
}

fn compare(flags: &cli::CompareFlags) -> Result<u8, String> {
    use exwatch::flow::{Confidence, Direction, Flow, FlowKey};
    use exwatch::policy::{EvidenceKind, Facts};

    let config = cli::Config::load(&flags.config)?;
    let engine = Engine::new(Arc::clone(&config.policy), Arc::clone(&config.topology), 0);
    let open = |path: &std::path::Path| exwatch::capture::Savefile::open(path).map_err(|e| e.to_string());
    let (mut first, mut second) = (open(&flags.first)?, open(&flags.second)?);
    let (altered, counts) = exwatch::compare::compare(&mut first, &mut second).map_err(|e| e.to_string())?;
    let evidence = engine.policy.evidence.iter().position(|e| e.kind == EvidenceKind::OptionsAltered);
    let mut out = Vec::new();
    let mut restrictions = 0;
    for a in &altered {
        // The SYN's sender opened the flow; a SYN-ACK's receiver did.
        let synack = a.flags & exwatch::decode::tcp_flags::ACK != 0;
        let orig = if synack {
            exwatch::decode::Tuple {
                src: a.tuple.dst,
                dst: a.tuple.src,
                sport: a.tuple.dport,
                dport: a.tuple.sport,
                ..a.tuple
            }
        } else {
            a.tuple
        };
        let judgement = engine.judge(&Facts {
            orig: orig.src,
            resp: orig.dst,
            resp_port: orig.dport,
            proto: orig.proto,
            ts: a.ts,
        });
        let (Some(rule), Some(evidence)) = (judgement.rule, evidence) else { continue };
        if !engine.policy.rules[rule].never_restrict {
            continue;
        }
        let key = FlowKey::of(&orig);
        let flow = Flow::new(key, orig, Direction::Observed, 0, a.ts, (None, None), judgement);
        let detail = a.detail();
        exwatch::output::eve::write_alert(
            &mut out,
            &engine,
            a.ts,
            &flow,
            (Verdict::Restriction, Confidence::High),
            rule,
            (Some(evidence), Some(&detail)),
        );
        restrictions += 1;
    }
    cli::eve_sink(&flags.eve_log, false)
        .open()
        .and_then(|mut w| w.write_all(&out).and_then(|_| w.flush()))
        .map_err(|e| format!("{}: {e}", flags.eve_log.display()))?;
    eprintln!(
        "exwatch compare: {} handshake packets in the first capture, {} in the second, {} seen in both, {} altered, {} on traffic that must never be altered{}",
        counts.first_handshakes,
        counts.second_handshakes,
        counts.matched,
        altered.len(),
        restrictions,
        if counts.untracked > 0 { format!(" ({} not compared: table full)", counts.untracked) } else { String::new() }
    );
    Ok(if restrictions > 0 { 1 } else { 0 })
}

fn check(flags: &cli::ConfigFlags) -> Result<u8, String> {
    let config = cli::Config::load(flags)?;
    let lints = config.topology.lint();
    for (line, lint) in &lints {
        println!("{}:{line}: {lint}", config.topology_name);
    }
    println!(
        "{}: {} rules, {} evidence kinds; {}: {} lint(s)",
        config.policy_name,
        config.policy.rules.len(),
        config.policy.evidence.len(),
        config.topology_name,
        lints.len()
    );
    Ok(if lints.is_empty() { 0 } else { 1 })
}

fn report(flags: &cli::ReportFlags) -> Result<u8, String> {
    use exwatch::report;
    if flags.html.is_none() && flags.json.is_none() && flags.csv.is_none() {
        return Err("report: name at least one output: --html, --json or --csv".into());
    }
    let config = cli::Config::load(&flags.config)?;
    let meta = cli::config_files(&flags.config)?;
    if flags.config.topology.is_none() {
        eprintln!(
            "exwatch report: no --topology given: the roles come from the built-in example \"{}\", not a site's",
            config.topology.name
        );
    }
    let baseline = match &flags.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let earlier = report::json::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let file = report::model::FileRef {
                file: path.display().to_string(),
                sha256: report::logs::sha256(text.as_bytes()),
            };
            Some((earlier, file))
        }
        None => None,
    };
    let built = report::build(config.policy, config.topology, meta, &flags.logs, baseline)
        .map_err(|e| e.to_string())?;
    let outputs = [
        (&flags.html, report::html::render as fn(&report::Report) -> String),
        (&flags.json, report::json::render),
        (&flags.csv, report::csv::render),
    ];
    for (path, render) in outputs {
        if let Some(path) = path {
            std::fs::write(path, render(&built)).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    eprintln!("exwatch report: {}", built.conclusion.text);
    Ok(if built.conclusion.compliant { 0 } else { 1 })
}

fn generate(flags: &cli::GenerateFlags) -> Result<u8, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", flags.out.display());
    let file = std::fs::File::create(&flags.out).map_err(fail)?;
    let mut writer = exwatch::synth::wire::PcapWriter::new(std::io::BufWriter::new(file), 1).map_err(fail)?;
    let options = exwatch::synth::OrgOptions {
        packets: flags.packets,
        seed: flags.seed,
        bulk: flags.bulk,
        ..Default::default()
    };
    let mut packets = 0u64;
    let expected = exwatch::synth::organization(&options, |ts, frame| {
        packets += 1;
        writer.write(ts, frame, frame.len() as u32)
    })
    .map_err(fail)?;
    writer.into_inner().flush().map_err(fail)?;
    if let Some(path) = &flags.expected {
        let lines: String = expected
            .iter()
            .map(|e| format!("{}\t{}\t{}\t{}\n", e.verdict.name(), e.rule, e.src, e.dst))
            .collect();
        std::fs::write(path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!(
        "exwatch: wrote {packets} packets to {} ({} expected findings)",
        flags.out.display(),
        expected.len()
    );
    Ok(0)
}
