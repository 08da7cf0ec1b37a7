//! Frame decoding: bytes and a link type in, one small owned [`Packet`] out.
//!
//! This module owns every borrowed view of frame bytes; nothing downstream ever sees a
//! slice of a frame. [`decode`] is a pure function of its inputs, so it is unit-tested,
//! fuzzed and benchmarked alone. It never panics: a frame that cannot be decoded comes
//! back as a [`Skip`] naming the layer and the reason, which the caller counts.
//!
//! Link layers: Ethernet (with up to [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad / 0x9100 tags),
//! Linux cooked capture v1 and v2, raw IP and BSD loopback. IPv4 (options, fragments)
//! and IPv6 (extension headers, fragments) through etherparse's lax slices; TCP, UDP,
//! and the ICMP / ICMPv6 errors whose quoted packet is evidence of filtering.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

/// Stacked VLAN tags past this count end decoding with [`Skip::VlanDepth`].
pub const MAX_VLAN_TAGS: usize = 4;

/// IP protocol numbers the rest of exwatch cares about.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// The link types exwatch decodes, by their LINKTYPE_/DLT_ number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    RawIp,
    Null,
    /// A link type exwatch does not decode (one interface of a pcapng file, say).
    Unsupported,
}

impl LinkType {
    /// Maps a libpcap link-layer header type to a decoder, or `None` when exwatch
    /// cannot decode it. Raw IP has three numbers: LINKTYPE_RAW (101) in files and
    /// DLT_RAW (12 on Linux, 14 on OpenBSD) as libpcap reports it.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            12 | 14 | 101 => Some(LinkType::RawIp),
            0 => Some(LinkType::Null),
            _ => None,
        }
    }
}

/// Capture timestamp in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub u64);

impl Ts {
    pub const fn from_secs(secs: u64) -> Ts {
        Ts(secs * 1_000_000_000)
    }

    pub fn saturating_add(self, nanos: u64) -> Ts {
        Ts(self.0.saturating_add(nanos))
    }
}

/// One directional transport 5-tuple, as the packet carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// Where a packet sits in IP fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented (IPv6 atomic fragments included).
    Whole,
    /// Offset zero with more to come: carries the transport header.
    First { id: u32 },
    /// A later fragment: no transport header, ports come from the first fragment.
    Later { id: u32 },
}

/// Why an ICMP error is evidence that a path is filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// ICMP destination unreachable 9, 10 or 13; ICMPv6 destination unreachable 1, 5
    /// or 6: a filter refused the quoted packet.
    Prohibited,
    /// Any other ICMP error (port unreachable, time exceeded...): not evidence.
    Other,
}

/// What the transport layer says beyond the ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP with its flags byte (`None` when the header was cut before it).
    Tcp {
        flags: Option<u8>,
    },
    Udp,
    /// An ICMP / ICMPv6 message that is not an error.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// An ICMP error and the 5-tuple of the packet it quotes.
    IcmpError {
        kind: IcmpError,
        quoted: Tuple,
    },
    /// Any other IP protocol (GRE, ESP, OSPF...), or a later fragment.
    Other,
}

/// The decoded, owned summary of one frame: all that the flow table and the policy need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts: Ts,
    /// Length of the frame on the wire (the capture header's original length).
    pub wire_len: u32,
    pub tuple: Tuple,
    pub transport: Transport,
    pub fragment: Fragment,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Outermost VLAN id, if tagged.
    pub vlan: Option<u16>,
}

/// The layer at which decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Link,
    Vlan,
    Ip,
    Transport,
    Icmp,
}

/// Why a frame produced no [`Packet`]. Each variant has a stable short code for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// The frame's link type is not one exwatch decodes.
    LinkUnsupported,
    /// The link header is cut short.
    LinkTruncated,
    /// More stacked VLAN tags than [`MAX_VLAN_TAGS`], or a tag cut short.
    VlanDepth,
    /// The frame carries something other than IPv4 or IPv6 (ARP, LLDP, STP...).
    NotIp,
    /// The IP header is cut short.
    IpTruncated,
    /// The IP header is invalid (bad version, header length, extension header).
    IpInvalid,
    /// The TCP or UDP header is cut before its ports.
    TransportTruncated,
    /// The ICMP header or its quoted packet is cut short or invalid.
    IcmpTruncated,
}

impl Skip {
    pub const ALL: [Skip; 8] = [
        Skip::LinkUnsupported,
        Skip::LinkTruncated,
        Skip::VlanDepth,
        Skip::NotIp,
        Skip::IpTruncated,
        Skip::IpInvalid,
        Skip::TransportTruncated,
        Skip::IcmpTruncated,
    ];

    /// Stable short code, used in the summary and in metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Skip::LinkUnsupported => "link_unsupported",
            Skip::LinkTruncated => "link_truncated",
            Skip::VlanDepth => "vlan_depth",
            Skip::NotIp => "not_ip",
            Skip::IpTruncated => "ip_truncated",
            Skip::IpInvalid => "ip_invalid",
            Skip::TransportTruncated => "transport_truncated",
            Skip::IcmpTruncated => "icmp_truncated",
        }
    }

    pub fn layer(self) -> Layer {
        match self {
            Skip::LinkUnsupported | Skip::LinkTruncated => Layer::Link,
            Skip::VlanDepth => Layer::Vlan,
            Skip::NotIp | Skip::IpTruncated | Skip::IpInvalid => Layer::Ip,
            Skip::TransportTruncated => Layer::Transport,
            Skip::IcmpTruncated => Layer::Icmp,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

fn is_vlan_ethertype(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The network-layer payload of a frame: where the IP header starts, and the outer VLAN.
struct Network<'a> {
    ip: &'a [u8],
    vlan: Option<u16>,
}

/// Walks the link layer down to the IP header.
fn network(link: LinkType, frame: &[u8]) -> Result<Network<'_>, Skip> {
    let (ethertype, rest) = match link {
        LinkType::Ethernet => (be16(frame, 12).ok_or(Skip::LinkTruncated)?, &frame[14..]),
        LinkType::LinuxSll => (be16(frame, 14).ok_or(Skip::LinkTruncated)?, &frame[16..]),
        LinkType::LinuxSll2 => {
            let ethertype = be16(frame, 0).ok_or(Skip::LinkTruncated)?;
            (ethertype, frame.get(20..).ok_or(Skip::LinkTruncated)?)
        }
        LinkType::RawIp => return Ok(Network { ip: frame, vlan: None }),
        LinkType::Unsupported => return Err(Skip::LinkUnsupported),
        LinkType::Null => {
            let family = frame.get(..4).ok_or(Skip::LinkTruncated)?;
            // The family is in the writer's byte order; both orders of the known values.
            let family = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let ethertype = match family {
                2 | 0x0200_0000 => ETHERTYPE_IPV4,
                24 | 28 | 30 | 0x1800_0000 | 0x1c00_0000 | 0x1e00_0000 => ETHERTYPE_IPV6,
                _ => return Err(Skip::NotIp),
            };
            (ethertype, &frame[4..])
        }
    };
    let (ethertype, payload, vlan) = strip_vlan_tags(ethertype, rest)?;
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(Network { ip: payload, vlan }),
        _ => Err(Skip::NotIp),
    }
}

/// Removes stacked 802.1Q / 802.1ad tags, returning the inner ethertype and payload.
fn strip_vlan_tags(mut ethertype: u16, mut rest: &[u8]) -> Result<(u16, &[u8], Option<u16>), Skip> {
    let mut outer = None;
    let mut depth = 0;
    while is_vlan_ethertype(ethertype) {
        depth += 1;
        if depth > MAX_VLAN_TAGS {
            return Err(Skip::VlanDepth);
        }
        let tci = be16(rest, 0).ok_or(Skip::VlanDepth)?;
        ethertype = be16(rest, 2).ok_or(Skip::VlanDepth)?;
        outer.get_or_insert(tci & 0x0fff);
        rest = &rest[4..];
    }
    Ok((ethertype, rest, outer))
}

/// Decodes one frame. `wire_len` is the frame's length on the wire, which may exceed
/// `frame.len()` when the capture was cut by its snap length.
pub fn decode(link: LinkType, ts: Ts, wire_len: u32, frame: &[u8]) -> Result<Packet, Skip> {
    let Network { ip, vlan } = network(link, frame)?;
    let inner = decode_ip(ip)?;
    Ok(Packet {
        ts,
        wire_len,
        tuple: inner.tuple,
        transport: inner.transport,
        fragment: inner.fragment,
        ttl: inner.ttl,
        vlan,
    })
}

/// What the IP layer and what follows it give.
struct IpDecoded {
    tuple: Tuple,
    transport: Transport,
    fragment: Fragment,
    ttl: u8,
}

fn ip_header_error(err: etherparse::err::ip::LaxHeaderSliceError) -> Skip {
    match err {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => Skip::IpTruncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => Skip::IpInvalid,
    }
}

fn decode_ip(bytes: &[u8]) -> Result<IpDecoded, Skip> {
    let (ip, ext_err) = LaxIpSlice::from_slice(bytes).map_err(ip_header_error)?;
    if ext_err.is_some() {
        return Err(Skip::IpInvalid);
    }
    let (src, dst, ttl, fragment) = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let fragment =
                fragment_of(h.fragments_offset().value(), h.more_fragments(), u32::from(h.identification()));
            (
                IpAddr::V4(Ipv4Addr::from(h.source())),
                IpAddr::V4(Ipv4Addr::from(h.destination())),
                h.ttl(),
                fragment,
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let mut fragment = Fragment::Whole;
            let mut destination = Ipv6Addr::from(h.destination());
            for ext in v6.extensions().clone() {
                match ext {
                    Ipv6ExtensionSlice::Fragment(f) => {
                        fragment =
                            fragment_of(f.fragment_offset().value(), f.more_fragments(), f.identification());
                    }
                    Ipv6ExtensionSlice::Routing(r) => {
                        destination = final_destination(r.slice()).unwrap_or(destination);
                    }
                    _ => {}
                }
            }
            (IpAddr::V6(Ipv6Addr::from(h.source())), IpAddr::V6(destination), h.hop_limit(), fragment)
        }
    };
    let payload = ip.payload();
    let proto = payload.ip_number.0;
    let mut tuple = Tuple { src, dst, sport: 0, dport: 0, proto };
    let transport = if matches!(fragment, Fragment::Later { .. }) {
        Transport::Other
    } else {
        decode_transport(proto, payload.payload, &mut tuple)?
    };
    Ok(IpDecoded { tuple, transport, fragment, ttl })
}

/// The final destination named by an IPv6 Routing header that still has segments to
/// visit: the transport endpoint (and the checksum) use it, not the next hop in the
/// IPv6 header. Types 0 and 2 list it last; type 4 (SRv6) first.
fn final_destination(routing: &[u8]) -> Option<Ipv6Addr> {
    let (&kind, &segments_left) = (routing.get(2)?, routing.get(3)?);
    if segments_left == 0 {
        return None;
    }
    let addresses = routing.get(8..)?;
    let at = match kind {
        0 | 2 => addresses.len().checked_sub(16)? / 16 * 16,
        4 => 0,
        _ => return None,
    };
    let octets: [u8; 16] = addresses.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(octets))
}

fn fragment_of(offset: u16, more: bool, id: u32) -> Fragment {
    match (offset, more) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    }
}

/// Reads the transport header. Works on raw bytes rather than etherparse's transport
/// slices because first fragments and ICMP quotes carry only the header's start.
fn decode_transport(proto: u8, l4: &[u8], tuple: &mut Tuple) -> Result<Transport, Skip> {
    match proto {
        proto::TCP | proto::UDP => {
            tuple.sport = be16(l4, 0).ok_or(Skip::TransportTruncated)?;
            tuple.dport = be16(l4, 2).ok_or(Skip::TransportTruncated)?;
            Ok(if proto == proto::TCP {
                Transport::Tcp { flags: l4.get(13).copied() }
            } else {
                Transport::Udp
            })
        }
        proto::ICMP | proto::ICMPV6 => {
            let (&kind, &code) = match l4 {
                [kind, code, ..] => (kind, code),
                _ => return Err(Skip::IcmpTruncated),
            };
            let error =
                if proto == proto::ICMP { icmpv4_error(kind, code) } else { icmpv6_error(kind, code) };
            match error {
                None => {
                    tuple.sport = u16::from(kind);
                    tuple.dport = u16::from(code);
                    Ok(Transport::Icmp { kind, code })
                }
                Some(kind) => {
                    let quoted = l4.get(8..).ok_or(Skip::IcmpTruncated)?;
                    let quoted = quoted_tuple(quoted)?;
                    Ok(Transport::IcmpError { kind, quoted })
                }
            }
        }
        _ => Ok(Transport::Other),
    }
}

fn icmpv4_error(kind: u8, code: u8) -> Option<IcmpError> {
    match (kind, code) {
        (3, 9 | 10 | 13) => Some(IcmpError::Prohibited),
        (3 | 4 | 5 | 11 | 12, _) => Some(IcmpError::Other),
        _ => None,
    }
}

fn icmpv6_error(kind: u8, code: u8) -> Option<IcmpError> {
    match (kind, code) {
        (1, 1 | 5 | 6) => Some(IcmpError::Prohibited),
        (1..=4, _) => Some(IcmpError::Other),
        _ => None,
    }
}

/// The 5-tuple of the packet an ICMP error quotes (its IP header and at least the
/// first 8 bytes of its transport header).
fn quoted_tuple(bytes: &[u8]) -> Result<Tuple, Skip> {
    let inner = decode_ip(bytes).map_err(|_| Skip::IcmpTruncated)?;
    match inner.transport {
        Transport::IcmpError { .. } => Err(Skip::IcmpTruncated),
        _ => Ok(inner.tuple),
    }
}

/// A hash of the unordered pair of IP addresses a frame belongs to, for routing frames
/// to workers: both directions of a flow, all fragments of a datagram, and ICMP errors
/// about a flow (hashed by their quoted packet) land on the same worker. A frame that
/// will not decode may go to any worker, which counts the skip.
pub fn route_hash(link: LinkType, frame: &[u8]) -> u64 {
    let Ok(Network { ip, .. }) = network(link, frame) else {
        return 0;
    };
    if let Some(hash) = route_hash_fast(ip) {
        return hash;
    }
    let Ok(inner) = decode_ip(ip) else {
        return 0;
    };
    let tuple = match inner.transport {
        Transport::IcmpError { quoted, .. } => quoted,
        _ => inner.tuple,
    };
    pair_hash(tuple.src, tuple.dst)
}

/// The route hash read straight from the header bytes, for the common packets: IPv4, and
/// IPv6 without extension headers, that are not ICMP errors. `None` sends the packet
/// through the full decoder (whose routing-header and ICMP-quote rules then apply).
fn route_hash_fast(ip: &[u8]) -> Option<u64> {
    let addr4 = |at: usize| -> Option<IpAddr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    };
    let addr6 = |at: usize| -> Option<IpAddr> {
        let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    };
    match ip.first()? >> 4 {
        4 if !matches!(*ip.get(9)?, proto::ICMP) => Some(pair_hash(addr4(12)?, addr4(16)?)),
        6 if matches!(*ip.get(6)?, proto::TCP | proto::UDP) => Some(pair_hash(addr6(8)?, addr6(24)?)),
        _ => None,
    }
}

/// Symmetric hash of two addresses: `pair_hash(a, b) == pair_hash(b, a)`.
pub fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    fn fold(addr: IpAddr) -> u64 {
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let folded = (bits as u64) ^ ((bits >> 64) as u64);
        // splitmix64 finalizer: spreads nearby addresses over all workers.
        let mut z = folded.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fold(a) ^ fold(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth_ipv4_tcp(flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags]);
        f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn decodes_ethernet_ipv4_tcp() {
        let frame = eth_ipv4_tcp(tcp_flags::SYN);
        let p = decode(LinkType::Ethernet, Ts(7), 54, &frame).unwrap();
        assert_eq!(p.tuple.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(p.tuple.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!((p.tuple.sport, p.tuple.dport, p.tuple.proto), (1234, 443, 6));
        assert_eq!(p.transport, Transport::Tcp { flags: Some(tcp_flags::SYN) });
        assert_eq!(p.ttl, 64);
        assert_eq!(p.fragment, Fragment::Whole);
    }

    #[test]
    fn every_truncation_is_a_counted_skip_or_a_packet() {
        let frame = eth_ipv4_tcp(tcp_flags::ACK);
        for len in 0..frame.len() {
            let got = decode(LinkType::Ethernet, Ts(0), frame.len() as u32, &frame[..len]);
            match len {
                0..=13 => assert_eq!(got, Err(Skip::LinkTruncated), "len {len}"),
                14..=33 => assert_eq!(got, Err(Skip::IpTruncated), "len {len}"),
                34..=37 => assert_eq!(got, Err(Skip::TransportTruncated), "len {len}"),
                38..=47 => assert_eq!(got.unwrap().transport, Transport::Tcp { flags: None }),
                _ => assert!(got.is_ok(), "len {len}"),
            }
        }
    }

    #[test]
    fn vlan_stack_depth_is_bounded() {
        let base = eth_ipv4_tcp(0);
        let mut frame = base[..12].to_vec();
        for _ in 0..MAX_VLAN_TAGS {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        frame.extend_from_slice(&base[12..]);
        assert!(decode(LinkType::Ethernet, Ts(0), 0, &frame).is_ok());
        let mut deeper = frame[..12].to_vec();
        deeper.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        deeper.extend_from_slice(&frame[12..]);
        assert_eq!(decode(LinkType::Ethernet, Ts(0), 0, &deeper), Err(Skip::VlanDepth));
    }

    #[test]
    fn the_fast_route_hash_agrees_with_the_decoder() {
        for (link, frame) in sample_frames() {
            let Ok(Network { ip, .. }) = network(link, &frame) else { continue };
            if let (Some(fast), Ok(inner)) = (route_hash_fast(ip), decode_ip(ip)) {
                assert_eq!(fast, pair_hash(inner.tuple.src, inner.tuple.dst), "{frame:02x?}");
            }
        }
    }

    #[test]
    fn pair_hash_is_symmetric() {
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
        assert_eq!(pair_hash(a, b), pair_hash(b, a));
        assert_ne!(pair_hash(a, b), pair_hash(a, a));
    }

    /// Frames of every shape the decoder handles, built by the generator.
    fn sample_frames() -> Vec<(LinkType, Vec<u8>)> {
        use crate::synth::{wire::Link, Scenario};
        let sa = |t: &str| t.parse::<std::net::SocketAddr>().unwrap();
        let mut s = Scenario::new();
        s.tcp_session(sa("10.20.0.1:50000"), sa("10.10.1.11:443"), 1);
        s.link = Link { vlans: [Some(100), Some(10)] };
        s.udp_exchange(sa("[2001:db8::1]:5353"), sa("[2001:db8::2]:53"), 1);
        s.link = Link::default();
        s.icmp_prohibited("10.0.0.254".parse().unwrap(), sa("10.10.1.11:50001"), sa("10.10.1.12:135"));
        s.icmp_prohibited(
            "2001:db8::fe".parse().unwrap(),
            sa("[2001:db8::1]:50002"),
            sa("[2001:db8::2]:445"),
        );
        s.udp_fragmented(sa("10.0.0.1:53"), sa("10.0.0.2:40000"), 3000, 1480, &[0, 1, 2]);
        let mut frames: Vec<_> = s.frames.iter().map(|f| (LinkType::Ethernet, f.data.clone())).collect();
        // The same IP packets under the other link layers.
        for f in &s.frames {
            let ip = network(LinkType::Ethernet, &f.data).unwrap().ip;
            frames.push((LinkType::RawIp, ip.to_vec()));
            let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
            sll.extend_from_slice(ip);
            frames.push((LinkType::LinuxSll, sll));
            let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
            sll2.extend_from_slice(ip);
            frames.push((LinkType::LinuxSll2, sll2));
        }
        frames
    }

    #[test]
    fn sample_frames_decode_under_every_link_type() {
        for (link, frame) in sample_frames() {
            let packet = decode(link, Ts(0), frame.len() as u32, &frame);
            assert!(packet.is_ok(), "{link:?} {frame:02x?}: {packet:?}");
        }
    }

    #[test]
    fn icmp_errors_carry_the_quoted_tuple() {
        let frames = sample_frames();
        let quoted: Vec<_> = frames
            .iter()
            .filter(|(link, _)| *link == LinkType::Ethernet)
            .filter_map(|(link, f)| match decode(*link, Ts(0), 0, f).ok()?.transport {
                Transport::IcmpError { kind: IcmpError::Prohibited, quoted } => Some(quoted),
                _ => None,
            })
            .collect();
        assert_eq!(quoted.len(), 2);
        assert_eq!((quoted[0].dport, quoted[0].proto), (135, proto::TCP));
        assert_eq!(quoted[1].dst, "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn every_truncation_of_every_sample_frame_is_handled() {
        for (link, frame) in sample_frames() {
            for len in 0..frame.len() {
                let cut = &frame[..len];
                if let Ok(p) = decode(link, Ts(0), frame.len() as u32, cut) {
                    // A cut frame may lose its ports, never invent them.
                    let whole = decode(link, Ts(0), frame.len() as u32, &frame).unwrap();
                    assert_eq!(p.tuple.src, whole.tuple.src);
                    assert!(p.tuple.sport == whole.tuple.sport || p.tuple.sport == 0);
                }
                route_hash(link, cut);
            }
        }
    }

    #[test]
    fn later_fragments_have_no_ports() {
        let frames = sample_frames();
        let kinds: Vec<_> = frames
            .iter()
            .filter(|(link, _)| *link == LinkType::Ethernet)
            .filter_map(|(link, f)| decode(*link, Ts(0), 0, f).ok())
            .filter(|p| p.fragment != Fragment::Whole)
            .map(|p| (p.fragment, p.tuple.sport))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Fragment::First { id: 0x4242 }, 53),
                (Fragment::Later { id: 0x4242 }, 0),
                (Fragment::Later { id: 0x4242 }, 0)
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Null] {
                let _ = decode(link, Ts(0), bytes.len() as u32, &bytes);
                route_hash(link, &bytes);
            }
        }

        #[test]
        fn mutated_frames_never_panic(index in 0usize..64, at in 0usize..200, value in proptest::prelude::any::<u8>()) {
            let frames = sample_frames();
            let (link, mut frame) = frames[index % frames.len()].clone();
            let at = at % frame.len();
            frame[at] = value;
            let _ = decode(link, Ts(0), frame.len() as u32, &frame);
            route_hash(link, &frame);
        }
    }
}
