//! The `exwatch` binary: parse flags, validate them into settings, run, map the outcome
//! to an exit status (0 clean, 1 findings listed in `--fail-on`, 2 bad input or config).

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use exwatch::output::Summary;
use exwatch::pipeline;
use exwatch::policy::Engine;

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
        cli::Command::Check(flags) => check(&flags),
        cli::Command::Generate(flags) => generate(&flags),
    }
}

fn analyze(settings: cli::AnalyzeSettings) -> Result<u8, String> {
    let engine = Arc::new(Engine::new(
        Arc::clone(&settings.config.policy),
        Arc::clone(&settings.config.topology),
        settings.max_smtp_senders,
    ));
    let sink = settings.open_eve_log()?;
    let bar = (settings.progress && std::io::stderr().is_terminal())
        .then(|| cli::progress_bar(settings.total_bytes()));
    let progress = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.set_position(bytes);
        }
    };
    let report =
        pipeline::run_files(Arc::clone(&engine), &settings.files, &settings.pipeline, sink, &progress)
            .map_err(|e| format!("writing events: {e}"))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = Summary::new(&engine, &settings.config.topology_name, &report);
    eprint!("{}", summary.render());
    if let Some(path) = &settings.summary_json {
        let json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?;
    }
    if !report.errors.is_empty() {
        return Ok(2);
    }
    let c = &report.counters;
    let found = |v: exwatch::policy::Verdict| match v {
        exwatch::policy::Verdict::Violation => c.violations,
        exwatch::policy::Verdict::Restriction => c.restrictions,
        exwatch::policy::Verdict::Advisory => c.advisories,
        _ => 0,
    };
    Ok(if settings.fail_on.iter().any(|&v| found(v) > 0) { 1 } else { 0 })
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
    use std::io::Write;
    let fail = |e: std::io::Error| format!("{}: {e}", flags.out.display());
    let file = std::fs::File::create(&flags.out).map_err(fail)?;
    let mut writer = exwatch::synth::wire::PcapWriter::new(std::io::BufWriter::new(file), 1).map_err(fail)?;
    let options =
        exwatch::synth::OrgOptions { packets: flags.packets, seed: flags.seed, ..Default::default() };
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
