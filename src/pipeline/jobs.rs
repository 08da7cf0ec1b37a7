//! Files analysed as captures of their own, one job thread per [`Monitor::gauges`].
//!
//! A job takes the next file in argument order, reads it, decodes each frame and feeds
//! its own flow table in the same loop: a file is one job's from start to end, so its
//! packets stay in capture order without a router or channels, and all cores stay busy
//! as long as files remain. Each file also gets its own cross-flow tables
//! ([`Engine::split`]), so its findings are those it would have alone, whichever files
//! run beside it. Events go to the one writer thread.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, Builder};
use std::time::{Duration, Instant};

use super::worker::Worker;
use super::writer::{self, Events, Writer};
use super::{join_all, FileReader, Outputs, Progress, Settings, Tally};
use crate::capture::filter::Filter;
use crate::capture::{CaptureError, FrameSource, Next};
use crate::counters::{Counter, Counters};
use crate::flow::{self, Tracker};
use crate::policy::Engine;
use crate::telemetry::{self, Busy, Gauges, Latency, Monitor, Reading, RunRecord};
use crate::time::Ts;

/// A job hands on its events every this many frames (what a worker handles in one
/// batch), so the writer gets chunks rather than single lines.
const BATCH_FRAMES: u64 = 256;

/// Progress and the stop request are looked at every this many frames.
const CHECK_FRAMES: u64 = 4096;

/// Analyses `files` until they are all read or `monitor.stop` is set. A file that
/// cannot be opened, or is damaged, is reported in [`RunRecord::errors`] (in argument
/// order); the other files are still analysed.
pub(super) fn run(
    engine: &Arc<Engine>,
    files: &[PathBuf],
    settings: &Settings,
    outputs: Outputs<'_>,
    monitor: &Monitor,
    progress: Progress<'_>,
) -> io::Result<RunRecord> {
    let started = Instant::now();
    let jobs = monitor.gauges.len();
    let shared = Jobs {
        engine,
        files,
        next: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        progress,
        stop: &monitor.stop,
        reader: settings.file_reader,
        bpf: settings.bpf.as_deref(),
        filtered: AtomicU64::new(0),
        flows: settings.flows_share(jobs, outputs.observer.as_deref()),
        jobs,
        span: super::Span::new(),
    };
    let out = outputs.sink.open()?;
    let origin = settings.origin(files);
    thread::scope(|scope| -> io::Result<RunRecord> {
        let writer = Writer::of_run((outputs, out), settings, (monitor, engine, &origin), false);
        let (events, writer) = writer::spawn(scope, writer)?;
        let mut handles = Vec::with_capacity(jobs);
        for (i, gauges) in monitor.gauges.iter().enumerate() {
            let (shared, events) = (&shared, events.clone());
            handles.push(
                Builder::new()
                    .name(format!("exwatch-job-{i}"))
                    .spawn_scoped(scope, move || shared.job(gauges, events))?,
            );
        }
        let (Tally { mut counters, latency, busy: work }, errors) = join_all(handles, engine)?;
        counters[Counter::BpfFiltered] += shared.filtered.load(Ordering::Relaxed);
        telemetry::fill_engine(&mut counters, engine);
        if settings.eve_flows {
            events.send_lines(super::final_stats(engine, &origin, &counters, &shared.span));
        }
        drop(events);
        let written = writer::join(writer)?;
        counters.merge(&written.bounded);
        let mut errors: Vec<_> = errors.into_iter().flatten().collect();
        errors.sort_by_key(|&(index, _)| index);
        Ok(RunRecord {
            counters,
            latency,
            errors: errors.into_iter().map(|(_, err)| err).collect(),
            wall: started.elapsed(),
            workers: jobs,
            file_bytes: shared.bytes.load(Ordering::Relaxed),
            busy: Busy { read: Duration::ZERO, work, write: written.busy, read_decoded: 0 },
            reading: Reading::Independent { files: files.len(), jobs },
            sockets: Vec::new(),
            eve_closed: written.closed,
        })
    })
}

/// What the jobs share.
struct Jobs<'a> {
    engine: &'a Arc<Engine>,
    files: &'a [PathBuf],
    /// The index in `files` of the next file to take.
    next: AtomicUsize,
    /// Bytes read by all jobs (record headers included), for progress.
    bytes: AtomicU64,
    progress: Progress<'a>,
    stop: &'a AtomicBool,
    reader: FileReader,
    /// `analyze --bpf`, and the frames it left out.
    bpf: Option<&'a str>,
    filtered: AtomicU64,
    /// One job's share of the flow table.
    flows: flow::Settings,
    /// The capture time read, for the run's final `stats` event.
    span: super::Span,
    jobs: usize,
}

/// Errors by index in the file list, so they are reported in argument order.
type Errors = Vec<(usize, CaptureError)>;

impl Jobs<'_> {
    /// One job: files from the shared queue until it is empty or a stop is requested.
    fn job(&self, gauges: &Gauges, events: Events) -> (Tally, Errors) {
        let started = Instant::now();
        let mut worker: Option<Worker<'_>> = None;
        let mut errors = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = self.files.get(index) else {
                break;
            };
            if let Err(err) = self.file((index, path), &mut worker, gauges, &events) {
                errors.push((index, err));
            }
        }
        let tally = match worker {
            Some(worker) => worker.finish(),
            None => Tally {
                counters: Counters::for_policy(&self.engine.policy),
                latency: Latency::default(),
                busy: Duration::ZERO,
            },
        };
        (Tally { busy: started.elapsed(), ..tally }, errors)
    }

    /// Analyses one file with a flow table and cross-flow tables of its own. Damage
    /// ends the file: every event found before it is kept.
    fn file<'g>(
        &self,
        (index, path): (usize, &Path),
        worker: &mut Option<Worker<'g>>,
        gauges: &'g Gauges,
        events: &Events,
    ) -> Result<(), CaptureError> {
        let mut source = self.reader.open(path)?;
        let engine = Arc::new(self.engine.split(self.jobs));
        let mut tracker = Tracker::new(Arc::clone(&engine), self.flows.clone());
        tracker.set_file(u16::try_from(index).unwrap_or(u16::MAX));
        let worker = match worker {
            Some(worker) => {
                worker.replace_tracker(tracker);
                worker
            }
            None => worker.insert(Worker::new(tracker, gauges, events.new_stream())),
        };
        let mut filter = self.bpf.map(Filter::new).transpose()?;
        let read = self.read(source.as_mut(), worker, filter.as_mut());
        let dropped = engine.smtp_senders_dropped.load(Ordering::Relaxed);
        self.engine.smtp_senders_dropped.fetch_add(dropped, Ordering::Relaxed);
        read
    }

    /// Read, decode, track: one frame at a time, in capture order.
    fn read(
        &self,
        source: &mut dyn FrameSource,
        worker: &mut Worker<'_>,
        mut filter: Option<&mut Filter>,
    ) -> Result<(), CaptureError> {
        let mut filtered = 0u64;
        let mut unreported = 0u64;
        let mut frames = 0u64;
        let (mut first, mut last) = (Ts(0), Ts(0));
        let outcome = loop {
            let frame = match source.next_frame() {
                Ok(Next::Frame(frame)) => frame,
                // Files are never idle; should one be, it is not waited on once stopped.
                Ok(Next::Idle) if !self.stop.load(Ordering::Relaxed) => continue,
                Ok(Next::Idle | Next::End) => break Ok(()),
                Err(err) => break Err(err),
            };
            unreported += 16 + frame.data.len() as u64;
            let passes = match filter.as_deref_mut() {
                Some(filter) => filter.matches(frame.link, frame.data),
                None => true,
            };
            if passes {
                if first == Ts(0) {
                    first = frame.ts;
                }
                last = last.max(frame.ts);
                worker.frame(frame.link, frame.ts, frame.wire_len, frame.data);
            } else {
                filtered += 1;
            }
            frames += 1;
            if frames % BATCH_FRAMES == 0 {
                worker.batch_done(None);
            }
            if frames % CHECK_FRAMES == 0 {
                self.report_progress(std::mem::take(&mut unreported));
                if self.stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
            }
        };
        worker.batch_done(None);
        self.filtered.fetch_add(filtered, Ordering::Relaxed);
        self.report_progress(unreported);
        self.span.note(first, last);
        outcome
    }

    fn report_progress(&self, bytes: u64) {
        (self.progress)(self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes);
    }
}
