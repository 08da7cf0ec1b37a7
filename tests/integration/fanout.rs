//! Capture sockets in one fanout group with exwatch's own hash (issue 24), on a veth pair
//! in network namespaces (built and removed as the live tests do): a capture of many
//! flows both ways, IPv4 fragments, ICMP errors quoting a flow, IPv6 flows with a
//! Routing header one way and tunnelled flows is
//! replayed with tcpreplay into the pair, and every frame must come out exactly once, on
//! the socket the Rust hash names, so each flow's frames share a socket.
//!
//! Needs root and tcpreplay; without them each test says "skipped: <reason>" and returns.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use exwatch::capture::fanout::socket_of;
use exwatch::capture::{CaptureError, FanoutGroup, FrameSource, LiveCapture, LiveSettings, Next};
use exwatch::testkit::synth::wire::{self, IpFragment, Link, PcapWriter, Segment};
use exwatch::time::Ts;

use crate::live::{self, Side, DEADLINE};

/// The source MAC of every frame `wire` builds: the capture's filter passes only these,
/// so the namespaces' own traffic stays out (and the filter set after joining is tested).
const SOURCE_MAC_FILTER: &str = "ether src 00:15:5d:0a:0b:0c";

/// How long the sockets must stay quiet, once the replay is over, before reading stops:
/// long enough for a duplicate to show up (the kernel hands over a block within the
/// 20 ms block timeout).
const QUIET: Duration = Duration::from_millis(1000);

fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn tcp(payload: &[u8]) -> Segment<'_> {
    Segment::Tcp { flags: 0x18, seq: 7, ack: 9, payload }
}

/// The flows to replay: for each, every frame belonging to it (both directions, its
/// fragments, an ICMP error quoting it, or a tunnel carrying it).
fn flows() -> Vec<Vec<Vec<u8>>> {
    let mut flows = Vec::new();
    for i in 0..40u32 {
        let (client, server) =
            (format!("10.{}.{}.{}:{}", i % 5, i / 5, i + 1, 40000 + i), "10.200.0.9:443".to_string());
        let vlans = match i % 3 {
            0 => [None, None],
            1 => [Some(10), None],
            _ => [Some(100), Some(20)],
        };
        let link = Link { vlans };
        let mut frames = Vec::new();
        for n in 0..3u8 {
            let body = [n; 40];
            frames.push(wire::ethernet(link, &wire::ip_packet(sa(&client), sa(&server), 64, tcp(&body))));
            frames
                .push(wire::ethernet(link, &wire::ip_packet(sa(&server), sa(&client), 64, tcp(&body[..20]))));
        }
        // A datagram in three fragments, then an ICMP error quoting the flow.
        let udp = wire::transport(sa(&client), sa(&server), Segment::Udp { payload: &[i as u8; 120] });
        for (offset, more) in [(0u16, true), (48, true), (96, false)] {
            let end = if more { usize::from(offset) + 48 } else { udp.len() };
            let piece = &udp[usize::from(offset)..end];
            let frag = IpFragment::V4 { id: 0x100 + i as u16, offset, more };
            let ip = wire::ip_with_payload(sa(&client).ip(), sa(&server).ip(), 64, 17, piece, frag);
            frames.push(wire::ethernet(link, &ip));
        }
        let quoted = wire::ip_packet(sa(&client), sa(&server), 64, tcp(b"quoted"));
        let error = Segment::Icmp { kind: 3, code: 13, body: &quoted[..28] };
        let router = format!("192.0.2.{}:0", i + 1);
        let (to, _) = client.split_once(':').unwrap();
        frames.push(wire::ethernet(link, &wire::ip_packet(sa(&router), sa(&format!("{to}:0")), 64, error)));
        flows.push(frames);
    }
    for i in 0..20u32 {
        let (client, server) =
            (format!("[2001:db8:{i:x}::5]:{}", 50000 + i), "[2001:db8:ff::9]:25".to_string());
        let mut frames = Vec::new();
        for n in 0..3u8 {
            let link = Link { vlans: [(n == 1).then_some(30), None] };
            frames.push(wire::ethernet(link, &wire::ip_packet(sa(&client), sa(&server), 64, tcp(&[n; 30]))));
            frames.push(wire::ethernet(link, &wire::ip_packet(sa(&server), sa(&client), 64, tcp(&[n; 10]))));
        }
        let quoted = wire::ip_packet(sa(&client), sa(&server), 64, tcp(b"quoted"));
        let error = Segment::Icmp { kind: 1, code: 1, body: &quoted[..48] };
        let (to, _) = client.rsplit_once(':').unwrap();
        frames.push(wire::ethernet(
            Link::default(),
            &wire::ip_packet(sa("[2001:db8:99::1]:0"), sa(&format!("{to}:0")), 64, error),
        ));
        flows.push(frames);
    }
    // IPv6 flows source-routed one way (a Routing header names the server as the final
    // destination, the IPv6 header a next hop), direct the other way.
    for i in 0..10u32 {
        let (client, server) =
            (format!("[2001:db8:a{i:x}::5]:{}", 51000 + i), "[2001:db8:fe::9]:443".to_string());
        let hop = sa(&format!("[2001:db8:77::{:x}]:0", i + 1));
        let final_dst = match sa(&server).ip() {
            std::net::IpAddr::V6(v6) => v6.octets(),
            std::net::IpAddr::V4(_) => unreachable!(),
        };
        let mut routing = vec![6, 2, 0, 1, 0, 0, 0, 0];
        routing.extend_from_slice(&final_dst);
        routing.extend_from_slice(&wire::transport(sa(&client), sa(&server), tcp(b"routed")));
        let there = wire::ip_with_payload(sa(&client).ip(), hop.ip(), 64, 43, &routing, IpFragment::None);
        let back = wire::ip_packet(sa(&server), sa(&client), 64, tcp(b"back"));
        flows.push(vec![wire::ethernet(Link::default(), &there), wire::ethernet(Link::default(), &back)]);
    }
    // Flows inside VXLAN and GRE between two tunnel endpoints: spread by the inner pair.
    for i in 0..20u32 {
        let (client, server) = (format!("172.16.{i}.7:{}", 30000 + i), format!("172.17.0.{}:587", i + 1));
        let mut frames = Vec::new();
        for (a, b) in [(&client, &server), (&server, &client)] {
            let inner = wire::ethernet(Link::default(), &wire::ip_packet(sa(a), sa(b), 64, tcp(b"inner")));
            let payload = if i % 2 == 0 {
                let mut udp = vec![0xc3, 0x50, 0x12, 0xb5, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0x2a, 0];
                udp.extend_from_slice(&inner);
                (17, udp)
            } else {
                (
                    47,
                    [&[0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1][..], &[0x10, 0, 0, 1, 0, 0, 0, 0], &inner]
                        .concat(),
                )
            };
            let outer = wire::ip_with_payload(
                sa("192.0.2.200:0").ip(),
                sa("192.0.2.201:0").ip(),
                64,
                payload.0,
                &payload.1,
                IpFragment::None,
            );
            frames.push(wire::ethernet(Link::default(), &outer));
        }
        flows.push(frames);
    }
    flows
}

/// A frame as a socket of the group handed it out: the socket's index, the bytes.
type Delivered = (usize, Vec<u8>);

/// Writes `frames` as an Ethernet capture in `dir`.
fn write_capture(dir: &std::path::Path, frames: &[&Vec<u8>]) -> std::path::PathBuf {
    let file = dir.join("replay.pcap");
    let mut writer = PcapWriter::new(std::fs::File::create(&file).unwrap(), 1).unwrap();
    for (n, frame) in frames.iter().enumerate() {
        writer.write(Ts::from_parts(1_700_000_000, n as u64 * 1000), frame, frame.len() as u32).unwrap();
    }
    writer.into_inner().flush().unwrap();
    file
}

/// Moves the calling thread into the namespace `name`: the sockets it opens are there.
fn enter(name: &str) -> Result<(), String> {
    let namespace = std::fs::File::open(format!("/var/run/netns/{name}")).map_err(|e| e.to_string())?;
    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}

/// Reads every socket of the group until the replay is `done` and all stay [`QUIET`].
fn read_until_quiet(group: &mut [LiveCapture], done: &mpsc::Receiver<()>) -> Result<Vec<Delivered>, String> {
    let (mut got, mut last, mut ended) = (Vec::new(), Instant::now(), None);
    loop {
        for (socket, live) in group.iter_mut().enumerate() {
            while let Next::Frame(frame) = live.next_frame().map_err(|e| e.to_string())? {
                got.push((socket, frame.data.to_vec()));
                last = Instant::now();
            }
        }
        if ended.is_none() && done.try_recv().is_ok() {
            ended = Some(Instant::now());
        }
        if let Some(at) = ended {
            if last.max(at).elapsed() > QUIET || at.elapsed() > DEADLINE {
                return Ok(got);
            }
        }
    }
}

fn fanout_replay(test: &str, sockets: u16) {
    let Some(net) = live::setup(test) else { return };
    if Command::new("tcpreplay").arg("--version").output().is_err() {
        let _ = writeln!(std::io::stderr(), "fanout::{test}: skipped: no tcpreplay");
        return;
    }
    let flows = flows();
    let dir = tempfile::tempdir().unwrap();
    let file = write_capture(dir.path(), &flows.iter().flatten().collect::<Vec<_>>());
    let replayed: usize = flows.iter().map(Vec::len).sum();

    let inside = net.ns(Side::Inside).to_string();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || -> Result<Vec<Delivered>, String> {
        enter(&inside)?;
        let options = LiveSettings {
            timeout_ms: 20,
            bpf: Some(SOURCE_MAC_FILTER.into()),
            fanout: Some(FanoutGroup { id: 7, sockets }),
            ..LiveSettings::default()
        };
        let mut group = LiveCapture::open_group(&inside, &options).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        read_until_quiet(&mut group, &done_rx)
    });
    ready_rx.recv_timeout(DEADLINE).expect("the capture sockets joined their group");
    let replay = net
        .cmd(Side::Outside, "tcpreplay", &["-q", "--pps", "2000", "-i", net.ns(Side::Outside)])
        .arg(&file)
        .output()
        .expect("tcpreplay runs");
    assert!(replay.status.success(), "tcpreplay: {}", live::text(&replay.stderr));
    done_tx.send(()).unwrap();
    let got = reader.join().unwrap().unwrap_or_else(|e| panic!("capture: {e}"));

    // Every replayed frame exactly once, nothing else.
    let mut count: BTreeMap<&[u8], i64> = BTreeMap::new();
    for frame in flows.iter().flatten() {
        *count.entry(frame).or_default() += 1;
    }
    for (_, frame) in &got {
        *count.entry(frame).or_default() -= 1;
    }
    let wrong: Vec<_> =
        count.iter().filter(|(_, &n)| n != 0).map(|(f, n)| (n, &f[..f.len().min(40)])).collect();
    assert!(
        wrong.is_empty(),
        "{} of {replayed} frames missing (> 0) or extra (< 0): {wrong:02x?}",
        wrong.len()
    );

    // Each on the socket the Rust hash names, so each flow's frames on one socket.
    let socket_of_frame: BTreeMap<&[u8], usize> = got.iter().map(|(s, f)| (&f[..], *s)).collect();
    for (socket, frame) in &got {
        assert_eq!(*socket, socket_of(frame, sockets), "{frame:02x?}");
    }
    let mut used = vec![0; usize::from(sockets)];
    for (n, flow) in flows.iter().enumerate() {
        let on: Vec<usize> = flow.iter().map(|f| socket_of_frame[&f[..]]).collect();
        assert!(on.iter().all(|&s| s == on[0]), "flow {n} was split over sockets {on:?}");
        used[on[0]] += 1;
    }
    assert!(used.iter().all(|&n| n > 0), "some socket got no flow: {used:?}");
}

#[test]
fn live_fanout_two_sockets_each_frame_once_on_its_hash_socket() {
    fanout_replay("live_fanout_two_sockets_each_frame_once_on_its_hash_socket", 2);
}

#[test]
fn live_fanout_three_sockets_each_frame_once_on_its_hash_socket() {
    fanout_replay("live_fanout_three_sockets_each_frame_once_on_its_hash_socket", 3);
}

/// Sockets opened while traffic flows each hold frames before they join, which the
/// group's other sockets also get: those are drained and counted, never delivered, so no
/// frame comes out twice, and what comes out after the join is on its hash's socket.
#[test]
fn live_fanout_frames_queued_before_joining_are_not_delivered_twice() {
    let test = "live_fanout_frames_queued_before_joining_are_not_delivered_twice";
    let Some(net) = live::setup(test) else { return };
    if Command::new("tcpreplay").arg("--version").output().is_err() {
        let _ = writeln!(std::io::stderr(), "fanout::{test}: skipped: no tcpreplay");
        return;
    }
    // 2,000 distinct frames (a counter in each payload) of 50 flows, both ways, over 2 s.
    let frames: Vec<Vec<u8>> = (0..2000u32)
        .map(|n| {
            let client = format!("10.3.{}.{}:{}", n % 50, n % 50 + 1, 41000 + n % 50);
            let server = "10.4.0.1:443".to_string();
            let (a, b) = if n % 2 == 0 { (&client, &server) } else { (&server, &client) };
            wire::ethernet(Link::default(), &wire::ip_packet(sa(a), sa(b), 64, tcp(&n.to_be_bytes())))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = write_capture(dir.path(), &frames.iter().collect::<Vec<_>>());

    let sockets = 2;
    let inside = net.ns(Side::Inside).to_string();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut replay = net
        .cmd(Side::Outside, "tcpreplay", &["-q", "--pps", "1000", "-i", net.ns(Side::Outside)])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("tcpreplay starts");
    let reader = std::thread::spawn(move || -> Result<(Vec<Delivered>, Vec<u64>), String> {
        enter(&inside)?;
        let options =
            LiveSettings { timeout_ms: 20, bpf: Some(SOURCE_MAC_FILTER.into()), ..LiveSettings::default() };
        let mut group = (0..sockets)
            .map(|_| LiveCapture::open(&inside, &options).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // Each socket holds frames of its own before it joins.
        let started = Instant::now();
        while group.iter_mut().any(|live| live.stats().is_none_or(|s| s.received == 0)) {
            if started.elapsed() > DEADLINE {
                return Err("no frame reached the sockets".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for live in &mut group {
            live.join(FanoutGroup { id: 9, sockets }).map_err(|e| e.to_string())?;
        }
        // A socket cannot join twice: one line naming the interface says why.
        match group[0].join(FanoutGroup { id: 9, sockets }) {
            Err(e @ CaptureError::Fanout { .. }) => {
                let line = e.to_string();
                let want = format!("{inside}: cannot spread the capture over 2 sockets (fanout group 9): ");
                if !line.starts_with(&want)
                    || !line.ends_with("already in a fanout group")
                    || line.contains('\n')
                {
                    return Err(format!("joining twice said {line:?}"));
                }
            }
            other => return Err(format!("joining twice gave {other:?}")),
        }
        for live in &mut group {
            live.arm(options.bpf.as_deref()).map_err(|e| e.to_string())?;
        }
        let held = group.iter().map(LiveCapture::held_at_join).collect();
        Ok((read_until_quiet(&mut group, &done_rx)?, held))
    });
    let status = replay.wait().expect("tcpreplay ends");
    assert!(status.success(), "tcpreplay failed");
    done_tx.send(()).unwrap();
    let (got, drained) = reader.join().unwrap().unwrap_or_else(|e| panic!("capture: {e}"));

    assert!(drained.iter().all(|&n| n > 0), "every socket held frames before it joined: {drained:?}");
    let mut seen = BTreeMap::new();
    for (socket, frame) in &got {
        assert!(frames.contains(frame), "a frame that was not replayed: {frame:02x?}");
        assert_eq!(*socket, socket_of(frame, sockets), "{frame:02x?}");
        *seen.entry(&frame[..]).or_insert(0) += 1;
    }
    let twice = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(twice, 0, "{twice} frames delivered more than once (drained {drained:?})");
    assert!(got.len() > 100, "only {} frames after the join", got.len());
}
