//! Packet time: the capture timestamp every stage runs on (never the wall clock), so the
//! same capture gives the same events on every run and with any worker count.

/// One second of packet time, in nanoseconds.
pub const SECOND: u64 = 1_000_000_000;

/// Capture timestamp in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub u64);

impl Ts {
    pub const fn from_secs(secs: u64) -> Ts {
        Ts(secs * SECOND)
    }

    /// A timestamp of whole seconds and a fraction in nanoseconds, as capture formats
    /// write them.
    pub const fn from_parts(secs: u64, nanos: u64) -> Ts {
        Ts(secs * SECOND + nanos)
    }

    pub const fn secs(self) -> u64 {
        self.0 / SECOND
    }

    pub const fn subsec_nanos(self) -> u64 {
        self.0 % SECOND
    }

    pub fn saturating_add(self, nanos: u64) -> Ts {
        Ts(self.0.saturating_add(nanos))
    }
}

/// Suricata's timestamp format: `2026-11-27T04:55:14.123456+0000` (UTC).
pub fn timestamp(ts: Ts) -> String {
    let secs = ts.secs();
    let micros = ts.subsec_nanos() / 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+0000", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to a (year, month, day), proleptic Gregorian: the inverse of
/// `civil_from_days`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A point in time as `--since` and `--until` take it: an RFC 3339 timestamp
/// (`2026-11-27T04:55:14Z`, `2026-11-27T05:55:14.5+01:00`, as EVE writes them too) or a
/// date (`2026-11-27`, its midnight UTC).
pub fn parse(text: &str) -> Result<Ts, String> {
    let bad = || format!("{text:?}: not an RFC 3339 time (2026-11-27T04:55:14Z) or a date (2026-11-27)");
    let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let (date, rest) = text.split_at(text.find(['T', 't', ' ']).unwrap_or(text.len()));
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (number(y)?, number(m)?, number(d)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    let days = days_from_civil(i64::from(y), m, d);
    let mut nanos = u64::try_from(days).map_err(|_| bad())? * 86_400 * SECOND;
    if rest.is_empty() {
        return Ok(Ts(nanos));
    }
    let rest = &rest[1..];
    let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(at) => rest.split_at(at),
        None => return Err(bad()),
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':');
    let (h, mi, s) = match (hms.next(), hms.next(), hms.next()) {
        (Some(h), Some(mi), Some(s)) if h.len() == 2 && mi.len() == 2 && s.len() == 2 => {
            (number(h)?, number(mi)?, number(s)?)
        }
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || s > 60 || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    nanos += (u64::from(h) * 3600 + u64::from(mi) * 60 + u64::from(s)) * SECOND;
    if !frac.is_empty() {
        nanos += u64::from(number(frac)?) * 10u64.pow(9 - frac.len() as u32);
    }
    let east = match offset {
        "Z" | "z" => 0i64,
        _ => {
            let (sign, hm) = offset.split_at(1);
            let (oh, om) = hm.split_once(':').ok_or_else(bad)?;
            let minutes = i64::from(number(oh)?) * 60 + i64::from(number(om)?);
            if sign == "-" {
                -minutes
            } else {
                minutes
            }
        }
    };
    let utc = i64::try_from(nanos).map_err(|_| bad())? - east * 60 * SECOND as i64;
    u64::try_from(utc).map(Ts).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc_3339_or_dates_and_round_trip_through_eve_timestamps() {
        let ts = parse("2026-11-27T04:55:14.123456Z").expect("RFC 3339");
        assert_eq!(timestamp(ts), "2026-11-27T04:55:14.123456+0000");
        assert_eq!(parse("2026-11-27T05:55:14.123456+01:00"), Ok(ts));
        assert_eq!(parse("2026-11-26T23:55:14.123456-05:00"), Ok(ts));
        assert_eq!(timestamp(parse("2026-11-27").expect("a date")), "2026-11-27T00:00:00.000000+0000");
        assert_eq!(
            timestamp(parse("2024-02-29T12:00:00Z").expect("leap day")),
            "2024-02-29T12:00:00.000000+0000"
        );
        for bad in
            ["", "yesterday", "2026-13-01", "2026-11-27T25:00:00Z", "2026-11-27T04:55:14", "27/11/2026"]
        {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
