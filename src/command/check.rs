//! `exwatch check`: a topology and a policy validated, the topology linted; with
//! `--json`, one document on standard output (described in docs/operations.md).

use std::path::{Path, PathBuf};

use super::{Config, Error, Outcome};

/// Everything `check` needs.
pub struct Settings {
    pub topology: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub json: bool,
}

/// `check --json`: the document.
#[derive(serde::Serialize)]
struct Document<'a> {
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
    /// Ordinary set-ups worth knowing once (a host inside a wider prefix of another
    /// role); they do not change the exit status.
    notices: Vec<CheckLint<'a>>,
}

#[derive(serde::Serialize)]
struct CheckLint<'a> {
    line: usize,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct CheckError<'a> {
    file: &'a Path,
    line: Option<usize>,
    key: &'a str,
    message: &'a str,
}

/// The document's shape.
const VERSION: u32 = 1;

fn print_json(document: &Document) -> Result<(), Error> {
    let text = serde_json::to_string(document).map_err(|e| e.to_string())?;
    super::print(format!("{text}\n").as_bytes())
}

/// `--json` for a topology or policy that cannot be used: the one error, status 2.
fn invalid(error: CheckError) -> Result<Outcome, Error> {
    print_json(&Document {
        version: VERSION,
        valid: false,
        policy: None,
        topology: None,
        errors: vec![error],
    })?;
    Ok(Outcome::Incomplete)
}

pub fn run(settings: &Settings) -> Result<Outcome, Error> {
    let config = match Config::try_load(settings.topology.as_deref(), settings.policy.as_deref()) {
        Ok(config) => config,
        Err(e) if !settings.json => return Err(e.to_string()),
        Err(e) => {
            eprintln!("exwatch: {e}");
            return invalid(CheckError { file: &e.file, line: e.line, key: &e.key, message: &e.message });
        }
    };
    if let Some(why) = config.refusal() {
        let file = std::path::PathBuf::from(&config.topology_name);
        if !settings.json {
            return Err(format!("{}: {why}", config.topology_name));
        }
        eprintln!("exwatch: {}: {why}", config.topology_name);
        return invalid(CheckError { file: &file, line: None, key: "roles", message: why });
    }
    let lints = config.topology_lints();
    let notices = config.topology.notices();
    let outcome = Outcome::found(!lints.is_empty());
    if settings.json {
        print_json(&Document {
            version: VERSION,
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
                builtin_example: settings.topology.is_none(),
                lints: lints.iter().map(|(line, message)| CheckLint { line: *line, message }).collect(),
                notices: notices.iter().map(|(line, message)| CheckLint { line: *line, message }).collect(),
            }),
            errors: Vec::new(),
        })?;
        return Ok(outcome);
    }
    let mut out = String::new();
    for line in config.notices().into_iter().chain(config.lints()) {
        out.push_str(&format!("{line}\n"));
    }
    out.push_str(&format!(
        "{}: {} rules, {} evidence kinds; {}: {} lint(s)\n",
        config.policy_name,
        config.policy.rules.len(),
        config.policy.evidence.len(),
        config.topology_name,
        lints.len()
    ));
    super::print(out.as_bytes())?;
    Ok(outcome)
}
