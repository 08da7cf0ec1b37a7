//! The canonical, direction-free flow key and the Community ID v1 hash.

use std::cmp::Ordering;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;

use base64::Engine;

use crate::decode::{proto, Tuple};

/// A 5-tuple with its two endpoints in a fixed order, so both directions of a flow give
/// the same key. Compact (40 bytes: four address words, two ports, a protocol): it is
/// hashed and compared on every packet, and stored in every flow-table slot.
///
/// An endpoint is an address (IPv4 as its IPv4-mapped IPv6 form, so both families share
/// one integer, kept as two big-endian words) and a port. Keys order by the lower
/// endpoint, then the higher one, then the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// The lower endpoint's address words, then the higher one's.
    addrs: [u64; 4],
    ports: [u16; 2],
    pub proto: u8,
    /// Keeps an IPv6 flow between IPv4-mapped addresses apart from the IPv4 flow.
    v6: bool,
}

impl Hash for FlowKey {
    /// One word, [`FlowKey::hash64`]: the flow table hashes the key on every packet.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

/// The hasher of the flow and direction tables: their keys hash themselves to one mixed
/// word ([`FlowKey::hash64`]), used as it is rather than hashed again.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = fold(self.0 ^ u64::from(byte), MIX[0]);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`KeyHasher`]s for the flow table.
pub type KeyHashState = BuildHasherDefault<KeyHasher>;

/// Odd constants (digits of pi) that keep a zero word from zeroing a product.
const MIX: [u64; 5] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
];

/// Four address words and one more word hashed by three folded multiplies.
fn mix_words(addrs: &[u64; 4], rest: u64) -> u64 {
    let lo = fold(addrs[0] ^ MIX[0], addrs[1] ^ MIX[1]);
    let hi = fold(addrs[2] ^ MIX[2], addrs[3] ^ MIX[3]);
    fold(lo ^ rest, hi ^ MIX[4])
}

/// The folded multiply (as in foldhash and wyhash): 128 bits in, 64 well-mixed bits out.
fn fold(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Ord for FlowKey {
    fn cmp(&self, other: &FlowKey) -> Ordering {
        let order = |k: &FlowKey| (k.end(0), k.end(1), k.proto, k.v6);
        order(self).cmp(&order(other))
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &FlowKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The address of an endpoint as two big-endian words (IPv4 mapped into IPv6).
fn words(addr: IpAddr) -> [u64; 2] {
    match addr {
        // ::ffff:a.b.c.d
        IpAddr::V4(v4) => [0, 0xffff_0000_0000 | u64::from(u32::from(v4))],
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            [(bits >> 64) as u64, bits as u64]
        }
    }
}

impl FlowKey {
    /// A key no packet has (a placeholder).
    pub const NONE: FlowKey = FlowKey { addrs: [0; 4], ports: [0; 2], proto: 0, v6: false };

    /// The key of `tuple`.
    pub fn of(tuple: &Tuple) -> FlowKey {
        let ([s0, s1], [d0, d1]) = (words(tuple.src), words(tuple.dst));
        let (addrs, ports) = if (s0, s1, tuple.sport) <= (d0, d1, tuple.dport) {
            ([s0, s1, d0, d1], [tuple.sport, tuple.dport])
        } else {
            ([d0, d1, s0, s1], [tuple.dport, tuple.sport])
        };
        FlowKey { addrs, ports, proto: tuple.proto, v6: tuple.src.is_ipv6() }
    }

    /// A hash of the key, mixed in every bit (the table uses the low bits for the slot
    /// and the high ones as a tag): three multiplies for the whole key.
    pub fn hash64(&self) -> u64 {
        let rest = u64::from(self.ports[0]) << 32
            | u64::from(self.ports[1]) << 16
            | u64::from(self.proto) << 8
            | u64::from(self.v6);
        mix_words(&self.addrs, rest)
    }

    /// The address of endpoint `i` (0: lower, 1: higher), in the flow's own family.
    pub fn addr(&self, i: usize) -> IpAddr {
        let (hi, lo) = (self.addrs[2 * i], self.addrs[2 * i + 1]);
        if self.v6 {
            IpAddr::V6((u128::from(hi) << 64 | u128::from(lo)).into())
        } else {
            IpAddr::V4((lo as u32).into())
        }
    }

    /// The (keyed) port of endpoint `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Endpoint `i` (0: lower, 1: higher) as (address words, port), for ordering.
    fn end(&self, i: usize) -> ([u64; 2], u16) {
        ([self.addrs[2 * i], self.addrs[2 * i + 1]], self.ports[i])
    }
}

/// An ordered pair of hosts, one sending to the other: compact and hashed once, like
/// [`FlowKey`], for the table of directions the capture has shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPair {
    /// The sender's address words, then the receiver's.
    addrs: [u64; 4],
    v6: bool,
}

impl HostPair {
    pub fn new(from: IpAddr, to: IpAddr) -> HostPair {
        let v6 = from.is_ipv6();
        let (from, to) = (words(from), words(to));
        HostPair { addrs: [from[0], from[1], to[0], to[1]], v6 }
    }
}

impl Hash for HostPair {
    /// One word, for the [`KeyHasher`].
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(mix_words(&self.addrs, u64::from(self.v6)));
    }
}

/// The ports the Community ID spec gives an ICMP or ICMPv6 message of type `kind` and
/// code `code`, and whether the message is one-way: a request or reply gets its own type
/// and its counterpart's (so the pair is one flow); any other type gets its type and
/// code, one-way.
pub fn icmp_ports(proto: u8, kind: u8, code: u8) -> (u16, u16, bool) {
    match icmp_counterpart(proto, kind) {
        Some(other) => (u16::from(kind), u16::from(other), false),
        None => (u16::from(kind), u16::from(code), true),
    }
}

/// The tuple the flow table keys a packet by: an ICMP message's type and code (in the
/// port fields) mapped as the Community ID spec maps them, so that an echo request and
/// its reply, or a neighbour solicitation and its advertisement, are one flow (as in
/// Zeek and Suricata), and every other type is a flow of its own; other protocols as
/// they are.
#[inline]
pub fn keyed(tuple: &Tuple) -> Tuple {
    if !matches!(tuple.proto, proto::ICMP | proto::ICMPV6) {
        return *tuple;
    }
    let (sport, dport, _) = icmp_ports(tuple.proto, tuple.sport as u8, tuple.dport as u8);
    Tuple { sport, dport, ..*tuple }
}

/// Community ID v1 (<https://github.com/corelight/community-id-spec>) of a directional
/// tuple, with the given seed. Returns `1:` followed by the base64 of a SHA-1. An ICMP
/// tuple carries the message's type and code where the ports go.
pub fn community_id(seed: u16, tuple: &Tuple) -> String {
    let (mut sport, mut dport) = (tuple.sport, tuple.dport);
    let mut one_way = false;
    if matches!(tuple.proto, proto::ICMP | proto::ICMPV6) {
        (sport, dport, one_way) = icmp_ports(tuple.proto, tuple.sport as u8, tuple.dport as u8);
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
            (139, 140),
            (140, 139),
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

    fn icmp(src: &str, dst: &str, proto: u8, kind: u8, code: u8) -> Tuple {
        Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: u16::from(kind),
            dport: u16::from(code),
            proto,
        }
    }

    /// The spec's ICMP examples: an echo request and its reply share an id, as do a
    /// neighbour solicitation and its advertisement.
    #[test]
    fn community_id_maps_icmp_as_the_spec_does() {
        let request = icmp("192.168.0.89", "192.168.0.1", proto::ICMP, 8, 0);
        assert_eq!(community_id(0, &request), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
        let reply = icmp("192.168.0.1", "192.168.0.89", proto::ICMP, 0, 0);
        assert_eq!(community_id(0, &reply), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
        let solicit = icmp("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", proto::ICMPV6, 135, 0);
        assert_eq!(community_id(0, &solicit), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=");
        let advert = icmp("fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", proto::ICMPV6, 136, 0);
        assert_eq!(community_id(0, &advert), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=");
    }

    /// Flows follow the same mapping: a request/reply pair is one flow, other types
    /// (here an ICMPv6 MLDv2 report and a redirect) are flows of their own.
    #[test]
    fn icmp_flows_are_keyed_as_the_spec_maps_them() {
        let (a, b) = ("fe80::1", "fe80::2");
        let key = |t: Tuple| FlowKey::of(&keyed(&t));
        assert_eq!(key(icmp(a, b, proto::ICMPV6, 135, 0)), key(icmp(b, a, proto::ICMPV6, 136, 0)));
        assert_eq!(key(icmp(a, b, proto::ICMPV6, 128, 0)), key(icmp(b, a, proto::ICMPV6, 129, 0)));
        assert_ne!(key(icmp(a, b, proto::ICMPV6, 135, 0)), key(icmp(a, b, proto::ICMPV6, 128, 0)));
        assert_ne!(key(icmp(a, b, proto::ICMPV6, 136, 0)), key(icmp(a, b, proto::ICMPV6, 143, 0)));
        assert_ne!(key(icmp(a, b, proto::ICMPV6, 137, 0)), key(icmp(b, a, proto::ICMPV6, 137, 0)));
        let v4 = |kind| key(icmp("10.0.0.1", "10.0.0.2", proto::ICMP, kind, 0));
        assert_eq!(v4(8), key(icmp("10.0.0.2", "10.0.0.1", proto::ICMP, 0, 0)));
        assert_ne!(v4(8), v4(13));
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

    /// The table takes slots from the low bits and tags from the top seven: both must
    /// spread keys that differ only a little (one subnet, sequential ports).
    #[test]
    fn hash64_spreads_similar_keys_over_low_and_high_bits() {
        let t = tuple(proto::TCP);
        let keys: Vec<FlowKey> = (0..1u32 << 16)
            .map(|i| {
                let src = IpAddr::from((0x0a00_0000 | (i >> 4)).to_be_bytes());
                FlowKey::of(&Tuple { src, sport: 40_000 + (i & 15) as u16, ..t })
            })
            .collect();
        let mut low = vec![0u32; 1024];
        let mut high = vec![0u32; 128];
        for key in &keys {
            let hash = key.hash64();
            low[(hash & 1023) as usize] += 1;
            high[(hash >> 57) as usize] += 1;
        }
        // 64 keys per slot and 512 per tag on average; a poor mix piles them up.
        assert!(low.iter().all(|&n| (24..=112).contains(&n)), "{:?}", low.iter().max());
        assert!(high.iter().all(|&n| (384..=640).contains(&n)), "{:?}", high.iter().max());
    }

    #[test]
    fn ipv4_words_are_the_ipv4_mapped_address() {
        for v4 in [[10, 1, 2, 3], [0, 0, 0, 0], [255, 255, 255, 255], [192, 0, 2, 128]] {
            let v4 = std::net::Ipv4Addr::from(v4);
            assert_eq!(words(IpAddr::V4(v4)), words(IpAddr::V6(v4.to_ipv6_mapped())), "{v4}");
        }
    }
}
