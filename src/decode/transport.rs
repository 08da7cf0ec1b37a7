//! TCP, UDP and ICMP / ICMPv6 headers, read from raw bytes rather than etherparse's
//! transport slices, because first fragments and ICMP quotes carry only the header's
//! start. An ICMP error's quote is found here and read as an IP packet by the caller
//! (`ip`), so this module never calls back up.

use super::{be16, proto, IcmpError, Transport, Tuple};

/// TCP header fields (RFC 9293, section 3.1).
pub(super) mod tcp {
    use crate::decode::Field;

    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    /// Both ports, the part of the header an ICMP quote or a first fragment must hold.
    pub const PORTS: Field = 0..4;
    pub const SEQ: Field = 4..8;
    /// The high nibble: the header's length in 32-bit words.
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    /// Where the options start, after the fixed header.
    pub const OPTIONS: usize = 20;
}

/// UDP header fields (RFC 768).
pub(super) mod udp {
    pub const DST_PORT: usize = 2;
    pub const HEADER_LEN: usize = 8;
}

/// ICMP (RFC 792) and ICMPv6 (RFC 4443) header fields, the same in both.
mod icmp {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    /// Where an error message's quoted packet starts.
    pub const QUOTE: usize = 8;
}

/// The header length a TCP header's data offset gives, if it was captured.
#[inline]
pub(super) fn tcp_header_len(l4: &[u8]) -> Option<usize> {
    l4.get(tcp::DATA_OFFSET).map(|b| usize::from(b >> 4) * 4)
}

/// The TCP sequence number, if it was captured.
#[inline]
pub(super) fn tcp_seq(l4: &[u8]) -> Option<u32> {
    l4.get(tcp::SEQ).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
}

/// What the transport header says, before the packet an ICMP error quotes is read.
pub(super) enum L4<'a> {
    Transport(Transport),
    /// An ICMP error: why it was sent, and the start of the packet it quotes.
    Quote {
        kind: IcmpError,
        quote: &'a [u8],
    },
}

/// Reads the transport header of protocol `proto`, filling in the ports of `tuple`
/// (an ICMP message that is not an error puts its type and code there).
pub(super) fn decode_transport<'a>(
    proto: u8,
    l4: &'a [u8],
    tuple: &mut Tuple,
) -> Result<L4<'a>, super::Skip> {
    use super::Skip;
    match proto {
        proto::TCP | proto::UDP => {
            tuple.sport = be16(l4, tcp::SRC_PORT).ok_or(Skip::TransportTruncated)?;
            tuple.dport = be16(l4, tcp::DST_PORT).ok_or(Skip::TransportTruncated)?;
            Ok(L4::Transport(if proto == proto::TCP {
                let seq = tcp_seq(l4);
                let len = tcp_header_len(l4).and_then(|h| l4.len().checked_sub(h)).map(|n| n as u32);
                Transport::Tcp { flags: l4.get(tcp::FLAGS).copied(), seq, len }
            } else {
                Transport::Udp
            }))
        }
        proto::ICMP | proto::ICMPV6 => {
            let (Some(&kind), Some(&code)) = (l4.get(icmp::TYPE), l4.get(icmp::CODE)) else {
                return Err(Skip::IcmpTruncated);
            };
            let error =
                if proto == proto::ICMP { icmpv4_error(kind, code) } else { icmpv6_error(kind, code) };
            match error {
                None => {
                    tuple.sport = u16::from(kind);
                    tuple.dport = u16::from(code);
                    Ok(L4::Transport(Transport::Icmp { kind, code }))
                }
                Some(kind) => {
                    let quote = l4.get(icmp::QUOTE..).ok_or(Skip::IcmpTruncated)?;
                    Ok(L4::Quote { kind, quote })
                }
            }
        }
        _ => Ok(L4::Transport(Transport::Other)),
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

#[cfg(test)]
mod tests {
    use super::super::samples::sample_frames;
    use super::super::{decode, LinkType, Ts};
    use super::*;

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
        assert_eq!(quoted[1].dst, "2001:db8::2".parse::<std::net::IpAddr>().unwrap());
    }
}
