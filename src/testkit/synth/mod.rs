//! Captures built in code: hand-written scenarios for tests, and generators of a busy
//! Exchange organization that know which findings they should produce: the example
//! topology in `rules/topology.toml` ([`organization`]; tests, benches and the bundled
//! sample use it), or any topology ([`site`], behind `exwatch generate --topology`).

pub mod alerts;
pub mod pool;
mod site;
pub mod wire;

pub use site::site;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::decode::tcp_flags;
use crate::policy::Verdict;
use crate::time::Ts;
use wire::{IpFragment, Link, Segment, DEFAULT_TTL};

/// 2026-11-27T04:55:14Z: where synthetic captures start.
pub const EPOCH: Ts = Ts(1_795_755_314_000_000_000);

/// One frame of a synthetic capture.
#[derive(Clone, Debug)]
pub struct SynthFrame {
    pub ts: Ts,
    pub data: Vec<u8>,
    pub wire_len: u32,
}

const SYN: u8 = tcp_flags::SYN;
const ACK: u8 = tcp_flags::ACK;
const FIN: u8 = tcp_flags::FIN;
const RST: u8 = tcp_flags::RST;
const PSH: u8 = 0x08;

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
        for _ in 0..exchanges {
            self.tcp(client, server, PSH | ACK, &[b'q'; 100]).tcp(server, client, PSH | ACK, &[b'r'; 400]);
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

/// A finding the generator expects the policy to produce.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    pub rule: &'static str,
    pub verdict: Verdict,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// Options of [`organization`].
#[derive(Clone, Debug)]
pub struct OrgOptions {
    /// Stop opening new flows once this many packets were written.
    pub packets: u64,
    pub seed: u64,
    /// Flows open at once.
    pub concurrency: usize,
    /// Each TCP response may go on with up to this many full-size segments (1,460 bytes
    /// of payload), as downloads and mailbox moves do: raises the average frame size.
    /// 0, the default, keeps the mix of `captures/sample-contoso.pcap`.
    pub bulk: u64,
}

impl Default for OrgOptions {
    fn default() -> OrgOptions {
        OrgOptions { packets: 10_000, seed: 1, concurrency: 64, bulk: 0 }
    }
}

/// Small deterministic generator (splitmix64): the same seed gives the same capture.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

// Addresses of the example topology (rules/topology.toml).
const MAILBOX_SUBSCRIBED: [[u8; 4]; 2] = [[10, 10, 1, 11], [10, 10, 1, 12]];
const MAILBOX_OTHER_SITE: [u8; 4] = [10, 10, 2, 11];
const MAILBOX_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x11);
const EDGE: [u8; 4] = [172, 16, 0, 25];
const DOMAIN_CONTROLLERS: [[u8; 4]; 2] = [[10, 10, 0, 5], [10, 10, 0, 6]];
const SKYPE: [u8; 4] = [10, 10, 3, 20];
const DNS: [u8; 4] = [10, 10, 0, 53];
const FIREWALL: [u8; 4] = [10, 10, 0, 1];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    InternalClient,
    External,
    ExternalV6,
    /// A small set of Internet mail servers that send SMTP to the Edge.
    Mta,
    MailboxSubscribed,
    MailboxOtherSite,
    MailboxV6,
    Edge,
    DomainController,
    Skype,
    Dns,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Session,
    Midstream,
    Udp,
    /// UDP whose response is sent as IPv4 fragments.
    UdpFragmented,
    SynUnanswered,
    IcmpProhibited,
    /// SMTP to the Edge, then the Edge probes the sender on an open-proxy port.
    SmtpThenProbe,
}

struct Kind {
    weight: u64,
    from: Pool,
    to: Pool,
    ports: &'static [u16],
    style: Style,
    expect: Option<(&'static str, Verdict)>,
}

const fn kind(weight: u64, from: Pool, to: Pool, ports: &'static [u16], style: Style) -> Kind {
    Kind { weight, from, to, ports, style, expect: None }
}

const fn finding(
    weight: u64,
    from: Pool,
    to: Pool,
    ports: &'static [u16],
    style: Style,
    rule: &'static str,
    verdict: Verdict,
) -> Kind {
    Kind { weight, from, to, ports, style, expect: Some((rule, verdict)) }
}

use crate::time::SECOND;
use Pool::*;
use Style::*;

/// The traffic mix: mostly allowed flows, a few of every kind of finding.
const KINDS: &[Kind] = &[
    kind(300, InternalClient, MailboxSubscribed, &[443], Session),
    kind(150, External, MailboxSubscribed, &[443, 993, 995, 587], Session),
    kind(30, ExternalV6, MailboxV6, &[443], Session),
    kind(30, InternalClient, MailboxOtherSite, &[443, 25, 135], Session),
    kind(80, Mta, Edge, &[25], Session),
    kind(10, Mta, Edge, &[25], SmtpThenProbe),
    kind(60, Edge, MailboxSubscribed, &[25], Session),
    kind(50, MailboxSubscribed, Edge, &[25, 50636], Session),
    kind(40, Edge, External, &[25], Session),
    kind(60, MailboxSubscribed, Dns, &[53], Udp),
    kind(5, MailboxSubscribed, Dns, &[53], UdpFragmented),
    kind(20, Edge, Dns, &[53], Udp),
    kind(20, MailboxSubscribed, MailboxOtherSite, &[135, 445, 64_327], Session),
    kind(30, MailboxOtherSite, DomainController, &[389, 88, 3268], Session),
    kind(10, Skype, MailboxSubscribed, &[5061, 443], Session),
    kind(50, InternalClient, External, &[443, 80], Session),
    finding(10, External, MailboxSubscribed, &[80], Session, "client-http", Verdict::Advisory),
    finding(
        5,
        InternalClient,
        MailboxOtherSite,
        &[143, 110],
        Session,
        "client-plaintext-mail",
        Verdict::Advisory,
    ),
    finding(5, External, MailboxSubscribed, &[3389, 445], Session, "external-to-mailbox", Verdict::Violation),
    finding(2, External, MailboxOtherSite, &[3389], Midstream, "external-to-mailbox", Verdict::Violation),
    finding(5, Mta, MailboxSubscribed, &[25], Session, "inbound-smtp-bypasses-edge", Verdict::Violation),
    finding(
        5,
        MailboxSubscribed,
        External,
        &[25],
        Session,
        "outbound-smtp-bypasses-edge",
        Verdict::Violation,
    ),
    finding(3, MailboxOtherSite, External, &[443], Session, "mailbox-to-external", Verdict::Violation),
    finding(3, Edge, External, &[3389, 22], Session, "edge-perimeter", Verdict::Violation),
    finding(3, InternalClient, Edge, &[443], Session, "edge-perimeter", Verdict::Violation),
    finding(3, Edge, MailboxOtherSite, &[25], Session, "edge-unsubscribed-site", Verdict::Violation),
    finding(3, Edge, External, &[1080, 3128], Session, "edge-not-open-proxy-probe", Verdict::Violation),
    finding(
        2,
        MailboxSubscribed,
        DomainController,
        &[445, 389],
        SynUnanswered,
        "restricted-silent-drop",
        Verdict::Restriction,
    ),
    finding(
        2,
        MailboxSubscribed,
        MailboxOtherSite,
        &[135],
        IcmpProhibited,
        "restricted-icmp-prohibited",
        Verdict::Restriction,
    ),
];

/// One flow being written: its remaining packets come from `steps`.
struct Active {
    link: Link,
    steps: std::vec::IntoIter<Step>,
}

/// One packet of a flow (an IP packet) and how long after the previous one it is sent.
#[derive(Clone, Debug)]
struct Step {
    gap_ns: u64,
    ip: Vec<u8>,
}

/// Writes a capture of the example organization through `emit` (timestamp, frame),
/// and returns the findings the policy should produce, one per flow that has one.
pub fn organization(
    options: &OrgOptions,
    emit: impl FnMut(Ts, &[u8]) -> io::Result<()>,
) -> io::Result<Vec<Expected>> {
    let total_weight: u64 = KINDS.iter().map(|k| k.weight).sum();
    schedule(options, emit, |g| g.flow(total_weight))
}

/// Interleaves flows made by `next`, `options.concurrency` at a time, until
/// `options.packets` were written; returns the findings the flows expect, sorted.
fn schedule(
    options: &OrgOptions,
    mut emit: impl FnMut(Ts, &[u8]) -> io::Result<()>,
    mut next: impl FnMut(&mut Generator) -> Active,
) -> io::Result<Vec<Expected>> {
    let mut g =
        Generator { rng: Rng::new(options.seed), next_port: 0, expected: Vec::new(), bulk: options.bulk };
    // Min-heap of (next time, slot): the flow whose packet is due first sends next.
    let mut due: BinaryHeap<Reverse<(Ts, usize)>> = BinaryHeap::new();
    let mut slots: Vec<Option<Active>> = Vec::new();
    let mut written = 0u64;
    for slot in 0..options.concurrency.max(1) {
        slots.push(Some(next(&mut g)));
        due.push(Reverse((EPOCH.saturating_add(slot as u64 * 1_000), slot)));
    }
    while let Some(Reverse((now, slot))) = due.pop() {
        let Some(active) = slots[slot].as_mut() else {
            continue;
        };
        match active.steps.next() {
            Some(step) => {
                let frame = wire::ethernet(active.link, &step.ip);
                emit(now, &frame)?;
                written += 1;
                let gap = active.steps.as_slice().first().map_or(0, |s| s.gap_ns);
                due.push(Reverse((now.saturating_add(gap.max(1)), slot)));
            }
            None if written < options.packets => {
                slots[slot] = Some(next(&mut g));
                due.push(Reverse((now.saturating_add(g.rng.range(1_000, 50_000)), slot)));
            }
            None => slots[slot] = None,
        }
    }
    g.expected.sort();
    Ok(g.expected)
}

struct Generator {
    rng: Rng,
    next_port: u32,
    expected: Vec<Expected>,
    /// [`OrgOptions::bulk`].
    bulk: u64,
}

/// Payload of a full-size TCP segment on Ethernet (MSS 1,460): a 1,514-byte frame.
const FULL_SEGMENT: usize = 1460;

impl Generator {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.rng.next_u64() % items.len() as u64) as usize]
    }

    fn host(&mut self, pool: Pool) -> IpAddr {
        let v4 = |b: [u8; 4]| IpAddr::V4(Ipv4Addr::from(b));
        match pool {
            InternalClient => v4([10, 20, self.rng.range(0, 40) as u8, self.rng.range(1, 254) as u8]),
            External => {
                // 198.51.100.200-215 are the mail servers of `Mta`; keep clear of them.
                let net = self.pick(&[[198u8, 51, 100], [203, 0, 113], [192, 0, 2]]);
                v4([net[0], net[1], net[2], self.rng.range(1, 199) as u8])
            }
            ExternalV6 => {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, self.rng.range(1, 500) as u16))
            }
            Mta => v4([198, 51, 100, 200 + self.rng.range(0, 15) as u8]),
            MailboxSubscribed => v4(self.pick(&MAILBOX_SUBSCRIBED)),
            MailboxOtherSite => v4(MAILBOX_OTHER_SITE),
            MailboxV6 => IpAddr::V6(MAILBOX_V6),
            Edge => v4(EDGE),
            DomainController => v4(self.pick(&DOMAIN_CONTROLLERS)),
            Skype => v4(SKYPE),
            Dns => v4(DNS),
        }
    }

    /// Ephemeral ports are handed out in sequence so concurrent flows never share a tuple.
    fn ephemeral(&mut self) -> u16 {
        self.next_port = (self.next_port + 1) % 40_000;
        (20_000 + self.next_port) as u16
    }

    fn flow(&mut self, total_weight: u64) -> Active {
        let mut pick = self.rng.range(0, total_weight - 1);
        let kind = KINDS
            .iter()
            .find(|k| {
                if pick < k.weight {
                    true
                } else {
                    pick -= k.weight;
                    false
                }
            })
            .unwrap_or(&KINDS[0]);
        let port = self.pick(kind.ports);
        let client = SocketAddr::new(self.host(kind.from), self.ephemeral());
        let server = SocketAddr::new(self.host(kind.to), port);
        let link = match self.rng.range(0, 99) {
            0..=9 => Link { vlans: [Some(10), None] },
            10..=12 => Link { vlans: [Some(100), Some(10)] },
            _ => Link::default(),
        };
        if let Some((rule, verdict)) = kind.expect {
            self.expected.push(Expected { rule, verdict, src: client, dst: server });
        }
        let steps = match kind.style {
            Session => self.session(client, server),
            Midstream => {
                let mut steps = self.session(client, server);
                steps.drain(..3);
                steps
            }
            Udp => self.udp(client, server, false),
            UdpFragmented => self.udp(client, server, true),
            SynUnanswered => {
                let syn = self.tcp(client, server, SYN, 0);
                vec![
                    Step { gap_ns: 0, ip: syn.clone() },
                    Step { gap_ns: SECOND, ip: syn.clone() },
                    Step { gap_ns: 2_000_000_000, ip: syn },
                ]
            }
            IcmpProhibited => {
                let mut s = Scenario::new();
                s.icmp_prohibited(IpAddr::V4(Ipv4Addr::from(FIREWALL)), client, server);
                s.frames.iter().map(|f| Step { gap_ns: 200_000, ip: f.data[14..].to_vec() }).collect()
            }
            SmtpThenProbe => {
                let mut steps = self.session(client, server);
                let probe_port = self.pick(&[1080, 1081, 23, 6588, 3128, 80]);
                let edge = SocketAddr::new(server.ip(), self.ephemeral());
                let mut probe = self.session(edge, SocketAddr::new(client.ip(), probe_port));
                if let Some(first) = probe.first_mut() {
                    first.gap_ns = 5_000_000;
                }
                steps.extend(probe);
                steps
            }
        };
        Active { link, steps: steps.into_iter() }
    }

    fn tcp(&mut self, src: SocketAddr, dst: SocketAddr, flags: u8, payload: usize) -> Vec<u8> {
        let body = vec![0x5a; payload];
        wire::ip_packet(src, dst, DEFAULT_TTL, Segment::Tcp { flags, seq: 1, ack: 1, payload: &body })
    }

    fn gap(&mut self) -> u64 {
        self.rng.range(20_000, 400_000)
    }

    fn session(&mut self, client: SocketAddr, server: SocketAddr) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut push = |g: &mut Generator, src, dst, flags, payload| {
            let gap = g.gap();
            let ip = g.tcp(src, dst, flags, payload);
            steps.push(Step { gap_ns: gap, ip });
        };
        push(self, client, server, SYN, 0);
        push(self, server, client, SYN | ACK, 0);
        push(self, client, server, ACK, 0);
        for _ in 0..self.rng.range(1, 8) {
            let request = self.rng.range(40, 600) as usize;
            push(self, client, server, PSH | ACK, request);
            for _ in 0..self.rng.range(1, 4) {
                let response = self.rng.range(200, 1400) as usize;
                push(self, server, client, PSH | ACK, response);
            }
            if self.bulk > 0 {
                for _ in 0..self.rng.range(0, self.bulk) {
                    push(self, server, client, ACK, FULL_SEGMENT);
                }
            }
            push(self, client, server, ACK, 0);
        }
        push(self, client, server, FIN | ACK, 0);
        push(self, server, client, FIN | ACK, 0);
        push(self, client, server, ACK, 0);
        steps
    }

    fn udp(&mut self, client: SocketAddr, server: SocketAddr, fragmented: bool) -> Vec<Step> {
        let query = vec![0x11; self.rng.range(30, 60) as usize];
        let mut steps = vec![Step {
            gap_ns: 0,
            ip: wire::ip_packet(client, server, DEFAULT_TTL, Segment::Udp { payload: &query }),
        }];
        if fragmented {
            let mut s = Scenario::new();
            s.udp_fragmented(server, client, 3000, 1480, &[0, 1, 2]);
            steps.extend(s.frames.iter().map(|f| Step { gap_ns: 30_000, ip: f.data[14..].to_vec() }));
        } else {
            let answer = vec![0x22; self.rng.range(60, 400) as usize];
            steps.push(Step {
                gap_ns: self.gap(),
                ip: wire::ip_packet(server, client, DEFAULT_TTL, Segment::Udp { payload: &answer }),
            });
        }
        steps
    }
}

/// A flood for memory tests: `syns` SYNs from spoofed external sources (all distinct
/// 5-tuples) to a Mailbox server on 443 (allowed, so no event each), every eighth of
/// them to the Edge on 25 instead (allowed, answered by the Edge with a SYN-ACK, and so
/// each fills the open-proxy sender table),
/// and `fragments` later IPv4 fragments whose first fragment never comes; one violation
/// (an external host reaching the Edge on 3389) sent halfway. Returns that violation.
pub fn flood(
    syns: u64,
    fragments: u64,
    mut emit: impl FnMut(Ts, &[u8]) -> io::Result<()>,
) -> io::Result<Expected> {
    let mailbox = IpAddr::V4(Ipv4Addr::from(MAILBOX_SUBSCRIBED[0]));
    let edge = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(EDGE)), 25);
    let spoofed = |i: u64| {
        let n = i.to_be_bytes();
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(100, 64 | (n[5] & 0x3f), n[6], n[7])),
            1024 + (i % 60_000) as u16,
        )
    };
    let violation = Expected {
        rule: "edge-perimeter",
        verdict: Verdict::Violation,
        src: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 40_000),
        dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(EDGE)), 3389),
    };
    let mut now = EPOCH;
    let total = syns + fragments;
    for i in 0..total {
        now = now.saturating_add(1_000);
        // Spread the fragments evenly through the flood.
        let is_fragment = (u128::from(i) + 1) * u128::from(fragments) / u128::from(total)
            != u128::from(i) * u128::from(fragments) / u128::from(total);
        let ip = if is_fragment {
            // A later fragment (offset 1480) of a datagram whose first fragment is lost.
            let frag = IpFragment::V4 { id: (i & 0xffff) as u16, offset: 1480, more: false };
            wire::ip_with_payload(
                spoofed(i).ip(),
                mailbox,
                DEFAULT_TTL,
                crate::decode::proto::UDP,
                &[0; 32],
                frag,
            )
        } else {
            let syn = Segment::Tcp { flags: SYN, seq: i as u32, ack: 0, payload: &[] };
            let target = if i % 8 == 0 { edge } else { SocketAddr::new(mailbox, 443) };
            wire::ip_packet(spoofed(i), target, DEFAULT_TTL, syn)
        };
        emit(now, &wire::ethernet(Link::default(), &ip))?;
        if !is_fragment && i % 8 == 0 {
            // The Edge answers each SYN: answered SMTP is what its sender table remembers.
            let synack = Segment::Tcp { flags: SYN | ACK, seq: 7, ack: i as u32 + 1, payload: &[] };
            emit(
                now,
                &wire::ethernet(Link::default(), &wire::ip_packet(edge, spoofed(i), DEFAULT_TTL, synack)),
            )?;
        }
        if i == total / 2 {
            let syn = Segment::Tcp { flags: SYN, seq: 1, ack: 0, payload: &[] };
            emit(
                now,
                &wire::ethernet(
                    Link::default(),
                    &wire::ip_packet(violation.src, violation.dst, DEFAULT_TTL, syn),
                ),
            )?;
        }
    }
    Ok(violation)
}
