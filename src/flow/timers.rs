//! The tracker's timers: a 4-ary min-heap.
//!
//! Every flow has an idle timer, so a full table holds one per flow; a flood evicts the
//! earliest on every new flow. A binary heap of half a million timers is 19 levels deep,
//! a cache miss each; with four children a node the heap is half as deep, and a node's
//! children lie side by side (four 24-byte timers: a cache line and a half), so a pop
//! costs about half the misses. The order is the timers' own (`Ord`), as in
//! `std::collections::BinaryHeap`, so the tracker fires them in the same order.

/// Children per node.
const ARITY: usize = 4;

pub struct Timers<T> {
    heap: Vec<T>,
}

impl<T: Ord + Copy> Timers<T> {
    /// Room for `timers` reserved at once (untouched pages cost nothing), up to the
    /// flow table's own reservation; past it, the heap grows as it fills.
    pub fn with_capacity(timers: usize) -> Timers<T> {
        Timers { heap: Vec::with_capacity(timers.min(super::table::RESERVED_FLOWS)) }
    }

    /// The earliest timer.
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        self.heap.first()
    }

    pub fn push(&mut self, timer: T) {
        self.heap.push(timer);
        self.rise(self.heap.len() - 1, timer);
    }

    /// Puts `timer` in the hole at `at` or above it: each parent later than the timer
    /// moves down into the hole.
    #[inline]
    fn rise(&mut self, mut at: usize, timer: T) {
        while at > 0 {
            let parent = (at - 1) / ARITY;
            if self.heap[parent] <= timer {
                break;
            }
            self.heap[at] = self.heap[parent];
            at = parent;
        }
        self.heap[at] = timer;
    }

    /// Takes the earliest timer out.
    ///
    /// The last timer fills the root's place bottom-up (Floyd's way): the hole goes down
    /// to a leaf along the least children, with no comparison against the last timer on
    /// the way (it came from the bottom and nearly always belongs there), and the last
    /// timer then rises from that leaf, usually not at all. A timer run (a capture's
    /// quiet spell, its end) pops thousands in a row.
    pub fn pop(&mut self) -> Option<T> {
        let last = self.heap.pop()?;
        if self.heap.is_empty() {
            return Some(last);
        }
        let earliest = self.heap[0];
        let len = self.heap.len();
        let mut at = 0;
        loop {
            let first = at * ARITY + 1;
            if first >= len {
                break;
            }
            let mut least = first;
            for child in first + 1..(first + ARITY).min(len) {
                if self.heap[child] < self.heap[least] {
                    least = child;
                }
            }
            self.heap[at] = self.heap[least];
            at = least;
        }
        self.rise(at, last);
        Some(earliest)
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small generator, so the test needs no dependency: xorshift.
    fn numbers(n: usize, mut seed: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % 1000
            })
            .collect()
    }

    #[test]
    fn pops_in_order_with_pushes_in_between() {
        let mut timers = Timers::with_capacity(4);
        let mut reference = std::collections::BinaryHeap::new();
        for (i, n) in numbers(5_000, 7).into_iter().enumerate() {
            timers.push((n, i));
            reference.push(std::cmp::Reverse((n, i)));
            if i % 3 == 0 {
                assert_eq!(timers.pop(), reference.pop().map(|r| r.0));
            }
        }
        while let Some(std::cmp::Reverse(expected)) = reference.pop() {
            assert_eq!(timers.peek(), Some(&expected));
            assert_eq!(timers.pop(), Some(expected));
        }
        assert_eq!(timers.pop(), None);
    }
}
