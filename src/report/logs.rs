//! EVE log files in: any number of them read side by side, in chunks of whole lines,
//! hashed (SHA-256) as they are read, parsed ([`super::eve_input`]) and merged by event
//! time into the [`Builder`]. Logs compressed with gzip or zstd (as logrotate leaves
//! them) are known by their first bytes, as captures are ([`crate::capture::compressed`]),
//! and decompressed as they are read; the SHA-256 is of the file's own bytes. A log that
//! stops making sense part way (a truncated archive) is read up to there and listed as
//! damaged.
//!
//! Merging matters for the dedup of flows seen by several sensors: the copies of one
//! flow sit at about the same time in each sensor's log, so reading the logs side by
//! side brings them together within the builder's dedup window, whatever the number or
//! size of the files.
//!
//! ```text
//!  file 0 ─► reader thread (read, hash) ─► chunks ─┐              ┌─► batches of file 0, in order ─┐
//!  file 1 ─► reader thread (read, hash) ─► chunks ─┼─► parsers ───┼─► batches of file 1, in order ─┼─► merge ─► Builder
//!  ...                                             ┘  (a pool)    └─► ...                         ─┘
//! ```
//!
//! Up to [`MAX_READER_THREADS`] files get a reader thread each, and a pool of parser
//! threads (one per core) shares their chunks; each file is at most [`QUEUED_CHUNKS`]
//! chunks ahead of the merge. With more files, all are read and parsed on the merging
//! thread, so neither threads nor memory grow with the number of files. This module
//! reads and merges; it never judges or aggregates.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use std::hash::BuildHasher;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::{Digest, Sha256};

use super::digest::hex;
use super::eve_input::{parse_line, Parsed};
use super::model::{InputRef, InputStatus};
use super::records::{format_timestamp, Micros, Record};
use super::Builder;
use crate::capture::compressed;

/// Bytes read at a time; a chunk is cut after its last whole line.
const CHUNK: usize = 256 << 10;

/// Chunks a file may be ahead of the merge.
pub const QUEUED_CHUNKS: usize = 4;

/// Files read by a thread each at most.
pub const MAX_READER_THREADS: usize = 8;

/// Capture files listed per input at most.
pub const MAX_CAPTURES_LISTED: usize = 64;

/// Further capture files counted per input at most (a week of rotated captures is a
/// few thousand).
const MAX_CAPTURES_COUNTED: usize = 100_000;

/// An EVE file that could not be read, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The file's own bytes, hashed and counted as the decompressor (if any) reads them.
#[derive(Default)]
struct Raw {
    hash: Sha256,
    bytes: u64,
}

/// A reader that hashes and counts what passes through it into a shared [`Raw`].
struct Hashing {
    inner: Box<dyn Read + Send>,
    raw: Arc<Mutex<Raw>>,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // A poisoned lock means a reader thread panicked; the hash is then moot.
        if let Ok(mut raw) = self.raw.lock() {
            raw.hash.update(&buf[..n]);
            raw.bytes += n as u64;
        }
        Ok(n)
    }
}

/// What became of a file once read.
struct Done {
    path: PathBuf,
    bytes: u64,
    sha256: String,
    /// Where and why reading stopped before the end.
    damage: Option<String>,
}

/// One file, read in chunks of whole lines and hashed as it is read.
struct Reader {
    path: PathBuf,
    input: Box<dyn Read + Send>,
    raw: Arc<Mutex<Raw>>,
    compression: Option<compressed::Compression>,
    /// Bytes of the (decompressed) stream read.
    read: u64,
    damage: Option<String>,
    /// The start of a line the last chunk cut off.
    rest: Vec<u8>,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, ReadError> {
        let fail = |source| ReadError { path: path.to_path_buf(), source };
        let raw = Arc::new(Mutex::new(Raw::default()));
        let file = compressed::open_raw(path).map_err(fail)?;
        let hashing: Box<dyn Read + Send> = Box::new(Hashing { inner: file, raw: Arc::clone(&raw) });
        let input = compressed::decompressed(hashing).map_err(fail)?;
        Ok(Reader::new(path, input.bytes, raw, input.compression))
    }

    fn new(
        path: &Path,
        input: Box<dyn Read + Send>,
        raw: Arc<Mutex<Raw>>,
        compression: Option<compressed::Compression>,
    ) -> Reader {
        Reader { path: path.to_path_buf(), input, raw, compression, read: 0, damage: None, rest: Vec::new() }
    }

    /// The next chunk of whole lines (the last may lack its newline); `None` at the end,
    /// or where the stream stopped making sense (see [`Reader::damage`]).
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut buf = std::mem::take(&mut self.rest);
        let mut cut = memchr::memrchr(b'\n', &buf);
        while cut.is_none() {
            let start = buf.len();
            buf.resize(start + CHUNK, 0);
            let n = loop {
                match self.input.read(&mut buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let stream =
                            self.compression.map(|c| format!(" of the {}-decompressed stream", c.name()));
                        self.damage = Some(format!(
                            "unreadable after byte {}{}: {e}",
                            self.read,
                            stream.unwrap_or_default()
                        ));
                        break 0;
                    }
                }
            };
            buf.truncate(start + n);
            self.read += n as u64;
            if n == 0 {
                return (!buf.is_empty()).then_some(buf);
            }
            cut = memchr::memrchr(b'\n', &buf[start..]).map(|i| start + i);
        }
        if let Some(at) = cut {
            self.rest = buf.split_off(at + 1);
        }
        Some(buf)
    }

    fn digest(self) -> Done {
        drop(self.input);
        let raw = Arc::try_unwrap(self.raw).ok().and_then(|m| m.into_inner().ok()).unwrap_or_default();
        let (mut bytes, mut sha256) = (raw.bytes, hex(&raw.hash.finalize()));
        if self.damage.is_some() && !compressed::is_stdin(&self.path) {
            // Reading stopped early: the header names the whole file's bytes.
            if let Ok(input) = super::file_input(&self.path) {
                (bytes, sha256) = (input.bytes, input.sha256);
            }
        }
        Done { path: self.path, bytes, sha256, damage: self.damage }
    }
}

/// The records of one chunk, in file order.
struct Batch {
    records: Vec<(Micros, Record)>,
    unreadable: u64,
}

fn parse_chunk(chunk: &[u8]) -> Batch {
    let mut batch = Batch { records: Vec::with_capacity(chunk.len() / 512), unreadable: 0 };
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', chunk).chain(std::iter::once(chunk.len()));
    for end in ends {
        let line = &chunk[start..end];
        start = end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line) {
            Parsed::Record(record) => {
                let ts = match &record {
                    Record::Flow(f) => f.end,
                    Record::Alert(a) => a.ts,
                    Record::Stats(s) => s.ts,
                };
                batch.records.push((ts, record));
            }
            Parsed::Ignored => {}
            Parsed::Unreadable => batch.unreadable += 1,
        }
    }
    batch
}

/// A chunk for the parser pool, and where its batch goes.
type Job = (Vec<u8>, Sender<Batch>);

/// Reads a file into the parser pool, in order; its size and digest once done.
fn read_into(mut reader: Reader, jobs: Sender<Job>, order: Sender<Receiver<Batch>>) -> Done {
    while let Some(chunk) = reader.chunk() {
        let (tx, rx) = bounded(1);
        if order.send(rx).is_err() || jobs.send((chunk, tx)).is_err() {
            break;
        }
    }
    reader.digest()
}

/// What the header says of one file, gathered as its records are merged.
#[derive(Default)]
struct Seen {
    events: u64,
    flows: u64,
    packets: u64,
    unreadable: u64,
    sensors: BTreeSet<String>,
    captures: BTreeSet<String>,
    more_captures: BTreeSet<u64>,
    first: Option<Micros>,
    last: Option<Micros>,
    judged_under: BTreeSet<super::JudgedUnder>,
}

impl Seen {
    fn note(&mut self, ts: Micros, record: &Record) {
        let (host, capture) = match record {
            Record::Flow(f) => (f.ends.host.as_deref(), f.ends.pcap_filename.as_deref()),
            Record::Alert(a) => (a.ends.host.as_deref(), a.ends.pcap_filename.as_deref()),
            Record::Stats(s) => (s.host.as_deref(), None),
        };
        match record {
            Record::Flow(f) => {
                self.flows += f.flows;
                self.packets += f.pkts[0] + f.pkts[1];
            }
            Record::Stats(s) => {
                if let Some(judged) = s.judged_under.as_ref().filter(|j| !self.judged_under.contains(*j)) {
                    self.judged_under.insert(judged.clone());
                }
            }
            Record::Alert(_) => {}
        }
        if let Some(host) = host.filter(|h| !self.sensors.contains(*h)) {
            self.sensors.insert(host.to_string());
        }
        if let Some(capture) = capture.filter(|c| !self.captures.contains(*c)) {
            if self.captures.len() < MAX_CAPTURES_LISTED {
                self.captures.insert(capture.to_string());
            } else if self.more_captures.len() < MAX_CAPTURES_COUNTED {
                // Counted by a hash of the name: the names themselves are not needed.
                self.more_captures.insert(foldhash::fast::FixedState::with_seed(7).hash_one(capture));
            }
        }
        self.events += 1;
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
    }

    fn input(self, digest: Done) -> InputRef {
        let (status, detail) = match digest.damage {
            Some(damage) => (InputStatus::Damaged, Some(damage)),
            None if self.events == 0 && self.unreadable > 0 => {
                (InputStatus::NotACapture, Some("no line is an EVE event exwatch reads".to_string()))
            }
            None if self.unreadable > 0 => (
                InputStatus::Damaged,
                Some(format!("{} lines are not EVE events exwatch reads", self.unreadable)),
            ),
            None => (InputStatus::Read, None),
        };
        InputRef {
            file: digest.path.display().to_string(),
            bytes: digest.bytes,
            sha256: digest.sha256,
            status,
            detail,
            packets: self.packets,
            flows: self.flows,
            events: self.events,
            unreadable_lines: self.unreadable,
            sensors: self.sensors.into_iter().collect(),
            captures: self.captures.into_iter().collect(),
            more_captures: self.more_captures.len() as u64,
            first: self.first.map(format_timestamp),
            last: self.last.map(format_timestamp),
            judged_under: self.judged_under.into_iter().collect(),
        }
    }
}

/// Where one file's batches come from.
enum Source {
    /// The parser pool, in the order the reader thread read the chunks.
    Pool(Receiver<Receiver<Batch>>),
    /// Read and parsed here.
    Here(Box<Reader>),
}

/// One file's records as the merge sees them.
struct Stream {
    source: Source,
    batch: std::vec::IntoIter<(Micros, Record)>,
    head: Option<(Micros, Record)>,
    seen: Seen,
}

impl Stream {
    fn new(source: Source) -> Stream {
        let mut stream = Stream { source, batch: Vec::new().into_iter(), head: None, seen: Seen::default() };
        stream.advance();
        stream
    }

    /// Moves to the next record, waiting for the next batch when this one is used up.
    fn advance(&mut self) {
        loop {
            if let Some((ts, record)) = self.batch.next() {
                self.seen.note(ts, &record);
                self.head = Some((ts, record));
                return;
            }
            let batch = match &mut self.source {
                Source::Pool(order) => order.recv().ok().and_then(|next| next.recv().ok()),
                Source::Here(reader) => reader.chunk().map(|c| parse_chunk(&c)),
            };
            let Some(batch) = batch else {
                self.head = None;
                return;
            };
            self.seen.unreadable += batch.unreadable;
            self.batch = batch.records.into_iter();
        }
    }
}

/// Feeds every event of `paths` (`-` is standard input) to `builder`, the files read
/// side by side and merged by event time (ties in argument order); each file is then
/// listed as an input, in argument order.
pub fn read_logs(paths: &[PathBuf], builder: &mut Builder) -> Result<(), ReadError> {
    let mut readers = Vec::with_capacity(paths.len());
    for path in paths {
        readers.push(Reader::open(path)?);
    }
    let pooled = readers.len() <= MAX_READER_THREADS;
    let parsers = if pooled { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { 0 };
    std::thread::scope(|scope| {
        let (jobs, work) = bounded::<Job>(parsers.max(1) * 2);
        for _ in 0..parsers {
            let work = work.clone();
            scope.spawn(move || {
                for (chunk, done) in work {
                    // The merge may have stopped listening after an error: nothing to do.
                    let _ = done.send(parse_chunk(&chunk));
                }
            });
        }
        drop(work);
        let mut streams = Vec::with_capacity(readers.len());
        let mut threads = Vec::new();
        for reader in readers {
            let source = if pooled {
                let (order, batches) = bounded(QUEUED_CHUNKS);
                let jobs = jobs.clone();
                threads.push(scope.spawn(move || read_into(reader, jobs, order)));
                Source::Pool(batches)
            } else {
                Source::Here(Box::new(reader))
            };
            streams.push(Stream::new(source));
        }
        drop(jobs);
        let mut heap: BinaryHeap<Reverse<(Micros, usize)>> = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|(ts, _)| Reverse((*ts, i))))
            .collect();
        while let Some(Reverse((_, i))) = heap.pop() {
            let stream = &mut streams[i];
            if let Some((_, record)) = stream.head.take() {
                builder.record(record);
            }
            stream.advance();
            if let Some((ts, _)) = &stream.head {
                heap.push(Reverse((*ts, i)));
            }
        }
        let mut threads = threads.into_iter();
        for stream in streams {
            let digest = match stream.source {
                Source::Here(reader) => reader.digest(),
                Source::Pool(order) => {
                    drop(order);
                    let thread = threads.next().expect("a reader thread per pooled file");
                    thread.join().map_err(|_| ReadError {
                        path: PathBuf::from("?"),
                        source: io::Error::other("a reader thread panicked"),
                    })?
                }
            };
            builder.input(stream.seen.input(digest));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &[u8], read: usize) -> Vec<Vec<u8>> {
        /// Hands out at most `at_once` bytes a read, as a pipe may.
        struct Slow {
            text: Vec<u8>,
            at: usize,
            at_once: usize,
        }
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = (self.text.len() - self.at).min(buf.len()).min(self.at_once);
                buf[..n].copy_from_slice(&self.text[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }
        let raw = Arc::new(Mutex::new(Raw::default()));
        let slow = Box::new(Slow { text: text.to_vec(), at: 0, at_once: read });
        let input = Box::new(Hashing { inner: slow, raw: Arc::clone(&raw) });
        let mut reader = Reader::new(Path::new("t"), input, raw, None);
        let mut out = Vec::new();
        while let Some(chunk) = reader.chunk() {
            out.push(chunk);
        }
        let digest = reader.digest();
        assert_eq!(
            (digest.bytes, digest.sha256),
            (text.len() as u64, super::super::digest::sha256(text)),
            "every byte hashed once"
        );
        assert_eq!(digest.damage, None);
        out
    }

    #[test]
    fn chunks_hold_whole_lines_and_every_byte_once() {
        let text = b"one\ntwo\nthree\nno newline at the end";
        for read in [1, 2, 3, 5, 100] {
            let got = chunks(text, read);
            assert_eq!(got.concat(), text.to_vec(), "read {read} at a time");
            for chunk in &got[..got.len() - 1] {
                assert_eq!(chunk.last(), Some(&b'\n'), "read {read} at a time: {chunk:?}");
            }
        }
        assert!(chunks(b"", 10).is_empty());
    }
}
