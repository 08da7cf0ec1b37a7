//! What changed since an earlier JSON report: rows whose status changed, findings new
//! and gone, never-restrict pairs that lost their traffic. It compares; it never reads
//! files.

use std::collections::BTreeMap;

use super::model::{Changes, FileRef, Finding, Report, StatusChange};

/// The changes from `before` (the baseline) to `now`.
pub fn compare(before: &Report, now: &Report, baseline: FileRef) -> Changes {
    let statuses: BTreeMap<&str, _> =
        before.sections.iter().flat_map(|s| &s.rows).map(|r| (r.rule.as_str(), r.status)).collect();
    let status_changed = now
        .sections
        .iter()
        .flat_map(|s| &s.rows)
        .filter_map(|r| {
            let was = *statuses.get(r.rule.as_str())?;
            (was != r.status).then(|| StatusChange { rule: r.rule.clone(), before: was, after: r.status })
        })
        .collect();
    let findings = |report: &Report| -> BTreeMap<_, Finding> {
        report
            .sections
            .iter()
            .flat_map(|s| &s.rows)
            .flat_map(|r| &r.findings)
            .map(|f| (f.key(), f.clone()))
            .collect()
    };
    let (old, new) = (findings(before), findings(now));
    let new_findings = new.iter().filter(|(k, _)| !old.contains_key(k)).map(|(_, f)| f.clone()).collect();
    let gone_findings = old.iter().filter(|(k, _)| !new.contains_key(k)).map(|(_, f)| f.clone()).collect();
    let traffic: BTreeMap<(&str, &str), u64> =
        now.never_restrict.pairs.iter().map(|p| ((p.a.as_str(), p.b.as_str()), p.flows)).collect();
    let pairs_lost_traffic = before
        .never_restrict
        .pairs
        .iter()
        .filter(|p| p.flows > 0 && traffic.get(&(p.a.as_str(), p.b.as_str())).copied().unwrap_or(0) == 0)
        .cloned()
        .collect();
    Changes { baseline, status_changed, new_findings, gone_findings, pairs_lost_traffic }
}
