//! What a sensor's EVE lines became on their way to a broker (`--redis`): sent, waiting,
//! dropped, and the reconnections it took. The publisher thread counts; the metrics page
//! and the summary read. Every line the EVE log took is, at the end, either sent or
//! dropped: `sent + dropped + queued` is the lines offered.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The publisher's counters, shared with whoever reads them while it runs.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Lines the broker acknowledged.
    pub sent: AtomicU64,
    /// Lines waiting in the publisher's queue (a gauge).
    pub queued: AtomicU64,
    /// Lines dropped: the queue was full, or the end came before the broker took them.
    pub dropped: AtomicU64,
    /// Connections made again after one was lost.
    pub reconnects: AtomicU64,
}

/// [`Delivery`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub sent: u64,
    pub queued: u64,
    pub dropped: u64,
    pub reconnects: u64,
}

impl Delivery {
    pub fn counts(&self) -> DeliveryCounts {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        DeliveryCounts {
            sent: load(&self.sent),
            queued: load(&self.queued),
            dropped: load(&self.dropped),
            reconnects: load(&self.reconnects),
        }
    }
}

impl DeliveryCounts {
    /// The four series of the metrics page.
    pub fn write_metrics(&self, out: &mut String) {
        let series = [
            (
                "exwatch_redis_sent_total",
                "counter",
                "EVE lines the broker (--redis) acknowledged.",
                self.sent,
            ),
            ("exwatch_redis_queued", "gauge", "EVE lines waiting for the broker (--redis).", self.queued),
            (
                "exwatch_redis_dropped_total",
                "counter",
                "EVE lines not sent to the broker (--redis): its queue was full, or the run ended first.",
                self.dropped,
            ),
            (
                "exwatch_redis_reconnects_total",
                "counter",
                "Connections to the broker (--redis) made again after one was lost.",
                self.reconnects,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}
