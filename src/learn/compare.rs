//! A draft against a site's topology: hosts that act like a role the topology does not
//! give them, and listed servers that never acted like theirs.

use std::fmt;
use std::net::IpAddr;

use super::draft::role_phrase;
use super::{Draft, Learner};
use crate::policy::{Role, Topology};

/// What kind of difference a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// Acts like a role, and the topology does not list it (so it is judged external).
    Unlisted,
    /// Listed in one role, acts like another.
    Contradicts,
    /// Listed as a server, never acted like one.
    NeverActed,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Unlisted => "unlisted",
            FindingKind::Contradicts => "contradicts",
            FindingKind::NeverActed => "never_acted",
        }
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
                out.push(Finding {
                    kind: FindingKind::NeverActed,
                    text: format!(
                        "no host in {} (listed as {role}) acted like {}",
                        listing.prefix,
                        role_phrase(role)
                    ),
                });
            }
            continue;
        }
        let addr = listing.prefix.network();
        if draft.role_of(addr).is_some_and(|r| r != Role::InternalClient) {
            // Its own role (nothing to say), or another (said above).
            continue;
        }
        let what = match learner.hosts().get(&addr) {
            None => "it was in no answered flow".to_string(),
            Some(host) => {
                format!("in {} answered flows it {}", host.flows, super::draft::answered_text(host))
            }
        };
        out.push(Finding {
            kind: FindingKind::NeverActed,
            text: format!("{addr} is listed as {role}, but never acted like {}: {what}", role_phrase(role)),
        });
    }
    out.sort();
    out
}
