//! The HTML report: one self-contained file (inline CSS and SVG, no script, no external
//! asset), good on screen and printed to PDF. Written with maud, which escapes every
//! value, so a hostile sensor name or policy text cannot become markup. It formats;
//! it never computes.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::human_duration;
use super::model::*;
use super::svg;

/// Findings shown per row; the JSON and CSV reports hold them all.
pub const FINDINGS_SHOWN: usize = 20;

/// Findings listed per change list; the JSON holds them all.
pub const CHANGES_SHOWN: usize = 200;

/// Hosts the never-restrict matrix draws at most; past it only the table of pairs is shown.
pub const MATRIX_HOSTS: usize = 32;

const STYLE: &str = include_str!("report.css");

pub fn render(report: &Report) -> String {
    let title = format!("Exchange network-port compliance: {}", report.organization);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (header(report, &title))
                (contents(report))
                (legend())
                @if let Some(changes) = &report.changes { (changes_section(changes)) }
                @for (i, section) in report.sections.iter().enumerate() { (article_section(i, section, report)) }
                (never_restrict(report))
                (exceptions(&report.exceptions))
                (pictures(report))
                (health(report))
                footer { "Made by " (report.generator) " from EVE events; schema " (report.schema) " JSON holds the same content." }
            }
        }
    };
    page.into_string()
}

/// An EVE timestamp as people read it: `2026-11-27 04:55:14.123456` (UTC, said once in
/// the header).
fn when(ts: &str) -> String {
    ts.trim_end_matches("+0000").replacen('T', " ", 1)
}

fn opt(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "–".to_string(), when)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn header(r: &Report, title: &str) -> Markup {
    let class = if r.conclusion.compliant { "conclusion ok" } else { "conclusion bad" };
    html! {
        header {
            h1 { (title) }
            p class=(class) id="conclusion" { (r.conclusion.text) }
            table class="meta" {
                tr { th { "Organization" } td { (r.organization) } }
                tr { th { "Policy" } td { code { (r.policy.file) } " " span class="hash" { "SHA-256 " (r.policy.sha256) } } }
                tr { th { "Topology" } td { code { (r.topology.file) } " " span class="hash" { "SHA-256 " (r.topology.sha256) } } }
                tr { th { "Capture (UTC)" } td { (opt(&r.capture.first)) " to " (opt(&r.capture.last)) " (" (human_duration(r.capture.seconds)) ")" } }
                tr { th { "Flows" } td { (r.totals.flows) " (" (bytes(r.totals.bytes)) "), " span id="flows-in-scope" { (r.totals.flows_in_scope) } " of them covered by the article; " (r.totals.duplicates) " copies seen by a second sensor counted once; " (r.totals.unmatched_flows) " matched no rule" @if r.totals.flows_counted_from == FlowsFrom::Stats { span id="flows-counted-from" { "; the flow total from the sensors' stats events, since their flow events are of in-scope flows only (bytes are those of the in-scope flows)" } } } }
                tr { th { "Findings" } td { (r.totals.findings.violation) " violations, " (r.totals.findings.restriction) " restriction evidence, " (r.totals.findings.advisory) " advisories" } }
                tr { th { "Made by" } td { (r.generator) } }
            }
            h2 { "Inputs" }
            table class="data" {
                thead { tr { th { "input" } th { "status" } th { "size" } th { "SHA-256" } th { "sensors" } th { "packets" } th { "flows" } th { "events" } th { "from" } th { "to" } } }
                tbody {
                    @for i in &r.inputs {
                        tr class={ "input " (i.status.code()) } {
                            td { code { (i.file) } }
                            td { span class={ "badge input-" (i.status.code()) } { (i.status.label()) } @if let Some(d) = &i.detail { div class="reason" { (d) } } }
                            td class="n" { (bytes(i.bytes)) }
                            td class="hash" { (i.sha256) }
                            td { (i.sensors.join(", "))
                                @if !i.captures.is_empty() { div class="reason" { "captures: " (i.captures.join(", ")) @if i.more_captures > 0 { " and " (i.more_captures) " more" } } }
                            }
                            td class="n" { (i.packets) }
                            td class="n" { (i.flows) }
                            // A capture holds no EVE events: a dash, not a zero that reads as "nothing".
                            td class="n" { @if i.events == 0 && i.sensors.is_empty() { "–" } @else { (i.events) } @if i.unreadable_lines > 0 { " (" (i.unreadable_lines) " unreadable lines)" } }
                            td class="t" { (opt(&i.first)) } td class="t" { (opt(&i.last)) }
                        }
                    }
                }
            }
            @if !r.sensors.is_empty() {
                table class="data" {
                    thead { tr { th { "Sensor" } th { "events" } th { "from" } th { "to" } } }
                    tbody { @for s in &r.sensors { tr { td { (s.name) } td class="n" { (s.events) } td class="t" { (opt(&s.first)) } td class="t" { (opt(&s.last)) } } } }
                }
            }
        }
    }
}

fn contents(r: &Report) -> Markup {
    html! {
        nav {
            h2 { "Contents" }
            ol {
                @if r.changes.is_some() { li { a href="#changes" { "Changes since the baseline" } } }
                @for (i, s) in r.sections.iter().enumerate() { li { a href={ "#section-" (i) } { (s.title) } } }
                li { a href="#never-restrict" { "Traffic that must never be restricted" } }
                li { a href="#exceptions" { "Exceptions" } }
                li { a href="#pictures" { "Pictures" } }
                li { a href="#health" { "Capture health and confidence" } }
            }
        }
    }
}

fn legend() -> Markup {
    let statuses = [
        Status::Compliant,
        Status::Advisory,
        Status::Violation,
        Status::Restriction,
        Status::Accepted,
        Status::OutOfScope,
        Status::NotObserved,
        Status::NoneFound,
        Status::NotApplicable,
    ];
    html! {
        section class="legend" {
            h2 { "How to read the rows" }
            p { "Each row is a rule of the policy, or a kind of restriction evidence it looks for, under the section of Microsoft's article it comes from, in the article's order. Every row lists the responder ports and the host pairs with the most flows, whatever its status." }
            ul {
                @for s in statuses { li { (badge(s)) } }
            }
            p { "Advisories are allowed traffic the policy says is worth knowing (plain-text protocols); out of scope is traffic that touches neither a Mailbox nor an Edge Transport server." }
            p class="note" {
                strong { "Not observed" } " means no traffic in the input matched the rule. It is not evidence of compliance "
                "and not evidence that the traffic is blocked: the traffic may simply not have happened while the sensors watched. "
                strong { "Checked, none found" } " means the traffic that must never be restricted was seen and this evidence was looked for on it. "
                strong { "Not applicable" } " rows cannot match under this topology; the row says why."
            }
        }
    }
}

fn badge(s: Status) -> Markup {
    html! { span class={ "badge " (s.code()) } { (s.label()) } }
}

fn article_section(i: usize, section: &Section, r: &Report) -> Markup {
    let most = r.sections.iter().flat_map(|s| &s.rows).map(|row| row.flows).max().unwrap_or(0);
    html! {
        section id={ "section-" (i) } class="article" {
            h2 { (section.title) }
            table class="data rows" {
                colgroup { col class="c-rule"; col class="c-status"; col class="c-n"; col class="c-bytes"; col class="c-n"; col class="c-t"; col class="c-t"; col class="c-bar"; }
                thead { tr { th { "rule" } th { "status" } th { "flows" } th { "bytes" } th { "host pairs" } th { "first seen" } th { "last seen" } th { "" } } }
                @for row in &section.rows {
                    tbody class="row" {
                        tr id={ "rule-" (row.rule) } {
                            td { code { (row.rule) } @if row.kind == RowKind::Evidence { " " span class="verdict" { "evidence" } } div class="reason" { (row.reason) } }
                            td { (badge(row.status)) @if let Some(why) = &row.why { div class="reason why" { (why) } } }
                            td class="n" { (row.flows) }
                            td class="n" { (bytes(row.bytes)) }
                            td class="n" { (row.host_pairs) }
                            td class="t" { (opt(&row.first_seen)) }
                            td class="t" { (opt(&row.last_seen)) }
                            td { (svg::bar(row.flows, most, row.status)) }
                        }
                        @if !row.ports.is_empty() {
                            tr class="evidence" { td colspan="8" {
                                "ports " (row.ports.join(" ")) @if row.more_ports > 0 { " and " (row.more_ports) " more" }
                                "; host pairs: "
                                @for (n, pair) in row.top_pairs.iter().enumerate() {
                                    @if n > 0 { ", " }
                                    (pair.src_ip) " → " (pair.dest_ip) " (" (pair.flows) ")"
                                }
                                @if row.host_pairs > row.top_pairs.len() as u64 { " and " (row.host_pairs - row.top_pairs.len() as u64) " more" }
                            } }
                        }
                        @if !row.findings.is_empty() {
                            tr class="findings" { td colspan="8" { (findings(&row.findings, FINDINGS_SHOWN)) } }
                        }
                    }
                }
            }
        }
    }
}

fn findings(list: &[Finding], shown: usize) -> Markup {
    html! {
        table class="data inner" {
            thead { tr { th { "finding" } th { "originator → responder" } th { "count" } th { "first seen" } th { "last seen" } th { "confidence" } th { "Community ID" } } }
            tbody {
                @for f in list.iter().take(shown) {
                    tr class={ "v-" (f.verdict) } {
                        td {
                            code { (f.evidence.as_deref().unwrap_or(&f.rule)) } " " span class="verdict" { (f.verdict) }
                            @if let Some(id) = &f.exception { " by " code { (id) } }
                        }
                        td { (f.src_ip) " → " (f.dest_ip) @if let Some(p) = f.dest_port { ":" (p) } "/" (f.proto) }
                        td class="n" { (f.count) }
                        td class="t" { (when(&f.first_seen)) } td class="t" { (when(&f.last_seen)) }
                        td { (f.confidence) }
                        td class="hash" { (f.community_id) }
                    }
                }
            }
        }
        @if list.len() > shown { p class="note" { "and " (list.len() - shown) " more in the JSON report" } }
    }
}

/// The topology's exceptions: each with its owner, reason and expiry, what it accepted,
/// and whether it is used, unused or expired.
fn exceptions(list: &[ExceptionRow]) -> Markup {
    html! {
        section id="exceptions" {
            h2 { "Exceptions" }
            @if list.is_empty() {
                p { "The topology declares no exception: every finding is shown as found." }
            } @else {
                p { "Approved deviations declared in the topology. A finding an exception covers, in a flow that started before the end of its expiry date, is shown as accepted; it never fails a run." }
                table class="data" {
                    thead { tr { th { "id" } th { "rule" } th { "owner" } th { "reason" } th { "expires" } th { "accepted" } th { "status" } } }
                    tbody {
                        @for e in list {
                            tr {
                                td { code { (e.id) } }
                                td { code { (e.rule) } }
                                td { (e.owner) }
                                td { (e.reason) }
                                td class="t" { (e.expires) }
                                td class="n" { (e.accepted) }
                                td { (e.status) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn never_restrict(r: &Report) -> Markup {
    let nr = &r.never_restrict;
    let evidence: Vec<&str> = r
        .sections
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|row| row.kind == RowKind::Evidence)
        .map(|row| row.rule.as_str())
        .collect();
    let cell_of = |a: &str, b: &str| {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        nr.pairs.iter().find(|p| (p.a == lo && p.b == hi) || (p.a == hi && p.b == lo))
    };
    html! {
        section id="never-restrict" {
            h2 { "Traffic that must never be restricted" }
            p { "Every pair of Mailbox, domain controller and Skype for Business hosts seen (roles from the topology), the responder ports seen, and any restriction evidence. "
                span class="swatch" style={ "background:" (svg::colour("traffic")) } {} " traffic only "
                "; restriction evidence: "
                @for id in &evidence {
                    span class="swatch" style={ "background:" (svg::evidence_style(id).0) } {} " " (svg::evidence_style(id).1) " (" code { (id) } ") "
                }
            }
            @if nr.pairs.is_empty() {
                p class="note" { "No such pair was seen: this is not evidence that they are unrestricted." }
            } @else {
                @if nr.hosts.len() <= MATRIX_HOSTS {
                    table class="matrix" {
                        tr { th {} @for h in &nr.hosts { th class="vert" { span { (h.ip) } } } }
                        @for row in &nr.hosts {
                            tr {
                                th { (row.ip) " " span class="role" { (row.role) } }
                                @for col in &nr.hosts {
                                    @match cell_of(&row.ip, &col.ip) {
                                        Some(p) => {
                                            @let worst = p.evidence.iter().max_by_key(|(_, n)| *n).map(|(id, _)| svg::evidence_style(id));
                                            @let fill = worst.map_or(svg::colour("traffic"), |(c, _)| c);
                                            td class="cell" style={ "background:" (fill) } title={ (p.flows) " flows; ports " (p.ports.join(" ")) } {
                                                (p.flows)
                                                @for (id, n) in &p.evidence { br; small { (svg::evidence_style(id).1) "×" (n) } }
                                            }
                                        }
                                        None => td class="cell none" {}
                                    }
                                }
                            }
                        }
                    }
                }
                table class="data" {
                    thead { tr { th { "host" } th { "host" } th { "what it shows" } th { "flows" } th { "bytes" } th { "ports seen" } th { "restriction evidence" } } }
                    tbody {
                        @for p in &nr.pairs {
                            tr class={ "pair " @if p.status == PairStatus::Restricted { "restricted" } @else { "traffic" } } {
                                td { (p.a) } td { (p.b) }
                                td { @if p.status == PairStatus::Restricted { "restriction evidence" } @else { "traffic only" } }
                                td class="n" { (p.flows) } td class="n" { (bytes(p.bytes)) }
                                td { (p.ports.join(" ")) @if p.more_ports > 0 { " and " (p.more_ports) " more" } }
                                td { @for (id, n) in &p.evidence { code { (id) } " ×" (n) " " } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn pictures(r: &Report) -> Markup {
    html! {
        section id="pictures" {
            h2 { "Pictures" }
            figure {
                (svg::role_matrix(r))
                figcaption { "Flows by originator role (rows) and responder role (columns); a cell's colour is its gravest finding, grey when no flow of the cell is one the article covers: "
                    @for kind in ["ok", "advisory", "violation", "restriction", "out_of_scope"] {
                        span class="swatch" style={ "background:" (svg::colour(kind)) } {} " " (kind) " "
                    }
                }
            }
            figure {
                @if r.timeline.is_empty() { p class="note" { "No findings to draw over time." } } @else { (svg::timeline(r)) }
                figcaption { "Findings over time, stacked by verdict: "
                    @for kind in ["advisory", "violation", "restriction"] {
                        span class="swatch" style={ "background:" (svg::colour(kind)) } {} " " (kind) " "
                    }
                }
            }
        }
    }
}

fn health(r: &Report) -> Markup {
    let h = &r.health;
    html! {
        section id="health" {
            h2 { "Capture health and confidence" }
            table class="meta" {
                tr { th { "Flows" } td { (h.flows) } }
                tr { th { "One-sided flows" } td { (h.one_sided) } }
                tr { th { "Mid-stream pickups" } td { (h.midstream) " (direction inferred from the ports)" } }
                tr { th { "Sequence gaps" } td { (h.gaps) " in " (h.gapped_flows) " flows" } }
                tr { th { "Low-confidence findings" } td { (h.low_confidence_findings) } }
                tr { th { "Flow states" } td { @for (state, n) in &h.flow_states { (state) " " (n) "  " } } }
                tr { th { "Connection states" } td { @for (code, n) in &h.conn_states { code { (code) } " " (n) "  " } } }
                @if let Some(s) = &h.stats {
                    tr { th { "Packets" } td { (s.packets) " read by " (s.sensors) " sensors, " (s.decoded) " decoded" } }
                    tr { th { "Drops" } td { (s.drops) } }
                    tr { th { "Skipped frames" } td { (s.skipped) @for (reason, n) in &s.skipped_by_reason { " · " code { (reason) } " " (n) } } }
                    tr { th { "Flows evicted" } td { (s.flows_evicted) } }
                }
            }
            h3 { "What it means for the rows" }
            ul { @for note in &h.notes { li { (note) } } }
        }
    }
}

fn changes_section(c: &Changes) -> Markup {
    html! {
        section id="changes" {
            h2 { "Changes since the baseline" }
            p { "Baseline: " code { (c.baseline.file) } " " span class="hash" { "SHA-256 " (c.baseline.sha256) } }
            h3 { "Rows whose status changed (" (c.status_changed.len()) ")" }
            @if c.status_changed.is_empty() { p class="note" { "None." } } @else {
                table class="data" {
                    thead { tr { th { "rule" } th { "before" } th { "now" } } }
                    tbody { @for s in &c.status_changed { tr { td { code { (s.rule) } } td { (badge(s.before)) } td { (badge(s.after)) } } } }
                }
            }
            h3 { "New findings (" (c.new_findings.len()) ")" }
            @if c.new_findings.is_empty() { p class="note" { "None." } } @else { (findings(&c.new_findings, CHANGES_SHOWN)) }
            h3 { "Findings gone (" (c.gone_findings.len()) ")" }
            @if c.gone_findings.is_empty() { p class="note" { "None." } } @else { (findings(&c.gone_findings, CHANGES_SHOWN)) }
            h3 { "Never-restrict pairs that lost their traffic (" (c.pairs_lost_traffic.len()) ")" }
            @if c.pairs_lost_traffic.is_empty() { p class="note" { "None." } } @else {
                ul { @for p in &c.pairs_lost_traffic { li { (p.a) " ↔ " (p.b) ": " (p.flows) " flows in the baseline, none now (ports " (p.ports.join(" ")) ")" } } }
            }
        }
    }
}
