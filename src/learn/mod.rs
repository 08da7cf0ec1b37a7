//! Learning the topology from traffic (SPEC section 8): a per-host view of the flows a
//! run saw, the roles drafted from it, the draft as a topology file, and the comparison
//! of a draft with a site's topology.
//!
//! Owns: the [`Learner`], a [`pipeline::Observer`](crate::pipeline::Observer) that
//! reads every ended flow on the writer thread and tallies, per host, the ports it
//! answered and the servers it opened connections to; [`Draft`], the roles that
//! evidence supports, with its evidence and a confidence; the TOML rendering of a draft
//! ([`Draft::to_toml`]); and [`compare`], hosts that act like a role the topology does
//! not give them.
//!
//! Never: sees a packet, judges a flow or changes a verdict. It reads ended flows only,
//! so `analyze` and `learn` share one pipeline, and a learner attached to `analyze`
//! changes none of its events. Only answered flows are evidence that a host serves a
//! port (a SYN nobody answered proves nothing). Memory is bounded: at most
//! [`Settings::max_hosts`] hosts are tracked (flows of hosts past it are counted, not
//! remembered), each with at most [`MAX_PEERS`] peers per port and [`MAX_OPENED`]
//! servers it opened connections to.

mod compare;
mod draft;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::decode::{proto, AppProto, Exchange};
use crate::flow::{self, Flow, TO_CLIENT, TO_SERVER};
use crate::pipeline::Observer;
use crate::policy::Engine;

pub use compare::{compare, Finding, FindingKind, MIN_JUDGED_FLOWS, MIN_JUDGED_PEERS};
pub use draft::{ClientPrefix, Draft, DraftHost, DraftSubscription};

/// Hosts tracked by default: a host costs a few hundred bytes, a busy server up to a few
/// KB (its peer lists), so a full table stays well under 100 MB.
pub const DEFAULT_MAX_HOSTS: usize = 100_000;
/// Peers remembered per port a host answered: enough to say "from 3 Mailbox servers";
/// past it the count reads "64 or more".
pub const MAX_PEERS: usize = 64;
/// Servers (with the ports used) remembered per host that opened connections. When full,
/// a peer that has answered no port of a server role makes room.
pub const MAX_OPENED: usize = 64;

/// Bounds of a [`Learner`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Hosts tracked at most; flows of further hosts are counted in
    /// [`Tally::untracked_flows`].
    pub max_hosts: usize,
    /// Take in answered flows only, and leave the others out of [`Tally`]: what
    /// `analyze` needs for its warnings, and all a flood's unanswered SYNs are spared.
    pub answered_only: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { max_hosts: DEFAULT_MAX_HOSTS, answered_only: false }
    }
}

/// The services whose ports tell a role, by transport and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Service {
    pub proto: u8,
    pub port: u16,
}

impl Service {
    pub const fn tcp(port: u16) -> Service {
        Service { proto: proto::TCP, port }
    }

    pub const fn udp(port: u16) -> Service {
        Service { proto: proto::UDP, port }
    }
}

/// Every port the learner keeps evidence of; other ports are not remembered (a
/// domain controller's dynamic RPC ports would otherwise fill the tables).
const KNOWN: &[Service] = &[
    Service::tcp(25),
    Service::tcp(53),
    Service::udp(53),
    Service::tcp(80),
    Service::tcp(88),
    Service::udp(88),
    Service::tcp(110),
    Service::tcp(135),
    Service::tcp(143),
    Service::tcp(389),
    Service::udp(389),
    Service::tcp(443),
    Service::tcp(444),
    Service::tcp(445),
    Service::tcp(464),
    Service::udp(464),
    Service::tcp(465),
    Service::tcp(475),
    Service::tcp(587),
    Service::tcp(636),
    Service::tcp(717),
    Service::tcp(993),
    Service::tcp(995),
    Service::tcp(2525),
    Service::tcp(3268),
    Service::tcp(3269),
    Service::tcp(5060),
    Service::udp(5060),
    Service::tcp(5061),
    Service::tcp(5062),
    Service::tcp(5063),
    Service::tcp(5064),
    Service::tcp(5065),
    Service::tcp(5066),
    Service::tcp(5067),
    Service::tcp(50636),
    Service::tcp(64327),
];

/// The index of a known service (its bit in [`Opened::services`]). Most flows are to
/// no known port: the range test turns them away before the search, a binary one
/// ([`KNOWN`] is in (port, transport) order).
fn known(proto: u8, port: u16) -> Option<usize> {
    if !(25..=5067).contains(&port) && port != 50636 && port != 64327 {
        return None;
    }
    KNOWN.binary_search_by(|s| (s.port, s.proto).cmp(&(port, proto))).ok()
}

/// A port a host answered.
#[derive(Clone, Debug)]
pub struct Served {
    pub service: Service,
    pub flows: u64,
    pub packets: u64,
    /// The hosts that opened the flows, the first [`MAX_PEERS`] of them.
    pub peers: Vec<IpAddr>,
    /// Whether more peers came than `peers` holds.
    pub more_peers: bool,
}

/// A server a host opened connections to, and on which known ports it answered.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub peer: IpAddr,
    /// One bit per known port used (see [`Opened::used`]).
    pub services: u64,
    pub flows: u64,
}

impl Opened {
    pub fn used(&self, service: Service) -> bool {
        known(service.proto, service.port).is_some_and(|i| self.services & (1 << i) != 0)
    }
}

/// What a host said of Exchange as the responder of answered flows: its greeting, or an
/// RPC bind to an Exchange interface that it answered (on any port).
#[derive(Clone, Debug)]
pub struct Spoke {
    pub exchange: Exchange,
    pub flows: u64,
    /// The hosts it said it to, the first [`MAX_PEERS`] of them.
    pub peers: Vec<IpAddr>,
    pub more_peers: bool,
}

/// What one host did in answered flows.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// Answered flows the host took part in, either side, and their packets.
    pub flows: u64,
    pub packets: u64,
    pub served: Vec<Served>,
    /// What it said of Exchange, one entry per kind ([`Exchange::ALL`]).
    pub spoke: Vec<Spoke>,
    /// The application protocols (`app_proto`) of the flows it answered, one bit each
    /// ([`Host::answered_apps`]).
    pub apps: u16,
    pub opened: Vec<Opened>,
    /// Servers not remembered because `opened` was full of servers.
    pub opened_dropped: u64,
}

impl Host {
    pub fn served(&self, service: Service) -> Option<&Served> {
        self.served.iter().find(|s| s.service == service)
    }

    pub fn spoke(&self, exchange: Exchange) -> Option<&Spoke> {
        self.spoke.iter().find(|s| s.exchange == exchange)
    }

    /// The application protocols of the flows it answered, as Suricata names them.
    pub fn answered_apps(&self) -> Vec<&'static str> {
        APPS.iter().filter(|app| self.apps & app_bit(**app) != 0).filter_map(|app| app.name()).collect()
    }

    /// Whether the host answered some port that only servers of a role answer.
    fn looks_like_a_server(&self) -> bool {
        self.served.iter().any(|s| SERVER_HINTS.contains(&s.service.port)) || !self.spoke.is_empty()
    }
}

/// Ports whose answer marks a host as a server of some role, for making room in an
/// [`Host::opened`] list: a peer answering none of them is the one forgotten.
const SERVER_HINTS: &[u16] = &[88, 389, 444, 636, 2525, 3268, 3269, 5061, 50636, 64327, 475, 717];

/// What the learner counted besides its hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Ended TCP and UDP flows seen.
    pub flows: u64,
    /// Of those, the ones the responder answered: the only evidence used.
    pub answered: u64,
    /// Flows to or from link-local, multicast or broadcast addresses, left out.
    pub local: u64,
    /// Answered flows with a host that could not be tracked (the host table was full).
    pub untracked_flows: u64,
    /// Times a host was met that could not be added because the table was full (a host
    /// met in many flows counts each time).
    pub untracked_hosts: u64,
}

/// Hosts by address; foldhash rather than SipHash, since every ended flow is looked up
/// twice and addresses come from the traffic only as keys, never to be iterated in
/// hash order (the draft sorts).
pub type Hosts = HashMap<IpAddr, Host, foldhash::fast::FixedState>;

/// The per-host view of a run, fed with ended flows.
#[derive(Debug, Default)]
pub struct Learner {
    settings: Settings,
    hosts: Hosts,
    pub tally: Tally,
}

impl Observer for Learner {
    fn event(&mut self, _engine: &Engine, event: &flow::Event) {
        if let flow::Event::Flow { flow, .. } = event {
            self.flow(flow);
        }
    }

    fn unanswered_flows(&self) -> bool {
        !self.settings.answered_only
    }
}

impl Learner {
    pub fn new(settings: Settings) -> Learner {
        Learner { settings, hosts: Hosts::default(), tally: Tally::default() }
    }

    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Takes in one ended flow.
    pub fn flow(&mut self, flow: &Flow) {
        let tuple = flow.orig();
        if !matches!(tuple.proto, proto::TCP | proto::UDP) {
            return;
        }
        self.tally.flows += 1;
        if is_local(tuple.src) || is_local(tuple.dst) {
            self.tally.local += 1;
            return;
        }
        if !flow.is_answered() {
            return;
        }
        self.tally.answered += 1;
        let packets = flow.pkts[TO_SERVER] + flow.pkts[TO_CLIENT];
        let service = known(tuple.proto, tuple.dport);
        // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 host: a draft that
        // listed both would list one host twice.
        let (orig, resp) = (tuple.src.to_canonical(), tuple.dst.to_canonical());
        let resp_tracked = match self.host(resp) {
            Some(host) => {
                host.flows += 1;
                host.packets += packets;
                if service.is_some() {
                    serve(host, Service { proto: tuple.proto, port: tuple.dport }, orig, packets);
                }
                if flow.exchange != Exchange::Nothing {
                    spoke(host, flow.exchange, orig);
                }
                host.apps |= app_bit(AppProto::of_flow(flow.app[TO_SERVER], flow.app[TO_CLIENT]));
                true
            }
            None => false,
        };
        if !resp_tracked {
            self.tally.untracked_flows += 1;
        }
        let Some(host) = self.host(orig) else {
            if resp_tracked {
                self.tally.untracked_flows += 1;
            }
            return;
        };
        host.flows += 1;
        host.packets += packets;
        let Some(index) = service.filter(|_| resp_tracked) else { return };
        let entry = Opened { peer: resp, services: 1 << index, flows: 1 };
        if open(host, entry) {
            return;
        }
        // The list is full of other servers: make room, if a peer there answered no port
        // of a server role. A search that found none never will (a peer that looks like
        // a server always will, and the list is unchanged), so once a server was dropped
        // the next are dropped without one.
        if host.opened_dropped > 0 {
            host.opened_dropped += 1;
            return;
        }
        let room = self.hosts.get(&orig).and_then(|host| {
            host.opened.iter().position(|o| !self.hosts.get(&o.peer).is_some_and(Host::looks_like_a_server))
        });
        if let Some(host) = self.hosts.get_mut(&orig) {
            match room {
                Some(i) => host.opened[i] = entry,
                None => host.opened_dropped += 1,
            }
        }
    }

    /// The host's entry, created if there is room; `None` (counted) when the table is full.
    fn host(&mut self, addr: IpAddr) -> Option<&mut Host> {
        let full = self.hosts.len() >= self.settings.max_hosts;
        if full && !self.hosts.contains_key(&addr) {
            self.tally.untracked_hosts += 1;
            return None;
        }
        Some(self.hosts.entry(addr).or_default())
    }
}

fn serve(host: &mut Host, service: Service, peer: IpAddr, packets: u64) {
    let served = match host.served.iter().position(|s| s.service == service) {
        Some(i) => &mut host.served[i],
        None => {
            push_one(
                &mut host.served,
                Served { service, flows: 0, packets: 0, peers: Vec::new(), more_peers: false },
            );
            host.served.last_mut().expect("just pushed")
        }
    };
    served.flows += 1;
    served.packets += packets;
    // Once the list is full and known to be short of some peer, nothing more is learned.
    if !served.more_peers && !served.peers.contains(&peer) {
        if served.peers.len() < MAX_PEERS {
            push_one(&mut served.peers, peer);
        } else {
            served.more_peers = true;
        }
    }
}

/// The protocols a host's answered flows are told by, in the order evidence names them.
const APPS: [AppProto; 9] = [
    AppProto::Smtp,
    AppProto::Imap,
    AppProto::Pop3,
    AppProto::Http,
    AppProto::Tls,
    AppProto::Dcerpc,
    AppProto::Smb,
    AppProto::Ldap,
    AppProto::Dns,
];

/// A recognised protocol's bit in [`Host::apps`]; none for no payload or none recognised.
fn app_bit(app: AppProto) -> u16 {
    APPS.iter().position(|a| *a == app).map_or(0, |i| 1 << i)
}

fn spoke(host: &mut Host, exchange: Exchange, peer: IpAddr) {
    let spoke = match host.spoke.iter().position(|s| s.exchange == exchange) {
        Some(i) => &mut host.spoke[i],
        None => {
            push_one(&mut host.spoke, Spoke { exchange, flows: 0, peers: Vec::new(), more_peers: false });
            host.spoke.last_mut().expect("just pushed")
        }
    };
    spoke.flows += 1;
    if !spoke.more_peers && !spoke.peers.contains(&peer) {
        if spoke.peers.len() < MAX_PEERS {
            push_one(&mut spoke.peers, peer);
        } else {
            spoke.more_peers = true;
        }
    }
}

/// Appends to one of a host's lists, which start with room for one entry: most hosts of a
/// busy port (and every host of a spoofed flood) have one, where `Vec`'s first push
/// reserves four (a fifth of what a flood's host cost).
fn push_one<T>(list: &mut Vec<T>, item: T) {
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    list.push(item);
}

/// Adds `entry` to the host's `opened` list, or merges it with the peer's entry; false
/// when the list is full of other peers.
fn open(host: &mut Host, entry: Opened) -> bool {
    if let Some(o) = host.opened.iter_mut().find(|o| o.peer == entry.peer) {
        o.services |= entry.services;
        o.flows += 1;
        return true;
    }
    if host.opened.len() < MAX_OPENED {
        push_one(&mut host.opened, entry);
        return true;
    }
    false
}

/// Link-local, multicast, broadcast and unspecified addresses: traffic that never
/// leaves the segment says nothing of roles.
pub fn is_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xffc0) == 0xfe80 || v6.is_multicast() || v6.is_unspecified()
        }
    }
}

/// Private addresses: RFC 1918, shared address space (RFC 6598) and IPv6 unique local.
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Unlisted hosts `analyze` names one by one; past this, one line says how many more.
const MAX_UNLISTED_WARNINGS: usize = 10;

/// The hosts that act like a role `topology` does not list, one line each (at most
/// `MAX_UNLISTED_WARNINGS`, then a count): the warnings `analyze` repeats in its
/// summary.
pub fn unlisted(learner: &Learner, topology: &crate::policy::Topology) -> Vec<String> {
    let draft = Draft::new(learner);
    let mut lines: Vec<String> = compare(learner, &draft, topology)
        .into_iter()
        .filter(|f| f.kind == FindingKind::Unlisted)
        .map(|f| f.text)
        .collect();
    if lines.len() > MAX_UNLISTED_WARNINGS {
        let more = lines.len() - MAX_UNLISTED_WARNINGS;
        lines.truncate(MAX_UNLISTED_WARNINGS);
        lines.push(format!(
            "{more} more hosts or client prefixes act like a role the topology does not list: `exwatch learn --topology` lists them all"
        ));
    }
    if learner.tally.untracked_flows > 0 {
        lines.push(format!(
            "{} answered flows had a host past the {} the learner tracks: unlisted hosts among them are not named",
            learner.tally.untracked_flows, learner.settings.max_hosts
        ));
    }
    lines
}

#[cfg(test)]
mod tests;
