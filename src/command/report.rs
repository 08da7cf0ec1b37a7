//! `exwatch report`: the compliance report built from EVE logs of any number of runs
//! and sensors.

use std::path::PathBuf;

use super::analyze::ReportFiles;
use super::{Config, Error, Outcome};
use crate::report::{self, model::FileRef, Meta};

/// Everything `report` needs, validated.
pub struct Settings {
    pub config: Config,
    /// The policy and topology files as the report's header names them.
    pub meta: Meta,
    pub logs: Vec<PathBuf>,
    pub outputs: ReportFiles,
    /// A JSON report of an earlier run, to say what changed since.
    pub baseline: Option<PathBuf>,
    /// Build the report from events judged under other files, or against another
    /// organization's baseline.
    pub allow_mixed: bool,
    /// `--since`/`--until`: only the flows that started in it.
    pub window: Option<(crate::time::Ts, crate::time::Ts)>,
}

pub fn run(settings: Settings) -> Result<Outcome, Error> {
    if !settings.outputs.wanted() {
        return Err("report: name at least one output: --html, --json or --csv".into());
    }
    let config = settings.config;
    if config.builtin_topology {
        eprintln!(
            "exwatch report: no --topology given: the roles come from the built-in example \"{}\", not a site's",
            config.topology.name
        );
    }
    let baseline = match &settings.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let earlier = report::json::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let file =
                FileRef { file: path.display().to_string(), sha256: report::digest::sha256(text.as_bytes()) };
            Some((earlier, file))
        }
        None => None,
    };
    let (meta, logs) = (settings.meta, &settings.logs);
    let built = report::build(
        config.policy,
        config.topology,
        meta,
        logs,
        baseline,
        (settings.allow_mixed, settings.window),
    )
    .map_err(|e| e.to_string())?;
    settings.outputs.write(&built)?;
    eprintln!("exwatch report: {}", built.conclusion.text);
    Ok(match report::exit_status(&built) {
        2 => Outcome::Incomplete,
        status => Outcome::found(status == 1),
    })
}
