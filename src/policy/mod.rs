//! The policy engine: which rule a flow falls under, given the topology.
//!
//! The engine is generic: everything Exchange-specific is in the policy file. It owns
//! the one piece of cross-flow state, the table of hosts that recently sent SMTP to an
//! Edge (for the open-proxy rule), shared by all workers. It never sees packets.

pub mod builtin;
pub mod endpoints;
pub mod exceptions;
pub mod packs;
pub mod prefix;
pub mod role;
pub mod rules;
pub mod topology;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::time::Ts;
use crate::time::SECOND;
pub use exceptions::{Covered, Exception};
pub use rules::{Evidence, EvidenceKind, Policy, Rule, Verdict, When};
pub use topology::{Pack, Role, RoleSet, Topology};

/// The role named for an address in events when no rule matched: its first.
fn named(set: RoleSet) -> Role {
    set.first().unwrap_or(Role::External)
}

/// The role named for an end that a rule matched with the roles `matched` of its
/// `set`: the first of them, except that an Exchange Online address matched as
/// `external` is still named `exchange_online`.
fn named_within(set: RoleSet, matched: RoleSet) -> Role {
    if set.contains(Role::ExchangeOnline) && matched.contains(Role::External) {
        return Role::ExchangeOnline;
    }
    named(matched)
}

/// The policy a topology is judged with: `policy` with the rules of the packs the
/// topology turns on; errors for exceptions naming a rule it does not have.
pub fn for_topology(policy: Policy, topology: &Topology) -> Result<Policy, crate::config::ConfigError> {
    let policy = packs::apply(policy, topology)?;
    let known =
        |id: &str| policy.rules.iter().any(|r| r.id == id) || policy.evidence.iter().any(|e| e.id == id);
    topology.check_exceptions(&policy.name, known)?;
    Ok(policy)
}

/// What the engine needs to know of a flow to judge it.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    pub orig: IpAddr,
    pub resp: IpAddr,
    pub resp_port: u16,
    pub proto: u8,
    /// When the flow started (packet time).
    pub ts: Ts,
    /// The client's first payload on a TCP flow was not TLS.
    pub plaintext: bool,
}

/// What a flow's first packet says of its scope beyond its addresses: which ends are
/// `local` whatever their address (see [`Role::Local`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub orig_local: bool,
    pub resp_local: bool,
}

/// The outcome of judging a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// Index into [`Policy::rules`]; `None` when no rule matched.
    pub rule: Option<usize>,
    pub orig_role: Role,
    pub resp_role: Role,
}

/// Default cap on the open-proxy sender table.
pub const DEFAULT_MAX_SMTP_SENDERS: usize = 100_000;

/// Packet time between two sweeps of a full sender table.
const SWEEP_INTERVAL_NS: u64 = SECOND;

/// Policy, topology and the cross-flow tables, shared by `Arc` between workers.
pub struct Engine {
    pub policy: Arc<Policy>,
    pub topology: Arc<Topology>,
    edge_deployed: bool,
    dns_role: bool,
    /// Roles (bits of [`Role::bit`]) that some never-restrict rule names on either side.
    protected_roles: u16,
    /// (Edge, sender), by [`Engine::sender_pair`] -> last time the sender opened an SMTP
    /// flow to that Edge.
    smtp_senders: DashMap<u64, Ts, foldhash::fast::FixedState>,
    /// The seed of [`Engine::sender_pair`], drawn for each engine.
    pair_seed: foldhash::quality::RandomState,
    max_smtp_senders: usize,
    /// Packet time of the last sweep of a full sender table.
    last_sweep: AtomicU64,
    /// Senders not remembered because the table was full of recent entries.
    pub smtp_senders_dropped: AtomicU64,
}

impl Engine {
    pub fn new(policy: Arc<Policy>, topology: Arc<Topology>, max_smtp_senders: usize) -> Engine {
        let protected_roles =
            policy.rules.iter().filter(|r| r.never_restrict).fold(0, |roles, r| roles | r.from | r.to);
        Engine {
            edge_deployed: topology.has_role(Role::Edge),
            dns_role: topology.has_role(Role::Dns),
            protected_roles,
            policy,
            topology,
            smtp_senders: DashMap::with_hasher(foldhash::fast::FixedState::default()),
            pair_seed: foldhash::quality::RandomState::default(),
            max_smtp_senders,
            last_sweep: AtomicU64::new(0),
            smtp_senders_dropped: AtomicU64::new(0),
        }
    }

    /// The same policy and topology with empty cross-flow tables, holding a `1/parts`
    /// share of this engine's sender budget: for a capture analysed on its own beside
    /// `parts - 1` others, so that one capture's SMTP senders never decide another's
    /// findings (which would also make them depend on which capture ran first).
    pub fn split(&self, parts: usize) -> Engine {
        Engine::new(
            Arc::clone(&self.policy),
            Arc::clone(&self.topology),
            self.max_smtp_senders.div_ceil(parts.max(1)),
        )
    }

    /// The verdict of the rule at `rule` (an index from [`Judgement::rule`]).
    pub fn verdict(&self, rule: usize) -> Verdict {
        self.policy.rules.get(rule).map_or(Verdict::OutOfScope, |r| r.verdict)
    }

    /// Whether the rule at `rule` names traffic that must never be restricted.
    pub fn never_restrict(&self, rule: usize) -> bool {
        self.policy.rules.get(rule).is_some_and(|r| r.never_restrict)
    }

    /// The evidence of this kind (an index into [`Policy::evidence`]), if the policy
    /// reports it.
    pub fn evidence(&self, kind: EvidenceKind) -> Option<usize> {
        self.policy.evidence_of(kind)
    }

    /// Whether the policy names `port` in some rule: such a port looks like a service.
    pub fn is_named_port(&self, port: u16) -> bool {
        self.policy.is_named_port(port)
    }

    /// Whether hosts of these two roles could ever have a flow that must never be
    /// restricted: both roles are named by a never-restrict rule.
    pub fn may_be_protected(&self, a: Role, b: Role) -> bool {
        self.protected_roles & a.bit() != 0 && self.protected_roles & b.bit() != 0
    }

    /// Finds the first rule that matches the flow.
    pub fn judge(&self, facts: &Facts) -> Judgement {
        self.judge_in(facts, Scope::default())
    }

    /// [`Engine::judge`], with ends that the first packet showed to be `local`. A host
    /// may hold several roles: a rule matches when each end holds one of its roles, and
    /// the roles it matched with are the judgement's.
    pub fn judge_in(&self, facts: &Facts, scope: Scope) -> Judgement {
        let roles = |local: bool, addr: IpAddr| {
            if local {
                RoleSet::of(Role::Local)
            } else {
                self.topology.roles_of(addr)
            }
        };
        let orig_roles = roles(scope.orig_local, facts.orig);
        let resp_roles = roles(scope.resp_local, facts.resp);
        let found =
            self.policy.rules.iter().enumerate().find_map(|(i, rule)| {
                self.matches(rule, facts, orig_roles, resp_roles).map(|(o, r)| (i, o, r))
            });
        match found {
            Some((rule, orig_role, resp_role)) => Judgement { rule: Some(rule), orig_role, resp_role },
            None => Judgement { rule: None, orig_role: named(orig_roles), resp_role: named(resp_roles) },
        }
    }

    /// The roles of an address (see [`Topology::roles_of`]).
    pub fn roles_of(&self, addr: IpAddr) -> RoleSet {
        self.topology.roles_of(addr)
    }

    /// What the topology's exceptions say of a finding of the rule (or, with
    /// `evidence`, of the restriction evidence) at `rule` on `flow`'s ends.
    pub fn covered(
        &self,
        rule: usize,
        evidence: Option<usize>,
        ends: (IpAddr, IpAddr),
        (proto, resp_port): (u8, u16),
        start: Ts,
    ) -> Option<exceptions::Covered> {
        if self.topology.exceptions.is_empty() {
            return None;
        }
        let rule_id = self.policy.rules.get(rule).map(|r| r.id.as_str());
        let (id, rule) = match evidence.and_then(|e| self.policy.evidence.get(e)) {
            Some(e) => (e.id.as_str(), rule_id),
            None => (rule_id?, None),
        };
        let finding = exceptions::Finding {
            id,
            rule,
            orig: ends.0,
            resp: ends.1,
            orig_roles: self.topology.roles_of(ends.0),
            resp_roles: self.topology.roles_of(ends.1),
            proto,
            resp_port,
            start,
        };
        exceptions::cover(&self.topology.exceptions, &finding)
    }

    /// The exception (an index into the topology's) that accepts the finding of a
    /// flow under rule `rule`, if the rule's verdict is a finding and one does: what a
    /// flow event says of its verdict.
    pub fn flow_exception(
        &self,
        rule: Option<usize>,
        ends: (IpAddr, IpAddr),
        proto_port: (u8, u16),
        start: Ts,
    ) -> Option<usize> {
        let rule = rule.filter(|&r| self.verdict(r).is_finding())?;
        match self.covered(rule, None, ends, proto_port, start) {
            Some(exceptions::Covered::Active(i)) => Some(i),
            _ => None,
        }
    }

    /// The endpoints-file record id of either end of a flow, if one is an Exchange
    /// Online address from that file.
    pub fn endpoint_record(
        &self,
        ends: (IpAddr, IpAddr),
        proto_port: (u8, u16),
    ) -> Option<&endpoints::Record> {
        let record = |addr| self.topology.endpoint_record(addr, proto_port);
        record(ends.1).or_else(|| record(ends.0))
    }

    /// A flow under rule `rule` from `orig` to `resp` was answered, and its latest packet
    /// was at `ts`: remembers what the rule asks to (an SMTP sender to an Edge, for the
    /// open-proxy rule). Only an answered flow counts as "sent SMTP", and the window runs
    /// from its last packet: a SYN to an Edge is no reason for the Edge to probe anyone.
    pub fn answered(&self, rule: usize, orig: IpAddr, resp: IpAddr, ts: Ts) {
        if self.policy.rules.get(rule).is_some_and(|r| r.remember_smtp_sender) {
            self.remember_sender(resp, orig, ts);
        }
    }

    /// The roles the rule matches the flow with (originator's, responder's), if it does.
    fn matches(&self, rule: &Rule, f: &Facts, orig: RoleSet, resp: RoleSet) -> Option<(Role, Role)> {
        if !(rule.proto_matches(f.proto) && rule.port_matches(f.resp_port)) {
            return None;
        }
        let pair = |from: RoleSet, to: RoleSet| (!from.is_empty() && !to.is_empty()).then_some((from, to));
        let (o, r) = pair(orig.within(rule.from), resp.within(rule.to)).or_else(|| {
            rule.both_ways.then(|| pair(orig.within(rule.to), resp.within(rule.from))).flatten()
        })?;
        let (o, r) = (named_within(orig, o), named_within(resp, r));
        self.when_holds(&rule.when, f, o).then_some((o, r))
    }

    fn when_holds(&self, when: &When, f: &Facts, orig_role: Role) -> bool {
        let holds =
            |condition: Option<bool>, value: &dyn Fn() -> bool| condition.is_none_or(|want| want == value());
        holds(when.edge_deployed, &|| self.edge_deployed)
            && holds(when.dns_role, &|| self.dns_role)
            && holds(when.restrict_internal_clients, &|| {
                // The site of the flow's Exchange endpoint decides.
                let exchange = |addr| {
                    let roles = self.topology.roles_of(addr);
                    roles.contains(Role::Mailbox) || roles.contains(Role::Edge)
                };
                let at = if exchange(f.resp) || !exchange(f.orig) { f.resp } else { f.orig };
                self.topology.restrict_internal_clients_at(at)
            })
            && holds(when.same_subscription, &|| {
                let (edge, other) = if orig_role == Role::Edge { (f.orig, f.resp) } else { (f.resp, f.orig) };
                self.topology.same_subscription(edge, other)
            })
            && holds(when.responder_is_proxy, &|| self.topology.is_proxy(f.resp, f.resp_port))
            && holds(when.responder_sent_smtp, &|| self.sent_smtp_recently(f.orig, f.resp, f.ts))
            && holds(when.client_plaintext, &|| f.plaintext)
    }

    /// An (Edge, sender) pair as the sender table keys it: a 64-bit hash under a seed
    /// drawn for the engine. An entry is 16 bytes with its time, where the two addresses
    /// took 48 (a flood of spoofed senders fills the table). Two pairs share a key with a
    /// chance of one in 2^64 for each pair the table holds, and which pairs do is not
    /// known before the seed is drawn.
    fn sender_pair(&self, edge: IpAddr, sender: IpAddr) -> u64 {
        std::hash::BuildHasher::hash_one(&self.pair_seed, (edge, sender))
    }

    fn remember_sender(&self, edge: IpAddr, sender: IpAddr, ts: Ts) {
        let pair = self.sender_pair(edge, sender);
        if self.smtp_senders.len() >= self.max_smtp_senders && !self.smtp_senders.contains_key(&pair) {
            // Sweep a full table at most once a second of packet time: sweeping on every
            // new sender would make a flood of spoofed SMTP senders cost O(table) each.
            let last = self.last_sweep.load(Ordering::Relaxed);
            if ts.0.saturating_sub(last) >= SWEEP_INTERVAL_NS
                && self.last_sweep.compare_exchange(last, ts.0, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                let window = self.policy.open_proxy_window_ns;
                self.smtp_senders.retain(|_, seen| ts.0.saturating_sub(seen.0) <= window);
            }
            if self.smtp_senders.len() >= self.max_smtp_senders {
                self.smtp_senders_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut entry = self.smtp_senders.entry(pair).or_insert(ts);
        if *entry < ts {
            *entry = ts;
        }
    }

    fn sent_smtp_recently(&self, edge: IpAddr, host: IpAddr, now: Ts) -> bool {
        self.smtp_senders
            .get(&self.sender_pair(edge, host))
            .is_some_and(|seen| now >= *seen && now.0 - seen.0 <= self.policy.open_proxy_window_ns)
    }
}
