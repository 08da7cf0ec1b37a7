//! A busy SPAN port: packets drawn from a pool of concurrently open flows, each packet
//! from a random open flow, a finished flow replaced by a new one. Where the example
//! organization ([`super::organization`]) has few long flows, this shape keeps tens of
//! thousands open at once, interleaved packet by packet, as a busy port in front of
//! Exchange does: the flow table's cache misses dominate.
//!
//! Its mix, by flow: lengths 60% 4-20 packets, 35% 20-200, 5% 200-5,000; 78% TCP with
//! full handshakes and teardowns, 22% UDP (DNS with real messages, short UDP, QUIC-like
//! 443); 10% IPv6; 3% 802.1Q. Data frames: 35% minimal, 15% 576 bytes, 35% 1,500, 15%
//! of uniform size. Most flows touch an Exchange role of the example topology.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::wire::{self, Link, Segment, DEFAULT_TTL};
use super::{Rng, EPOCH};
use crate::decode::tcp_flags;
use crate::time::Ts;

/// Options of [`pool`].
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Packets to write (the flows open at the end are not completed).
    pub packets: u64,
    /// Flows open at once.
    pub flows: usize,
    pub seed: u64,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions { packets: 1_000_000, flows: 20_000, seed: 1 }
    }
}

/// What [`pool`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub packets: u64,
    /// Flows started (those still open at the end included).
    pub flows: u64,
    pub frame_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Dns,
    Udp,
    Quic,
}

/// One open flow and how far it has got.
#[derive(Clone, Copy, Debug)]
struct Open {
    kind: Kind,
    client: SocketAddr,
    server: SocketAddr,
    vlan: Option<u16>,
    /// Packets in all, and sent so far.
    len: u32,
    sent: u32,
    seq: [u32; 2],
}

/// Gap between two packets of the port: 1 µs on average (a million packets a second).
const MEAN_GAP_NS: u64 = 1_000;

const MAILBOX: [&str; 3] = ["10.10.1.11", "10.10.1.12", "10.10.2.11"];
const DC: [&str; 2] = ["10.10.0.5", "10.10.0.6"];

fn v4(text: &str) -> IpAddr {
    IpAddr::V4(text.parse::<Ipv4Addr>().expect("address literal"))
}

impl Open {
    fn new(rng: &mut Rng, port: u16) -> Open {
        let v6 = pick(rng, 100) < 10;
        let roll = pick(rng, 100);
        let kind = match roll {
            0..78 => Kind::Tcp,
            78..86 => Kind::Dns,
            86..93 => Kind::Udp,
            _ => Kind::Quic,
        };
        let mailbox = if v6 {
            IpAddr::V6("2001:db8:10::11".parse::<Ipv6Addr>().expect("address literal"))
        } else {
            v4(MAILBOX[pick(rng, 3) as usize])
        };
        let client_ip = if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, rng.range(1, 59_999) as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 20, pick(rng, 256) as u8, rng.range(1, 254) as u8))
        };
        let external = IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.range(1, 254) as u8));
        let (client, server) = match kind {
            Kind::Dns => (SocketAddr::new(mailbox, port), SocketAddr::new(v4("10.10.0.53"), 53)),
            Kind::Quic => (SocketAddr::new(client_ip, port), SocketAddr::new(mailbox, 443)),
            Kind::Udp => {
                (SocketAddr::new(mailbox, port), SocketAddr::new(v4(DC[pick(rng, 2) as usize]), 389))
            }
            Kind::Tcp => match pick(rng, 100) {
                0..55 => {
                    let service = [443, 443, 443, 443, 587, 993, 25, 80][pick(rng, 8) as usize];
                    (SocketAddr::new(client_ip, port), SocketAddr::new(mailbox, service))
                }
                55..70 if !v6 => {
                    let service = [88, 389, 445, 135, 3268][pick(rng, 5) as usize];
                    (SocketAddr::new(mailbox, port), SocketAddr::new(v4(DC[pick(rng, 2) as usize]), service))
                }
                70..80 if !v6 => (SocketAddr::new(external, port), SocketAddr::new(v4("172.16.0.25"), 25)),
                80..85 if !v6 => (SocketAddr::new(v4("172.16.0.25"), port), SocketAddr::new(external, 25)),
                85..98 => (SocketAddr::new(external, port), SocketAddr::new(mailbox, 443)),
                // A few findings: Remote Desktop from the Internet.
                _ => (SocketAddr::new(external, port), SocketAddr::new(mailbox, 3389)),
            },
        };
        let len = match pick(rng, 100) {
            0..60 => rng.range(4, 20),
            60..95 => rng.range(20, 200),
            _ => rng.range(200, 5000),
        } as u32;
        let len = match kind {
            // A handshake and a teardown at least.
            Kind::Tcp => len.max(7),
            Kind::Dns => 2,
            _ => len,
        };
        let vlan = (pick(rng, 100) < 3).then(|| 100 + pick(rng, 4) as u16);
        let seq = [rng.next_u64() as u32, rng.next_u64() as u32];
        Open { kind, client, server, vlan, len, sent: 0, seq }
    }

    fn done(&self) -> bool {
        self.sent >= self.len
    }

    /// The flow's next frame.
    fn next_frame(&mut self, rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
        let i = self.sent;
        self.sent += 1;
        let link = Link { vlans: [self.vlan, None] };
        let (from_client, segment_len) = match self.kind {
            Kind::Tcp => {
                let close = self.len - 4;
                let (from_client, flags) = match i {
                    0 => (true, tcp_flags::SYN),
                    1 => (false, tcp_flags::SYN | tcp_flags::ACK),
                    2 => (true, tcp_flags::ACK),
                    n if n == close => (true, tcp_flags::FIN | tcp_flags::ACK),
                    n if n == close + 1 => (false, tcp_flags::ACK),
                    n if n == close + 2 => (false, tcp_flags::FIN | tcp_flags::ACK),
                    n if n == close + 3 => (true, tcp_flags::ACK),
                    n => (n % 3 != 0, tcp_flags::ACK),
                };
                let data = flags == tcp_flags::ACK && i > 2 && i < close;
                let len = if data { data_len(rng, self.server.is_ipv6(), 40) } else { 0 };
                let side = usize::from(!from_client);
                let (src, dst) =
                    if from_client { (self.client, self.server) } else { (self.server, self.client) };
                let seq = self.seq[side];
                let consumed = len as u32 + u32::from(flags & (tcp_flags::SYN | tcp_flags::FIN) != 0);
                self.seq[side] = seq.wrapping_add(consumed);
                let ack = self.seq[1 - side];
                let segment = Segment::Tcp { flags, seq, ack, payload: &payload[..len] };
                return frame(link, src, dst, segment);
            }
            Kind::Dns => return dns(link, self.client, self.server, i == 0),
            Kind::Udp => (i % 2 == 0, data_len(rng, self.server.is_ipv6(), 28)),
            Kind::Quic => (i % 4 != 1, data_len(rng, self.server.is_ipv6(), 28).max(20)),
        };
        let (src, dst) = if from_client { (self.client, self.server) } else { (self.server, self.client) };
        frame(link, src, dst, Segment::Udp { payload: &payload[..segment_len] })
    }
}

/// A data segment's payload length, for frame sizes 35% minimal, 15% 576 bytes, 35%
/// 1,500, 15% uniform; `transport` is the transport header's length.
fn data_len(rng: &mut Rng, v6: bool, transport: usize) -> usize {
    let headers = 14 + if v6 { 40 } else { 20 } + transport;
    let frame = match pick(rng, 100) {
        0..35 => headers + 1,
        35..50 => 576,
        50..85 => 1514,
        _ => rng.range(headers as u64 + 1, 1514) as usize,
    };
    frame.saturating_sub(headers).max(1)
}

/// A number below `n`, uniformly.
fn pick(rng: &mut Rng, n: u64) -> u64 {
    rng.range(0, n - 1)
}

fn frame(link: Link, src: SocketAddr, dst: SocketAddr, segment: Segment<'_>) -> Vec<u8> {
    wire::ethernet(link, &wire::ip_packet(src, dst, DEFAULT_TTL, segment))
}

/// A real DNS query for `mail.contoso.com` A, or its answer.
fn dns(link: Link, client: SocketAddr, server: SocketAddr, query: bool) -> Vec<u8> {
    let id = client.port().to_be_bytes();
    let mut message = vec![id[0], id[1]];
    message.extend_from_slice(if query { &[0x01, 0x00, 0, 1, 0, 0] } else { &[0x81, 0x80, 0, 1, 0, 1] });
    message.extend_from_slice(&[0, 0, 0, 0]);
    for label in ["mail", "contoso", "com"] {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    if query {
        return frame(link, client, server, Segment::Udp { payload: &message });
    }
    // The answer points back at the question's name, with a 5-minute TTL.
    message.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 10, 10, 1, 11]);
    frame(link, server, client, Segment::Udp { payload: &message })
}

/// Writes `options.packets` packets of the busy-port shape through `emit`.
pub fn pool(
    options: &PoolOptions,
    mut emit: impl FnMut(Ts, &[u8]) -> io::Result<()>,
) -> io::Result<PoolStats> {
    let mut rng = Rng::new(options.seed);
    let payload = vec![0x5a; 1500];
    let mut port = 1024u16;
    let mut next_port = || {
        port = if port == u16::MAX { 1024 } else { port + 1 };
        port
    };
    let mut stats = PoolStats::default();
    let mut open: Vec<Open> = (0..options.flows.max(1)).map(|_| Open::new(&mut rng, next_port())).collect();
    stats.flows = open.len() as u64;
    let mut ts = EPOCH;
    while stats.packets < options.packets {
        let i = pick(&mut rng, open.len() as u64) as usize;
        let frame = open[i].next_frame(&mut rng, &payload);
        ts = ts.saturating_add(pick(&mut rng, 2 * MEAN_GAP_NS));
        emit(ts, &frame)?;
        stats.packets += 1;
        stats.frame_bytes += frame.len() as u64;
        if open[i].done() {
            open[i] = Open::new(&mut rng, next_port());
            stats.flows += 1;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    #[test]
    fn the_pool_shape_is_what_it_says() {
        let mut frames = Vec::new();
        let options = PoolOptions { packets: 50_000, flows: 2_000, seed: 7 };
        let stats = pool(&options, |ts, frame| {
            frames.push((ts, frame.to_vec()));
            Ok(())
        })
        .expect("generate");
        assert_eq!(stats.packets, 50_000);
        assert!(stats.flows > 2_000, "finished flows are replaced: {stats:?}");
        let mean = stats.frame_bytes as f64 / stats.packets as f64;
        assert!((350.0..900.0).contains(&mean), "mean frame size {mean}");
        let decoded: Vec<_> = frames
            .iter()
            .map(|(ts, f)| decode(LinkType::Ethernet, *ts, f.len() as u32, f).expect("every frame decodes"))
            .collect();
        let v6 = decoded.iter().filter(|p| p.tuple.src.is_ipv6()).count() as f64 / decoded.len() as f64;
        let tagged =
            decoded.iter().filter(|p| !p.vlan.ids().is_empty()).count() as f64 / decoded.len() as f64;
        assert!((0.03..0.25).contains(&v6), "IPv6 share {v6}");
        assert!((0.005..0.08).contains(&tagged), "802.1Q share {tagged}");
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0), "time never goes back");
    }
}
