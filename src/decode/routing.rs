//! Which worker a frame goes to: a symmetric hash of the addresses of the flow it
//! belongs to. The common packets are hashed straight from their header bytes; the rest
//! go through [`decode`], so this module sits above the layers and nothing below calls it.

use std::net::IpAddr;

use super::ip::{self, ipv4, ipv6};
use super::link::{self, Network};
use super::transport::udp;
use super::tunnel::{gre, vxlan};
use super::{be16, decode, proto, LinkType, Transport};
use crate::time::Ts;

/// A hash of the unordered pair of IP addresses a frame belongs to, for routing frames
/// to workers: both directions of a flow, all fragments of a datagram, and ICMP errors
/// about a flow (hashed by their quoted packet) land on the same worker. A frame that
/// will not decode may go to any worker, which counts the skip.
pub fn route_hash(link: LinkType, frame: &[u8]) -> u64 {
    let Ok(Network { ip, .. }) = link::network(link, frame) else {
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
    match ip::version(ip)? {
        // The decoder reads an ICMP error by its protocol number, whatever the IP version.
        4 if !matches!(*ip.get(ipv4::PROTOCOL)?, proto::ICMP | proto::ICMPV6 | gre::PROTOCOL)
            && !is_vxlan(ip, ip::ipv4_header_len(ip[ipv4::VERSION_IHL]), ipv4::PROTOCOL) =>
        {
            let a: [u8; 8] = ip.get(ipv4::ADDRS)?.try_into().ok()?;
            let src = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
            let dst = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
            Some(widen(mix32(src ^ dst)))
        }
        6 if matches!(*ip.get(ipv6::NEXT_HEADER)?, proto::TCP | proto::UDP)
            && !is_vxlan(ip, ipv6::HEADER_LEN, ipv6::NEXT_HEADER) =>
        {
            let addrs: &[u8; 32] = ip.get(ipv6::ADDRS)?.try_into().ok()?;
            let folded = addrs
                .chunks_exact(4)
                .fold(0, |acc, word| acc ^ u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
            Some(widen(mix32(folded)))
        }
        _ => None,
    }
}

/// Whether the IP packet is UDP to the VXLAN port (the header at `proto_at` says UDP, and
/// the transport header starts at `l4`).
fn is_vxlan(ip: &[u8], l4: usize, proto_at: usize) -> bool {
    ip.get(proto_at) == Some(&proto::UDP) && be16(ip, l4 + udp::DST_PORT) == Some(vxlan::PORT)
}

/// Symmetric hash of two addresses: `pair_hash(a, b) == pair_hash(b, a)`. The 32-bit
/// [`pair_hash32`] in both halves, so the reader's multiply-shift onto its workers picks by
/// the same hash the capture sockets of a fanout group are picked by.
pub fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    widen(pair_hash32(a, b))
}

/// The fanout hash of an unordered address pair (`capture::fanout` computes it in the
/// kernel): IPv4 `a ^ b`, IPv6 the eight address words xored, then [`mix32`].
pub fn pair_hash32(a: IpAddr, b: IpAddr) -> u32 {
    fn fold(addr: IpAddr) -> u32 {
        match addr {
            IpAddr::V4(v4) => u32::from(v4),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                (0..4).fold(0, |acc, i| acc ^ (bits >> (32 * i)) as u32)
            }
        }
    }
    mix32(fold(a) ^ fold(b))
}

/// The `lowbias32` finalizer: spreads nearby addresses over all workers and sockets.
pub fn mix32(x: u32) -> u32 {
    let x = (x ^ (x >> 16)).wrapping_mul(MIX32_MUL[0]);
    let x = (x ^ (x >> 15)).wrapping_mul(MIX32_MUL[1]);
    x ^ (x >> 16)
}

/// [`mix32`]'s multipliers (the fanout program multiplies by them too).
pub const MIX32_MUL: [u32; 2] = [0x7feb_352d, 0x846c_a68b];

/// A 32-bit hash in both halves of a `u64`: `(hash * n) >> 64` then spreads it over `n`.
fn widen(hash: u32) -> u64 {
    (u64::from(hash) << 32) | u64::from(hash)
}

#[cfg(test)]
mod tests {
    use super::super::samples::sample_frames;
    use super::*;

    #[test]
    fn the_fast_route_hash_agrees_with_the_decoder() {
        for (link, frame) in sample_frames() {
            let Ok(Network { ip, .. }) = link::network(link, &frame) else { continue };
            if let (Some(fast), Ok(inner)) = (route_hash_fast(ip), ip::decode_ip(ip)) {
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
}
