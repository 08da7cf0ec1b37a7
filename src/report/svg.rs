//! The report's pictures as inline SVG: the role-to-role matrix, findings over time and
//! per-row bars. Drawn with maud, so every text is escaped. It draws; it never computes
//! what the report says.

use maud::{html, Markup};

use super::model::{Report, Status};
use crate::policy::Role;

/// Fill colours by what a cell or bar shows; the legend in the HTML uses the same.
pub fn colour(kind: &str) -> &'static str {
    match kind {
        "ok" | "compliant" | "traffic" => "#3a9a5b",
        "advisory" => "#e0a526",
        "violation" => "#c8372d",
        "restriction" | "restricted" => "#7b3fa6",
        "out_of_scope" => "#8a9bb0",
        _ => "#d9dde3",
    }
}

/// Restriction evidence by kind: a colour and a short label for matrix cells.
pub fn evidence_style(id: &str) -> (&'static str, &'static str) {
    if id.contains("rejected") {
        ("#5e35b1", "ICMP REJECT")
    } else if id.contains("icmp") {
        ("#7b3fa6", "ICMP")
    } else if id.contains("between") {
        ("#ad1457", "drop between points")
    } else if id.contains("drop") {
        ("#c2185b", "drop")
    } else if id.contains("reset") {
        ("#3949ab", "RST")
    } else if id.contains("option") {
        ("#8d5a2b", "opts")
    } else {
        ("#7b3fa6", "other")
    }
}

pub fn status_colour(status: Status) -> &'static str {
    colour(status.code())
}

/// Flows by originator role (rows) and responder role (columns), each cell coloured by
/// its gravest finding.
pub fn role_matrix(report: &Report) -> Markup {
    let roles = Role::ALL;
    let (cell, left, top) = (74.0, 130.0, 34.0);
    let size = roles.len() as f64 * cell;
    let (width, height) = (left + size + 10.0, top + size + 10.0);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="picture" viewBox={ "0 0 " (width) " " (height) }
            width=(width) height=(height) role="img" aria-label="flows by originator and responder role" {
            @for (j, to) in roles.iter().enumerate() {
                text x=(left + (j as f64 + 0.5) * cell) y=(top - 10.0) text-anchor="middle" class="axis" {
                    (short(to.name()))
                }
            }
            @for (i, from) in roles.iter().enumerate() {
                text x=(left - 8.0) y=(top + (i as f64 + 0.5) * cell + 4.0) text-anchor="end" class="axis" {
                    (from.name())
                }
                @for (j, to) in roles.iter().enumerate() {
                    @let found = report.role_matrix.iter().find(|c| c.src_role == from.name() && c.dest_role == to.name());
                    @let kind = found.map_or("none", |c| c.worst.as_str());
                    @let x = left + j as f64 * cell;
                    @let y = top + i as f64 * cell;
                    rect x=(x + 1.0) y=(y + 1.0) width=(cell - 2.0) height=(cell - 2.0) fill=(colour(kind)) rx="3" {
                        title { (from.name()) " → " (to.name()) ": " (found.map_or(0, |c| c.flows)) " flows, " (kind) }
                    }
                    @if let Some(c) = found {
                        text x=(x + cell / 2.0) y=(y + cell / 2.0 + 5.0) text-anchor="middle" class="cell" { (c.flows) }
                    }
                }
            }
        }
    }
}

fn short(role: &str) -> &str {
    match role {
        "domain_controller" => "DC",
        "internal_client" => "client",
        other => other,
    }
}

/// Findings per time bucket, stacked by verdict.
pub fn timeline(report: &Report) -> Markup {
    let buckets = &report.timeline;
    let (width, height, left, bottom) = (900.0, 180.0, 40.0, 24.0);
    let most = buckets
        .iter()
        .map(|b| b.findings.advisory + b.findings.violation + b.findings.restriction)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot = height - bottom - 10.0;
    let step = (width - left - 10.0) / buckets.len().max(1) as f64;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="picture" viewBox={ "0 0 " (width) " " (height) }
            width=(width) height=(height) role="img" aria-label="findings over time" {
            line x1=(left) y1=(10.0 + plot) x2=(width - 10.0) y2=(10.0 + plot) class="baseline" {}
            text x=(left - 6.0) y="18" text-anchor="end" class="axis" { (most as u64) }
            text x=(left - 6.0) y=(10.0 + plot) text-anchor="end" class="axis" { "0" }
            @for (i, b) in buckets.iter().enumerate() {
                @let x = left + i as f64 * step;
                @let parts = [("restriction", b.findings.restriction), ("violation", b.findings.violation), ("advisory", b.findings.advisory)];
                @let mut y = 10.0 + plot;
                @for (kind, n) in parts {
                    @if n > 0 {
                        @let h = n as f64 / most * plot;
                        @let top = { y -= h; y };
                        rect x=(x + 1.0) y=(top) width=((step - 2.0).max(1.0)) height=(h) fill=(colour(kind)) {
                            title { (b.start) ": " (n) " " (kind) }
                        }
                    }
                }
            }
            @if let (Some(first), Some(last)) = (&report.capture.first, &report.capture.last) {
                // The header's capture range, so both say the same.
                text x=(left) y=(height - 6.0) class="axis" { (first.trim_end_matches("+0000").replacen('T', " ", 1)) " UTC" }
                text x=(width - 10.0) y=(height - 6.0) text-anchor="end" class="axis" { (last.trim_end_matches("+0000").replacen('T', " ", 1)) }
            }
        }
    }
}

/// A row's flows against the busiest row's, on a log scale so quiet rows still show.
pub fn bar(flows: u64, most: u64, status: Status) -> Markup {
    let width = 120.0;
    let share =
        if flows == 0 { 0.0 } else { ((flows as f64).ln_1p() / (most.max(1) as f64).ln_1p()).min(1.0) };
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="bar" viewBox="0 0 120 12" preserveAspectRatio="none" width="120" height="12" aria-hidden="true" {
            rect x="0" y="0" width=(width) height="12" fill="#eef0f3" {}
            rect x="0" y="0" width=(share * width) height="12" fill=(status_colour(status)) {}
        }
    }
}
