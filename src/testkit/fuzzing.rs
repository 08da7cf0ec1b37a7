//! Fuzz target bodies: the paths by which hostile bytes reach exwatch, as plain functions.
//!
//! The traffic exwatch reads is written by whoever attacks the network, and capture and
//! configuration files come from wherever the user got them. Each function here takes
//! arbitrary bytes, drives one input path the way such bytes would reach it, and must not
//! panic, hang or allocate without bound, whatever the bytes:
//!
//! - [`decode_frame`]: one frame through [`decode`] and [`route_hash`], then through a
//!   small flow [`Tracker`] and the policy engine;
//! - [`read_capture`]: a pcap or pcapng file through the native [`Savefile`] reader, every
//!   frame decoded and tracked (at most [`MAX_FRAMES`] reads, so one run stays fast);
//! - [`parse_config`]: text through the topology and policy parsers, the topology lints,
//!   and the engine built from whichever parsed.
//!
//! The `fuzz/` crate (cargo-fuzz, libFuzzer) calls them as its targets, and
//! `tests/integration/fuzz.rs` runs the same bodies under proptest, so `cargo test`
//! exercises them without the fuzzer. The few `assert!`s here check documented
//! properties (a decoded frame routes to the worker of its flow, no frame is larger than
//! libpcap's limit): breaking one is a bug found, like a crash. Each function returns a
//! small summary, so tests can check that real inputs go the whole way through.

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::capture::{FrameSource, Next, Savefile};
use crate::decode::{decode, pair_hash, proto, route_hash, tcp_flags, Fragment, IcmpError, MacClass};
use crate::decode::{LinkType, Packet, Skip, Transport, Tuple};
use crate::flow::{Settings, Tracker};
use crate::policy::{builtin, Engine, Facts, Policy, Topology};
use crate::time::Ts;
use crate::time::SECOND;

/// The link types [`decode_frame`] picks from with its first byte (modulo the count).
pub const LINK_TYPES: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
    LinkType::Unsupported,
];

/// Reads of the capture reader per [`read_capture`] run, at most.
pub const MAX_FRAMES: usize = 4096;

/// Flows and fragments the fuzzing trackers hold: small, so eviction runs too.
const MAX_FLOWS: usize = 16;

/// Packet time of a lone frame (a capture's frames carry their own).
const FRAME_TS: Ts = Ts::from_secs(1_700_000_000);

/// The first byte of a [`decode_frame`] input that selects `link`.
pub fn link_byte(link: LinkType) -> u8 {
    LINK_TYPES.iter().position(|&l| l == link).unwrap_or(0) as u8
}

/// The link type a [`decode_frame`] input's first byte selects.
pub fn link_of(byte: u8) -> LinkType {
    LINK_TYPES[usize::from(byte) % LINK_TYPES.len()]
}

fn builtin() -> &'static (Arc<Policy>, Arc<Topology>) {
    static BUILTIN: OnceLock<(Arc<Policy>, Arc<Topology>)> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let policy = builtin::policy().expect("the built-in policy parses");
        let topology = builtin::topology().expect("the built-in topology parses");
        (Arc::new(policy), Arc::new(topology))
    })
}

/// A small tracker with a fresh engine, so that no state outlives one run.
fn tracker(policy: Arc<Policy>, topology: Arc<Topology>) -> Tracker {
    let engine = Arc::new(Engine::new(policy, topology, MAX_FLOWS));
    let settings =
        Settings { max_flows: MAX_FLOWS, max_fragments: MAX_FLOWS, flow_events: true, ..Settings::default() };
    Tracker::new(engine, settings)
}

fn builtin_tracker() -> Tracker {
    let (policy, topology) = builtin();
    tracker(policy.clone(), topology.clone())
}

/// Ends a tracker's input and counts the events it produced.
fn finish(tracker: &mut Tracker) -> usize {
    let mut events = tracker.drain_events().count();
    tracker.finish();
    events += tracker.drain_events().count();
    events
}

/// Checks what [`route_hash`] promises about a frame that decodes: it lands with its
/// flow (both directions share the hash, and an ICMP error goes where the flow it quotes
/// goes). A frame that does not decode may go to any worker.
fn check_route(link: LinkType, frame: &[u8], decoded: &Result<Packet, Skip>) {
    let Ok(p) = decoded else {
        return;
    };
    let routed = match p.transport {
        Transport::IcmpError { quoted, .. } => quoted,
        _ => p.tuple,
    };
    let hash = route_hash(link, frame);
    assert_eq!(hash, pair_hash(routed.src, routed.dst), "route_hash disagrees with decode on {p:?}");
}

/// One frame: the first byte picks the link type ([`link_of`]), the rest is the frame.
/// A frame that decodes is fed to a small tracker three times (as sent, the same again
/// past the SYN timeout, and mirrored as a reply), then the tracker's timers run out.
/// Returns the decoded packet.
pub fn decode_frame(data: &[u8]) -> Option<Packet> {
    let (&selector, frame) = data.split_first()?;
    let link = link_of(selector);
    let wire_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let decoded = decode(link, FRAME_TS, wire_len, frame);
    check_route(link, frame, &decoded);
    let packet = decoded.ok()?;
    let mut tracker = builtin_tracker();
    tracker.packet(&packet);
    tracker.packet(&Packet { ts: FRAME_TS.saturating_add(4 * SECOND), ..packet });
    let t = packet.tuple;
    let mirrored = Tuple { src: t.dst, dst: t.src, sport: t.dport, dport: t.sport, proto: t.proto };
    tracker.packet(&Packet { ts: FRAME_TS.saturating_add(5 * SECOND), tuple: mirrored, ..packet });
    tracker.advance(FRAME_TS.saturating_add(3600 * SECOND));
    finish(&mut tracker);
    Some(packet)
}

/// What [`read_capture`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    /// The file header (or pcapng section header) was accepted.
    pub opened: bool,
    /// Frames the reader handed out.
    pub frames: usize,
    /// Frames that decoded to a packet.
    pub decoded: usize,
    /// The reader reported damage before the end of the file.
    pub damaged: bool,
    /// Events the tracker produced.
    pub events: usize,
}

/// A whole capture file, read from memory through [`Savefile::from_reader`] as exwatch
/// reads a file: every frame decoded, routed and fed to a small tracker, until the end,
/// the first damage, or [`MAX_FRAMES`] reads.
pub fn read_capture(data: &[u8]) -> CaptureSummary {
    let mut summary = CaptureSummary::default();
    let reader = Box::new(Cursor::new(data.to_vec()));
    let Ok(mut file) = Savefile::from_reader(Path::new("fuzz.pcap"), reader) else {
        return summary;
    };
    summary.opened = true;
    let mut tracker = builtin_tracker();
    for _ in 0..MAX_FRAMES {
        let frame = match file.next_frame() {
            Ok(Next::Frame(frame)) => frame,
            Ok(Next::Idle) => continue,
            Ok(Next::End) => break,
            Err(err) => {
                // Formatting the error is part of the path a damaged file takes.
                assert!(!err.to_string().is_empty() && !err.code().is_empty());
                summary.damaged = true;
                break;
            }
        };
        summary.frames += 1;
        assert!(frame.data.len() <= 262_144, "a {}-byte frame is past libpcap's limit", frame.data.len());
        let decoded = decode(frame.link, frame.ts, frame.wire_len, frame.data);
        check_route(frame.link, frame.data, &decoded);
        if let Ok(packet) = decoded {
            summary.decoded += 1;
            tracker.packet(&packet);
            summary.events += tracker.drain_events().count();
        }
    }
    summary.events += finish(&mut tracker);
    summary
}

/// What [`parse_config`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigSummary {
    /// The text is a valid topology file.
    pub topology: bool,
    /// The text is a valid policy file.
    pub policy: bool,
    /// Lints of the topology.
    pub lints: usize,
}

/// Addresses the engine is asked about: the example topology's roles, both families,
/// and the extremes.
fn probe_addresses() -> [IpAddr; 10] {
    [
        IpAddr::V4(Ipv4Addr::new(10, 10, 1, 11)),
        IpAddr::V4(Ipv4Addr::new(10, 10, 0, 5)),
        IpAddr::V4(Ipv4Addr::new(172, 16, 0, 25)),
        IpAddr::V4(Ipv4Addr::new(10, 20, 7, 7)),
        IpAddr::V4(Ipv4Addr::new(10, 10, 9, 9)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x11)),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    ]
}

/// Judges flows between the probe addresses (and `extra`) on a few ports, then runs a
/// short packet sequence through a tracker: a SYN, its retry past the SYN timeout, and an
/// ICMP "administratively prohibited" quoting it, so restriction evidence is reported.
fn exercise_engine(policy: Arc<Policy>, topology: Arc<Topology>, extra: &[(IpAddr, u16)]) {
    let engine = Engine::new(policy.clone(), topology.clone(), MAX_FLOWS);
    let mut endpoints: Vec<(IpAddr, u16)> = probe_addresses().into_iter().map(|a| (a, 443)).collect();
    endpoints.extend(extra.iter().take(8));
    for (i, &(orig, _)) in endpoints.iter().enumerate() {
        for &(resp, port) in &endpoints {
            for (proto, resp_port) in
                [(proto::TCP, port), (proto::TCP, 25), (proto::UDP, 53), (proto::ICMP, 0)]
            {
                let ts = Ts::from_secs(i as u64);
                engine.judge(&Facts { orig, resp, resp_port, proto, ts, plaintext: false });
            }
        }
    }
    let mut tracker = tracker(policy, topology);
    let router = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for (i, &(src, _)) in endpoints.iter().enumerate().take(6) {
        let (dst, dport) = endpoints[(i + 1) % endpoints.len()];
        let tuple = Tuple { src, dst, sport: 50_000 + i as u16, dport, proto: proto::TCP };
        let syn = Packet {
            ts: Ts::from_secs(10 * i as u64),
            wire_len: 60,
            tuple,
            transport: Transport::Tcp { flags: Some(tcp_flags::SYN), seq: Some(0), len: Some(0) },
            fragment: Fragment::Whole,
            ttl: 64,
            vlan: Default::default(),
            tunnel: None,
            src_mac: None,
            dst_mac: MacClass::Unknown,
            head: crate::decode::Head::NONE,
        };
        tracker.packet(&syn);
        tracker.packet(&Packet { ts: syn.ts.saturating_add(4 * SECOND), ..syn });
        let icmp = Tuple { src: router, dst: src, sport: 3, dport: 13, proto: proto::ICMP };
        tracker.packet(&Packet {
            ts: syn.ts.saturating_add(5 * SECOND),
            tuple: icmp,
            transport: Transport::IcmpError {
                kind: IcmpError::Prohibited,
                quoted: tuple,
                fragment: Fragment::Whole,
            },
            ..syn
        });
    }
    finish(&mut tracker);
}

/// Configuration text (UTF-8, lossily) through [`Topology::parse`] and [`Policy::parse`].
/// A topology that parses is linted and judged by under the built-in policy; a policy that
/// parses judges flows under the built-in topology.
pub fn parse_config(data: &[u8]) -> ConfigSummary {
    let text = String::from_utf8_lossy(data);
    let mut summary = ConfigSummary::default();
    let (builtin_policy, builtin_topology) = builtin();
    match Topology::parse(Path::new("fuzz-topology.toml"), &text) {
        Ok(topology) => {
            summary.topology = true;
            summary.lints = topology.lint().len();
            let proxies: Vec<(IpAddr, u16)> = topology.proxies.iter().map(|p| (p.ip(), p.port())).collect();
            exercise_engine(builtin_policy.clone(), Arc::new(topology), &proxies);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    match Policy::parse(Path::new("fuzz-policy.toml"), &text) {
        Ok(policy) => {
            summary.policy = true;
            let ports: Vec<(IpAddr, u16)> = policy
                .rules
                .iter()
                .flat_map(|r| r.ports.iter())
                .flat_map(|&(lo, hi)| [lo, hi])
                .map(|port| (IpAddr::V4(Ipv4Addr::new(10, 10, 1, 12)), port))
                .collect();
            exercise_engine(Arc::new(policy), builtin_topology.clone(), &ports);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    summary
}

/// A small Ethernet / IPv4 / TCP SYN frame, 10.20.0.1:50000 -> Mailbox 10.10.1.11:443.
const SYN_FRAME: [u8; 54] = [
    0, 0x15, 0x5d, 1, 2, 3, 0, 0x15, 0x5d, 4, 5, 6, 0x08, 0x00, // Ethernet
    0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 20, 0, 1, 10, 10, 1, 11, // IPv4
    0xc3, 0x50, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0, // TCP
];

/// Writes pcapng blocks in one byte order.
struct Pcapng {
    big_endian: bool,
    out: Vec<u8>,
}

impl Pcapng {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, kind: u32, mut body: Vec<u8>) -> &mut Pcapng {
        body.resize(body.len().div_ceil(4) * 4, 0);
        let len = self.u32(body.len() as u32 + 12);
        let kind = self.u32(kind);
        self.out.extend(kind.into_iter().chain(len).chain(body).chain(len));
        self
    }

    /// Options, each padded, and the end-of-options marker.
    fn options(&self, options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(code, value) in options.iter().chain([(0, &[][..])].iter()) {
            out.extend(self.u16(code));
            out.extend(self.u16(value.len() as u16));
            out.extend(value);
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
        out
    }

    fn section(big_endian: bool) -> Pcapng {
        let mut w = Pcapng { big_endian, out: Vec::new() };
        w.add_section();
        w
    }

    fn add_section(&mut self) -> &mut Pcapng {
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend(self.u16(1).into_iter().chain(self.u16(0)));
        body.extend([0xff; 8]);
        body.extend(self.options(&[(4, b"exwatch fuzz seed")]));
        // The block type reads the same in both orders.
        self.block(0x0a0d_0d0a, body)
    }

    fn interface(&mut self, dlt: u16, options: &[(u16, &[u8])]) -> &mut Pcapng {
        let mut body: Vec<u8> = self.u16(dlt).into_iter().chain([0, 0]).chain(self.u32(0)).collect();
        body.extend(self.options(options));
        self.block(1, body)
    }

    fn enhanced(&mut self, iface: u32, ts: u64, frame: &[u8]) -> &mut Pcapng {
        let len = frame.len() as u32;
        let fields = [iface, (ts >> 32) as u32, ts as u32, len, len];
        let mut body: Vec<u8> = fields.iter().flat_map(|&v| self.u32(v)).collect();
        body.extend(frame);
        self.block(6, body)
    }

    fn simple(&mut self, frame: &[u8]) -> &mut Pcapng {
        let mut body = self.u32(frame.len() as u32).to_vec();
        body.extend(frame);
        self.block(3, body)
    }

    fn obsolete(&mut self, iface: u16, ts: u64, frame: &[u8]) -> &mut Pcapng {
        let len = frame.len() as u32;
        let mut body: Vec<u8> = self.u16(iface).into_iter().chain(self.u16(0)).collect();
        body.extend([(ts >> 32) as u32, ts as u32, len, len].iter().flat_map(|&v| self.u32(v)));
        body.extend(frame);
        self.block(2, body)
    }
}

/// Hand-made captures for the [`read_capture`] seeds, with what the files in captures/
/// lack: pcapng interface options (`if_tsresol` decimal and binary, `if_tsoffset`), simple
/// and obsolete packet blocks, a big-endian section after a little-endian one, interfaces
/// of several link types, and a big-endian nanosecond pcap. Each reads whole.
pub fn synthetic_captures() -> Vec<Vec<u8>> {
    let frame = &SYN_FRAME[..];
    let ip = &SYN_FRAME[14..];
    let ns = 1_700_000_000_123_456_789u64;
    let offset = 1_700_000_000i64.to_le_bytes();
    let offset_be = 1_700_000_000i64.to_be_bytes();
    let mut captures = Vec::new();

    let mut w = Pcapng::section(false);
    w.interface(1, &[(2, b"eth0"), (9, &[9]), (14, &offset)]);
    w.enhanced(0, 123_456_789, frame).simple(frame).obsolete(0, 5, frame);
    captures.push(w.out);

    let mut w = Pcapng::section(true);
    w.interface(1, &[(9, &[0x80 | 10]), (14, &offset_be)]).enhanced(0, 3 << 10, frame).enhanced(
        0,
        7 << 9,
        frame,
    );
    captures.push(w.out);

    let mut w = Pcapng::section(false);
    w.interface(1, &[]).enhanced(0, ns / 1000, frame);
    w.big_endian = true;
    w.add_section().interface(101, &[(9, &[6])]).enhanced(0, ns / 1000, ip);
    captures.push(w.out);

    let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0x15, 0x5d, 1, 2, 3, 0, 0, 0x08, 0x00];
    sll.extend(ip);
    let mut w = Pcapng::section(false);
    w.interface(101, &[]).interface(113, &[]).interface(147, &[]);
    w.enhanced(0, 1, ip).enhanced(1, 2, &sll).enhanced(2, 3, frame).enhanced(0, 4, ip);
    captures.push(w.out);

    let mut pcap = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 1];
    for i in 0..2u32 {
        let len = (frame.len() as u32).to_be_bytes();
        pcap.extend([1_700_000_000u32.to_be_bytes(), (i * 1000).to_be_bytes(), len, len].concat());
        pcap.extend(frame);
    }
    captures.push(pcap);
    captures
}
