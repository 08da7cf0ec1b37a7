//! The writer thread: formats events and writes them to the sink, so that neither a
//! worker's time nor its cache goes to formatting (an alert costs tens of thousands of
//! instructions to format).

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Builder, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::Observer;
use crate::flow::{Event, Tracker};
use crate::output::{eve, Sink};
use crate::policy::Engine;

/// Chunks of events that may wait for the writer.
const QUEUE_CHUNKS: usize = 64;

/// Buffered bytes before a write reaches the sink.
const BUFFER_BYTES: usize = 1 << 16;

/// What the writer thread is sent.
pub(super) enum Output {
    /// Events to format.
    Events(Vec<Event>),
    /// Lines formatted already (EVE `stats`).
    Lines(Vec<u8>),
}

/// Where workers and jobs send what they found.
#[derive(Clone)]
pub(super) struct Events(Sender<Output>);

impl Events {
    /// Sends the tracker's new events, if any, in one chunk.
    pub(super) fn send_from(&self, tracker: &mut Tracker) {
        let found: Vec<Event> = tracker.drain_events().collect();
        if !found.is_empty() {
            // A send fails only once the writer has stopped, which joining it reports.
            let _ = self.0.send(Output::Events(found));
        }
    }

    pub(super) fn send_lines(&self, lines: Vec<u8>) {
        let _ = self.0.send(Output::Lines(lines));
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
    /// Where the events were seen (EVE `host`, `in_iface`, `pcap_filename`).
    pub(super) origin: &'a eve::Origin,
}

/// Starts the writer; it ends when every [`Events`] handle is dropped, and its thread
/// returns the time it was busy.
pub(super) fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    writer: Writer<'scope>,
) -> io::Result<(Events, ScopedJoinHandle<'scope, io::Result<Duration>>)> {
    let (tx, rx) = bounded::<Output>(QUEUE_CHUNKS);
    let handle = Builder::new().name("exwatch-writer".into()).spawn_scoped(scope, move || writer.run(rx))?;
    Ok((Events(tx), handle))
}

impl Writer<'_> {
    /// Formats and writes events as they come, flushing whenever the queue runs dry so
    /// a live finding reaches the log at once; reopens the sink when asked (SIGHUP).
    /// The observer sees every event first.
    fn run(self, chunks: Receiver<Output>) -> io::Result<Duration> {
        let Writer { out, sink, reopen, engine, eve_flows, mut observer, origin } = self;
        let format = !matches!(sink, Sink::Off);
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, out);
        let mut lines = Vec::new();
        let mut busy = Duration::ZERO;
        for chunk in chunks.iter() {
            let started = Instant::now();
            if reopen.swap(false, Ordering::Relaxed) {
                out.flush()?;
                out = BufWriter::with_capacity(BUFFER_BYTES, sink.open()?);
            }
            match chunk {
                Output::Events(events) => {
                    lines.clear();
                    for event in &events {
                        if let Some(observer) = observer.as_deref_mut() {
                            observer.event(engine, event);
                        }
                        if format && (eve_flows || !matches!(event, Event::Flow { .. })) {
                            eve::write_event_from(&mut lines, (engine, origin), event, None);
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
        Ok(busy)
    }
}

/// Joins the writer, returning its busy time or the error that stopped it.
pub(super) fn join(handle: ScopedJoinHandle<'_, io::Result<Duration>>) -> io::Result<Duration> {
    handle.join().map_err(|_| io::Error::other("the writer thread panicked"))?
}
