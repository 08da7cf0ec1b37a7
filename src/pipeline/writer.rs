//! The writer thread: formats events and writes them to the sink, so that neither a
//! worker's time nor its cache goes to formatting (an alert costs tens of thousands of
//! instructions to format). With the alert bound on, alerts pass through the reorder
//! buffer and the bound (`order.rs`) first.
//!
//! The log only ever gets whole lines. A closed pipe (`| head`) stops the run quietly.
//! Another write error ends an offline run; a live one goes on: the events that could
//! not be written are counted, the operator is told once, and writing resumes as soon
//! as it works again. A reopen that fails (SIGHUP) keeps the file that was open.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{Builder, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::order::{End, Order};
use super::Observer;
use crate::counters::{Counter, Counters};
use crate::flow::{Event, Tracker};
use crate::output::bound::{self, Written};
use crate::output::{eve, EveOut, Sink};
use crate::policy::Engine;
use crate::telemetry::{Gauges, Monitor, Notice};
use crate::time::Ts;

/// Chunks of events that may wait for the writer.
const QUEUE_CHUNKS: usize = 64;

/// Buffered bytes before a write reaches the sink.
const BUFFER_BYTES: usize = 1 << 16;

/// How long the writer waits for events before it looks at the reopen request.
const REOPEN_CHECK: Duration = Duration::from_millis(100);

/// A stream (what one reader feeds, or one file of several) and a feeder of it.
type Feed = (u64, u32);

/// What the writer thread is sent.
pub(super) enum Output {
    /// A feeder starts; sent before any of its events, so the stream waits for it.
    Join(Feed),
    /// A feeder's events since its last chunk, and its watermark (see `order.rs`);
    /// `end`: the events came from the end of input, and whether the feeder is done.
    Events { feed: Feed, watermark: Ts, end: End, events: Vec<Event> },
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
        self.send(tracker, End::No);
    }

    /// Sends a chunk of the events of the tracker's end of input; more follow.
    pub(super) fn send_finishing(&mut self, tracker: &mut Tracker) {
        self.send(tracker, End::Finishing);
    }

    /// Sends the events of the tracker's end of input, and says this feeder is done.
    pub(super) fn send_last(&mut self, tracker: &mut Tracker) {
        self.send(tracker, End::Done);
    }

    fn send(&mut self, tracker: &mut Tracker, end: End) {
        let events = tracker.take_events();
        let watermark = tracker.now();
        if events.is_empty() && watermark <= self.sent && end == End::No {
            return;
        }
        self.sent = self.sent.max(watermark);
        // A send fails only once the writer has stopped, which joining it reports.
        // Only handles made by `join` or `new_stream` feed a stream; the pipeline gives
        // no other to a tracker.
        if let Some(feeder) = self.feeder {
            let _ = self.tx.send(Output::Events { feed: (self.stream, feeder), watermark, end, events });
        }
    }

    /// How many chunks wait for the writer, read through a handle of its own.
    pub(super) fn depth(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let tx = self.tx.clone();
        move || tx.len()
    }

    pub(super) fn send_lines(&self, lines: Vec<u8>) {
        let _ = self.tx.send(Output::Lines(lines));
    }
}

/// What the writer needs besides its input.
pub(super) struct Writer<'a> {
    pub(super) out: EveOut,
    pub(super) sink: &'a Sink,
    /// Its `reopen` request (SIGHUP), its `stop` (set when the log is a closed pipe),
    /// its notices and the count of events that could not be written.
    pub(super) monitor: &'a Monitor,
    pub(super) engine: &'a Engine,
    /// Write `flow` events (otherwise only the observer sees them).
    pub(super) eve_flows: bool,
    pub(super) flows_in_scope: bool,
    /// On a write error, count the events lost and go on, trying again with the next
    /// ones (live: the capture and the verdicts must not stop because a disk is full),
    /// rather than end the run with the error (offline: the run can be done again).
    pub(super) keep_going: bool,
    pub(super) observer: Option<&'a mut (dyn Observer + Send + 'static)>,
    /// The alert bound; `None`: every alert is written.
    pub(super) bound: Option<bound::Settings>,
    /// Where the writer publishes what the bound counted, while it runs.
    pub(super) gauges: &'a Gauges,
    /// Where the events were seen (EVE `host`, `in_iface`, `pcap_filename`).
    pub(super) origin: &'a eve::Origin,
}

impl<'a> Writer<'a> {
    /// The writer of a run: its outputs, the pipeline's settings (flow events, the alert
    /// bound), and whether a write error lets the run go on (`keep_going`: live).
    pub(super) fn of_run(
        (outputs, out): (super::Outputs<'a>, EveOut),
        settings: &super::Settings,
        (monitor, engine, origin): (&'a Monitor, &'a Engine, &'a eve::Origin),
        keep_going: bool,
    ) -> Writer<'a> {
        Writer {
            out: out.with_tee(settings.publish.clone()),
            sink: outputs.sink,
            monitor,
            engine,
            eve_flows: settings.eve_flows,
            flows_in_scope: settings.flows_in_scope,
            keep_going,
            observer: outputs.observer,
            bound: settings.bound.clone(),
            gauges: &monitor.writer,
            origin,
        }
    }
}

/// What the writer thread returns.
pub(super) struct Finished {
    /// Time spent formatting and writing.
    pub(super) busy: Duration,
    /// The log was a pipe whose reader went away: the run was asked to stop.
    pub(super) closed: bool,
    /// What the alert bound counted, to merge with the workers' counters.
    pub(super) bounded: Counters,
}

/// Starts the writer; it ends when every [`Events`] handle is dropped, and its thread
/// returns what it did (see [`Finished`]).
pub(super) fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    writer: Writer<'scope>,
) -> io::Result<(Events, ScopedJoinHandle<'scope, io::Result<Finished>>)> {
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
    fn run(self, chunks: Receiver<Output>) -> io::Result<Finished> {
        let Writer {
            out,
            sink,
            monitor,
            engine,
            eve_flows,
            flows_in_scope,
            keep_going,
            mut observer,
            bound,
            gauges,
            origin,
        } = self;
        let format = !matches!(sink, Sink::Off);
        let mut log = Log {
            out,
            sink,
            monitor,
            keep_going,
            buf: Vec::with_capacity(BUFFER_BYTES),
            lost: None,
            cut_failed: false,
        };
        let mut order =
            bound.map(|settings| Order::new(engine, settings, format && eve_flows && flows_in_scope));
        let mut busy = Duration::ZERO;
        let mut closed = false;
        let mut counted = 0;
        let write = |lines: &mut Vec<u8>, written: &Written| match written {
            Written::Event(event) if format && (eve_flows || !matches!(event, Event::Flow { .. })) => {
                eve::write_event_from(lines, (engine, origin), event)
            }
            Written::Event(_) => {}
            Written::Aggregate(aggregate) if format => {
                eve::write_aggregate(lines, (engine, origin), aggregate)
            }
            Written::Aggregate(_) => {}
        };
        loop {
            // Waits are bounded so that a SIGHUP is acted on (and a failed reopen said)
            // at once, not when the next event comes.
            let chunk = match chunks.recv_timeout(REOPEN_CHECK) {
                Ok(chunk) => Some(chunk),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let started = Instant::now();
            if closed {
                // Drain, so that no worker blocks on a full queue before it sees the stop.
                continue;
            }
            let outcome = log.take(chunks.is_empty(), |buf| match chunk {
                None => {}
                Some(Output::Join(feed)) => {
                    if let Some(order) = &mut order {
                        order.join(feed.0, feed.1);
                    }
                }
                Some(Output::Events { feed, watermark, end, mut events }) => {
                    if let Some(observer) = observer.as_deref_mut() {
                        for event in &events {
                            observer.event(engine, event);
                        }
                    }
                    if !(format && eve_flows) {
                        // Flow events the log does not take were the observer's only: they
                        // need no ordering.
                        events.retain(|event| matches!(event, Event::Alert { .. }));
                    } else if flows_in_scope {
                        events.retain(|event| match event {
                            Event::Flow { flow, .. } => eve::in_scope(engine, flow),
                            Event::Alert { .. } => true,
                        });
                    }
                    match &mut order {
                        Some(order) => {
                            order.push(feed, watermark, end, events);
                            for written in order.drain() {
                                write(buf, &written);
                            }
                            let c = order.counts();
                            let now = c.held() + c.aggregates + c.flows_held + order.overflow;
                            if now != counted {
                                counted = now;
                                gauges.publish(&counters(engine, order), 0);
                            }
                        }
                        None => {
                            for event in events {
                                write(buf, &Written::Event(event));
                            }
                        }
                    }
                }
                Some(Output::Lines(formatted)) => buf.extend_from_slice(&formatted),
            });
            match outcome {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    closed = true;
                    monitor.stop.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    // The reader stops too: offline, nothing more would be written.
                    monitor.stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            busy += started.elapsed();
        }
        match log.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => closed = true,
            other => other?,
        }
        let bounded =
            order.as_ref().map_or_else(|| Counters::for_policy(&engine.policy), |o| counters(engine, o));
        Ok(Finished { busy, closed, bounded })
    }
}

/// What the bound counted, as counters to merge with the workers'.
fn counters(engine: &Engine, order: &Order<'_>) -> Counters {
    let counts = order.counts();
    let mut c = Counters::for_policy(&engine.policy);
    c[Counter::AlertsAggregated] = counts.held();
    c[Counter::AggregateAlerts] = counts.aggregates;
    c[Counter::AggregationUntracked] = counts.untracked;
    c[Counter::ReorderOverflow] = order.overflow;
    c[Counter::FlowEventsAggregated] = counts.flows_held;
    c[Counter::FlowAggregates] = counts.flow_aggregates;
    for (stats, &n) in c.rules.iter_mut().zip(&counts.rules) {
        stats.aggregated = n;
    }
    for (total, &n) in c.evidence_aggregated.iter_mut().zip(&counts.evidence) {
        *total = n;
    }
    c
}

/// The EVE log as the writer keeps it: whole lines buffered, written, and accounted for.
struct Log<'a> {
    out: EveOut,
    sink: &'a Sink,
    monitor: &'a Monitor,
    keep_going: bool,
    /// Formatted lines not written yet; always ends with a whole line.
    buf: Vec<u8>,
    /// Since writing failed: the events lost so far.
    lost: Option<u64>,
    /// A line that could not be finished could not be cut off either: the next write
    /// starts with a newline, so that it ends there and the next line is whole.
    cut_failed: bool,
}

impl Log<'_> {
    /// Reopens first if asked, then lets `fill` add whole lines, and writes when the
    /// queue is `drained` or the buffer is full.
    fn take(&mut self, drained: bool, fill: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.monitor.reopen.swap(false, Ordering::Relaxed) {
            self.flush()?;
            self.reopen();
        }
        fill(&mut self.buf);
        if drained || self.buf.len() >= BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered lines. On an error, what was written of a line that could
    /// not be finished is cut off, so the log never keeps half a line; then, unless the
    /// run keeps going, the error is returned; if it does, the lines not written are
    /// counted as lost, and the next flush tries again.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // The newline that ends a half line left behind is not an event.
        let prefix = usize::from(self.cut_failed);
        if self.cut_failed {
            self.buf.insert(0, b'\n');
        }
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match self.out.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let error = match result {
            Ok(()) => {
                let lines = memchr::memchr_iter(b'\n', &self.buf[prefix..]).count() as u64;
                self.monitor.written.fetch_add(lines, Ordering::Relaxed);
                self.buf.clear();
                self.cut_failed = false;
                if let Some(lost) = self.lost.take() {
                    self.notify(Notice::WriteResumed { log: self.sink.to_string(), lost });
                }
                return Ok(());
            }
            Err(e) => e,
        };
        let whole = self.buf[..done].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if done > whole {
            self.cut_failed = self.out.cut((done - whole) as u64).is_err();
        } else if whole > 0 {
            self.cut_failed = false;
        }
        if !self.keep_going || error.kind() == io::ErrorKind::BrokenPipe {
            return Err(error);
        }
        let kept = memchr::memchr_iter(b'\n', self.buf.get(prefix..whole).unwrap_or_default()).count() as u64;
        self.monitor.written.fetch_add(kept, Ordering::Relaxed);
        let lost = self.buf[whole.max(prefix)..].iter().filter(|&&b| b == b'\n').count() as u64;
        self.buf.clear();
        self.monitor.unwritten.fetch_add(lost, Ordering::Relaxed);
        match &mut self.lost {
            Some(total) => *total += lost,
            None => {
                self.lost = Some(lost);
                self.notify(Notice::WriteFailed { log: self.sink.to_string(), error });
            }
        }
        Ok(())
    }

    /// Opens the sink anew (after log rotation); when that fails, says so at once and
    /// goes on writing to the file that was open.
    fn reopen(&mut self) {
        match self.sink.open() {
            Ok(out) => self.out = out.with_tee(self.out.take_tee()),
            Err(error) => self.notify(Notice::ReopenFailed { log: self.sink.to_string(), error }),
        }
    }

    fn notify(&self, notice: Notice) {
        (self.monitor.notify)(&notice);
    }
}

/// Joins the writer, returning what it did or the error that stopped it.
pub(super) fn join(handle: ScopedJoinHandle<'_, io::Result<Finished>>) -> io::Result<Finished> {
    handle.join().map_err(|_| io::Error::other("the writer thread panicked"))?
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::policy::builtin;

    fn monitor() -> (Monitor, Arc<Mutex<Vec<String>>>) {
        let policy = Arc::new(builtin::policy().expect("policy"));
        let engine = Engine::new(policy, Arc::new(builtin::topology().expect("topology")), 10);
        let mut monitor = Monitor::new(&engine, 1);
        let said = Arc::new(Mutex::new(Vec::new()));
        let notices = Arc::clone(&said);
        monitor.notify = Box::new(move |n| notices.lock().expect("notices").push(n.to_string()));
        (monitor, said)
    }

    /// A device that is always full: every line is counted as lost, the operator is told
    /// once, and told again, with the total, when writing works again.
    #[test]
    fn lines_that_cannot_be_written_are_counted_and_said_once() {
        let (monitor, said) = monitor();
        let full = Sink::at(std::path::Path::new("/dev/full"), true);
        let mut log = Log {
            out: full.open().expect("open /dev/full"),
            sink: &full,
            monitor: &monitor,
            keep_going: true,
            buf: Vec::new(),
            lost: None,
            cut_failed: false,
        };
        log.buf.extend_from_slice(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
        log.flush().expect("a live log keeps going");
        log.buf.extend_from_slice(b"{\"a\":4}\n{\"a\":5}\n");
        log.flush().expect("a live log keeps going");
        assert_eq!(monitor.unwritten.load(Ordering::Relaxed), 5);
        assert_eq!(monitor.written.load(Ordering::Relaxed), 0, "nothing reached /dev/full");
        assert_eq!(said.lock().expect("notices").len(), 1, "{:?}", said.lock());
        assert!(said.lock().expect("notices")[0].contains("/dev/full: cannot write the EVE log"));

        let dir = tempfile::tempdir().expect("temp dir");
        let room = Sink::at(&dir.path().join("eve.json"), true);
        log.out = room.open().expect("open a file");
        log.buf.extend_from_slice(b"{\"a\":6}\n{\"a\":7}\n");
        log.flush().expect("written");
        assert_eq!(monitor.unwritten.load(Ordering::Relaxed), 5);
        assert_eq!(monitor.written.load(Ordering::Relaxed), 2, "events written, for the SIEM's count");
        let notices = said.lock().expect("notices");
        assert_eq!(notices.len(), 2);
        assert!(
            notices[1].contains("writing the EVE log again; 5 event(s) could not be written"),
            "{notices:?}"
        );
        let written = std::fs::read(dir.path().join("eve.json")).expect("read");
        assert_eq!(written, b"{\"a\":6}\n{\"a\":7}\n");
    }

    /// Offline, the error is returned (the run ends with it) and nothing is counted.
    #[test]
    fn offline_a_write_error_is_returned() {
        let (monitor, said) = monitor();
        let full = Sink::at(std::path::Path::new("/dev/full"), false);
        let mut log = Log {
            out: full.open().expect("open /dev/full"),
            sink: &full,
            monitor: &monitor,
            keep_going: false,
            buf: b"{}\n".to_vec(),
            lost: None,
            cut_failed: false,
        };
        let error = log.flush().expect_err("the error");
        assert_eq!(error.raw_os_error(), Some(nix::libc::ENOSPC));
        assert_eq!(monitor.unwritten.load(Ordering::Relaxed), 0);
        assert!(said.lock().expect("notices").is_empty());
    }
}
