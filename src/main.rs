//! The `exwatch` binary: parse flags, validate them into settings, run, map the outcome
//! to an exit status (0 clean, 1 findings listed in `--fail-on`, 2 bad input or config).

mod cli;

use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Parser;

use exwatch::capture::LiveCapture;
use exwatch::output::Summary;
use exwatch::pipeline;
use exwatch::policy::{Engine, Verdict};
use exwatch::telemetry::{prometheus, Monitor, Report};

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
        cli::Command::Generate(flags) => generate(&flags),
        cli::Command::Learn(flags) => learn(cli::LearnSettings::from_flags(flags)?),
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
    // The learner sees the run's flows, to warn of hosts that act like a role the
    // topology does not give them (an unlisted Exchange server's traffic looks external).
    let mut learner = exwatch::learn::Learner::new(exwatch::learn::Settings::default());
    let report = pipeline::analyze(
        Arc::clone(&engine),
        &settings.files,
        &settings.run.pipeline,
        pipeline::Outputs { sink: &sink, observer: Some(&mut learner) },
        &progress,
    )
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let warnings = exwatch::learn::unlisted(&learner, &engine.topology);
    summarize(&engine, &settings.run, &report, settings.not_captures_total(), warnings)?;
    if !report.errors.is_empty() {
        return Ok(2);
    }
    let failed = settings.fail_on.iter().any(|&v| report.counters.findings(v) > 0);
    Ok(u8::from(failed))
}

/// Drafts a topology from the traffic, or compares the traffic with one: the pipeline of
/// `analyze` with the learner as its observer and no EVE output.
fn learn(settings: cli::LearnSettings) -> Result<u8, String> {
    use exwatch::learn::{compare, Draft, Learner};
    for notice in settings.notices() {
        eprintln!("exwatch: {notice}");
    }
    let topology = match &settings.topology {
        Some((topology, _)) => Arc::clone(topology),
        None => Arc::new(
            exwatch::policy::Topology::parse(std::path::Path::new("(none)"), "")
                .map_err(|e| e.to_string())?,
        ),
    };
    let engine = Arc::new(Engine::new(Arc::clone(&settings.policy), Arc::clone(&topology), 0));
    let total: u64 = settings.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = (settings.progress && std::io::stderr().is_terminal()).then(|| cli::progress_bar(total));
    let progress = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.set_position(bytes.max(bar.position()));
        }
    };
    let mut learner = Learner::new(settings.learn.clone());
    let sink = exwatch::output::Sink::Off;
    let outputs = pipeline::Outputs { sink: &sink, observer: Some(&mut learner) };
    let report = pipeline::analyze(engine, &settings.files, &settings.pipeline, outputs, &progress)
        .map_err(|e| e.to_string())?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for error in &report.errors {
        eprintln!("exwatch: {error}");
    }
    let draft = Draft::new(&learner);
    let t = &draft.tally;
    eprintln!(
        "exwatch learn: {} packets, {} flows ({} answered); {} hosts in roles, {} client prefix(es), {} subscription(s){}",
        report.counters[exwatch::telemetry::Counter::Frames],
        t.flows,
        t.answered,
        draft.hosts.len(),
        draft.clients.len(),
        draft.subscriptions.len(),
        if t.untracked_flows > 0 {
            format!("; {} flows with a host not tracked (table full: raise --max-hosts)", t.untracked_flows)
        } else {
            String::new()
        }
    );
    let status = if report.errors.is_empty() { 0 } else { 2 };
    let Some((topology, name)) = &settings.topology else {
        let sources = match settings.files.len() {
            1 => settings.files[0].display().to_string(),
            n => format!("{n} capture files"),
        };
        write_out(&settings.output, &draft.to_toml(&sources))?;
        return Ok(status);
    };
    let findings = compare(&learner, &draft, topology);
    let mut text: String = findings.iter().map(|f| format!("{name}: {}: {f}\n", f.kind.name())).collect();
    text.push_str(&format!("{name}: {} difference(s) with the traffic\n", findings.len()));
    write_out(&settings.output, &text)?;
    Ok(if status == 0 && !findings.is_empty() { 1 } else { status })
}

/// Writes `text` to a file, or to standard output for `-`.
fn write_out(path: &std::path::Path, text: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    exwatch::output::Sink::at(path, false)
        .open()
        .and_then(|mut w| w.write_all(text.as_bytes()).and_then(|_| w.flush()))
        .map_err(fail)
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
    let report = std::thread::scope(|scope| {
        let server = listener.map(|l| scope.spawn(|| prometheus::serve(l, &engine, &monitor)));
        let report = pipeline::live(
            &engine,
            Box::new(capture),
            &settings.run.pipeline,
            (&sink, out),
            &monitor,
            settings.stats_interval,
        );
        monitor.stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(e))) = server.map(|s| s.join()) {
            eprintln!("exwatch: metrics endpoint stopped: {e}");
        }
        report
    })
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    summarize(&engine, &settings.run, &report, 0, Vec::new())?;
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
/// found in directories that were skipped; `warnings` are about the topology.
fn summarize(
    engine: &Engine,
    settings: &cli::RunSettings,
    report: &Report,
    not_captures: usize,
    warnings: Vec<String>,
) -> Result<(), String> {
    let summary = Summary::new(engine, &settings.config.topology_name, report)
        .with_not_captures(not_captures)
        .with_warnings(warnings);
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
    exwatch::output::Sink::at(&flags.eve_log, false)
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

fn generate(flags: &cli::GenerateFlags) -> Result<u8, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", flags.out.display());
    // A bad topology file is reported before the capture file is created.
    let topology = match &flags.topology {
        Some(path) => Some(exwatch::policy::Topology::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let file = std::fs::File::create(&flags.out).map_err(fail)?;
    let mut writer =
        exwatch::testkit::synth::wire::PcapWriter::new(std::io::BufWriter::new(file), 1).map_err(fail)?;
    let options = exwatch::testkit::synth::OrgOptions {
        packets: flags.packets,
        seed: flags.seed,
        bulk: flags.bulk,
        ..Default::default()
    };
    let mut packets = 0u64;
    let write = |ts, frame: &[u8]| {
        packets += 1;
        writer.write(ts, frame, frame.len() as u32)
    };
    let expected = match &topology {
        Some(topology) => exwatch::testkit::synth::site(topology, &options, write),
        None => exwatch::testkit::synth::organization(&options, write),
    }
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
