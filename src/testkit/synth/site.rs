//! Traffic of any organization, from its topology: its Mailbox servers talking to each
//! other, to domain controllers and DNS; its clients; its Edge servers and their
//! subscribed sites; Skype for Business; Exchange Online (hybrid) and UM gateways when
//! the topology has them; its exceptions' jump hosts and accepted destinations; the
//! Internet; and a few findings, known in advance, so a site can try exwatch and
//! `exwatch learn` on traffic shaped like its own.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::org::{schedule, Active, Expected, Generator, OrgOptions, Step};
use super::SYN;
use crate::policy::prefix::Prefix;
use crate::policy::{Role, Topology, Verdict};
use crate::time::Ts;
use wire::Link;

use super::wire;
use crate::time::SECOND;

/// Who a flow's end is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// An address inside an `internal_client` prefix.
    Client,
    /// An Internet host.
    External,
    /// One of a few Internet mail servers.
    Mta,
    Mailbox,
    DomainController,
    /// The DNS role, or a domain controller when the topology lists none.
    Resolver,
    /// A resolver on the Internet (an Edge's, when the topology lists no DNS server).
    ExternalResolver,
    Skype,
    /// The Mailbox servers and the Edges of one subscription.
    SubMailbox(usize),
    SubEdge(usize),
    ExchangeOnline,
    UmGateway,
    /// The external host an exception lets reach Mailbox servers on 3389 (a jump host).
    Jump(usize),
    /// The external host an exception lets Mailbox servers reach (the Emergency
    /// Mitigation service's, say).
    Accepted(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    Session,
    Udp,
    /// SYNs nobody answers: a scan, which must teach `learn` nothing.
    Unanswered,
}

#[derive(Clone, Debug)]
struct SiteKind {
    weight: u64,
    from: Who,
    to: Who,
    ports: &'static [u16],
    how: How,
    expect: Option<(&'static str, Verdict)>,
}

fn kind(weight: u64, from: Who, to: Who, ports: &'static [u16], how: How) -> SiteKind {
    SiteKind { weight, from, to, ports, how, expect: None }
}

/// The organization's hosts, and its traffic mix.
struct Plan<'a> {
    topology: &'a Topology,
    mailboxes: Vec<IpAddr>,
    dcs: Vec<IpAddr>,
    skype: Vec<IpAddr>,
    dns: Vec<IpAddr>,
    clients: Vec<Prefix>,
    subscriptions: Vec<(Vec<IpAddr>, Vec<IpAddr>)>,
    exchange_online: Vec<IpAddr>,
    um_gateways: Vec<IpAddr>,
    /// External hosts exceptions accept: (host, the verdict its findings get), for
    /// jump hosts (`external-to-mailbox` on 3389) and destinations
    /// (`mailbox-to-external`).
    jumps: Vec<(IpAddr, Verdict)>,
    accepted: Vec<(IpAddr, Verdict)>,
    kinds: Vec<SiteKind>,
}

/// Writes a capture of the organization `topology` describes through `emit`, and
/// returns the findings the policy should produce, one per flow that has one.
pub fn site(
    topology: &Topology,
    options: &OrgOptions,
    emit: impl FnMut(Ts, &[u8]) -> io::Result<()>,
) -> io::Result<Vec<Expected>> {
    let plan = Plan::new(topology);
    if plan.mailboxes.is_empty() && plan.subscriptions.is_empty() {
        return Err(io::Error::other(
            "the topology lists no Mailbox server: there is no Exchange traffic to write",
        ));
    }
    let total: u64 = plan.kinds.iter().map(|k| k.weight).sum();
    schedule(options, emit, |g| plan.flow(g, total))
}

/// Hosts of a role: a listed host itself; for a listed prefix, its first address past
/// the network's.
fn hosts_of(topology: &Topology, role: Role) -> Vec<IpAddr> {
    topology
        .listings
        .iter()
        .filter(|l| l.role == role)
        .map(|l| host_of(&l.prefix))
        .filter(|&a| topology.roles_of(a).contains(role))
        .collect()
}

/// The single external hosts that the topology's exceptions of `rule` (or `*`) name
/// on side `from` (else `to`), on TCP `port` (or any port), with the verdict a flow of
/// theirs at the generator's time gets: `accepted` before the exception expires.
fn excepted_hosts(topology: &Topology, rule: &str, from: bool, port: u16) -> Vec<(IpAddr, Verdict)> {
    use crate::decode::proto;
    use crate::policy::exceptions::Party;
    let mut out: Vec<(IpAddr, Verdict)> = Vec::new();
    for e in topology.exceptions.iter().filter(|e| e.rule == rule || e.rule == "*") {
        let by_port = e.ports.is_empty()
            || e.ports.iter().any(|&(p, lo, hi)| p == proto::TCP && (lo..=hi).contains(&port));
        if !by_port {
            continue;
        }
        let verdict = if super::EPOCH < e.end { Verdict::Accepted } else { Verdict::Violation };
        for party in if from { &e.from } else { &e.to } {
            let Party::Prefix(prefix) = party else { continue };
            let host = host_of(prefix);
            if topology.role_of(host) == Role::External && !out.iter().any(|(a, _)| *a == host) {
                out.push((host, verdict));
            }
        }
    }
    out
}

fn host_of(prefix: &Prefix) -> IpAddr {
    let single = prefix.prefix_len() == if prefix.network().is_ipv4() { 32 } else { 128 };
    if single {
        prefix.network()
    } else {
        offset(prefix.network(), 1)
    }
}

fn offset(addr: IpAddr, by: u64) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(by as u32))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6).wrapping_add(u128::from(by)))),
    }
}

impl<'a> Plan<'a> {
    fn new(topology: &'a Topology) -> Plan<'a> {
        let mailboxes = hosts_of(topology, Role::Mailbox);
        let dcs = hosts_of(topology, Role::DomainController);
        let skype = hosts_of(topology, Role::Skype);
        let dns = hosts_of(topology, Role::Dns);
        let clients: Vec<Prefix> =
            topology.listings.iter().filter(|l| l.role == Role::InternalClient).map(|l| l.prefix).collect();
        let subscriptions: Vec<(Vec<IpAddr>, Vec<IpAddr>)> = topology
            .subscriptions
            .iter()
            .map(|s| {
                let edge = s
                    .edge
                    .iter()
                    .map(host_of)
                    .filter(|&a| topology.roles_of(a).contains(Role::Edge))
                    .collect();
                let mailbox = s
                    .mailbox
                    .iter()
                    .map(host_of)
                    .filter(|&a| topology.roles_of(a).contains(Role::Mailbox))
                    .collect();
                (edge, mailbox)
            })
            .filter(|(e, m): &(Vec<IpAddr>, Vec<IpAddr>)| !e.is_empty() && !m.is_empty())
            .collect();
        let mut plan = Plan {
            topology,
            mailboxes,
            dcs,
            skype,
            dns,
            clients,
            subscriptions,
            exchange_online: hosts_of(topology, Role::ExchangeOnline),
            um_gateways: hosts_of(topology, Role::UmGateway),
            jumps: excepted_hosts(topology, "external-to-mailbox", true, 3389),
            accepted: excepted_hosts(topology, "mailbox-to-external", false, 443),
            kinds: Vec::new(),
        };
        plan.kinds = plan.mix();
        plan
    }

    /// The traffic mix this organization can have.
    fn mix(&self) -> Vec<SiteKind> {
        use How::*;
        use Who::*;
        let mut k = Vec::new();
        let (has_clients, has_dcs) = (!self.clients.is_empty(), !self.dcs.is_empty());
        let resolver = !self.dns.is_empty() || has_dcs;
        if !self.mailboxes.is_empty() {
            k.push(kind(100, External, Mailbox, &[443, 443, 443, 993, 995, 587], Session));
            k.push(SiteKind {
                expect: Some(("external-to-mailbox", Verdict::Violation)),
                ..kind(4, External, Mailbox, &[3389], Session)
            });
            if has_clients {
                k.push(kind(300, Client, Mailbox, &[443, 443, 443, 443, 587, 25, 993, 135], Session));
                k.push(SiteKind {
                    expect: Some(("client-http", Verdict::Advisory)),
                    ..kind(4, Client, Mailbox, &[80], Session)
                });
            }
            if self.mailboxes.len() > 1 {
                k.push(kind(80, Mailbox, Mailbox, &[2525, 444, 64327, 135, 445, 475, 717, 25], Session));
            }
            if has_dcs {
                k.push(kind(60, Mailbox, DomainController, &[88, 389, 3268, 636, 135, 445], Session));
                k.push(kind(20, Mailbox, DomainController, &[88, 389], Udp));
            }
            if resolver {
                k.push(kind(40, Mailbox, Resolver, &[53], Udp));
            }
            if self.subscriptions.is_empty() {
                k.push(kind(40, Mta, Mailbox, &[25], Session));
                k.push(kind(20, Mailbox, External, &[25], Session));
            }
            if !self.skype.is_empty() {
                k.push(kind(10, Skype, Mailbox, &[5061, 443], Session));
                k.push(kind(10, Mailbox, Skype, &[5061], Session));
            }
            if !self.exchange_online.is_empty() {
                // Hybrid: Autodiscover, EWS, free/busy and moves both ways on 443; CRLs on 80.
                k.push(kind(20, ExchangeOnline, Mailbox, &[443], Session));
                k.push(kind(20, Mailbox, ExchangeOnline, &[443, 443, 80], Session));
                if self.subscriptions.is_empty() {
                    k.push(kind(20, ExchangeOnline, Mailbox, &[25], Session));
                    k.push(kind(20, Mailbox, ExchangeOnline, &[25], Session));
                }
            }
            if !self.um_gateways.is_empty() {
                // Unified Messaging: SIP to the Call Router and the worker processes, RTP both ways.
                k.push(kind(10, UmGateway, Mailbox, &[5060, 5061, 5065, 5066], Session));
                k.push(kind(10, UmGateway, Mailbox, &[16_384, 20_000, 30_000], Udp));
                k.push(kind(5, Mailbox, UmGateway, &[16_384, 20_000, 30_000], Udp));
            }
            for (i, &(_, verdict)) in self.jumps.iter().enumerate() {
                k.push(SiteKind {
                    expect: Some(("external-to-mailbox", verdict)),
                    ..kind(5, Jump(i), Mailbox, &[3389], Session)
                });
            }
            for (i, &(_, verdict)) in self.accepted.iter().enumerate() {
                k.push(SiteKind {
                    expect: Some(("mailbox-to-external", verdict)),
                    ..kind(5, Mailbox, Accepted(i), &[443], Session)
                });
            }
        }
        for i in 0..self.subscriptions.len() {
            k.push(kind(40, SubMailbox(i), SubEdge(i), &[50636, 25, 25], Session));
            k.push(kind(40, SubEdge(i), SubMailbox(i), &[25], Session));
            k.push(kind(60, Mta, SubEdge(i), &[25], Session));
            k.push(kind(30, SubEdge(i), External, &[25], Session));
            k.push(kind(
                15,
                SubEdge(i),
                if self.dns.is_empty() { ExternalResolver } else { Resolver },
                &[53],
                Udp,
            ));
            if has_clients {
                k.push(SiteKind {
                    expect: Some(("edge-perimeter", Verdict::Violation)),
                    ..kind(3, Client, SubEdge(i), &[443], Session)
                });
            }
            if !self.exchange_online.is_empty() {
                k.push(kind(20, ExchangeOnline, SubEdge(i), &[25], Session));
                k.push(kind(20, SubEdge(i), ExchangeOnline, &[25], Session));
            }
        }
        if has_clients {
            if has_dcs {
                k.push(kind(60, Client, DomainController, &[88, 389, 135, 445], Session));
                k.push(kind(10, Client, DomainController, &[88, 389], Udp));
            }
            if resolver {
                k.push(kind(40, Client, Resolver, &[53], Udp));
            }
            if !self.skype.is_empty() {
                k.push(kind(20, Client, Skype, &[5061, 5061, 443, 5062], Session));
            }
            k.push(kind(50, Client, External, &[443, 80], Session));
            k.push(kind(5, External, Client, &[88, 389, 2525, 445], Unanswered));
        }
        if self.dcs.len() > 1 {
            k.push(kind(10, DomainController, DomainController, &[135, 389, 88, 445], Session));
        }
        if !self.skype.is_empty() && has_dcs {
            k.push(kind(5, Skype, DomainController, &[88, 389], Session));
        }
        k
    }

    /// The next flow: a kind by weight, a server, then a client of the same family.
    fn flow(&self, g: &mut Generator, total: u64) -> Active {
        for _ in 0..32 {
            let mut pick = g.rng.range(0, total - 1);
            let Some(kind) = self.kinds.iter().find(|k| {
                if pick < k.weight {
                    true
                } else {
                    pick -= k.weight;
                    false
                }
            }) else {
                continue;
            };
            let Some(server) = self.host(g, kind.to, None) else { continue };
            let Some(client) = self.host(g, kind.from, Some(server)) else { continue };
            if client == server || client.is_ipv4() != server.is_ipv4() {
                continue;
            }
            let port = g.pick(kind.ports);
            let client = SocketAddr::new(client, g.ephemeral());
            let server = SocketAddr::new(server, port);
            if let Some((rule, verdict)) = kind.expect {
                g.expected.push(Expected { rule, verdict, src: client, dst: server });
            }
            let steps = match kind.how {
                How::Session => g.session(client, server),
                How::Udp => g.udp(client, server, false),
                How::Unanswered => {
                    let syn = g.tcp((client, server), server, SYN, 0);
                    vec![Step { gap_ns: 0, ip: syn.clone() }, Step { gap_ns: SECOND, ip: syn }]
                }
            };
            let link =
                if g.rng.range(0, 9) == 0 { Link { vlans: [Some(10), None] } } else { Link::default() };
            return Active { link, steps: steps.into_iter() };
        }
        Active { link: Link::default(), steps: Vec::new().into_iter() }
    }

    /// An address for `who`; `peer` is the other end, whose family it should share.
    fn host(&self, g: &mut Generator, who: Who, peer: Option<IpAddr>) -> Option<IpAddr> {
        let v6 = peer.is_some_and(|p| p.is_ipv6());
        let among = |g: &mut Generator, list: &[IpAddr]| -> Option<IpAddr> {
            let same: Vec<IpAddr> =
                list.iter().copied().filter(|a| peer.is_none_or(|p| a.is_ipv6() == p.is_ipv6())).collect();
            (!same.is_empty()).then(|| g.pick(&same))
        };
        match who {
            Who::Mailbox => among(g, &self.mailboxes),
            Who::DomainController => among(g, &self.dcs),
            Who::Skype => among(g, &self.skype),
            Who::Resolver => among(g, if self.dns.is_empty() { &self.dcs } else { &self.dns }),
            Who::SubMailbox(i) => among(g, &self.subscriptions[i].1),
            Who::SubEdge(i) => among(g, &self.subscriptions[i].0),
            Who::ExchangeOnline => among(g, &self.exchange_online),
            Who::UmGateway => among(g, &self.um_gateways),
            Who::Jump(i) => among(g, &[self.jumps[i].0]),
            Who::Accepted(i) => among(g, &[self.accepted[i].0]),
            Who::Client => {
                let prefixes: Vec<Prefix> = self
                    .clients
                    .iter()
                    .copied()
                    .filter(|p| peer.is_none_or(|a| p.network().is_ipv6() == a.is_ipv6()))
                    .collect();
                if prefixes.is_empty() {
                    return None;
                }
                let prefix = g.pick(&prefixes);
                let bits =
                    if v6 || prefix.network().is_ipv6() { 128 } else { 32 } - u32::from(prefix.prefix_len());
                let span = if bits >= 12 { 4000 } else { (1u64 << bits).saturating_sub(2).max(1) };
                let addr = offset(prefix.network(), g.rng.range(1, span));
                (self.topology.roles_of(addr).contains(Role::InternalClient)).then_some(addr)
            }
            Who::External | Who::Mta | Who::ExternalResolver => {
                let n = match who {
                    Who::Mta => 200 + g.rng.range(0, 15),
                    Who::ExternalResolver => 53,
                    _ => g.rng.range(1, 199),
                };
                let addr = if v6 {
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, n as u16))
                } else {
                    let net = if who == Who::External {
                        g.pick(&[[198u8, 51, 100], [203, 0, 113], [192, 0, 2]])
                    } else {
                        [198, 51, 100]
                    };
                    IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], n as u8))
                };
                (self.topology.role_of(addr) == Role::External).then_some(addr)
            }
        }
    }
}
