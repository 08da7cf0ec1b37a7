//! Frames for the decoder's unit tests, built by hand and by the scenario generator.

use super::link::network;
use super::LinkType;

/// Ethernet, IPv4 10.0.0.1 -> 10.0.0.2, TCP 1234 -> 443 with `flags`, no payload.
pub fn eth_ipv4_tcp(flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12] = 0x08;
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags]);
    f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// Frames of every shape the decoder handles, built by the generator.
pub fn sample_frames() -> Vec<(LinkType, Vec<u8>)> {
    use crate::testkit::synth::{wire::Link, Scenario};
    let sa = |t: &str| t.parse::<std::net::SocketAddr>().unwrap();
    let mut s = Scenario::new();
    s.tcp_session(sa("10.20.0.1:50000"), sa("10.10.1.11:443"), 1);
    s.link = Link { vlans: [Some(100), Some(10)] };
    s.udp_exchange(sa("[2001:db8::1]:5353"), sa("[2001:db8::2]:53"), 1);
    s.link = Link::default();
    s.icmp_prohibited("10.0.0.254".parse().unwrap(), sa("10.10.1.11:50001"), sa("10.10.1.12:135"));
    s.icmp_prohibited("2001:db8::fe".parse().unwrap(), sa("[2001:db8::1]:50002"), sa("[2001:db8::2]:445"));
    s.udp_fragmented(sa("10.0.0.1:53"), sa("10.0.0.2:40000"), 3000, 1480, &[0, 1, 2]);
    let mut frames: Vec<_> = s.frames.iter().map(|f| (LinkType::Ethernet, f.data.clone())).collect();
    // The same IP packets under the other link layers.
    for f in &s.frames {
        let ip = network(LinkType::Ethernet, &f.data).unwrap().ip;
        frames.push((LinkType::RawIp, ip.to_vec()));
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(ip);
        frames.push((LinkType::LinuxSll, sll));
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll2.extend_from_slice(ip);
        frames.push((LinkType::LinuxSll2, sll2));
    }
    frames
}

/// An inner Ethernet frame (client 10.20.0.1 -> mailbox 10.10.1.11:443).
pub fn inner_ethernet() -> Vec<u8> {
    let sa = |t: &str| t.parse::<std::net::SocketAddr>().unwrap();
    let mut s = crate::testkit::synth::Scenario::new();
    s.tcp_session(sa("10.20.0.1:50000"), sa("10.10.1.11:443"), 0);
    s.frames[0].data.clone()
}

/// Wraps `payload` in an outer Ethernet/IPv4 packet of protocol `proto`.
pub fn outer_ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let ip = crate::testkit::synth::wire::ip_with_payload(
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        64,
        proto,
        payload,
        crate::testkit::synth::wire::IpFragment::None,
    );
    crate::testkit::synth::wire::ethernet(Default::default(), &ip)
}
