//! Reading frames. libpcap (through the `pcap` crate) stays behind the small
//! [`FrameSource`] trait, so everything downstream is testable without it.
//!
//! This module owns the capture handles. It must never decode: it hands out frame bytes,
//! their timestamps and lengths, and reports damage with the record number and the byte
//! offset where the file stops making sense.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::decode::{LinkType, Ts};

/// One frame, borrowed from the source until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Ts,
    pub wire_len: u32,
    pub data: &'a [u8],
}

/// Why a capture file could not be read (whole or in part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot open: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: link type {dlt} ({name}) is not supported (Ethernet, Linux cooked v1/v2, raw IP, BSD loopback are)")]
    LinkType { path: PathBuf, dlt: i32, name: String },
    #[error("{path}: damaged at record {record} (byte offset {offset}): {message}; every frame before it was analysed")]
    Damaged { path: PathBuf, record: u64, offset: u64, message: String },
}

impl CaptureError {
    /// Stable short code, for counters.
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::Open { .. } => "open",
            CaptureError::LinkType { .. } => "link_type",
            CaptureError::Damaged { .. } => "damaged",
        }
    }
}

/// A source of frames of one link type.
pub trait FrameSource {
    fn link_type(&self) -> LinkType;
    /// The next frame, `Ok(None)` at the end, or the damage that ends the source.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError>;
}

/// A pcap or pcapng file read through libpcap.
pub struct PcapFile {
    path: PathBuf,
    capture: pcap::Capture<pcap::Offline>,
    link: LinkType,
    records: u64,
}

impl PcapFile {
    pub fn open(path: &Path) -> Result<PcapFile, CaptureError> {
        let open_error = |message: String| CaptureError::Open { path: path.to_path_buf(), message };
        // libpcap's own message for a missing file is terse; say it plainly.
        std::fs::metadata(path).map_err(|e| open_error(e.to_string()))?;
        let capture = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
            .map_err(|e| open_error(e.to_string()))?;
        let dlt = capture.get_datalink();
        let link = LinkType::from_dlt(dlt.0).ok_or_else(|| CaptureError::LinkType {
            path: path.to_path_buf(),
            dlt: dlt.0,
            name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
        })?;
        Ok(PcapFile { path: path.to_path_buf(), capture, link, records: 0 })
    }
}

impl FrameSource for PcapFile {
    fn link_type(&self) -> LinkType {
        self.link
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.capture.next_packet() {
            Ok(packet) => {
                self.records += 1;
                let h = packet.header;
                // Opened with nanosecond precision: tv_usec holds nanoseconds.
                let ts = Ts((h.ts.tv_sec.max(0) as u64) * 1_000_000_000 + h.ts.tv_usec.max(0) as u64);
                Ok(Some(Frame { ts, wire_len: h.len, data: packet.data }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(err) => {
                let record = self.records + 1;
                Err(CaptureError::Damaged {
                    offset: record_offset(&self.path, self.records).unwrap_or(0),
                    path: self.path.clone(),
                    record,
                    message: err.to_string(),
                })
            }
        }
    }
}

/// Byte offset at which record number `skip + 1` starts in a pcap or pcapng file, by
/// walking the record headers. Used only to report damage, never on the packet path.
pub fn record_offset(path: &Path, skip: u64) -> Option<u64> {
    let mut file = BufReader::new(File::open(path).ok()?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => walk_pcap(&mut file, skip, false),
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => walk_pcap(&mut file, skip, true),
        [0x0a, 0x0d, 0x0d, 0x0a] => walk_pcapng(&mut file, skip),
        _ => Some(0),
    }
}

fn read_u32(file: &mut impl Read, big_endian: bool) -> Option<u32> {
    let mut b = [0u8; 4];
    file.read_exact(&mut b).ok()?;
    Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
}

fn walk_pcap(file: &mut (impl Read + Seek), skip: u64, big_endian: bool) -> Option<u64> {
    let mut offset = 24u64;
    for _ in 0..skip {
        file.seek(SeekFrom::Start(offset + 8)).ok()?;
        let caplen = read_u32(file, big_endian)?;
        offset += 16 + u64::from(caplen);
    }
    Some(offset)
}

fn walk_pcapng(file: &mut (impl Read + Seek), skip: u64) -> Option<u64> {
    let mut offset = 0u64;
    let mut big_endian = false;
    let mut packets = 0u64;
    loop {
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut head = [0u8; 12];
        if file.read_exact(&mut head).is_err() {
            return Some(offset);
        }
        let block_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if block_type == 0x0a0d_0d0a {
            big_endian = head[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
        }
        let len_bytes = [head[4], head[5], head[6], head[7]];
        let len = if big_endian { u32::from_be_bytes(len_bytes) } else { u32::from_le_bytes(len_bytes) };
        let is_packet = matches!(block_type, 2 | 3 | 6) || matches!(block_type.swap_bytes(), 2 | 3 | 6);
        if is_packet {
            if packets == skip {
                return Some(offset);
            }
            packets += 1;
        }
        if len < 12 || len % 4 != 0 {
            return Some(offset);
        }
        offset += u64::from(len);
    }
}
