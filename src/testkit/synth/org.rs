//! The generator of a busy Exchange organization: flows of every kind the example
//! topology sees, interleaved as a SPAN port shows them, with the findings they must
//! produce.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::wire::{self, IpFragment, Link, Segment, DEFAULT_TTL};
use super::{Rng, Scenario, ACK, EPOCH, FIN, PSH, SYN};
use crate::policy::Verdict;
use crate::time::Ts;
use crate::time::SECOND;

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

// Addresses of the example topology (rules/topology.toml).
pub(super) const MAILBOX_SUBSCRIBED: [[u8; 4]; 2] = [[10, 10, 1, 11], [10, 10, 1, 12]];
const MAILBOX_OTHER_SITE: [u8; 4] = [10, 10, 2, 11];
const MAILBOX_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x11);
pub(super) const EDGE: [u8; 4] = [172, 16, 0, 25];
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
    /// The rule expected of each of `ports`, where they differ.
    port_rules: &'static [&'static str],
}

const fn kind(weight: u64, from: Pool, to: Pool, ports: &'static [u16], style: Style) -> Kind {
    Kind { weight, from, to, ports, style, expect: None, port_rules: &[] }
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
    Kind { weight, from, to, ports, style, expect: Some((rule, verdict)), port_rules: &[] }
}

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
    Kind {
        port_rules: &["client-imap4-plaintext", "client-pop3-plaintext"],
        ..finding(5, InternalClient, MailboxOtherSite, &[143, 110], Session, "", Verdict::Advisory)
    },
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
pub(super) struct Active {
    pub(super) link: Link,
    pub(super) steps: std::vec::IntoIter<Step>,
}

/// One packet of a flow (an IP packet) and how long after the previous one it is sent.
#[derive(Clone, Debug)]
pub(super) struct Step {
    pub(super) gap_ns: u64,
    pub(super) ip: Vec<u8>,
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
pub(super) fn schedule(
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

pub(super) struct Generator {
    pub(super) rng: Rng,
    pub(super) next_port: u32,
    pub(super) expected: Vec<Expected>,
    /// [`OrgOptions::bulk`].
    pub(super) bulk: u64,
}

/// Payload of a full-size TCP segment on Ethernet (MSS 1,460): a 1,514-byte frame.
const FULL_SEGMENT: usize = 1460;

impl Generator {
    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
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
    pub(super) fn ephemeral(&mut self) -> u16 {
        self.next_port = (self.next_port + 1) % 40_000;
        (20_000 + self.next_port) as u16
    }

    pub(super) fn flow(&mut self, total_weight: u64) -> Active {
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
            let at = kind.ports.iter().position(|&p| p == port);
            let rule = at.and_then(|i| kind.port_rules.get(i)).copied().unwrap_or(rule);
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
                let syn = self.tcp((client, server), server, SYN, 0);
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

    /// A TCP segment with `payload` bytes of what the sender says to (or as) `server`.
    pub(super) fn tcp(
        &mut self,
        (src, dst): (SocketAddr, SocketAddr),
        server: SocketAddr,
        flags: u8,
        payload: usize,
    ) -> Vec<u8> {
        let body = wire::speech(server.port(), src != server, payload);
        wire::ip_packet(src, dst, DEFAULT_TTL, Segment::Tcp { flags, seq: 1, ack: 1, payload: &body })
    }

    pub(super) fn gap(&mut self) -> u64 {
        self.rng.range(20_000, 400_000)
    }

    pub(super) fn session(&mut self, client: SocketAddr, server: SocketAddr) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut push = |g: &mut Generator, src, dst, flags, payload| {
            let gap = g.gap();
            let ip = g.tcp((src, dst), server, flags, payload);
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

    pub(super) fn udp(&mut self, client: SocketAddr, server: SocketAddr, fragmented: bool) -> Vec<Step> {
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
