//! Associates IP fragments with their flow without reassembling them: the first
//! fragment carries the ports, later ones are joined to it by (addresses, protocol, id).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::time::Ts;
use crate::time::SECOND;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DatagramId {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

/// What is known of one fragmented datagram.
#[derive(Clone, Copy, Debug)]
struct Datagram {
    /// Ports from the first fragment, once seen.
    ports: Option<(u16, u16)>,
    /// Later fragments that arrived before the first: (packets, bytes).
    waiting: (u64, u64),
    last: Ts,
}

/// Outcome of offering a later fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// The first fragment was seen: these are the datagram's ports.
    Ports(u16, u16),
    /// Held until the first fragment arrives (or the datagram expires).
    Waiting,
    /// The table is full: the fragment is counted and dropped.
    Dropped,
}

/// Counters the fragment table keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct FragStats {
    /// Later fragments whose first fragment never came before the datagram expired.
    pub orphaned: u64,
    /// Fragments dropped because the table was full.
    pub dropped_full: u64,
}

/// Bounded table of fragmented datagrams in flight.
pub struct Fragments {
    datagrams: HashMap<DatagramId, Datagram, foldhash::fast::FixedState>,
    capacity: usize,
    timeout_ns: u64,
    /// When the full table was last swept: at most one sweep per sweep interval, or a
    /// flood of fragments would sweep the whole table on every packet.
    last_sweep: Option<Ts>,
    pub stats: FragStats,
}

/// Packet time between two sweeps of a full fragment table (at most the timeout).
const SWEEP_INTERVAL_NS: u64 = SECOND;

impl Fragments {
    pub fn new(capacity: usize, timeout_ns: u64) -> Fragments {
        Fragments {
            datagrams: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            capacity,
            timeout_ns,
            last_sweep: None,
            stats: FragStats::default(),
        }
    }

    /// Records a first fragment. Returns the later fragments that were waiting for it.
    pub fn first(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        ports: (u16, u16),
        ts: Ts,
    ) -> (u64, u64) {
        let key = DatagramId { src, dst, proto, id };
        if !self.make_room(&key, ts) {
            self.stats.dropped_full += 1;
            return (0, 0);
        }
        let entry = self.datagrams.entry(key).or_insert(Datagram { ports: None, waiting: (0, 0), last: ts });
        entry.ports = Some(ports);
        entry.last = ts;
        std::mem::take(&mut entry.waiting)
    }

    /// Offers a later fragment of `wire_len` bytes.
    pub fn later(&mut self, src: IpAddr, dst: IpAddr, proto: u8, id: u32, wire_len: u32, ts: Ts) -> Later {
        let key = DatagramId { src, dst, proto, id };
        if !self.make_room(&key, ts) {
            self.stats.dropped_full += 1;
            return Later::Dropped;
        }
        let entry = self.datagrams.entry(key).or_insert(Datagram { ports: None, waiting: (0, 0), last: ts });
        entry.last = ts;
        match entry.ports {
            Some((sport, dport)) => Later::Ports(sport, dport),
            None => {
                entry.waiting.0 += 1;
                entry.waiting.1 += u64::from(wire_len);
                Later::Waiting
            }
        }
    }

    /// The ports of a datagram whose first fragment was seen, without recording
    /// anything (for an ICMP error that quotes a later fragment).
    pub fn ports_of(&self, src: IpAddr, dst: IpAddr, proto: u8, id: u32) -> Option<(u16, u16)> {
        self.datagrams.get(&DatagramId { src, dst, proto, id }).and_then(|d| d.ports)
    }

    /// Ensures there is room for `key`, expiring old datagrams when the table is full.
    fn make_room(&mut self, key: &DatagramId, now: Ts) -> bool {
        if self.datagrams.len() < self.capacity || self.datagrams.contains_key(key) {
            return true;
        }
        let interval = SWEEP_INTERVAL_NS.min(self.timeout_ns);
        if self.last_sweep.is_none_or(|last| now.0.saturating_sub(last.0) >= interval) {
            self.last_sweep = Some(now);
            self.expire(now);
        }
        self.datagrams.len() < self.capacity
    }

    /// Forgets datagrams idle for longer than the timeout, counting orphans.
    pub fn expire(&mut self, now: Ts) {
        let timeout = self.timeout_ns;
        let stats = &mut self.stats;
        self.datagrams.retain(|_, d| {
            let keep = now.0.saturating_sub(d.last.0) <= timeout;
            if !keep && d.ports.is_none() {
                stats.orphaned += d.waiting.0;
            }
            keep
        });
    }

    /// Counts every datagram still waiting for its first fragment (end of input).
    pub fn finish(&mut self) {
        for d in self.datagrams.values().filter(|d| d.ports.is_none()) {
            self.stats.orphaned += d.waiting.0;
        }
        self.datagrams.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn later_fragments_join_their_first_in_any_order() {
        let mut f = Fragments::new(16, 30_000_000_000);
        assert_eq!(f.later(a("10.0.0.1"), a("10.0.0.2"), 17, 7, 100, Ts(1)), Later::Waiting);
        assert_eq!(f.first(a("10.0.0.1"), a("10.0.0.2"), 17, 7, (53, 999), Ts(2)), (1, 100));
        assert_eq!(f.later(a("10.0.0.1"), a("10.0.0.2"), 17, 7, 100, Ts(3)), Later::Ports(53, 999));
        f.finish();
        assert_eq!(f.stats.orphaned, 0);
    }

    #[test]
    fn table_is_bounded_and_orphans_are_counted() {
        let mut f = Fragments::new(2, 10);
        for id in 0..2 {
            assert_eq!(f.later(a("10.0.0.1"), a("10.0.0.2"), 17, id, 60, Ts(0)), Later::Waiting);
        }
        assert_eq!(f.later(a("10.0.0.1"), a("10.0.0.2"), 17, 9, 60, Ts(5)), Later::Dropped);
        assert_eq!(f.later(a("10.0.0.1"), a("10.0.0.2"), 17, 9, 60, Ts(100)), Later::Waiting);
        assert_eq!((f.stats.dropped_full, f.stats.orphaned), (1, 2));
    }
}
