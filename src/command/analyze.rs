//! `exwatch analyze`: capture files offline, judged against the policy.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Error, Inputs, Outcome, RunSettings};
use crate::counters::Counter;
use crate::learn::{self, Learner};
use crate::output::Sink;
use crate::pipeline;
use crate::policy::Verdict;
use crate::report;
use crate::telemetry::RunRecord;

/// Hosts the learner behind analyze's warnings of unlisted servers tracks at most.
const ANALYZE_MAX_HOSTS: usize = 25_000;

/// Where `analyze` writes the compliance report, when asked.
#[derive(Debug, Default)]
pub struct ReportFiles {
    pub html: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

impl ReportFiles {
    pub fn wanted(&self) -> bool {
        self.html.is_some() || self.json.is_some() || self.csv.is_some()
    }

    /// Writes `built` in each format asked for.
    pub fn write(&self, built: &report::Report) -> Result<(), Error> {
        let outputs = [
            (&self.html, report::html::render as fn(&report::Report) -> String),
            (&self.json, report::json::render),
            (&self.csv, report::csv::render),
        ];
        for (path, render) in outputs {
            if let Some(path) = path {
                std::fs::write(path, render(built))
                    .map_err(|e| format!("{}: cannot write the report: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Everything `analyze` needs, validated.
pub struct Settings {
    pub inputs: Inputs,
    pub run: RunSettings,
    /// Verdicts whose findings make the outcome [`Outcome::Findings`].
    pub fail_on: Vec<Verdict>,
    pub progress: bool,
    pub report: ReportFiles,
    /// The policy and topology files as the report's header names them.
    pub report_meta: Option<report::Meta>,
}

impl Settings {
    /// The EVE log: appended to, as Suricata appends to eve.json.
    pub fn sink(&self) -> Sink {
        self.run.eve_filetype.sink(&self.run.eve_log, true)
    }
}

pub fn run(mut settings: Settings) -> Result<Outcome, Error> {
    settings.run.config.judgeable()?;
    let publisher = super::publish::start(&mut settings.run, true)?;
    let config = &settings.run.config;
    for notice in settings.inputs.notices() {
        eprintln!("exwatch: {notice}");
    }
    let engine = settings.run.engine();
    let bar = super::progress_bar(settings.progress, settings.inputs.total_bytes());
    let progress = |bytes: u64| super::advance(&bar, bytes);
    let sink = settings.sink();
    // The learner sees the run's flows, to warn of hosts that act like a role the
    // topology does not give them (an unlisted Exchange server's traffic looks external).
    // At most ANALYZE_MAX_HOSTS hosts (about 300 bytes each): enough for the servers
    // and clients of a site, and a flood of spoofed answered flows does not take the
    // memory the flow table needs (`exwatch learn` tracks more, and the warnings say
    // when hosts went untracked).
    let learner = Learner::new(learn::Settings { answered_only: true, max_hosts: ANALYZE_MAX_HOSTS });
    // With --report, the compliance report is built from the same events, as they come.
    let sensor = settings.run.pipeline.sensor_name.clone();
    let captures = settings.inputs.files.iter().map(|path| path.display().to_string()).collect();
    let builder = settings.report_meta.take().map(|meta| {
        report::Builder::new(Arc::clone(&config.policy), Arc::clone(&config.topology), meta)
            .with_sensor(sensor)
            .with_captures(captures)
    });
    let mut observers = (learner, builder);
    let record = pipeline::analyze(
        Arc::clone(&engine),
        &settings.inputs.files,
        &settings.run.pipeline,
        pipeline::Outputs { sink: &sink, observer: Some(&mut observers) },
        &progress,
    );
    let delivered = super::publish::finish(&settings.run, publisher);
    let record = record.map_err(|e| format!("{}: {e}", settings.run.eve_log.display()))?;
    let (learner, builder) = observers;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let c = &record.counters;
    if c[Counter::Frames] == 0 && !record.eve_closed {
        for error in &record.errors {
            eprintln!("exwatch: {error}");
        }
        eprintln!("exwatch: no packet was read from any input: nothing was checked");
        return Ok(Outcome::Incomplete);
    }
    let unlisted = learn::unlisted(&learner, &engine.topology);
    let untouched = c[Counter::TouchingExchange] == 0;
    let outcome = if record.eve_closed {
        // Whoever reads the EVE lines has seen enough (`| head`): as ripgrep does, a
        // closed standard output ends the run quietly, not as a failure.
        Outcome::Clean
    } else if !record.errors.is_empty() || untouched {
        Outcome::Incomplete
    } else {
        Outcome::found(settings.fail_on.iter().any(|&v| c.findings(v) > 0))
    };
    let conclusion = super::conclusion(outcome, &record, &settings.run.config.topology_name);
    settings.run.summarize(
        &engine,
        &record,
        settings.inputs.not_captures_total(),
        None,
        (unlisted, delivered),
        (outcome, conclusion),
    )?;
    if let Some(builder) = builder {
        write_report(builder, &settings, &record)?;
    }
    if untouched && !record.eve_closed && record.errors.is_empty() {
        eprintln!(
            "exwatch: no flow touched a Mailbox or Edge address of {}: is this the topology of the network captured?",
            settings.run.config.topology_name
        );
    }
    Ok(outcome)
}

/// Finishes `analyze --report`: the inputs (name, size, SHA-256, how much of each was
/// read) and the run's capture health go into the report, which is written in each
/// format asked for.
fn write_report(mut builder: report::Builder, settings: &Settings, record: &RunRecord) -> Result<(), Error> {
    for path in &settings.inputs.files {
        builder.input(report::capture_input(path, &record.errors));
    }
    let ts = builder.last_seen().unwrap_or_default();
    let mut stats =
        report::StatsRecord::of_run(settings.run.pipeline.sensor_name.clone(), ts, &record.counters);
    let config = &settings.run.config;
    stats.judged_under = Some(report::JudgedUnder {
        topology_sha256: config.topology.sha256.clone(),
        policy_sha256: config.policy.sha256.clone(),
    });
    builder.stats(stats);
    let built = builder.finish();
    settings.report.write(&built)?;
    eprintln!("exwatch report: {}", built.conclusion.text);
    Ok(())
}

/// `--fail-on`: a comma-separated list of verdicts, or `never`.
pub fn fail_on(list: &str) -> Result<Vec<Verdict>, String> {
    if list.trim() == "never" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|item| match Verdict::from_name(item.trim()) {
            Some(v @ (Verdict::Violation | Verdict::Restriction | Verdict::Advisory | Verdict::Accepted)) => {
                Ok(v)
            }
            _ => Err(format!(
                "--fail-on: `{}` is not one of violation, restriction, advisory, accepted, never",
                item.trim()
            )),
        })
        .collect()
}
