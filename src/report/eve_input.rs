//! EVE logs in: JSON lines parsed into [`Record`]s, and any number of log files read
//! as one stream, line by line, merged by event time.
//!
//! Merging matters for the dedup of flows seen by several sensors: the copies of one
//! flow sit at about the same time in each sensor's log, so reading the logs side by
//! side brings them together within the builder's dedup window, whatever the number
//! or size of the files. Each file is hashed (SHA-256) as it is read. This module never
//! holds more than one pending line per file, and never judges or aggregates.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::model::InputRef;
use super::records::{
    format_timestamp, parse_timestamp, AlertRecord, Endpoints, FlowRecord, Micros, Record, StatsRecord,
};
use super::Builder;
use crate::policy::{Role, Verdict};

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pcap_filename: Option<Cow<'a, str>>,
    #[serde(default)]
    src_ip: Option<IpAddr>,
    #[serde(default)]
    src_port: Option<u16>,
    #[serde(default)]
    dest_ip: Option<IpAddr>,
    #[serde(default)]
    dest_port: Option<u16>,
    #[serde(borrow, default)]
    proto: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    community_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    policy: Option<RawPolicy<'a>>,
    #[serde(borrow, default)]
    flow: Option<RawFlow<'a>>,
    #[serde(default)]
    stats: Option<RawStats>,
}

#[derive(Deserialize)]
struct RawPolicy<'a> {
    #[serde(borrow)]
    verdict: Cow<'a, str>,
    #[serde(borrow, default)]
    rule: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    evidence: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dest_role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    direction: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    confidence: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawFlow<'a> {
    #[serde(default)]
    pkts_toserver: u64,
    #[serde(default)]
    pkts_toclient: u64,
    #[serde(default)]
    bytes_toserver: u64,
    #[serde(default)]
    bytes_toclient: u64,
    #[serde(borrow, default)]
    start: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    end: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    conn_state: Option<Cow<'a, str>>,
    #[serde(default)]
    gaps: u32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStats {
    capture: RawCapture,
    decoder: RawDecoder,
    flow: RawFlowStats,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCapture {
    kernel_drops: u64,
    kernel_ifdrops: u64,
    shed: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDecoder {
    pkts: u64,
    decoded: u64,
    skipped: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFlowStats {
    evicted: u64,
}

/// What became of one line.
// Moved once per line and never stored: boxing the record would cost an allocation an
// event on the report's hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Record(Record),
    /// Valid EVE, of no interest to the report (another event type, or a flow event
    /// written before flow events carried their verdict).
    Ignored,
    /// Not an EVE event exwatch can read.
    Unreadable,
}

/// Parses one EVE line.
pub fn parse_line(line: &[u8]) -> Parsed {
    let Ok(raw) = serde_json::from_slice::<RawEvent<'_>>(line) else {
        return Parsed::Unreadable;
    };
    let Some(ts) = parse_timestamp(&raw.timestamp) else {
        return Parsed::Unreadable;
    };
    match raw.event_type.as_ref() {
        "flow" | "alert" => flow_or_alert(raw, ts),
        "stats" => {
            let stats = raw.stats.unwrap_or_default();
            Parsed::Record(Record::Stats(StatsRecord {
                host: raw.host.map(Cow::into_owned),
                ts,
                packets: stats.decoder.pkts,
                decoded: stats.decoder.decoded,
                skipped: stats.decoder.skipped.into_iter().collect(),
                drops: stats.capture.kernel_drops + stats.capture.kernel_ifdrops + stats.capture.shed,
                flows_evicted: stats.flow.evicted,
            }))
        }
        _ => Parsed::Ignored,
    }
}

fn flow_or_alert(raw: RawEvent<'_>, ts: Micros) -> Parsed {
    let (Some(policy), Some(flow)) = (raw.policy, raw.flow) else {
        return Parsed::Ignored;
    };
    let (Some(src_ip), Some(dest_ip), Some(verdict)) =
        (raw.src_ip, raw.dest_ip, Verdict::from_name(&policy.verdict))
    else {
        return Parsed::Unreadable;
    };
    let role = |r: &Option<Cow<'_, str>>| r.as_deref().and_then(Role::from_name).unwrap_or(Role::External);
    let ends = Endpoints {
        host: raw.host.map(Cow::into_owned),
        pcap_filename: raw.pcap_filename.map(Cow::into_owned),
        community_id: raw.community_id.map(Cow::into_owned).unwrap_or_default(),
        src_ip,
        src_port: raw.src_port,
        dest_ip,
        dest_port: raw.dest_port,
        proto: raw.proto.map(Cow::into_owned).unwrap_or_default(),
        src_role: role(&policy.src_role),
        dest_role: role(&policy.dest_role),
        inferred: policy.direction.as_deref() == Some("inferred"),
    };
    let start = flow.start.as_deref().and_then(parse_timestamp).unwrap_or(ts);
    if raw.event_type == "flow" {
        return Parsed::Record(Record::Flow(FlowRecord {
            ends,
            start,
            end: flow.end.as_deref().and_then(parse_timestamp).unwrap_or(ts),
            pkts: [flow.pkts_toserver, flow.pkts_toclient],
            bytes: [flow.bytes_toserver, flow.bytes_toclient],
            state: flow.state.map(Cow::into_owned).unwrap_or_default(),
            conn_state: flow.conn_state.map(Cow::into_owned),
            gaps: flow.gaps,
            verdict,
            rule: policy.rule.map(Cow::into_owned),
        }));
    }
    let Some(rule) = policy.rule else {
        return Parsed::Unreadable;
    };
    Parsed::Record(Record::Alert(AlertRecord {
        ends,
        ts,
        flow_start: start,
        verdict,
        rule: rule.into_owned(),
        evidence: policy.evidence.map(Cow::into_owned),
        confidence: policy.confidence.map(Cow::into_owned).unwrap_or_else(|| "high".into()),
    }))
}

/// Capture files listed per input at most.
pub const MAX_CAPTURES_LISTED: usize = 64;

/// Further capture files counted per input at most (a week of rotated captures is a
/// few thousand).
const MAX_CAPTURES_COUNTED: usize = 100_000;

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// One EVE file being read.
struct Log {
    path: PathBuf,
    reader: BufReader<Hashing<Box<dyn Read + Send>>>,
    line: Vec<u8>,
    events: u64,
    unreadable: u64,
    sensors: BTreeSet<String>,
    captures: BTreeSet<String>,
    more_captures: BTreeSet<u64>,
    first: Option<Micros>,
    last: Option<Micros>,
}

impl Log {
    fn open(path: &Path) -> io::Result<Log> {
        let input: Box<dyn Read + Send> =
            if path == Path::new("-") { Box::new(io::stdin()) } else { Box::new(File::open(path)?) };
        Ok(Log {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(
                1 << 16,
                Hashing { inner: input, hash: Sha256::new(), bytes: 0 },
            ),
            line: Vec::new(),
            events: 0,
            unreadable: 0,
            sensors: BTreeSet::new(),
            captures: BTreeSet::new(),
            more_captures: BTreeSet::new(),
            first: None,
            last: None,
        })
    }

    /// The next record of interest, skipping what is not.
    fn next(&mut self) -> io::Result<Option<(Micros, Record)>> {
        loop {
            self.line.clear();
            if self.reader.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(None);
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = match parse_line(&self.line) {
                Parsed::Record(record) => record,
                Parsed::Ignored => continue,
                Parsed::Unreadable => {
                    self.unreadable += 1;
                    continue;
                }
            };
            let (ts, host, capture) = match &record {
                Record::Flow(f) => (f.end, f.ends.host.as_deref(), f.ends.pcap_filename.as_deref()),
                Record::Alert(a) => (a.ts, a.ends.host.as_deref(), a.ends.pcap_filename.as_deref()),
                Record::Stats(s) => (s.ts, s.host.as_deref(), None),
            };
            if let Some(capture) = capture {
                self.note_capture(capture);
            }
            if let Some(host) = host {
                if !self.sensors.contains(host) {
                    self.sensors.insert(host.to_string());
                }
            }
            self.events += 1;
            self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
            self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
            return Ok(Some((ts, record)));
        }
    }

    fn note_capture(&mut self, capture: &str) {
        if self.captures.contains(capture) {
            return;
        }
        if self.captures.len() < MAX_CAPTURES_LISTED {
            self.captures.insert(capture.to_string());
        } else if self.more_captures.len() < MAX_CAPTURES_COUNTED {
            // Counted by a hash of the name: the names themselves are not needed.
            let hash = foldhash::fast::FixedState::with_seed(7).hash_one(capture);
            self.more_captures.insert(hash);
        }
    }

    fn finish(mut self) -> io::Result<InputRef> {
        // Hash what is left after the last line too, so the digest is the file's.
        io::copy(&mut self.reader, &mut io::sink())?;
        let inner = self.reader.into_inner();
        Ok(InputRef {
            file: self.path.display().to_string(),
            bytes: inner.bytes,
            sha256: hex(&inner.hash.finalize()),
            events: self.events,
            unreadable_lines: self.unreadable,
            sensors: self.sensors.into_iter().collect(),
            captures: self.captures.into_iter().collect(),
            more_captures: self.more_captures.len() as u64,
            first: self.first.map(format_timestamp),
            last: self.last.map(format_timestamp),
        })
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes in memory, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// An EVE file that could not be read, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Records a reader thread hands over at a time.
const BATCH: usize = 1024;

/// Batches queued per file at most: reading blocks when the merge falls behind.
const QUEUED_BATCHES: usize = 4;

impl Log {
    /// Reads the whole file into batches for the merge; the file's entry for the
    /// header once done.
    fn run(mut self, out: crossbeam_channel::Sender<Vec<(Micros, Record)>>) -> Result<InputRef, ReadError> {
        let fail = |path: &Path, source| ReadError { path: path.to_path_buf(), source };
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                match self.next().map_err(|e| fail(&self.path, e))? {
                    Some(record) => batch.push(record),
                    None => break,
                }
            }
            let done = batch.len() < BATCH;
            if !batch.is_empty() && out.send(batch).is_err() {
                break;
            }
            if done {
                break;
            }
        }
        let path = self.path.clone();
        self.finish().map_err(|e| fail(&path, e))
    }
}

/// Files read by a thread each at most; with more, all are read on the merging
/// thread, so neither threads nor read-ahead grow with the number of files.
pub const MAX_READER_THREADS: usize = 8;

/// Where one file's records come from.
enum Source {
    /// A reader thread, a few batches ahead.
    Thread(crossbeam_channel::Receiver<Vec<(Micros, Record)>>),
    /// Read here, a line at a time.
    Here(Box<Log>),
}

/// One file's records as the merge sees them.
struct Stream {
    source: Source,
    batch: std::vec::IntoIter<(Micros, Record)>,
    head: Option<(Micros, Record)>,
    error: Option<ReadError>,
}

impl Stream {
    /// Moves to the next record, waiting for the next batch when this one is used up.
    fn advance(&mut self) {
        self.head = match &mut self.source {
            Source::Thread(batches) => self.batch.next().or_else(|| {
                self.batch = batches.recv().ok()?.into_iter();
                self.batch.next()
            }),
            Source::Here(log) => match log.next() {
                Ok(next) => next,
                Err(source) => {
                    self.error = Some(ReadError { path: log.path.clone(), source });
                    None
                }
            },
        };
    }
}

/// Feeds every event of `paths` (`-` is standard input) to `builder`, the files read
/// side by side and merged by event time; each file is then listed as an input. Up to
/// [`MAX_READER_THREADS`] files are each read, hashed and parsed by a thread of their
/// own, a few batches ahead of the merge.
pub fn read_logs(paths: &[PathBuf], builder: &mut Builder) -> Result<(), ReadError> {
    let mut logs = Vec::with_capacity(paths.len());
    for path in paths {
        logs.push(Log::open(path).map_err(|source| ReadError { path: path.clone(), source })?);
    }
    let threaded = logs.len() <= MAX_READER_THREADS;
    std::thread::scope(|scope| {
        let mut streams = Vec::with_capacity(logs.len());
        let mut readers = Vec::new();
        for log in logs {
            let source = if threaded {
                let (tx, rx) = crossbeam_channel::bounded(QUEUED_BATCHES);
                readers.push(scope.spawn(move || log.run(tx)));
                Source::Thread(rx)
            } else {
                Source::Here(Box::new(log))
            };
            let mut stream = Stream { source, batch: Vec::new().into_iter(), head: None, error: None };
            stream.advance();
            streams.push(stream);
        }
        // The earliest head goes first (ties in argument order).
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
        let mut readers = readers.into_iter();
        for stream in streams {
            if let Some(error) = stream.error {
                return Err(error);
            }
            let input = match stream.source {
                Source::Here(log) => {
                    let path = log.path.clone();
                    log.finish().map_err(|source| ReadError { path, source })?
                }
                Source::Thread(batches) => {
                    drop(batches);
                    let reader = readers.next().expect("a reader per threaded stream");
                    reader.join().map_err(|_| ReadError {
                        path: PathBuf::from("?"),
                        source: io::Error::other("a reader thread panicked"),
                    })??
                }
            };
            builder.input(input);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::decode::{proto, Ts, Tuple};
    use crate::flow::{Confidence, Direction, Event, Flow, FlowKey};
    use crate::output::eve;
    use crate::policy::{Engine, Facts, Policy, Topology};
    use crate::report::records::from_event;

    fn engine() -> Engine {
        let policy = Policy::parse(Path::new("exchange.toml"), include_str!("../../rules/exchange.toml"));
        let topology = Topology::parse(Path::new("topology.toml"), include_str!("../../rules/topology.toml"));
        Engine::new(Arc::new(policy.expect("policy")), Arc::new(topology.expect("topology")), 10)
    }

    fn flow(engine: &Engine, src: &str, dst: &str, sport: u16, dport: u16, protocol: u8) -> Flow {
        let orig =
            Tuple { src: src.parse().unwrap(), dst: dst.parse().unwrap(), sport, dport, proto: protocol };
        let start = Ts(1_795_755_314_123_456_789);
        let judgement = engine.judge(&Facts {
            orig: orig.src,
            resp: orig.dst,
            resp_port: dport,
            proto: protocol,
            ts: start,
        });
        let mut f =
            Flow::new(FlowKey::of(&orig), orig, Direction::Inferred, 42, start, (None, None), judgement);
        f.last = Ts(start.0 + 2_500_000_789);
        f.pkts = [5, 3];
        f.bytes = [420, 1337];
        f.gaps = 2;
        f
    }

    fn parsed(line: &[u8]) -> Record {
        match parse_line(line) {
            Parsed::Record(record) => record,
            other => panic!("{other:?}: {}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn a_flow_converted_directly_equals_the_flow_written_and_read_back() {
        let engine = engine();
        let flows = [
            flow(&engine, "10.20.0.9", "10.10.1.11", 50000, 443, proto::TCP),
            flow(&engine, "198.51.100.7", "10.10.1.11", 50001, 3389, proto::TCP),
            flow(&engine, "10.10.1.11", "10.10.0.53", 5353, 53, proto::UDP),
            flow(&engine, "2001:db8:ff::7", "2001:db8:10::11", 8, 0, proto::ICMPV6),
            flow(&engine, "192.0.2.1", "192.0.2.2", 1, 2, proto::UDP),
        ];
        for f in flows {
            let mut line = Vec::new();
            eve::write_flow(&mut line, &engine, &f);
            let direct = from_event(&engine, &Event::Flow { flow: f });
            assert_eq!(parsed(&line), direct, "{}", String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn an_alert_converted_directly_equals_the_alert_written_and_read_back() {
        let engine = engine();
        let f = flow(&engine, "10.10.1.11", "10.10.1.12", 50001, 135, proto::TCP);
        let rule = f.rule.expect("a rule");
        let mut line = Vec::new();
        eve::write_alert(
            &mut line,
            &engine,
            f.last,
            &f,
            (Verdict::Restriction, Confidence::Low),
            rule,
            (Some(1), None),
        );
        let event = Event::Alert {
            ts: f.last,
            flow: f,
            verdict: Verdict::Restriction,
            rule,
            evidence: Some(1),
            confidence: Confidence::Low,
        };
        assert_eq!(parsed(&line), from_event(&engine, &event));
    }

    #[test]
    fn host_and_pcap_filename_are_read_when_present() {
        let line = br#"{"timestamp":"2026-11-27T04:55:14.000080+0000","event_type":"flow","host":"s1","pcap_filename":"a.pcap","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2","dest_port":2,"proto":"TCP","community_id":"1:x","policy":{"verdict":"ok","rule":"r","src_role":"mailbox","dest_role":"mailbox","direction":"observed"},"flow":{"pkts_toserver":1,"pkts_toclient":1,"bytes_toserver":1,"bytes_toclient":1,"start":"2026-11-27T04:55:14.000000+0000","end":"2026-11-27T04:55:14.000080+0000","state":"new"}}"#;
        let Record::Flow(f) = parsed(line) else { panic!("not a flow") };
        assert_eq!((f.ends.host.as_deref(), f.ends.pcap_filename.as_deref()), (Some("s1"), Some("a.pcap")));
        assert_eq!(f.start, 1_795_755_314_000_000);
        assert_eq!(parse_line(b"not json"), Parsed::Unreadable);
        assert_eq!(
            parse_line(br#"{"timestamp":"2026-11-27T04:55:14Z","event_type":"dns"}"#),
            Parsed::Ignored
        );
        // A flow event written before flow events carried their verdict.
        let old = br#"{"timestamp":"2026-11-27T04:55:14Z","event_type":"flow","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","flow":{}}"#;
        assert_eq!(parse_line(old), Parsed::Ignored);
    }
}
