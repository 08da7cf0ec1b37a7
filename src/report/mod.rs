//! The compliance report (specification, section 7): which rows of Microsoft's article
//! hold on the network, and the evidence, built from EVE events.
//!
//! ```text
//!  EVE logs ──► logs ──► eve_input ──┐
//!                                    ├──► records ──► Builder ──► finish ──► Report ──► html / json / csv
//!  flow::Event + Engine ─────────────┘   (from_event)  (aggregate)             ▲
//!                                                            baseline (earlier JSON report)
//! ```
//!
//! The [`Builder`] takes plain owned records, so `exwatch report` (EVE logs of any
//! number of runs and sensors) and, in-process, an `analyze` run ([`from_event`]) feed
//! the same code. Memory is bounded by what the report shows, never by the number of
//! events (see [`aggregate`]). This module reads no packets and judges no flows: the
//! verdicts come in with the events.

pub mod aggregate;
pub mod baseline;
pub mod csv;
pub mod dedup;
pub mod digest;
pub mod eve_input;
mod finish;
pub mod html;
pub mod json;
pub mod logs;
pub mod model;
pub mod records;
mod svg;

pub use aggregate::Builder;
pub use finish::human_duration;
pub use model::{Meta, Report, Status, SCHEMA};
pub use records::{from_event, AlertRecord, FlowRecord, JudgedUnder, Record, StatsRecord};

/// Responder ports listed at most per never-restrict pair and per row (the rest are
/// counted).
pub const MAX_PAIR_PORTS: usize = 24;

/// Host pairs a row lists, most flows first.
pub const TOP_PAIRS: usize = 5;

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Read(#[from] logs::ReadError),
    /// Events judged under another topology or policy, or a baseline of another
    /// organization, without `--allow-mixed`.
    #[error("{0}")]
    Mixed(String),
}

/// Builds the report from EVE logs (`-` is standard input), adding what changed since
/// `baseline` (an earlier JSON report and where it came from) when given. Events judged
/// under another topology or policy than `meta` names (their `stats` events say), and a
/// baseline of another organization, are refused unless `allow_mixed`; allowed, the
/// report's health notes say so.
pub fn build(
    policy: std::sync::Arc<crate::policy::Policy>,
    topology: std::sync::Arc<crate::policy::Topology>,
    meta: Meta,
    logs: &[std::path::PathBuf],
    baseline: Option<(Report, model::FileRef)>,
    (allow_mixed, window): (bool, Option<(crate::time::Ts, crate::time::Ts)>),
) -> Result<Report, BuildError> {
    let organization = topology.name.clone();
    let mut builder = Builder::new(policy, topology, meta.clone()).with_window(window);
    logs::read_logs(logs, &mut builder)?;
    let mut report = builder.finish();
    let mut mixed = mixed_inputs(&report.inputs, &meta);
    if let Some((earlier, file)) = &baseline {
        if earlier.organization != organization {
            mixed.push(format!(
                "{}: a report of organization \"{}\" (topology {} SHA-256 {}), not of \"{organization}\" (topology {} SHA-256 {})",
                file.file, earlier.organization, earlier.topology.file, earlier.topology.sha256, meta.topology.file, meta.topology.sha256
            ));
        }
    }
    if let Some(first) = mixed.first().filter(|_| !allow_mixed) {
        return Err(BuildError::Mixed(format!("{first}; --allow-mixed builds the report anyway")));
    }
    for line in mixed {
        report.health.notes.push(format!("Mixed inputs (--allow-mixed): {line}."));
    }
    if let Some((earlier, file)) = baseline {
        report.changes = Some(baseline::compare(&earlier, &report, file));
    }
    Ok(report)
}

/// One line per input whose events were judged under another topology or policy than
/// the report's, naming both hashes and both files.
fn mixed_inputs(inputs: &[model::InputRef], meta: &Meta) -> Vec<String> {
    let mut lines = Vec::new();
    for input in inputs {
        for judged in &input.judged_under {
            let mut differ = Vec::new();
            if judged.topology_sha256 != meta.topology.sha256 {
                differ.push(format!(
                    "topology SHA-256 {}, not {} ({})",
                    judged.topology_sha256, meta.topology.sha256, meta.topology.file
                ));
            }
            if judged.policy_sha256 != meta.policy.sha256 {
                differ.push(format!(
                    "policy SHA-256 {}, not {} ({})",
                    judged.policy_sha256, meta.policy.sha256, meta.policy.file
                ));
            }
            if !differ.is_empty() {
                lines.push(format!("{}: events judged under {}", input.file, differ.join(" and ")));
            }
        }
    }
    lines
}

/// A capture (or any) file as the header lists an input: its name, size and SHA-256,
/// read as a stream.
pub fn file_input(path: &std::path::Path) -> std::io::Result<model::InputRef> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hash = sha2::Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hash)?;
    let sha256 = digest::hex(&hash.finalize());
    Ok(model::InputRef::file(path, (bytes, sha256), model::InputStatus::Read, None))
}

/// A capture of an `analyze` run as the header lists it: name, size and SHA-256, and
/// how much of it was read, from the run's capture errors (the packets, flows and time
/// range are the builder's, see [`Builder::input`]). Standard input has no size or hash.
pub fn capture_input(path: &std::path::Path, errors: &[crate::capture::CaptureError]) -> model::InputRef {
    let (status, detail) = capture_status(path, errors);
    let (bytes, sha256) = match file_input(path) {
        Ok(input) if !crate::capture::compressed::is_stdin(path) => (input.bytes, input.sha256),
        _ => (0, String::new()),
    };
    model::InputRef::file(path, (bytes, sha256), status, detail)
}

/// How much of a capture an `analyze` run read, from the run's capture errors: its
/// status and, unless read whole, where the damage is or why it could not be read.
pub fn capture_status(
    path: &std::path::Path,
    errors: &[crate::capture::CaptureError],
) -> (model::InputStatus, Option<String>) {
    use crate::capture::CaptureError;
    use model::InputStatus;
    let unread = |status, detail: String| (status, Some(detail));
    let error = errors.iter().find(|e| match e {
        CaptureError::Open { path: p, .. }
        | CaptureError::NotCapture { path: p, .. }
        | CaptureError::LinkType { path: p, .. }
        | CaptureError::Damaged { path: p, .. } => p == path,
        _ => false,
    });
    match error {
        None => (InputStatus::Read, None),
        Some(CaptureError::NotCapture { message, .. }) => unread(InputStatus::NotACapture, message.clone()),
        Some(CaptureError::Damaged { .. }) => {
            let text = error.map(ToString::to_string).unwrap_or_default();
            let at = text.find("damaged at").unwrap_or(0);
            unread(InputStatus::Damaged, text[at..].to_string())
        }
        Some(e) => {
            let text = e.to_string();
            let prefix = format!("{}: ", path.display());
            unread(InputStatus::Unreadable, text.strip_prefix(&prefix).unwrap_or(&text).to_string())
        }
    }
}

/// The exit status a report implies, as `analyze`'s: 2 when there was nothing to judge
/// or an input was not read whole, 1 when not compliant, 0 clean.
pub fn exit_status(report: &Report) -> u8 {
    let nothing = report.totals.flows_in_scope == 0;
    let incomplete = report.inputs.iter().any(|i| i.status != model::InputStatus::Read);
    if nothing || incomplete {
        2
    } else {
        u8::from(!report.conclusion.compliant)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::decode::{proto, Tuple};
    use crate::flow::{Confidence, Direction, Event, Flow, FlowKey};
    use crate::output::eve;
    use crate::policy::{Engine, Facts, Policy, Topology, Verdict};
    use crate::time::Ts;

    fn engine() -> Engine {
        let policy = Policy::parse(Path::new("exchange.toml"), include_str!("../../rules/exchange.toml"));
        let topology = Topology::parse(Path::new("topology.toml"), include_str!("../../rules/topology.toml"));
        Engine::new(Arc::new(policy.expect("policy")), Arc::new(topology.expect("topology")), 10)
    }

    fn meta() -> Meta {
        let file = |name: &str| model::FileRef { file: name.into(), sha256: String::new() };
        Meta { policy: file("p"), topology: file("t") }
    }

    /// A mix of flows and findings, as the pipeline would hand them to its writer.
    fn events(engine: &Engine) -> Vec<Event> {
        let mut out = Vec::new();
        let flows = [
            ("10.20.0.9", "10.10.1.11", 443, proto::TCP),
            ("10.20.0.9", "10.10.1.11", 80, proto::TCP),
            ("198.51.100.7", "10.10.1.12", 3389, proto::TCP),
            ("10.10.1.11", "10.10.0.5", 389, proto::TCP),
            ("10.10.1.11", "10.10.0.53", 53, proto::UDP),
        ];
        for (i, (src, dst, dport, protocol)) in flows.into_iter().enumerate() {
            let orig = Tuple {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                sport: 40_000,
                dport,
                proto: protocol,
            };
            let start = Ts(1_795_755_314_000_000_000 + i as u64 * 7_000_123);
            let facts = Facts {
                orig: orig.src,
                resp: orig.dst,
                resp_port: dport,
                proto: protocol,
                ts: start,
                plaintext: false,
            };
            let mut flow = Flow::new(
                FlowKey::of(&orig),
                orig,
                Direction::Observed,
                i as u64,
                start,
                Default::default(),
                engine.judge(&facts),
            );
            flow.pkts = [3, 2];
            flow.bytes = [300, 200 + i as u64];
            flow.last = Ts(start.0 + 1_000_000);
            let rule = flow.rule().expect("every flow matches a rule");
            let verdict = engine.policy.rules[rule].verdict;
            if verdict.is_finding() {
                out.push(Event::Alert {
                    ts: start,
                    at: start,
                    flow,
                    tunnel: None,
                    verdict,
                    rule,
                    evidence: None,
                    confidence: Confidence::High,
                    detail: None,
                    source: None,
                    exception: None,
                });
            }
            if engine.policy.rules[rule].never_restrict {
                let confidence = Confidence::Low;
                out.push(Event::Alert {
                    ts: flow.last,
                    at: flow.last,
                    flow,
                    tunnel: None,
                    verdict: Verdict::Restriction,
                    rule,
                    evidence: Some(1),
                    confidence,
                    detail: None,
                    source: None,
                    exception: None,
                });
            }
            out.push(Event::Flow {
                flow,
                tunnel: None,
                reason: crate::flow::EndReason::Shutdown,
                at: flow.last,
            });
        }
        out
    }

    #[test]
    fn a_report_fed_in_process_equals_the_report_of_the_eve_log() {
        let engine = engine();
        let events = events(&engine);
        let mut lines = Vec::new();
        for event in &events {
            eve::write_event(&mut lines, &engine, event);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("eve.json");
        std::fs::write(&log, &lines).expect("write");
        let (policy, topology) = (Arc::clone(&engine.policy), Arc::clone(&engine.topology));
        let mut from_log = build(
            Arc::clone(&policy),
            Arc::clone(&topology),
            meta(),
            std::slice::from_ref(&log),
            None,
            (false, None),
        )
        .expect("build");
        let mut builder = Builder::new(policy, topology, meta());
        for event in &events {
            builder.event(&engine, event);
        }
        builder.input(file_input(&log).expect("input"));
        let in_process = builder.finish();
        assert_eq!(from_log.totals.flows, 5);
        assert_eq!(from_log.totals.findings.violation, 1);
        assert_eq!(from_log.totals.findings.restriction, 1);
        // The EVE input's entry counts its events; the file's bytes are the same.
        assert_eq!(from_log.inputs[0].sha256, in_process.inputs[0].sha256);
        from_log.inputs = in_process.inputs.clone();
        assert_eq!(from_log, in_process);
    }
}
