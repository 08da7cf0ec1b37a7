//! The CSV of aggregated findings, one per line, for spreadsheets (RFC 4180 quoting);
//! `pcap_filename` and `sensor` say where the finding's first alert was seen.
//! It formats; it never computes.

use super::model::Report;

const HEADER: [&str; 16] = [
    "section",
    "rule",
    "evidence",
    "verdict",
    "src_ip",
    "dest_ip",
    "dest_port",
    "proto",
    "count",
    "first_seen",
    "last_seen",
    "confidence",
    "community_id",
    "pcap_filename",
    "sensor",
    "exception",
];

/// A field as RFC 4180 wants it: quoted when it holds a comma, a quote or a line break.
/// A leading `=`, `+`, `-` or `@` is prefixed with `'`, so that no spreadsheet takes a
/// field for a formula.
pub fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub fn render(report: &Report) -> String {
    let mut out = HEADER.join(",");
    out.push_str("\r\n");
    for section in &report.sections {
        for row in &section.rows {
            for f in &row.findings {
                let port = f.dest_port.map(|p| p.to_string()).unwrap_or_default();
                let count = f.count.to_string();
                let fields = [
                    section.title.as_str(),
                    &f.rule,
                    f.evidence.as_deref().unwrap_or(""),
                    &f.verdict,
                    &f.src_ip,
                    &f.dest_ip,
                    &port,
                    &f.proto,
                    &count,
                    &f.first_seen,
                    &f.last_seen,
                    &f.confidence,
                    &f.community_id,
                    f.pcap_filename.as_deref().unwrap_or(""),
                    f.sensor.as_deref().unwrap_or(""),
                    f.exception.as_deref().unwrap_or(""),
                ];
                let line: Vec<String> = fields.iter().map(|s| field(s)).collect();
                out.push_str(&line.join(","));
                out.push_str("\r\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_when_they_must_be() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(field("1:abc+/="), "1:abc+/=");
    }
}
