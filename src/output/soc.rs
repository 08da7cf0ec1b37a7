//! What a SOC's Suricata pipeline reads from an alert when it keeps only Suricata's
//! fields: `alert.metadata` (the facts of `policy`, as Suricata writes a rule's
//! metadata: a map of arrays of strings) and `alert.category`/`alert.severity` from
//! Suricata's `classification.config` names, shipped as `rules/classification.config`.
//!
//! This module formats; it never decides: verdicts and findings come in made.

use std::sync::LazyLock;

use serde::Serialize;

use crate::flow::{Flow, Mark};
use crate::policy::{Engine, Verdict};

/// The classifications exwatch uses, in Suricata's `classification.config` format.
pub const CLASSIFICATION_CONFIG: &str = include_str!("../../rules/classification.config");
/// Where [`CLASSIFICATION_CONFIG`] comes from, as its errors name it.
pub const CLASSIFICATION_NAME: &str = "rules/classification.config";

/// Where the page of a rule or evidence id lives: `docs/rules.md#<id>`.
pub const RULES_PAGE: &str = "docs/rules.md";

/// One `config classification: name,description,priority` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The short name rules give as `classtype`.
    pub name: String,
    /// What Suricata writes as `alert.category`.
    pub description: String,
    /// What Suricata writes as `alert.severity` (1 is the most urgent).
    pub priority: u8,
}

/// Reads a `classification.config`: comments (`#`) and blank lines are skipped; every
/// other line must be `config classification: name,description,priority`. The error
/// names the line and what is wrong with it.
pub fn parse_classifications(text: &str) -> Result<Vec<Classification>, String> {
    let mut out: Vec<Classification> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |what: &str| format!("{CLASSIFICATION_NAME}:{}: {what}", i + 1);
        let body = line
            .strip_prefix("config classification:")
            .ok_or_else(|| at("expected `config classification: name,description,priority`"))?;
        let mut parts = body.splitn(3, ',').map(str::trim);
        let (Some(name), Some(description), Some(priority)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(at("expected three comma-separated fields: name, description, priority"));
        };
        let priority: u8 = priority
            .parse()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| at(&format!("priority `{priority}` is not a number from 1 to 255")))?;
        if name.is_empty() || description.is_empty() {
            return Err(at("name and description must not be empty"));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(at(&format!("classification `{name}` is listed twice")));
        }
        out.push(Classification { name: name.to_string(), description: description.to_string(), priority });
    }
    Ok(out)
}

/// The classification (Suricata's `classtype`) of each verdict that makes an alert,
/// chosen so a SOC's queue sorts them by priority: a violation (should not exist) first,
/// a restriction (legitimate traffic being refused or dropped) next, an advisory last,
/// with an accepted finding (an exception covers it) among the least urgent.
pub fn classtype(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Violation => "policy-violation",
        Verdict::Restriction => "bad-unknown",
        Verdict::Advisory | Verdict::Ok | Verdict::OutOfScope => "misc-activity",
        // A finding an unexpired exception covers: known and agreed, kept for the record.
        Verdict::Accepted => "not-suspicious",
    }
}

static TABLE: LazyLock<Vec<Classification>> = LazyLock::new(|| {
    // The embedded file is fixed at build time; the unit tests below parse it and look
    // every verdict's classtype up in it.
    parse_classifications(CLASSIFICATION_CONFIG).unwrap_or_default()
});

/// `alert.category` and `alert.severity` of an alert with `verdict`, from the shipped
/// `classification.config`.
pub fn category(verdict: Verdict) -> (&'static str, u8) {
    let name = classtype(verdict);
    TABLE.iter().find(|c| c.name == name).map_or((name, 3), |c| (c.description.as_str(), c.priority))
}

/// `alert.metadata`: keys in a fixed order, each an array of strings, as Suricata writes
/// the metadata of a rule (so pipelines that keep only Suricata's fields keep these).
#[derive(Debug, Default)]
pub struct Metadata(Vec<(&'static str, Vec<String>)>);

impl Metadata {
    /// Adds `key` with one value.
    pub fn one(&mut self, key: &'static str, value: impl Into<String>) -> &mut Metadata {
        self.0.push((key, vec![value.into()]));
        self
    }

    /// Adds `key` with one value, when there is one.
    pub fn opt(&mut self, key: &'static str, value: Option<impl Into<String>>) -> &mut Metadata {
        if let Some(value) = value {
            self.one(key, value);
        }
        self
    }

    /// Adds `key` with several values.
    pub fn many(&mut self, key: &'static str, values: Vec<String>) -> &mut Metadata {
        self.0.push((key, values));
        self
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// The page of a rule or evidence id: `docs/rules.md#<id>`.
pub fn rule_page(id: &str) -> String {
    format!("{RULES_PAGE}#{id}")
}

/// A flow's verdict: the worst its findings got (restriction evidence on a flow whose
/// rule says `ok` makes it `restriction`), else its rule's; `out_of_scope` when no rule
/// matched. Worst as the classifications sort them: violation, restriction, advisory.
pub fn flow_verdict(engine: &Engine, flow: &Flow) -> Verdict {
    let rule =
        flow.rule().and_then(|r| engine.policy.rules.get(r)).map_or(Verdict::OutOfScope, |r| r.verdict);
    let orig = flow.orig();
    let accepted = engine
        .flow_exception(flow.rule(), (orig.src, orig.dst), (orig.proto, orig.dport), flow.start)
        .is_some();
    let verdict = if accepted { Verdict::Accepted } else { rule };
    let severity = |v: Verdict| if v.is_finding() { category(v).1 } else { u8::MAX };
    if flow.is(Mark::Restricted) && severity(Verdict::Restriction) < severity(verdict) {
        Verdict::Restriction
    } else {
        verdict
    }
}

/// Whether the article covers `flow` (`--flows=in-scope` writes only such flows): its
/// verdict is not `out_of_scope`, so every flow an alert names is in scope.
pub fn in_scope(engine: &Engine, flow: &Flow) -> bool {
    flow_verdict(engine, flow) != Verdict::OutOfScope
}

/// Whether any finding on `flow` raised an alert (Suricata's `flow.alerted`).
pub fn flow_alerted(engine: &Engine, flow: &Flow) -> bool {
    flow_verdict(engine, flow).is_finding()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped file parses, holds every verdict's classtype, and its priorities sort
    /// violation before restriction before advisory.
    #[test]
    fn shipped_classifications_sort_as_a_soc_would() {
        let table = parse_classifications(CLASSIFICATION_CONFIG).expect("shipped file parses");
        let priority = |v| table.iter().find(|c| c.name == classtype(v)).map(|c| c.priority);
        let (violation, restriction, advisory) =
            (priority(Verdict::Violation), priority(Verdict::Restriction), priority(Verdict::Advisory));
        assert!(violation.is_some() && restriction.is_some() && advisory.is_some(), "{table:?}");
        assert!(violation < restriction && restriction < advisory, "{table:?}");
        assert_eq!(category(Verdict::Violation), ("Potential Corporate Privacy Violation", 1));
        assert_eq!(category(Verdict::Restriction), ("Potentially Bad Traffic", 2));
        assert_eq!(category(Verdict::Advisory), ("Misc activity", 3));
        assert_eq!(category(Verdict::Accepted), ("Not Suspicious Traffic", 3));
    }

    /// Suricata's own lines for the names exwatch uses (its `classification.config`), so
    /// a sensor that loads Suricata's file and exwatch's agree.
    #[test]
    fn shipped_lines_are_suricatas() {
        let table = parse_classifications(CLASSIFICATION_CONFIG).expect("shipped file parses");
        let suricata = parse_classifications(
            "config classification: not-suspicious,Not Suspicious Traffic,3\n\
             config classification: bad-unknown,Potentially Bad Traffic, 2\n\
             config classification: misc-activity,Misc activity,3\n\
             config classification: policy-violation,Potential Corporate Privacy Violation,1\n",
        )
        .expect("Suricata's lines parse");
        for c in &table {
            assert!(suricata.contains(c), "{c:?} is not Suricata's line");
        }
    }

    #[test]
    fn bad_lines_name_the_line_and_the_fault() {
        let err = parse_classifications("# c\nconfig classification: x,y\n").expect_err("two fields");
        assert!(err.contains(":2:") && err.contains("three"), "{err}");
        let err = parse_classifications("config classification: x,y,high\n").expect_err("priority");
        assert!(err.contains(":1:") && err.contains("priority `high`"), "{err}");
        let err = parse_classifications("classification: x,y,1\n").expect_err("prefix");
        assert!(err.contains("expected `config classification"), "{err}");
    }

    #[test]
    fn metadata_is_a_map_of_arrays_of_strings() {
        let mut m = Metadata::default();
        m.one("verdict", "violation")
            .opt("exception", None::<&str>)
            .many("roles", vec!["a".into(), "b".into()]);
        assert_eq!(
            serde_json::to_string(&m).expect("json"),
            r#"{"verdict":["violation"],"roles":["a","b"]}"#
        );
    }
}
