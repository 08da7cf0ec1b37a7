//! The JSON report: [`Report`] as documented in `docs/report.md`. It formats; it never
//! computes.

use super::model::Report;

/// The report as pretty-printed JSON, with a final newline.
pub fn render(report: &Report) -> String {
    // Plain data with string keys: serializing cannot fail.
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads a JSON report (an earlier run's, for `--baseline`).
pub fn parse(text: &str) -> Result<Report, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(s) if s == u64::from(super::SCHEMA) => {}
        Some(s) => {
            return Err(format!(
                "report schema {s} is not supported; this exwatch reads schema {}",
                super::SCHEMA
            ))
        }
        None => return Err("not an exwatch JSON report (no \"schema\")".to_string()),
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}
