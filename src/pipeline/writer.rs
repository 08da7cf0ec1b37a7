//! The writer thread: formats events and writes them to the sink, so that neither a
//! worker's time nor its cache goes to formatting (an alert costs tens of thousands of
//! instructions to format). With the alert bound on, alerts pass through the reorder
//! buffer and the bound (`order.rs`) first.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{Builder, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::order::Order;
use super::Observer;
use crate::decode::Ts;
use crate::flow::{Event, Tracker};
use crate::output::bound::{self, Written};
use crate::output::{eve, Sink};
use crate::policy::Engine;
use crate::telemetry::{Counter, Counters, Gauges};

/// Chunks of events that may wait for the writer.
const QUEUE_CHUNKS: usize = 64;

/// Buffered bytes before a write reaches the sink.
const BUFFER_BYTES: usize = 1 << 16;

/// A stream (what one reader feeds, or one file of several) and a feeder of it.
type Feed = (u64, u32);

/// What the writer thread is sent.
pub(super) enum Output {
    /// A feeder starts; sent before any of its events, so the stream waits for it.
    Join(Feed),
    /// A feeder's events since its last chunk, and its watermark (see `order.rs`);
    /// `ended`: its input is over and the events came from the end of input.
    Events { feed: Feed, watermark: Ts, ended: bool, events: Vec<Event> },
    /// Lines formatted already (EVE `stats`).
    Lines(Vec<u8>),
}

/// Where workers and jobs send what they found. A handle from [`spawn`] sends lines;
/// [`Events::join`] and [`Events::new_stream`] make handles that feed a stream.
#[derive(Clone)]
pub(super) struct Events {
    tx: Sender<Output>,
    /// Stream ids handed out.
    streams: Arc<AtomicU64>,
    /// This stream's id and the feeders it has.
    stream: u64,
    feeders: Arc<AtomicU32>,
    /// This handle's place in its stream, once it feeds one, and the watermark it sent.
    feeder: Option<u32>,
    sent: Ts,
}

impl Events {
    /// A new feeder of this handle's stream (a reader's workers share one stream).
    pub(super) fn join(&self) -> Events {
        let feeder = self.feeders.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Output::Join((self.stream, feeder)));
        Events { feeder: Some(feeder), sent: Ts(0), ..self.clone() }
    }

    /// The only feeder of a new stream (a file analysed on its own).
    pub(super) fn new_stream(&self) -> Events {
        let stream = self.streams.fetch_add(1, Ordering::Relaxed);
        let fresh = Events { stream, feeders: Arc::new(AtomicU32::new(0)), ..self.clone() };
        fresh.join()
    }

    /// Sends the tracker's new events, if any, in one chunk, with its watermark (also
    /// alone, when the watermark moved: that is what lets other workers' alerts out).
    pub(super) fn send_from(&mut self, tracker: &mut Tracker) {
        self.send(tracker, false);
    }

    /// Sends the events of the tracker's end of input, and says this feeder is done.
    pub(super) fn send_last(&mut self, tracker: &mut Tracker) {
        self.send(tracker, true);
    }

    fn send(&mut self, tracker: &mut Tracker, ended: bool) {
        let events: Vec<Event> = tracker.drain_events().collect();
        let watermark = tracker.now();
        if events.is_empty() && watermark <= self.sent && !ended {
            return;
        }
        self.sent = self.sent.max(watermark);
        // A send fails only once the writer has stopped, which joining it reports.
        // Only handles made by `join` or `new_stream` feed a stream; the pipeline gives
        // no other to a tracker.
        if let Some(feeder) = self.feeder {
            let _ = self.tx.send(Output::Events { feed: (self.stream, feeder), watermark, ended, events });
        }
    }

    pub(super) fn send_lines(&self, lines: Vec<u8>) {
        let _ = self.tx.send(Output::Lines(lines));
    }
}

/// What the writer needs besides its input.
pub(super) struct Writer<'a> {
    pub(super) out: Box<dyn Write + Send>,
    pub(super) sink: &'a Sink,
    pub(super) reopen: &'a AtomicBool,
    pub(super) engine: &'a Engine,
    /// Write `flow` events (otherwise only the observer sees them).
    pub(super) eve_flows: bool,
    pub(super) observer: Option<&'a mut (dyn Observer + Send + 'static)>,
    /// The alert bound; `None`: every alert is written.
    pub(super) bound: Option<bound::Settings>,
    /// Where the writer publishes what the bound counted, while it runs.
    pub(super) gauges: &'a Gauges,
}

/// What the writer thread returns: its busy time, and what the alert bound counted.
pub(super) type Done = (Duration, Counters);

/// Starts the writer; it ends when every [`Events`] handle is dropped, and its thread
/// returns the time it was busy and what the bound counted.
pub(super) fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    writer: Writer<'scope>,
) -> io::Result<(Events, ScopedJoinHandle<'scope, io::Result<Done>>)> {
    let (tx, rx) = bounded::<Output>(QUEUE_CHUNKS);
    let handle = Builder::new().name("exwatch-writer".into()).spawn_scoped(scope, move || writer.run(rx))?;
    let events = Events {
        tx,
        streams: Arc::new(AtomicU64::new(1)),
        stream: 0,
        feeders: Arc::new(AtomicU32::new(0)),
        feeder: None,
        sent: Ts(0),
    };
    Ok((events, handle))
}

impl Writer<'_> {
    /// Formats and writes events as they come, flushing whenever the queue runs dry so
    /// a live finding reaches the log at once; reopens the sink when asked (SIGHUP).
    /// The observer sees every event first, whatever the bound holds back.
    fn run(self, chunks: Receiver<Output>) -> io::Result<Done> {
        let Writer { out, sink, reopen, engine, eve_flows, mut observer, bound, gauges } = self;
        let format = !matches!(sink, Sink::Off);
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, out);
        let mut order = bound.map(|settings| Order::new(engine, settings));
        let mut lines = Vec::new();
        let mut busy = Duration::ZERO;
        let mut counted = 0;
        let write = |lines: &mut Vec<u8>, written: &Written| match written {
            Written::Event(event) if format && (eve_flows || !matches!(event, Event::Flow { .. })) => {
                eve::write_event(lines, engine, event, None)
            }
            Written::Event(_) => {}
            Written::Aggregate(aggregate) if format => eve::write_aggregate(lines, engine, aggregate),
            Written::Aggregate(_) => {}
        };
        for chunk in chunks.iter() {
            let started = Instant::now();
            if reopen.swap(false, Ordering::Relaxed) {
                out.flush()?;
                out = BufWriter::with_capacity(BUFFER_BYTES, sink.open()?);
            }
            match chunk {
                Output::Join(feed) => {
                    if let Some(order) = &mut order {
                        order.join(feed.0, feed.1);
                    }
                }
                Output::Events { feed, watermark, ended, events } => {
                    lines.clear();
                    if let Some(observer) = observer.as_deref_mut() {
                        for event in &events {
                            observer.event(engine, event);
                        }
                    }
                    match &mut order {
                        Some(order) => {
                            order.push(feed, watermark, ended, events);
                            for written in order.drain() {
                                write(&mut lines, &written);
                            }
                            let now = order.counts().held() + order.counts().aggregates + order.overflow;
                            if now != counted {
                                counted = now;
                                gauges.publish(&counters(engine, order), 0);
                            }
                        }
                        None => {
                            for event in events {
                                write(&mut lines, &Written::Event(event));
                            }
                        }
                    }
                    out.write_all(&lines)?;
                }
                Output::Lines(formatted) => out.write_all(&formatted)?,
            }
            if chunks.is_empty() {
                out.flush()?;
            }
            busy += started.elapsed();
        }
        out.flush()?;
        let counted = order.as_ref().map_or_else(|| Counters::for_engine(engine), |o| counters(engine, o));
        Ok((busy, counted))
    }
}

/// What the bound counted, as counters to merge with the workers'.
fn counters(engine: &Engine, order: &Order<'_>) -> Counters {
    let counts = order.counts();
    let mut c = Counters::for_engine(engine);
    c[Counter::AlertsAggregated] = counts.held();
    c[Counter::AggregateAlerts] = counts.aggregates;
    c[Counter::AggregationUntracked] = counts.untracked;
    c[Counter::ReorderOverflow] = order.overflow;
    for (stats, &n) in c.rules.iter_mut().zip(&counts.rules) {
        stats.aggregated = n;
    }
    for (total, &n) in c.evidence_aggregated.iter_mut().zip(&counts.evidence) {
        *total = n;
    }
    c
}

/// Joins the writer, returning its busy time and counters, or the error that stopped it.
pub(super) fn join(handle: ScopedJoinHandle<'_, io::Result<Done>>) -> io::Result<Done> {
    handle.join().map_err(|_| io::Error::other("the writer thread panicked"))?
}
