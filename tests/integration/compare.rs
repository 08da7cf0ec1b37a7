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

/// Writes `frames` with their own times (nanoseconds after the epoch of the generator).
fn write_timed(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let mut writer = wire::PcapWriter::new(std::fs::File::create(path).expect("create"), 1).expect("header");
    for (at, frame) in frames {
        writer.write(EPOCH.saturating_add(*at), frame, frame.len() as u32).expect("record");
    }
}

/// A SYN from `src` to `dst` with the given TTL.
fn syn_ttl(src: SocketAddr, dst: SocketAddr, ttl: u8) -> Vec<u8> {
    let mut frame = syn_with_mss(src, dst, 1460);
    // Ethernet header, then the IPv4 TTL at byte 8; the IPv4 checksum is not checked.
    frame[14 + 8] = ttl;
    frame
}

fn run_compare(
    first: &[(u64, Vec<u8>)],
    second: &[(u64, Vec<u8>)],
    swap: bool,
) -> (i32, Vec<serde_json::Value>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("first.pcap"), dir.path().join("second.pcap"));
    write_timed(&a, first);
    write_timed(&b, second);
    let (a, b) = if swap { (b, a) } else { (a, b) };
    let (status, stdout, stderr) =
        exwatch(&["compare", a.to_str().expect("utf-8"), b.to_str().expect("utf-8")]);
    (status, stdout.lines().map(|l| serde_json::from_str(l).expect("EVE line")).collect(), stderr)
}

const SECOND: u64 = 1_000_000_000;

/// SYNs between a Mailbox server and a DC that pass the first point and never reach the
/// second, while other handshakes do, were dropped between the points.
#[test]
fn syns_missing_at_the_second_point_are_restrictions() {
    let allowed = |at: u64, port| (at, syn_ttl(sa(&format!("10.10.1.11:{port}")), sa("10.10.0.5:88"), 64));
    let forwarded = |(at, frame): (u64, Vec<u8>)| {
        let mut frame = frame;
        frame[14 + 8] -= 1;
        (at + 1000, frame)
    };
    let blocked = [445u16, 135, 389].iter().enumerate().map(|(i, port)| {
        (2 * SECOND + i as u64, syn_ttl(sa("10.10.1.11:50100"), sa(&format!("10.10.0.5:{port}")), 64))
    });
    // A client's SYN to the Edge is no pair that must never be restricted.
    let client = (2 * SECOND + 10, syn_ttl(sa("10.20.0.9:50200"), sa("172.16.0.25:3389"), 64));
    let first: Vec<_> =
        [allowed(0, 50001), allowed(4 * SECOND, 50002)].into_iter().chain(blocked).chain([client]).collect();
    let second: Vec<_> = [allowed(0, 50001), allowed(4 * SECOND, 50002)].into_iter().map(forwarded).collect();
    let (status, events, stderr) = run_compare(&first, &second, false);
    assert_eq!(status, 1, "{stderr}");
    let mut ports: Vec<_> = events
        .iter()
        .inspect(|e| assert_eq!(e["policy"]["evidence"], "restricted-dropped-between-points", "{e}"))
        .map(|e| e["dest_port"].as_u64().expect("port"))
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [135, 389, 445], "{stderr}");
    assert!(events.iter().all(|e| e["flow_id"].as_u64().is_some_and(|id| id > 0)), "real flow ids");
    assert!(
        stderr.contains(
            "4 SYNs seen at the capture point nearer their sender never reached the other, 3 between hosts"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("swapped"), "{stderr}");
    assert_eq!(
        events[0]["policy"]["detail"],
        "SYN seen at the first capture point, never at the second: dropped between them"
    );

    // The same pair given the wrong way round: the TTLs say so, and the drops are found
    // all the same, at the point nearer their sender.
    let (status, events, stderr) = run_compare(&first, &second, true);
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("the order looks swapped"), "{stderr}");
    let mut ports: Vec<_> = events.iter().map(|e| e["dest_port"].as_u64().expect("port")).collect();
    ports.sort_unstable();
    assert_eq!(ports, [135, 389, 445], "{stderr}");
    assert_eq!(
        events[0]["policy"]["detail"],
        "SYN seen at the second capture point, never at the first: dropped between them"
    );
}

/// Two captures of different traffic cannot be compared: exit 2, saying why.
#[test]
fn captures_that_share_no_handshake_are_refused() {
    let first = [(0, syn_ttl(sa("10.10.1.11:50001"), sa("10.10.0.5:88"), 64))];
    let second = [(0, syn_ttl(sa("10.10.1.12:50001"), sa("10.10.0.6:88"), 64))];
    let (status, events, stderr) = run_compare(&first, &second, false);
    assert_eq!((status, events.len()), (2, 0), "{stderr}");
    assert!(stderr.contains("share no TCP handshake"), "{stderr}");
}

/// A SYN from `src` to `dst` with the given TTL and MSS.
fn syn_ttl_mss(src: SocketAddr, dst: SocketAddr, ttl: u8, mss: u16) -> Vec<u8> {
    let mut frame = syn_with_mss(src, dst, mss);
    frame[14 + 8] = ttl;
    frame
}

/// A firewall between the points that drops and rewrites both ways: Mailbox server to DC
/// SYNs cross from the first point to the second, DC to Mailbox server SYNs the other
/// way. One run finds what happened in each direction, given either order, and says the
/// order looks swapped in neither.
#[test]
fn drops_and_rewrites_are_found_in_both_directions_in_one_run() {
    let (mbx, dc) = ("10.10.1.11", "10.10.0.5");
    let at = |ip: &str, port: u16| sa(&format!("{ip}:{port}"));
    // (time, sender, receiver, destination port, MSS at the sender's side, MSS at the other)
    let handshakes = [
        (0, mbx, dc, 88, 1460, 1460),
        (SECOND / 2, dc, mbx, 88, 1460, 1460),
        (2 * SECOND, mbx, dc, 445, 1460, 0),
        (2 * SECOND + 1, dc, mbx, 445, 1460, 0),
        (2 * SECOND + 2, dc, mbx, 135, 1460, 1380),
        (4 * SECOND, mbx, dc, 88, 1460, 1460),
        (4 * SECOND + 1, dc, mbx, 88, 1460, 1460),
    ];
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (i, &(t, from, to, port, near_mss, far_mss)) in handshakes.iter().enumerate() {
        let (src, dst) = (at(from, 50_000 + i as u16), at(to, port));
        // The Mailbox server is on the first point's side, the DC on the second's.
        let (near, far) = if from == mbx { (&mut first, &mut second) } else { (&mut second, &mut first) };
        near.push((t, syn_ttl_mss(src, dst, 64, near_mss)));
        if far_mss > 0 {
            far.push((t + 1000, syn_ttl_mss(src, dst, 63, far_mss)));
        }
    }
    first.sort_by_key(|(t, _)| *t);
    second.sort_by_key(|(t, _)| *t);
    for swap in [false, true] {
        let (status, events, stderr) = run_compare(&first, &second, swap);
        assert_eq!(status, 1, "{stderr}");
        let found: Vec<(String, String, u64, String)> = events
            .iter()
            .map(|e| {
                (
                    crate::util::str_of(&e["policy"]["evidence"]),
                    crate::util::str_of(&e["src_ip"]),
                    e["dest_port"].as_u64().expect("port"),
                    crate::util::str_of(&e["policy"]["detail"]),
                )
            })
            .collect();
        let (near_dc, near_mbx) = if swap { ("first", "second") } else { ("second", "first") };
        let want = [
            (
                "restricted-altered-options".to_string(),
                dc.to_string(),
                135,
                format!("MSS 1460 at the {near_dc} capture point, 1380 at the {near_mbx}"),
            ),
            (
                "restricted-dropped-between-points".to_string(),
                mbx.to_string(),
                445,
                format!(
                    "SYN seen at the {near_mbx} capture point, never at the {near_dc}: dropped between them"
                ),
            ),
            (
                "restricted-dropped-between-points".to_string(),
                dc.to_string(),
                445,
                format!(
                    "SYN seen at the {near_dc} capture point, never at the {near_mbx}: dropped between them"
                ),
            ),
        ];
        assert_eq!(found, want, "swapped: {swap}\n{stderr}");
        assert!(!stderr.contains("swapped"), "{stderr}");
        assert!(stderr.contains("both ways"), "{stderr}");
    }
}
