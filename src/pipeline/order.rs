//! The writer's reorder buffer: alerts of each stream reach the alert bound
//! ([`bound::Limiter`]) in one canonical order, whatever the worker count and the
//! threads' timing.
//!
//! A stream is what one reader feeds (its workers are its feeders) or one file of
//! several (its job is its only feeder); each stream has a limiter of its own, so a file
//! is bounded alone and the result does not depend on `--jobs`.
//!
//! Why the order is canonical. Each chunk of events a feeder sends carries its
//! watermark: its flow table's packet time (`Tracker::now`), which only grows. Every
//! alert a feeder emits later has a time at or after it: an alert made by a packet has
//! that packet's time, and a timer that fires when the clock passes a watermark was due
//! after the previous one (timers due by then had fired). So once every feeder of a
//! stream has passed time T, no alert before T can still come, and the alerts before T
//! are released sorted by (time, flow id). A flow lives on one worker, so alerts with the
//! same time and flow id come from one feeder, in the order it made them, which does not
//! depend on the worker count either; arrival order breaks those ties. Alerts made when
//! the input ends (`Tracker::finish`: flows still open then, whose alerts may carry an
//! earlier time, the flow's last packet) are ordered by their emission watermark, which
//! is the end of input: after every other alert of the stream, by (time, flow id), and
//! judged at the stream's last packet time (the largest watermark of its feeders). The
//! limiter is a pure function of that sequence, and its windows close on it, so the
//! same capture gives the same alerts and aggregates with any `--workers` or `--jobs`.
//! Only the position of lines in the file may differ.
//!
//! The argument's one limit: a capture whose timestamps go backwards. An alert older
//! than its feeder's last watermark is ordered at that watermark (so nothing released
//! is ever preceded), and which watermark that is depends on how packets were spread
//! over workers. The buffer's bound is the other: past [`MAX_PENDING`] alerts waiting
//! in one stream (a worker that got no packet for long, so its watermark stood still),
//! the oldest is released early and counted (`reorder_overflow`). The end of input's
//! events (sent a chunk at a time, flows still open being ended a chunk at a time) are
//! not counted against it: they wait for every feeder's end whatever the bound, and
//! the flow tables bound them (a TCP flow's finding held for its handshake is among
//! them when the input ends within `--syn-timeout` of its SYN).
//!
//! `flow` events are a flow log the user asked for: they pass at once, never limited,
//! unless only in-scope flows are written (`--flows=in-scope`): then they wait in the
//! same order as alerts, at the time their flow ended (`Event::Flow`'s `at`, which the
//! watermark argument above holds for too: a timeout ends a flow at its idle deadline,
//! which a timer reaches only once the clock passes it), and the limiter bounds them.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::flow::Event;
use crate::output::bound::{self, Limiter, Written};
use crate::policy::Engine;
use crate::time::Ts;

/// Alerts waiting per stream at most (an alert waits as a 264-byte event, so about
/// 20 MB); past it the oldest is released and counted.
pub(super) const MAX_PENDING: usize = 65_536;

/// Whether a chunk of events came from the end of input: not; a chunk of it, more to
/// come (flows still open are ended a chunk at a time); or its last, the feeder done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    No,
    Finishing,
    Done,
}

/// The streams' buffers and limiters.
pub(super) struct Order<'a> {
    engine: &'a Engine,
    settings: bound::Settings,
    streams: HashMap<u64, Stream<'a>>,
    /// In-scope flow events are bounded too (`--flows=in-scope`): they wait in order
    /// with the alerts.
    flows: bool,
    out: Vec<Written>,
    /// What the limiters of finished streams counted.
    done: bound::Counts,
    /// Alerts released before every feeder passed their time.
    pub(super) overflow: u64,
}

struct Stream<'a> {
    feeders: Vec<Feeder>,
    pending: BinaryHeap<Reverse<Pending>>,
    limiter: Limiter<'a>,
    arrivals: u64,
    /// Of `pending`, the events of the end of input.
    ending: usize,
}

#[derive(Clone, Copy, Default)]
struct Feeder {
    mark: Ts,
    ended: bool,
}

/// An alert waiting for its turn.
struct Pending {
    /// (made at the end of input, time, flow id, arrival).
    rank: (bool, Ts, u64, u64),
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Pending) -> bool {
        self.rank == other.rank
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Pending) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Pending) -> Ordering {
        self.rank.cmp(&other.rank)
    }
}

impl<'a> Order<'a> {
    /// `flows`: flow events are bounded too (they must then be in scope already).
    pub(super) fn new(engine: &'a Engine, settings: bound::Settings, flows: bool) -> Order<'a> {
        let done = Limiter::new(engine, settings.clone()).counts;
        Order { engine, settings, streams: HashMap::new(), flows, out: Vec::new(), done, overflow: 0 }
    }

    fn stream(&mut self, stream: u64) -> &mut Stream<'a> {
        let (engine, settings, flows) = (self.engine, &self.settings, self.flows);
        self.streams.entry(stream).or_insert_with(|| {
            let limiter = Limiter::new(engine, settings.clone());
            Stream {
                feeders: Vec::new(),
                pending: BinaryHeap::new(),
                limiter: if flows { limiter.bounding_flows() } else { limiter },
                arrivals: 0,
                ending: 0,
            }
        })
    }

    /// A feeder of `stream` starts: the stream waits for it from now on.
    pub(super) fn join(&mut self, stream: u64, feeder: u32) {
        let s = self.stream(stream);
        if s.feeders.len() <= feeder as usize {
            s.feeders.resize(feeder as usize + 1, Feeder::default());
        }
    }

    /// One feeder's chunk: its events, its watermark, and whether they came from the end
    /// of its input (`Finishing`: more such chunks follow; `Done`: the feeder is done)
    /// (the events then came from the end of input).
    pub(super) fn push(&mut self, (stream, feeder): (u64, u32), watermark: Ts, end: End, events: Vec<Event>) {
        let (ended, done) = (end != End::No, end == End::Done);
        self.join(stream, feeder);
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let f = &mut s.feeders[feeder as usize];
        let floor = f.mark;
        for event in events {
            let (ts, flow) = match event {
                Event::Alert { at, flow, .. } => (at, flow),
                Event::Flow { at, flow, .. } if self.flows => (at, flow),
                Event::Flow { .. } => {
                    self.out.push(Written::Event(event));
                    continue;
                }
            };
            s.arrivals += 1;
            let at = if ended { ts } else { ts.max(floor) };
            s.ending += usize::from(ended);
            s.pending.push(Reverse(Pending { rank: (ended, at, flow.id, s.arrivals), event }));
        }
        f.mark = f.mark.max(watermark);
        f.ended |= done;
        // The end of input's events wait for every feeder's, and are bounded by the flow
        // tables (one flow event and a finding or two per flow still open): only the
        // others count against the buffer's bound, and they leave first.
        while s.pending.len() - s.ending > MAX_PENDING {
            if let Some(Reverse(p)) = s.pending.pop() {
                self.overflow += 1;
                s.limiter.push(p.rank.1, p.event);
            }
        }
        let open = s.feeders.iter().filter(|f| !f.ended).map(|f| f.mark).min();
        match open {
            Some(frontier) => {
                while s.pending.peek().is_some_and(|Reverse(p)| !p.rank.0 && p.rank.1 < frontier) {
                    if let Some(Reverse(p)) = s.pending.pop() {
                        s.limiter.push(p.rank.1, p.event);
                    }
                }
                s.limiter.advance(frontier);
                self.out.extend(s.limiter.drain());
            }
            None => self.end(stream),
        }
    }

    /// Every feeder of `stream` ended: release all, close every window.
    fn end(&mut self, stream: u64) {
        let Some(mut s) = self.streams.remove(&stream) else {
            return;
        };
        let end = s.feeders.iter().map(|f| f.mark).max().unwrap_or_default();
        while let Some(Reverse(p)) = s.pending.pop() {
            let at = if p.rank.0 { end } else { p.rank.1 };
            s.limiter.push(at, p.event);
        }
        s.limiter.finish();
        self.out.extend(s.limiter.drain());
        self.done.merge(&s.limiter.counts);
    }

    /// What was released since the last call, in order.
    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, Written> {
        self.out.drain(..)
    }

    /// What every limiter counted so far, finished streams and running ones.
    pub(super) fn counts(&self) -> bound::Counts {
        let mut total = self.done.clone();
        for s in self.streams.values() {
            total.merge(&s.limiter.counts);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::decode::Tuple;
    use crate::flow::{Confidence, Direction, Flow, FlowKey};
    use crate::policy::{builtin, Judgement, Role, Verdict};

    fn alert(engine: &Engine, source: u32, ts: u64) -> Event {
        let rule = engine.policy.rules.iter().position(|r| r.id == "external-to-mailbox").expect("rule");
        let orig = Tuple {
            src: IpAddr::V4(Ipv4Addr::from(0x6440_0000 + source)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 10, 1, 11)),
            sport: 1024,
            dport: 3389,
            proto: 6,
        };
        let judgement = Judgement { rule: Some(rule), orig_role: Role::External, resp_role: Role::Mailbox };
        let flow = Flow::new(
            FlowKey::of(&orig),
            orig,
            Direction::Observed,
            ts,
            Ts(ts),
            Default::default(),
            judgement,
        );
        Event::Alert {
            ts: Ts(ts),
            at: Ts(ts),
            flow,
            tunnel: None,
            verdict: Verdict::Violation,
            rule,
            evidence: None,
            confidence: Confidence::High,
            detail: None,
            source: None,
            exception: None,
        }
    }

    fn released(order: &mut Order<'_>) -> Vec<u64> {
        order
            .drain()
            .map(|w| match w {
                Written::Event(Event::Alert { ts, .. }) => ts.0,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn alerts_leave_in_time_order_once_every_feeder_has_passed_them() {
        let engine = Engine::new(
            Arc::new(builtin::policy().expect("policy")),
            Arc::new(builtin::topology().expect("topology")),
            10,
        );
        let mut order = Order::new(&engine, bound::Settings::default(), false);
        order.join(1, 0);
        order.join(1, 1);
        order.push((1, 0), Ts(30), End::No, vec![alert(&engine, 1, 10), alert(&engine, 2, 30)]);
        assert!(released(&mut order).is_empty(), "feeder 1 may still send an earlier alert");
        order.push((1, 1), Ts(25), End::No, vec![alert(&engine, 3, 20)]);
        assert_eq!(released(&mut order), [10, 20]);
        // The end of input: an alert with an earlier time, ordered after all others.
        order.push((1, 1), Ts(26), End::Done, vec![alert(&engine, 4, 5)]);
        assert!(released(&mut order).is_empty(), "30 is not before feeder 0's watermark");
        order.push((1, 0), Ts(40), End::Done, Vec::new());
        assert_eq!(released(&mut order), [30, 5]);
        assert_eq!(order.overflow, 0);
    }
}
