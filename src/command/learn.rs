//! `exwatch learn`: a topology drafted from the traffic, or the traffic compared with
//! one: the pipeline of `analyze` with the learner as its observer and no EVE output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Error, Inputs, Outcome};
use crate::counters::Counter;
use crate::learn::{self, compare, Draft, Learner};
use crate::output::Sink;
use crate::pipeline;
use crate::policy::{Engine, Policy, Role, Topology};

/// Everything `learn` needs, validated.
pub struct Settings {
    pub inputs: Inputs,
    /// Where the draft or the comparison goes: a file, or `-`.
    pub output: PathBuf,
    /// The topology to compare with, and its name.
    pub topology: Option<(Arc<Topology>, String)>,
    pub policy: Arc<Policy>,
    pub pipeline: pipeline::Settings,
    pub learn: learn::Settings,
    pub progress: bool,
}

pub fn run(settings: Settings) -> Result<Outcome, Error> {
    for notice in settings.inputs.notices() {
        eprintln!("exwatch: {notice}");
    }
    let topology = match &settings.topology {
        Some((topology, _)) => Arc::clone(topology),
        None => Arc::new(Topology::parse(Path::new("(none)"), "").map_err(|e| e.to_string())?),
    };
    let engine = Arc::new(Engine::new(Arc::clone(&settings.policy), Arc::clone(&topology), 0));
    let bar = super::progress_bar(settings.progress, settings.inputs.total_bytes());
    let progress = |bytes: u64| super::advance(&bar, bytes);
    let mut learner = Learner::new(settings.learn.clone());
    let outputs = pipeline::Outputs { sink: &Sink::Off, observer: Some(&mut learner) };
    let record = pipeline::analyze(engine, &settings.inputs.files, &settings.pipeline, outputs, &progress)
        .map_err(|e| e.to_string())?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for error in &record.errors {
        eprintln!("exwatch: {error}");
    }
    let draft = Draft::new(&learner);
    let t = &draft.tally;
    eprintln!(
        "exwatch learn: {} packets, {} flows ({} answered); {} hosts in roles, {} client prefix(es), {} subscription(s){}",
        record.counters[Counter::Frames],
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
    let read_whole = record.errors.is_empty();
    let Some((topology, name)) = &settings.topology else {
        let sources = match settings.inputs.files.len() {
            1 => settings.inputs.files[0].display().to_string(),
            n => format!("{n} capture files"),
        };
        super::write_out(&settings.output, draft.to_toml(&sources).as_bytes())?;
        let exchange = draft.hosts.iter().any(|h| matches!(h.role, Role::Mailbox | Role::Edge));
        if !exchange {
            // Written all the same (its domain controllers and clients are worth keeping),
            // but said: analyze and check would refuse it as it stands.
            eprintln!(
                "exwatch learn: the draft lists no Mailbox and no Edge server, so analyze would refuse it:                  were the Exchange servers' answers in the capture? Add them by hand, or capture nearer them"
            );
        }
        return Ok(if read_whole && exchange { Outcome::Clean } else { Outcome::Incomplete });
    };
    let findings = compare(&learner, &draft, topology);
    let mut text: String = findings.iter().map(|f| format!("{name}: {}: {f}\n", f.kind.name())).collect();
    let differences = findings.iter().filter(|f| f.kind.is_difference()).count();
    let unjudged = findings.len() - differences;
    text.push_str(&format!("{name}: {differences} difference(s) with the traffic"));
    if unjudged > 0 {
        text.push_str(&format!("; {unjudged} listed host(s) with not enough evidence to judge"));
    }
    text.push('\n');
    super::write_out(&settings.output, text.as_bytes())?;
    Ok(match read_whole {
        false => Outcome::Incomplete,
        true => Outcome::found(differences > 0),
    })
}
