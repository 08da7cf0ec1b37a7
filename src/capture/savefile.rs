//! A pure-Rust reader of pcap and pcapng files, every length checked before it is
//! trusted. The file is read in 512 KiB chunks, each shared (`Arc`) with the batches whose
//! frames lie in it, so frames reach the workers without a copy of their own; chunks
//! come back to a small pool once the workers are done with them, so memory stays a few
//! chunks whatever the file's size and reading never faults fresh pages in.
//!
//! It reads what libpcap reads (classic pcap in both byte orders, microsecond and
//! nanosecond; pcapng sections in both byte orders, with enhanced, simple and obsolete
//! packet blocks and per-interface time resolution), plus pcapng files whose interfaces
//! have different link types, which libpcap refuses. Damage ends the file with the
//! record number and the byte offset of the block that does not make sense.
//!
//! Any byte stream will do: a file, standard input, a pipe, or a decompressor of a file
//! compressed with gzip or zstd ([`super::compressed`]), read into the same chunks. A read
//! that fails (a truncated or corrupt compressed stream) ends the file as damage at the
//! first record not read in full, every record before it handed out first.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compressed::{self, Compression};
use super::format::{self, pcapng};
use super::{CaptureError, Chunk, Frame, FrameSource, Next};
use crate::decode::LinkType;
use crate::time::Ts;
use crate::time::SECOND;

/// Bytes read from the file at a time: one chunk. Small enough to stay in a core's L2
/// cache between the kernel's copy and the parsing of its records: with 4 MiB chunks a
/// run of analyze on the 1M-packet bench capture took a third more CPU time.
const CHUNK: usize = 512 << 10;
/// Chunks kept for reuse once the workers release them: enough for every batch that
/// the worker queues can hold, so the steady state allocates none.
const POOL: usize = 32;
/// The largest record accepted; larger is damage (libpcap's limit is 256 KiB of data).
const MAX_RECORD: usize = 16 << 20;
/// The largest frame accepted, as libpcap does.
const MAX_CAPLEN: u32 = 262_144;

/// A capture file being read.
pub struct Savefile {
    path: PathBuf,
    file: Box<dyn Read + Send>,
    /// The chunk being parsed; unconsumed bytes are `chunk[start..end]`, and `offset` is
    /// the file offset of `start`.
    chunk: Chunk,
    pool: Vec<Chunk>,
    start: usize,
    end: usize,
    offset: u64,
    eof: bool,
    /// Why the stream ended, when a read failed: reported once the bytes read before it
    /// are used up.
    failed: Option<io::Error>,
    /// The compression of the file; offsets are then in the decompressed stream.
    compression: Option<Compression>,
    state: State,
    /// Packet records read so far.
    records: u64,
}

/// The format being read, and what its headers have said so far.
enum State {
    Pcap { big_endian: bool, nanos: bool, link: LinkType },
    Pcapng { big_endian: bool, interfaces: Vec<Interface> },
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp units per second.
    units: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_secs: i64,
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let x: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big_endian { u16::from_be_bytes(x) } else { u16::from_le_bytes(x) })
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian { u32::from_be_bytes(x) } else { u32::from_le_bytes(x) })
}

/// What went wrong in a block, before the caller adds the place.
type Damage = String;

/// Where a packet block's frame sits, and what the block says of it.
struct PacketAt {
    /// Offset of the frame's first byte, in the block body and then in the buffer.
    at: usize,
    caplen: usize,
    ts: Ts,
    wire_len: u32,
    link: LinkType,
}

impl Savefile {
    /// Opens a capture file, plain or compressed, or standard input for `-`.
    pub fn open(path: &Path) -> Result<Savefile, CaptureError> {
        let raw = compressed::open_raw(path)
            .map_err(|e| CaptureError::Open { path: path.to_path_buf(), message: e.to_string() })?;
        Savefile::from_reader(path, raw)
    }

    /// Reads a capture from any byte stream, decompressing it if its first bytes say it
    /// is compressed; `name` is used in errors.
    pub fn from_reader(name: &Path, raw: Box<dyn Read + Send>) -> Result<Savefile, CaptureError> {
        let path = name;
        let open_error = |message: String| CaptureError::Open { path: path.to_path_buf(), message };
        let input = compressed::decompressed(raw).map_err(|e| open_error(e.to_string()))?;
        let mut reader = Savefile {
            path: path.to_path_buf(),
            file: input.bytes,
            chunk: Arc::new(Vec::new()),
            pool: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
            failed: None,
            compression: input.compression,
            state: State::Pcap { big_endian: false, nanos: false, link: LinkType::Ethernet },
            records: 0,
        };
        let not_capture = |message: String| CaptureError::NotCapture { path: path.to_path_buf(), message };
        if !reader.fill(format::MAGIC_LEN).map_err(|e| open_error(e.to_string()))? {
            return Err(not_capture(match input.compression {
                Some(c) => format!("too short to be a capture file once decompressed ({})", c.name()),
                None => "too short to be a capture file".into(),
            }));
        }
        match format::sniff(reader.available()) {
            Some(format::Format::Pcapng) => {
                reader.state = State::Pcapng { big_endian: false, interfaces: Vec::new() };
                // The section header is read like any block; reject a broken one at once.
                reader.pcapng_block().map_err(open_error)?;
            }
            Some(format::Format::Pcap { big_endian, nanos }) => {
                reader.state = reader.pcap_header(big_endian, nanos).map_err(open_error)?;
            }
            None => {
                return Err(not_capture(match input.compression {
                    Some(c) => format!("compressed with {}, but not a pcap or pcapng file inside", c.name()),
                    None => "not a pcap or pcapng file (unknown magic number)".into(),
                }))
            }
        }
        Ok(reader)
    }

    fn bytes(&self) -> &[u8] {
        &self.chunk
    }

    /// The chunk frames currently come from, for sharing them without a copy.
    pub fn chunk(&self) -> Option<&Chunk> {
        Some(&self.chunk)
    }

    /// Makes at least `need` bytes available at `bytes()[start..]`; `false` at end of file.
    /// Moves to a new chunk: frames handed out from the old one stay valid for as long
    /// as someone holds it.
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.end - self.start >= need {
            return Ok(true);
        }
        if self.eof {
            return match self.failed.take() {
                Some(e) => Err(e),
                None => Ok(false),
            };
        }
        let size = CHUNK.max(need.next_power_of_two());
        // A pooled chunk no batch holds any more, or a new one.
        let reusable = self.pool.iter().position(|c| Arc::strong_count(c) == 1 && c.len() >= size);
        let mut next = match reusable {
            Some(i) => self.pool.swap_remove(i),
            None => Arc::new(vec![0; size]),
        };
        let leftover = self.end - self.start;
        let old = std::mem::replace(&mut self.chunk, Arc::new(Vec::new()));
        {
            let buf = Arc::get_mut(&mut next).ok_or_else(|| io::Error::other("chunk still shared"))?;
            buf[..leftover].copy_from_slice(&old[self.start..self.end]);
            self.end = leftover;
            // Fill the whole chunk: fewer, larger reads. A failed read ends the stream
            // like its end does, and is reported once what came before it is used.
            while self.end < buf.len() {
                match self.file.read(&mut buf[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.eof = true;
                        self.failed = Some(e);
                        break;
                    }
                }
            }
        }
        self.start = 0;
        self.chunk = next;
        if self.pool.len() < POOL && !old.is_empty() {
            self.pool.push(old);
        }
        if self.end >= need {
            return Ok(true);
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    fn available(&self) -> &[u8] {
        &self.bytes()[self.start..self.end]
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        self.offset += len as u64;
    }

    fn pcap_header(&mut self, big_endian: bool, nanos: bool) -> Result<State, String> {
        if !self.fill(format::pcap::HEADER_LEN).map_err(|e| e.to_string())? {
            return Err("pcap file header cut short".into());
        }
        let h = self.available();
        let major = u16_at(h, format::pcap::VERSION_MAJOR, big_endian).unwrap_or(0);
        if major != 2 {
            return Err(format!("pcap version {major} is not supported (only 2 is valid)"));
        }
        // The upper 16 bits hold the FCS length and reserved bits, not the link type.
        let dlt = (u32_at(h, format::pcap::LINKTYPE, big_endian).unwrap_or(0) & 0xffff) as i32;
        let link =
            LinkType::from_dlt(dlt).ok_or_else(|| format::unsupported_link(dlt, &format::link_name(dlt)))?;
        self.consume(format::pcap::HEADER_LEN);
        Ok(State::Pcap { big_endian, nanos, link })
    }

    fn damaged(&self, message: Damage) -> CaptureError {
        CaptureError::Damaged {
            path: self.path.clone(),
            record: self.records + 1,
            offset: self.offset,
            compression: self.compression,
            message,
        }
    }

    /// Reads one classic pcap record.
    fn pcap_record(
        &mut self,
        big_endian: bool,
        nanos: bool,
        link: LinkType,
    ) -> Result<Next<'_>, CaptureError> {
        if self.end - self.start < 16 {
            match self.fill(16) {
                Ok(true) => {}
                Ok(false) if self.start == self.end => return Ok(Next::End),
                Ok(false) => return Err(self.damaged("record header cut short".into())),
                Err(e) => return Err(self.damaged(e.to_string())),
            }
        }
        let header: [u8; 16] = self.available()[..16].try_into().unwrap_or([0; 16]);
        let field = |at: usize| {
            let b = [header[at], header[at + 1], header[at + 2], header[at + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (secs, frac, caplen, wire_len) = (field(0), field(4), field(8), field(12));
        if caplen > MAX_CAPLEN {
            return Err(self.damaged(format!("captured length {caplen} is larger than {MAX_CAPLEN}")));
        }
        let record = 16 + caplen as usize;
        match if self.end - self.start >= record { Ok(true) } else { self.fill(record) } {
            Ok(true) => {}
            Ok(false) => {
                let got = self.end - self.start - 16;
                return Err(self.damaged(format!(
                    "file ends inside the record: {caplen} bytes expected, {got} present"
                )));
            }
            Err(e) => return Err(self.damaged(e.to_string())),
        }
        let frac_ns = if nanos { u64::from(frac) } else { u64::from(frac) * 1_000 };
        let ts = Ts::from_parts(u64::from(secs), frac_ns);
        self.records += 1;
        let data_start = self.start + 16;
        self.consume(record);
        Ok(Next::Frame(Frame {
            ts,
            wire_len,
            data: &self.bytes()[data_start..data_start + caplen as usize],
            link,
            chunk: self.chunk(),
        }))
    }

    /// Reads pcapng blocks up to the next packet.
    fn pcapng_next(&mut self) -> Result<Next<'_>, CaptureError> {
        loop {
            match self.pcapng_block() {
                Ok(Some(p)) => {
                    self.records += 1;
                    let data = &self.bytes()[p.at..p.at + p.caplen];
                    let chunk = self.chunk();
                    return Ok(Next::Frame(Frame {
                        ts: p.ts,
                        wire_len: p.wire_len,
                        data,
                        link: p.link,
                        chunk,
                    }));
                }
                Ok(None) if self.eof && self.start == self.end => return Ok(Next::End),
                Ok(None) => continue,
                Err(message) => return Err(self.damaged(message)),
            }
        }
    }

    /// Reads one pcapng block. Returns where a packet's data sits in the buffer (valid
    /// until the next read), or `None` for other blocks and at the end.
    fn pcapng_block(&mut self) -> Result<Option<PacketAt>, Damage> {
        if !self.fill(12).map_err(|e| e.to_string())? {
            return if self.start == self.end { Ok(None) } else { Err("block header cut short".into()) };
        }
        let State::Pcapng { big_endian, .. } = self.state else {
            return Err("not a pcapng file".into());
        };
        let raw_type = u32_at(self.available(), 0, false).unwrap_or(0);
        let mut big_endian = big_endian;
        if raw_type == pcapng::SHB {
            // Each section says its own byte order.
            let order = u32_at(self.available(), pcapng::BYTE_ORDER_AT, false).unwrap_or(0);
            big_endian = match order {
                pcapng::BYTE_ORDER_MAGIC => false,
                o if o.swap_bytes() == pcapng::BYTE_ORDER_MAGIC => true,
                _ => return Err("section header with an unknown byte-order magic".into()),
            };
        }
        let block_type = u32_at(self.available(), 0, big_endian).unwrap_or(0);
        let len = u32_at(self.available(), 4, big_endian).unwrap_or(0) as usize;
        if len < 12 || len % 4 != 0 || len > MAX_RECORD {
            return Err(format!("block length {len} is invalid"));
        }
        if !self.fill(len).map_err(|e| e.to_string())? {
            return Err(format!("file ends inside a {len}-byte block"));
        }
        let block = &self.bytes()[self.start..self.start + len];
        if u32_at(block, len - 4, big_endian) != Some(len as u32) {
            return Err("block total length in header and trailer differ".into());
        }
        let body = &block[8..len - 4];
        let mut packet = None;
        match block_type {
            pcapng::SHB => {
                check_options(body.get(16..).unwrap_or(&[]), big_endian)?;
                self.state = State::Pcapng { big_endian, interfaces: Vec::new() };
            }
            pcapng::IDB => {
                let interface = parse_idb(body, big_endian)?;
                if let State::Pcapng { interfaces, .. } = &mut self.state {
                    interfaces.push(interface);
                }
            }
            pcapng::EPB | pcapng::PB | pcapng::SPB => {
                packet = Some(self.packet_block(block_type, body, big_endian)?);
            }
            _ => {}
        }
        let data_start = self.start + 8;
        self.consume(len);
        Ok(packet.map(|p| PacketAt { at: data_start + p.at, ..p }))
    }

    /// Parses a packet block's body.
    fn packet_block(&self, block_type: u32, body: &[u8], big_endian: bool) -> Result<PacketAt, Damage> {
        let State::Pcapng { interfaces, .. } = &self.state else {
            return Err("packet block outside a section".into());
        };
        let field =
            |at: usize| u32_at(body, at, big_endian).ok_or_else(|| "packet block too short".to_string());
        let (iface, ts_high, ts_low, caplen, wire_len, data_at) = match block_type {
            pcapng::EPB => (field(0)?, field(4)?, field(8)?, field(12)?, field(16)?, 20),
            pcapng::PB => {
                let iface = u16_at(body, 0, big_endian).ok_or("packet block too short")?;
                (u32::from(iface), field(4)?, field(8)?, field(12)?, field(16)?, 20)
            }
            _ => {
                let wire_len = field(0)?;
                let snaplen = interfaces.first().map_or(u32::MAX, |i| i.snaplen);
                let room = body.len().saturating_sub(4) as u32;
                (0, 0, 0, wire_len.min(snaplen).min(room), wire_len, 4)
            }
        };
        let interface = interfaces
            .get(iface as usize)
            .ok_or_else(|| format!("packet block names interface {iface}, which is not described"))?;
        if caplen > MAX_CAPLEN || data_at + caplen as usize > body.len() {
            return Err(format!("captured length {caplen} does not fit in its block"));
        }
        let ts = if block_type == pcapng::SPB {
            Ts(0)
        } else {
            timestamp((u64::from(ts_high) << 32) | u64::from(ts_low), interface)
        };
        Ok(PacketAt { at: data_at, caplen: caplen as usize, ts, wire_len, link: interface.link })
    }
}

fn timestamp(units: u64, interface: &Interface) -> Ts {
    let secs = ((units / interface.units) as i64).saturating_add(interface.offset_secs);
    let frac = units % interface.units;
    let nanos = (u128::from(frac) * u128::from(SECOND) / u128::from(interface.units)) as u64;
    Ts((secs.max(0) as u64).saturating_mul(SECOND).saturating_add(nanos))
}

/// Checks that the options of a block fit in it.
fn check_options(mut options: &[u8], big_endian: bool) -> Result<(), Damage> {
    while options.len() >= 4 {
        let code = u16_at(options, 0, big_endian).unwrap_or(0);
        let len = usize::from(u16_at(options, 2, big_endian).unwrap_or(0));
        if code == 0 {
            return Ok(());
        }
        let padded = 4 + len.div_ceil(4) * 4;
        if padded > options.len() {
            return Err(format!("option {code} of length {len} runs past its block"));
        }
        options = &options[padded..];
    }
    Ok(())
}

fn parse_idb(body: &[u8], big_endian: bool) -> Result<Interface, Damage> {
    let dlt = u16_at(body, 0, big_endian).ok_or("interface description too short")?;
    let snaplen = u32_at(body, 4, big_endian).ok_or("interface description too short")?;
    let mut interface = Interface {
        link: LinkType::from_dlt(i32::from(dlt)).unwrap_or(LinkType::Unsupported),
        snaplen: if snaplen == 0 { u32::MAX } else { snaplen },
        units: 1_000_000,
        offset_secs: 0,
    };
    let mut options = body.get(8..).unwrap_or(&[]);
    check_options(options, big_endian)?;
    while options.len() >= 4 {
        let code = u16_at(options, 0, big_endian).unwrap_or(0);
        let len = usize::from(u16_at(options, 2, big_endian).unwrap_or(0));
        let value = options.get(4..4 + len).unwrap_or(&[]);
        match (code, value) {
            (0, _) => break,
            (9, [resol]) => {
                let exponent = u32::from(resol & 0x7f);
                let base: u64 = if resol & 0x80 == 0 { 10 } else { 2 };
                interface.units = base
                    .checked_pow(exponent)
                    .filter(|&u| u > 0)
                    .ok_or_else(|| format!("if_tsresol {resol:#x} is out of range"))?;
            }
            (14, v) if v.len() == 8 => {
                let raw: [u8; 8] = v.try_into().unwrap_or([0; 8]);
                interface.offset_secs =
                    if big_endian { i64::from_be_bytes(raw) } else { i64::from_le_bytes(raw) };
            }
            _ => {}
        }
        options = &options[(4 + len.div_ceil(4) * 4).min(options.len())..];
    }
    Ok(interface)
}

impl FrameSource for Savefile {
    #[inline]
    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        match self.state {
            State::Pcap { big_endian, nanos, link } => self.pcap_record(big_endian, nanos, link),
            State::Pcapng { .. } => self.pcapng_next(),
        }
    }

    fn as_savefile(&mut self) -> Option<&mut Savefile> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A little-endian microsecond pcap of `records` 100-byte frames.
    fn pcap(records: usize) -> Vec<u8> {
        let mut file = [&format::pcap::MAGIC_MICROS.to_le_bytes()[..], &[2, 0, 4, 0]].concat();
        file.resize(format::pcap::HEADER_LEN - 4, 0);
        file.extend_from_slice(&1u32.to_le_bytes());
        for i in 0..records {
            file.extend_from_slice(
                &[&(i as u32).to_le_bytes()[..], &[0; 4], &100u32.to_le_bytes(), &100u32.to_le_bytes()]
                    .concat(),
            );
            file.resize(file.len() + 100, i as u8);
        }
        file
    }

    /// Gives `bytes` a few at a time, interrupted now and then, then fails.
    struct Failing {
        bytes: io::Cursor<Vec<u8>>,
        reads: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.reads % 3 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let len = buf.len().min(1000);
            match self.bytes.read(&mut buf[..len])? {
                0 => Err(io::Error::other("the disk went away")),
                n => Ok(n),
            }
        }
    }

    fn read_all(file: &mut Savefile) -> (u64, CaptureError) {
        let mut frames = 0;
        loop {
            match file.next_frame() {
                Ok(Next::Frame(_)) => frames += 1,
                Ok(_) => panic!("the end is an error here"),
                Err(e) => return (frames, e),
            }
        }
    }

    #[test]
    fn a_failed_read_is_damage_after_every_record_read_before_it() {
        // 50 whole records, and 30 bytes of the next.
        let bytes = pcap(51)[..format::pcap::HEADER_LEN + 50 * 116 + 30].to_vec();
        let source = Failing { bytes: io::Cursor::new(bytes), reads: 0 };
        let mut file = Savefile::from_reader(Path::new("x.pcap"), Box::new(source)).expect("open");
        let (frames, err) = read_all(&mut file);
        assert_eq!(frames, 50);
        assert_eq!(
            err.to_string(),
            "x.pcap: damaged at record 51 (byte offset 5824): the disk went away; every frame before it was analysed"
        );
    }

    #[test]
    fn a_corrupt_compressed_stream_is_damage_in_the_decompressed_stream() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&pcap(20_000)).expect("compress");
        let mut gz = encoder.finish().expect("compress");
        // Corrupt data inflates to garbage before inflating fails, and the garbage is
        // then the reader's to find; a checksum that does not match is the decompressor's.
        let crc = gz.len() - 8;
        gz[crc] ^= 1;
        let mut file =
            Savefile::from_reader(Path::new("x.pcap.gz"), Box::new(io::Cursor::new(gz))).expect("open");
        let (frames, err) = read_all(&mut file);
        let CaptureError::Damaged { record, offset, compression, ref message, .. } = err else {
            panic!("{err}");
        };
        assert_eq!((frames, record, compression), (20_000, 20_001, Some(Compression::Gzip)));
        assert_eq!(offset, format::pcap::HEADER_LEN as u64 + frames * 116);
        assert!(message.starts_with("gzip: "), "{message}");
        assert!(err.to_string().contains("in the gzip-decompressed stream): gzip: "), "{err}");
    }

    #[test]
    fn tsresol_and_offset_convert_to_nanoseconds() {
        let micro = Interface { link: LinkType::Ethernet, snaplen: 0, units: 1_000_000, offset_secs: 0 };
        assert_eq!(timestamp(1_500_000, &micro), Ts(1_500_000_000));
        let binary = Interface { units: 1 << 10, offset_secs: 10, ..micro };
        assert_eq!(timestamp(512, &binary), Ts(10_500_000_000));
    }

    #[test]
    fn options_that_run_past_their_block_are_damage() {
        let mut options = vec![2, 0, 0x30, 0x30];
        options.extend_from_slice(&[0; 8]);
        assert!(check_options(&options, false).unwrap_err().contains("runs past"));
        assert!(check_options(&[2, 0, 4, 0, 1, 2, 3, 4, 0, 0, 0, 0], false).is_ok());
    }
}
