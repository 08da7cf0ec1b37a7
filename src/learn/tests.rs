use std::net::IpAddr;

use super::*;
use crate::decode::Tuple;
use crate::flow::{Confidence, Direction, FlowKey, TcpSeen};
use crate::policy::{Judgement, Role};
use crate::time::Ts;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address literal")
}

/// An ended TCP flow from `client` to `server:port`, answered or not.
fn tcp(client: &str, server: &str, port: u16, answered: bool) -> Flow {
    let orig = Tuple { src: ip(client), dst: ip(server), sport: 40_000, dport: port, proto: proto::TCP };
    let judgement = Judgement { rule: None, orig_role: Role::External, resp_role: Role::External };
    let mut flow =
        Flow::new(FlowKey::of(&orig), orig, Direction::Observed, 1, Ts(0), Default::default(), judgement);
    flow.tcp.note(TcpSeen::ORIG_SYN, true);
    flow.pkts = [3, 0];
    if answered {
        flow.tcp.note(TcpSeen::RESP_SYNACK, true);
        flow.pkts = [5, 4];
    }
    flow
}

#[test]
fn only_answered_flows_are_evidence() {
    let mut learner = Learner::new(Settings::default());
    for _ in 0..5 {
        learner.flow(&tcp("198.51.100.7", "10.1.1.5", 88, false));
        learner.flow(&tcp("198.51.100.7", "10.1.1.5", 389, false));
    }
    learner.flow(&tcp("10.2.0.9", "10.1.1.6", 88, true));
    let draft = Draft::new(&learner);
    assert_eq!(draft.role_of(ip("10.1.1.5")), None, "a SYN nobody answered proves nothing");
    assert_eq!(draft.role_of(ip("10.1.1.6")), Some(Role::DomainController));
    assert_eq!(learner.tally.flows, 11);
    assert_eq!(learner.tally.answered, 1);
}

#[test]
fn a_refused_syn_is_no_evidence_but_a_midstream_flow_is() {
    let mut learner = Learner::new(Settings::default());
    let mut refused = tcp("10.2.0.9", "10.1.1.5", 88, false);
    refused.tcp.note(TcpSeen::RESP_RST, true);
    refused.pkts = [1, 1];
    learner.flow(&refused);
    let mut midstream = tcp("10.2.0.9", "10.1.1.6", 389, false);
    midstream.tcp.forget(TcpSeen::ORIG_SYN);
    midstream.pkts = [4, 4];
    learner.flow(&midstream);
    let draft = Draft::new(&learner);
    assert_eq!(draft.role_of(ip("10.1.1.5")), None);
    assert_eq!(draft.role_of(ip("10.1.1.6")), Some(Role::DomainController));
}

#[test]
fn the_host_table_is_bounded_and_counts_what_it_leaves_out() {
    let mut learner = Learner::new(Settings { max_hosts: 3, ..Settings::default() });
    for i in 0..10 {
        learner.flow(&tcp(&format!("10.2.0.{i}"), "10.1.1.5", 443, true));
    }
    assert_eq!(learner.hosts().len(), 3);
    assert_eq!((learner.tally.untracked_hosts, learner.tally.untracked_flows), (8, 8));
}

#[test]
fn peers_and_opened_lists_are_bounded() {
    let mut learner = Learner::new(Settings::default());
    for i in 0..(MAX_PEERS as u32 + 10) {
        let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a02_0000 + i));
        learner.flow(&tcp(&client.to_string(), "10.1.1.5", 443, true));
        let server = IpAddr::from(std::net::Ipv4Addr::from(0x0a03_0000 + i));
        learner.flow(&tcp("10.2.9.9", &server.to_string(), 443, true));
    }
    let server = &learner.hosts()[&ip("10.1.1.5")];
    let served = server.served(Service::tcp(443)).expect("443 answered");
    assert_eq!(
        (served.peers.len(), served.more_peers, served.flows),
        (MAX_PEERS, true, MAX_PEERS as u64 + 10)
    );
    let client = &learner.hosts()[&ip("10.2.9.9")];
    assert_eq!(client.opened.len(), MAX_OPENED);
}

/// A full list of servers makes room by forgetting one that answered no port of a server
/// role; once none can be forgotten, every further server is counted as dropped.
#[test]
fn a_full_opened_list_forgets_a_plain_host_first_then_drops() {
    let mut learner = Learner::new(Settings::default());
    let server = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a03_0000 + i));
    // The first server answers nothing of a role; the others answer LDAP (389) too.
    for i in 0..MAX_OPENED as u32 {
        learner.flow(&tcp("10.2.9.9", &server(i).to_string(), 443, true));
        if i > 0 {
            learner.flow(&tcp("10.2.8.8", &server(i).to_string(), 389, true));
        }
    }
    let opened = |learner: &Learner| -> Vec<IpAddr> {
        learner.hosts()[&ip("10.2.9.9")].opened.iter().map(|o| o.peer).collect()
    };
    learner.flow(&tcp("10.2.9.9", &server(1000).to_string(), 443, true));
    let after_room = opened(&learner);
    assert!(
        after_room.contains(&server(1000)) && !after_room.contains(&server(0)),
        "the plain host made room"
    );
    // Now every peer looks like a server: nothing is forgotten, and nothing changes later.
    learner.flow(&tcp("10.2.8.8", &server(1000).to_string(), 389, true));
    for i in 2000..2010 {
        learner.flow(&tcp("10.2.9.9", &server(i).to_string(), 443, true));
    }
    assert_eq!(learner.hosts()[&ip("10.2.9.9")].opened_dropped, 10);
    assert_eq!(opened(&learner), after_room);
}

#[test]
fn a_mailbox_server_is_named_by_its_exchange_ports_and_peers() {
    let mut learner = Learner::new(Settings::default());
    for peer in ["10.1.10.11", "10.1.10.12", "10.1.10.14"] {
        for port in [2525, 64327, 444] {
            learner.flow(&tcp(peer, "10.1.10.13", port, true));
            learner.flow(&tcp("10.1.10.13", peer, port, true));
        }
    }
    let draft = Draft::new(&learner);
    let host = draft.hosts.iter().find(|h| h.addr == ip("10.1.10.13")).expect("drafted");
    assert_eq!(host.role, Role::Mailbox);
    assert_eq!(
        host.behaves(),
        "10.1.10.13 behaves like a Mailbox server: 2525, 64327 and 444 from 3 Mailbox servers"
    );
}

#[test]
fn every_known_service_is_found_by_its_search() {
    for (i, s) in KNOWN.iter().enumerate() {
        assert_eq!(known(s.proto, s.port), Some(i), "{s:?}: KNOWN must stay in (port, transport) order");
    }
    assert_eq!(known(proto::TCP, 8080), None);
    assert_eq!(known(proto::UDP, 25), None);
}

#[test]
fn a_client_seen_with_a_mailbox_server_only_is_inside_when_its_site_showed_a_domain_controller() {
    let mut learner = Learner::new(Settings::default());
    // A Mailbox server by its own ports, and a domain controller, on IPv6.
    for peer in ["2001:db8:70:10::12", "2001:db8:70:10::13"] {
        learner.flow(&tcp(peer, "2001:db8:70:10::11", 2525, true));
        learner.flow(&tcp(peer, "2001:db8:70:10::11", 64327, true));
    }
    learner.flow(&tcp("2001:db8:71:1::a", "2001:db8:70:1::5", 88, true));
    learner.flow(&tcp("2001:db8:71:1::a", "2001:db8:70:10::11", 443, true));
    // Another /64 of the same /48, and another /48: HTTPS to the Mailbox server only.
    learner.flow(&tcp("2001:db8:71:2::b", "2001:db8:70:10::11", 443, true));
    learner.flow(&tcp("2001:db8:99:1::c", "2001:db8:70:10::11", 443, true));
    let draft = Draft::new(&learner);
    assert_eq!(draft.role_of(ip("2001:db8:70:10::11")), Some(Role::Mailbox));
    assert_eq!(draft.role_of(ip("2001:db8:71:2::b")), Some(Role::InternalClient), "{:?}", draft.clients);
    assert_eq!(draft.role_of(ip("2001:db8:99:1::c")), None, "{:?}", draft.clients);
}

#[test]
fn an_ipv4_mapped_address_is_its_ipv4_host() {
    let mut learner = Learner::new(Settings::default());
    learner.flow(&tcp("10.2.0.9", "10.1.1.6", 88, true));
    learner.flow(&tcp("::ffff:10.2.0.9", "::ffff:10.1.1.6", 389, true));
    assert_eq!(learner.hosts().len(), 2);
    let dc = &learner.hosts()[&ip("10.1.1.6")];
    assert_eq!(dc.served.len(), 2);
}

#[test]
fn an_smtp_greeting_drafts_a_mailbox_server_unless_the_host_acts_like_an_edge() {
    let mut learner = Learner::new(Settings::default());
    let greeting = |client: &str, server: &str| {
        let mut flow = tcp(client, server, 25, true);
        flow.exchange = crate::decode::Exchange::SmtpGreeting;
        flow
    };
    for peer in ["10.1.10.12", "10.1.10.13"] {
        learner.flow(&tcp(peer, "10.1.10.11", 2525, true));
    }
    // An Edge that showed no EdgeSync: Internet mail in, and mail on to a Mailbox server.
    learner.flow(&greeting("198.51.100.7", "10.9.0.25"));
    learner.flow(&greeting("10.9.0.25", "10.1.10.11"));
    // A server that greeted one internal client, and one on the Internet.
    learner.flow(&greeting("10.30.0.7", "10.1.20.5"));
    learner.flow(&greeting("10.30.0.7", "203.0.113.25"));
    let draft = Draft::new(&learner);
    assert_eq!(draft.role_of(ip("10.9.0.25")), Some(Role::Edge));
    assert_eq!(draft.role_of(ip("10.1.20.5")), Some(Role::Mailbox));
    assert_eq!(draft.role_of(ip("203.0.113.25")), None, "Exchange Online greets the same");
    let host = draft.hosts.iter().find(|h| h.addr == ip("10.1.20.5")).expect("drafted");
    assert_eq!(host.confidence, Confidence::Medium);
    assert_eq!(
        host.behaves(),
        "10.1.20.5 behaves like a Mailbox server: the SMTP greeting \"Microsoft ESMTP MAIL Service\" to 1 host"
    );
}
