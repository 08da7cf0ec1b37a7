//! The canonical, direction-free flow key and the Community ID v1 hash.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use base64::Engine;

use crate::decode::{proto, Tuple};

/// One end of a flow: an address (IPv4 as its IPv4-mapped IPv6 form, so both families
/// share one integer) and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct End {
    addr: u128,
    port: u16,
}

impl End {
    fn new(addr: IpAddr, port: u16) -> End {
        let addr = match addr {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        End { addr, port }
    }
}

/// A 5-tuple with its two endpoints in a fixed order, so both directions of a flow give
/// the same key. Compact (two integers, two ports, a protocol): it is hashed and
/// compared on every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    lo: End,
    hi: End,
    pub proto: u8,
    /// Keeps an IPv6 flow between IPv4-mapped addresses apart from the IPv4 flow.
    v6: bool,
}

impl Hash for FlowKey {
    /// Five words instead of a write per field: the key is hashed on every packet.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.lo.addr);
        state.write_u128(self.hi.addr);
        let rest = u64::from(self.lo.port) << 32
            | u64::from(self.hi.port) << 16
            | u64::from(self.proto) << 8
            | u64::from(self.v6);
        state.write_u64(rest);
    }
}

impl FlowKey {
    /// The key of `tuple`.
    pub fn of(tuple: &Tuple) -> FlowKey {
        let src = End::new(tuple.src, tuple.sport);
        let dst = End::new(tuple.dst, tuple.dport);
        let (lo, hi) = if src <= dst { (src, dst) } else { (dst, src) };
        FlowKey { lo, hi, proto: tuple.proto, v6: tuple.src.is_ipv6() }
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
    // The spec orders endpoints by address bytes, then port; addresses of one tuple
    // are of one family, so IpAddr's order is that order.
    let ordered = one_way || (tuple.src, sport) < (tuple.dst, dport);
    let (a, b) = if ordered {
        ((tuple.src, sport), (tuple.dst, dport))
    } else {
        ((tuple.dst, dport), (tuple.src, sport))
    };

    let mut sha = sha1_smol::Sha1::new();
    sha.update(&seed.to_be_bytes());
    update_addr(&mut sha, a.0);
    update_addr(&mut sha, b.0);
    sha.update(&[tuple.proto, 0]);
    if has_ports(tuple.proto) {
        sha.update(&a.1.to_be_bytes());
        sha.update(&b.1.to_be_bytes());
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
        assert_eq!(FlowKey::of(&t), FlowKey::of(&back));
        assert_ne!(FlowKey::of(&t), FlowKey::of(&Tuple { sport: 1, ..t }));
        let v4 = Tuple { src: IpAddr::from([0, 0, 0, 1]), ..t };
        // The same bits as IPv4-mapped IPv6 addresses are another flow.
        let v6 =
            Tuple { src: "::ffff:0.0.0.1".parse().unwrap(), dst: "::ffff:5.6.7.8".parse().unwrap(), ..t };
        assert_ne!(FlowKey::of(&v4), FlowKey::of(&v6));
    }
}
