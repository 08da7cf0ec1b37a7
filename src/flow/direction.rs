//! Who opened a flow: the SYN sender, the SYN-ACK's receiver, the first UDP sender, or
//! for a flow picked up mid-stream the best guess, learned again when a SYN shows up.

use super::table::FlowRef;
use super::tracker::Tracker;
use super::{Direction, TO_CLIENT, TO_SERVER};
use crate::decode::{proto, tcp_flags, Tuple};
use crate::policy::Facts;
use crate::time::Ts;

impl Tracker {
    /// Who opened the flow: the SYN sender, the SYN-ACK receiver, or (mid-stream) the
    /// side whose port does not look like a service.
    pub(super) fn originator(&self, tuple: &Tuple, flags: u8) -> (Tuple, Direction) {
        let reversed =
            Tuple { src: tuple.dst, dst: tuple.src, sport: tuple.dport, dport: tuple.sport, ..*tuple };
        match tuple.proto {
            proto::TCP => match flags & (tcp_flags::SYN | tcp_flags::ACK) {
                tcp_flags::SYN => (*tuple, Direction::Observed),
                f if f == tcp_flags::SYN | tcp_flags::ACK => (reversed, Direction::Observed),
                _ if self.source_is_service(tuple) => (reversed, Direction::Inferred),
                _ => (*tuple, Direction::Inferred),
            },
            // The first UDP sender opened the flow, always: were ports to turn it round,
            // any host sending from 53 or 443 would pass unseen.
            _ => (*tuple, Direction::Observed),
        }
    }

    pub(super) fn is_service_port(&self, port: u16) -> bool {
        self.engine.is_named_port(port)
    }

    /// Whether, judging by the ports only, the packet's source is the responder: a port
    /// the policy names beats one it does not; otherwise the lower port is the service.
    pub(super) fn source_is_service(&self, t: &Tuple) -> bool {
        match (self.is_service_port(t.sport), self.is_service_port(t.dport)) {
            (true, false) => true,
            (false, true) => false,
            _ => t.sport < t.dport,
        }
    }

    /// A SYN or SYN-ACK on a flow picked up mid-stream (a SPAN port reordered the
    /// handshake): the direction is now observed. The flow is turned round if the ports
    /// had it wrong, and judged again; a new verdict gets its own event.
    pub(super) fn learn_direction(&mut self, at: FlowRef, tuple: &Tuple, flags: u8, ts: Ts) {
        let mut flow = *self.flows.get(at);
        let (orig, _) = self.originator(tuple, flags);
        let was = flow.orig();
        if (orig.src, orig.sport) != (was.src, was.sport) {
            flow.set_orig(&orig);
            flow.pkts.swap(TO_SERVER, TO_CLIENT);
            flow.bytes.swap(TO_SERVER, TO_CLIENT);
            flow.ttl.swap(TO_SERVER, TO_CLIENT);
            flow.mac.swap(TO_SERVER, TO_CLIENT);
            flow.next_seq.swap(TO_SERVER, TO_CLIENT);
            let t = flow.tcp;
            flow.tcp = super::TcpSeen {
                orig_syn: false,
                resp_synack: false,
                orig_fin: t.resp_fin,
                resp_fin: t.orig_fin,
                orig_rst: t.resp_rst,
                resp_rst: t.orig_rst,
            };
            // The responder spoke first: the flow's first packet was its.
            flow.resp_first = (flow.pkts[TO_CLIENT] > 0).then_some(flow.start);
        }
        if flags & tcp_flags::ACK == 0 {
            flow.tcp.orig_syn = true;
        } else {
            flow.tcp.resp_synack = true;
        }
        flow.direction = Direction::Observed;
        let facts = Facts { orig: orig.src, resp: orig.dst, resp_port: orig.dport, proto: orig.proto, ts };
        let judgement = self.engine.judge(&facts);
        let changed = judgement.rule != flow.rule;
        (flow.rule, flow.orig_role, flow.resp_role) =
            (judgement.rule, judgement.orig_role, judgement.resp_role);
        *self.flows.get_mut(at) = flow;
        match judgement.rule {
            Some(rule) if changed && self.engine.verdict(rule).is_finding() => {
                self.alert(ts, &flow, self.engine.verdict(rule), rule, None, (None, None));
            }
            _ => {}
        }
    }
}
