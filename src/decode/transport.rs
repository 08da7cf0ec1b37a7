//! TCP, UDP and ICMP / ICMPv6 headers, read from raw bytes rather than etherparse's
//! transport slices, because first fragments and ICMP quotes carry only the header's
//! start. An ICMP error's quote is found here and read as an IP packet by the caller
//! (`ip`), so this module never calls back up. Also the options of a TCP handshake.

use super::app::Head;
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
    /// A data offset of 15 words leaves 40 bytes for options.
    pub const MAX_OPTIONS_LEN: usize = 40;
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

/// The first bytes of the payload of a TCP or UDP header `l4` (none for other protocols,
/// or when the capture cut the header itself).
///
/// Inlined into the decoder, so that the head is built where it is stored: returned
/// through memory, it was written in pieces and read back in one wide load, which had
/// to wait for the pieces (a quarter of the decoder's samples).
#[inline(always)]
pub(super) fn head(proto: u8, l4: &[u8]) -> Head {
    let payload = match proto {
        proto::TCP => tcp_header_len(l4).and_then(|at| l4.get(at..)),
        proto::UDP => l4.get(udp::HEADER_LEN..),
        _ => None,
    };
    match payload {
        Some(payload) if proto == proto::TCP => Head::of_tcp(payload),
        Some(payload) => Head::of(payload),
        None => Head::NONE,
    }
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
        (3, 2 | 3) => Some(IcmpError::Unreachable),
        (3 | 4 | 5 | 11 | 12, _) => Some(IcmpError::Other),
        _ => None,
    }
}

fn icmpv6_error(kind: u8, code: u8) -> Option<IcmpError> {
    match (kind, code) {
        (1, 1 | 5 | 6) => Some(IcmpError::Prohibited),
        (1, 4) => Some(IcmpError::Unreachable),
        (1..=4, _) => Some(IcmpError::Other),
        _ => None,
    }
}

/// A TCP SYN or SYN-ACK, owned: its tuple, sequence number and flags, and its options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynOptions {
    pub tuple: Tuple,
    pub seq: u32,
    pub flags: u8,
    pub options: TcpOptions,
}

impl SynOptions {
    /// Reads the sequence number and options of the TCP header `tcp`; `None` when its
    /// data offset is below the fixed header or past the bytes captured.
    pub(super) fn of(tuple: Tuple, flags: u8, tcp: &[u8]) -> Option<SynOptions> {
        let seq = tcp_seq(tcp)?;
        let raw = tcp.get(tcp::OPTIONS..tcp_header_len(tcp)?)?;
        Some(SynOptions { tuple, seq, flags, options: TcpOptions::of(raw)? })
    }
}

/// The options of a TCP header, copied out of the frame, with the MSS they carry.
/// Two are equal when their bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpOptions {
    /// The maximum segment size option's value, if present.
    pub mss: Option<u16>,
    bytes: [u8; tcp::MAX_OPTIONS_LEN],
    len: u8,
}

impl TcpOptions {
    /// `None` when `raw` is longer than a TCP header can hold.
    fn of(raw: &[u8]) -> Option<TcpOptions> {
        let mut bytes = [0; tcp::MAX_OPTIONS_LEN];
        bytes.get_mut(..raw.len())?.copy_from_slice(raw);
        Some(TcpOptions { mss: mss(raw), bytes, len: raw.len() as u8 })
    }

    /// The option bytes as the header carried them.
    pub fn raw(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// TCP option kinds (RFC 9293, section 3.2).
mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
}

/// The MSS option's value, if present. Walks the options by their lengths (a length
/// below 2 counts as 2, so a broken one cannot hold the walk in place).
fn mss(mut options: &[u8]) -> Option<u16> {
    while let [kind, rest @ ..] = options {
        match *kind {
            option::END => return None,
            option::NOP => options = rest,
            option::MSS => return rest.get(1..3).map(|v| u16::from_be_bytes([v[0], v[1]])),
            _ => {
                let len = usize::from(*rest.first()?).max(2);
                options = options.get(len..)?;
            }
        }
    }
    None
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
                Transport::IcmpError { kind: IcmpError::Prohibited, quoted, .. } => Some(quoted),
                _ => None,
            })
            .collect();
        assert_eq!(quoted.len(), 2);
        assert_eq!((quoted[0].dport, quoted[0].proto), (135, proto::TCP));
        assert_eq!(quoted[1].dst, "2001:db8::2".parse::<std::net::IpAddr>().unwrap());
    }

    #[test]
    fn reads_the_mss_among_other_options() {
        assert_eq!(mss(&[2, 4, 0x05, 0xb4, 1, 1, 4, 2]), Some(1460));
        assert_eq!(mss(&[1, 3, 3, 7, 2, 4, 0x05, 0x64]), Some(1380));
        assert_eq!(mss(&[4, 2, 1, 1]), None);
        assert_eq!(mss(&[8, 0]), None, "a zero length must not loop");
        assert_eq!(mss(&[0, 2, 4, 0x05, 0xb4]), None, "nothing after the end of the list");
        assert_eq!(mss(&[2, 4, 0x05]), None, "an MSS cut short");
    }

    #[test]
    fn options_are_copied_whole_and_bounded() {
        let raw = [2, 4, 0x05, 0xb4, 1, 1, 4, 2];
        let options = TcpOptions::of(&raw).unwrap();
        assert_eq!((options.raw(), options.mss), (&raw[..], Some(1460)));
        assert_ne!(options, TcpOptions::of(&raw[..4]).unwrap());
        assert!(TcpOptions::of(&[1; tcp::MAX_OPTIONS_LEN]).is_some());
        assert_eq!(TcpOptions::of(&[1; tcp::MAX_OPTIONS_LEN + 1]), None);
    }
}
