//! Link layers, from the frame's first byte down to the IP header: Ethernet with
//! stacked VLAN tags (802.1Q, 802.1ad / QinQ, 0x9100), MPLS label stacks, PPPoE
//! sessions, Linux cooked capture v1 and v2, BSD loopback (null) and raw IP.

use super::{be16, LinkType, Skip, Vlans, MAX_MPLS_LABELS, MAX_VLAN_TAGS};

/// The ethertypes exwatch looks at.
pub(super) mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ tag some switches still send.
    pub const QINQ_OLD: u16 = 0x9100;
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MULTICAST: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// Transparent Ethernet bridging, Ethernet inside GRE.
    pub const TEB: u16 = 0x6558;
    pub const ERSPAN_2: u16 = 0x88be;
    pub const ERSPAN_3: u16 = 0x22eb;
}

/// Ethernet II header fields (IEEE 802.3).
pub(super) mod ethernet {
    use crate::decode::Field;

    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const HEADER_LEN: usize = 14;
}

/// An 802.1Q / 802.1ad tag, after the ethertype that announced it.
mod vlan {
    /// Priority, drop eligibility, and the VLAN id in the low 12 bits.
    pub const TCI: usize = 0;
    pub const VID_MASK: u16 = 0x0fff;
    pub const ETHERTYPE: usize = 2;
    pub const TAG_LEN: usize = 4;
}

/// Linux cooked capture v1 (LINKTYPE_LINUX_SLL).
mod sll {
    pub const PROTOCOL: usize = 14;
    pub const HEADER_LEN: usize = 16;
}

/// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2).
mod sll2 {
    pub const PROTOCOL: usize = 0;
    pub const HEADER_LEN: usize = 20;
}

/// BSD loopback (LINKTYPE_NULL): a 4-byte address family in the writer's byte order.
mod null {
    pub const HEADER_LEN: usize = 4;
    pub const AF_INET: u32 = 2;
    /// AF_INET6 is 24 on NetBSD and OpenBSD, 28 on FreeBSD, 30 on macOS.
    pub const AF_INET6: [u32; 3] = [24, 28, 30];
}

/// An MPLS label stack entry (RFC 3032).
mod mpls {
    pub const ENTRY_LEN: usize = 4;
    /// The byte holding the bottom-of-stack bit.
    pub const BOTTOM_AT: usize = 2;
    pub const BOTTOM: u8 = 0x01;
}

/// A PPPoE session header (RFC 2516) and the PPP protocol field after it.
mod pppoe {
    pub const PPP_PROTOCOL: usize = 6;
    pub const HEADER_LEN: usize = 6;
    pub const PPP_IPV4: u16 = 0x0021;
    pub const PPP_IPV6: u16 = 0x0057;
}

fn is_vlan_ethertype(ethertype: u16) -> bool {
    matches!(ethertype, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD)
}

/// The network-layer payload of a frame: where the IP header starts, and its VLAN tags.
pub(super) struct Network<'a> {
    pub ip: &'a [u8],
    pub vlan: Vlans,
}

/// Walks the link layer down to the IP header.
#[inline(always)]
pub(super) fn network(link: LinkType, frame: &[u8]) -> Result<Network<'_>, Skip> {
    // Most frames: untagged Ethernet carrying IP.
    if let (LinkType::Ethernet, Some(ethertype::IPV4 | ethertype::IPV6)) =
        (link, be16(frame, ethernet::ETHERTYPE))
    {
        return Ok(Network { ip: &frame[ethernet::HEADER_LEN..], vlan: Vlans::default() });
    }
    network_any(link, frame)
}

/// [`network`] for every other link layer and encapsulation.
fn network_any(link: LinkType, frame: &[u8]) -> Result<Network<'_>, Skip> {
    // Each arm reads the ethertype first: once it is there, so is the whole header.
    let (ethertype, rest) = match link {
        LinkType::Ethernet => {
            (be16(frame, ethernet::ETHERTYPE).ok_or(Skip::LinkTruncated)?, &frame[ethernet::HEADER_LEN..])
        }
        LinkType::LinuxSll => {
            (be16(frame, sll::PROTOCOL).ok_or(Skip::LinkTruncated)?, &frame[sll::HEADER_LEN..])
        }
        LinkType::LinuxSll2 => {
            let ethertype = be16(frame, sll2::PROTOCOL).ok_or(Skip::LinkTruncated)?;
            (ethertype, frame.get(sll2::HEADER_LEN..).ok_or(Skip::LinkTruncated)?)
        }
        LinkType::RawIp => return Ok(Network { ip: frame, vlan: Vlans::default() }),
        LinkType::Unsupported => return Err(Skip::LinkUnsupported),
        LinkType::Null => {
            let family = frame.get(..null::HEADER_LEN).ok_or(Skip::LinkTruncated)?;
            // The family is in the writer's byte order; both orders of the known values.
            let family = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let ethertype = match family {
                f if f == null::AF_INET || f.swap_bytes() == null::AF_INET => ethertype::IPV4,
                f if null::AF_INET6.contains(&f) || null::AF_INET6.contains(&f.swap_bytes()) => {
                    ethertype::IPV6
                }
                _ => return Err(Skip::NotIp),
            };
            (ethertype, &frame[null::HEADER_LEN..])
        }
    };
    let (ethertype, payload, vlan) = strip_vlan_tags(ethertype, rest)?;
    let ip = match ethertype {
        ethertype::IPV4 | ethertype::IPV6 => payload,
        ethertype::MPLS | ethertype::MPLS_MULTICAST => strip_mpls(payload)?,
        ethertype::PPPOE_SESSION => strip_pppoe(payload)?,
        _ => return Err(Skip::NotIp),
    };
    Ok(Network { ip, vlan })
}

/// Pops an MPLS label stack; the payload must be IP (the first nibble says which).
fn strip_mpls(mut rest: &[u8]) -> Result<&[u8], Skip> {
    for _ in 0..MAX_MPLS_LABELS {
        let label = rest.get(..mpls::ENTRY_LEN).ok_or(Skip::LinkTruncated)?;
        rest = &rest[mpls::ENTRY_LEN..];
        if label[mpls::BOTTOM_AT] & mpls::BOTTOM != 0 {
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
    let first = *rest.get(pppoe::PPP_PROTOCOL).ok_or(Skip::LinkTruncated)?;
    let (protocol, field_len) = if first & 1 == 1 {
        (u16::from(first), 1)
    } else {
        (be16(rest, pppoe::PPP_PROTOCOL).ok_or(Skip::LinkTruncated)?, 2)
    };
    match protocol {
        pppoe::PPP_IPV4 | pppoe::PPP_IPV6 => Ok(&rest[pppoe::HEADER_LEN + field_len..]),
        _ => Err(Skip::NotIp),
    }
}

/// Removes stacked 802.1Q / 802.1ad tags, returning the inner ethertype, the payload and
/// the tags' VLAN ids, outermost first.
fn strip_vlan_tags(mut ethertype: u16, mut rest: &[u8]) -> Result<(u16, &[u8], Vlans), Skip> {
    let mut ids = Vlans::default();
    let mut depth = 0;
    while is_vlan_ethertype(ethertype) {
        depth += 1;
        if depth > MAX_VLAN_TAGS {
            return Err(Skip::VlanDepth);
        }
        let tci = be16(rest, vlan::TCI).ok_or(Skip::VlanDepth)?;
        ethertype = be16(rest, vlan::ETHERTYPE).ok_or(Skip::VlanDepth)?;
        ids.push(tci & vlan::VID_MASK);
        rest = &rest[vlan::TAG_LEN..];
    }
    Ok((ethertype, rest, ids))
}

#[cfg(test)]
mod tests {
    use super::super::samples::{eth_ipv4_tcp, inner_ethernet};
    use super::super::{decode, Ts};
    use super::*;

    #[test]
    fn every_vlan_tag_protocol_id_is_stripped() {
        let base = eth_ipv4_tcp(0);
        for tpid in [[0x81, 0x00], [0x88, 0xa8], [0x91, 0x00]] {
            let mut frame = base[..12].to_vec();
            frame.extend_from_slice(&tpid);
            frame.extend_from_slice(&[0x00, 0x2a]);
            frame.extend_from_slice(&base[12..]);
            let p = decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap();
            assert_eq!((p.vlan.ids(), p.tuple.dport), (&[42][..], 443), "{tpid:02x?}");
        }
    }

    /// Suricata's `vlan` is the whole stack, outermost first, up to three ids; deeper
    /// tags are decoded through without being recorded.
    #[test]
    fn the_vlan_stack_is_kept_outermost_first() {
        let base = eth_ipv4_tcp(0);
        for (tags, want) in [
            (&[30u16, 20, 10][..], &[30u16, 20, 10][..]),
            (&[100, 10], &[100, 10]),
            (&[4, 3, 2, 1], &[4, 3, 2]),
        ] {
            let mut frame = base[..12].to_vec();
            for (i, tag) in tags.iter().enumerate() {
                let tpid: u16 = if i == 0 { 0x88a8 } else { 0x8100 };
                frame.extend_from_slice(&tpid.to_be_bytes());
                frame.extend_from_slice(&(0xe000 | tag).to_be_bytes());
            }
            frame.extend_from_slice(&base[12..]);
            let p = decode(LinkType::Ethernet, Ts(0), 0, &frame).unwrap();
            assert_eq!(p.vlan.ids(), want, "{tags:?}");
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

    #[test]
    fn loopback_families_in_both_byte_orders() {
        let ip = &inner_ethernet()[14..];
        for family in [2u32, 24, 28, 30] {
            for header in [family.to_le_bytes(), family.to_be_bytes()] {
                let frame = [&header[..], ip].concat();
                assert_eq!(network(LinkType::Null, &frame).map(|n| n.ip.len()).ok(), Some(ip.len()));
            }
        }
        let frame = [&7u32.to_le_bytes()[..], ip].concat();
        assert!(matches!(network(LinkType::Null, &frame), Err(Skip::NotIp)));
    }
}
