//! The roles a learner's evidence supports, and the draft topology file.
//!
//! Each host gets one role, tried in this order: Edge Transport (it answers
//! EdgeSync, 50636), Mailbox (Exchange's own ports: 2525, 64327, 444, 475, 717),
//! domain controller (Kerberos, LDAP, the Global Catalog), Skype for Business (SIP over
//! TLS, 5061, or two SIP ports), Mailbox again on weaker evidence (HTTPS and a mail
//! port from three hosts or more), DNS (53, twice or more). A second pass finds an Edge
//! that showed no EdgeSync (SMTP from the Internet, SMTP to a Mailbox server, no web).
//! Internal clients are the other hosts that opened client connections to a Mailbox
//! server and are inside the organization: a private address, Kerberos or LDAP to a
//! domain controller (the host, or another in its /24 or IPv6 /48), (IPv6) the /48 of a
//! drafted server, or (IPv6) a /64 from which [`LAN_CLIENTS`] hosts or more did so.
//!
//! What a server says counts too, since a capture taken on the client side shows a
//! server's answers to a few hosts only: a host that bound MAPI (EMSMDB) or the address
//! book (NSPI) over RPC, or greeted as Exchange in IMAP4 or POP3, is a Mailbox server
//! (high with the RPC interfaces or two kinds, else medium), tried after the strong
//! evidence; one that greeted as Exchange in SMTP only is one too unless it acts like an
//! Edge (which greets the same). Either must be a private address or do what only the
//! organization's servers do: Exchange Online and other organizations greet the same.
//!
//! Two drafts go beyond one role a host: a domain controller that answered Kerberos,
//! LDAP and DNS is drafted as `dns` too (AD-integrated DNS); and the hosts a Mailbox
//! server answered SIP from are suggested, commented out and at low confidence, as
//! `um_gateway` (Unified Messaging, Exchange 2016 only).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use super::{is_private, known, Host, Hosts, Learner, Service, Tally};
use crate::decode::{proto, Exchange};
use crate::flow::Confidence;
use crate::policy::prefix::Prefix;
use crate::policy::Role;

/// Exchange's own ports, in the order evidence names them.
const EXCHANGE: &[u16] = &[2525, 64327, 444, 475, 717];
/// Ports that only a domain controller answers (Kerberos, LDAP, the Global Catalog).
const AD: &[Service] = &[
    Service::tcp(88),
    Service::udp(88),
    Service::tcp(389),
    Service::udp(389),
    Service::tcp(636),
    Service::tcp(3268),
    Service::tcp(3269),
];
/// Ports a domain controller often answers too.
const AD_ALSO: &[Service] = &[
    Service::tcp(464),
    Service::udp(464),
    Service::tcp(53),
    Service::udp(53),
    Service::tcp(135),
    Service::tcp(445),
];
/// SIP ports of Skype for Business servers (5061 SIP over TLS first).
const SIP: &[u16] = &[5061, 5060, 5062, 5063, 5064, 5065, 5066, 5067];
/// Mail ports a Mailbox server answers to clients and mail servers.
const MAIL: &[u16] = &[25, 587, 993, 995, 143, 110, 465];
/// Hosts of one IPv6 /64 that opened client connections to Mailbox servers that make it
/// a client LAN of the organization.
pub const LAN_CLIENTS: usize = 10;
/// Ports internal clients open to Mailbox servers.
const CLIENT: &[u16] = &[443, 80, 25, 587, 993, 995, 143, 110, 135, 444];

/// One host of the draft, in a role.
#[derive(Clone, Debug)]
pub struct DraftHost {
    pub addr: IpAddr,
    pub role: Role,
    pub confidence: Confidence,
    /// The ports that tell the role, in the order evidence names them.
    pub key: Vec<Service>,
    /// What it said of Exchange, when that told the role (see [`Exchange`]).
    pub said: Vec<Exchange>,
    /// Distinct hosts that opened flows to those ports (at least, when `more_peers`).
    pub peers: usize,
    pub more_peers: bool,
    /// The role all those peers were drafted in, if they share one.
    pub peer_role: Option<Role>,
    /// Every known port it answered: "443 from 120 hosts, ...".
    pub answered: String,
    /// The application protocols (`app_proto`) of the flows it answered.
    pub apps: Vec<&'static str>,
    pub flows: u64,
    pub packets: u64,
}

impl DraftHost {
    /// "10.1.10.13 behaves like a Mailbox server: 2525, 64327 and 444 from 3 Mailbox servers".
    pub fn behaves(&self) -> String {
        format!("{} {}", self.addr, self.behaviour())
    }

    /// "behaves like a Mailbox server: 2525, 64327 and 444 from 3 Mailbox servers".
    pub fn behaviour(&self) -> String {
        let mut evidence: Vec<String> = Vec::new();
        if !self.key.is_empty() {
            let ports: Vec<String> = self.key.iter().map(|s| service_name(*s)).collect();
            evidence.push(join(&ports));
        }
        evidence.extend(self.said.iter().map(|e| e.describe().to_string()));
        let noun = match self.peer_role {
            Some(Role::Mailbox) => "Mailbox servers",
            Some(Role::Edge) => "Edge Transport servers",
            Some(Role::DomainController) => "domain controllers",
            Some(Role::InternalClient) => "internal clients",
            _ => "hosts",
        };
        let noun = if self.peers == 1 && !self.more_peers { noun.trim_end_matches('s') } else { noun };
        format!(
            "behaves like {}: {} {} {}{} {noun}",
            role_phrase(self.role),
            join(&evidence),
            if self.key.is_empty() { "to" } else { "from" },
            self.peers,
            if self.more_peers { " or more" } else { "" }
        )
    }
}

/// Internal clients summarized as one prefix.
#[derive(Clone, Debug)]
pub struct ClientPrefix {
    pub prefix: Prefix,
    pub hosts: Vec<IpAddr>,
    /// Ports they opened to Mailbox servers.
    pub ports: BTreeSet<u16>,
}

/// A host a Mailbox server answered SIP from: perhaps a UM gateway (VoIP gateway, IP
/// PBX or session border controller), never more than a commented suggestion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UmSuggestion {
    pub addr: IpAddr,
    /// The Mailbox server that answered it, and on which SIP services.
    pub mailbox: IpAddr,
    pub sip: Vec<Service>,
}

/// One drafted `[[edge_subscription]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftSubscription {
    pub edge: Vec<IpAddr>,
    pub mailbox: Vec<IpAddr>,
}

/// The drafted topology.
#[derive(Clone, Debug)]
pub struct Draft {
    /// Hosts in server roles, by role then address.
    pub hosts: Vec<DraftHost>,
    pub clients: Vec<ClientPrefix>,
    pub subscriptions: Vec<DraftSubscription>,
    /// Hosts that might be UM gateways, by address.
    pub um_gateways: Vec<UmSuggestion>,
    /// Hosts that did something of a role, too little to give it: (host, why).
    pub too_little: Vec<(IpAddr, String)>,
    pub tally: Tally,
    pub hosts_tracked: usize,
}

impl Draft {
    /// Drafts the topology from what `learner` saw.
    pub fn new(learner: &Learner) -> Draft {
        let hosts = learner.hosts();
        let mut roles: Roles = HashMap::default();
        let mut too_little = Vec::new();
        // Only a host that answered something can have a server role.
        let answering = || hosts.iter().filter(|(_, host)| !host.served.is_empty() || !host.spoke.is_empty());
        for (&addr, host) in answering() {
            if let Some(found) = first_pass(host) {
                roles.insert(addr, found);
            }
        }
        let mut weaker = Vec::new();
        for (&addr, host) in answering().filter(|(a, _)| !roles.contains_key(a)) {
            match second_pass(addr, host, &roles) {
                Ok(found) => weaker.push((addr, found)),
                Err(Some(why)) => too_little.push((addr, why)),
                Err(None) => {}
            }
        }
        // What the weaker evidence drafted from what a host said (an SMTP greeting only: an
        // Edge greets the same, so the Edge test below may still take it).
        let mut by_said: HashMap<IpAddr, Vec<Exchange>> = HashMap::new();
        for (addr, (_, _, key)) in &weaker {
            if key.is_empty() {
                by_said.insert(*addr, said_of(&hosts[addr]));
            }
        }
        roles.extend(weaker);
        // An Edge that showed no EdgeSync: SMTP from the Internet, SMTP to a Mailbox server.
        for (&addr, host) in answering() {
            let smtp_greeting_only =
                by_said.get(&addr).is_some_and(|said| said[..] == [Exchange::SmtpGreeting]);
            if roles.contains_key(&addr) && !smtp_greeting_only {
                continue;
            }
            let smtp_in =
                host.served(Service::tcp(25)).is_some_and(|s| s.peers.iter().any(|p| !is_private(*p)));
            let to_mailbox = host.opened.iter().any(|o| {
                o.used(Service::tcp(25)) && roles.get(&o.peer).is_some_and(|r| r.0 == Role::Mailbox)
            });
            if smtp_in && to_mailbox && host.served(Service::tcp(443)).is_none() {
                too_little.retain(|(a, _)| *a != addr);
                by_said.remove(&addr);
                roles.insert(addr, (Role::Edge, Confidence::Medium, vec![Service::tcp(25)]));
            }
        }
        let mut subscriptions = subscriptions(hosts, &roles);
        // An Edge no Mailbox server spoke with cannot be subscribed, and the seed calls
        // an unsubscribed Edge unsupported: it is named, not listed.
        let subscribed: BTreeSet<IpAddr> = subscriptions.iter().flat_map(|s| s.edge.clone()).collect();
        roles.retain(|addr, (role, _, _)| {
            if *role == Role::Edge && !subscribed.contains(addr) {
                too_little.push((
                    *addr,
                    "behaves like an Edge Transport server, but no Mailbox server spoke EdgeSync or SMTP with it: an Edge without a subscription is unsupported, so it is not listed".into(),
                ));
                false
            } else {
                true
            }
        });
        let mut drafted: Vec<DraftHost> = roles
            .iter()
            .map(|(&addr, (role, confidence, key))| {
                let host = &hosts[&addr];
                let mut peers = BTreeSet::new();
                let mut more_peers = false;
                for served in key.iter().filter_map(|s| host.served(*s)) {
                    peers.extend(served.peers.iter().copied());
                    more_peers |= served.more_peers;
                }
                let said = by_said.get(&addr).cloned().unwrap_or_default();
                for spoke in said.iter().filter_map(|e| host.spoke(*e)) {
                    peers.extend(spoke.peers.iter().copied());
                    more_peers |= spoke.more_peers;
                }
                let peer_roles: BTreeSet<Option<Role>> =
                    peers.iter().map(|p| roles.get(p).map(|r| r.0)).collect();
                let peer_role = match peer_roles.into_iter().collect::<Vec<_>>()[..] {
                    [Some(role)] => Some(role),
                    _ => None,
                };
                DraftHost {
                    addr,
                    role: *role,
                    confidence: *confidence,
                    key: key.clone(),
                    said,
                    peers: peers.len(),
                    more_peers,
                    peer_role,
                    answered: answered_text(host),
                    apps: host.answered_apps(),
                    flows: host.flows,
                    packets: host.packets,
                }
            })
            .collect();
        let also_dns: Vec<DraftHost> = drafted.iter().filter_map(|h| also_dns(h, &hosts[&h.addr])).collect();
        drafted.extend(also_dns);
        drafted.sort_by_key(|h| (h.role, h.addr));
        too_little.sort();
        let um_gateways = um_gateways(hosts, &roles);
        let clients = clients(hosts, &roles);
        subscriptions.sort_by(|a, b| a.edge.cmp(&b.edge));
        Draft {
            hosts: drafted,
            clients,
            subscriptions,
            um_gateways,
            too_little,
            tally: learner.tally,
            hosts_tracked: hosts.len(),
        }
    }

    /// The drafted role of `addr`, if any: a server role, or an internal client.
    pub fn role_of(&self, addr: IpAddr) -> Option<Role> {
        self.hosts
            .iter()
            .find(|h| h.addr == addr)
            .map(|h| h.role)
            .or_else(|| self.clients.iter().any(|c| c.hosts.contains(&addr)).then_some(Role::InternalClient))
    }

    pub fn of_role(&self, role: Role) -> impl Iterator<Item = &DraftHost> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// The draft as a topology file (SPEC section 1), each host with its evidence.
    pub fn to_toml(&self, sources: &str) -> String {
        let mut s = String::new();
        let t = &self.tally;
        let _ = writeln!(s, "# Topology drafted by `exwatch learn` from {sources}:");
        let _ = writeln!(
            s,
            "# {} flows, {} answered (only answered flows are evidence), {} hosts tracked{}.",
            t.flows,
            t.answered,
            self.hosts_tracked,
            if t.untracked_flows > 0 {
                format!(
                    ", {} flows with a host not tracked (table full: raise --max-hosts)",
                    t.untracked_flows
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "# Each host's comment gives its evidence and a confidence (high, medium, low). Review it,"
        );
        let _ = writeln!(
            s,
            "# name the organization and the sites, then try it with `exwatch check --topology`."
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "[organization]");
        let _ = writeln!(s, "name = \"draft\"");
        let _ = writeln!(s, "restrict_internal_clients = false");
        let _ = writeln!(s);
        let _ = writeln!(s, "[roles]");
        for role in [Role::Mailbox, Role::Edge, Role::DomainController, Role::Skype, Role::Dns] {
            let hosts: Vec<&DraftHost> = self.of_role(role).collect();
            if hosts.is_empty() {
                continue;
            }
            let _ = writeln!(s, "{} = [", role.name());
            for h in hosts {
                let apps = if h.apps.is_empty() {
                    String::new()
                } else {
                    format!("; app_proto {}", h.apps.join(", "))
                };
                let _ = writeln!(
                    s,
                    "  \"{}\",  # {}: {}{apps}; {} flows, {} packets",
                    h.addr,
                    h.confidence.name(),
                    h.answered,
                    h.flows,
                    h.packets
                );
            }
            let _ = writeln!(s, "]");
        }
        if !self.um_gateways.is_empty() {
            let _ = writeln!(
                s,
                "# Mailbox servers answered SIP: with Unified Messaging (Exchange 2016 only), these may be"
            );
            let _ =
                writeln!(s, "# VoIP gateways, IP PBXs or SBCs. To use them, set exchange_version = 2016 and");
            let _ = writeln!(s, "# packs = [\"unified-messaging\"] under [organization], then uncomment:");
            let _ = writeln!(s, "# um_gateway = [");
            for g in &self.um_gateways {
                let sip: Vec<String> = g.sip.iter().map(|s| service_name(*s)).collect();
                let _ = writeln!(
                    s,
                    "#   \"{}\",  # low: SIP {} answered by Mailbox server {}",
                    g.addr,
                    join(&sip),
                    g.mailbox
                );
            }
            let _ = writeln!(s, "# ]");
        }
        if !self.clients.is_empty() {
            let _ = writeln!(s, "internal_client = [");
            for c in &self.clients {
                let ports: Vec<String> = c.ports.iter().map(u16::to_string).collect();
                let _ = writeln!(
                    s,
                    "  \"{}\",  # {} host{} opened {} to Mailbox servers",
                    c.prefix,
                    c.hosts.len(),
                    if c.hosts.len() == 1 { "" } else { "s" },
                    join(&ports)
                );
            }
            let _ = writeln!(s, "]");
        }
        for (i, sub) in self.subscriptions.iter().enumerate() {
            let quoted =
                |list: &[IpAddr]| list.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(s);
            let _ = writeln!(s, "[[edge_subscription]]");
            let _ = writeln!(s, "edge    = [{}]", quoted(&sub.edge));
            let _ = writeln!(
                s,
                "site    = \"site-{}\"   # the Active Directory site's name is not on the wire: rename it",
                i + 1
            );
            let _ = writeln!(
                s,
                "mailbox = [{}]   # they spoke EdgeSync (50636) or SMTP with the Edge",
                quoted(&sub.mailbox)
            );
        }
        if !self.too_little.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "# Too little evidence to give a role:");
            for (addr, why) in &self.too_little {
                let _ = writeln!(s, "# {addr}: {why}");
            }
        }
        s
    }
}

/// A host's role on strong evidence: ports only servers of that role answer.
fn first_pass(host: &Host) -> Option<(Role, Confidence, Vec<Service>)> {
    let served = |port: u16| host.served(Service::tcp(port));
    if served(50636).is_some() {
        let smtp = served(25).is_some();
        let key = if smtp { vec![Service::tcp(50636), Service::tcp(25)] } else { vec![Service::tcp(50636)] };
        return Some((Role::Edge, if smtp { Confidence::High } else { Confidence::Medium }, key));
    }
    let exchange: Vec<Service> =
        EXCHANGE.iter().map(|&p| Service::tcp(p)).filter(|s| host.served(*s).is_some()).collect();
    let skype_444 = served(5061).is_some() && exchange.iter().all(|s| s.port == 444);
    if !exchange.is_empty() && !skype_444 {
        let confidence =
            if exchange.len() >= 2 || served(443).is_some() { Confidence::High } else { Confidence::Medium };
        return Some((Role::Mailbox, confidence, exchange));
    }
    let ad: Vec<Service> = AD.iter().copied().filter(|s| host.served(*s).is_some()).collect();
    if !ad.is_empty() {
        let also = AD_ALSO.iter().copied().filter(|s| host.served(*s).is_some());
        let key: Vec<Service> = ad.iter().copied().chain(also).collect();
        let flows: u64 = key.iter().filter_map(|s| host.served(*s)).map(|s| s.flows).sum();
        let confidence = match (key.len() >= 2, flows >= 3) {
            (true, true) => Confidence::High,
            (false, false) => Confidence::Low,
            _ => Confidence::Medium,
        };
        return Some((Role::DomainController, confidence, key));
    }
    None
}

type Roles = HashMap<IpAddr, (Role, Confidence, Vec<Service>), foldhash::fast::FixedState>;

/// A host's role on weaker evidence, once the strong roles are known (`strong`), or
/// why there is too little to say.
fn second_pass(
    addr: IpAddr,
    host: &Host,
    strong: &Roles,
) -> Result<(Role, Confidence, Vec<Service>), Option<String>> {
    let served = |port: u16| host.served(Service::tcp(port));
    let peers = |ports: &[Service]| {
        let mut set = BTreeSet::new();
        for s in ports.iter().filter_map(|p| host.served(*p)) {
            set.extend(s.peers.iter().copied());
        }
        set.len()
    };
    let role = |a: &IpAddr| strong.get(a).map(|r| r.0);
    // Only the organization's servers do these: Kerberos or LDAP to a domain controller,
    // EdgeSync or SMTP to an Edge (an Internet host may answer web and mail too).
    let inside = host.opened.iter().any(|o| match role(&o.peer) {
        Some(Role::DomainController) => AD.iter().any(|s| o.used(*s)),
        Some(Role::Edge) => o.used(Service::tcp(50636)) || o.used(Service::tcp(25)),
        _ => false,
    });
    // Exchange Online and other organizations' servers greet the same: a public address
    // is taken at its word only if it does what only the organization's servers do
    // (else the Internet mail servers the Edge sends to would fill the draft's notes).
    let said = said_of(host);
    if !said.is_empty() && (is_private(addr) || inside) {
        let rpc = said.iter().any(|e| !e.from_server());
        let confidence = if rpc || said.len() >= 2 { Confidence::High } else { Confidence::Medium };
        return Ok((Role::Mailbox, confidence, Vec::new()));
    }
    let sip: Vec<Service> =
        SIP.iter().map(|&p| Service::tcp(p)).filter(|s| host.served(*s).is_some()).collect();
    let mail: Vec<Service> =
        MAIL.iter().map(|&p| Service::tcp(p)).filter(|s| host.served(*s).is_some()).collect();
    if served(443).is_some() && !mail.is_empty() {
        let key: Vec<Service> = std::iter::once(Service::tcp(443)).chain(mail.iter().copied()).collect();
        // An Internet host may answer web and mail too: a Mailbox server also does
        // what only servers of the organization do (`inside`; an Edge sends SMTP to the
        // Internet).
        if peers(&key) >= 3 && inside {
            // Before Skype: a Mailbox server may answer SIP too (Unified Messaging).
            return Ok((Role::Mailbox, Confidence::Medium, key));
        }
    }
    if served(5061).is_some() || sip.len() >= 2 {
        let confidence =
            if sip.len() >= 2 || peers(&sip) >= 3 { Confidence::High } else { Confidence::Medium };
        return Ok((Role::Skype, confidence, sip));
    }
    let dns: Vec<Service> =
        [Service::udp(53), Service::tcp(53)].into_iter().filter(|s| host.served(*s).is_some()).collect();
    let dns_flows: u64 = dns.iter().filter_map(|s| host.served(*s)).map(|s| s.flows).sum();
    if dns_flows >= 2 {
        let confidence = if peers(&dns) >= 3 { Confidence::High } else { Confidence::Medium };
        return Ok((Role::Dns, confidence, dns));
    }
    let why = if served(135).is_some() || served(445).is_some() {
        format!(
            "{}: RPC and SMB like a domain controller, but no Kerberos or LDAP answered",
            answered_text(host)
        )
    } else if dns_flows == 1 {
        format!("{}: a DNS server answering once", answered_text(host))
    } else if !sip.is_empty() {
        format!("{}: SIP without TLS (5061), not enough for Skype for Business", answered_text(host))
    } else if !mail.is_empty() && is_private(addr) {
        format!("{}: a mail server, none of Exchange's own ports answered", answered_text(host))
    } else {
        return Err(None);
    };
    Err(Some(why))
}

/// What a host said of Exchange, in the order evidence names it.
fn said_of(host: &Host) -> Vec<Exchange> {
    Exchange::ALL.into_iter().filter(|e| host.spoke(*e).is_some()).collect()
}

/// A drafted domain controller that answered DNS too, and Kerberos and LDAP: drafted
/// as `dns` as well (AD-integrated DNS, the ordinary Windows set-up).
fn also_dns(dc: &DraftHost, host: &Host) -> Option<DraftHost> {
    if dc.role != Role::DomainController {
        return None;
    }
    let answered = |services: &[Service]| services.iter().any(|s| host.served(*s).is_some());
    let kerberos = answered(&[Service::tcp(88), Service::udp(88)]);
    let ldap = answered(&[Service::tcp(389), Service::udp(389), Service::tcp(636)]);
    let dns: Vec<Service> =
        [Service::udp(53), Service::tcp(53)].into_iter().filter(|s| host.served(*s).is_some()).collect();
    (kerberos && ldap && !dns.is_empty()).then(|| DraftHost { role: Role::Dns, key: dns, ..dc.clone() })
}

/// The hosts that no role was drafted for and that a drafted Mailbox server answered
/// SIP from (TCP 5060-5067, UDP 5060).
fn um_gateways(hosts: &Hosts, roles: &Roles) -> Vec<UmSuggestion> {
    let sip: Vec<Service> = SIP.iter().map(|&p| Service::tcp(p)).chain([Service::udp(5060)]).collect();
    let mut found: BTreeMap<IpAddr, UmSuggestion> = BTreeMap::new();
    let mut mailboxes: Vec<IpAddr> =
        roles.iter().filter(|(_, r)| r.0 == Role::Mailbox).map(|(a, _)| *a).collect();
    mailboxes.sort_unstable();
    for mailbox in mailboxes {
        for served in sip.iter().filter_map(|s| hosts[&mailbox].served(*s)) {
            for &peer in served.peers.iter().filter(|p| !roles.contains_key(*p)) {
                let entry = found.entry(peer).or_insert_with(|| UmSuggestion {
                    addr: peer,
                    mailbox,
                    sip: Vec::new(),
                });
                if entry.mailbox == mailbox && !entry.sip.contains(&served.service) {
                    entry.sip.push(served.service);
                }
            }
        }
    }
    found.into_values().collect()
}

/// Edge subscriptions: for each drafted Edge, the Mailbox servers that spoke EdgeSync
/// or SMTP with it; Edges with the same Mailbox servers share a subscription.
fn subscriptions(hosts: &Hosts, roles: &Roles) -> Vec<DraftSubscription> {
    let of_role = |role: Role| -> BTreeSet<IpAddr> {
        roles.iter().filter(|(_, r)| r.0 == role).map(|(a, _)| *a).collect()
    };
    let mailboxes = of_role(Role::Mailbox);
    let mut by_set: BTreeMap<Vec<IpAddr>, Vec<IpAddr>> = BTreeMap::new();
    for edge in of_role(Role::Edge) {
        // Mailbox servers of the subscribed site send to the Edge (EdgeSync, SMTP);
        // SMTP from the Edge to a Mailbox server counts only when none did, since an
        // Edge that sends to another site is a finding, not a subscription.
        let to_edge: Vec<IpAddr> = mailboxes
            .iter()
            .copied()
            .filter(|m| {
                hosts[m]
                    .opened
                    .iter()
                    .any(|o| o.peer == edge && (o.used(Service::tcp(50636)) || o.used(Service::tcp(25))))
            })
            .collect();
        let spoke = if to_edge.is_empty() {
            mailboxes
                .iter()
                .copied()
                .filter(|m| hosts[&edge].opened.iter().any(|o| o.peer == *m && o.used(Service::tcp(25))))
                .collect()
        } else {
            to_edge
        };
        if !spoke.is_empty() {
            by_set.entry(spoke).or_default().push(edge);
        }
    }
    by_set.into_iter().map(|(mailbox, edge)| DraftSubscription { edge, mailbox }).collect()
}

/// Internal clients, summarized as prefixes that hold no drafted server.
fn clients(hosts: &Hosts, roles: &Roles) -> Vec<ClientPrefix> {
    let role = |addr: &IpAddr| roles.get(addr).map(|r| r.0);
    let servers: Vec<IpAddr> = roles.keys().copied().collect();
    let server_48s: BTreeSet<IpAddr> = servers.iter().filter(|a| a.is_ipv6()).map(|a| mask(*a, 48)).collect();
    // Each client with the bits (of `Opened::services`) of the client ports it opened
    // to Mailbox servers: a busy port has tens of thousands, so no set each.
    let client_bits = CLIENT.iter().filter_map(|&p| known(proto::TCP, p)).fold(0u64, |bits, i| bits | 1 << i);
    // The network a host proven inside vouches for: its /24, or its IPv6 /48 (a site's
    // allocation). A client seen with a Mailbox server only, never with a domain
    // controller, is inside when a neighbour was: a dual-stack site's IPv6 clients are
    // global addresses, and a capture shows most of them in one flow or two.
    let site = |a: IpAddr| if a.is_ipv4() { mask(a, 24) } else { mask(a, 48) };
    let mut candidates: Vec<(IpAddr, u64, bool)> = Vec::new();
    let mut vouched: BTreeSet<IpAddr> = BTreeSet::new();
    for (&addr, host) in hosts {
        if roles.contains_key(&addr) {
            continue;
        }
        let mut used = 0u64;
        let mut to_dc = false;
        for o in &host.opened {
            match role(&o.peer) {
                Some(Role::Mailbox) => used |= o.services & client_bits,
                Some(Role::DomainController) => to_dc |= AD.iter().any(|s| o.used(*s)),
                _ => {}
            }
        }
        if to_dc {
            vouched.insert(site(addr));
        }
        if used != 0 {
            let inside =
                is_private(addr) || to_dc || (addr.is_ipv6() && server_48s.contains(&mask(addr, 48)));
            candidates.push((addr, used, inside));
        }
    }
    // An IPv6 /64 is one link: many hosts on one all clients of the Mailbox servers are
    // a LAN of the organization (a dual-stack site whose domain controllers are on IPv4
    // only leaves its IPv6 clients nothing else to show). Internet clients come one or a
    // few from a /64 (a phone, a home).
    let mut per_link: BTreeMap<IpAddr, usize> = BTreeMap::new();
    // IPv4-mapped addresses (::ffff:0:0/96) are IPv4 hosts, never one link.
    let link = |a: IpAddr| match a {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => Some(mask(a, 64)),
        _ => None,
    };
    for &(addr, _, _) in &candidates {
        if let Some(net) = link(addr) {
            *per_link.entry(net).or_default() += 1;
        }
    }
    let lan = |a: IpAddr| link(a).and_then(|net| per_link.get(&net)).is_some_and(|&n| n >= LAN_CLIENTS);
    let mut found: Vec<(IpAddr, u64)> = candidates
        .into_iter()
        .filter(|&(addr, _, inside)| inside || vouched.contains(&site(addr)) || lan(addr))
        .map(|(addr, used, _)| (addr, used))
        .collect();
    found.sort_unstable_by_key(|&(addr, _)| addr);
    // Group by /24 (IPv6 /64); groups sharing a /16 (/48) with no server in it merge.
    let narrow = |a: &IpAddr| if a.is_ipv4() { 24 } else { 64 };
    let wide = |a: &IpAddr| if a.is_ipv4() { 16 } else { 48 };
    let holds_server =
        |net: IpAddr, len: u8| servers.iter().any(|s| same_family(*s, net) && mask(*s, len) == net);
    let mut groups: BTreeMap<(IpAddr, u8), Vec<(IpAddr, u64)>> = BTreeMap::new();
    for &(addr, used) in &found {
        let (n, w) = (narrow(&addr), wide(&addr));
        let key = if !holds_server(mask(addr, w), w) {
            (mask(addr, w), w)
        } else if !holds_server(mask(addr, n), n) {
            (mask(addr, n), n)
        } else {
            (addr, if addr.is_ipv4() { 32 } else { 128 })
        };
        groups.entry(key).or_default().push((addr, used));
    }
    // A wide group drawn from one narrow prefix only is kept narrow: claim no more
    // address space than the evidence covers.
    let mut out: BTreeMap<(IpAddr, u8), Vec<(IpAddr, u64)>> = BTreeMap::new();
    for ((net, len), members) in groups {
        let narrows: BTreeSet<IpAddr> = members.iter().map(|(a, _)| mask(*a, narrow(a))).collect();
        let key = if len == wide(&net) && narrows.len() == 1 {
            (mask(members[0].0, narrow(&net)), narrow(&net))
        } else {
            (net, len)
        };
        out.entry(key).or_default().extend(members);
    }
    out.into_iter()
        .map(|((net, len), members)| {
            let prefix: Prefix = format!("{net}/{len}").parse().expect("a masked address and its length");
            let used = members.iter().fold(0, |bits, (_, used)| bits | used);
            let ports =
                CLIENT.iter().copied().filter(|&p| known(proto::TCP, p).is_some_and(|i| used & 1 << i != 0));
            ClientPrefix {
                prefix,
                hosts: members.into_iter().map(|(addr, _)| addr).collect(),
                ports: ports.collect(),
            }
        })
        .collect()
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// `addr` with the bits past `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// "443 from 120 hosts, 2525 from 3 hosts, 88/udp from 1 host".
pub(super) fn answered_text(host: &Host) -> String {
    let mut served: Vec<_> = host.served.iter().collect();
    served.sort_by_key(|s| (s.service.port, s.service.proto));
    let parts: Vec<String> = served
        .iter()
        .map(|s| {
            let n = s.peers.len();
            format!(
                "{} from {n}{} host{}",
                service_name(s.service),
                if s.more_peers { " or more" } else { "" },
                if n == 1 && !s.more_peers { "" } else { "s" }
            )
        })
        .collect();
    let said: Vec<String> = said_of(host)
        .into_iter()
        .filter_map(|e| host.spoke(e).map(|s| (e, s)))
        .map(|(e, s)| {
            let n = s.peers.len();
            format!(
                "{} to {n}{} host{}",
                e.describe(),
                if s.more_peers { " or more" } else { "" },
                if n == 1 && !s.more_peers { "" } else { "s" }
            )
        })
        .collect();
    let answered = if parts.is_empty() {
        "answered no port of a role".into()
    } else {
        format!("answered {}", parts.join(", "))
    };
    if said.is_empty() {
        answered
    } else {
        format!("{answered}; said {}", said.join(", "))
    }
}

/// "443", or "88/udp" for UDP.
pub fn service_name(s: Service) -> String {
    if s.proto == crate::decode::proto::UDP {
        format!("{}/udp", s.port)
    } else {
        s.port.to_string()
    }
}

/// "a, b and c".
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

pub fn role_phrase(role: Role) -> &'static str {
    match role {
        Role::Mailbox => "a Mailbox server",
        Role::Edge => "an Edge Transport server",
        Role::DomainController => "a domain controller",
        Role::Skype => "a Skype for Business server",
        Role::Dns => "a DNS server",
        Role::InternalClient => "an internal client",
        Role::ExchangeOnline => "an Exchange Online server",
        Role::UmGateway => "a UM gateway (VoIP gateway, IP PBX or SBC)",
        Role::External => "an external host",
        Role::Local => "a host of the local segment (link-local, multicast or broadcast)",
    }
}
