//! The canonical, direction-free flow key and the Community ID v1 hash.

use std::net::IpAddr;

use base64::Engine;

use crate::decode::{proto, Tuple};

/// One end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// A 5-tuple with its two endpoints in a fixed order (`lo <= hi`), so both directions
/// of a flow give the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub lo: Endpoint,
    pub hi: Endpoint,
    pub proto: u8,
}

impl FlowKey {
    /// The key of `tuple`, and whether the tuple's source is the key's `lo` end.
    pub fn of(tuple: &Tuple) -> (FlowKey, bool) {
        let src = Endpoint { addr: tuple.src, port: tuple.sport };
        let dst = Endpoint { addr: tuple.dst, port: tuple.dport };
        if src <= dst {
            (FlowKey { lo: src, hi: dst, proto: tuple.proto }, true)
        } else {
            (FlowKey { lo: dst, hi: src, proto: tuple.proto }, false)
        }
    }
}

/// Community ID v1 (<https://github.com/corelight/community-id-spec>) of a directional
/// tuple, with the given seed. Returns `1:` followed by the base64 of a SHA-1.
pub fn community_id(seed: u16, tuple: &Tuple) -> String {
    let (mut sport, mut dport) = (tuple.sport, tuple.dport);
    let mut one_way = false;
    if matches!(tuple.proto, proto::ICMP | proto::ICMPV6) {
        // ICMP "ports" are type and code; request/reply types pair up.
        let kind = tuple.sport as u8;
        match icmp_counterpart(tuple.proto, kind) {
            Some(other) => dport = u16::from(other),
            None => one_way = true,
        }
        sport = u16::from(kind);
        if one_way {
            dport = tuple.dport;
        }
    }
    let src = Endpoint { addr: tuple.src, port: sport };
    let dst = Endpoint { addr: tuple.dst, port: dport };
    // Endpoint's order (address bytes, then port) is the spec's order.
    let ordered = one_way || src < dst;
    let (a, b) = if ordered { (src, dst) } else { (dst, src) };

    let mut sha = sha1_smol::Sha1::new();
    sha.update(&seed.to_be_bytes());
    update_addr(&mut sha, a.addr);
    update_addr(&mut sha, b.addr);
    sha.update(&[tuple.proto, 0]);
    if has_ports(tuple.proto) {
        sha.update(&a.port.to_be_bytes());
        sha.update(&b.port.to_be_bytes());
    }
    let digest = sha.digest().bytes();
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut out);
    out
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, proto::TCP | proto::UDP | proto::ICMP | proto::ICMPV6 | 132)
}

fn update_addr(sha: &mut sha1_smol::Sha1, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => sha.update(&v4.octets()),
        IpAddr::V6(v6) => sha.update(&v6.octets()),
    }
}

/// The ICMP type that answers `kind`, per the Community ID spec's tables.
fn icmp_counterpart(proto: u8, kind: u8) -> Option<u8> {
    let table: &[(u8, u8)] = if proto == proto::ICMP {
        &[(8, 0), (0, 8), (13, 14), (14, 13), (15, 16), (16, 15), (10, 9), (9, 10), (17, 18), (18, 17)]
    } else {
        &[
            (128, 129),
            (129, 128),
            (133, 134),
            (134, 133),
            (135, 136),
            (136, 135),
            (130, 131),
            (131, 130),
            (144, 145),
            (145, 144),
        ]
    };
    table.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(proto: u8) -> Tuple {
        Tuple {
            src: IpAddr::from([1, 2, 3, 4]),
            dst: IpAddr::from([5, 6, 7, 8]),
            sport: 1122,
            dport: 3344,
            proto,
        }
    }

    #[test]
    fn community_id_matches_the_spec_vectors() {
        assert_eq!(community_id(0, &tuple(proto::TCP)), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        assert_eq!(community_id(0, &tuple(proto::UDP)), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=");
        assert_eq!(community_id(1, &tuple(proto::TCP)), "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=");
    }

    #[test]
    fn community_id_is_the_same_both_ways() {
        let t = tuple(proto::TCP);
        let back = Tuple { src: t.dst, dst: t.src, sport: t.dport, dport: t.sport, ..t };
        assert_eq!(community_id(0, &t), community_id(0, &back));
    }

    #[test]
    fn flow_key_is_symmetric() {
        let t = tuple(proto::TCP);
        let back = Tuple { src: t.dst, dst: t.src, sport: t.dport, dport: t.sport, ..t };
        let (k1, src_lo1) = FlowKey::of(&t);
        let (k2, src_lo2) = FlowKey::of(&back);
        assert_eq!(k1, k2);
        assert_ne!(src_lo1, src_lo2);
    }
}
