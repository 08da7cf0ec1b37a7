//! From the builder's totals to the [`Report`]: rows in the article's order, statuses,
//! the conclusion, the timeline's buckets and what capture health means. Pure: it
//! never reads input and never formats output.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::model::*;
use super::records::{format_timestamp, Micros, StatsRecord};
use crate::policy::{EvidenceKind, Policy, Role, Topology, Verdict};

/// A builder's state, taken apart to be finished: what [`finish`] makes a report of.
pub(super) struct Parts {
    pub policy: Arc<Policy>,
    pub topology: Arc<Topology>,
    pub meta: Meta,
    pub rows: Vec<RowParts>,
    pub evidence_rows: Vec<RowParts>,
    pub findings: Vec<(usize, Finding)>,
    pub pairs: Vec<((IpAddr, IpAddr), PairParts)>,
    pub roles: Vec<RoleCell>,
    pub minutes: BTreeMap<u64, VerdictCounts>,
    pub slot: Micros,
    pub sensors: Vec<Sensor>,
    pub stats: Vec<StatsRecord>,
    pub inputs: Vec<InputRef>,
    pub health: Health,
    pub totals: Totals,
    pub first: Option<Micros>,
    pub last: Option<Micros>,
    /// Accepted findings per exception id.
    pub exceptions: BTreeMap<String, u64>,
}

pub(super) struct RowParts {
    pub flows: u64,
    pub bytes: u64,
    pub host_pairs: u64,
    pub first: Option<Micros>,
    pub last: Option<Micros>,
    pub alerts: VerdictCounts,
    pub ports: Vec<String>,
    pub more_ports: u64,
    pub top_pairs: Vec<TopPair>,
}

pub(super) struct PairParts {
    pub flows: u64,
    pub bytes: u64,
    pub ports: Vec<String>,
    pub more_ports: u64,
    pub evidence: Vec<(String, u64)>,
}

/// Buckets of the findings-over-time picture at most.
const TIME_BUCKETS: u64 = 48;

pub(super) fn finish(mut p: Parts) -> Report {
    let mut findings_by_rule: Vec<Vec<Finding>> = vec![Vec::new(); p.rows.len()];
    let mut findings_by_evidence: Vec<Vec<Finding>> = vec![Vec::new(); p.evidence_rows.len()];
    for (index, finding) in std::mem::take(&mut p.findings) {
        let evidence =
            finding.evidence.as_deref().and_then(|id| p.policy.evidence.iter().position(|e| e.id == id));
        match evidence {
            Some(i) => findings_by_evidence[i].push(finding),
            None => findings_by_rule[index].push(finding),
        }
    }
    let sorted = |mut findings: Vec<Finding>| {
        findings.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key().cmp(&b.key())));
        findings
    };
    let mut sections: Vec<Section> = Vec::new();
    let mut place = |title: &str, row: Row| match sections.iter_mut().find(|s| s.title == title) {
        Some(section) => section.rows.push(row),
        None => sections.push(Section { title: title.to_string(), rows: vec![row] }),
    };
    for (index, (rule, acc)) in p.policy.rules.iter().zip(std::mem::take(&mut p.rows)).enumerate() {
        let observed = acc.flows > 0 || acc.alerts != VerdictCounts::default();
        let why = inapplicable(rule, &p.topology);
        let status = if acc.alerts.restriction > 0 {
            Status::Restriction
        } else if acc.alerts.violation > 0
            || (observed && rule.verdict == Verdict::Violation && acc.alerts.accepted == 0)
        {
            Status::Violation
        } else if acc.alerts.accepted > 0 {
            Status::Accepted
        } else if !observed && why.is_some() {
            Status::NotApplicable
        } else if !observed {
            Status::NotObserved
        } else if acc.alerts.advisory > 0 || rule.verdict == Verdict::Advisory {
            Status::Advisory
        } else if rule.verdict == Verdict::OutOfScope {
            Status::OutOfScope
        } else {
            Status::Compliant
        };
        let findings = sorted(std::mem::take(&mut findings_by_rule[index]));
        let row = row(&rule.id, RowKind::Rule, rule.verdict.name(), &rule.reason, status, why, acc, findings);
        place(&rule.section, row);
    }
    // Evidence is looked for on the flows of the never-restrict pairs: with none seen,
    // nothing was checked.
    let checked = !p.pairs.is_empty();
    for (index, (evidence, acc)) in
        p.policy.evidence.iter().zip(std::mem::take(&mut p.evidence_rows)).enumerate()
    {
        let two_points = matches!(evidence.kind, EvidenceKind::OptionsAltered | EvidenceKind::SynDropped);
        let why = two_points.then(|| {
            "found only by `exwatch compare`, from the same traffic seen at two capture points".to_string()
        });
        let status = if acc.alerts.restriction > 0 {
            Status::Restriction
        } else if acc.alerts.accepted > 0 {
            Status::Accepted
        } else if checked && !two_points {
            Status::NoneFound
        } else {
            Status::NotObserved
        };
        let findings = sorted(std::mem::take(&mut findings_by_evidence[index]));
        let row =
            row(&evidence.id, RowKind::Evidence, "restriction", &evidence.reason, status, why, acc, findings);
        place(&evidence.section, row);
    }
    let seconds = match (p.first, p.last) {
        (Some(f), Some(l)) => (l - f) as f64 / 1e6,
        _ => 0.0,
    };
    // Flow events of in-scope flows only do not count the others: every sensor's stats
    // events do, so the total of the traffic read comes from them.
    if !p.stats.is_empty() && p.stats.iter().all(|s| s.in_scope_flows) {
        p.totals.flows = p.stats.iter().map(|s| s.flows).sum();
        p.totals.flows_counted_from = FlowsFrom::Stats;
    }
    let conclusion = conclusion(&p.totals, &sections, &p.inputs, seconds);
    let never_restrict = never_restrict(&p);
    let timeline = timeline(&p.minutes, p.slot, (p.first, p.last));
    let mut health = p.health;
    health.stats = stats_totals(&p.stats);
    health.notes = notes(&health, &p.totals);
    let unreadable: u64 = p.inputs.iter().map(|i| i.unreadable_lines).sum();
    if unreadable > 0 {
        health.notes.push(format!(
            "{unreadable} lines of the input were not EVE events exwatch can read (see the inputs): what they held is missing from the rows."
        ));
    }
    if p.totals.unknown_rule_events > 0 {
        health.notes.push(format!(
            "{} events name rules this policy does not have: the logs were written with another policy (give it with --policy); their flows are missing from the rows.",
            p.totals.unknown_rule_events
        ));
    }
    Report {
        schema: SCHEMA,
        generator: format!("exwatch {}", env!("CARGO_PKG_VERSION")),
        organization: p.topology.name.clone(),
        policy: p.meta.policy,
        topology: p.meta.topology,
        inputs: p.inputs,
        sensors: p.sensors,
        capture: TimeRange {
            first: p.first.map(format_timestamp),
            last: p.last.map(format_timestamp),
            seconds,
        },
        conclusion,
        totals: p.totals,
        sections,
        never_restrict,
        role_matrix: p.roles,
        timeline,
        health,
        exceptions: exception_rows(&p.topology, &p.exceptions, p.last),
        changes: None,
    }
}

/// Every exception of the topology with the findings it accepted: `used`, `unused`,
/// or `expired` when the capture runs past the end of its last day.
fn exception_rows(
    topology: &crate::policy::Topology,
    accepted: &BTreeMap<String, u64>,
    last: Option<Micros>,
) -> Vec<ExceptionRow> {
    topology
        .exceptions
        .iter()
        .map(|e| {
            let count = accepted.get(&e.id).copied().unwrap_or(0);
            let expired = last.is_some_and(|last| last.saturating_mul(1_000) >= e.end.0);
            ExceptionRow {
                id: e.id.clone(),
                rule: e.rule.clone(),
                owner: e.owner.clone(),
                reason: e.reason.clone(),
                expires: e.expires.clone(),
                accepted: count,
                status: if expired {
                    "expired"
                } else if count > 0 {
                    "used"
                } else {
                    "unused"
                }
                .to_string(),
            }
        })
        .collect()
}

/// A row of the report from what its traffic showed.
#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    kind: RowKind,
    verdict: &str,
    reason: &str,
    status: Status,
    why: Option<String>,
    acc: RowParts,
    findings: Vec<Finding>,
) -> Row {
    Row {
        rule: id.to_string(),
        kind,
        verdict: verdict.to_string(),
        reason: reason.to_string(),
        status,
        flows: acc.flows,
        bytes: acc.bytes,
        host_pairs: acc.host_pairs,
        first_seen: acc.first.map(format_timestamp),
        last_seen: acc.last.map(format_timestamp),
        alerts: acc.alerts,
        why,
        ports: acc.ports,
        more_ports: acc.more_ports,
        top_pairs: acc.top_pairs,
        findings,
    }
}

/// What the report calls a role the topology lacks.
fn role_words(role: Role) -> &'static str {
    match role {
        Role::Mailbox => "Mailbox server",
        Role::Edge => "Edge Transport server",
        Role::DomainController => "domain controller",
        Role::Skype => "Skype for Business server",
        Role::Dns => "DNS server",
        Role::InternalClient => "internal client",
        Role::ExchangeOnline => "Exchange Online address",
        Role::UmGateway => "UM gateway",
        Role::External | Role::Local => "such host",
    }
}

/// Why a rule's conditions on the topology can never hold, if they cannot: a side of
/// the rule names only roles the topology does not list, or a `when` condition on the
/// topology does not hold.
fn inapplicable(rule: &crate::policy::Rule, topology: &crate::policy::Topology) -> Option<String> {
    let when = &rule.when;
    let edge = topology.has_role(Role::Edge);
    let dns = topology.has_role(Role::Dns);
    let mut why: Vec<String> = Vec::new();
    let present = |r: Role| matches!(r, Role::External | Role::Local) || topology.has_role(r);
    for mask in [rule.from, rule.to] {
        let named: Vec<Role> = Role::ALL.into_iter().filter(|r| mask & r.bit() != 0).collect();
        if !named.is_empty() && !named.iter().any(|&r| present(r)) {
            let words: Vec<&str> = named.iter().map(|&r| role_words(r)).collect();
            why.push(format!("the topology has no {}", words.join(" and no ")));
        }
    }
    if when.same_subscription == Some(true) && !edge && !why.iter().any(|w| w.contains("Edge")) {
        why.push("the topology has no Edge Transport server".to_string());
    }
    let edge_why = if edge {
        "the topology has Edge Transport servers"
    } else {
        "the topology has no Edge Transport server"
    };
    if when.edge_deployed.is_some_and(|want| want != edge) && !why.iter().any(|w| w == edge_why) {
        why.push(edge_why.to_string());
    }
    if when.dns_role.is_some_and(|want| want != dns) {
        why.push(
            if dns { "the topology lists DNS servers" } else { "the topology lists no DNS server" }
                .to_string(),
        );
    }
    if when.restrict_internal_clients.is_some_and(|want| want != topology.restrict_internal_clients) {
        why.push(
            if topology.restrict_internal_clients {
                "the topology restricts internal clients"
            } else {
                "the topology does not restrict internal clients"
            }
            .to_string(),
        );
    }
    (!why.is_empty()).then(|| format!("not applicable: {}", why.join(" and ")))
}

/// A duration as people say it: `41.2 s`, `12 min 5 s`, `3 h 20 min`, `6 d 4 h`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        return format!("{:.1} ms", s * 1e3);
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s as u64;
    let (d, h, m, sec) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {sec} s")
    }
}

/// A count as people write it: `1,403`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The inputs not read whole, for the conclusion: `; 2 of 3 inputs not read whole
/// (b.pcap damaged, c.pcap unreadable): the rows lack what they held (past the damage,
/// for a damaged one)`.
fn incomplete(inputs: &[InputRef]) -> String {
    let bad: Vec<String> = inputs
        .iter()
        .filter(|i| i.status != InputStatus::Read)
        .map(|i| format!("{} {}", i.file, i.status.label()))
        .collect();
    if bad.is_empty() {
        return String::new();
    }
    format!(
        "; {} of {} inputs not read whole ({}): the rows lack what they held (past the damage, for a damaged one)",
        bad.len(),
        inputs.len(),
        bad.join(", ")
    )
}

fn conclusion(totals: &Totals, sections: &[Section], inputs: &[InputRef], seconds: f64) -> Conclusion {
    let over = human_duration(seconds);
    let incomplete = incomplete(inputs);
    if totals.flows == 0 {
        return Conclusion {
            compliant: false,
            text: format!(
                "nothing to judge: the input holds no flow events (were the EVE logs written with --flows?){incomplete}"
            ),
        };
    }
    if totals.flows_in_scope == 0 {
        return Conclusion {
            compliant: false,
            text: format!(
                "nothing to judge: none of the {} flows read is one the article covers (is this the topology of the network captured?){incomplete}",
                thousands(totals.flows)
            ),
        };
    }
    let flows = format!(
        "{} flows the article covers, of {} read, over {over}",
        thousands(totals.flows_in_scope),
        thousands(totals.flows)
    );
    let rows = sections.iter().flat_map(|s| &s.rows);
    let named = |status: Status| -> Vec<&str> {
        rows.clone()
            .filter(|r| r.status == status && r.kind == RowKind::Rule)
            .map(|r| r.rule.as_str())
            .collect()
    };
    let (violations, restrictions) = (named(Status::Violation), named(Status::Restriction));
    if violations.is_empty() && restrictions.is_empty() {
        return Conclusion {
            compliant: true,
            text: format!("no violation or restriction found in {flows}{incomplete}"),
        };
    }
    let mut parts = Vec::new();
    if !violations.is_empty() {
        parts.push(format!("{} violations ({})", totals.findings.violation, violations.join(", ")));
    }
    if !restrictions.is_empty() {
        parts.push(format!(
            "{} restriction evidence ({})",
            totals.findings.restriction,
            restrictions.join(", ")
        ));
    }
    Conclusion {
        compliant: false,
        text: format!("not compliant: {} in {flows}{incomplete}", parts.join(" and ")),
    }
}

fn never_restrict(p: &Parts) -> NeverRestrict {
    let mut hosts: BTreeMap<(Role, std::net::IpAddr), ()> = BTreeMap::new();
    let mut pairs: Vec<Pair> = p
        .pairs
        .iter()
        .map(|((a, b), acc)| {
            hosts.insert((p.topology.role_of(*a), *a), ());
            hosts.insert((p.topology.role_of(*b), *b), ());
            Pair {
                a: a.to_string(),
                b: b.to_string(),
                status: if acc.evidence.is_empty() { PairStatus::Traffic } else { PairStatus::Restricted },
                flows: acc.flows,
                bytes: acc.bytes,
                ports: acc.ports.clone(),
                more_ports: acc.more_ports,
                evidence: acc.evidence.clone(),
            }
        })
        .collect();
    let mut keyed: Vec<_> = p.pairs.iter().map(|(k, _)| *k).zip(pairs.drain(..)).collect();
    keyed.sort_by_key(|(k, _)| *k);
    NeverRestrict {
        hosts: hosts
            .into_keys()
            .map(|(role, ip)| Host { ip: ip.to_string(), role: role.name().to_string() })
            .collect(),
        pairs: keyed.into_iter().map(|(_, pair)| pair).collect(),
    }
}

fn timeline(
    slots: &BTreeMap<u64, VerdictCounts>,
    slot: Micros,
    range: (Option<Micros>, Option<Micros>),
) -> Vec<TimeBucket> {
    let (Some(&first_slot), Some(&last_slot)) = (slots.keys().next(), slots.keys().next_back()) else {
        return Vec::new();
    };
    let start = range.0.map_or(first_slot, |f| (f / slot).min(first_slot));
    let end = range.1.map_or(last_slot, |l| (l / slot).max(last_slot));
    let width = (end - start + 1).div_ceil(TIME_BUCKETS).max(1);
    let mut buckets: Vec<TimeBucket> = (0..(end - start + 1).div_ceil(width))
        .map(|i| TimeBucket {
            start: format_timestamp((start + i * width) * slot),
            seconds: (width * slot) as f64 / 1e6,
            findings: VerdictCounts::default(),
        })
        .collect();
    for (at, counts) in slots {
        let b = &mut buckets[((at - start) / width) as usize].findings;
        b.advisory += counts.advisory;
        b.violation += counts.violation;
        b.restriction += counts.restriction;
    }
    buckets
}

fn stats_totals(stats: &[crate::report::StatsRecord]) -> Option<StatsTotals> {
    if stats.is_empty() {
        return None;
    }
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for s in stats {
        for (reason, n) in &s.skipped {
            *by_reason.entry(reason.clone()).or_default() += n;
        }
    }
    Some(StatsTotals {
        sensors: stats.len() as u64,
        packets: stats.iter().map(|s| s.packets).sum(),
        decoded: stats.iter().map(|s| s.decoded).sum(),
        skipped: by_reason.values().sum(),
        skipped_by_reason: by_reason.into_iter().filter(|(_, n)| *n > 0).collect(),
        drops: stats.iter().map(|s| s.drops).sum(),
        flows_evicted: stats.iter().map(|s| s.flows_evicted).sum(),
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn notes(h: &Health, totals: &Totals) -> Vec<String> {
    let flows = totals.flows;
    let mut notes = Vec::new();
    if flows == 0 {
        notes.push("No flow events: rows cannot be judged; write the EVE logs with --flows.".to_string());
        return notes;
    }
    let one_sided = percent(h.one_sided, flows);
    if one_sided >= 20.0 {
        notes.push(format!(
            "{one_sided:.0}% of flows were seen one way only: the feed may carry one direction of the traffic, so an unanswered SYN proves less and rows may miss replies. Each finding's confidence says how much history stood behind it: {} of {} findings are of low confidence.",
            h.low_confidence_findings,
            totals.findings.advisory + totals.findings.violation + totals.findings.restriction
        ));
    } else {
        notes.push(format!(
            "{one_sided:.1}% of flows were seen one way only: both directions reach the sensors; one-sided flows are normal for scans and refused connections."
        ));
    }
    if h.midstream > 0 {
        notes.push(format!(
            "{} flows ({:.1}%) were picked up mid-stream: their originator was inferred from the ports, so their findings are of medium confidence.",
            h.midstream,
            percent(h.midstream, flows)
        ));
    }
    if h.gapped_flows > 0 {
        notes.push(format!(
            "{} flows show {} sequence gaps: the capture point lost packets; counts of bytes are lower bounds and a missed SYN can turn a flow mid-stream.",
            h.gapped_flows, h.gaps
        ));
    }
    match &h.stats {
        Some(s) if s.drops > 0 => notes.push(format!(
            "Sensors dropped {} packets ({:.2}% of {}): flows may be missing, so \"not observed\" rows are weaker evidence still.",
            s.drops,
            percent(s.drops, s.packets + s.drops),
            s.packets
        )),
        Some(s) => notes.push(format!("Sensors report no drops in {} packets.", s.packets)),
        None => notes.push(
            "No stats events in the input: packet counts and drops are unknown (live sensors write them with --stats-interval)."
                .to_string(),
        ),
    }
    if h.dedup_forgotten > 0 {
        notes.push(format!(
            "{} dedup keys were forgotten early (table full): a flow seen by several sensors may be counted more than once.",
            h.dedup_forgotten
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(one_sided: u64, low: u64) -> Health {
        Health {
            flows: 10,
            one_sided,
            midstream: 0,
            gapped_flows: 0,
            gaps: 0,
            flow_states: Vec::new(),
            conn_states: Vec::new(),
            stats: None,
            low_confidence_findings: low,
            dedup_forgotten: 0,
            notes: Vec::new(),
        }
    }

    fn totals() -> Totals {
        Totals {
            flows: 10,
            flows_in_scope: 10,
            bytes: 0,
            duplicates: 0,
            unmatched_flows: 0,
            unknown_rule_events: 0,
            findings: VerdictCounts { advisory: 0, violation: 1, restriction: 2, accepted: 0 },
            flows_counted_from: FlowsFrom::FlowEvents,
        }
    }

    #[test]
    fn a_one_sided_feed_is_said_without_calling_high_confidence_findings_low() {
        let notes = notes(&health(5, 0), &totals());
        assert!(notes[0].contains("0 of 3 findings are of low confidence"), "{notes:?}");
        assert!(!notes.iter().any(|n| n.contains("evidence is of low confidence")), "{notes:?}");
        let notes = notes_of(&health(5, 2));
        assert!(notes[0].contains("2 of 3 findings are of low confidence"), "{notes:?}");
        let notes = notes_of(&health(1, 0));
        assert!(notes[0].contains("both directions reach the sensors"), "{notes:?}");
    }

    fn notes_of(h: &Health) -> Vec<String> {
        notes(h, &totals())
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        for (n, text) in
            [(0, "0"), (999, "999"), (1_403, "1,403"), (1_000_000, "1,000,000"), (12_345, "12,345")]
        {
            assert_eq!(thousands(n), text);
        }
    }
}
