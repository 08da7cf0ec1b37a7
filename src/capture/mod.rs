//! Reading frames. libpcap (through the `pcap` crate) stays behind the small
//! [`FrameSource`] trait, so everything downstream is testable without it.
//!
//! This module owns the capture handles. It must never decode: it hands out frame bytes,
//! their timestamps and lengths, and reports damage with the record number and the byte
//! offset where the file stops making sense.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub mod compressed;
pub mod fanout;
pub mod filter;
pub mod format;
pub mod savefile;

pub use compressed::Compression;
pub use fanout::FanoutGroup;
pub use format::record_offset;
pub use savefile::Savefile;

use crate::decode::LinkType;
use crate::time::Ts;

/// A chunk of a capture file, shared by the reader and the batches of frames in it.
pub type Chunk = Arc<Vec<u8>>;

/// One frame, borrowed from the source until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Ts,
    pub wire_len: u32,
    pub data: &'a [u8],
    /// A pcapng file may mix link types, one per interface.
    pub link: LinkType,
    /// The shared chunk `data` lies in, when the source reads into one: the frame can
    /// then be handed on without a copy, for as long as the chunk is held.
    pub chunk: Option<&'a Chunk>,
}

/// Why a capture file could not be read (whole or in part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot open: {message}")]
    Open { path: PathBuf, message: String },
    /// The file is not a pcap or pcapng file (its first bytes say so, or it is too short).
    #[error("{path}: cannot open: {message}")]
    NotCapture { path: PathBuf, message: String },
    #[error("{path}: {}", format::unsupported_link(*.dlt, .name))]
    LinkType { path: PathBuf, dlt: i32, name: String },
    /// `offset` is in the decompressed stream when the file is compressed (the message
    /// says so).
    #[error("{path}: damaged at record {record} (byte offset {offset}{}): {message}; every frame before it was analysed", in_stream(.compression))]
    Damaged { path: PathBuf, record: u64, offset: u64, compression: Option<Compression>, message: String },
    #[error("BPF filter {expression:?}: {message}")]
    Filter { expression: String, message: String },
    #[error("{interface}: capture failed: {message}")]
    Live { interface: String, message: String },
    /// The socket could not join its fanout group; the caller may fall back to one socket.
    #[error("{interface}: {message}")]
    Fanout { interface: String, message: String },
}

impl CaptureError {
    /// Stable short code, for counters.
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::Open { .. } => "open",
            CaptureError::NotCapture { .. } => "not_a_capture",
            CaptureError::LinkType { .. } => "link_type",
            CaptureError::Damaged { .. } => "damaged",
            CaptureError::Filter { .. } => "filter",
            CaptureError::Live { .. } => "live",
            CaptureError::Fanout { .. } => "fanout",
        }
    }
}

fn in_stream(compression: &Option<Compression>) -> String {
    compression.map(|c| format!(" in the {}-decompressed stream", c.name())).unwrap_or_default()
}

/// What a source has to say when asked for a frame.
#[derive(Debug)]
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// Nothing arrived within the read timeout (live capture only): time to flush
    /// batches and run the timers.
    Idle,
    /// The source is exhausted.
    End,
}

/// Counters a live capture keeps in the kernel and the interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub received: u64,
    /// Dropped by the kernel because its buffer was full.
    pub kernel_dropped: u64,
    /// Dropped by the interface or its driver.
    pub interface_dropped: u64,
}

impl CaptureStats {
    /// Two sockets' counters, added up.
    pub fn plus(self, other: CaptureStats) -> CaptureStats {
        CaptureStats {
            received: self.received + other.received,
            kernel_dropped: self.kernel_dropped + other.kernel_dropped,
            interface_dropped: self.interface_dropped + other.interface_dropped,
        }
    }
}

/// A source of frames.
pub trait FrameSource {
    /// The next frame, or the damage that ends the source.
    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError>;
    /// Kernel and interface counters, where the source has them.
    fn stats(&mut self) -> Option<CaptureStats> {
        None
    }
    /// The source as exwatch's own file reader, when it is one: a reader loop given the
    /// concrete type calls it directly rather than through the trait object, once per
    /// frame.
    fn as_savefile(&mut self) -> Option<&mut Savefile> {
        None
    }
}

/// A pcap or pcapng file read through libpcap: the fallback reader (`--reader libpcap`),
/// and the reference the native [`Savefile`] reader is tested against.
pub struct PcapFile {
    path: PathBuf,
    capture: pcap::Capture<pcap::Offline>,
    link: LinkType,
    records: u64,
}

impl PcapFile {
    pub fn open(path: &Path) -> Result<PcapFile, CaptureError> {
        let open_error = |message: String| CaptureError::Open { path: path.to_path_buf(), message };
        // libpcap reads `-` as standard input itself. A file is looked at first: libpcap's
        // own message for a missing file is terse, and it reads no compressed capture.
        if !compressed::is_stdin(path) {
            let head = compressed::first_raw_bytes(path).map_err(|e| open_error(e.to_string()))?;
            if let Some(c) = compressed::sniff(&head) {
                return Err(open_error(format!(
                    "compressed with {}: --reader libpcap reads no compressed capture (the native reader does)",
                    c.name()
                )));
            }
            if format::sniff(&head).is_none() {
                let message = if head.len() < format::MAGIC_LEN {
                    "too short to be a capture file"
                } else {
                    "not a pcap or pcapng file (unknown magic number)"
                };
                return Err(CaptureError::NotCapture { path: path.to_path_buf(), message: message.into() });
            }
        }
        let capture = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano).map_err(|e| {
            if compressed::is_stdin(path) {
                // Standard input cannot be looked at first; a compressed stream is the
                // likely reason libpcap knows no format.
                open_error(format!(
                    "{e} (--reader libpcap reads no compressed capture; the native reader does)"
                ))
            } else {
                open_error(e.to_string())
            }
        })?;
        let link = decodable(path, capture.get_datalink())?;
        Ok(PcapFile { path: path.to_path_buf(), capture, link, records: 0 })
    }
}

impl FrameSource for PcapFile {
    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        match self.capture.next_packet() {
            Ok(packet) => {
                self.records += 1;
                Ok(Next::Frame(frame_of(&packet, self.link)))
            }
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(err) => {
                let record = self.records + 1;
                Err(CaptureError::Damaged {
                    offset: record_offset(&self.path, self.records).unwrap_or(0),
                    path: self.path.clone(),
                    record,
                    compression: None,
                    message: err.to_string(),
                })
            }
        }
    }
}

/// The decoder for a libpcap link type, or the error naming it.
fn decodable(path: &Path, dlt: pcap::Linktype) -> Result<LinkType, CaptureError> {
    LinkType::from_dlt(dlt.0).ok_or_else(|| CaptureError::LinkType {
        path: path.to_path_buf(),
        dlt: dlt.0,
        name: format::link_name(dlt.0),
    })
}

/// Both captures are opened with nanosecond precision: `tv_usec` holds nanoseconds.
fn frame_of<'a>(packet: &pcap::Packet<'a>, link: LinkType) -> Frame<'a> {
    let h = packet.header;
    let ts = Ts::from_parts(h.ts.tv_sec.max(0) as u64, h.ts.tv_usec.max(0) as u64);
    Frame { ts, wire_len: h.len, data: packet.data, link, chunk: None }
}

/// How to open a live capture.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    pub snaplen: i32,
    /// Kernel buffer size in bytes.
    pub buffer_size: i32,
    pub promiscuous: bool,
    /// How long a read waits for a frame before reporting [`Next::Idle`], and how old
    /// the kernel lets a partly filled block of frames get before handing it over.
    pub timeout_ms: i32,
    /// A BPF filter, compiled and checked before the capture starts.
    pub bpf: Option<String>,
    /// The fanout group the socket joins, sharing the interface's frames with the
    /// group's other sockets by exwatch's own hash ([`fanout`]).
    pub fanout: Option<FanoutGroup>,
}

impl Default for LiveSettings {
    fn default() -> LiveSettings {
        LiveSettings {
            snaplen: 262_144,
            buffer_size: 64 << 20,
            promiscuous: true,
            timeout_ms: 50,
            bpf: None,
            fanout: None,
        }
    }
}

/// A live capture on an interface through libpcap. Not in immediate mode: the kernel
/// then hands libpcap whole blocks of frames (TPACKET_V3), a block once full or once
/// [`LiveSettings::timeout_ms`] old, rather than waking the capture thread for every
/// frame. At 180,000 frames/s that took exwatch from 2.6 to 0.6 CPU-seconds per million
/// frames (`benches/live-replay.sh`); the price is at most the timeout of latency.
pub struct LiveCapture {
    interface: String,
    capture: pcap::Capture<pcap::Active>,
    link: LinkType,
    timeout_ms: u16,
    /// A duplicate of the capture's socket, to wait on while the capture is borrowed.
    readable: OwnedFd,
    /// libpcap's counters are 32-bit and wrap: the last raw values, and the totals
    /// built from their deltas.
    last_raw: [u32; 3],
    totals: CaptureStats,
    /// Whether the socket is in a fanout group.
    joined: bool,
    /// Frames the socket received before joining its fanout group.
    held_at_join: u64,
}

impl LiveCapture {
    /// Opens a capture on `interface`. With [`LiveSettings::fanout`] the socket joins that
    /// group and passes frames at once; [`LiveCapture::open_group`] opens a whole group.
    pub fn open(interface: &str, options: &LiveSettings) -> Result<LiveCapture, CaptureError> {
        let mut live = LiveCapture::open_held(interface, options)?;
        live.arm(options.bpf.as_deref())?;
        Ok(live)
    }

    /// The sockets of [`LiveSettings::fanout`]'s group (one without it), in the order the
    /// fanout program numbers them. Each passes frames only once all have joined, so none
    /// is delivered on a socket other than its hash's, and none twice.
    pub fn open_group(interface: &str, options: &LiveSettings) -> Result<Vec<LiveCapture>, CaptureError> {
        let sockets = options.fanout.map_or(1, |group| group.sockets.max(1));
        let mut group = (0..sockets)
            .map(|_| LiveCapture::open_held(interface, options))
            .collect::<Result<Vec<_>, _>>()?;
        for live in &mut group {
            live.arm(options.bpf.as_deref())?;
        }
        Ok(group)
    }

    /// Puts the open capture in a fanout group ([`fanout`]): it then passes nothing until
    /// [`LiveCapture::arm`]ed. The frames the socket received before are discarded (the
    /// group's other sockets got them too) and counted ([`LiveCapture::held_at_join`]);
    /// its counters start again from the join.
    pub fn join(&mut self, group: FanoutGroup) -> Result<(), CaptureError> {
        fanout::join(&mut self.capture, group, self.timeout_ms)
            .map_err(|message| CaptureError::Fanout { interface: self.interface.clone(), message })?;
        self.joined = true;
        self.held_at_join = self.stats().map_or(0, |s| s.received);
        self.totals = CaptureStats::default();
        Ok(())
    }

    /// Sets the real filter: `bpf`, or (in a fanout group) one that passes every frame.
    pub fn arm(&mut self, bpf: Option<&str>) -> Result<(), CaptureError> {
        let filter_error = |e: pcap::Error| CaptureError::Filter {
            expression: bpf.unwrap_or_default().to_string(),
            message: e.to_string(),
        };
        match (bpf, self.joined) {
            (_, true) => fanout::arm(&mut self.capture, bpf).map_err(filter_error),
            (Some(expr), false) => self.capture.filter(expr, true).map_err(filter_error),
            (None, false) => Ok(()),
        }
    }

    /// Frames the socket received before it joined its fanout group: for a socket
    /// opened into its group ([`LiveSettings::fanout`]), the frames discarded at the join.
    pub fn held_at_join(&self) -> u64 {
        self.held_at_join
    }

    /// Opens the capture; one that joins a fanout group passes nothing until armed.
    fn open_held(interface: &str, options: &LiveSettings) -> Result<LiveCapture, CaptureError> {
        let path = PathBuf::from(interface);
        let open_error = |message: String| CaptureError::Open { path: path.clone(), message };
        let device = pcap::Device::list()
            .map_err(|e| open_error(e.to_string()))?
            .into_iter()
            .find(|d| d.name == interface)
            .ok_or_else(|| open_error("no such interface (see `ip link`)".into()))?;
        let capture = pcap::Capture::from_device(device)
            .map_err(|e| open_error(e.to_string()))?
            .promisc(options.promiscuous)
            .snaplen(options.snaplen)
            .buffer_size(options.buffer_size)
            .timeout(options.timeout_ms)
            .immediate_mode(false)
            .precision(pcap::Precision::Nano)
            .open()
            .and_then(|c| c.setnonblock())
            .map_err(|e| open_error(permission_hint(e.to_string())))?;
        let readable = capture.as_fd().try_clone_to_owned().map_err(|e| open_error(e.to_string()))?;
        let link = decodable(&path, capture.get_datalink())?;
        let mut live = LiveCapture {
            interface: interface.to_string(),
            capture,
            link,
            timeout_ms: u16::try_from(options.timeout_ms).unwrap_or(u16::MAX),
            readable,
            last_raw: [0; 3],
            totals: CaptureStats::default(),
            joined: false,
            held_at_join: 0,
        };
        if let Some(group) = options.fanout {
            live.join(group)?;
        }
        Ok(live)
    }
}

/// Capture threads for an interface when `--capture-threads` is not given: one per
/// 5 Gb/s of its speed (a thread judges 2 million frames a second of a flood, and an
/// ordinary 10 GbE SPAN port carries 1-2 million), at most one per core but one (the
/// writer's), at least one. An interface that says no speed (a bridge, a tunnel) gets one.
pub fn default_threads(interface: &str) -> usize {
    let speed_mbps = std::fs::read_to_string(format!("/sys/class/net/{interface}/speed"))
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|&speed| speed > 0)
        .unwrap_or(0) as u64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = usize::try_from(speed_mbps.div_ceil(5_000)).unwrap_or(usize::MAX);
    wanted.min(cores.saturating_sub(1)).max(1)
}

fn permission_hint(message: String) -> String {
    if message.contains("ermission") || message.contains("not permitted") {
        format!("{message} (capturing needs root or the CAP_NET_RAW and CAP_NET_ADMIN capabilities)")
    } else {
        message
    }
}

impl FrameSource for LiveCapture {
    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        match self.capture.next_packet() {
            Ok(packet) => Ok(Next::Frame(frame_of(&packet, self.link))),
            Err(pcap::Error::TimeoutExpired) => {
                // Non-blocking and empty: wait for the socket ourselves (readable once the
                // kernel hands over a block), so that a quiet link still returns Idle.
                let mut fds = [PollFd::new(self.readable.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(self.timeout_ms)) {
                    // A signal (SIGTERM, SIGHUP) woke us: the caller checks why.
                    Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(Next::Idle),
                    Err(e) => {
                        Err(CaptureError::Live { interface: self.interface.clone(), message: e.to_string() })
                    }
                }
            }
            Err(err) => {
                Err(CaptureError::Live { interface: self.interface.clone(), message: err.to_string() })
            }
        }
    }

    fn stats(&mut self) -> Option<CaptureStats> {
        let s = self.capture.stats().ok()?;
        let raw = [s.received, s.dropped, s.if_dropped];
        let delta = |i: usize| u64::from(raw[i].wrapping_sub(self.last_raw[i]));
        self.totals.received += delta(0);
        self.totals.kernel_dropped += delta(1);
        self.totals.interface_dropped += delta(2);
        self.last_raw = raw;
        Some(self.totals)
    }
}
