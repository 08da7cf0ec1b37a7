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
