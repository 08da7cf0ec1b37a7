//! Threads and channels: one capture thread, N workers, one writer.
//!
//! The capture thread copies frames into batches, one pending batch per worker, and
//! picks the worker by a symmetric hash of the frame's addresses
//! ([`decode::route_hash`]). Channels are bounded: offline, a full channel blocks the
//! reader (nothing is lost). Workers own their flow table outright and send formatted
//! event lines to the writer. Batches go back to the reader on a return channel, so the
//! steady state allocates nothing per frame.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::capture::{CaptureError, FrameSource, PcapFile};
use crate::decode::{self, LinkType, Ts};
use crate::flow::{self, Event, Tracker};
use crate::output::eve;
use crate::policy::Engine;
use crate::telemetry::{Counters, Latency, LATENCY_SAMPLE};

/// Settings of the pipeline's buffers.
#[derive(Clone, Debug)]
pub struct Options {
    /// Parser workers; each owns a flow table.
    pub workers: usize,
    /// Frames per batch sent to a worker.
    pub batch_frames: usize,
    /// Batches that may wait in each worker's channel.
    pub queue_batches: usize,
    /// Flow-table settings; `max_flows` is the total, split between workers.
    pub flows: flow::Settings,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: thread::available_parallelism().map_or(1, |n| n.get()),
            batch_frames: 256,
            queue_batches: 8,
            flows: flow::Settings::default(),
        }
    }
}

/// Frames of one link type, copied out of the capture buffer.
struct Batch {
    link: LinkType,
    data: Vec<u8>,
    frames: Vec<FrameMeta>,
}

#[derive(Clone, Copy)]
struct FrameMeta {
    ts: Ts,
    wire_len: u32,
    start: u32,
    len: u32,
}

/// Bytes of frame data a batch holds before it is sent, whatever its frame count.
const BATCH_BYTES: usize = 1 << 20;

impl Batch {
    fn new(link: LinkType, frames: usize) -> Batch {
        Batch { link, data: Vec::with_capacity(frames * 128), frames: Vec::with_capacity(frames) }
    }

    fn push(&mut self, ts: Ts, wire_len: u32, data: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(data);
        self.frames.push(FrameMeta { ts, wire_len, start, len: data.len() as u32 });
    }

    fn is_full(&self, frames: usize) -> bool {
        self.frames.len() >= frames || self.data.len() >= BATCH_BYTES
    }

    fn clear(&mut self, link: LinkType) {
        self.link = link;
        self.data.clear();
        self.frames.clear();
    }
}

/// What a run produced, beyond the events already written.
#[derive(Debug)]
pub struct Report {
    pub counters: Counters,
    pub latency: Latency,
    /// Files that could not be read, or were read only up to damage.
    pub errors: Vec<CaptureError>,
    pub wall: Duration,
    pub workers: usize,
    /// Bytes of capture files read (record headers included).
    pub file_bytes: u64,
}

/// Called by the reader after each batch with the bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Analyses capture files, writing events to `sink`.
pub fn run_files(
    engine: Arc<Engine>,
    files: &[PathBuf],
    options: &Options,
    sink: Box<dyn Write + Send>,
    progress: Progress<'_>,
) -> io::Result<Report> {
    let started = Instant::now();
    let workers = options.workers.max(1);
    let (event_tx, event_rx) = bounded::<Vec<u8>>(64);
    let writer =
        thread::Builder::new().name("exwatch-writer".into()).spawn(move || write_events(sink, event_rx))?;

    let (free_tx, free_rx) = bounded::<Batch>(workers * (options.queue_batches + 2));
    let mut senders = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    let mut tracker_settings = options.flows.clone();
    tracker_settings.max_flows = (options.flows.max_flows / workers).max(1);
    for i in 0..workers {
        let (tx, rx) = bounded::<Batch>(options.queue_batches);
        senders.push(tx);
        let tracker = Tracker::new(Arc::clone(&engine), tracker_settings.clone());
        let events = event_tx.clone();
        let free = free_tx.clone();
        let engine = Arc::clone(&engine);
        handles.push(
            thread::Builder::new()
                .name(format!("exwatch-worker-{i}"))
                .spawn(move || work(tracker, &engine, rx, free, events))?,
        );
    }
    drop(event_tx);
    drop(free_tx);

    let mut reader =
        Reader { senders, free: free_rx, batch_frames: options.batch_frames, pending: Vec::new() };
    let mut errors = Vec::new();
    let mut file_bytes = 0u64;
    for path in files {
        let outcome =
            PcapFile::open(path).and_then(|mut source| reader.read(&mut source, &mut file_bytes, progress));
        if let Err(err) = outcome {
            errors.push(err);
        }
    }
    reader.flush();
    drop(reader);

    let mut counters = Counters::new(engine.policy.rules.len());
    let mut latency = Latency::default();
    for handle in handles {
        let (c, l) = handle.join().map_err(|_| io::Error::other("a worker thread panicked"))?;
        counters.merge(&c);
        latency.merge(&l);
    }
    writer.join().map_err(|_| io::Error::other("the writer thread panicked"))??;
    Ok(Report { counters, latency, errors, wall: started.elapsed(), workers, file_bytes })
}

/// The capture side: batches frames per worker.
struct Reader {
    senders: Vec<Sender<Batch>>,
    free: Receiver<Batch>,
    batch_frames: usize,
    pending: Vec<Option<Batch>>,
}

impl Reader {
    fn read(
        &mut self,
        source: &mut dyn FrameSource,
        bytes: &mut u64,
        progress: Progress<'_>,
    ) -> Result<(), CaptureError> {
        let link = source.link_type();
        // Batches hold one link type: send what another file left pending.
        if self.pending.iter().flatten().any(|b| b.link != link) {
            self.flush();
        }
        if self.pending.is_empty() {
            self.pending = (0..self.senders.len()).map(|_| None).collect();
        }
        let workers = self.senders.len() as u64;
        let mut since_progress = 0u32;
        loop {
            let frame = match source.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(err) => {
                    progress(*bytes);
                    return Err(err);
                }
            };
            *bytes += 16 + frame.data.len() as u64;
            let worker = (decode::route_hash(link, frame.data) % workers) as usize;
            let free = &self.free;
            let batch = self.pending[worker].get_or_insert_with(|| match free.try_recv() {
                Ok(mut batch) => {
                    batch.clear(link);
                    batch
                }
                Err(_) => Batch::new(link, self.batch_frames),
            });
            batch.push(frame.ts, frame.wire_len, frame.data);
            if batch.is_full(self.batch_frames) {
                if let Some(batch) = self.pending[worker].take() {
                    // A send fails only if the worker is gone, which join reports.
                    let _ = self.senders[worker].send(batch);
                }
            }
            since_progress += 1;
            if since_progress == 4096 {
                since_progress = 0;
                progress(*bytes);
            }
        }
        progress(*bytes);
        Ok(())
    }

    fn flush(&mut self) {
        for (worker, slot) in self.pending.iter_mut().enumerate() {
            if let Some(batch) = slot.take() {
                let _ = self.senders[worker].send(batch);
            }
        }
    }
}

fn work(
    mut tracker: Tracker,
    engine: &Engine,
    batches: Receiver<Batch>,
    free: Sender<Batch>,
    events: Sender<Vec<u8>>,
) -> (Counters, Latency) {
    let mut latency = Latency::default();
    let mut seen = 0u64;
    for batch in batches {
        for meta in &batch.frames {
            let data = &batch.data[meta.start as usize..(meta.start + meta.len) as usize];
            tracker.counters.frames += 1;
            tracker.counters.frame_bytes += u64::from(meta.wire_len);
            seen += 1;
            if seen % LATENCY_SAMPLE == 0 {
                let t0 = Instant::now();
                let decoded = decode::decode(batch.link, meta.ts, meta.wire_len, data);
                let t1 = Instant::now();
                handle(&mut tracker, decoded);
                latency.decode.saturating_record((t1 - t0).as_nanos() as u64);
                latency.flow.saturating_record(t1.elapsed().as_nanos() as u64);
            } else {
                handle(&mut tracker, decode::decode(batch.link, meta.ts, meta.wire_len, data));
            }
        }
        let _ = free.try_send(batch);
        send_events(&mut tracker, engine, &events);
    }
    tracker.finish();
    send_events(&mut tracker, engine, &events);
    (tracker.counters.clone(), latency)
}

fn handle(tracker: &mut Tracker, decoded: Result<decode::Packet, decode::Skip>) {
    match decoded {
        Ok(packet) => {
            tracker.counters.decoded += 1;
            tracker.packet(&packet);
        }
        Err(skip) => tracker.counters.skipped[skip.index()] += 1,
    }
}

fn send_events(tracker: &mut Tracker, engine: &Engine, events: &Sender<Vec<u8>>) {
    let mut out = Vec::new();
    for event in tracker.drain_events() {
        match event {
            Event::Alert { ts, flow, verdict, rule, evidence } => {
                eve::write_alert(&mut out, engine, ts, &flow, verdict, rule, evidence)
            }
            Event::Flow { flow } => eve::write_flow(&mut out, &flow),
        }
    }
    if !out.is_empty() {
        let _ = events.send(out);
    }
}

fn write_events(sink: Box<dyn Write + Send>, chunks: Receiver<Vec<u8>>) -> io::Result<()> {
    let mut sink = io::BufWriter::with_capacity(1 << 16, sink);
    for chunk in chunks {
        sink.write_all(&chunk)?;
    }
    sink.flush()
}
