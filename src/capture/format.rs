//! What exwatch knows of the pcap and pcapng file formats outside the reader itself:
//! the magic numbers and block types, telling a capture from other files by its first
//! bytes ([`sniff`]), walking the records of a file to name the byte offset of damage
//! ([`record_offset`]), and the one message for a link type exwatch cannot decode.
//!
//! Nothing here is on the packet path; the native reader ([`super::Savefile`]) uses the
//! constants, the libpcap reader and the directory walk of the binary use the rest.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes [`sniff`] needs to tell a format.
pub const MAGIC_LEN: usize = 4;

/// Classic pcap (the libpcap file format, draft-ietf-opsawg-pcap).
pub mod pcap {
    /// The magic number of microsecond timestamps, in the writer's byte order.
    pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
    /// The magic number of nanosecond timestamps, in the writer's byte order.
    pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
    pub const HEADER_LEN: usize = 24;
    /// Where the file header holds the major version (2), as a `u16`.
    pub const VERSION_MAJOR: usize = 4;
    /// Where the file header holds the link type, as a `u32`.
    pub const LINKTYPE: usize = 20;
    /// A record header: seconds, fraction, captured length, length on the wire.
    pub const RECORD_HEADER_LEN: usize = 16;
    /// Where a record header holds the captured length, as a `u32`.
    pub const CAPLEN: usize = 8;
}

/// pcapng (draft-ietf-opsawg-pcapng).
pub mod pcapng {
    /// Section header block; its type reads the same in both byte orders, and it is the
    /// file's first four bytes.
    pub const SHB: u32 = 0x0a0d_0d0a;
    /// Interface description block.
    pub const IDB: u32 = 1;
    /// Obsolete packet block.
    pub const PB: u32 = 2;
    /// Simple packet block.
    pub const SPB: u32 = 3;
    /// Enhanced packet block.
    pub const EPB: u32 = 6;
    /// The byte-order magic of a section header, in the section's byte order.
    pub const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
    /// Where a section header holds the byte-order magic.
    pub const BYTE_ORDER_AT: usize = 8;
    /// Where every block holds its total length, after its type.
    pub const BLOCK_LEN_AT: usize = 4;
    /// Block type, total length, and the total length repeated at the end.
    pub const MIN_BLOCK_LEN: usize = 12;

    /// Whether a block of this type holds a packet.
    pub fn is_packet(block_type: u32) -> bool {
        matches!(block_type, PB | SPB | EPB)
    }
}

/// A capture file's format, as its first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap: the byte order it was written in, and whether its timestamps count
    /// nanoseconds rather than microseconds.
    Pcap { big_endian: bool, nanos: bool },
    /// pcapng: each section says its own byte order.
    Pcapng,
}

/// The format of a file that starts with `first`, or `None` when it is not a capture
/// (or fewer than [`MAGIC_LEN`] bytes are given).
pub fn sniff(first: &[u8]) -> Option<Format> {
    let magic: [u8; MAGIC_LEN] = first.get(..MAGIC_LEN)?.try_into().ok()?;
    let (le, be) = (u32::from_le_bytes(magic), u32::from_be_bytes(magic));
    match (le, be) {
        (pcapng::SHB, _) => Some(Format::Pcapng),
        (pcap::MAGIC_MICROS, _) => Some(Format::Pcap { big_endian: false, nanos: false }),
        (pcap::MAGIC_NANOS, _) => Some(Format::Pcap { big_endian: false, nanos: true }),
        (_, pcap::MAGIC_MICROS) => Some(Format::Pcap { big_endian: true, nanos: false }),
        (_, pcap::MAGIC_NANOS) => Some(Format::Pcap { big_endian: true, nanos: true }),
        _ => None,
    }
}

/// The name libpcap gives a link type, or "unknown".
pub fn link_name(dlt: i32) -> String {
    ::pcap::Linktype(dlt).get_name().unwrap_or_else(|_| "unknown".into())
}

/// Why a capture of link type `dlt` (named `name`) cannot be analysed: the one wording,
/// for files and interfaces alike.
pub fn unsupported_link(dlt: i32, name: &str) -> String {
    format!(
        "link type {dlt} ({name}) is not supported (Ethernet, Linux cooked v1/v2, raw IP (101, 228 IPv4, 229 IPv6), BSD loopback are)"
    )
}

/// Byte offset at which record number `skip + 1` starts in a pcap or pcapng file, by
/// walking the record headers. Used only to report damage, never on the packet path.
pub fn record_offset(path: &Path, skip: u64) -> Option<u64> {
    record_offset_in(&mut BufReader::new(File::open(path).ok()?), skip)
}

/// [`record_offset`] on any seekable bytes. A file that is not a capture gives 0.
fn record_offset_in(file: &mut (impl Read + Seek), skip: u64) -> Option<u64> {
    let mut magic = [0u8; MAGIC_LEN];
    file.read_exact(&mut magic).ok()?;
    match sniff(&magic) {
        Some(Format::Pcap { big_endian, .. }) => walk_pcap(file, skip, big_endian),
        Some(Format::Pcapng) => walk_pcapng(file, skip),
        None => Some(0),
    }
}

fn read_u32(file: &mut impl Read, big_endian: bool) -> Option<u32> {
    let mut b = [0u8; 4];
    file.read_exact(&mut b).ok()?;
    Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
}

fn walk_pcap(file: &mut (impl Read + Seek), skip: u64, big_endian: bool) -> Option<u64> {
    let mut offset = pcap::HEADER_LEN as u64;
    for _ in 0..skip {
        file.seek(SeekFrom::Start(offset + pcap::CAPLEN as u64)).ok()?;
        let caplen = read_u32(file, big_endian)?;
        offset += pcap::RECORD_HEADER_LEN as u64 + u64::from(caplen);
    }
    Some(offset)
}

fn walk_pcapng(file: &mut (impl Read + Seek), skip: u64) -> Option<u64> {
    let mut offset = 0u64;
    let mut big_endian = false;
    let mut packets = 0u64;
    loop {
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut head = [0u8; pcapng::MIN_BLOCK_LEN];
        if file.read_exact(&mut head).is_err() {
            return Some(offset);
        }
        let field = |at: usize| [head[at], head[at + 1], head[at + 2], head[at + 3]];
        let block_type = u32::from_le_bytes(field(0));
        if block_type == pcapng::SHB {
            big_endian = field(pcapng::BYTE_ORDER_AT) == pcapng::BYTE_ORDER_MAGIC.to_be_bytes();
        }
        let len_bytes = field(pcapng::BLOCK_LEN_AT);
        let len = if big_endian { u32::from_be_bytes(len_bytes) } else { u32::from_le_bytes(len_bytes) };
        if pcapng::is_packet(block_type) || pcapng::is_packet(block_type.swap_bytes()) {
            if packets == skip {
                return Some(offset);
            }
            packets += 1;
        }
        if len < pcapng::MIN_BLOCK_LEN as u32 || len % 4 != 0 {
            return Some(offset);
        }
        offset += u64::from(len);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::super::{CaptureError, Savefile};
    use super::*;

    #[test]
    fn sniff_knows_every_magic_in_both_byte_orders() {
        let pcap = |big_endian, nanos| Some(Format::Pcap { big_endian, nanos });
        assert_eq!(sniff(&[0xd4, 0xc3, 0xb2, 0xa1]), pcap(false, false));
        assert_eq!(sniff(&[0xa1, 0xb2, 0xc3, 0xd4]), pcap(true, false));
        assert_eq!(sniff(&[0x4d, 0x3c, 0xb2, 0xa1]), pcap(false, true));
        assert_eq!(sniff(&[0xa1, 0xb2, 0x3c, 0x4d]), pcap(true, true));
        assert_eq!(sniff(&[0x0a, 0x0d, 0x0d, 0x0a]), Some(Format::Pcapng));
        // What follows the magic does not matter.
        assert_eq!(sniff(&[0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0]), Some(Format::Pcapng));
    }

    #[test]
    fn sniff_refuses_short_and_other_files() {
        assert_eq!(sniff(&[0xd4, 0xc3, 0xb2]), None, "3 bytes");
        assert_eq!(sniff(&[]), None);
        assert_eq!(sniff(b"GET / HTTP/1.1"), None);
        assert_eq!(sniff(&[0xd4, 0xc3, 0xb2, 0xa2]), None, "one bit off");
        assert_eq!(sniff(&[0x1f, 0x8b, 0x08, 0x00]), None, "compression is told apart before");
    }

    #[test]
    fn the_unsupported_link_message_names_type_and_alternatives() {
        assert_eq!(
            unsupported_link(239, &link_name(239)),
            "link type 239 (NFLOG) is not supported (Ethernet, Linux cooked v1/v2, raw IP (101, 228 IPv4, 229 IPv6), BSD loopback are)"
        );
        assert_eq!(link_name(65_000), "unknown");
    }

    #[test]
    fn files_and_interfaces_say_it_the_same_way() {
        let said =
            "link type 239 (NFLOG) is not supported (Ethernet, Linux cooked v1/v2, raw IP (101, 228 IPv4, 229 IPv6), BSD loopback are)";
        let interface = CaptureError::LinkType { path: "nflog".into(), dlt: 239, name: "NFLOG".into() };
        assert_eq!(interface.to_string(), format!("nflog: {said}"));
        let mut header = pcap_file(false, &[]);
        header[4] = 2;
        header[pcap::LINKTYPE] = 239;
        let file = Savefile::from_reader(Path::new("x.pcap"), Box::new(Cursor::new(header)));
        assert_eq!(file.err().map(|e| e.to_string()), Some(format!("x.pcap: cannot open: {said}")));
    }

    /// A pcap file of records with these captured lengths, in either byte order.
    fn pcap_file(big_endian: bool, caplens: &[u32]) -> Vec<u8> {
        let word = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut file = word(pcap::MAGIC_MICROS).to_vec();
        file.resize(pcap::HEADER_LEN, 0);
        for &caplen in caplens {
            file.extend_from_slice(&[0; 8]);
            file.extend_from_slice(&word(caplen));
            file.extend_from_slice(&word(caplen));
            file.resize(file.len() + caplen as usize, 0xee);
        }
        file
    }

    #[test]
    fn pcap_records_are_walked_in_either_byte_order() {
        for big_endian in [false, true] {
            let file = pcap_file(big_endian, &[60, 1514, 0]);
            let offsets: Vec<_> =
                (0..4).map(|skip| record_offset_in(&mut Cursor::new(&file), skip)).collect();
            assert_eq!(offsets, [Some(24), Some(24 + 76), Some(24 + 76 + 1530), Some(24 + 76 + 1530 + 16)]);
        }
    }

    /// A pcapng block of `block_type` with `body`, little-endian.
    fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let len = (pcapng::MIN_BLOCK_LEN + body.len()) as u32;
        [&block_type.to_le_bytes()[..], &len.to_le_bytes(), body, &len.to_le_bytes()].concat()
    }

    #[test]
    fn pcapng_packets_are_counted_across_other_blocks() {
        let shb = block(
            pcapng::SHB,
            &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        let idb = block(pcapng::IDB, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let epb = block(pcapng::EPB, &[0; 24]);
        let spb = block(pcapng::SPB, &[0; 8]);
        let file = [&shb[..], &idb, &epb, &spb, &epb].concat();
        let first = (shb.len() + idb.len()) as u64;
        let offsets: Vec<_> = (0..4).map(|skip| record_offset_in(&mut Cursor::new(&file), skip)).collect();
        let (e, s) = (epb.len() as u64, spb.len() as u64);
        assert_eq!(offsets, [Some(first), Some(first + e), Some(first + e + s), Some(file.len() as u64)]);
    }

    #[test]
    fn a_broken_block_length_stops_the_walk_there() {
        let shb = block(pcapng::SHB, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0]);
        let mut broken = block(pcapng::IDB, &[1, 0, 0, 0, 0, 0, 0, 0]);
        broken[4] = 7;
        let mut file = Cursor::new([&shb[..], &broken].concat());
        assert_eq!(record_offset_in(&mut file, 5), Some(shb.len() as u64));
        assert_eq!(record_offset_in(&mut Cursor::new(b"not a capture".to_vec()), 3), Some(0));
    }
}
