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
//! and the ICMP / ICMPv6 errors whose quoted packet is evidence of filtering. The most
//! common packet, TCP or UDP right after an IPv4 or a plain IPv6 header, is read by hand
//! first (decode went from 381 to 223 instructions a packet on the bench capture), and
//! is tested to give what etherparse's path gives.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

/// Stacked VLAN tags past this count end decoding with [`Skip::VlanDepth`].
pub const MAX_VLAN_TAGS: usize = 4;
/// MPLS labels past this count end decoding with [`Skip::EncapDepth`].
pub const MAX_MPLS_LABELS: usize = 8;
/// Tunnels (GRE, ERSPAN, VXLAN) nested past this depth end decoding with
/// [`Skip::EncapDepth`].
pub const MAX_TUNNEL_DEPTH: u8 = 3;

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
    /// TCP with its flags byte (`None` when the header was cut before it), sequence
    /// number, and payload length (`None` when the capture cut the packet short).
    Tcp {
        flags: Option<u8>,
        seq: Option<u32>,
        len: Option<u32>,
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
    /// How the packet was carried, when it came out of a tunnel.
    pub tunnel: Option<Tunnel>,
    /// Source MAC address of the (outermost) Ethernet frame, where there is one.
    pub src_mac: Option<[u8; 6]>,
}

/// Encapsulations exwatch looks through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelKind {
    Gre,
    Erspan,
    Vxlan,
}

impl TunnelKind {
    /// The name used in events.
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Gre => "GRE",
            TunnelKind::Erspan => "ERSPAN",
            TunnelKind::Vxlan => "VXLAN",
        }
    }
}

/// The outermost tunnel a packet came out of, and how many were nested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub depth: u8,
}

/// The layer at which decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Link,
    Vlan,
    Ip,
    Transport,
    Icmp,
    Tunnel,
}

impl Layer {
    /// Stable short name, for metric labels and the summary.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Link => "link",
            Layer::Vlan => "vlan",
            Layer::Ip => "ip",
            Layer::Transport => "transport",
            Layer::Icmp => "icmp",
            Layer::Tunnel => "tunnel",
        }
    }
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
    /// A GRE, ERSPAN or VXLAN header is cut short.
    TunnelTruncated,
    /// More nested tunnels than [`MAX_TUNNEL_DEPTH`], or MPLS labels than
    /// [`MAX_MPLS_LABELS`].
    EncapDepth,
}

impl Skip {
    pub const ALL: [Skip; 10] = [
        Skip::LinkUnsupported,
        Skip::LinkTruncated,
        Skip::VlanDepth,
        Skip::NotIp,
        Skip::IpTruncated,
        Skip::IpInvalid,
        Skip::TransportTruncated,
        Skip::IcmpTruncated,
        Skip::TunnelTruncated,
        Skip::EncapDepth,
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
            Skip::TunnelTruncated => "tunnel_truncated",
            Skip::EncapDepth => "encap_depth",
        }
    }

    /// The layer decoding stopped at.
    pub fn layer(self) -> Layer {
        match self {
            Skip::LinkUnsupported | Skip::LinkTruncated => Layer::Link,
            Skip::VlanDepth => Layer::Vlan,
            Skip::NotIp | Skip::IpTruncated | Skip::IpInvalid => Layer::Ip,
            Skip::TransportTruncated => Layer::Transport,
            Skip::IcmpTruncated => Layer::Icmp,
            Skip::TunnelTruncated | Skip::EncapDepth => Layer::Tunnel,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const ETHERTYPE_TEB: u16 = 0x6558;
const ETHERTYPE_ERSPAN_2: u16 = 0x88be;
const ETHERTYPE_ERSPAN_3: u16 = 0x22eb;
const GRE: u8 = 47;
const VXLAN_PORT: u16 = 4789;

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
#[inline(always)]
fn network(link: LinkType, frame: &[u8]) -> Result<Network<'_>, Skip> {
    // Most frames: untagged Ethernet carrying IP.
    if let (LinkType::Ethernet, Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6)) = (link, be16(frame, 12)) {
        return Ok(Network { ip: &frame[14..], vlan: None });
    }
    network_any(link, frame)
}

/// [`network`] for every other link layer and encapsulation.
fn network_any(link: LinkType, frame: &[u8]) -> Result<Network<'_>, Skip> {
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
    let ip = match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => payload,
        ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => strip_mpls(payload)?,
        ETHERTYPE_PPPOE_SESSION => strip_pppoe(payload)?,
        _ => return Err(Skip::NotIp),
    };
    Ok(Network { ip, vlan })
}

/// Pops an MPLS label stack; the payload must be IP (the first nibble says which).
fn strip_mpls(mut rest: &[u8]) -> Result<&[u8], Skip> {
    for _ in 0..MAX_MPLS_LABELS {
        let label = rest.get(..4).ok_or(Skip::LinkTruncated)?;
        rest = &rest[4..];
        if label[2] & 0x01 != 0 {
            return match rest.first().map(|b| b >> 4) {
                Some(4 | 6) => Ok(rest),
                Some(_) => Err(Skip::NotIp),
                None => Err(Skip::LinkTruncated),
            };
        }
    }
    Err(Skip::EncapDepth)
}

/// Skips a PPPoE session header and the PPP protocol field (one byte when compressed,
/// which an odd first byte says).
fn strip_pppoe(rest: &[u8]) -> Result<&[u8], Skip> {
    let first = *rest.get(6).ok_or(Skip::LinkTruncated)?;
    let (protocol, payload) =
        if first & 1 == 1 { (u16::from(first), 7) } else { (be16(rest, 6).ok_or(Skip::LinkTruncated)?, 8) };
    match protocol {
        0x0021 | 0x0057 => Ok(&rest[payload..]),
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
    let src_mac = match link {
        LinkType::Ethernet => frame.get(6..12).and_then(|m| m.try_into().ok()),
        _ => None,
    };
    let (inner, tunnel) = match decode_ip_fast(ip) {
        Some(inner) => (inner, None),
        None => decode_ip_tunnels(ip)?,
    };
    Ok(Packet {
        ts,
        wire_len,
        tuple: inner.tuple,
        transport: inner.transport,
        fragment: inner.fragment,
        ttl: inner.ttl,
        vlan,
        tunnel,
        src_mac,
    })
}

/// Decodes an IP packet the fast path left, and what it carries when it is a tunnel:
/// mirrored traffic arrives inside GRE, ERSPAN or VXLAN, and the inner flow is judged.
#[inline(never)]
fn decode_ip_tunnels(ip: &[u8]) -> Result<(IpDecoded<'_>, Option<Tunnel>), Skip> {
    let mut inner = decode_ip_full(ip)?;
    let mut tunnel = None;
    let mut depth = 0;
    while let Some((kind, link, bytes)) = inner.carries {
        depth += 1;
        if depth > MAX_TUNNEL_DEPTH {
            return Err(Skip::EncapDepth);
        }
        tunnel.get_or_insert(Tunnel { kind, depth: 0 }).depth = depth;
        inner = decode_ip(network(link, bytes)?.ip)?;
    }
    Ok((inner, tunnel))
}

/// What the IP layer and what follows it give.
#[derive(Debug, PartialEq, Eq)]
struct IpDecoded<'a> {
    tuple: Tuple,
    transport: Transport,
    fragment: Fragment,
    ttl: u8,
    carries: Option<Carried<'a>>,
}

/// A tunnel's payload: its kind, and the frame it carries with that frame's link type.
type Carried<'a> = (TunnelKind, LinkType, &'a [u8]);

fn ip_header_error(err: etherparse::err::ip::LaxHeaderSliceError) -> Skip {
    match err {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => Skip::IpTruncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => Skip::IpInvalid,
    }
}

fn decode_ip(bytes: &[u8]) -> Result<IpDecoded<'_>, Skip> {
    match decode_ip_fast(bytes) {
        Some(decoded) => Ok(decoded),
        None => decode_ip_full(bytes),
    }
}

/// The common packet read straight from its header bytes: TCP or UDP (not VXLAN) right
/// after an IPv4 header, or after an IPv6 header without extensions, with lengths that
/// agree with the bytes captured. `None` for everything else, which [`decode_ip_full`]
/// reads; on what it accepts, this gives exactly what that would (a test holds it to it).
#[inline(always)]
fn decode_ip_fast(ip: &[u8]) -> Option<IpDecoded<'_>> {
    let (src, dst, ttl, proto, fragment, l4) = match ip.first()? >> 4 {
        4 => {
            let header: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
            let ihl = usize::from(header[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return None;
            }
            let flags_offset = u16::from_be_bytes([header[6], header[7]]);
            let id = u32::from(u16::from_be_bytes([header[4], header[5]]));
            let fragment = fragment_of(flags_offset & 0x1fff, flags_offset & 0x2000 != 0, id);
            let src = IpAddr::V4(Ipv4Addr::new(header[12], header[13], header[14], header[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(header[16], header[17], header[18], header[19]));
            (src, dst, header[8], header[9], fragment, &ip[ihl..total])
        }
        6 => {
            let header: &[u8; 40] = ip.get(..40)?.try_into().ok()?;
            let payload = usize::from(u16::from_be_bytes([header[4], header[5]]));
            if payload == 0 || 40 + payload > ip.len() {
                return None;
            }
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?));
            (src, dst, header[7], header[6], Fragment::Whole, &ip[40..40 + payload])
        }
        _ => return None,
    };
    if !matches!(proto, proto::TCP | proto::UDP) {
        return None;
    }
    let mut tuple = Tuple { src, dst, sport: 0, dport: 0, proto };
    if matches!(fragment, Fragment::Later { .. }) {
        return Some(IpDecoded { tuple, transport: Transport::Other, fragment, ttl, carries: None });
    }
    let ports = l4.get(..4)?;
    tuple.sport = u16::from_be_bytes([ports[0], ports[1]]);
    tuple.dport = u16::from_be_bytes([ports[2], ports[3]]);
    let transport = if proto == proto::TCP {
        let header = l4.get(12).map(|b| usize::from(b >> 4) * 4);
        let len = match (fragment, header) {
            (Fragment::Whole, Some(header)) => l4.len().checked_sub(header).map(|n| n as u32),
            _ => None,
        };
        let seq = l4.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        Transport::Tcp { flags: l4.get(13).copied(), seq, len }
    } else if tuple.dport == VXLAN_PORT {
        return None;
    } else {
        Transport::Udp
    };
    Some(IpDecoded { tuple, transport, fragment, ttl, carries: None })
}

/// Any IP packet, through etherparse's lax slices.
fn decode_ip_full(bytes: &[u8]) -> Result<IpDecoded<'_>, Skip> {
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
    let mut transport = if matches!(fragment, Fragment::Later { .. }) {
        Transport::Other
    } else {
        decode_transport(proto, payload.payload, &mut tuple)?
    };
    if let Transport::Tcp { len, .. } = &mut transport {
        // What the segment carried, from the lengths the IP header declares: a packet cut
        // by the snap length, or a tunnel packet split into IP fragments, still says it.
        let declared = match &ip {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                let auth = v4.extensions().auth.map_or(0, |a| a.slice().len());
                usize::from(h.total_len()).checked_sub(h.slice().len() + auth)
            }
            LaxIpSlice::Ipv6(v6) => {
                usize::from(v6.header().payload_length()).checked_sub(v6.extensions().slice().len())
            }
        };
        let header = payload.payload.get(12).map(|b| usize::from(b >> 4) * 4);
        *len = match (fragment, declared, header) {
            (Fragment::Whole, Some(declared), Some(header)) if declared > 0 => {
                declared.checked_sub(header).map(|n| n as u32)
            }
            _ => None,
        };
    }
    // A tunnel packet's first fragment holds the inner headers: judge the inner flow.
    // Its later fragments carry only the rest of the inner payload.
    let carries = match (fragment, proto) {
        (Fragment::Later { .. }, _) => None,
        (_, GRE) => gre_payload(payload.payload)?,
        (_, proto::UDP) if tuple.dport == VXLAN_PORT => vxlan_payload(payload.payload)?,
        _ => None,
    };
    Ok(IpDecoded { tuple, transport, fragment, ttl, carries })
}

/// The frame a GRE packet carries: IP, Ethernet (transparent bridging), or a mirrored
/// Ethernet frame behind an ERSPAN type I, II or III header. `None` for other payloads
/// (keepalives, PPTP), which stay an ordinary GRE flow.
fn gre_payload(gre: &[u8]) -> Result<Option<Carried<'_>>, Skip> {
    let flags = be16(gre, 0).ok_or(Skip::TunnelTruncated)?;
    let protocol = be16(gre, 2).ok_or(Skip::TunnelTruncated)?;
    if flags & 0x0007 != 0 {
        return Ok(None); // GRE version 1 (PPTP) carries PPP, not what a SPAN mirrors.
    }
    let (checksum, key, sequence) = (flags & 0x8000 != 0, flags & 0x2000 != 0, flags & 0x1000 != 0);
    let header = 4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(sequence));
    let body = gre.get(header..).ok_or(Skip::TunnelTruncated)?;
    Ok(match protocol {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Some((TunnelKind::Gre, LinkType::RawIp, body)),
        ETHERTYPE_TEB => Some((TunnelKind::Gre, LinkType::Ethernet, body)),
        // Type I has no sequence number and no ERSPAN header; type II has both.
        ETHERTYPE_ERSPAN_2 if !sequence => Some((TunnelKind::Erspan, LinkType::Ethernet, body)),
        ETHERTYPE_ERSPAN_2 => {
            Some((TunnelKind::Erspan, LinkType::Ethernet, body.get(8..).ok_or(Skip::TunnelTruncated)?))
        }
        ETHERTYPE_ERSPAN_3 => {
            // 12-byte header, then an 8-byte platform subheader when the O bit is set.
            let optional = body.get(11).ok_or(Skip::TunnelTruncated)? & 0x01 != 0;
            let skip = if optional { 20 } else { 12 };
            Some((TunnelKind::Erspan, LinkType::Ethernet, body.get(skip..).ok_or(Skip::TunnelTruncated)?))
        }
        _ => None,
    })
}

/// The Ethernet frame behind a VXLAN header (UDP port 4789, the I flag set).
fn vxlan_payload(udp: &[u8]) -> Result<Option<Carried<'_>>, Skip> {
    let vxlan = udp.get(8..16).ok_or(Skip::TunnelTruncated)?;
    if vxlan[0] & 0x08 == 0 {
        return Ok(None);
    }
    Ok(Some((TunnelKind::Vxlan, LinkType::Ethernet, &udp[16..])))
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
                let seq = l4.get(4..8).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
                let header = l4.get(12).map(|b| usize::from(b >> 4) * 4);
                let len = header.and_then(|h| l4.len().checked_sub(h)).map(|n| n as u32);
                Transport::Tcp { flags: l4.get(13).copied(), seq, len }
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

/// The options of a TCP SYN or SYN-ACK, with its tuple, sequence number and flags: what a
/// middlebox rewrites when it clamps the MSS or strips options. `None` for anything else.
pub fn syn_options(link: LinkType, frame: &[u8]) -> Option<(Tuple, u32, u8, &[u8])> {
    let ip = network(link, frame).ok()?.ip;
    let inner = decode_ip(ip).ok()?;
    let Transport::Tcp { flags: Some(flags), .. } = inner.transport else {
        return None;
    };
    if flags & tcp_flags::SYN == 0 || inner.fragment != Fragment::Whole {
        return None;
    }
    let (ip, _) = LaxIpSlice::from_slice(ip).ok()?;
    let tcp = ip.payload().payload;
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    let header = usize::from(tcp.get(12)? >> 4) * 4;
    Some((inner.tuple, seq, flags, tcp.get(20..header)?))
}

/// A hash of the unordered pair of IP addresses a frame belongs to, for routing frames
/// to workers: both directions of a flow, all fragments of a datagram, and ICMP errors
/// about a flow (hashed by their quoted packet) land on the same worker. A frame that
/// will not decode may go to any worker, which counts the skip.
pub fn route_hash(link: LinkType, frame: &[u8]) -> u64 {
    let Ok(Network { ip, .. }) = network(link, frame) else {
        return 0;
    };
    match route_hash_fast(ip) {
        Some(hash) => hash,
        None => route_hash_decoded(link, frame),
    }
}

/// The route hash of the frames the fast path leaves: from the decoded tuple.
#[cold]
fn route_hash_decoded(link: LinkType, frame: &[u8]) -> u64 {
    let Ok(packet) = decode(link, Ts(0), 0, frame) else {
        return 0;
    };
    let tuple = match packet.transport {
        Transport::IcmpError { quoted, .. } => quoted,
        _ => packet.tuple,
    };
    pair_hash(tuple.src, tuple.dst)
}

/// The route hash read straight from the header bytes, for the common packets: IPv4, and
/// IPv6 without extension headers, that are neither ICMP errors nor tunnels. `None` sends the packet
/// through the full decoder (whose routing-header and ICMP-quote rules then apply).
fn route_hash_fast(ip: &[u8]) -> Option<u64> {
    match ip.first()? >> 4 {
        // The decoder reads an ICMP error by its protocol number, whatever the IP version.
        4 if !matches!(*ip.get(9)?, proto::ICMP | proto::ICMPV6 | GRE)
            && !is_vxlan(ip, usize::from(ip[0] & 0x0f) * 4, 9) =>
        {
            let a: [u8; 8] = ip.get(12..20)?.try_into().ok()?;
            let src = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
            let dst = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
            Some(mix(u64::from(src)) ^ mix(u64::from(dst)))
        }
        6 if matches!(*ip.get(6)?, proto::TCP | proto::UDP) && !is_vxlan(ip, 40, 6) => {
            let addrs: &[u8; 32] = ip.get(8..40)?.try_into().ok()?;
            let fold = |a: &[u8]| {
                let (hi, lo) = a.split_at(8);
                u64::from_be_bytes(hi.try_into().unwrap_or_default())
                    ^ u64::from_be_bytes(lo.try_into().unwrap_or_default())
            };
            Some(mix(fold(&addrs[..16])) ^ mix(fold(&addrs[16..])))
        }
        _ => None,
    }
}

/// Whether the IP packet is UDP to the VXLAN port (the header at `proto_at` says UDP, and
/// the transport header starts at `l4`).
fn is_vxlan(ip: &[u8], l4: usize, proto_at: usize) -> bool {
    ip.get(proto_at) == Some(&proto::UDP) && be16(ip, l4 + 2) == Some(VXLAN_PORT)
}

/// Symmetric hash of two addresses: `pair_hash(a, b) == pair_hash(b, a)`.
pub fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    fn fold(addr: IpAddr) -> u64 {
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        mix((bits as u64) ^ ((bits >> 64) as u64))
    }
    fold(a) ^ fold(b)
}

/// The splitmix64 finalizer: spreads nearby addresses over all workers.
fn mix(folded: u64) -> u64 {
    let mut z = folded.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
        assert_eq!(p.transport, Transport::Tcp { flags: Some(tcp_flags::SYN), seq: Some(0), len: Some(0) });
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
                38..=47 => assert!(matches!(got.unwrap().transport, Transport::Tcp { flags: None, .. })),
                _ => assert!(got.is_ok(), "len {len}"),
            }
        }
    }

    #[test]
    fn every_vlan_tag_protocol_id_is_stripped() {
        let base = eth_ipv4_tcp(0);
        for tpid in [[0x81, 0x00], [0x88, 0xa8], [0x91, 0x00]] {
            let mut frame = base[..12].to_vec();
            frame.extend_from_slice(&tpid);
            frame.extend_from_slice(&[0x00, 0x2a]);
            frame.extend_from_slice(&base[12..]);
            let p = decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap();
            assert_eq!((p.vlan, p.tuple.dport), (Some(42), 443), "{tpid:02x?}");
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
        use crate::testkit::synth::{wire::Link, Scenario};
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

    /// The fast IP path gives what the full decoder gives, on sample packets, on every
    /// truncation of them, and on every header byte set to values that matter to it
    /// (versions, header lengths, protocols, length fields at and around the real ones).
    #[test]
    fn the_fast_ip_path_agrees_with_the_full_decoder() {
        let mut fast = 0;
        let check = |ip: &[u8], fast: &mut usize| {
            if let Some(quick) = decode_ip_fast(ip) {
                *fast += 1;
                assert_eq!(Ok(quick), decode_ip_full(ip), "{ip:02x?}");
            }
        };
        for (link, frame) in sample_frames() {
            let Ok(Network { ip, .. }) = network(link, &frame) else { continue };
            for len in 0..=ip.len() {
                check(&ip[..len], &mut fast);
            }
            for at in 0..ip.len().min(64) {
                let original = ip[at];
                let values = [0, 1, 4, 5, 6, 17, 20, 40, 0x45, 0x46, 0x60, 0x20, 0xff];
                let near = [original.wrapping_sub(1), original.wrapping_add(1)];
                for value in values.into_iter().chain(near) {
                    let mut mutated = ip.to_vec();
                    mutated[at] = value;
                    check(&mutated, &mut fast);
                }
            }
        }
        // The fast path must actually be taken for the common packets.
        assert!(fast > 1000, "fast path taken {fast} times");
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

        #[test]
        fn the_fast_ip_path_agrees_on_arbitrary_bytes(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 20..128), v6: bool, proto: bool) {
            // Steer random bytes towards the headers the fast path accepts.
            bytes[0] = if v6 { 0x60 | (bytes[0] & 0x0f) } else { 0x40 | (bytes[0] & 0x0f) };
            let proto_at = if v6 { 6 } else { 9 };
            bytes[proto_at] = if proto { 6 } else { 17 };
            if let Some(quick) = decode_ip_fast(&bytes) {
                proptest::prop_assert_eq!(Ok(quick), decode_ip_full(&bytes));
            }
        }
    }

    /// An inner Ethernet frame (client 10.20.0.1 -> mailbox 10.10.1.11:443).
    fn inner_ethernet() -> Vec<u8> {
        let sa = |t: &str| t.parse::<std::net::SocketAddr>().unwrap();
        let mut s = crate::testkit::synth::Scenario::new();
        s.tcp_session(sa("10.20.0.1:50000"), sa("10.10.1.11:443"), 0);
        s.frames[0].data.clone()
    }

    /// Wraps `payload` in an outer Ethernet/IPv4 packet of protocol `proto`.
    fn outer_ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let ip = crate::testkit::synth::wire::ip_with_payload(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            64,
            proto,
            payload,
            crate::testkit::synth::wire::IpFragment::None,
        );
        crate::testkit::synth::wire::ethernet(Default::default(), &ip)
    }

    fn gre(flags: u16, protocol: u16, extra: &[u8], payload: &[u8]) -> Vec<u8> {
        [&flags.to_be_bytes()[..], &protocol.to_be_bytes(), extra, payload].concat()
    }

    fn vxlan(payload: &[u8]) -> Vec<u8> {
        let mut udp = vec![0xc3, 0x50, 0x12, 0xb5, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0x2a, 0];
        udp.extend_from_slice(payload);
        udp
    }

    #[test]
    fn tunnels_are_decoded_to_the_inner_flow() {
        let inner = inner_ethernet();
        let inner_ip = &inner[14..];
        let erspan3 = [&[0x20u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01][..], &[0; 8], &inner].concat();
        let cases: Vec<(Vec<u8>, TunnelKind)> = vec![
            (outer_ipv4(GRE, &gre(0, 0x0800, &[], inner_ip)), TunnelKind::Gre),
            (outer_ipv4(GRE, &gre(0x2000, 0x6558, &[0, 0, 0, 7], &inner)), TunnelKind::Gre),
            (outer_ipv4(GRE, &gre(0, 0x88be, &[], &inner)), TunnelKind::Erspan),
            (
                outer_ipv4(GRE, &gre(0x1000, 0x88be, &[0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0], &inner)),
                TunnelKind::Erspan,
            ),
            (outer_ipv4(GRE, &gre(0, 0x22eb, &[], &erspan3)), TunnelKind::Erspan),
            (outer_ipv4(proto::UDP, &vxlan(&inner)), TunnelKind::Vxlan),
        ];
        for (frame, kind) in cases {
            let p = decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap();
            assert_eq!((p.tuple.dst, p.tuple.dport), ("10.10.1.11".parse().unwrap(), 443), "{kind:?}");
            assert_eq!(p.tunnel, Some(Tunnel { kind, depth: 1 }));
            let direct = decode(LinkType::Ethernet, Ts(0), 0, &inner).unwrap();
            assert_eq!(route_hash(LinkType::Ethernet, &frame), route_hash(LinkType::Ethernet, &inner));
            assert_eq!(p.tuple, direct.tuple);
        }
    }

    #[test]
    fn nested_tunnels_are_bounded() {
        let mut frame = inner_ethernet();
        for depth in 1..=MAX_TUNNEL_DEPTH + 1 {
            frame = outer_ipv4(proto::UDP, &vxlan(&frame));
            let got = decode(LinkType::Ethernet, Ts(0), 0, &frame);
            if depth <= MAX_TUNNEL_DEPTH {
                assert_eq!(got.unwrap().tunnel, Some(Tunnel { kind: TunnelKind::Vxlan, depth }));
            } else {
                assert_eq!(got, Err(Skip::EncapDepth));
            }
        }
    }

    #[test]
    fn mpls_and_pppoe_carry_ip() {
        let inner = inner_ethernet();
        let ip = &inner[14..];
        let mut mpls = inner[..12].to_vec();
        mpls.extend_from_slice(&[0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64]);
        mpls.extend_from_slice(ip);
        let mut pppoe = inner[..12].to_vec();
        pppoe.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 1, 0, 0, 0x00, 0x21]);
        pppoe.extend_from_slice(ip);
        for frame in [mpls, pppoe] {
            assert_eq!(decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap().tuple.dport, 443);
        }
    }
}
