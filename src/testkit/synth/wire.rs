//! Building frames byte by byte, with correct lengths and checksums, and writing them
//! to classic pcap files.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use crate::decode::proto;
use crate::time::Ts;

/// How a frame is carried on the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// 802.1Q tags, outermost first (two or more: QinQ, the outer one 802.1ad).
    pub vlans: [Option<u16>; 2],
}

/// A transport segment to put in an IP packet.
#[derive(Clone, Copy, Debug)]
pub enum Segment<'a> {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &'a [u8],
    },
    Udp {
        payload: &'a [u8],
    },
    /// An ICMP/ICMPv6 message (type, code) whose body follows the 4 unused bytes.
    Icmp {
        kind: u8,
        code: u8,
        body: &'a [u8],
    },
}

/// TTL / hop limit used unless a test sets one.
pub const DEFAULT_TTL: u8 = 64;

/// An IP packet (header included) carrying `segment` from `src` to `dst`.
pub fn ip_packet(src: SocketAddr, dst: SocketAddr, ttl: u8, segment: Segment<'_>) -> Vec<u8> {
    let l4 = transport(src, dst, segment);
    let proto = l4_proto(src.ip(), segment);
    ip_with_payload(src.ip(), dst.ip(), ttl, proto, &l4, IpFragment::None)
}

/// IPv4 fragmentation fields of a packet being built.
#[derive(Clone, Copy, Debug)]
pub enum IpFragment {
    None,
    /// Identification, offset in bytes (a multiple of 8), more fragments.
    V4 {
        id: u16,
        offset: u16,
        more: bool,
    },
}

fn l4_proto(src: IpAddr, segment: Segment<'_>) -> u8 {
    match segment {
        Segment::Tcp { .. } => proto::TCP,
        Segment::Udp { .. } => proto::UDP,
        Segment::Icmp { .. } if src.is_ipv4() => proto::ICMP,
        Segment::Icmp { .. } => proto::ICMPV6,
    }
}

/// The transport header and payload of `segment`, checksummed.
pub fn transport(src: SocketAddr, dst: SocketAddr, segment: Segment<'_>) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(64);
    match segment {
        Segment::Tcp { flags, seq, ack, payload } => {
            l4.extend_from_slice(&src.port().to_be_bytes());
            l4.extend_from_slice(&dst.port().to_be_bytes());
            l4.extend_from_slice(&seq.to_be_bytes());
            l4.extend_from_slice(&ack.to_be_bytes());
            l4.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
            l4.extend_from_slice(payload);
        }
        Segment::Udp { payload } => {
            l4.extend_from_slice(&src.port().to_be_bytes());
            l4.extend_from_slice(&dst.port().to_be_bytes());
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(payload);
        }
        Segment::Icmp { kind, code, body } => {
            l4.extend_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
            l4.extend_from_slice(body);
        }
    }
    let proto = l4_proto(src.ip(), segment);
    let pseudo = proto != proto::ICMP;
    let sum = checksum(if pseudo { pseudo_header(src.ip(), dst.ip(), proto, l4.len()) } else { 0 }, &l4);
    let at = match segment {
        Segment::Tcp { .. } => 16,
        Segment::Udp { .. } => 6,
        Segment::Icmp { .. } => 2,
    };
    let sum = if sum == 0 && proto == proto::UDP { 0xffff } else { sum };
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    l4
}

/// An IP header in front of `payload`.
pub fn ip_with_payload(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    proto: u8,
    payload: &[u8],
    frag: IpFragment,
) -> Vec<u8> {
    let mut ip = Vec::with_capacity(40 + payload.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (id, flags_offset) = match frag {
                IpFragment::None => (0x1234, 0x4000u16),
                IpFragment::V4 { id, offset, more } => (id, (offset / 8) | if more { 0x2000 } else { 0 }),
            };
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&u16::to_be_bytes(id));
            ip.extend_from_slice(&flags_offset.to_be_bytes());
            ip.extend_from_slice(&[ttl, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let sum = checksum(0, &ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        _ => {
            let (s, d) = (v6_octets(src), v6_octets(dst));
            ip.extend_from_slice(&[0x60, 0, 0, 0]);
            ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[proto, ttl]);
            ip.extend_from_slice(&s);
            ip.extend_from_slice(&d);
        }
    }
    ip.extend_from_slice(payload);
    ip
}

fn v6_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

/// An Ethernet frame around an IP packet.
pub fn ethernet(link: Link, ip: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(22 + ip.len());
    frame.extend_from_slice(&group_mac(ip).unwrap_or([0x00, 0x15, 0x5d, 0x01, 0x02, 0x03]));
    frame.extend_from_slice(&[0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c]);
    let tags: Vec<u16> = link.vlans.iter().flatten().copied().collect();
    for (i, tag) in tags.iter().enumerate() {
        let tpid: u16 = if i == 0 && tags.len() > 1 { 0x88a8 } else { 0x8100 };
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&tag.to_be_bytes());
    }
    let ethertype: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) { 0x86dd } else { 0x0800 };
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(ip);
    frame
}

/// The destination MAC address a host uses for a multicast or limited-broadcast IP
/// destination (RFC 1112, RFC 2464); `None` for unicast.
fn group_mac(ip: &[u8]) -> Option<[u8; 6]> {
    match ip.first()? >> 4 {
        4 => {
            let d = ip.get(16..20)?;
            if d == [255, 255, 255, 255] {
                Some([0xff; 6])
            } else if d[0] >> 4 == 0xe {
                Some([0x01, 0x00, 0x5e, d[1] & 0x7f, d[2], d[3]])
            } else {
                None
            }
        }
        6 => {
            let d = ip.get(24..40)?;
            (d[0] == 0xff).then(|| [0x33, 0x33, d[12], d[13], d[14], d[15]])
        }
        _ => None,
    }
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        _ => {
            add(&v6_octets(src));
            add(&v6_octets(dst));
        }
    }
    sum + u32::from(proto) + len as u32
}

/// The Internet checksum of `bytes`, starting from a partial sum.
fn checksum(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = initial;
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes a classic little-endian pcap file with nanosecond timestamps.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header. `linktype` is a LINKTYPE_ number (1 = Ethernet).
    pub fn new(mut out: W, linktype: u32) -> io::Result<PcapWriter<W>> {
        out.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&[0; 8])?;
        out.write_all(&262_144u32.to_le_bytes())?;
        out.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { out })
    }

    /// Writes one record; `wire_len` may exceed the frame when it was cut by a snaplen.
    pub fn write(&mut self, ts: Ts, frame: &[u8], wire_len: u32) -> io::Result<()> {
        self.out.write_all(&(ts.secs() as u32).to_le_bytes())?;
        self.out.write_all(&(ts.subsec_nanos() as u32).to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(&wire_len.to_le_bytes())?;
        self.out.write_all(frame)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// `len` bytes of what a client (`from_client`) or a server says on a TCP connection to
/// `server_port`: the opening words of the protocol the port usually carries (a TLS
/// handshake on the ports the article lists as encrypted, an SMTP greeting and EHLO, an
/// HTTP request and status line...), then filler. What `app_proto` reads of a flow.
pub fn speech(server_port: u16, from_client: bool, len: usize) -> Vec<u8> {
    const TLS_CLIENT: &[u8] = &[22, 3, 1, 0, 0xc8, 1, 0, 0, 0xc4, 3, 3];
    const TLS_SERVER: &[u8] = &[22, 3, 3, 0, 0x5a, 2, 0, 0, 0x56, 3, 3];
    let opening: &[u8] = match (server_port, from_client) {
        (443 | 444 | 465 | 636 | 993 | 995 | 3269 | 5061 | 50636, true) => TLS_CLIENT,
        (443 | 444 | 465 | 636 | 993 | 995 | 3269 | 5061 | 50636, false) => TLS_SERVER,
        (25 | 475 | 587 | 717 | 2525, true) => b"EHLO client.contoso.example\r\n",
        (25 | 475 | 587 | 717 | 2525, false) => {
            b"220 mail.contoso.example Microsoft ESMTP MAIL Service ready\r\n"
        }
        (80, true) => b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.example\r\n\r\n",
        (80, false) => b"HTTP/1.1 302 Found\r\nLocation: https://mail.contoso.example/owa/\r\n\r\n",
        (143, true) => b"a1 CAPABILITY\r\n",
        (143, false) => b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n",
        (110, true) => b"CAPA\r\n",
        (110, false) => b"+OK The Microsoft Exchange POP3 service is ready.\r\n",
        (389 | 3268, _) => {
            &[0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00]
        }
        (135, true) => &[5, 0, 11, 3, 0x10, 0, 0, 0],
        (135, false) => &[5, 0, 12, 3, 0x10, 0, 0, 0],
        (445, _) => &[0, 0, 0, 0x40, 0xfe, b'S', b'M', b'B'],
        _ => &[],
    };
    let mut bytes: Vec<u8> = opening.iter().copied().take(len).collect();
    bytes.resize(len, if from_client { b'q' } else { b'r' });
    bytes
}
