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
