//! Frame decoding: bytes and a link type in, one small owned [`Packet`] out.
//!
//! The contract: **no function here panics on any bytes; a frame that cannot be decoded
//! is a [`Skip`] naming layer and reason.** Every read of a frame goes through a checked
//! `get` (or a slice whose length was checked just before), and every loop over stacked
//! headers is bounded ([`MAX_VLAN_TAGS`], [`MAX_MPLS_LABELS`], [`MAX_TUNNEL_DEPTH`]). A
//! proptest below holds it on arbitrary bytes, and the `fuzz/` crate on far more.
//!
//! This module owns every borrowed view of frame bytes; nothing downstream ever sees a
//! slice of a frame. [`decode`] is a pure function of its inputs, so it is unit-tested,
//! fuzzed and benchmarked alone.
//!
//! Link layers: Ethernet (with up to [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad / 0x9100 tags),
//! Linux cooked capture v1 and v2, raw IP and BSD loopback. IPv4 (options, fragments)
//! and IPv6 (extension headers, fragments) through etherparse's lax slices; TCP, UDP,
//! and the ICMP / ICMPv6 errors whose quoted packet is evidence of filtering. The most
//! common packet, TCP or UDP right after an IPv4 or a plain IPv6 header, is read by hand
//! first (decode went from 381 to 223 instructions a packet on the bench capture), and
//! is tested to give what etherparse's path gives.
//!
//! One file per layer family, each with the field offsets of its headers as named
//! constants:
//!
//! - `link`: Ethernet, VLAN / QinQ, MPLS, PPPoE, Linux cooked v1 / v2, BSD loopback and
//!   raw IP, down to the IP header;
//! - `ip`: IPv4 and IPv6, the hand-written fast path and the full path through etherparse;
//! - `transport`: TCP, UDP, ICMP / ICMPv6 and the error quotes, TCP handshake options;
//! - `tunnel`: the GRE, ERSPAN and VXLAN headers in front of a carried frame;
//! - `routing`: [`route_hash`] and [`pair_hash`], which send a frame to its worker, by
//!   [`pair_hash32`], the hash the capture's fanout program also computes.
//!
//! Data flows down, `link` → `ip` → `transport`, with no module calling back up. The two
//! places where a packet holds another packet are resolved without a circle: `ip` reads
//! the IP packet an ICMP error quotes (`transport` only finds the quote), and [`decode`]
//! here walks into a tunnel's inner frame through `link` and `ip` again (`tunnel` only
//! finds the inner frame). `routing` sits above them all and may call [`decode`].

use std::net::IpAddr;

use crate::time::Ts;

pub mod app;
mod ip;
mod link;
mod routing;
#[cfg(test)]
mod samples;
mod transport;
mod tunnel;

pub use app::{AppProto, Head, Said, Speaker};
pub use routing::{mix32, pair_hash, pair_hash32, route_hash, MIX32_MUL};
pub use transport::{SynOptions, TcpOptions};

use ip::IpDecoded;
use link::Network;

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
    pub const IGMP: u8 = 2;
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
    /// cannot decode it. Raw IP has five numbers: LINKTYPE_RAW (101) in files and
    /// DLT_RAW (12 on Linux, 14 on OpenBSD) as libpcap reports it, and LINKTYPE_IPV4
    /// (228) and LINKTYPE_IPV6 (229), one IP version each; the version field of each
    /// packet says which it is in all five.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            0 => Some(LinkType::Null),
            _ => None,
        }
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

/// What an ICMP error says of the packet it quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// ICMP destination unreachable 9, 10 or 13; ICMPv6 destination unreachable 1, 5
    /// or 6: a filter refused the quoted packet.
    Prohibited,
    /// ICMP port or protocol unreachable (3/3, 3/2); ICMPv6 port unreachable (1/4): the
    /// quoted packet's destination answers so, and so does a firewall's `REJECT`, which
    /// only the sender's address tells apart.
    Unreachable,
    /// Any other ICMP error (packet too big, time exceeded...): not evidence.
    Other,
}

/// What the destination MAC address of a frame says: a frame to a group address never
/// leaves the segment. The innermost Ethernet frame's, for a tunnel packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MacClass {
    /// No Ethernet header (raw IP, cooked capture, loopback).
    #[default]
    Unknown,
    Unicast,
    /// The group bit is set (IPv4 01:00:5e..., IPv6 33:33..., and the like).
    Multicast,
    Broadcast,
}

impl MacClass {
    /// The class of a destination MAC address.
    pub fn of(mac: &[u8]) -> MacClass {
        match mac {
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] => MacClass::Broadcast,
            [first, _, _, _, _, _] if first & 1 == 1 => MacClass::Multicast,
            [_, _, _, _, _, _] => MacClass::Unicast,
            _ => MacClass::Unknown,
        }
    }

    /// Multicast or broadcast: a frame for the whole segment, or part of it.
    pub fn is_group(self) -> bool {
        matches!(self, MacClass::Multicast | MacClass::Broadcast)
    }
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
    /// An ICMP error, the 5-tuple of the packet it quotes, and where that packet sits in
    /// IP fragmentation (a quoted later fragment has no ports: its ids find its flow).
    IcmpError {
        kind: IcmpError,
        quoted: Tuple,
        fragment: Fragment,
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
    /// The VLAN ids the frame carried, outermost first (an ERSPAN header's among them).
    pub vlan: Vlans,
    /// How the packet was carried, when it came out of a tunnel.
    pub tunnel: Option<Tunnel>,
    /// Source MAC address of the (outermost) Ethernet frame, where there is one.
    pub src_mac: Option<[u8; 6]>,
    /// The class of the destination MAC address of the frame the IP packet came in.
    pub dst_mac: MacClass,
    /// The first bytes of the TCP or UDP payload, for [`app::classify`].
    pub head: Head,
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

/// The outermost tunnel a packet came out of, how many were nested, and the outermost
/// packet's own 5-tuple (what Suricata's `tunnel` object reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub depth: u8,
    /// The outermost packet's addresses, protocol and (UDP, TCP) ports.
    pub outer: Tuple,
}

/// The VLAN ids of a frame, outermost first: at most [`Vlans::MAX`], as Suricata keeps
/// them (deeper tags are decoded through but not recorded). Seven bytes, `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vlans {
    ids: [u16; Vlans::MAX],
    len: u8,
}

impl Vlans {
    /// How many VLAN layers Suricata records (its `VLAN_MAX_LAYERS`).
    pub const MAX: usize = 3;

    /// A stack of the given ids (past [`Vlans::MAX`], the rest are dropped).
    pub fn of(ids: &[u16]) -> Vlans {
        let mut vlans = Vlans::default();
        for &id in ids {
            vlans.push(id);
        }
        vlans
    }

    /// Records one more (inner) tag, if there is room.
    #[inline]
    pub fn push(&mut self, id: u16) {
        if let Some(slot) = self.ids.get_mut(usize::from(self.len)) {
            *slot = id;
            self.len += 1;
        }
    }

    /// Adds `inner`'s tags after these.
    pub fn extend(&mut self, inner: Vlans) {
        for &id in inner.ids() {
            self.push(id);
        }
    }

    /// The ids, outermost first.
    pub fn ids(&self) -> &[u16] {
        self.ids.get(..usize::from(self.len)).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
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

/// A multi-byte header field, as the range of bytes it occupies.
type Field = std::ops::Range<usize>;

/// A big-endian `u16` at `at`, if the bytes reach that far.
#[inline]
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Decodes one frame. `wire_len` is the frame's length on the wire, which may exceed
/// `frame.len()` when the capture was cut by its snap length.
#[inline(always)]
pub fn decode(link: LinkType, ts: Ts, wire_len: u32, frame: &[u8]) -> Result<Packet, Skip> {
    let Network { ip, mut vlan } = link::network(link, frame)?;
    let src_mac = match link {
        LinkType::Ethernet => frame.get(link::ethernet::SRC).and_then(|m| m.try_into().ok()),
        _ => None,
    };
    let mac = match link {
        LinkType::Ethernet => frame.get(link::ethernet::DST).map_or(MacClass::Unknown, MacClass::of),
        _ => MacClass::Unknown,
    };
    let (inner, tunnel, dst_mac) = match ip::decode_ip_fast(ip) {
        Some(inner) => (inner, None, mac),
        None => decode_ip_tunnels(ip, mac, &mut vlan)?,
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
        dst_mac,
        head: inner.head,
    })
}

/// Decodes an IP packet the fast path left, and what it carries when it is a tunnel:
/// mirrored traffic arrives inside GRE, ERSPAN or VXLAN, and the inner flow is judged.
/// The inner frame goes through [`link`] and [`ip`] again, at most [`MAX_TUNNEL_DEPTH`]
/// times. `mac` is the class of the outer frame's destination MAC; the innermost
/// Ethernet frame's replaces it. The carried frames' VLAN tags (and an ERSPAN header's
/// VLAN) follow the outer ones in `vlan`, as Suricata stacks them.
#[inline(never)]
fn decode_ip_tunnels<'a>(
    ip: &'a [u8],
    mut mac: MacClass,
    vlan: &mut Vlans,
) -> Result<(IpDecoded<'a>, Option<Tunnel>, MacClass), Skip> {
    let mut inner = ip::decode_ip_full(ip)?;
    let outer = inner.tuple;
    let mut tunnel = None;
    let mut depth = 0;
    while let Some(carried) = inner.carries {
        depth += 1;
        if depth > MAX_TUNNEL_DEPTH {
            return Err(Skip::EncapDepth);
        }
        tunnel.get_or_insert(Tunnel { kind: carried.kind, depth: 0, outer }).depth = depth;
        if let Some(id) = carried.vlan {
            vlan.push(id);
        }
        mac = match carried.link {
            LinkType::Ethernet => {
                carried.frame.get(link::ethernet::DST).map_or(MacClass::Unknown, MacClass::of)
            }
            _ => MacClass::Unknown,
        };
        let network = link::network(carried.link, carried.frame)?;
        vlan.extend(network.vlan);
        inner = ip::decode_ip(network.ip)?;
    }
    Ok((inner, tunnel, mac))
}

/// The options of a TCP SYN or SYN-ACK, with its tuple, sequence number and flags: what a
/// middlebox rewrites when it clamps the MSS or strips options. `None` for anything else.
pub fn syn_options(link: LinkType, frame: &[u8]) -> Option<SynOptions> {
    let ip = link::network(link, frame).ok()?.ip;
    let inner = ip::decode_ip(ip).ok()?;
    let Transport::Tcp { flags: Some(flags), .. } = inner.transport else {
        return None;
    };
    if flags & tcp_flags::SYN == 0 || inner.fragment != Fragment::Whole {
        return None;
    }
    SynOptions::of(inner.tuple, flags, ip::payload(ip)?)
}

#[cfg(test)]
mod tests {
    use super::samples::{eth_ipv4_tcp, sample_frames};
    use super::*;

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
    fn sample_frames_decode_under_every_link_type() {
        for (link, frame) in sample_frames() {
            let packet = decode(link, Ts(0), frame.len() as u32, &frame);
            assert!(packet.is_ok(), "{link:?} {frame:02x?}: {packet:?}");
        }
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

    /// A SYN with the options Linux sends (MSS, SACK permitted, timestamps, window scale).
    fn syn_with_options(options: &[u8]) -> Vec<u8> {
        let mut frame = eth_ipv4_tcp(tcp_flags::SYN);
        let words = 5 + options.len() / 4;
        frame[14 + 3] = (40 + options.len()) as u8;
        frame[34 + 12] = (words as u8) << 4;
        frame.splice(54..54, options.iter().copied());
        frame
    }

    #[test]
    fn syn_options_are_owned_and_parsed() {
        let options = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
        let frame = syn_with_options(&options);
        let syn = syn_options(LinkType::Ethernet, &frame).unwrap();
        assert_eq!((syn.tuple.sport, syn.tuple.dport, syn.seq, syn.flags), (1234, 443, 0, tcp_flags::SYN));
        assert_eq!((syn.options.raw(), syn.options.mss), (&options[..], Some(1460)));
        drop(frame);
        assert_eq!(syn.options.raw().len(), 20, "the options outlive the frame");
    }

    #[test]
    fn syn_options_only_for_whole_syns_with_a_sane_header() {
        let ack = eth_ipv4_tcp(tcp_flags::ACK);
        assert_eq!(syn_options(LinkType::Ethernet, &ack), None);
        let bare = syn_options(LinkType::Ethernet, &eth_ipv4_tcp(tcp_flags::SYN)).unwrap();
        assert_eq!((bare.options.raw(), bare.options.mss), (&[][..], None));
        let frame = syn_with_options(&[2, 4, 0x05, 0xb4]);
        for len in 0..frame.len() {
            // A header longer than the bytes captured has no options to compare.
            let cut = syn_options(LinkType::Ethernet, &frame[..len]);
            assert!(cut.is_none() || len >= 58, "len {len}: {cut:?}");
        }
        let mut short = frame.clone();
        short[34 + 12] = 4 << 4;
        assert_eq!(syn_options(LinkType::Ethernet, &short), None, "data offset below 5 words");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Null] {
                let _ = decode(link, Ts(0), bytes.len() as u32, &bytes);
                let _ = syn_options(link, &bytes);
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
