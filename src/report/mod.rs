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
pub use records::{from_event, AlertRecord, FlowRecord, Record, StatsRecord};

/// Responder ports listed at most per never-restrict pair (the rest are counted).
pub const MAX_PAIR_PORTS: usize = 24;

/// Builds the report from EVE logs (`-` is standard input), adding what changed since
/// `baseline` (an earlier JSON report and where it came from) when given.
pub fn build(
    policy: std::sync::Arc<crate::policy::Policy>,
    topology: std::sync::Arc<crate::policy::Topology>,
    meta: Meta,
    logs: &[std::path::PathBuf],
    baseline: Option<(Report, model::FileRef)>,
) -> Result<Report, logs::ReadError> {
    let mut builder = Builder::new(policy, topology, meta);
    logs::read_logs(logs, &mut builder)?;
    let mut report = builder.finish();
    if let Some((earlier, file)) = baseline {
        report.changes = Some(baseline::compare(&earlier, &report, file));
    }
    Ok(report)
}

/// A capture (or any) file as the header lists an input: its name, size and SHA-256,
/// read as a stream.
pub fn file_input(path: &std::path::Path) -> std::io::Result<model::InputRef> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hash = sha2::Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hash)?;
    Ok(model::InputRef {
        file: path.display().to_string(),
        bytes,
        sha256: digest::hex(&hash.finalize()),
        events: 0,
        unreadable_lines: 0,
        sensors: Vec::new(),
        captures: Vec::new(),
        more_captures: 0,
        first: None,
        last: None,
    })
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
            let rule = flow.rule.expect("every flow matches a rule");
            let verdict = engine.policy.rules[rule].verdict;
            if verdict.is_finding() {
                out.push(Event::Alert {
                    ts: start,
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
            out.push(Event::Flow { flow, tunnel: None, reason: crate::flow::EndReason::Shutdown });
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
        let mut from_log =
            build(Arc::clone(&policy), Arc::clone(&topology), meta(), std::slice::from_ref(&log), None)
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
