//! `exwatch compare`: the same handshake seen at two capture points.

use std::net::SocketAddr;
use std::path::Path;

use exwatch::testkit::synth::{wire, EPOCH};

use crate::util::{exwatch, sa};

/// A TCP SYN from `src` to `dst` carrying an MSS option.
fn syn_with_mss(src: SocketAddr, dst: SocketAddr, mss: u16) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0x10, 0x00, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    tcp.extend_from_slice(&[2, 4]);
    tcp.extend_from_slice(&mss.to_be_bytes());
    let ip = wire::ip_with_payload(src.ip(), dst.ip(), 64, 6, &tcp, wire::IpFragment::None);
    wire::ethernet(wire::Link::default(), &ip)
}

fn write(path: &Path, frames: &[Vec<u8>]) {
    let mut writer = wire::PcapWriter::new(std::fs::File::create(path).expect("create"), 1).expect("header");
    for (i, frame) in frames.iter().enumerate() {
        writer.write(EPOCH.saturating_add(i as u64 * 1_000), frame, frame.len() as u32).expect("record");
    }
}

/// Compares captures of `pairs` (client, server) whose MSS is `before` at the first
/// point and `after` at the second; returns (status, EVE lines, stderr).
fn compare(pairs: &[(&str, &str)], before: u16, after: u16) -> (i32, Vec<serde_json::Value>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = (dir.path().join("first.pcap"), dir.path().join("second.pcap"));
    let frames = |mss| pairs.iter().map(|(c, s)| syn_with_mss(sa(c), sa(s), mss)).collect::<Vec<_>>();
    write(&first, &frames(before));
    write(&second, &frames(after));
    let (status, stdout, stderr) =
        exwatch(&["compare", first.to_str().expect("utf-8"), second.to_str().expect("utf-8")]);
    let events = stdout.lines().map(|l| serde_json::from_str(l).expect("EVE line")).collect();
    (status, events, stderr)
}

#[test]
fn an_mss_clamped_between_two_mailbox_servers_is_a_restriction() {
    let (status, events, stderr) =
        compare(&[("10.10.1.11:50000", "10.10.1.12:135"), ("10.20.0.5:50001", "10.10.1.11:443")], 1460, 1380);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(events.len(), 1, "only the pair that must never be altered: {events:?}");
    let policy = &events[0]["policy"];
    assert_eq!(policy["evidence"], "restricted-altered-options");
    assert_eq!(policy["rule"], "exchange-internal");
    assert_eq!(policy["detail"], "MSS 1460 at the first capture point, 1380 at the second");
    assert_eq!(events[0]["src_ip"], "10.10.1.11");
    assert!(
        stderr.contains("2 seen in both, 2 altered, 1 on traffic that must never be altered"),
        "{stderr}"
    );
}

#[test]
fn identical_handshakes_are_clean() {
    let (status, events, stderr) = compare(&[("10.10.1.11:50000", "10.10.1.12:135")], 1460, 1460);
    assert_eq!((status, events.len()), (0, 0), "{stderr}");
    assert!(stderr.contains("1 seen in both, 0 altered"), "{stderr}");
}
