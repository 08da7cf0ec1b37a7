//! Restriction evidence: ICMP errors from filters, SYNs dropped in silence, resets a
//! middlebox injected; the history of each host pair they are measured against, and how
//! sure a finding is from that history up to its time.

use std::collections::hash_map::Entry;
use std::net::IpAddr;

use super::key::HostPair;
use super::table::FlowRef;
use super::tcp::{FirstOfSide, Noted, Seen};
use super::tracker::{flow_id, flow_key, Tracker};
use super::{Confidence, Detail, Direction, Flow, Mark, TO_CLIENT};
use crate::counters::Counter;
use crate::decode::{tcp_flags, Fragment, IcmpError, Packet, Tuple, Vlans};
use crate::policy::{EvidenceKind, Facts, Verdict};
use crate::time::Ts;

impl Tracker {
    pub(super) fn follow_up(&mut self, at: FlowRef, noted: Noted, p: &Packet) {
        match noted {
            Noted::Nothing => {}
            Noted::RetriedSyn => self.check_silent_drop(at, p.ts),
            Noted::ForeignReset { expected } => {
                let detail = Detail::ResetUnlike { ttl: p.ttl, expected, mac: expected == p.ttl, flows: 0 };
                self.check_injected_reset(at, p.ts, detail, p.tuple.src);
            }
            Noted::UncheckedReset => self.check_reset_against_history(at, p),
        }
    }

    /// A RST is the first packet its claimed sender sent on this flow (a firewall's
    /// `REJECT --reject-with tcp-reset` answers the very first SYN): compare it with what
    /// that sender showed on its earlier flows to the same host.
    pub(super) fn check_reset_against_history(&mut self, at: FlowRef, p: &Packet) {
        let Some(seen) = self.directions.get(&HostPair::new(p.tuple.src, p.tuple.dst)).copied() else {
            return;
        };
        let other_mac = seen.mac.zip(p.src_mac).is_some_and(|(mac, now)| mac != now);
        if seen.flows > 0 && (seen.ttl != p.ttl || other_mac) {
            let detail = Detail::ResetUnlike {
                ttl: p.ttl,
                expected: seen.ttl,
                mac: seen.ttl == p.ttl,
                flows: seen.flows,
            };
            self.check_injected_reset(at, p.ts, detail, p.tuple.src);
        }
    }

    /// How sure a finding on `flow` is at packet time `ts`.
    pub(super) fn confidence(
        &self,
        flow: &Flow,
        ts: Ts,
        evidence: Option<EvidenceKind>,
        detail: Option<Detail>,
    ) -> Confidence {
        match evidence {
            // Judged by the pair's history up to `ts` only, so any worker count agrees.
            Some(EvidenceKind::SynUnanswered) => {
                let orig = flow.orig();
                let reverse = self.directions.get(&HostPair::new(orig.dst, orig.src));
                if reverse.is_some_and(|seen| seen.first <= ts) {
                    Confidence::High
                } else {
                    Confidence::Low
                }
            }
            // One earlier flow is little history to call a reset foreign on.
            Some(EvidenceKind::ResetInjected) => match detail {
                Some(Detail::ResetUnlike { flows: 1, .. }) => Confidence::Medium,
                _ => Confidence::High,
            },
            Some(_) => Confidence::High,
            None if flow.is(Mark::ReplyFirst) => Confidence::Low,
            // What a side said decides as surely as a handshake; ports only guess.
            None if flow.direction == Direction::Inferred && flow.hint.is_ports() => Confidence::Medium,
            None => Confidence::High,
        }
    }

    /// A RST unlike its claimed sender's other packets: restriction evidence if the pair
    /// must never be restricted.
    pub(super) fn check_injected_reset(&mut self, at: FlowRef, ts: Ts, detail: Detail, source: IpAddr) {
        let mut flow = *self.flows.get(at);
        if self.protected(&flow) && !flow.is(Mark::Restricted) {
            self.restriction(&mut flow, ts, EvidenceKind::ResetInjected, (Some(detail), Some(source)));
            *self.flows.get_mut(at) = flow;
        }
    }

    /// A SYN was retried past the SYN timeout with no answer: restriction evidence if the
    /// pair must never be restricted.
    pub(super) fn check_silent_drop(&mut self, at: FlowRef, ts: Ts) {
        let mut flow = *self.flows.get(at);
        if self.silent_drop(&flow) {
            self.restriction(&mut flow, ts, EvidenceKind::SynUnanswered, (None, None));
            *self.flows.get_mut(at) = flow;
        }
    }

    pub(super) fn protected(&self, flow: &Flow) -> bool {
        flow.rule().is_some_and(|r| self.engine.never_restrict(r))
    }

    /// A protected TCP flow whose originator retried its SYN and got no answer. When a
    /// SYN check fires, every packet counted so far came before its time (timers due by
    /// a packet's time fire before the packet is counted), so "no answer yet" is "no
    /// answer within the SYN timeout".
    pub(super) fn silent_drop(&self, flow: &Flow) -> bool {
        flow.is_tcp()
            && !flow.is(Mark::Restricted)
            && flow.direction == Direction::Observed
            && flow.syns >= 2
            && flow.pkts[TO_CLIENT] == 0
            && self.protected(flow)
    }

    /// An ICMP error belongs to the flow it quotes: counted there, and restriction
    /// evidence when a filter sent it. It is never a flow of its own.
    pub(super) fn icmp_error(&mut self, p: &Packet, kind: IcmpError, mut quoted: Tuple, fragment: Fragment) {
        self.counters[Counter::IcmpErrors] += 1;
        if let Fragment::Later { id } = fragment {
            // A later fragment carries no ports: its first fragment's are its flow's.
            match self.frags.ports_of(quoted.src, quoted.dst, quoted.proto, id) {
                Some((sport, dport)) => (quoted.sport, quoted.dport) = (sport, dport),
                None => {
                    self.counters[Counter::IcmpUnmatched] += 1;
                    return;
                }
            }
        }
        let evidence = match kind {
            IcmpError::Prohibited => {
                self.counters[Counter::IcmpProhibited] += 1;
                Some(EvidenceKind::IcmpProhibited)
            }
            // Port or protocol unreachable from the destination itself is an answer; from
            // anyone else, a firewall's REJECT speaking for it.
            IcmpError::Unreachable if p.tuple.src != quoted.src && p.tuple.src != quoted.dst => {
                Some(EvidenceKind::IcmpRejected)
            }
            _ => None,
        };
        let key = flow_key(&quoted);
        match self.flows.find(&key, key.hash64()) {
            Some(at) => {
                let flow = self.flows.get_mut(at);
                flow.icmp_errors = flow.icmp_errors.saturating_add(1);
                let mut flow = *flow;
                if let Some(evidence) = evidence {
                    if self.protected(&flow) && !flow.is(Mark::Restricted) {
                        self.restriction(&mut flow, p.ts, evidence, (None, Some(p.tuple.src)));
                        *self.flows.get_mut(at) = flow;
                    }
                }
            }
            None => {
                let Some(evidence) = evidence else {
                    return;
                };
                // The refused packet never reached this capture point: judge the pair
                // from the quote alone, without tracking a flow that carried nothing.
                let judgement = self.engine.judge(&Facts {
                    orig: quoted.src,
                    resp: quoted.dst,
                    resp_port: quoted.dport,
                    proto: quoted.proto,
                    ts: p.ts,
                    plaintext: false,
                });
                let mut flow = Flow::new(
                    key,
                    quoted,
                    Direction::Observed,
                    flow_id(&key, p.ts),
                    p.ts,
                    Vlans::default(),
                    judgement,
                );
                flow.file = self.file;
                if self.protected(&flow) {
                    self.restriction(&mut flow, p.ts, evidence, (None, Some(p.tuple.src)));
                    self.untracked_flow_event(flow);
                }
            }
        }
    }

    /// Restriction evidence of `kind` on `flow`: what it saw, and the address that sent
    /// it (an ICMP error's or a reset's sender) when a packet carried it.
    pub(super) fn restriction(
        &mut self,
        flow: &mut Flow,
        ts: Ts,
        kind: EvidenceKind,
        (detail, source): (Option<Detail>, Option<IpAddr>),
    ) {
        let (Some(rule), Some(evidence)) = (flow.rule(), self.engine.evidence(kind)) else {
            return;
        };
        flow.set(Mark::Restricted, true);
        self.alert(ts, flow, Verdict::Restriction, rule, Some((evidence, kind)), (detail, source));
    }

    /// The first packet of one side of a flow: what the pair table and, for the
    /// responder's first packet (`answered`), the policy's cross-flow table remember.
    pub(super) fn first_of_side(&mut self, first: FirstOfSide, answered: bool, p: &Packet, flags: u8) {
        if self.engine.may_be_protected(first.roles.0, first.roles.1) {
            self.saw_side(p, flags);
        }
        if let (true, Some(rule)) = (answered, first.rule) {
            self.engine.answered(rule, first.orig.0, first.orig.1, p.ts);
        }
    }

    /// The first packet of one side of a flow: remembers that the capture shows traffic
    /// that way, and (unless a RST) its TTL and source MAC. Only between hosts whose roles
    /// could have a protected flow: the table answers how sure an unanswered-SYN
    /// restriction is and what an honest reset looks like, questions asked only about
    /// such flows, and remembering every client and Internet host cost a cache miss on
    /// most new flows.
    pub(super) fn saw_side(&mut self, p: &Packet, flags: u8) {
        let sample = (flags & tcp_flags::RST == 0).then_some((p.ttl, p.src_mac));
        let full = self.directions.len() >= self.settings.max_flows;
        match self.directions.entry(HostPair::new(p.tuple.src, p.tuple.dst)) {
            Entry::Occupied(mut entry) => {
                let seen = entry.get_mut();
                seen.first = seen.first.min(p.ts);
                if let Some((ttl, mac)) = sample {
                    if seen.flows > 0 && (seen.ttl, seen.mac) == (ttl, mac) {
                        seen.flows = seen.flows.saturating_add(1);
                    } else {
                        (seen.ttl, seen.mac, seen.flows) = (ttl, mac, 1);
                    }
                }
            }
            Entry::Vacant(slot) if !full => {
                let (ttl, mac) = sample.unwrap_or((0, None));
                slot.insert(Seen { first: p.ts, ttl, mac, flows: u16::from(sample.is_some()) });
            }
            Entry::Vacant(_) => self.counters[Counter::DirectionsUntracked] += 1,
        }
    }
}
