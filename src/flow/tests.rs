//! The flow tracker alone: packets in, events out, without the binary or a capture.

use std::sync::Arc;

use super::{Direction, Event, Flow, Settings, Tracker};
use crate::counters::Counter;
use crate::decode::{proto, tcp_flags as f, Fragment, Packet, Transport, Tuple};
use crate::policy::{builtin, Engine, Verdict};
use crate::time::Ts;
use crate::time::SECOND;

const S: u64 = SECOND;

fn tracker() -> Tracker {
    let policy = Arc::new(builtin::policy().expect("built-in policy"));
    let topology = Arc::new(builtin::topology().expect("built-in topology"));
    Tracker::new(
        Arc::new(Engine::new(policy, topology, 1000)),
        Settings { flow_events: true, ..Settings::default() },
    )
}

fn tuple(src: &str, dst: &str, proto: u8) -> Tuple {
    let (src, dst): (std::net::SocketAddr, std::net::SocketAddr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    Tuple { src: src.ip(), dst: dst.ip(), sport: src.port(), dport: dst.port(), proto }
}

fn reversed(t: Tuple) -> Tuple {
    Tuple { src: t.dst, dst: t.src, sport: t.dport, dport: t.sport, ..t }
}

fn tcp(ts: u64, tuple: Tuple, flags: u8, len: u32) -> Packet {
    Packet {
        ts: Ts(ts),
        wire_len: 54 + len,
        tuple,
        transport: Transport::Tcp { flags: Some(flags), seq: None, len: Some(len) },
        fragment: Fragment::Whole,
        ttl: 64,
        vlan: Default::default(),
        tunnel: None,
        src_mac: None,
        dst_mac: crate::decode::MacClass::Unknown,
        head: crate::decode::Head::NONE,
    }
}

fn udp(ts: u64, tuple: Tuple) -> Packet {
    Packet { transport: Transport::Udp, ..tcp(ts, tuple, 0, 20) }
}

fn ended(tracker: &mut Tracker) -> Vec<Flow> {
    tracker
        .drain_events()
        .filter_map(|e| match e {
            Event::Flow { flow, .. } => Some(flow),
            Event::Alert { .. } => None,
        })
        .collect()
}

/// The findings since the last call: verdict and rule id (evidence id for restrictions).
fn alerts(tracker: &mut Tracker) -> Vec<(Verdict, String)> {
    let policy = builtin::policy().expect("policy");
    tracker
        .drain_events()
        .filter_map(|e| match e {
            Event::Alert { verdict, evidence: Some(e), .. } => Some((verdict, policy.evidence[e].id.clone())),
            Event::Alert { verdict, rule, evidence: None, .. } => {
                Some((verdict, policy.rules[rule].id.clone()))
            }
            Event::Flow { .. } => None,
        })
        .collect()
}

#[test]
fn a_whole_tcp_session_is_sf_and_ends_after_the_closed_timeout() {
    let mut t = tracker();
    let c = tuple("10.20.0.9:50000", "10.10.1.11:443", proto::TCP);
    let s = reversed(c);
    t.packet(&tcp(S, c, f::SYN, 0));
    t.packet(&tcp(S + 1, s, f::SYN | f::ACK, 0));
    t.packet(&tcp(S + 2, c, f::ACK, 0));
    t.packet(&tcp(S + 3, c, f::ACK, 300));
    t.packet(&tcp(S + 4, s, f::ACK, 1200));
    t.packet(&tcp(S + 5, c, f::FIN | f::ACK, 0));
    t.packet(&tcp(S + 6, s, f::FIN | f::ACK, 0));
    assert!(ended(&mut t).is_empty(), "a closed flow waits for stragglers");
    t.advance(Ts(S + 6 + 5 * S));
    let flows = ended(&mut t);
    assert_eq!(flows.len(), 1);
    let flow = flows[0];
    assert_eq!((flow.conn_state(), flow.state(), flow.direction), ("SF", "closed", Direction::Observed));
    assert_eq!(flow.orig().src, c.src);
    assert_eq!(flow.pkts, [4, 3]);
    assert_eq!(flow.bytes, [54 * 4 + 300, 54 * 3 + 1200]);
    assert_eq!(t.counters()[Counter::FlowsTimedOut], 1);
    assert_eq!(t.active_flows(), 0);
}

#[test]
fn conn_states_of_unanswered_rejected_and_midstream_flows() {
    let mut t = tracker();
    let unanswered = tuple("10.20.0.9:50001", "10.10.1.11:443", proto::TCP);
    let rejected = tuple("10.20.0.9:50002", "10.10.1.11:443", proto::TCP);
    let midstream = tuple("10.20.0.9:50003", "10.10.1.11:443", proto::TCP);
    t.packet(&tcp(S, unanswered, f::SYN, 0));
    t.packet(&tcp(S, rejected, f::SYN, 0));
    t.packet(&tcp(S + 1, reversed(rejected), f::RST | f::ACK, 0));
    // Mid-stream, the server's packet first: the port names the responder.
    t.packet(&tcp(S, reversed(midstream), f::ACK, 1400));
    t.packet(&tcp(S + 1, midstream, f::ACK, 0));
    t.finish();
    let mut states: Vec<_> =
        ended(&mut t).iter().map(|f| (f.orig().sport, f.conn_state(), f.direction)).collect();
    states.sort_unstable_by_key(|s| s.0);
    assert_eq!(
        states,
        [
            (50001, "S0", Direction::Observed),
            (50002, "REJ", Direction::Observed),
            (50003, "OTH", Direction::Inferred)
        ]
    );
    assert_eq!(t.counters()[Counter::Midstream], 1);
    assert_eq!(t.counters()[Counter::OneSided], 1);
}

#[test]
fn a_udp_flow_ends_after_its_idle_timeout_and_counts_under_its_rule() {
    let mut t = tracker();
    let query = tuple("10.10.1.11:53000", "10.10.0.53:53", proto::UDP);
    t.packet(&udp(S, query));
    t.packet(&udp(S + 1, reversed(query)));
    t.advance(Ts(S + 59 * S));
    assert!(ended(&mut t).is_empty());
    t.advance(Ts(S + 61 * S));
    let flows = ended(&mut t);
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].conn_state(), flows[0].state()), ("SF", "established"));
    let rule = flows[0].rule().expect("a rule matched");
    assert_eq!(t.counters().rules[rule].flows, 1);
}

/// The alerts since the last call: the packet that fired each, when it was made known,
/// and the flow's `conn_state` then.
fn fired(tracker: &mut Tracker) -> Vec<(u64, u64, &'static str)> {
    tracker
        .drain_events()
        .filter_map(|e| match e {
            Event::Alert { ts, at, flow, .. } => Some((ts.0, at.0, flow.conn_state())),
            Event::Flow { .. } => None,
        })
        .collect()
}

#[test]
fn a_violation_waits_for_its_handshake_and_is_reported_once() {
    let mut t = tracker();
    let rdp = tuple("172.16.0.25:51514", "198.51.100.7:3389", proto::TCP);
    t.packet(&tcp(S, rdp, f::SYN, 0));
    assert!(alerts(&mut t).is_empty(), "held until the responder answers");
    t.packet(&tcp(S + 1, reversed(rdp), f::SYN | f::ACK, 0));
    assert_eq!(fired(&mut t), [(S, S + 1, "S1")], "fired by the SYN, known at the SYN-ACK");
    t.packet(&tcp(S + 2, rdp, f::ACK, 0));
    assert!(alerts(&mut t).is_empty(), "one event per flow and verdict");
    assert_eq!(t.counters()[Counter::Violations], 1);
}

#[test]
fn a_refused_syn_is_rej_and_an_unanswered_one_s0_at_the_syn_timeout() {
    let mut t = tracker();
    let refused = tuple("172.16.0.25:51515", "198.51.100.7:3389", proto::TCP);
    t.packet(&tcp(S, refused, f::SYN, 0));
    t.packet(&tcp(S + 1, reversed(refused), f::RST | f::ACK, 0));
    assert_eq!(fired(&mut t), [(S, S + 1, "REJ")]);
    let unanswered = tuple("172.16.0.25:51516", "198.51.100.7:3389", proto::TCP);
    t.packet(&tcp(2 * S, unanswered, f::SYN, 0));
    t.advance(Ts(5 * S - 1));
    assert!(fired(&mut t).is_empty(), "the SYN timeout has not passed");
    t.advance(Ts(5 * S));
    assert_eq!(fired(&mut t), [(2 * S, 5 * S, "S0")]);
    // A flow that ends within the SYN timeout (the end of input) says what it was then.
    let short = tuple("172.16.0.25:51517", "198.51.100.7:3389", proto::TCP);
    t.packet(&tcp(6 * S, short, f::SYN, 0));
    t.finish();
    assert_eq!(fired(&mut t), [(6 * S, 6 * S, "S0")]);
    assert_eq!(t.counters()[Counter::Violations], 3);
}

#[test]
fn a_retried_unanswered_syn_between_exchange_servers_is_a_silent_drop() {
    let mut t = tracker();
    let smb = tuple("10.10.1.11:50100", "10.10.0.5:445", proto::TCP);
    t.packet(&tcp(S, smb, f::SYN, 0));
    t.packet(&tcp(S + S, smb, f::SYN, 0));
    assert!(alerts(&mut t).is_empty(), "within the SYN timeout nothing is said");
    t.advance(Ts(S + 3 * S + 1));
    assert_eq!(alerts(&mut t), [(Verdict::Restriction, "restricted-silent-drop".to_string())]);
    assert_eq!(t.counters()[Counter::Restrictions], 1);
}

/// A timer is for the flow it was set for: a closed flow's key reused by a new SYN
/// leaves the old flow's SYN check behind, on the slab entry the new flow takes, and
/// that check must not judge the new flow, whose own check comes at its own time.
#[test]
fn a_syn_check_left_by_an_ended_flow_does_not_judge_the_flow_in_its_place() {
    let mut t = tracker();
    let smb = tuple("10.10.1.11:50100", "10.10.0.5:445", proto::TCP);
    // The first flow retries its SYN (a check due at 4 s), then its client resets it.
    t.packet(&tcp(S, smb, f::SYN, 0));
    t.packet(&tcp(S + S / 2, smb, f::SYN, 0));
    t.packet(&tcp(S + S / 2 + 1, smb, f::RST, 0));
    // A new SYN on the closed flow's key: a new flow in its place, retried (due at 5 s).
    t.packet(&tcp(2 * S, smb, f::SYN, 0));
    t.packet(&tcp(2 * S + S / 2, smb, f::SYN, 0));
    t.drain_events().for_each(drop);
    t.advance(Ts(4 * S + S / 2));
    assert_eq!(alerts(&mut t), [], "the first flow's check passed without judging the second");
    t.advance(Ts(5 * S));
    assert_eq!(fired(&mut t), [(5 * S, 5 * S, "S0")], "the second flow's own check");
}

fn icmpv6(ts: u64, src: &str, dst: &str, kind: u8) -> Packet {
    let tuple = Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport: u16::from(kind),
        dport: 0,
        proto: proto::ICMPV6,
    };
    Packet { transport: Transport::Icmp { kind, code: 0 }, ..tcp(ts, tuple, 0, 20) }
}

/// ICMPv6 flows as the Community ID spec maps them (and Suricata and Zeek key them): a
/// neighbour solicitation and its advertisement are one flow, seen both ways
/// (`established`); an echo between the same hosts is another; an MLD report is a
/// one-way flow of its own.
#[test]
fn icmpv6_request_and_reply_are_one_flow_and_other_types_their_own() {
    let mut t = tracker();
    let (a, b) = ("fe80::1", "fe80::2");
    t.packet(&icmpv6(S, a, b, 135));
    t.packet(&icmpv6(S + 1, b, a, 136));
    t.packet(&icmpv6(S + 2, a, b, 128));
    t.packet(&icmpv6(S + 3, b, a, 129));
    t.packet(&icmpv6(S + 4, a, "ff02::16", 143));
    t.finish();
    let mut flows: Vec<_> =
        ended(&mut t).iter().map(|f| (f.orig().sport, f.pkts, f.state(), f.conn_state())).collect();
    flows.sort_unstable();
    assert_eq!(
        flows,
        [(128, [1, 1], "established", "SF"), (135, [1, 1], "established", "SF"), (143, [1, 0], "new", "S0")]
    );
}

/// Suricata's `flow.state`: `established` only once packets went both ways, whatever
/// the handshake flags say.
#[test]
fn a_flow_seen_one_way_is_new_even_after_a_syn_ack() {
    let mut t = tracker();
    let c = tuple("10.20.0.9:50010", "10.10.1.11:443", proto::TCP);
    t.packet(&tcp(S, reversed(c), f::SYN | f::ACK, 0));
    t.packet(&tcp(S + 1, reversed(c), f::ACK, 100));
    t.finish();
    let flows = ended(&mut t);
    assert_eq!((flows[0].pkts, flows[0].state()), ([0, 2], "new"));
}

#[test]
fn unanswered_flows_can_be_left_out_of_the_flow_events() {
    let policy = Arc::new(builtin::policy().expect("built-in policy"));
    let topology = Arc::new(builtin::topology().expect("built-in topology"));
    let settings = Settings { flow_events: true, unanswered_flow_events: false, ..Settings::default() };
    let mut t = Tracker::new(Arc::new(Engine::new(policy, topology, 1000)), settings);
    let answered = tuple("10.10.1.11:40000", "10.10.0.5:88", proto::TCP);
    let refused = tuple("10.10.1.11:40001", "10.10.0.5:88", proto::TCP);
    t.packet(&tcp(S, answered, f::SYN, 0));
    t.packet(&tcp(S + 1, reversed(answered), f::SYN | f::ACK, 0));
    t.packet(&tcp(S + 2, refused, f::SYN, 0));
    t.packet(&udp(S + 3, tuple("10.10.1.11:40002", "10.10.0.53:53", proto::UDP)));
    t.finish();
    let ports: Vec<u16> = ended(&mut t).iter().map(|flow| flow.orig().sport).collect();
    assert_eq!(ports, vec![40000]);
    assert_eq!(t.counters()[Counter::Flows], 3, "every flow is still tracked and counted");
}

/// A tracked flow's size, which the flow table's memory per flow is counted from (the
/// README's flood figures): a field added to `Flow` shows here.
#[test]
fn a_flow_is_at_most_160_bytes() {
    let size = std::mem::size_of::<Flow>();
    assert!(size <= 160, "Flow is {size} bytes");
}

/// A full table holds a timer for every flow: the kind and the id's low bits share a word.
#[test]
fn a_timer_is_16_bytes() {
    assert_eq!(std::mem::size_of::<super::tracker::Timer>(), 16);
}

/// Timers order by time, then kind, then the id's bits, then slab index: the order the
/// tracker fires them in (the same with any worker count), which the tag's layout (kind
/// above the id bits) must keep.
#[test]
fn timers_order_by_time_then_tag_then_slab_index() {
    use super::tracker::{Timer, TimerKind};
    let times = [0, 1, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
    let mut timers = Vec::new();
    for at in times {
        for kind in [TimerKind::SynCheck, TimerKind::HeldAlert, TimerKind::Idle] {
            for id in [0, 1, (1 << 30) - 1] {
                for slab in [0, 7, u32::MAX - 1] {
                    timers.push((at, kind, id, slab));
                }
            }
        }
    }
    for a in &timers {
        for b in &timers {
            let (x, y) = (Timer::new(Ts(a.0), a.1, a.2, a.3), Timer::new(Ts(b.0), b.1, b.2, b.3));
            let fields = (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3));
            assert_eq!(x.cmp(&y), fields, "{a:?} against {b:?}");
        }
    }
}

/// What a side's first payload said of Exchange stays on the flow only from the side
/// that says it (a greeting from the responder, a bind from the originator), and only
/// the first payload of each side is looked at.
#[test]
fn what_exchange_says_is_kept_from_the_side_that_says_it() {
    use crate::decode::{Exchange, Head};
    const GREETING: &[u8] = b"220 mail.contoso.example Microsoft ESMTP MAIL Service ready\r\n";
    let with = |p: Packet, payload: &[u8]| Packet { head: Head::of_tcp(payload), ..p };
    let exchange = |packets: &[Packet]| {
        let mut t = tracker();
        for p in packets {
            t.packet(p);
        }
        t.finish();
        ended(&mut t).first().map(|f| f.exchange)
    };
    let c = tuple("10.20.0.9:40000", "10.10.1.11:25", proto::TCP);
    let s = reversed(c);
    let handshake = [tcp(0, c, f::SYN, 0), tcp(10, s, f::SYN | f::ACK, 0), tcp(20, c, f::ACK, 0)];
    let dialogue = |first: Packet, second: Packet| {
        let mut all = handshake.to_vec();
        all.extend([first, second]);
        all
    };
    let greeted =
        dialogue(with(tcp(30, s, f::ACK, 60), GREETING), with(tcp(40, c, f::ACK, 20), b"EHLO pc\r\n"));
    assert_eq!(exchange(&greeted), Some(Exchange::SmtpGreeting));
    let from_client =
        dialogue(with(tcp(30, c, f::ACK, 60), GREETING), with(tcp(40, s, f::ACK, 20), b"250 OK\r\n"));
    assert_eq!(exchange(&from_client), Some(Exchange::Nothing), "a greeting from the originator");
    let late = dialogue(with(tcp(30, s, f::ACK, 20), b"250 OK\r\n"), with(tcp(40, s, f::ACK, 60), GREETING));
    assert_eq!(exchange(&late), Some(Exchange::Nothing), "not the side's first payload");
}
