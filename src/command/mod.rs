//! The commands: `analyze`, `live`, `learn`, `report`, `check`, `compare`, `generate` and
//! `collect`,
//! one function each, taking validated settings and returning an [`Outcome`] (or an
//! error the binary prints and maps to exit status 2).
//!
//! Owns: what a command prints on stderr and standard output, and which files it writes.
//! Never: parses flags (the binary does), or does a stage's work itself: it wires the
//! stages below it and says what they found.

pub mod analyze;
pub mod check;
pub mod collect;
pub mod compare;
pub mod generate;
pub mod inputs;
pub mod learn;
pub mod live;
pub mod manual;
pub mod publish;
pub mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ConfigError;
use crate::counters::Counter;
use crate::output::summary::FileLine;
use crate::output::{Sink, Summary};
use crate::pipeline;
use crate::policy::{builtin, Engine, Policy, Role, Topology};
use crate::telemetry::RunRecord;

pub use inputs::Inputs;

/// How a command ended, as the exit status says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report (exit status 0).
    Clean,
    /// Findings of a verdict the run fails on, or differences (exit status 1).
    Findings,
    /// The run could not check what it was given, and has said why (exit status 2).
    Incomplete,
}

impl Outcome {
    pub fn exit_status(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Findings => 1,
            Outcome::Incomplete => 2,
        }
    }

    /// [`Outcome::Findings`] when `found`, else [`Outcome::Clean`].
    pub fn found(found: bool) -> Outcome {
        if found {
            Outcome::Findings
        } else {
            Outcome::Clean
        }
    }
}

/// A command's error: one line for the user, exit status 2.
pub type Error = String;

/// Policy and topology, loaded and validated.
pub struct Config {
    pub policy: Arc<Policy>,
    pub topology: Arc<Topology>,
    pub policy_name: String,
    /// The topology file, or `built-in example "contoso"`.
    pub topology_name: String,
    /// No topology file was given: the example organization is what is judged against.
    pub builtin_topology: bool,
    /// The files given (`None`: the built-in one).
    pub topology_file: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
}

impl Config {
    /// The policy and topology files given (the built-in ones for `None`).
    pub fn load(topology: Option<&Path>, policy: Option<&Path>) -> Result<Config, Error> {
        Config::try_load(topology, policy).map_err(|e| e.to_string())
    }

    /// As [`Config::load`], with the error as it was found (file, line, key).
    pub fn try_load(topology: Option<&Path>, policy: Option<&Path>) -> Result<Config, ConfigError> {
        let policy_file = policy.map(Path::to_path_buf);
        let (policy, policy_name) = match policy {
            Some(path) => (Policy::load(path)?, path.display().to_string()),
            None => (builtin::policy()?, builtin::POLICY_NAME.into()),
        };
        let loaded = Arc::new(match topology {
            Some(path) => Topology::load(path)?,
            None => builtin::topology()?,
        });
        let policy = crate::policy::for_topology(policy, &loaded)?;
        let topology_name = match topology {
            Some(path) => path.display().to_string(),
            None => format!("built-in example {:?}", loaded.name),
        };
        Ok(Config {
            policy: Arc::new(policy),
            topology: loaded,
            policy_name,
            topology_name,
            builtin_topology: topology.is_none(),
            topology_file: topology.map(Path::to_path_buf),
            policy_file,
        })
    }

    /// What `check` reports, as warnings: `FILE:LINE: text`.
    pub fn lints(&self) -> Vec<String> {
        let file = if self.builtin_topology { builtin::TOPOLOGY_NAME } else { &self.topology_name };
        self.topology_lints().into_iter().map(|(line, lint)| format!("{file}:{line}: {lint}")).collect()
    }

    /// The topology's lints, and its exceptions that expire within 30 days of now
    /// (wall clock): `(line, text)`.
    pub fn topology_lints(&self) -> Vec<(usize, String)> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut lints = self.topology.lint();
        lints.extend(self.topology.expiring(now));
        lints
    }

    /// What `check` shows once as notices: `FILE:LINE: notice: text`.
    pub fn notices(&self) -> Vec<String> {
        let file = if self.builtin_topology { builtin::TOPOLOGY_NAME } else { &self.topology_name };
        self.topology
            .notices()
            .into_iter()
            .map(|(line, text)| format!("{file}:{line}: notice: {text}"))
            .collect()
    }

    /// Why `analyze` and `live` would refuse this topology, if they would: `check` says
    /// the same, with the same exit status.
    pub fn refusal(&self) -> Option<&'static str> {
        (!self.topology.has_role(Role::Mailbox) && !self.topology.has_role(Role::Edge))
            .then_some("lists no Mailbox and no Edge server: there is nothing the policy could judge")
    }

    /// Refuses a topology with nothing to judge, and says when the example is used.
    fn judgeable(&self) -> Result<(), Error> {
        if let Some(why) = self.refusal() {
            return Err(format!("{}: {why}", self.topology_name));
        }
        if self.builtin_topology {
            eprintln!(
                "exwatch: no --topology given: judging against the {}, not your site's",
                self.topology_name
            );
        }
        Ok(())
    }
}

/// What `analyze` and `live` share, validated.
pub struct RunSettings {
    pub config: Config,
    pub eve_log: PathBuf,
    pub eve_filetype: crate::output::socket::Filetype,
    pub summary_json: Option<PathBuf>,
    pub pipeline: pipeline::Settings,
    pub max_smtp_senders: usize,
    /// Where events are published besides the EVE log (`--redis`).
    pub redis: Option<crate::output::redis::Settings>,
}

impl RunSettings {
    pub fn engine(&self) -> Arc<Engine> {
        Arc::new(Engine::new(
            Arc::clone(&self.config.policy),
            Arc::clone(&self.config.topology),
            self.max_smtp_senders,
        ))
    }

    /// Prints the summary, then the errors of the run (never inside the summary), and
    /// writes the summary as JSON when asked (`-`: standard output; `opened`: the file,
    /// opened already); `files` are the capture files read (none live), and
    /// `not_captures` counts the files found in directories that were skipped; `warnings` are what the run noticed about the topology, beside its lints;
    /// `redis`, what the publisher did (`--redis`).
    fn summarize(
        &self,
        engine: &Engine,
        record: &RunRecord,
        (files, not_captures): (&[std::path::PathBuf], usize),
        opened: Option<std::fs::File>,
        (warnings, redis): (Vec<String>, Option<crate::telemetry::DeliveryCounts>),
        (outcome, conclusion): (Outcome, String),
    ) -> Result<(), Error> {
        let meta = crate::report::Meta::of_files(
            self.config.topology_file.as_deref(),
            self.config.policy_file.as_deref(),
        )?;
        let lines = files
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let (status, detail) = crate::report::capture_status(path, &record.errors);
                let count = record.counters.files.get(i).copied().unwrap_or_default();
                FileLine {
                    path: path.display().to_string(),
                    status: status.code(),
                    detail,
                    packets: count.frames,
                    flows: count.flows,
                }
            })
            .collect();
        let summary = Summary::new(engine, &self.config.topology_name, record)
            .with_outcome(outcome.exit_status(), conclusion)
            .with_origin(self.pipeline.sensor_name.clone(), meta.topology.sha256, meta.policy.sha256)
            .with_files(lines)
            .with_not_captures(not_captures)
            .with_warnings(self.config.lints())
            .with_warnings(warnings)
            .with_redis(redis);
        // One write, so that nothing another thread says lands inside it.
        let mut text = summary.render();
        for (_, message) in &summary.errors {
            text.push_str(&format!("exwatch: {message}\n"));
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
        if let Some(path) = &self.summary_json {
            let mut json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
            json.push(b'\n');
            let written = match opened {
                _ if path.as_os_str() == "-" => return print(&json),
                Some(mut file) => file.write_all(&json),
                None => std::fs::write(path, json),
            };
            written.map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// The run's conclusion in one line, for the summary: what the exit status means.
fn conclusion(outcome: Outcome, record: &RunRecord, topology: &str) -> String {
    let c = &record.counters;
    let (flows, covered) = (c[Counter::Flows], c[Counter::TouchingExchange]);
    match outcome {
        _ if record.eve_closed => "the EVE log's reader went away: the run ended early".to_string(),
        Outcome::Incomplete if !record.errors.is_empty() => format!(
            "not checked whole: {} input(s) could not be read, or only in part; nothing is claimed of what was not read",
            record.errors.len()
        ),
        Outcome::Incomplete => {
            format!("nothing checked: no flow touched a Mailbox or Edge address of {topology}, of {flows} read")
        }
        Outcome::Findings => format!(
            "not compliant: {} violation(s), {} restriction(s), {} advisory(ies) in {covered} flows the article covers, of {flows} read",
            c[Counter::Violations],
            c[Counter::Restrictions],
            c[Counter::Advisories]
        ),
        Outcome::Clean => format!(
            "no finding the run fails on in {covered} flows the article covers, of {flows} read ({} advisory(ies), {} accepted)",
            c[Counter::Advisories],
            c.findings(crate::policy::Verdict::Accepted)
        ),
    }
}

/// This machine's hostname, the default sensor name.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok())
}

/// Writes `bytes` to standard output; a closed one (`| head`) is not an error.
pub fn print(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("standard output: {e}")),
        _ => Ok(()),
    }
}

/// Writes `text` to a file, or to standard output for `-`.
fn write_out(path: &Path, text: &[u8]) -> Result<(), Error> {
    Sink::at(path, false)
        .open()
        .and_then(|mut w| w.write_all(text).and_then(|_| w.flush()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A progress bar on stderr when it is a terminal and `wanted`: of `total` bytes, or
/// with no total known (0), bytes read and the rate.
fn progress_bar(wanted: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = match total {
        0 => "{spinner} {bytes} {bytes_per_sec}",
        _ => "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Moves `bar` to `bytes`: jobs reading files side by side report totals that may
/// arrive out of order, so it never goes back.
fn advance(bar: &Option<indicatif::ProgressBar>, bytes: u64) {
    if let Some(bar) = bar {
        bar.set_position(bytes.max(bar.position()));
    }
}
