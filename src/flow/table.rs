//! The flow table: flows in a slab, found through a compact open-addressed index.
//!
//! A flow stays at one slab index while it lives ([`FlowRef`]), so timers and the
//! tracker's follow-ups name it by index rather than by its 40-byte key. The index is an
//! array of 8-byte slots (the low 32 bits of the key's hash and the flow's slab index),
//! kept at most half full and probed linearly: a lookup reads one cache line of slots and
//! then the flow itself. A hash's home slot is its 32 bits scaled to the index's length
//! (a multiply and a shift), so the index need not be a power of two: it doubles as the
//! table fills, up to twice the table's most flows and no further (a power of two could
//! be almost four times, which a run's several workers each paid), and [`Table::prefetch_slot`] and [`Table::prefetch_flow`] let the worker ask for both lines a few
//! packets ahead. Removal shifts the following slots back, so there are no tombstones and
//! probes stay short however many flows come and go. Freed slab entries are reused
//! before the slab grows.

use super::{Flow, FlowKey};
use crate::prefetch;

/// A flow's place in the slab, stable while the flow lives.
pub type FlowRef = u32;

/// The id a freed slab entry carries (flow ids are below 2^53).
const FREE: u64 = u64::MAX;

/// An index slot: `index` is [`Slot::EMPTY`] or a slab index; `hash` the low bits of the
/// key's hash, which also give the slot's home position.
#[derive(Clone, Copy)]
struct Slot {
    hash: u32,
    index: u32,
}

impl Slot {
    const EMPTY: u32 = u32::MAX;
    const VACANT: Slot = Slot { hash: 0, index: Slot::EMPTY };
}

/// Slots the index starts with; it doubles while more than half full, up to twice the
/// table's most flows.
const FIRST_SLOTS: usize = 1024;

/// Flows the slab reserves room for up front, at most: past it, it grows as it fills.
/// (A reservation costs address space only, but not without bound.)
pub const RESERVED_FLOWS: usize = 1 << 20;

/// Flows one table holds at most: slab indices are 32-bit, and one value means "empty".
pub const MAX_FLOWS: usize = (u32::MAX - 1) as usize;

pub struct Table {
    slots: Vec<Slot>,
    /// The most slots the index grows to: twice the flows the table holds at most.
    max_slots: usize,
    flows: Vec<Flow>,
    free: Vec<FlowRef>,
    len: usize,
}

impl Table {
    /// A table for at most `flows` flows ([`MAX_FLOWS`] at most). The slab's memory is
    /// reserved for up to [`RESERVED_FLOWS`] of them at once (untouched pages cost
    /// nothing), so a full table of the usual sizes holds no doubling slack.
    pub fn with_capacity(flows: usize) -> Table {
        Table {
            slots: vec![Slot::VACANT; FIRST_SLOTS],
            max_slots: flows.min(MAX_FLOWS).saturating_mul(2).max(FIRST_SLOTS),
            flows: Vec::with_capacity(flows.min(RESERVED_FLOWS)),
            free: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The home slot of a hash whose low 32 bits are `tag`.
    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.slots.len() as u64) >> 32) as usize
    }

    /// The slot after `pos`, the first after the last.
    #[inline]
    fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.slots.len() {
            0
        } else {
            pos + 1
        }
    }

    /// How many slots on from `from` `to` is, going round.
    #[inline]
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.slots.len() - from
        }
    }

    /// The flow with `key` (whose [`FlowKey::hash64`] is `hash`), if tracked.
    #[inline]
    pub fn find(&self, key: &FlowKey, hash: u64) -> Option<FlowRef> {
        let tag = hash as u32;
        let mut pos = self.home(tag);
        loop {
            let slot = self.slots[pos];
            if slot.index == Slot::EMPTY {
                return None;
            }
            if slot.hash == tag && self.flows[slot.index as usize].key == *key {
                return Some(slot.index);
            }
            pos = self.next(pos);
        }
    }

    /// Asks the CPU for the index slot of `hash`: a hint, first of two a worker gives a
    /// few packets ahead of handling a packet (see [`Table::prefetch_flow`]).
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        prefetch::line(&self.slots[self.home(hash as u32)]);
    }

    /// Asks the CPU for the flow whose slot is home to `hash`, if that slot names one of
    /// this hash: the second hint, once the slot is likely in the cache.
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) {
        let tag = hash as u32;
        let slot = self.slots[self.home(tag)];
        if slot.hash == tag {
            if let Some(flow) = self.flows.get(slot.index as usize) {
                // A flow spans four cache lines, and a packet reads from most of them.
                prefetch::all(flow);
            }
        }
    }

    /// Asks the CPU for the flow at `at`, every line of it.
    #[inline]
    pub fn prefetch_at(&self, at: FlowRef) {
        if let Some(flow) = self.flows.get(at as usize) {
            prefetch::all(flow);
        }
    }

    pub fn get(&self, at: FlowRef) -> &Flow {
        &self.flows[at as usize]
    }

    pub fn get_mut(&mut self, at: FlowRef) -> &mut Flow {
        &mut self.flows[at as usize]
    }

    /// The flow at `at`, if that slab entry holds one (a timer's flow may have ended,
    /// and another may have taken its place).
    pub fn live(&self, at: FlowRef) -> Option<&Flow> {
        self.flows.get(at as usize).filter(|flow| flow.id != FREE)
    }

    /// Adds a flow whose key is not in the table.
    pub fn insert(&mut self, flow: Flow) -> FlowRef {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let hash = flow.key.hash64() as u32;
        let at = match self.free.pop() {
            Some(at) => {
                self.flows[at as usize] = flow;
                at
            }
            None => {
                self.flows.push(flow);
                (self.flows.len() - 1) as FlowRef
            }
        };
        self.place(Slot { hash, index: at });
        self.len += 1;
        at
    }

    fn place(&mut self, slot: Slot) {
        let mut pos = self.home(slot.hash);
        while self.slots[pos].index != Slot::EMPTY {
            pos = self.next(pos);
        }
        self.slots[pos] = slot;
    }

    fn grow(&mut self) {
        // Never below twice the flows held, so the index always keeps an empty slot.
        let slots = (self.slots.len() * 2).min(self.max_slots).max(self.len * 2 + 2);
        if slots <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![Slot::VACANT; slots]);
        for slot in old.into_iter().filter(|slot| slot.index != Slot::EMPTY) {
            self.place(slot);
        }
    }

    /// Takes the flow at `at` out of the table.
    pub fn remove(&mut self, at: FlowRef) -> Flow {
        let flow = self.flows[at as usize];
        let mut hole = self.home(flow.key.hash64() as u32);
        while self.slots[hole].index != at {
            hole = self.next(hole);
        }
        // Backward shift: a later slot of the probe run moves into the hole unless the
        // hole lies before its home position.
        let mut next = self.next(hole);
        while self.slots[next].index != Slot::EMPTY {
            let home = self.home(self.slots[next].hash);
            if self.distance(home, next) >= self.distance(hole, next) {
                self.slots[hole] = self.slots[next];
                hole = next;
            }
            next = self.next(next);
        }
        self.slots[hole] = Slot::VACANT;
        self.flows[at as usize].id = FREE;
        self.free.push(at);
        self.len -= 1;
        flow
    }

    /// Forgets every flow at once; the memory stays reserved.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::VACANT);
        self.flows.clear();
        self.free.clear();
        self.len = 0;
    }

    /// Where every flow is, in slab order.
    pub fn refs(&self) -> Vec<FlowRef> {
        (0..self.flows.len() as FlowRef).filter(|&at| self.flows[at as usize].id != FREE).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::decode::{proto, Tuple};
    use crate::flow::Direction;
    use crate::policy::{Judgement, Role};
    use crate::time::Ts;

    fn flow(n: u32) -> Flow {
        let tuple = Tuple {
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 255, 0, 1)),
            sport: 40_000,
            dport: 443,
            proto: proto::TCP,
        };
        let judgement = Judgement { rule: None, orig_role: Role::External, resp_role: Role::External };
        let key = FlowKey::of(&tuple);
        Flow::new(key, tuple, Direction::Observed, u64::from(n), Ts(0), Default::default(), judgement)
    }

    #[test]
    fn finds_what_it_holds_through_growth_and_removal() {
        let mut table = Table::with_capacity(16);
        let mut refs = Vec::new();
        for n in 0..5_000 {
            let f = flow(n);
            assert_eq!(table.find(&f.key, f.key.hash64()), None);
            refs.push(table.insert(f));
        }
        // Remove every third flow: the others stay findable, the removed ones are gone.
        for (n, &at) in refs.iter().enumerate().filter(|(n, _)| n % 3 == 0) {
            assert_eq!(table.remove(at).id, n as u64);
            assert!(table.live(at).is_none());
        }
        for (n, &at) in refs.iter().enumerate() {
            let f = flow(n as u32);
            let found = table.find(&f.key, f.key.hash64());
            assert_eq!(found, (n % 3 != 0).then_some(at), "flow {n}");
        }
        assert_eq!(table.len(), 5_000 - 1_667);
        // Freed entries are reused before the slab grows.
        let again = table.insert(flow(99_999));
        assert!(refs.contains(&again));
        let held = table.refs();
        assert_eq!(held.len(), 5_000 - 1_667 + 1);
        for at in held {
            table.remove(at);
        }
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_collision_run_survives_removal_from_its_middle() {
        // Keys whose hashes share a home slot collide into one probe run.
        let mut table = Table::with_capacity(16);
        let mut same_home = Vec::new();
        let mut n = 0;
        while same_home.len() < 6 {
            let f = flow(n);
            if table.home(f.key.hash64() as u32) == 7 {
                same_home.push((table.insert(f), n));
            }
            n += 1;
        }
        table.remove(same_home[2].0);
        for &(at, n) in same_home.iter().filter(|&&(at, _)| at != same_home[2].0) {
            let f = flow(n);
            assert_eq!(table.find(&f.key, f.key.hash64()), Some(at));
        }
    }

    /// An index of a length that is no power of two (twice a full table's 3,000 flows):
    /// it stops growing there, and every flow is found through removals and reuse, the
    /// runs that wrap round the last slot included.
    #[test]
    fn a_full_table_index_is_twice_its_flows_and_finds_them_all() {
        let mut table = Table::with_capacity(3_000);
        let refs: Vec<FlowRef> = (0..3_000).map(|n| table.insert(flow(n))).collect();
        assert_eq!(table.slots.len(), 6_000);
        for &at in refs.iter().step_by(2) {
            table.remove(at);
        }
        for n in 3_000..4_500 {
            table.insert(flow(n));
        }
        assert_eq!((table.len(), table.slots.len()), (3_000, 6_000));
        let mut wrapped = 0;
        for n in (0..4_500u32).filter(|&n| n % 2 == 1 || n >= 3_000) {
            let f = flow(n);
            let found = table.find(&f.key, f.key.hash64()).expect("every flow held is found");
            assert_eq!(table.get(found).key, f.key);
            let slot = table.slots.iter().position(|slot| slot.index == found).expect("in the index");
            wrapped += usize::from(slot < table.home(f.key.hash64() as u32));
        }
        assert!(wrapped > 0, "some probe run wraps round the last slot");
    }
}
