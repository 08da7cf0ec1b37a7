//! `[[exception]]` tables of the topology: known, approved deviations. A finding an
//! exception covers, in a flow that started before the end of its `expires` date, is
//! `accepted`; after that date it is a finding again, naming the expired exception.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use super::prefix::Prefix;
use super::role::{Role, RoleSet};
use crate::config::{ConfigError, Source};
use crate::decode::proto;
use crate::time::{Ts, SECOND};

/// Nanoseconds in a day.
const DAY_NS: u64 = 86_400 * SECOND;

/// An exception's `from` or `to` item: an address or prefix, or a role name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    Prefix(Prefix),
    Role(Role),
}

/// One validated `[[exception]]`.
#[derive(Clone, Debug)]
pub struct Exception {
    pub id: String,
    /// A rule or evidence id, or `*`.
    pub rule: String,
    /// Empty: any.
    pub from: Vec<Party>,
    pub to: Vec<Party>,
    /// (IP protocol, lowest port, highest port); empty: any.
    pub ports: Vec<(u8, u16, u16)>,
    pub owner: String,
    pub reason: String,
    /// The `expires` date as written (`2027-03-31`).
    pub expires: String,
    /// The end of that day, UTC: flows that start from then on are not covered.
    pub end: Ts,
    /// Lines of the table and of its `rule` key, for errors found later.
    pub line: usize,
    pub rule_line: usize,
}

/// What the exceptions say of one finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Covered {
    /// An unexpired exception covers it: the index into the topology's exceptions.
    Active(usize),
    /// Only exceptions that had expired when the flow started cover it.
    Expired(usize),
}

/// What a finding is, for matching against exceptions.
#[derive(Clone, Copy, Debug)]
pub struct Finding<'a> {
    /// The rule's id, or for restriction evidence the evidence's id.
    pub id: &'a str,
    /// For restriction evidence, the id of the rule of the flow it is on: an exception
    /// naming that rule covers its evidence too.
    pub rule: Option<&'a str>,
    pub orig: IpAddr,
    pub resp: IpAddr,
    pub orig_roles: RoleSet,
    pub resp_roles: RoleSet,
    pub proto: u8,
    pub resp_port: u16,
    pub start: Ts,
}

impl Exception {
    fn covers(&self, f: &Finding<'_>) -> bool {
        let rule = self.rule == "*" || self.rule == f.id || f.rule.is_some_and(|r| r == self.rule);
        let party = |parties: &[Party], addr: IpAddr, roles: RoleSet| {
            parties.is_empty()
                || parties.iter().any(|p| match *p {
                    Party::Prefix(prefix) => prefix.contains(addr.to_canonical()),
                    Party::Role(role) => roles.contains(role),
                })
        };
        let port = self.ports.is_empty()
            || self.ports.iter().any(|&(p, lo, hi)| p == f.proto && (lo..=hi).contains(&f.resp_port));
        rule && port && party(&self.from, f.orig, f.orig_roles) && party(&self.to, f.resp, f.resp_roles)
    }
}

/// The first unexpired exception that covers the finding, else the first expired one.
pub fn cover(exceptions: &[Exception], f: &Finding<'_>) -> Option<Covered> {
    let mut expired = None;
    for (i, e) in exceptions.iter().enumerate() {
        if !e.covers(f) {
            continue;
        }
        if f.start < e.end {
            return Some(Covered::Active(i));
        }
        expired.get_or_insert(i);
    }
    expired.map(Covered::Expired)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawException {
    id: Option<Spanned<String>>,
    rule: Option<Spanned<String>>,
    from: Option<Vec<Spanned<String>>>,
    to: Option<Vec<Spanned<String>>>,
    ports: Option<Vec<Spanned<String>>>,
    owner: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
    expires: Option<Spanned<toml::Value>>,
}

impl RawException {
    /// Validates one exception (its rule is checked against the policy later:
    /// [`super::Topology::check_exceptions`]).
    pub(super) fn compile<'r>(
        &'r self,
        source: &Source<'_>,
        key: &str,
        span: std::ops::Range<usize>,
    ) -> Result<Exception, ConfigError> {
        let required = |field: &'r Option<Spanned<String>>, name: &str| match field {
            Some(value) if !value.get_ref().trim().is_empty() => Ok(value),
            Some(value) => Err(source.error(value.span(), &format!("{key}.{name}"), "must not be empty")),
            None => Err(source.error(
                span.clone(),
                &format!("{key}.{name}"),
                format!(
                    "missing: every exception needs id, rule, owner, reason and expires ({name} is not set)"
                ),
            )),
        };
        let id = required(&self.id, "id")?;
        let rule = required(&self.rule, "rule")?;
        let owner = required(&self.owner, "owner")?;
        let reason = required(&self.reason, "reason")?;
        let Some(expires) = &self.expires else {
            return Err(source.error(
                span,
                &format!("{key}.expires"),
                "missing: every exception needs id, rule, owner, reason and expires (expires is not set)",
            ));
        };
        let (expires_text, end) = date_end(expires.get_ref()).ok_or_else(|| {
            source.error(
                expires.span(),
                &format!("{key}.expires"),
                format!("`{}` is not a TOML date: write it unquoted, like 2027-03-31", expires.get_ref()),
            )
        })?;
        Ok(Exception {
            id: id.get_ref().clone(),
            rule: rule.get_ref().clone(),
            from: parties(source, &format!("{key}.from"), self.from.as_deref().unwrap_or_default())?,
            to: parties(source, &format!("{key}.to"), self.to.as_deref().unwrap_or_default())?,
            ports: port_ranges(source, &format!("{key}.ports"), self.ports.as_deref().unwrap_or_default())?,
            owner: owner.get_ref().clone(),
            reason: reason.get_ref().clone(),
            expires: expires_text,
            end,
            line: source.line_of(span.start),
            rule_line: source.line_of(rule.span().start),
        })
    }
}

/// A TOML local date as written, and the end of that day (UTC) in packet time.
fn date_end(value: &toml::Value) -> Option<(String, Ts)> {
    let toml::Value::Datetime(dt) = value else {
        return None;
    };
    let (Some(date), None) = (dt.date, dt.time) else {
        return None;
    };
    let days = days_from_civil(i64::from(date.year), u32::from(date.month), u32::from(date.day));
    let end = u64::try_from(days + 1).ok()?.checked_mul(DAY_NS)?;
    Some((dt.to_string(), Ts(end)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parties(source: &Source<'_>, key: &str, items: &[Spanned<String>]) -> Result<Vec<Party>, ConfigError> {
    items
        .iter()
        .map(|item| {
            let text = item.get_ref();
            if let Some(role) = Role::from_name(text) {
                return Ok(Party::Role(role));
            }
            text.parse::<Prefix>().map(|p| Party::Prefix(p.canonical())).map_err(|_| {
                source.error(
                    item.span(),
                    key,
                    format!(
                        "`{text}` is neither an address or prefix nor a role ({})",
                        Role::ALL.map(Role::name).join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn port_ranges(
    source: &Source<'_>,
    key: &str,
    items: &[Spanned<String>],
) -> Result<Vec<(u8, u16, u16)>, ConfigError> {
    items
        .iter()
        .map(|item| {
            let text = item.get_ref();
            let parsed = text.split_once('/').and_then(|(p, range)| {
                let p = match p {
                    "tcp" => proto::TCP,
                    "udp" => proto::UDP,
                    _ => return None,
                };
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                let (lo, hi) = (lo.parse::<u16>().ok()?, hi.parse::<u16>().ok()?);
                (lo <= hi).then_some((p, lo, hi))
            });
            parsed.ok_or_else(|| {
                source.error(
                    item.span(),
                    key,
                    format!("`{text}` is not proto/port or proto/lo-hi (tcp/3389, udp/1024-65535)"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_ends_at_midnight_utc_after_it() {
        let value: toml::Table = toml::from_str("d = 2027-03-31").unwrap();
        let (text, end) = date_end(&value["d"]).unwrap();
        assert_eq!(text, "2027-03-31");
        // 2027-04-01T00:00:00Z
        assert_eq!(end, Ts::from_secs(1_806_537_600));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let value: toml::Table = toml::from_str("d = \"2027-03-31\"\nt = 2027-03-31T10:00:00Z").unwrap();
        assert!(date_end(&value["d"]).is_none(), "a string is not a date");
        assert!(date_end(&value["t"]).is_none(), "a date-time is not a date");
    }
}
