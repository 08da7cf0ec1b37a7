//! `exwatch collect`: many sensors' events, read from a Redis stream with a consumer
//! group, appended to one EVE file per sensor, and the compliance report of everything
//! collected kept current (specification, section 10).
//!
//! ```text
//!  Redis stream ──XREADGROUP──► [one batch] ──► DIR/<host>/eve.json (append, flush, fsync) ──► XACK
//!   (sensors XADD)   (reader thread)                └────► report::Builder ──(every --every, and at exit)──► F.html, F.json
//!                                                                                  (write, fsync, rename)
//! ```
//!
//! An entry is acknowledged only once its line is on disk, so a collector killed at any
//! moment loses nothing: on start it reads its own pending entries first, and those it
//! finds at the end of their sensors' files (written, not acknowledged) it acknowledges
//! without writing them again, so nothing is written or counted twice. Several
//! collectors in one group share the stream. A list (`--redis-mode list`) is read the
//! same way, through a processing list of the consumer's (`list.rs`). The
//! report is built from the events as they come ([`report::Builder`]); the files are
//! read once, when a collector starts on a directory that has some, never again. Its
//! memory is the builder's, bounded by what the report shows.
//!
//! This module reads, writes and aggregates; it never judges a flow: the verdicts come
//! in with the events.

mod files;
mod list;
pub mod metrics;
mod reader;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::output::redis::{Mode, Target};
use crate::policy::{Policy, Topology};
use crate::report::{self, eve_input, Builder, Meta, Record};
use crate::time::Ts;

pub use files::Files;
use reader::{Batch, Id};

/// The ends of the sensors' files, as [`files::written_tails`] finds them.
type Tails = std::collections::HashSet<(usize, u64)>;

/// Entries read at a time.
pub const BATCH: usize = 10_000;

/// How long a read waits for new entries before the collector looks at its signals and
/// its report's period.
pub(crate) const BLOCK: Duration = Duration::from_millis(200);

/// What `collect` is told.
#[derive(Clone, Debug)]
pub struct Settings {
    pub target: Target,
    /// The stream (or, in list mode, the list).
    pub key: String,
    /// Stream: a consumer group; list: moved to a processing list of this consumer's.
    pub mode: Mode,
    pub group: String,
    /// This collector's name in the group; two collectors must not share one.
    pub consumer: String,
    /// Where `<host>/eve.json` files go.
    pub out: PathBuf,
    pub report_html: Option<PathBuf>,
    pub report_json: Option<PathBuf>,
    /// How often the report is rewritten (and at exit).
    pub every: Duration,
    /// Entries per read.
    pub batch: usize,
    /// `--since`/`--until`: the report counts only the flows that started in it (and
    /// the findings on them); the files keep every event.
    pub window: Option<(Ts, Ts)>,
}

/// Set by signals: stop (SIGTERM, SIGINT) and reopen the files (SIGHUP).
#[derive(Clone, Default)]
pub struct Control {
    pub stop: Arc<AtomicBool>,
    pub reopen: Arc<AtomicBool>,
}

/// Why the collector stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Redis(#[from] crate::output::redis::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a collector did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Entries written to a sensor's file and acknowledged.
    pub events: u64,
    /// Of those, entries read again from this consumer's pending list on start (written
    /// before, perhaps, by a collector that was killed before acknowledging them).
    pub pending_reread: u64,
    /// Of those, entries whose line was found at the end of their sensor's file: written
    /// by a collector killed before it acknowledged them; acknowledged, not written again.
    pub already_written: u64,
    /// Entries with no `eve` field: acknowledged, written nowhere, counted.
    pub without_eve: u64,
    /// Lines that are not EVE events exwatch reads (written to the `_unreadable` sensor's file).
    pub unreadable: u64,
    /// Reports written.
    pub reports: u64,
}

/// What the metrics page reads while the collector runs.
pub struct Shared {
    pub counts: Mutex<Counts>,
    /// When each sensor's last event was written (Unix time, seconds).
    pub sensors: Mutex<std::collections::BTreeMap<String, f64>>,
    /// Each rule's status in the last report: (rule id, status code).
    pub rules: Mutex<Vec<(String, String)>>,
}

/// Collects until `control.stop` is set, then writes the report one last time.
pub fn run(
    settings: &Settings,
    (policy, topology, meta): (Arc<Policy>, Arc<Topology>, Meta),
    control: &Control,
    shared: &Shared,
) -> Result<Counts, Error> {
    let target = &settings.target;
    let mut conn = target.connect()?;
    if settings.mode == Mode::Stream {
        create_group(&mut conn, settings)?;
    }
    let reading = target.connect()?;
    let mut files = Files::new(&settings.out);
    let earlier = files::last_written(&settings.out);
    let dirs: Vec<String> = earlier.iter().map(|(dir, _)| dir.clone()).collect();
    // Before the files are read: a line a kill cut in half is cut off first.
    let mut written = Some(files::written_tails(&settings.out, &dirs, settings.batch)?);
    let mut builder = Builder::new(policy, topology, meta).with_window(settings.window);
    // A collector started again reads what it wrote before once, so its report stays
    // the report of everything collected; from then on it is fed as events come.
    let logs: Vec<PathBuf> = earlier.iter().map(|(dir, _)| settings.out.join(dir).join("eve.json")).collect();
    report::logs::read_logs(&logs, &mut builder).map_err(|e| Error::Io { path: e.path, source: e.source })?;
    if let Ok(mut sensors) = shared.sensors.lock() {
        // ...and knows its sensors from their files' last write.
        sensors.extend(earlier);
    }
    // One batch read ahead: the next comes from Redis while this one is written.
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(1);
    let progress = &list::Progress::default();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || match settings.mode {
            Mode::Stream => reader::run(reading, settings, control, &tx),
            Mode::List => list::run(reading, settings, control, &tx, progress),
        });
        let files = (&mut files, &mut builder, &mut written);
        let written = write_batches(settings, (&rx, &mut conn, progress), files, control, shared);
        // The reader stops when told, or when it finds no one to hand its batch to.
        control.stop.store(true, Ordering::Relaxed);
        drop(rx);
        let read = reader.join().unwrap_or(Ok(()));
        written.and(read)
    })?;
    write_report(settings, &mut builder, shared)?;
    let counts = shared.counts.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(counts)
}

/// The writing side: each batch the reader hands over written, synced, acknowledged
/// and fed to the report, which is rewritten on its period; until `control.stop`.
fn write_batches(
    settings: &Settings,
    (rx, conn, progress): (&Receiver<Batch>, &mut redis::Connection, &list::Progress),
    (files, builder, written): (&mut Files, &mut Builder, &mut Option<Tails>),
    control: &Control,
    shared: &Shared,
) -> Result<(), Error> {
    let target = &settings.target;
    let mut due = Instant::now() + settings.every;
    while !control.stop.load(Ordering::Relaxed) {
        if Instant::now() >= due {
            write_report(settings, builder, shared)?;
            due = Instant::now() + settings.every;
        }
        let batch = match rx.recv_timeout(BLOCK) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Asked just before writing: every entry read after the signal goes to the new files.
        if control.reopen.swap(false, Ordering::Relaxed) {
            files.reopen();
        }
        if !batch.reread {
            // Past the pending list: nothing read from now on was written before.
            *written = None;
        }
        store(&batch, files, builder, shared, written.as_ref())?;
        // On disk: acknowledged, on a connection found again if it was lost, until done
        // or told to stop (then they are pending, read again, and found on disk).
        loop {
            let acked = match settings.mode {
                Mode::Stream => ack(conn, settings, &batch.ids),
                Mode::List => list::trim(conn, settings, &batch),
            };
            match acked {
                Ok(()) => break,
                Err(e) if lost(&e) && !control.stop.load(Ordering::Relaxed) => {
                    reader::reconnect(target, conn)
                }
                Err(e) if lost(&e) => break,
                Err(e) => return Err(target.error(&e).into()),
            }
        }
        progress.trimmed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// A connection lost, timed out, or a call interrupted by a signal (SIGHUP, SIGTERM).
pub(crate) fn lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error()
}

/// The group, created at the start of the stream (so events published before the first
/// collector are collected too), and the stream with it if there is none yet.
fn create_group(conn: &mut redis::Connection, settings: &Settings) -> Result<(), Error> {
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&settings.key)
        .arg(&settings.group)
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(conn);
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(settings.target.error(&e).into()),
        _ => Ok(()),
    }
}

/// Writes the entries' lines to their sensors' files, flushes and syncs them, and feeds
/// the report: the batch may then be acknowledged.
/// Pending entries read again whose line is in `written` (the ends of the sensors'
/// files) are on disk and in the report already: they are only acknowledged.
fn store(
    batch: &Batch,
    files: &mut Files,
    builder: &mut Builder,
    shared: &Shared,
    written: Option<&Tails>,
) -> Result<(), Error> {
    let mut counts = Counts::default();
    let mut seen: Vec<String> = Vec::new();
    // The last line's host and its directory: a batch holds runs of one sensor's lines.
    let mut last: Option<(Option<String>, String)> = None;
    for line in batch.lines() {
        let Some(line) = line else {
            counts.without_eve += 1;
            continue;
        };
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        counts.events += 1;
        counts.pending_reread += u64::from(batch.reread);
        if written.is_some_and(|tails| tails.contains(&files::line_key(line))) {
            counts.already_written += 1;
            continue;
        }
        let (host, record) = match eve_input::parse_line(line) {
            eve_input::Parsed::Record(record) => (record_host(&record).map(str::to_string), Some(record)),
            eve_input::Parsed::Ignored => (host_of(line), None),
            eve_input::Parsed::Unreadable => {
                counts.unreadable += 1;
                (Some(files::UNREADABLE.to_string()), None)
            }
        };
        let dir = match &last {
            Some((h, dir)) if *h == host => dir,
            _ => {
                let dir = files::dir_name(host.as_deref());
                if !seen.contains(&dir) {
                    seen.push(dir.clone());
                }
                &last.insert((host, dir)).1
            }
        };
        files.append(dir, line)?;
        if let Some(record) = record {
            builder.record(record);
        }
    }
    files.sync()?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    if let Ok(mut sensors) = shared.sensors.lock() {
        for dir in seen {
            sensors.insert(dir, now);
        }
    }
    if let Ok(mut total) = shared.counts.lock() {
        total.events += counts.events;
        total.pending_reread += counts.pending_reread;
        total.already_written += counts.already_written;
        total.without_eve += counts.without_eve;
        total.unreadable += counts.unreadable;
    }
    Ok(())
}

fn record_host(record: &Record) -> Option<&str> {
    match record {
        Record::Flow(f) => f.ends.host.as_deref(),
        Record::Alert(a) => a.ends.host.as_deref(),
        Record::Stats(s) => s.host.as_deref(),
    }
}

/// The `host` of an EVE line the report does not read.
fn host_of(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Host {
        host: Option<String>,
    }
    serde_json::from_slice::<Host>(line).ok().and_then(|h| h.host)
}

/// One `XACK` with every id of the batch.
fn ack(conn: &mut redis::Connection, settings: &Settings, ids: &[Id]) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("XACK");
    cmd.arg(&settings.key).arg(&settings.group);
    for (ms, seq) in ids {
        cmd.arg(format!("{ms}-{seq}"));
    }
    cmd.query::<()>(conn)
}

/// Writes the report of everything collected so far, in each format asked for, and
/// gives the metrics page its rules' statuses.
fn write_report(settings: &Settings, builder: &mut Builder, shared: &Shared) -> Result<(), Error> {
    let built = builder.snapshot();
    if let Some(path) = &settings.report_html {
        files::replace(path, report::html::render(&built).as_bytes())?;
    }
    if let Some(path) = &settings.report_json {
        files::replace(path, report::json::render(&built).as_bytes())?;
    }
    if let Ok(mut rules) = shared.rules.lock() {
        *rules = metrics::rule_statuses(&built);
    }
    if let Ok(mut counts) = shared.counts.lock() {
        counts.reports += 1;
    }
    Ok(())
}

impl Shared {
    pub fn new() -> Shared {
        Shared { counts: Mutex::default(), sensors: Mutex::default(), rules: Mutex::default() }
    }
}

impl Default for Shared {
    fn default() -> Shared {
        Shared::new()
    }
}

/// A period as `--every` takes it: seconds (`90`), or a number with `s`, `m` or `h`
/// (`5m`). The error repeats the text and says what is expected.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text}: a number of seconds, or a number with s, m or h (5m)");
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !(value.is_finite() && value > 0.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(parse_period("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_period("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_period("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_period("5d").is_err());
        assert!(parse_period("0").is_err());
        assert!(parse_period("m").is_err());
    }
}
