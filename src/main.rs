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
use exwatch::policy::{Engine, Role};
use exwatch::telemetry::{prometheus, Counter, Monitor, Report};

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
    }
}

/// Refuses a topology with nothing to judge, and says when the example is used.
fn judgeable(config: &cli::Config) -> Result<(), String> {
    if !config.topology.has_role(Role::Mailbox) && !config.topology.has_role(Role::Edge) {
        return Err(format!(
            "{}: lists no Mailbox and no Edge server: there is nothing the policy could judge",
            config.topology_name
        ));
    }
    if config.builtin_topology {
        eprintln!(
            "exwatch: no --topology given: judging against the {}, not your site's",
            config.topology_name
        );
    }
    Ok(())
}

fn analyze(settings: cli::AnalyzeSettings) -> Result<u8, String> {
    let config = &settings.run.config;
    judgeable(config)?;
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
    let report = pipeline::analyze(
        Arc::clone(&engine),
        &settings.files,
        &settings.run.pipeline,
        pipeline::Outputs::eve(&sink),
        &progress,
    )
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let c = &report.counters;
    if c[Counter::Frames] == 0 {
        for error in &report.errors {
            eprintln!("exwatch: {error}");
        }
        eprintln!("exwatch: no packet was read from any input: nothing was checked");
        return Ok(2);
    }
    summarize(&engine, &settings.run, &report, settings.not_captures_total())?;
    if !report.errors.is_empty() {
        return Ok(2);
    }
    if c[Counter::TouchingExchange] == 0 {
        eprintln!(
            "exwatch: no flow touched a Mailbox or Edge address of {}: is this the topology of the network captured?",
            config.topology_name
        );
        return Ok(2);
    }
    let failed = settings.fail_on.iter().any(|&v| report.counters.findings(v) > 0);
    Ok(u8::from(failed))
}

fn live(settings: cli::LiveSettings) -> Result<u8, String> {
    judgeable(&settings.run.config)?;
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
    let summary = Summary::new(engine, &settings.config.topology_name, report)
        .with_not_captures(not_captures)
        .with_warnings(settings.config.lints());
    eprint!("{}", summary.render());
    if let Some(path) = &settings.summary_json {
        let json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?;
    }
    Ok(())
}

fn compare(flags: &cli::CompareFlags) -> Result<u8, String> {
    use exwatch::compare::Order;
    use exwatch::policy::EvidenceKind;

    let config = cli::Config::load(&flags.config)?;
    let engine = Engine::new(Arc::clone(&config.policy), Arc::clone(&config.topology), 0);
    let open = |path: &std::path::Path| exwatch::capture::Savefile::open(path).map_err(|e| e.to_string());
    let (mut first, mut second) = (open(&flags.first)?, open(&flags.second)?);
    let outcome = exwatch::compare::compare(&engine, &mut first, &mut second).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for finding in &outcome.findings {
        exwatch::output::eve::write_event(&mut out, &engine, &finding.event, Some(&finding.detail));
    }
    exwatch::output::Sink::at(&flags.eve_log, false)
        .open()
        .and_then(|mut w| w.write_all(&out).and_then(|_| w.flush()))
        .map_err(|e| format!("{}: {e}", flags.eve_log.display()))?;
    let of_kind = |kind: EvidenceKind| {
        let evidence = engine.evidence(kind);
        let is = |f: &&exwatch::compare::Finding| matches!(f.event, exwatch::flow::Event::Alert { evidence: e, .. } if e.is_some() && e == evidence);
        outcome.findings.iter().filter(is).count()
    };
    let c = &outcome.counts;
    eprintln!(
        "exwatch compare: {} handshake packets in the first capture, {} in the second, {} seen in both, {} altered, {} on traffic that must never be altered; {} SYNs of the first capture never reached the second, {} between hosts that must never be restricted{}",
        c.first_handshakes,
        c.second_handshakes,
        c.matched,
        c.altered,
        of_kind(EvidenceKind::OptionsAltered),
        c.missing,
        of_kind(EvidenceKind::SynDropped),
        if c.untracked > 0 { format!(" ({} not compared: table full)", c.untracked) } else { String::new() }
    );
    if outcome.order == Order::LooksSwapped {
        eprintln!(
            "exwatch compare: the order looks swapped: most SYNs had more hops left at the second capture point than at the first, so the second is upstream; FIRST should be the capture nearer the senders"
        );
    }
    Ok(u8::from(!outcome.findings.is_empty()))
}

fn check(flags: &cli::ConfigFlags) -> Result<u8, String> {
    let config = cli::Config::load(flags)?;
    let lints = config.lints();
    for lint in &lints {
        println!("{lint}");
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
    let file = std::fs::File::create(&flags.out).map_err(fail)?;
    let mut writer =
        exwatch::testkit::synth::wire::PcapWriter::new(std::io::BufWriter::new(file), 1).map_err(fail)?;
    if let Some(flows) = flags.pool {
        use exwatch::testkit::synth::pool::{pool, PoolOptions};
        let options = PoolOptions { packets: flags.packets, flows, seed: flags.seed };
        let stats = pool(&options, |ts, frame| writer.write(ts, frame, frame.len() as u32)).map_err(fail)?;
        writer.into_inner().flush().map_err(fail)?;
        eprintln!(
            "exwatch: wrote {} packets of {} flows ({flows} open at once, {:.0} bytes a frame on average) to {}",
            stats.packets,
            stats.flows,
            stats.frame_bytes as f64 / stats.packets.max(1) as f64,
            flags.out.display()
        );
        return Ok(0);
    }
    let options = exwatch::testkit::synth::OrgOptions {
        packets: flags.packets,
        seed: flags.seed,
        bulk: flags.bulk,
        ..Default::default()
    };
    let mut packets = 0u64;
    let expected = exwatch::testkit::synth::organization(&options, |ts, frame| {
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
