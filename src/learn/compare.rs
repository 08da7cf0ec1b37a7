//! A draft against a site's topology: hosts that act like a role the topology does not
//! give them, and listed servers that never acted like theirs, told from listed servers
//! the traffic says too little of to judge.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use super::draft::{answered_text, role_phrase};
use super::{Draft, Host, Learner};
use crate::decode::proto;
use crate::policy::{Role, Topology};

/// A listed server is judged ("never acted like its role") only from this many answered
/// flows or more...
pub const MIN_JUDGED_FLOWS: u64 = 10;
/// ... with this many distinct hosts or more: fewer is the view of a client-side capture.
pub const MIN_JUDGED_PEERS: usize = 3;

/// What kind of difference a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// Acts like a role, and the topology does not list it (so it is judged external).
    Unlisted,
    /// Listed in one role, acts like another.
    Contradicts,
    /// Listed as a server, never acted like one.
    NeverActed,
    /// Listed as a server, and the traffic says too little to judge: fewer than
    /// [`MIN_JUDGED_FLOWS`] answered flows or [`MIN_JUDGED_PEERS`] peers, or only what
    /// its role does too, short of what drafts the role. Not a difference.
    NotEnoughEvidence,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Unlisted => "unlisted",
            FindingKind::Contradicts => "contradicts",
            FindingKind::NeverActed => "never_acted",
            FindingKind::NotEnoughEvidence => "not_enough_evidence",
        }
    }

    /// Whether it is a difference between the traffic and the topology (what makes
    /// `learn --topology` exit 1).
    pub fn is_difference(self) -> bool {
        self != FindingKind::NotEnoughEvidence
    }
}

/// One difference between the traffic and the topology.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub kind: FindingKind,
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The server roles a listing of one host can be checked against.
const SERVER_ROLES: [Role; 5] = [Role::Mailbox, Role::Edge, Role::DomainController, Role::Skype, Role::Dns];

/// How `draft` (from `learner`) differs from `topology`, unlisted hosts first.
pub fn compare(learner: &Learner, draft: &Draft, topology: &Topology) -> Vec<Finding> {
    let mut out = Vec::new();
    for host in &draft.hosts {
        if topology.roles_of(host.addr).contains(host.role) {
            continue;
        }
        let listed = topology.role_of(host.addr);
        let (kind, text) = if listed == Role::External {
            (
                FindingKind::Unlisted,
                format!(
                    "{}; the topology does not list it, so its traffic is judged external",
                    host.behaves()
                ),
            )
        } else {
            (
                FindingKind::Contradicts,
                format!("{} is listed as {listed}, but {}", host.addr, host.behaviour()),
            )
        };
        out.push(Finding { kind, text });
    }
    for clients in &draft.clients {
        let unlisted: Vec<IpAddr> =
            clients.hosts.iter().copied().filter(|&a| topology.role_of(a) == Role::External).collect();
        if unlisted.is_empty() {
            continue;
        }
        let ports: Vec<String> = clients.ports.iter().map(u16::to_string).collect();
        out.push(Finding {
            kind: FindingKind::Unlisted,
            text: format!(
                "{} host{} in {} behave like internal clients ({} to Mailbox servers, e.g. {}); the topology does not list them, so their traffic is judged external",
                unlisted.len(),
                if unlisted.len() == 1 { "" } else { "s" },
                clients.prefix,
                ports.join(", "),
                unlisted[0]
            ),
        });
    }
    for listing in &topology.listings {
        if !SERVER_ROLES.contains(&listing.role) {
            continue;
        }
        let role = listing.role;
        let single = listing.prefix.prefix_len() == if listing.prefix.network().is_ipv4() { 32 } else { 128 };
        if !single {
            if !draft.of_role(role).any(|h| listing.prefix.contains(h.addr)) {
                let inside = learner.hosts().iter().filter(|(a, _)| listing.prefix.contains(**a));
                let (hosts, flows) = inside.fold((0usize, 0u64), |(n, f), (_, h)| (n + 1, f + h.flows));
                let (kind, text) = if flows < MIN_JUDGED_FLOWS || hosts == 0 {
                    (
                        FindingKind::NotEnoughEvidence,
                        format!(
                            "{} is listed as {role}: not enough evidence to judge it: its hosts were in {flows} answered flows (a listing is judged from {MIN_JUDGED_FLOWS})",
                            listing.prefix
                        ),
                    )
                } else {
                    (
                        FindingKind::NeverActed,
                        format!(
                            "no host in {} (listed as {role}) acted like {}: {hosts} hosts in {flows} answered flows",
                            listing.prefix,
                            role_phrase(role)
                        ),
                    )
                };
                out.push(Finding { kind, text });
            }
            continue;
        }
        let addr = listing.prefix.network();
        if draft.role_of(addr).is_some_and(|r| r != Role::InternalClient) {
            // Its own role (nothing to say), or another (said above).
            continue;
        }
        out.push(listed_server(learner.hosts().get(&addr), addr, role));
    }
    out.sort();
    out
}

/// A listed server's host that was not drafted in a role: never acted like its role, or
/// not enough evidence to say.
fn listed_server(host: Option<&Host>, addr: std::net::IpAddr, role: Role) -> Finding {
    let Some(host) = host else {
        return Finding {
            kind: FindingKind::NotEnoughEvidence,
            text: format!(
                "{addr} is listed as {role}: not enough evidence to judge it: it was in no answered flow"
            ),
        };
    };
    let peers = peers(host);
    let what = format!("in {} answered flows with {peers} hosts it {}", host.flows, answered_text(host));
    let thin = host.flows < MIN_JUDGED_FLOWS || peers < MIN_JUDGED_PEERS;
    let partly = does_some_of(host, role);
    let (kind, text) = if thin {
        (
            FindingKind::NotEnoughEvidence,
            format!(
                "{addr} is listed as {role}: not enough evidence to judge it: {what} (a listed server is judged from {MIN_JUDGED_FLOWS} answered flows with {MIN_JUDGED_PEERS} hosts or more)"
            ),
        )
    } else if partly {
        (
            FindingKind::NotEnoughEvidence,
            format!(
                "{addr} is listed as {role}: not enough evidence to judge it: {what}, as {} does, but too little to draft it as one",
                role_phrase(role)
            ),
        )
    } else {
        (
            FindingKind::NeverActed,
            format!("{addr} is listed as {role}, but never acted like {}: {what}", role_phrase(role)),
        )
    };
    Finding { kind, text }
}

/// The distinct hosts a host was seen with, as far as its lists hold them.
fn peers(host: &Host) -> usize {
    let mut all = BTreeSet::new();
    all.extend(host.served.iter().flat_map(|s| s.peers.iter().copied()));
    all.extend(host.spoke.iter().flat_map(|s| s.peers.iter().copied()));
    all.extend(host.opened.iter().map(|o| o.peer));
    all.len()
}

/// Whether the host answered a port that servers of `role` answer, or said what
/// only Exchange says when `role` is an Exchange server's.
fn does_some_of(host: &Host, role: Role) -> bool {
    let tcp: &[u16] = match role {
        Role::Mailbox => &[25, 80, 110, 135, 143, 443, 444, 465, 475, 587, 717, 993, 995, 2525, 64327],
        Role::Edge => &[25, 50636],
        Role::DomainController => &[53, 88, 135, 389, 445, 464, 636, 3268, 3269],
        Role::Skype => &[443, 444, 5060, 5061, 5062, 5063, 5064, 5065, 5066, 5067],
        Role::Dns => &[53],
        _ => &[],
    };
    let udp: &[u16] = match role {
        Role::DomainController => &[53, 88, 389, 464],
        Role::Skype => &[5060],
        Role::Dns => &[53],
        _ => &[],
    };
    let spoke = matches!(role, Role::Mailbox | Role::Edge) && !host.spoke.is_empty();
    spoke
        || host.served.iter().any(|s| {
            let ports = if s.service.proto == proto::TCP { tcp } else { udp };
            ports.contains(&s.service.port)
        })
}
