//! Who opened a flow: the SYN sender, the SYN-ACK's receiver, the first UDP sender; for
//! a TCP flow picked up mid-stream, the first of SPEC section 2's hints that decides (the
//! first payload, then the ports), decided again when a payload or a SYN shows up.

use super::table::FlowRef;
use super::tracker::Tracker;
use super::{Direction, Flow, Hint, Mark, TcpSeen, TO_CLIENT, TO_SERVER};
use crate::decode::{app, proto, tcp_flags, AppProto, Head, Said, Speaker, Tuple};
use crate::policy::Facts;
use crate::time::Ts;

/// The first port of the dynamic range Windows (and IANA) hands out to clients.
const DYNAMIC_PORTS: u16 = 49152;

fn reversed(t: &Tuple) -> Tuple {
    Tuple { src: t.dst, dst: t.src, sport: t.dport, dport: t.sport, ..*t }
}

impl Tracker {
    /// Who opened the flow of a first packet `tuple` with TCP `flags` and payload `head`,
    /// and what decided it.
    pub(super) fn originator(&self, tuple: &Tuple, flags: u8, head: &Head) -> (Tuple, Direction, Hint) {
        match tuple.proto {
            proto::TCP => match flags & (tcp_flags::SYN | tcp_flags::ACK) {
                tcp_flags::SYN => (*tuple, Direction::Observed, Hint::Handshake),
                f if f == tcp_flags::SYN | tcp_flags::ACK => {
                    (reversed(tuple), Direction::Observed, Hint::Handshake)
                }
                _ => {
                    let said = app::classify(head, true);
                    let (source_serves, hint) = match said.speaker {
                        Speaker::Client => (false, Hint::Payload { app: said.app, client: true }),
                        Speaker::Server => (true, Hint::Payload { app: said.app, client: false }),
                        Speaker::Either => self.by_ports(tuple),
                    };
                    let orig = if source_serves { reversed(tuple) } else { *tuple };
                    (orig, Direction::Inferred, hint)
                }
            },
            // The first UDP sender opened the flow, always: were ports to turn it round,
            // any host sending from 53 or 443 would pass unseen.
            _ => (*tuple, Direction::Observed, Hint::Handshake),
        }
    }

    pub(super) fn is_service_port(&self, port: u16) -> bool {
        self.engine.is_named_port(port)
    }

    /// Whether, by the ports only, the packet's source is the responder, and which of
    /// SPEC section 2's port hints said so: a port the policy names outside the dynamic
    /// range; a port outside the range when the other is inside (a client's port almost
    /// always is); a port the policy names; the lower port. So a Windows client port that
    /// happens to be 50636 or 64327 never outvotes 8080 or 443 on the other side.
    pub(super) fn by_ports(&self, t: &Tuple) -> (bool, Hint) {
        let named = |p| self.is_service_port(p);
        let fixed = |p: u16| p < DYNAMIC_PORTS;
        let (s, d) = (t.sport, t.dport);
        let (named_fixed_s, named_fixed_d) = (named(s) && fixed(s), named(d) && fixed(d));
        if named_fixed_s != named_fixed_d {
            return (named_fixed_s, Hint::NamedStaticPort);
        }
        if fixed(s) != fixed(d) {
            return (fixed(s), Hint::StaticPort);
        }
        if named(s) != named(d) {
            return (named(s), Hint::NamedPort);
        }
        (s < d, Hint::LowerPort)
    }

    /// A SYN or SYN-ACK on a flow picked up mid-stream (a SPAN port reordered the
    /// handshake): the direction is now observed. The flow is turned round if the hints
    /// had it wrong, and judged again; a new verdict gets its own event.
    pub(super) fn learn_direction(&mut self, at: FlowRef, tuple: &Tuple, flags: u8, ts: Ts) {
        let mut flow = *self.flows.get(at);
        let (orig, _, _) = self.originator(tuple, flags, &Head::NONE);
        let was = flow.orig();
        if (orig.src, orig.sport) != (was.src, was.sport) {
            turn_round(&mut flow, &orig);
        }
        if flags & tcp_flags::ACK == 0 {
            flow.tcp.note(TcpSeen::ORIG_SYN, true);
        } else {
            flow.tcp.note(TcpSeen::RESP_SYNACK, true);
        }
        flow.direction = Direction::Observed;
        flow.hint = Hint::Handshake;
        self.judge_again(at, flow, ts);
    }

    /// The first payload of one side of a flow (`from_orig`: the originator's): on a flow
    /// picked up mid-stream whose direction only the ports decided, it decides instead,
    /// and turns the flow round if the ports had it wrong; the client's first payload on
    /// TCP says whether the client speaks TLS.
    pub(super) fn first_payload(&mut self, at: FlowRef, said: Said, mut from_orig: bool, ts: Ts) {
        let mut flow = *self.flows.get(at);
        let mut changed = false;
        if flow.direction == Direction::Inferred && flow.hint.is_ports() && said.speaker != Speaker::Either {
            let client = said.speaker == Speaker::Client;
            flow.hint = Hint::Payload { app: said.app, client };
            if client != from_orig {
                let orig = reversed(&flow.orig());
                turn_round(&mut flow, &orig);
                from_orig = !from_orig;
            }
            changed = true;
        }
        if from_orig && flow.is_tcp() && plaintext(&flow, said.app) {
            flow.set(Mark::Plaintext, true);
            changed = true;
        }
        if changed {
            self.judge_again(at, flow, ts);
        }
    }

    /// Judges `flow` again with what it learned; a new finding gets its own event.
    fn judge_again(&mut self, at: FlowRef, mut flow: Flow, ts: Ts) {
        let orig = flow.orig();
        let facts = Facts {
            orig: orig.src,
            resp: orig.dst,
            resp_port: orig.dport,
            proto: orig.proto,
            ts,
            plaintext: flow.is(Mark::Plaintext),
        };
        let judgement = self.engine.judge(&facts);
        let changed = judgement.rule != flow.rule();
        flow.set_judgement(judgement);
        *self.flows.get_mut(at) = flow;
        match judgement.rule {
            Some(rule) if changed && self.engine.verdict(rule).is_finding() => {
                self.alert(ts, &flow, self.engine.verdict(rule), rule, None, (None, None));
            }
            _ => {}
        }
    }
}

/// Whether the client's first payload `app` is plain text. Seen after the handshake it
/// is the very first: anything but TLS. Picked up mid-stream, the first segment seen may
/// start inside a TLS record, so only a protocol recognised as plain text counts.
fn plaintext(flow: &Flow, app: AppProto) -> bool {
    let handshake = flow.tcp.seen(TcpSeen::ORIG_SYN) || flow.tcp.seen(TcpSeen::RESP_SYNACK);
    match app {
        AppProto::Unknown | AppProto::Tls => false,
        AppProto::Failed => handshake,
        _ => true,
    }
}

/// Makes `orig` (the flow's responder until now) its originator: what was counted for
/// one side is the other's.
fn turn_round(flow: &mut Flow, orig: &Tuple) {
    flow.set_orig(orig);
    flow.pkts.swap(TO_SERVER, TO_CLIENT);
    flow.bytes.swap(TO_SERVER, TO_CLIENT);
    flow.ttl.swap(TO_SERVER, TO_CLIENT);
    flow.mac.swap(TO_SERVER, TO_CLIENT);
    flow.swap_seqs();
    flow.app.swap(TO_SERVER, TO_CLIENT);
    flow.tcp = flow.tcp.turned_round();
}
