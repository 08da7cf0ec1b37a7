//! The `exwatch` binary: parse flags, validate them into settings, run, map the outcome
//! to an exit status (0 clean, 1 findings listed in `--fail-on`, 2 bad input or config).

mod cli;

use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};

use exwatch::capture::LiveCapture;
use exwatch::output::Summary;
use exwatch::pipeline;
use exwatch::policy::{Engine, Role};
use exwatch::telemetry::{prometheus, Counter, Monitor, Report};

fn main() -> ExitCode {
    let matches = cli::Args::command().get_matches();
    let args = cli::Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(args, &matches) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("exwatch: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: cli::Args, matches: &clap::ArgMatches) -> Result<u8, String> {
    match args.command {
        cli::Command::Analyze(flags) => analyze(cli::AnalyzeSettings::from_flags(flags)?),
        cli::Command::Live(flags) => {
            let given = matches.subcommand_matches("live").unwrap_or(matches);
            live(cli::LiveSettings::from_flags(flags, given)?)
        }
        cli::Command::Check(flags) => check(&flags),
        cli::Command::Compare(flags) => compare(&flags),
        cli::Command::Report(flags) => report(&flags),
        cli::Command::Generate(flags) => generate(&flags),
        cli::Command::Completions(flags) => print(&cli::completions(flags.shell)),
        cli::Command::Man(flags) => print(&cli::man_page(flags.command.as_deref())?),
        cli::Command::Learn(flags) => learn(cli::LearnSettings::from_flags(flags)?),
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

fn analyze(mut settings: cli::AnalyzeSettings) -> Result<u8, String> {
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
    // The learner sees the run's flows, to warn of hosts that act like a role the
    // topology does not give them (an unlisted Exchange server's traffic looks external).
    let learner = exwatch::learn::Learner::new(exwatch::learn::Settings {
        answered_only: true,
        ..exwatch::learn::Settings::default()
    });
    // With --report, the compliance report is built from the same events, as they come.
    let config = &settings.run.config;
    let sensor = settings.run.pipeline.sensor_name.clone();
    let builder = settings.report_meta.take().map(|meta| {
        exwatch::report::Builder::new(Arc::clone(&config.policy), Arc::clone(&config.topology), meta)
            .with_sensor(sensor)
    });
    let mut observers = (learner, builder);
    let report = pipeline::analyze(
        Arc::clone(&engine),
        &settings.files,
        &settings.run.pipeline,
        pipeline::Outputs { sink: &sink, observer: Some(&mut observers) },
        &progress,
    )
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    let (learner, builder) = observers;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let c = &report.counters;
    if c[Counter::Frames] == 0 && !report.eve_closed {
        for error in &report.errors {
            eprintln!("exwatch: {error}");
        }
        eprintln!("exwatch: no packet was read from any input: nothing was checked");
        return Ok(2);
    }
    let unlisted = exwatch::learn::unlisted(&learner, &engine.topology);
    summarize(&engine, &settings.run, &report, settings.not_captures_total(), None, unlisted)?;
    if let Some(builder) = builder {
        write_report(builder, &settings, &report)?;
    }
    if report.eve_closed {
        // Whoever reads the EVE lines has seen enough (`| head`): as ripgrep does, a
        // closed standard output ends the run quietly, not as a failure.
        return Ok(0);
    }
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

/// Finishes `analyze --report`: the inputs (name, size, SHA-256) and the run's capture
/// health go into the report, which is written in each format asked for.
fn write_report(
    mut builder: exwatch::report::Builder,
    settings: &cli::AnalyzeSettings,
    report: &Report,
) -> Result<(), String> {
    use exwatch::report;
    for path in &settings.files {
        if exwatch::capture::compressed::is_stdin(path) {
            continue;
        }
        let input = report::file_input(path).map_err(|e| format!("{}: {e}", path.display()))?;
        builder.input(input);
    }
    let c = &report.counters;
    builder.stats(report::StatsRecord {
        host: settings.run.pipeline.sensor_name.clone(),
        ts: builder.last_seen().unwrap_or_default(),
        packets: c[Counter::Frames],
        decoded: c[Counter::Decoded],
        skipped: exwatch::decode::Skip::ALL
            .iter()
            .map(|s| (s.code().to_string(), c.skipped[s.index()]))
            .filter(|(_, n)| *n > 0)
            .collect(),
        drops: c[Counter::KernelDropped] + c[Counter::InterfaceDropped] + c[Counter::Shed],
        flows_evicted: c[Counter::FlowsEvicted],
    });
    let built = builder.finish();
    let files = &settings.report;
    let outputs = [
        (&files.html, report::html::render as fn(&report::Report) -> String),
        (&files.json, report::json::render),
        (&files.csv, report::csv::render),
    ];
    for (path, render) in outputs {
        if let Some(path) = path {
            std::fs::write(path, render(&built))
                .map_err(|e| format!("{}: cannot write the report: {e}", path.display()))?;
        }
    }
    eprintln!("exwatch report: {}", built.conclusion.text);
    Ok(())
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
    judgeable(&settings.run.config)?;
    let engine = settings.run.engine();
    let capture = LiveCapture::open(&settings.interface, &settings.capture).map_err(|e| e.to_string())?;
    let mut monitor = Monitor::new(&engine, settings.run.pipeline.workers);
    // Said at once, while the capture goes on: the operator must not learn of a lost log
    // only at the end.
    monitor.notify = Box::new(|notice| eprintln!("exwatch: {notice}"));
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
    let stats_log = match &settings.stats_log {
        Some(path) => Some(std::sync::Mutex::new(
            exwatch::output::Sink::at(path, true)
                .open()
                .map_err(|e| format!("{}: cannot open the stats log: {e}", path.display()))?,
        )),
        None => None,
    };
    let listener = match settings.metrics {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?),
        None => None,
    };
    // Written at the end, when root may be gone: opened now, as the EVE log is.
    let summary_file = match (&settings.user, &settings.run.summary_json) {
        (Some(_), Some(path)) if path.as_os_str() != "-" => Some(
            std::fs::File::create(path)
                .map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?,
        ),
        _ => None,
    };
    if let Some(user) = &settings.user {
        let account = account(user)?;
        if let Some(path) = sink.path() {
            // The log must stay writable after root is given up: reopened on SIGHUP with
            // or without rotation (as Suricata does with its run-as user).
            std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
                .map_err(|e| format!("{}: cannot give the EVE log to --user {user}: {e}", path.display()))?;
        }
        if let Some(path) = &settings.stats_log {
            std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw())).map_err(
                |e| format!("{}: cannot give the stats log to --user {user}: {e}", path.display()),
            )?;
        }
        drop_privileges(user, &account)?;
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
            (settings.stats_interval, stats_log.as_ref()),
        );
        monitor.stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(e))) = server.map(|s| s.join()) {
            eprintln!("exwatch: metrics endpoint stopped: {e}");
        }
        report
    })
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    summarize(&engine, &settings.run, &report, 0, summary_file, Vec::new())?;
    Ok(if report.errors.is_empty() || report.eve_closed { 0 } else { 2 })
}

fn account(user: &str) -> Result<nix::unistd::User, String> {
    nix::unistd::User::from_name(user)
        .map_err(|e| format!("--user {user}: {e}"))?
        .ok_or_else(|| format!("--user {user}: no such user"))
}

/// Gives up root for `user` (its uid, gid and only that group).
fn drop_privileges(user: &str, account: &nix::unistd::User) -> Result<(), String> {
    use nix::unistd::{setgid, setgroups, setuid};
    setgroups(&[account.gid])
        .and_then(|_| setgid(account.gid))
        .and_then(|_| setuid(account.uid))
        .map_err(|e| format!("--user {user}: cannot drop privileges: {e}"))
}

/// Prints the summary, then the errors of the run (never inside the summary), and writes
/// the summary as JSON when asked (`-`: standard output; `opened`: the file, opened
/// already); `not_captures` counts the files found in directories that were skipped;
/// `warnings` are what the run noticed about the topology, beside its lints.
fn summarize(
    engine: &Engine,
    settings: &cli::RunSettings,
    report: &Report,
    not_captures: usize,
    opened: Option<std::fs::File>,
    warnings: Vec<String>,
) -> Result<(), String> {
    let summary = Summary::new(engine, &settings.config.topology_name, report)
        .with_not_captures(not_captures)
        .with_warnings(settings.config.lints())
        .with_warnings(warnings);
    // One write, so that nothing another thread says lands inside it.
    let mut text = summary.render();
    for (_, message) in &summary.errors {
        text.push_str(&format!("exwatch: {message}\n"));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    if let Some(path) = &settings.summary_json {
        let mut json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
        json.push(b'\n');
        let written = match opened {
            _ if path.as_os_str() == "-" => return print(&json).map(|_| ()),
            Some(mut file) => file.write_all(&json),
            None => std::fs::write(path, json),
        };
        written.map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to standard output; a closed one (`| head`) is not an error.
fn print(bytes: &[u8]) -> Result<u8, String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("standard output: {e}")),
        _ => Ok(0),
    }
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
    for event in &outcome.findings {
        exwatch::output::eve::write_event(&mut out, &engine, event);
    }
    exwatch::output::Sink::at(&flags.eve_log, false)
        .open()
        .and_then(|mut w| w.write_all(&out).and_then(|_| w.flush()))
        .map_err(|e| format!("{}: {e}", flags.eve_log.display()))?;
    let of_kind = |kind: EvidenceKind| {
        let evidence = engine.evidence(kind);
        let is = |event: &&exwatch::flow::Event| matches!(event, exwatch::flow::Event::Alert { evidence: e, .. } if e.is_some() && *e == evidence);
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

/// `check --json`: one document on standard output, described in docs/operations.md.
#[derive(serde::Serialize)]
struct CheckReport<'a> {
    /// The shape of this document; a field removed or changed in meaning raises it.
    version: u32,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<CheckedPolicy<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topology: Option<CheckedTopology<'a>>,
    errors: Vec<CheckError<'a>>,
}

#[derive(serde::Serialize)]
struct CheckedPolicy<'a> {
    file: &'a str,
    name: &'a str,
    rules: usize,
    evidence: usize,
}

#[derive(serde::Serialize)]
struct CheckedTopology<'a> {
    file: &'a str,
    organization: &'a str,
    builtin_example: bool,
    lints: Vec<CheckLint<'a>>,
}

#[derive(serde::Serialize)]
struct CheckLint<'a> {
    line: usize,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct CheckError<'a> {
    file: &'a std::path::Path,
    line: Option<usize>,
    key: &'a str,
    message: &'a str,
}

fn check(flags: &cli::CheckFlags) -> Result<u8, String> {
    let json = |report: &CheckReport| {
        let text = serde_json::to_string(report).map_err(|e| e.to_string())?;
        print(format!("{text}\n").as_bytes())
    };
    let config = match cli::Config::try_load(&flags.config) {
        Ok(config) => config,
        Err(e) if !flags.json => return Err(e.to_string()),
        Err(e) => {
            eprintln!("exwatch: {e}");
            let error = CheckError { file: &e.file, line: e.line, key: &e.key, message: &e.message };
            json(&CheckReport {
                version: 1,
                valid: false,
                policy: None,
                topology: None,
                errors: vec![error],
            })?;
            return Ok(2);
        }
    };
    let lints = config.topology.lint();
    let status = if lints.is_empty() { 0 } else { 1 };
    if flags.json {
        json(&CheckReport {
            version: 1,
            valid: true,
            policy: Some(CheckedPolicy {
                file: &config.policy_name,
                name: &config.policy.name,
                rules: config.policy.rules.len(),
                evidence: config.policy.evidence.len(),
            }),
            topology: Some(CheckedTopology {
                file: &config.topology_name,
                organization: &config.topology.name,
                builtin_example: flags.config.topology.is_none(),
                lints: lints.iter().map(|(line, message)| CheckLint { line: *line, message }).collect(),
            }),
            errors: Vec::new(),
        })?;
        return Ok(status);
    }
    let mut out = String::new();
    for lint in config.lints() {
        out.push_str(&format!("{lint}\n"));
    }
    out.push_str(&format!(
        "{}: {} rules, {} evidence kinds; {}: {} lint(s)\n",
        config.policy_name,
        config.policy.rules.len(),
        config.policy.evidence.len(),
        config.topology_name,
        lints.len()
    ));
    print(out.as_bytes())?;
    Ok(status)
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
    // A bad topology file is reported before the capture file is created.
    let topology = match &flags.topology {
        Some(path) => Some(exwatch::policy::Topology::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
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
