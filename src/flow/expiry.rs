//! The end of flows: the timers (idle, closed, SYN check), eviction from a full table,
//! and the end of input, a chunk of flows at a time.

use super::table::FlowRef;
use super::timers::Timers;
use super::tracker::{Timer, TimerKind, Tracker, FINISH_CHUNK};
use super::{EndReason, Flow, Mark};
use crate::counters::Counter;
use crate::decode::proto;
use crate::policy::EvidenceKind;
use crate::time::Ts;

impl Tracker {
    /// A flow just closed (FIN both ways, or a RST): it now ends after the shorter
    /// closed timeout, not the idle timeout its creation scheduled. Without this, closed
    /// flows stayed in the table for the full TCP idle time (300 s by default).
    pub(super) fn closed(&mut self, flow: FlowRef, flow_id: u64, ts: Ts) {
        let at = ts.saturating_add(self.settings.closed_idle_ns);
        self.timers.push(Timer::new(at, TimerKind::Idle, flow_id, flow));
    }

    /// Ends every flow: the input is over. Its events pile up until drained; a worker
    /// uses [`Tracker::finish_some`] instead, to send them a chunk at a time.
    pub fn finish(&mut self) {
        while self.finish_some() {}
    }

    /// Ends up to `FINISH_CHUNK` (4,096) more of the flows still open at the end of input, in
    /// start order (so one worker's events come out the same on every run); false once
    /// every flow has ended. Drain the events between calls, and a full table's end
    /// never holds more than a chunk of them.
    pub fn finish_some(&mut self) -> bool {
        if self.closing.is_none() {
            // No timer fires once every flow is ending: their heap (about 17 bytes a
            // flow) is given back before the order below is built (16 bytes a flow), so
            // a full table's end does not raise the run's peak memory.
            self.timers = Timers::with_capacity(0);
        }
        let order = self.closing.get_or_insert_with(|| {
            // Sorted on a copy of each start time beside its index, read in one pass over
            // the slab: comparing by reading two flows was two cache misses a step. Flows
            // that started together are ordered by key.
            let flows = &self.flows;
            let mut starts: Vec<(Ts, FlowRef)> =
                flows.refs().into_iter().map(|at| (flows.get(at).start, at)).collect();
            starts.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| flows.get(a.1).key.cmp(&flows.get(b.1).key))
            });
            starts.into_iter().rev().map(|(_, at)| at).collect()
        });
        let chunk: Vec<FlowRef> = order.drain(order.len().saturating_sub(FINISH_CHUNK)..).rev().collect();
        // Every flow ends, so none is taken out of the table one by one (a probe of the
        // index each, in no order the index likes): the table is cleared once at the
        // end. Start order is no order in the slab either: each flow is asked for a few
        // ahead.
        const AHEAD: usize = 4;
        for &at in chunk.iter().take(AHEAD) {
            self.flows.prefetch_at(at);
        }
        for (i, &at) in chunk.iter().enumerate() {
            if let Some(&ahead) = chunk.get(i + AHEAD) {
                self.flows.prefetch_at(ahead);
            }
            let mut flow = *self.flows.get(at);
            if self.silent_drop(&flow) {
                // A silent drop needs the whole timeout: the capture ended too soon to say.
                if self.now.0 >= flow.start.0.saturating_add(self.settings.syn_timeout_ns) {
                    let last = flow.last;
                    self.restriction(&mut flow, last, EvidenceKind::SynUnanswered, (None, None));
                } else {
                    self.counters[Counter::SynUndetermined] += 1;
                }
            }
            self.end(flow, EndReason::Shutdown);
        }
        if self.closing.as_ref().is_some_and(|order| !order.is_empty()) {
            return true;
        }
        self.closing = None;
        self.flows.clear();
        self.timers.clear();
        self.frags.finish();
        self.counters[Counter::FragmentsOrphaned] = self.frags.stats.orphaned;
        self.counters[Counter::FragmentsDropped] = self.frags.stats.dropped_full;
        self.close_file();
        false
    }

    /// Runs the timers due by `ts`: packet time, or the clock while a live capture is
    /// quiet.
    pub fn advance(&mut self, ts: Ts) {
        if ts <= self.now {
            return;
        }
        self.now = ts;
        while self.timers.peek().is_some_and(|timer| timer.at <= ts) {
            if let Some(timer) = self.timers.pop() {
                // Timers come due in runs (a capture's quiet spell, its end): the next
                // one's flow is asked for while this one fires.
                if let Some(next) = self.timers.peek().filter(|next| next.at <= ts) {
                    self.flows.prefetch_at(next.flow);
                }
                self.fire(timer);
            }
        }
    }

    pub(super) fn fire(&mut self, timer: Timer) {
        let Some(&flow) =
            self.flows.live(timer.flow).filter(|f| timer.is_for(f, self.settings.syn_timeout_ns))
        else {
            return;
        };
        match timer.kind() {
            TimerKind::SynCheck => {
                if self.silent_drop(&flow) {
                    let mut flow = flow;
                    self.restriction(&mut flow, timer.at, EvidenceKind::SynUnanswered, (None, None));
                    *self.flows.get_mut(timer.flow) = flow;
                }
            }
            TimerKind::HeldAlert => {
                if flow.is(Mark::AlertHeld) {
                    self.flows.get_mut(timer.flow).set(Mark::AlertHeld, false);
                    self.release_held(&flow, timer.at);
                }
            }
            TimerKind::Idle => {
                let deadline = flow.last.saturating_add(self.idle_ns(&flow));
                if deadline <= timer.at {
                    self.flows.remove(timer.flow);
                    self.counters[Counter::FlowsTimedOut] += 1;
                    self.end(flow, EndReason::Timeout);
                } else {
                    self.timers.push(Timer::new(deadline, TimerKind::Idle, flow.id, timer.flow));
                }
            }
        }
    }

    pub(super) fn idle_ns(&self, flow: &Flow) -> u64 {
        if flow.is_closed() {
            self.settings.closed_idle_ns
        } else {
            match flow.key.proto {
                proto::TCP => self.settings.tcp_idle_ns,
                proto::UDP => self.settings.udp_idle_ns,
                _ => self.settings.other_idle_ns,
            }
        }
    }

    pub(super) fn evict_one(&mut self) {
        while let Some(timer) = self.timers.pop() {
            if self.flows.live(timer.flow).is_some_and(|f| timer.is_for(f, self.settings.syn_timeout_ns)) {
                let flow = self.flows.remove(timer.flow);
                self.counters[Counter::FlowsEvicted] += 1;
                self.end(flow, EndReason::Forced);
                return;
            }
        }
    }
}
