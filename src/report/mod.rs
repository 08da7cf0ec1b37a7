//! The compliance report (specification, section 7): which rows of Microsoft's article
//! hold on the network, and the evidence, built from EVE events.
//!
//! ```text
//!  EVE lines ──► eve_input ──┐
//!                            ├──► records ──► Builder (aggregate) ──► finish ──► Report ──► html / json / csv
//!  flow::Event + Engine ─────┘                                                    ▲
//!                                                          baseline (earlier JSON)┘
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
pub mod eve_input;
mod finish;
pub mod html;
pub mod json;
pub mod model;
pub mod records;
mod svg;

pub use aggregate::{Builder, Meta};
pub use finish::human_duration;
pub use model::{Report, Status, SCHEMA};
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
) -> Result<Report, eve_input::ReadError> {
    let mut builder = Builder::new(policy, topology, meta);
    eve_input::read_logs(logs, &mut builder)?;
    let mut report = builder.finish();
    if let Some((earlier, file)) = baseline {
        report.changes = Some(baseline::compare(&earlier, &report, file));
    }
    Ok(report)
}
