//! The finished report: plain data, the same for every renderer, and the JSON report's
//! schema (`docs/report.md`, [`SCHEMA`]). Fields are added, never renamed or given a new
//! meaning, without a new schema number. This module holds data; it never computes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::digest::sha256;
use crate::policy::builtin;

/// The JSON report's schema version.
pub const SCHEMA: u32 = 1;

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

/// One EVE log read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputRef {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
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
    pub bytes: u64,
    /// Flow and alert events dropped as copies of one seen by another sensor.
    pub duplicates: u64,
    /// Flows that matched no rule of the policy.
    pub unmatched_flows: u64,
    /// Events naming a rule or evidence this policy does not have.
    pub unknown_rule_events: u64,
    pub findings: VerdictCounts,
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
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Row {
    pub rule: String,
    /// The rule's verdict in the policy.
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
    /// Why the rule can never match with this topology (its conditions on the topology
    /// do not hold), when that is so: "not observed" then says nothing of the network.
    pub inapplicable: Option<String>,
    /// Every aggregated finding of the rule, most frequent first.
    pub findings: Vec<Finding>,
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
    /// `restriction`, `violation`, `advisory` or `ok`: the gravest finding of the cell.
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
    /// Unanswered-SYN restrictions of low confidence (the feed may be one-sided).
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
