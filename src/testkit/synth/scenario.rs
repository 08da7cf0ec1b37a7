//! Hand-built captures: a scenario is written call by call, in the order things happen
//! on the wire.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::wire::{self, IpFragment, Link, Segment, DEFAULT_TTL};
use super::{ACK, EPOCH, FIN, PSH, RST, SYN};
use crate::decode::tcp_flags;
use crate::time::Ts;

/// One frame of a synthetic capture.
#[derive(Clone, Debug)]
pub struct SynthFrame {
    pub ts: Ts,
    pub data: Vec<u8>,
    pub wire_len: u32,
}

/// A hand-built capture: call the methods in the order things happen on the wire.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub now: Ts,
    pub link: Link,
    pub ttl: u8,
    pub frames: Vec<SynthFrame>,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario { now: EPOCH, link: Link::default(), ttl: DEFAULT_TTL, frames: Vec::new() }
    }
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario::default()
    }

    /// Lets `secs` of capture time pass.
    pub fn wait(&mut self, secs: f64) -> &mut Scenario {
        self.now = self.now.saturating_add((secs * 1e9) as u64);
        self
    }

    /// Appends a frame carrying `ip` (an IP packet), 10 µs after the previous one.
    pub fn ip(&mut self, ip: &[u8]) -> &mut Scenario {
        self.now = self.now.saturating_add(10_000);
        let data = wire::ethernet(self.link, ip);
        let wire_len = data.len() as u32;
        self.frames.push(SynthFrame { ts: self.now, data, wire_len });
        self
    }

    /// Appends one segment from `src` to `dst`.
    pub fn send(&mut self, src: SocketAddr, dst: SocketAddr, segment: Segment<'_>) -> &mut Scenario {
        let ip = wire::ip_packet(src, dst, self.ttl, segment);
        self.ip(&ip)
    }

    fn tcp(&mut self, src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> &mut Scenario {
        self.send(src, dst, Segment::Tcp { flags, seq: 1, ack: 1, payload })
    }

    /// A whole TCP connection: handshake, `exchanges` request/response pairs, FIN both ways.
    pub fn tcp_session(&mut self, client: SocketAddr, server: SocketAddr, exchanges: usize) -> &mut Scenario {
        self.tcp(client, server, SYN, &[]).tcp(server, client, SYN | ACK, &[]).tcp(client, server, ACK, &[]);
        let (request, response) =
            (wire::speech(server.port(), true, 100), wire::speech(server.port(), false, 400));
        for _ in 0..exchanges {
            self.tcp(client, server, PSH | ACK, &request).tcp(server, client, PSH | ACK, &response);
        }
        self.tcp(client, server, FIN | ACK, &[]).tcp(server, client, FIN | ACK, &[]).tcp(
            client,
            server,
            ACK,
            &[],
        )
    }

    /// A TCP connection picked up mid-stream: data both ways, no handshake. The first
    /// packet comes from the server.
    pub fn tcp_midstream(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        exchanges: usize,
    ) -> &mut Scenario {
        for _ in 0..exchanges {
            self.tcp(server, client, PSH | ACK, &[b'r'; 300]).tcp(client, server, ACK, &[]);
        }
        self
    }

    /// A SYN refused with a RST.
    pub fn tcp_refused(&mut self, client: SocketAddr, server: SocketAddr) -> &mut Scenario {
        self.tcp(client, server, SYN, &[]).tcp(server, client, RST | ACK, &[])
    }

    /// A SYN sent `1 + retries` times, `spacing` seconds apart, never answered.
    pub fn syn_unanswered(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        retries: usize,
        spacing: f64,
    ) -> &mut Scenario {
        self.tcp(client, server, SYN, &[]);
        for _ in 0..retries {
            self.wait(spacing).tcp(client, server, SYN, &[]);
        }
        self
    }

    /// UDP request/response pairs.
    pub fn udp_exchange(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        exchanges: usize,
    ) -> &mut Scenario {
        for _ in 0..exchanges {
            self.send(client, server, Segment::Udp { payload: &[b'd'; 40] });
            self.send(server, client, Segment::Udp { payload: &[b'a'; 120] });
        }
        self
    }

    /// `router` answers `client`'s SYN to `server` with ICMP "communication
    /// administratively prohibited" (ICMPv6 "administratively prohibited").
    pub fn icmp_prohibited(
        &mut self,
        router: IpAddr,
        client: SocketAddr,
        server: SocketAddr,
    ) -> &mut Scenario {
        self.tcp(client, server, SYN, &[]);
        let quoted = wire::ip_packet(
            client,
            server,
            self.ttl,
            Segment::Tcp { flags: SYN, seq: 1, ack: 0, payload: &[] },
        );
        let quote = &quoted[..quoted.len().min(if client.is_ipv4() { 28 } else { 48 })];
        let (kind, code) = if client.is_ipv4() { (3, 13) } else { (1, 1) };
        let ip = wire::ip_packet(
            SocketAddr::new(router, 0),
            SocketAddr::new(client.ip(), 0),
            self.ttl,
            Segment::Icmp { kind, code, body: quote },
        );
        self.ip(&ip)
    }

    /// A UDP datagram from `src` to `dst` split into IPv4 fragments of `chunk` bytes
    /// (a multiple of 8). `order` lists fragment indexes in sending order.
    pub fn udp_fragmented(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: usize,
        chunk: usize,
        order: &[usize],
    ) -> &mut Scenario {
        let body = vec![b'f'; payload];
        let l4 = wire::transport(src, dst, Segment::Udp { payload: &body });
        let pieces: Vec<&[u8]> = l4.chunks(chunk).collect();
        for &i in order {
            let Some(piece) = pieces.get(i) else { continue };
            let frag = IpFragment::V4 { id: 0x4242, offset: (i * chunk) as u16, more: i + 1 < pieces.len() };
            let ip =
                wire::ip_with_payload(src.ip(), dst.ip(), self.ttl, crate::decode::proto::UDP, piece, frag);
            self.ip(&ip);
        }
        self
    }

    /// Appends one IP packet of protocol `proto` (IGMP, say) with `payload` after the
    /// IP header.
    pub fn raw(&mut self, src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> &mut Scenario {
        let ip = wire::ip_with_payload(src, dst, self.ttl, proto, payload, IpFragment::None);
        self.ip(&ip)
    }

    /// Appends one segment from `src` to `dst` in a frame to the Ethernet broadcast
    /// address (a directed broadcast such as 10.1.10.255 goes out so).
    pub fn broadcast(&mut self, src: SocketAddr, dst: SocketAddr, segment: Segment<'_>) -> &mut Scenario {
        self.send(src, dst, segment);
        if let Some(frame) = self.frames.last_mut() {
            frame.data[..6].copy_from_slice(&[0xff; 6]);
        }
        self
    }

    /// `router` answers the packet `quoted` (an IP packet) with the ICMP / ICMPv6 error
    /// (`kind`, `code`), quoting its first 28 (IPv4) or 48 (IPv6) bytes, sent to the
    /// quoted packet's source.
    pub fn icmp_error(&mut self, router: IpAddr, kind: u8, code: u8, quoted: &[u8]) -> &mut Scenario {
        let v4 = quoted.first().is_some_and(|b| b >> 4 == 4);
        let quote = &quoted[..quoted.len().min(if v4 { 28 } else { 48 })];
        let to: IpAddr = if v4 {
            IpAddr::from(<[u8; 4]>::try_from(&quoted[12..16]).unwrap_or_default())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(&quoted[8..24]).unwrap_or_default())
        };
        let ip = wire::ip_packet(
            SocketAddr::new(router, 0),
            SocketAddr::new(to, 0),
            self.ttl,
            Segment::Icmp { kind, code, body: quote },
        );
        self.ip(&ip)
    }

    /// What a default Windows Server sends and hears on its segment when nothing is
    /// asked of it: LLMNR, mDNS, SSDP and NetBIOS (to the subnet's directed broadcast
    /// `subnet_broadcast`) over IPv4, a DHCP discover, an IGMPv3 report; over IPv6 from
    /// its link-local address `v6_link_local` and global `v6`: LLMNR, mDNS, SSDP,
    /// DHCPv6, an MLDv2 report, neighbour solicitations and advertisements (multicast
    /// and unicast), a router solicitation, and `router_v6`'s advertisement and unicast
    /// solicitation; and path MTU discovery: `router_v4` and `router_v6` answer a large
    /// packet from `host` (`v6`) to `peer` with "fragmentation needed" / "packet too big".
    #[allow(clippy::too_many_arguments)]
    pub fn windows_background(
        &mut self,
        host: Ipv4Addr,
        subnet_broadcast: Ipv4Addr,
        v6_link_local: Ipv6Addr,
        v6: Ipv6Addr,
        (router_v4, router_v6): (Ipv4Addr, Ipv6Addr),
        (peer_v4, peer_v6): (Ipv4Addr, Ipv6Addr),
    ) -> &mut Scenario {
        let v4 = |a: Ipv4Addr, port| SocketAddr::new(IpAddr::V4(a), port);
        let v6a = |a: Ipv6Addr, port| SocketAddr::new(IpAddr::V6(a), port);
        let m4 = |text: &str, port| v4(text.parse().unwrap_or(Ipv4Addr::UNSPECIFIED), port);
        let m6 = |text: &str, port| v6a(text.parse().unwrap_or(Ipv6Addr::UNSPECIFIED), port);
        let udp = Segment::Udp { payload: &[0x42; 40] };
        // IPv4: name resolution and discovery by multicast and broadcast.
        self.send(v4(host, 54_418), m4("224.0.0.252", 5355), udp)
            .send(v4(host, 5353), m4("224.0.0.251", 5353), udp)
            .send(v4(host, 59_537), m4("239.255.255.250", 1900), udp)
            .broadcast(v4(host, 137), v4(subnet_broadcast, 137), udp)
            .broadcast(v4(host, 138), v4(subnet_broadcast, 138), udp)
            .send(v4(Ipv4Addr::UNSPECIFIED, 68), v4(Ipv4Addr::BROADCAST, 67), udp);
        // IGMPv3 membership report (type 0x22) to 224.0.0.22.
        let igmp = [0x22, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 224, 0, 0, 252];
        let ttl = std::mem::replace(&mut self.ttl, 1);
        self.raw(IpAddr::V4(host), "224.0.0.22".parse().unwrap_or(IpAddr::V4(host)), 2, &igmp);
        self.ttl = ttl;
        // IPv6: the same from the link-local address, and DHCPv6.
        self.send(v6a(v6_link_local, 51_328), m6("ff02::1:3", 5355), udp)
            .send(v6a(v6_link_local, 5353), m6("ff02::fb", 5353), udp)
            .send(v6a(v6_link_local, 59_537), m6("ff02::c", 1900), udp)
            .send(v6a(v6_link_local, 546), m6("ff02::1:2", 547), udp);
        // Neighbour discovery and MLD, hop limit 255 / 1 as the RFCs require.
        let ttl = std::mem::replace(&mut self.ttl, 255);
        let target = |a: Ipv6Addr| a.octets();
        let solicited = {
            let o = peer_v6.octets();
            Ipv6Addr::new(
                0xff02,
                0,
                0,
                0,
                0,
                1,
                0xff00 | u16::from(o[13]),
                u16::from_be_bytes([o[14], o[15]]),
            )
        };
        let router_ll: Ipv6Addr = "fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let nd = [
            (v6, solicited, 135, target(peer_v6)),
            (peer_v6, v6, 136, target(peer_v6)),
            (v6_link_local, "ff02::2".parse().unwrap_or(v6), 133, [0; 16]),
            (router_ll, "ff02::1".parse().unwrap_or(v6), 134, [0; 16]),
            (router_v6, v6, 135, target(v6)),
            (v6, router_v6, 136, target(v6)),
            (router_ll, v6, 137, target(peer_v6)),
        ];
        for (src, dst, kind, body) in nd {
            self.send(v6a(src, 0), v6a(dst, 0), Segment::Icmp { kind, code: 0, body: &body });
        }
        self.ttl = 1;
        let mld = [0, 0, 0, 1, 4, 0, 0, 0, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 0, 0];
        self.send(v6a(v6_link_local, 0), m6("ff02::16", 0), Segment::Icmp { kind: 143, code: 0, body: &mld });
        self.ttl = ttl;
        // Path MTU discovery: the routers' answers to large segments (sent before the
        // capture started) to a peer.
        let big = [0x5a; 1400];
        let tcp = Segment::Tcp { flags: tcp_flags::ACK, seq: 1, ack: 1, payload: &big };
        let quoted = wire::ip_packet(v4(host, 445), v4(peer_v4, 50_001), self.ttl, tcp);
        self.icmp_error(IpAddr::V4(router_v4), 3, 4, &quoted);
        let quoted = wire::ip_packet(v6a(v6, 445), v6a(peer_v6, 50_001), self.ttl, tcp);
        self.icmp_error(IpAddr::V6(router_v6), 2, 0, &quoted)
    }

    /// Writes the scenario as an Ethernet pcap file.
    pub fn write_pcap(&self, path: &std::path::Path) -> io::Result<()> {
        let file = io::BufWriter::new(std::fs::File::create(path)?);
        let mut writer = wire::PcapWriter::new(file, 1)?;
        for f in &self.frames {
            writer.write(f.ts, &f.data, f.wire_len)?;
        }
        io::Write::flush(&mut writer.into_inner())
    }
}
