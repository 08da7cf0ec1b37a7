//! IP prefixes and a longest-prefix-match table.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The first address of the prefix (the host itself for a host).
    pub fn network(&self) -> IpAddr {
        self.addr
    }

    fn max_len(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The address with the bits past `len` cleared.
    fn masked(addr: IpAddr, len: u8) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// The last address of an IPv4 prefix of 30 bits or fewer (a subnet's directed
    /// broadcast); `None` for hosts, point-to-point links and IPv6.
    pub fn directed_broadcast(&self) -> Option<u32> {
        match self.addr {
            IpAddr::V4(v4) if self.len <= 30 => Some(u32::from(v4) | (u32::MAX >> self.len)),
            _ => None,
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && Prefix::masked(addr, self.len) == self.addr
    }

    /// An IPv4-mapped IPv6 prefix (`::ffff:10.1.10.11`) as the IPv4 prefix it stands for:
    /// such addresses are looked up as IPv4, so they are listed as IPv4 too.
    pub fn canonical(self) -> Prefix {
        match self.addr {
            IpAddr::V6(v6) if self.len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Prefix { addr: IpAddr::V4(v4), len: self.len - 96 },
                None => self,
            },
            _ => self,
        }
    }

    /// Whether every address of `other` is in this prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        let shorter = self.len.min(other.len);
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && Prefix::masked(self.addr, shorter) == Prefix::masked(other.addr, shorter)
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Prefix, String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr_text.parse().map_err(|_| format!("`{text}` is not an IPv4 or IPv6 address or prefix"))?;
        let max = Prefix::max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => return Err(format!("`{text}`: prefix length must be 0 to {max}")),
            },
        };
        if Prefix::masked(addr, len) != addr {
            return Err(format!("`{text}` has host bits set past /{len}"));
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Longest-prefix match from prefixes to values: one hash map per prefix length,
/// probed from the longest length down, so a lookup costs one probe per distinct length.
/// Every new flow is looked up twice; the maps hash with foldhash rather than SipHash
/// (their keys come from the configuration, not from the traffic).
#[derive(Clone, Debug)]
pub struct PrefixTable<V> {
    /// (length, is IPv4, prefixes of that length), longest first.
    levels: Vec<(u8, bool, Level<V>)>,
}

type Level<V> = HashMap<IpAddr, V, foldhash::fast::FixedState>;

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable { levels: Vec::new() }
    }
}

impl<V: Clone> PrefixTable<V> {
    /// Inserts `prefix`; an existing entry for the same prefix is kept (first wins).
    pub fn insert(&mut self, prefix: Prefix, value: V) {
        let v4 = prefix.addr.is_ipv4();
        let same_level = |(len, is_v4, _): &&mut (u8, bool, Level<V>)| *len == prefix.len && *is_v4 == v4;
        if !self.levels.iter_mut().any(|level| same_level(&level)) {
            self.levels.push((prefix.len, v4, Level::default()));
            self.levels.sort_by_key(|level| std::cmp::Reverse(level.0));
        }
        if let Some((_, _, map)) = self.levels.iter_mut().find(same_level) {
            map.entry(prefix.addr).or_insert(value);
        }
    }

    pub fn lookup(&self, addr: IpAddr) -> Option<&V> {
        let v4 = addr.is_ipv4();
        self.levels
            .iter()
            .filter(|(_, is_v4, _)| *is_v4 == v4)
            .find_map(|(len, _, map)| map.get(&Prefix::masked(addr, *len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    #[test]
    fn parses_hosts_and_prefixes() {
        assert_eq!(p("10.1.2.3").prefix_len(), 32);
        assert_eq!(p("2001:db8::/32").prefix_len(), 32);
        assert!("10.1.2.3/8".parse::<Prefix>().unwrap_err().contains("host bits"));
        assert!("10.1.2.0/33".parse::<Prefix>().is_err());
        assert!("10.1.2.300".parse::<Prefix>().is_err());
    }

    #[test]
    fn most_specific_prefix_wins() {
        let mut table = PrefixTable::default();
        table.insert(p("10.0.0.0/8"), "wide");
        table.insert(p("10.20.0.0/16"), "narrow");
        table.insert(p("10.20.1.5"), "host");
        table.insert(p("2001:db8::/32"), "v6");
        assert_eq!(table.lookup("10.20.1.5".parse().unwrap()), Some(&"host"));
        assert_eq!(table.lookup("10.20.1.6".parse().unwrap()), Some(&"narrow"));
        assert_eq!(table.lookup("10.9.9.9".parse().unwrap()), Some(&"wide"));
        assert_eq!(table.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(table.lookup("2001:db8::1".parse().unwrap()), Some(&"v6"));
        assert_eq!(table.lookup("::ffff:10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn mapped_prefixes_are_ipv4() {
        assert_eq!(p("::ffff:10.1.10.11").canonical(), p("10.1.10.11"));
        assert_eq!(p("::ffff:10.1.0.0/112").canonical(), p("10.1.0.0/16"));
        assert_eq!(p("2001:db8::1").canonical(), p("2001:db8::1"));
        assert!(p("10.1.0.0/16").covers(&p("10.1.10.11")));
        assert!(!p("10.1.10.11").covers(&p("10.1.0.0/16")));
    }

    #[test]
    fn overlap() {
        assert!(p("10.0.0.0/8").overlaps(&p("10.2.0.0/16")));
        assert!(!p("10.0.0.0/16").overlaps(&p("10.1.0.0/16")));
        assert!(!p("0.0.0.0/0").overlaps(&p("::/0")));
    }
}
