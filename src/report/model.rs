//! The finished report: plain data, the same for every renderer, and the JSON report's
//! schema (`docs/report.md`, [`SCHEMA`]). Fields are added, never renamed or given a new
//! meaning, without a new schema number. This module holds data; it never computes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::digest::sha256;
use crate::policy::builtin;

/// The JSON report's schema version.
pub const SCHEMA: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: u32,
    /// `exwatch <version>`.
    pub generator: String,
    pub organization: String,
    pub policy: FileRef,
    pub topology: FileRef,
    pub inputs: Vec<InputRef>,
    pub sensors: Vec<Sensor>,
    pub capture: TimeRange,
    pub conclusion: Conclusion,
    pub totals: Totals,
    pub sections: Vec<Section>,
    pub never_restrict: NeverRestrict,
    pub role_matrix: Vec<RoleCell>,
    pub timeline: Vec<TimeBucket>,
    pub health: Health,
    /// Every `[[exception]]` of the topology, with the findings it accepted (left out
    /// when the topology declares none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<ExceptionRow>,
    /// With `--baseline`: what changed since the earlier report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

/// One `[[exception]]` of the topology and what it accepted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExceptionRow {
    pub id: String,
    /// The rule or evidence id it accepts, or `*`.
    pub rule: String,
    pub owner: String,
    pub reason: String,
    /// The last day it covers (`2027-03-31`).
    pub expires: String,
    /// Findings it accepted.
    pub accepted: u64,
    /// `used`, `unused`, or `expired` (the capture runs past its expiry).
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    pub file: String,
    pub sha256: String,
}

/// How much of an input was read.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    /// Read whole.
    Read,
    /// Read up to damage (`detail` says where): what came before it is in the rows.
    Damaged,
    /// Could not be opened or read at all.
    Unreadable,
    /// Not a capture (or, for `exwatch report`, holds no EVE event exwatch reads).
    NotACapture,
}

impl InputStatus {
    pub fn code(self) -> &'static str {
        match self {
            InputStatus::Read => "read",
            InputStatus::Damaged => "damaged",
            InputStatus::Unreadable => "unreadable",
            InputStatus::NotACapture => "not_a_capture",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            InputStatus::Read => "read whole",
            InputStatus::Damaged => "damaged",
            InputStatus::Unreadable => "unreadable",
            InputStatus::NotACapture => "not a capture",
        }
    }
}

/// One input: a capture (`analyze --report`) or an EVE log (`exwatch report`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputRef {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub status: InputStatus,
    /// Where the damage is, or why the input could not be read.
    pub detail: Option<String>,
    /// Packets of the input's flows (the flows that began in it).
    pub packets: u64,
    /// Flows that began in the input (each once, however many sensors saw it).
    pub flows: u64,
    /// Events of interest to the report (flow, alert, stats).
    pub events: u64,
    /// Lines that were not EVE events exwatch can read.
    pub unreadable_lines: u64,
    /// Sensor names (`host`) seen in the file.
    pub sensors: Vec<String>,
    /// Capture files (`pcap_filename`) the events name, at most
    /// [`super::logs::MAX_CAPTURES_LISTED`].
    pub captures: Vec<String>,
    /// Further capture files named, not listed.
    pub more_captures: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    /// The topologies and policies (SHA-256) the log's `stats` events say its events
    /// were judged under; empty without such events (and for captures).
    pub judged_under: Vec<super::JudgedUnder>,
}

impl InputRef {
    /// A file as the header lists it, with its size and SHA-256, before the builder has
    /// counted what it held.
    pub fn file(
        path: &Path,
        (bytes, sha256): (u64, String),
        status: InputStatus,
        detail: Option<String>,
    ) -> InputRef {
        InputRef {
            file: path.display().to_string(),
            bytes,
            sha256,
            status,
            detail,
            packets: 0,
            flows: 0,
            events: 0,
            unreadable_lines: 0,
            sensors: Vec::new(),
            captures: Vec::new(),
            more_captures: 0,
            first: None,
            last: None,
            judged_under: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sensor {
    /// `host`; `(unnamed)` for events without one.
    pub name: String,
    pub events: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimeRange {
    pub first: Option<String>,
    pub last: Option<String>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Conclusion {
    /// No violation and no restriction evidence in at least one observed flow.
    pub compliant: bool,
    pub text: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Flows counted (each once, however many sensors saw it).
    pub flows: u64,
    /// Of `flows`, those a rule of the article covers (not out of scope, matched).
    pub flows_in_scope: u64,
    pub bytes: u64,
    /// Flow and alert events dropped as copies of one seen by another sensor.
    pub duplicates: u64,
    /// Flows that matched no rule of the policy.
    pub unmatched_flows: u64,
    /// Events naming a rule or evidence this policy does not have.
    pub unknown_rule_events: u64,
    pub findings: VerdictCounts,
    /// Where `flows` comes from: the flow events (each counted once, an aggregate flow
    /// record as the flows it stands for), or, when every sensor wrote flow events of
    /// in-scope flows only (`--flows=in-scope`, said by its `stats` events), the flows
    /// its last `stats` event counted, summed over the sensors.
    pub flows_counted_from: FlowsFrom,
}

/// Where the report's flow total comes from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FlowsFrom {
    FlowEvents,
    Stats,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerdictCounts {
    pub advisory: u64,
    pub violation: u64,
    pub restriction: u64,
    /// Findings an exception of the topology accepted (left out when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub accepted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Section {
    /// The section of the article, as the policy's rules cite it.
    pub title: String,
    pub rows: Vec<Row>,
}

/// What the traffic of a rule shows.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Traffic matched the rule and none of it was a finding.
    Compliant,
    /// Allowed traffic the policy says is worth knowing (advisories).
    Advisory,
    /// Traffic that should not exist.
    Violation,
    /// Evidence that traffic which must never be restricted is being restricted.
    Restriction,
    /// Findings, every one accepted by an exception of the topology.
    Accepted,
    /// Traffic outside the article's scope (the policy's `out_of_scope` rule).
    OutOfScope,
    /// No traffic matched the rule: neither compliant nor blocked.
    NotObserved,
    /// An evidence kind looked for on the traffic that must never be restricted, which
    /// was seen, and not found.
    NoneFound,
    /// The row cannot apply under this topology (`why` says why).
    NotApplicable,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Compliant => "observed and compliant",
            Status::Advisory => "advisories",
            Status::Violation => "violations",
            Status::Restriction => "restriction evidence",
            Status::Accepted => "accepted by exceptions",
            Status::OutOfScope => "out of scope",
            Status::NotObserved => "not observed",
            Status::NoneFound => "checked, none found",
            Status::NotApplicable => "not applicable",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::Advisory => "advisory",
            Status::Violation => "violation",
            Status::Restriction => "restriction",
            Status::Accepted => "accepted",
            Status::OutOfScope => "out_of_scope",
            Status::NotObserved => "not_observed",
            Status::NoneFound => "none_found",
            Status::NotApplicable => "not_applicable",
        }
    }
}

/// What a row stands for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A `[[rule]]` of the policy.
    Rule,
    /// An `[[evidence]]` kind of the policy: restriction evidence it looks for.
    Evidence,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Row {
    /// The rule's id, or the evidence's.
    pub rule: String,
    pub kind: RowKind,
    /// The rule's verdict in the policy (`restriction` for evidence).
    pub verdict: String,
    pub reason: String,
    pub status: Status,
    pub flows: u64,
    pub bytes: u64,
    /// Distinct (originator, responder) address pairs.
    pub host_pairs: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub alerts: VerdictCounts,
    /// Why the row cannot apply (its conditions on the topology do not hold; for
    /// evidence, what finds it), when that is so.
    pub why: Option<String>,
    /// Responder ports of the row's flows (of its findings, for evidence), as
    /// `port/proto`, sorted (at most [`super::MAX_PAIR_PORTS`]).
    pub ports: Vec<String>,
    /// Further distinct ports not listed.
    pub more_ports: u64,
    /// The host pairs with the most flows, most first (at most [`super::TOP_PAIRS`]).
    pub top_pairs: Vec<TopPair>,
    /// Every aggregated finding of the row, most frequent first (restriction findings
    /// are on their evidence's row).
    pub findings: Vec<Finding>,
}

/// Originator and responder of a row's flows, with their count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopPair {
    pub src_ip: String,
    pub dest_ip: String,
    pub flows: u64,
    pub bytes: u64,
}

/// Findings aggregated as rule x originator -> responder:port/proto.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    /// Restrictions: the evidence id.
    pub evidence: Option<String>,
    pub verdict: String,
    pub src_ip: String,
    pub dest_ip: String,
    pub dest_port: Option<u16>,
    pub proto: String,
    /// Alerts (flows) aggregated.
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The lowest confidence among the alerts aggregated.
    pub confidence: String,
    /// The Community ID of the first alert: a flow to look up in Zeek, Suricata or Arkime.
    pub community_id: String,
    /// The sensor (EVE `host`) of the first alert, when it names one.
    pub sensor: Option<String>,
    /// The capture file (EVE `pcap_filename`) of the first alert, when it names one.
    pub pcap_filename: Option<String>,
    /// Verdict `accepted`: the exception that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

impl Finding {
    /// What identifies the finding across reports.
    pub fn key(&self) -> (String, Option<String>, String, String, Option<u16>, String) {
        (
            self.rule.clone(),
            self.evidence.clone(),
            self.src_ip.clone(),
            self.dest_ip.clone(),
            self.dest_port,
            self.proto.clone(),
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NeverRestrict {
    /// Hosts of the pairs, sorted by role then address.
    pub hosts: Vec<Host>,
    pub pairs: Vec<Pair>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Host {
    pub ip: String,
    /// From the topology.
    pub role: String,
}

/// What a never-restrict pair shows.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    /// Traffic, and no restriction evidence.
    Traffic,
    /// Restriction evidence (see `evidence`).
    Restricted,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pair {
    /// The lower address first.
    pub a: String,
    pub b: String,
    pub status: PairStatus,
    pub flows: u64,
    pub bytes: u64,
    /// Responder ports seen, as `port/proto`, sorted (at most [`super::MAX_PAIR_PORTS`]).
    pub ports: Vec<String>,
    /// Further distinct ports not listed.
    pub more_ports: u64,
    /// Restriction evidence by id, with counts.
    pub evidence: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleCell {
    pub src_role: String,
    pub dest_role: String,
    pub flows: u64,
    pub bytes: u64,
    /// `restriction`, `violation`, `advisory` or `ok`: the gravest finding of the cell;
    /// `out_of_scope` when none of its flows is one the article covers.
    pub worst: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimeBucket {
    pub start: String,
    /// The bucket's width.
    pub seconds: f64,
    pub findings: VerdictCounts,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub flows: u64,
    /// Flows with packets one way only.
    pub one_sided: u64,
    /// Flows whose direction was inferred (picked up mid-stream).
    pub midstream: u64,
    /// Flows with sequence gaps, and the gaps counted.
    pub gapped_flows: u64,
    pub gaps: u64,
    /// EVE `flow.state` values (`new`, `established`, `closed`), with counts.
    pub flow_states: Vec<(String, u64)>,
    /// Zeek `conn_state` codes, with counts.
    pub conn_states: Vec<(String, u64)>,
    /// From `stats` events (the last of each sensor, summed); absent without any.
    pub stats: Option<StatsTotals>,
    /// Findings of low confidence (a one-sided feed, little history behind a comparison).
    pub low_confidence_findings: u64,
    /// Dedup keys forgotten before their window passed (the table was full).
    pub dedup_forgotten: u64,
    /// What the above means for the rows.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatsTotals {
    pub sensors: u64,
    pub packets: u64,
    pub decoded: u64,
    pub skipped: u64,
    pub skipped_by_reason: Vec<(String, u64)>,
    pub drops: u64,
    pub flows_evicted: u64,
}

/// What changed since the baseline report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Changes {
    pub baseline: FileRef,
    pub status_changed: Vec<StatusChange>,
    pub new_findings: Vec<Finding>,
    pub gone_findings: Vec<Finding>,
    /// Never-restrict pairs with traffic in the baseline and none now.
    pub pairs_lost_traffic: Vec<Pair>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusChange {
    pub rule: String,
    pub before: Status,
    pub after: Status,
}

/// Where the policy and topology come from, for the header.
#[derive(Clone, Debug)]
pub struct Meta {
    pub policy: FileRef,
    pub topology: FileRef,
}

impl Meta {
    /// The policy and topology files given (the built-in ones for `None`), each named
    /// with the SHA-256 of its bytes (the built-in text when no file was given).
    pub fn of_files(topology: Option<&Path>, policy: Option<&Path>) -> Result<Meta, String> {
        let file = |path: Option<&Path>, default: &str, builtin: &str| -> Result<FileRef, String> {
            Ok(match path {
                Some(path) => FileRef {
                    file: path.display().to_string(),
                    sha256: sha256(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?),
                },
                None => FileRef { file: format!("{default} (built in)"), sha256: sha256(builtin.as_bytes()) },
            })
        };
        Ok(Meta {
            policy: file(policy, builtin::POLICY_NAME, builtin::POLICY)?,
            topology: file(topology, builtin::TOPOLOGY_NAME, builtin::TOPOLOGY)?,
        })
    }
}
