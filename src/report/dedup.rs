//! Recognising the copies of one event that several sensors wrote: a table of the
//! keys seen recently, bounded by capture time and by count. It never aggregates.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use super::records::Micros;

/// A second, in [`Micros`].
pub const SECOND_MICROS: Micros = crate::time::SECOND / 1_000;

/// How long, in capture time, a flow's key is remembered to recognise the same flow
/// seen by another sensor. Flow events come out of a sensor up to its TCP idle timeout
/// (300 s) after one another's order, so the window is three times that.
pub const DEDUP_WINDOW: Micros = 900 * SECOND_MICROS;

/// Dedup keys kept at most; past it the oldest are forgotten (and counted).
pub const DEDUP_CAP: usize = 4_000_000;

/// Recognises the copies of one event seen by several sensors: the same Community ID
/// (and, for alerts, the same finding) with a flow start within a second. Events of
/// one named sensor are copies only with the very same start: a sensor writes a flow
/// once, so two such events a little apart are two flows that reused a tuple, while the
/// same event twice is one line delivered twice (a collector killed before it
/// acknowledged what it had written).
///
/// Bounded by time and by count: a key is forgotten once events [`DEDUP_WINDOW`] of
/// capture time newer have been seen from the sensor that wrote it, or when
/// [`DEDUP_CAP`] keys are held. Time is each sensor's own: a collector gets the events
/// of a week-old capture analysed today after those of a live sensor, and the live
/// sensor's clock must not make the old capture's keys forgotten as they come. Keys are
/// 64-bit hashes: two different flows would have to collide within the window.
#[derive(Clone)]
pub struct Dedup {
    /// Key -> (flow start, sensor: a hash of its name, 0 when unnamed).
    seen: HashMap<u64, (Micros, u64), foldhash::fast::FixedState>,
    /// (event time, key, flow start, sensor), in arrival order.
    order: VecDeque<(Micros, u64, Micros, u64)>,
    /// The newest event time of each sensor.
    newest: HashMap<u64, Micros, foldhash::fast::FixedState>,
    pub forgotten: u64,
    pub duplicates: u64,
}

impl Default for Dedup {
    fn default() -> Dedup {
        Dedup::new()
    }
}

impl Dedup {
    pub fn new() -> Dedup {
        Dedup {
            seen: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x7265_706f_7274)),
            order: VecDeque::new(),
            newest: HashMap::default(),
            forgotten: 0,
            duplicates: 0,
        }
    }

    pub fn hash(&self, parts: (&str, &str, Option<&str>)) -> u64 {
        self.seen.hasher().hash_one(parts)
    }

    /// A sensor's name as the table keeps it: never 0, which stands for "unnamed".
    pub fn sensor(&self, host: Option<&str>) -> u64 {
        host.map_or(0, |h| self.seen.hasher().hash_one(h) | 1)
    }

    /// Whether an event with this key and flow start, seen at `ts` by `sensor`, was
    /// seen already (by another sensor).
    pub fn duplicate(&mut self, key: u64, start: Micros, ts: Micros, sensor: u64) -> bool {
        let newest = self.newest.entry(sensor).or_insert(ts);
        *newest = (*newest).max(ts);
        while let Some(&(at, old, old_start, by)) = self.order.front() {
            let full = self.order.len() >= DEDUP_CAP;
            let horizon = self.newest.get(&by).copied().unwrap_or(at);
            if at.saturating_add(DEDUP_WINDOW) >= horizon && !full {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old).is_some_and(|&(s, _)| s == old_start) {
                self.seen.remove(&old);
                self.forgotten += u64::from(full);
            }
        }
        if let Some(&(seen, by)) = self.seen.get(&key) {
            let same_sensor = sensor != 0 && by == sensor;
            if seen.abs_diff(start) <= SECOND_MICROS && (!same_sensor || seen == start) {
                self.duplicates += 1;
                return true;
            }
        }
        self.seen.insert(key, (start, sensor));
        self.order.push_back((ts, key, start, sensor));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_within_a_second_count_once_and_later_starts_count_again() {
        let mut d = Dedup::new();
        let key = d.hash(("flow", "1:abc", None));
        let (a, b) = (d.sensor(Some("a")), d.sensor(Some("b")));
        assert!(!d.duplicate(key, 10 * SECOND_MICROS, 11 * SECOND_MICROS, a));
        assert!(d.duplicate(key, 10 * SECOND_MICROS + 999_999, 11 * SECOND_MICROS, b));
        assert!(
            d.duplicate(key, 10 * SECOND_MICROS - SECOND_MICROS, 11 * SECOND_MICROS, 0),
            "an unnamed sensor"
        );
        assert!(
            !d.duplicate(key, 12 * SECOND_MICROS, 13 * SECOND_MICROS, b),
            "two seconds apart: another flow"
        );
        let other = d.hash(("flow", "1:abd", None));
        assert!(!d.duplicate(other, 12 * SECOND_MICROS, 13 * SECOND_MICROS, b));
        assert_eq!(d.duplicates, 2);
        // One sensor's two events are two flows, however close.
        let reused = d.hash(("flow", "1:reused", None));
        assert!(!d.duplicate(reused, 20 * SECOND_MICROS, 21 * SECOND_MICROS, a));
        assert!(!d.duplicate(reused, 20 * SECOND_MICROS + 10, 21 * SECOND_MICROS, a));
        // One sensor's event delivered twice is one.
        assert!(d.duplicate(reused, 20 * SECOND_MICROS + 10, 21 * SECOND_MICROS, a));
        assert_eq!(d.sensor(None), 0);
        assert_ne!(d.sensor(Some("")), 0);
    }

    #[test]
    fn dedup_keys_are_forgotten_once_the_window_has_passed() {
        let mut d = Dedup::new();
        let key = d.hash(("flow", "1:abc", None));
        assert!(!d.duplicate(key, 0, SECOND_MICROS, 0));
        let later = d.hash(("flow", "1:later", None));
        assert!(!d.duplicate(later, 0, SECOND_MICROS + DEDUP_WINDOW + 1, 0));
        assert_eq!(d.seen.len(), 1, "the first key was dropped");
        assert_eq!(d.forgotten, 0, "dropped by time, not by the cap");
    }

    /// A live sensor's events of today do not make a week-old capture's keys forgotten
    /// as they come: its copy seen by another sensor is still recognised.
    #[test]
    fn each_sensor_keeps_its_own_time() {
        let mut d = Dedup::new();
        let (live, a, c) = (d.sensor(Some("live")), d.sensor(Some("a")), d.sensor(Some("c")));
        let week = 7 * 86_400 * SECOND_MICROS;
        assert!(!d.duplicate(d.hash(("flow", "1:live", None)), week, week, live));
        let key = d.hash(("flow", "1:old", None));
        assert!(!d.duplicate(key, 10 * SECOND_MICROS, 11 * SECOND_MICROS, a));
        assert!(!d.duplicate(d.hash(("flow", "1:live2", None)), week, week + 1, live));
        assert!(d.duplicate(key, 10 * SECOND_MICROS, 11 * SECOND_MICROS, c), "site c saw site a's flow");
    }
}
