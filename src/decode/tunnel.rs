//! GRE, ERSPAN and VXLAN: the headers in front of a carried frame. This module only
//! finds the carried frame and its link type; [`super::decode`] decodes it through
//! `link` and `ip` again, so nothing here calls back up.

use super::link::ethertype;
use super::transport::udp;
use super::{be16, proto, LinkType, Skip, TunnelKind};

/// GRE header fields (RFC 2784, RFC 2890).
pub(super) mod gre {
    /// The IP protocol number of GRE.
    pub const PROTOCOL: u8 = 47;
    pub const FLAGS: usize = 0;
    pub const CHECKSUM_PRESENT: u16 = 0x8000;
    pub const KEY_PRESENT: u16 = 0x2000;
    pub const SEQUENCE_PRESENT: u16 = 0x1000;
    pub const VERSION: u16 = 0x0007;
    /// The ethertype of the payload.
    pub const PROTOCOL_TYPE: usize = 2;
    pub const HEADER_LEN: usize = 4;
    /// Each of checksum (with its reserved half), key and sequence number.
    pub const OPTIONAL_FIELD_LEN: usize = 4;
}

/// ERSPAN header fields (draft-foschiano-erspan).
mod erspan {
    /// Types II and III open with the version (4 bits) and the mirrored frame's VLAN.
    pub const VER_VLAN: usize = 0;
    pub const VLAN_MASK: u16 = 0x0fff;
    pub const TYPE_II_HEADER_LEN: usize = 8;
    pub const TYPE_III_HEADER_LEN: usize = 12;
    /// The byte of a type III header holding the O bit, which says a platform-specific
    /// subheader follows.
    pub const TYPE_III_FLAGS: usize = 11;
    pub const TYPE_III_SUBHEADER: u8 = 0x01;
    pub const TYPE_III_SUBHEADER_LEN: usize = 8;
}

/// VXLAN header fields (RFC 7348).
pub(super) mod vxlan {
    /// The IANA-assigned UDP port.
    pub const PORT: u16 = 4789;
    pub const FLAGS: usize = 0;
    /// The I flag: the VNI is valid.
    pub const VNI_VALID: u8 = 0x08;
    pub const HEADER_LEN: usize = 8;
}

/// A tunnel's payload: its kind, the frame it carries with that frame's link type, and
/// the VLAN an ERSPAN header names for the mirrored frame (Suricata stacks it with the
/// frame's own tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Carried<'a> {
    pub kind: TunnelKind,
    pub link: LinkType,
    pub frame: &'a [u8],
    pub vlan: Option<u16>,
}

impl Carried<'_> {
    fn new(kind: TunnelKind, link: LinkType, frame: &[u8]) -> Carried<'_> {
        Carried { kind, link, frame, vlan: None }
    }
}

/// The VLAN an ERSPAN type II or III header names, when it names one (0 is none).
fn erspan_vlan(header: &[u8]) -> Option<u16> {
    be16(header, erspan::VER_VLAN).map(|v| v & erspan::VLAN_MASK).filter(|&id| id != 0)
}

/// The frame an IP payload of protocol `proto` to port `dport` carries, if it is a
/// tunnel; `l4` starts at the GRE or UDP header.
pub(super) fn carried(proto: u8, dport: u16, l4: &[u8]) -> Result<Option<Carried<'_>>, Skip> {
    match proto {
        gre::PROTOCOL => gre_payload(l4),
        proto::UDP if dport == vxlan::PORT => vxlan_payload(l4),
        _ => Ok(None),
    }
}

/// The frame a GRE packet carries: IP, Ethernet (transparent bridging), or a mirrored
/// Ethernet frame behind an ERSPAN type I, II or III header. `None` for other payloads
/// (keepalives, PPTP), which stay an ordinary GRE flow.
fn gre_payload(packet: &[u8]) -> Result<Option<Carried<'_>>, Skip> {
    let flags = be16(packet, gre::FLAGS).ok_or(Skip::TunnelTruncated)?;
    let protocol = be16(packet, gre::PROTOCOL_TYPE).ok_or(Skip::TunnelTruncated)?;
    if flags & gre::VERSION != 0 {
        return Ok(None); // GRE version 1 (PPTP) carries PPP, not what a SPAN mirrors.
    }
    let present = |bit: u16| usize::from(flags & bit != 0);
    let sequence = flags & gre::SEQUENCE_PRESENT != 0;
    let optional =
        present(gre::CHECKSUM_PRESENT) + present(gre::KEY_PRESENT) + present(gre::SEQUENCE_PRESENT);
    let header = gre::HEADER_LEN + gre::OPTIONAL_FIELD_LEN * optional;
    let body = packet.get(header..).ok_or(Skip::TunnelTruncated)?;
    let after = |len: usize| body.get(len..).ok_or(Skip::TunnelTruncated);
    Ok(match protocol {
        ethertype::IPV4 | ethertype::IPV6 => Some(Carried::new(TunnelKind::Gre, LinkType::RawIp, body)),
        ethertype::TEB => Some(Carried::new(TunnelKind::Gre, LinkType::Ethernet, body)),
        // Type I has no sequence number and no ERSPAN header; type II has both.
        ethertype::ERSPAN_2 if !sequence => Some(Carried::new(TunnelKind::Erspan, LinkType::Ethernet, body)),
        ethertype::ERSPAN_2 => {
            let frame = after(erspan::TYPE_II_HEADER_LEN)?;
            Some(Carried {
                vlan: erspan_vlan(body),
                ..Carried::new(TunnelKind::Erspan, LinkType::Ethernet, frame)
            })
        }
        ethertype::ERSPAN_3 => {
            let flags = *body.get(erspan::TYPE_III_FLAGS).ok_or(Skip::TunnelTruncated)?;
            let skip = if flags & erspan::TYPE_III_SUBHEADER != 0 {
                erspan::TYPE_III_HEADER_LEN + erspan::TYPE_III_SUBHEADER_LEN
            } else {
                erspan::TYPE_III_HEADER_LEN
            };
            let frame = after(skip)?;
            Some(Carried {
                vlan: erspan_vlan(body),
                ..Carried::new(TunnelKind::Erspan, LinkType::Ethernet, frame)
            })
        }
        _ => None,
    })
}

/// The Ethernet frame behind a VXLAN header (UDP port 4789, the I flag set); `udp`
/// starts at the UDP header.
fn vxlan_payload(datagram: &[u8]) -> Result<Option<Carried<'_>>, Skip> {
    let at = udp::HEADER_LEN;
    let header = datagram.get(at..at + vxlan::HEADER_LEN).ok_or(Skip::TunnelTruncated)?;
    if header[vxlan::FLAGS] & vxlan::VNI_VALID == 0 {
        return Ok(None);
    }
    let frame = datagram.get(at + vxlan::HEADER_LEN..).unwrap_or_default();
    Ok(Some(Carried::new(TunnelKind::Vxlan, LinkType::Ethernet, frame)))
}

#[cfg(test)]
mod tests {
    use super::super::samples::{inner_ethernet, outer_ipv4};
    use super::super::{decode, route_hash, Ts, MAX_TUNNEL_DEPTH};
    use super::*;

    fn gre_packet(flags: u16, protocol: u16, extra: &[u8], payload: &[u8]) -> Vec<u8> {
        [&flags.to_be_bytes()[..], &protocol.to_be_bytes(), extra, payload].concat()
    }

    fn vxlan_datagram(payload: &[u8]) -> Vec<u8> {
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
            (outer_ipv4(gre::PROTOCOL, &gre_packet(0, 0x0800, &[], inner_ip)), TunnelKind::Gre),
            (outer_ipv4(gre::PROTOCOL, &gre_packet(0x2000, 0x6558, &[0, 0, 0, 7], &inner)), TunnelKind::Gre),
            (outer_ipv4(gre::PROTOCOL, &gre_packet(0, 0x88be, &[], &inner)), TunnelKind::Erspan),
            (
                outer_ipv4(
                    gre::PROTOCOL,
                    &gre_packet(0x1000, 0x88be, &[0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0], &inner),
                ),
                TunnelKind::Erspan,
            ),
            (outer_ipv4(gre::PROTOCOL, &gre_packet(0, 0x22eb, &[], &erspan3)), TunnelKind::Erspan),
            (outer_ipv4(proto::UDP, &vxlan_datagram(&inner)), TunnelKind::Vxlan),
        ];
        for (frame, kind) in cases {
            let p = decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap();
            assert_eq!((p.tuple.dst, p.tuple.dport), ("10.10.1.11".parse().unwrap(), 443), "{kind:?}");
            assert_eq!(p.tunnel.map(|t| (t.kind, t.depth)), Some((kind, 1)));
            let outer = p.tunnel.map(|t| (t.outer.src.to_string(), t.outer.dst.to_string()));
            assert_eq!(outer, Some(("192.0.2.1".into(), "192.0.2.2".into())), "{kind:?}");
            let direct = decode(LinkType::Ethernet, Ts(0), 0, &inner).unwrap();
            assert_eq!(route_hash(LinkType::Ethernet, &frame), route_hash(LinkType::Ethernet, &inner));
            assert_eq!(p.tuple, direct.tuple);
        }
    }

    /// Suricata stacks an ERSPAN header's VLAN after the outer frame's tags and before
    /// the mirrored frame's own.
    #[test]
    fn an_erspan_vlan_joins_the_vlan_stack() {
        let inner = inner_ethernet();
        let header = [0, 0, 0, 1, 0x10, 0x07, 0, 1, 0, 0, 0, 0];
        let frame = outer_ipv4(gre::PROTOCOL, &gre_packet(0x1000, 0x88be, &header, &inner));
        let p = decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap();
        assert_eq!(p.vlan.ids(), &[7]);
        assert_eq!(p.tunnel.map(|t| (t.outer.proto, t.outer.sport)), Some((gre::PROTOCOL, 0)));
        let no_vlan = [0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0];
        let frame = outer_ipv4(gre::PROTOCOL, &gre_packet(0x1000, 0x88be, &no_vlan, &inner));
        assert!(decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap().vlan.is_empty());
    }

    #[test]
    fn nested_tunnels_are_bounded() {
        let mut frame = inner_ethernet();
        for depth in 1..=MAX_TUNNEL_DEPTH + 1 {
            frame = outer_ipv4(proto::UDP, &vxlan_datagram(&frame));
            let got = decode(LinkType::Ethernet, Ts(0), 0, &frame);
            if depth <= MAX_TUNNEL_DEPTH {
                let tunnel = got.unwrap().tunnel.map(|t| (t.kind, t.depth, t.outer.proto, t.outer.dport));
                assert_eq!(tunnel, Some((TunnelKind::Vxlan, depth, proto::UDP, vxlan::PORT)));
            } else {
                assert_eq!(got, Err(Skip::EncapDepth));
            }
        }
    }

    #[test]
    fn only_what_a_span_mirrors_is_looked_into() {
        let inner = inner_ethernet();
        // GRE version 1 (PPTP), a GRE keepalive, and VXLAN without the I flag stay flows.
        assert_eq!(carried(gre::PROTOCOL, 0, &gre_packet(0x0001, 0x880b, &[], &inner)), Ok(None));
        assert_eq!(carried(gre::PROTOCOL, 0, &gre_packet(0, 0, &[], &[])), Ok(None));
        let mut no_vni = vxlan_datagram(&inner);
        no_vni[udp::HEADER_LEN + vxlan::FLAGS] = 0;
        assert_eq!(carried(proto::UDP, vxlan::PORT, &no_vni), Ok(None));
        // UDP to another port is not VXLAN, whatever it holds.
        assert_eq!(carried(proto::UDP, 4790, &vxlan_datagram(&inner)), Ok(None));
    }

    #[test]
    fn cut_tunnel_headers_are_counted() {
        let inner = inner_ethernet();
        let cases = [
            (gre::PROTOCOL, 0, gre_packet(0xb000, 0x6558, &[0; 12], &inner)),
            (gre::PROTOCOL, 0, gre_packet(0x1000, 0x88be, &[0; 4], &[0; 8])),
            (gre::PROTOCOL, 0, gre_packet(0, 0x22eb, &[], &[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01])),
            (proto::UDP, vxlan::PORT, vxlan_datagram(&[])),
        ];
        for (proto, dport, whole) in cases {
            let headers = whole.len() - if whole.ends_with(&inner) { inner.len() } else { 0 };
            for len in 0..headers {
                let got = carried(proto, dport, &whole[..len]);
                assert_eq!(got, Err(Skip::TunnelTruncated), "{proto} {len} of {whole:02x?}");
            }
        }
    }
}
