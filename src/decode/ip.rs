//! IPv4 and IPv6: the hand-written fast path for the common packet, and the full path
//! through etherparse's lax slices for every other one (options, extension headers,
//! fragments, ICMP errors, tunnels). The full path hands the transport header to
//! `transport`, reads the packet an ICMP error quotes by calling itself, and asks
//! `tunnel` whether the payload carries a frame, which the caller then decodes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

use super::app::Head;
use super::transport::{self, tcp, L4};
use super::tunnel::{self, Carried};
use super::{proto, Fragment, Skip, Transport, Tuple};

/// IPv4 header fields (RFC 791, section 3.1).
pub(super) mod ipv4 {
    use crate::decode::Field;

    /// The high nibble is the version, the low one the header length in 32-bit words.
    pub const VERSION_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    /// Three flag bits, then the fragment offset in 8-byte units.
    pub const FLAGS_FRAGMENT: usize = 6;
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    pub const FRAGMENT_OFFSET: u16 = 0x1fff;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    /// Both addresses, for hashing them together.
    pub const ADDRS: Field = 12..20;
    /// The header without options.
    pub const MIN_HEADER_LEN: usize = 20;
}

/// IPv6 header fields (RFC 8200, section 3).
pub(super) mod ipv6 {
    use crate::decode::Field;

    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Field = 8..24;
    pub const DST: Field = 24..40;
    /// Both addresses, for hashing them together.
    pub const ADDRS: Field = 8..40;
    pub const HEADER_LEN: usize = 40;
}

/// IPv6 Routing header fields (RFC 8200, section 4.4).
mod routing_header {
    pub const TYPE: usize = 2;
    pub const SEGMENTS_LEFT: usize = 3;
    /// Where the addresses of types 0, 2 and 4 start.
    pub const ADDRESSES: usize = 8;
}

/// The IP version, from the first nibble.
#[inline]
pub(super) fn version(ip: &[u8]) -> Option<u8> {
    ip.first().map(|b| b >> 4)
}

/// The IPv4 header length the IHL field gives (not checked against anything).
#[inline]
pub(super) fn ipv4_header_len(first: u8) -> usize {
    usize::from(first & 0x0f) * 4
}

/// What the IP layer and what follows it give.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct IpDecoded<'a> {
    pub tuple: Tuple,
    pub transport: Transport,
    pub fragment: Fragment,
    pub ttl: u8,
    /// The first bytes of the TCP or UDP payload.
    pub head: Head,
    /// The frame a tunnel packet carries, which the caller decodes in turn.
    pub carries: Option<Carried<'a>>,
}

fn ip_header_error(err: etherparse::err::ip::LaxHeaderSliceError) -> Skip {
    match err {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => Skip::IpTruncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => Skip::IpInvalid,
    }
}

/// Any IP packet: the fast path when it applies, the full one otherwise.
pub(super) fn decode_ip(bytes: &[u8]) -> Result<IpDecoded<'_>, Skip> {
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
pub(super) fn decode_ip_fast(ip: &[u8]) -> Option<IpDecoded<'_>> {
    let (src, dst, ttl, proto, fragment, l4) = match version(ip)? {
        4 => {
            let header: &[u8; ipv4::MIN_HEADER_LEN] = ip.get(..ipv4::MIN_HEADER_LEN)?.try_into().ok()?;
            let ihl = ipv4_header_len(header[ipv4::VERSION_IHL]);
            let total =
                usize::from(u16::from_be_bytes([header[ipv4::TOTAL_LEN], header[ipv4::TOTAL_LEN + 1]]));
            if ihl < ipv4::MIN_HEADER_LEN || total < ihl || total > ip.len() {
                return None;
            }
            let flags_offset =
                u16::from_be_bytes([header[ipv4::FLAGS_FRAGMENT], header[ipv4::FLAGS_FRAGMENT + 1]]);
            let id = u32::from(u16::from_be_bytes([header[ipv4::IDENT], header[ipv4::IDENT + 1]]));
            let fragment = fragment_of(
                flags_offset & ipv4::FRAGMENT_OFFSET,
                flags_offset & ipv4::MORE_FRAGMENTS != 0,
                id,
            );
            let src = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&header[ipv4::SRC]).ok()?));
            let dst = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&header[ipv4::DST]).ok()?));
            (src, dst, header[ipv4::TTL], header[ipv4::PROTOCOL], fragment, &ip[ihl..total])
        }
        6 => {
            let header: &[u8; ipv6::HEADER_LEN] = ip.get(..ipv6::HEADER_LEN)?.try_into().ok()?;
            let payload =
                usize::from(u16::from_be_bytes([header[ipv6::PAYLOAD_LEN], header[ipv6::PAYLOAD_LEN + 1]]));
            if payload == 0 || ipv6::HEADER_LEN + payload > ip.len() {
                return None;
            }
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&header[ipv6::SRC]).ok()?));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&header[ipv6::DST]).ok()?));
            let l4 = &ip[ipv6::HEADER_LEN..ipv6::HEADER_LEN + payload];
            (src, dst, header[ipv6::HOP_LIMIT], header[ipv6::NEXT_HEADER], Fragment::Whole, l4)
        }
        _ => return None,
    };
    if !matches!(proto, proto::TCP | proto::UDP) {
        return None;
    }
    let mut tuple = Tuple { src, dst, sport: 0, dport: 0, proto };
    if matches!(fragment, Fragment::Later { .. }) {
        return Some(IpDecoded {
            tuple,
            transport: Transport::Other,
            fragment,
            ttl,
            head: Head::NONE,
            carries: None,
        });
    }
    let ports: &[u8; 4] = l4.get(tcp::PORTS)?.try_into().ok()?;
    tuple.sport = u16::from_be_bytes([ports[tcp::SRC_PORT], ports[tcp::SRC_PORT + 1]]);
    tuple.dport = u16::from_be_bytes([ports[tcp::DST_PORT], ports[tcp::DST_PORT + 1]]);
    let transport = if proto == proto::TCP {
        let header = transport::tcp_header_len(l4);
        let len = match (fragment, header) {
            (Fragment::Whole, Some(header)) => l4.len().checked_sub(header).map(|n| n as u32),
            _ => None,
        };
        Transport::Tcp { flags: l4.get(tcp::FLAGS).copied(), seq: transport::tcp_seq(l4), len }
    } else if tuple.dport == tunnel::vxlan::PORT {
        return None;
    } else {
        Transport::Udp
    };
    let head = transport::head(proto, l4);
    Some(IpDecoded { tuple, transport, fragment, ttl, head, carries: None })
}

/// Any IP packet, through etherparse's lax slices.
pub(super) fn decode_ip_full(bytes: &[u8]) -> Result<IpDecoded<'_>, Skip> {
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
        match transport::decode_transport(proto, payload.payload, &mut tuple)? {
            L4::Transport(transport) => transport,
            L4::Quote { kind, quote } => {
                let (quoted, fragment) = quoted_packet(quote)?;
                Transport::IcmpError { kind, quoted, fragment }
            }
        }
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
        let header = transport::tcp_header_len(payload.payload);
        *len = match (fragment, declared, header) {
            (Fragment::Whole, Some(declared), Some(header)) if declared > 0 => {
                declared.checked_sub(header).map(|n| n as u32)
            }
            _ => None,
        };
    }
    // A tunnel packet's first fragment holds the inner headers: judge the inner flow.
    // Its later fragments carry only the rest of the inner payload.
    let carries = match fragment {
        Fragment::Later { .. } => None,
        _ => tunnel::carried(proto, tuple.dport, payload.payload)?,
    };
    let head = match (fragment, &transport) {
        (Fragment::Later { .. }, _) | (_, Transport::IcmpError { .. }) => Head::NONE,
        _ => transport::head(proto, payload.payload),
    };
    Ok(IpDecoded { tuple, transport, fragment, ttl, head, carries })
}

/// The transport header and payload of an IP packet, as far as they were captured.
pub(super) fn payload(bytes: &[u8]) -> Option<&[u8]> {
    let (ip, _) = LaxIpSlice::from_slice(bytes).ok()?;
    Some(ip.payload().payload)
}

/// The 5-tuple of the packet an ICMP error quotes (its IP header and at least the
/// first 8 bytes of its transport header; a later fragment has no ports), and where it
/// sits in IP fragmentation.
fn quoted_packet(bytes: &[u8]) -> Result<(Tuple, Fragment), Skip> {
    let inner = decode_ip(bytes).map_err(|_| Skip::IcmpTruncated)?;
    match inner.transport {
        Transport::IcmpError { .. } => Err(Skip::IcmpTruncated),
        _ => Ok((inner.tuple, inner.fragment)),
    }
}

/// The final destination named by an IPv6 Routing header that still has segments to
/// visit: the transport endpoint (and the checksum) use it, not the next hop in the
/// IPv6 header. Types 0 and 2 list it last; type 4 (SRv6) first.
fn final_destination(routing: &[u8]) -> Option<Ipv6Addr> {
    let kind = *routing.get(routing_header::TYPE)?;
    let segments_left = *routing.get(routing_header::SEGMENTS_LEFT)?;
    if segments_left == 0 {
        return None;
    }
    let addresses = routing.get(routing_header::ADDRESSES..)?;
    let at = match kind {
        0 | 2 => addresses.len().checked_sub(16)? / 16 * 16,
        4 => 0,
        _ => return None,
    };
    let octets: [u8; 16] = addresses.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(octets))
}

#[inline]
fn fragment_of(offset: u16, more: bool, id: u32) -> Fragment {
    match (offset, more) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    }
}

#[cfg(test)]
mod tests {
    use super::super::link::{network, Network};
    use super::super::samples::sample_frames;
    use super::super::{decode, LinkType, Ts};
    use super::*;

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
        fn the_fast_ip_path_agrees_on_arbitrary_bytes(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 20..128), v6: bool, proto: bool) {
            // Steer random bytes towards the headers the fast path accepts.
            bytes[0] = if v6 { 0x60 | (bytes[0] & 0x0f) } else { 0x40 | (bytes[0] & 0x0f) };
            let proto_at = if v6 { ipv6::NEXT_HEADER } else { ipv4::PROTOCOL };
            bytes[proto_at] = if proto { 6 } else { 17 };
            if let Some(quick) = decode_ip_fast(&bytes) {
                proptest::prop_assert_eq!(Ok(quick), decode_ip_full(&bytes));
            }
        }
    }
}
