//! The fuzz target bodies of `exwatch::testkit::fuzzing` under proptest, so that `cargo test`
//! exercises them without the fuzzer: on arbitrary bytes, and on the real inputs of the
//! repository (captures/ files, their frames, rules/ files) with random byte edits and
//! truncations. Then the regression tests: the inputs the fuzzer (fuzz/run.sh) found.
//!
//! Each body must return for every input without panicking; the case counts keep this
//! module to a few seconds in a debug build.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use exwatch::capture::{FrameSource, Next, Savefile};
use exwatch::decode::{decode, pair_hash, route_hash, IcmpError, LinkType, Transport};
use exwatch::testkit::fuzzing::{
    decode_frame, link_byte, parse_config, read_capture, synthetic_captures, MAX_FRAMES,
};
use exwatch::time::Ts;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::util::repo;

/// Captures are cut to this for the mutation tests, as the fuzzer's seeds are.
const MAX_SEED: usize = 64 << 10;
/// Distinct frames taken from each capture for the frame mutation test.
const FRAMES_PER_CAPTURE: usize = 24;

/// The repository's own inputs: the seeds of the fuzz corpora.
struct Seeds {
    /// (file name, bytes cut to [`MAX_SEED`]) of every capture under captures/, and the
    /// hand-made ones (named `synthetic-N`).
    captures: Vec<(String, Vec<u8>)>,
    /// Frames of those captures, link byte first (a `decode_frame` input).
    frames: Vec<Vec<u8>>,
    /// (file name, text) of every rules/*.toml.
    configs: Vec<(String, Vec<u8>)>,
}

fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn frames_of(path: &Path) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let Ok(mut file) = Savefile::open(path) else {
        return frames;
    };
    for _ in 0..MAX_FRAMES {
        match file.next_frame() {
            Ok(Next::Frame(frame)) => {
                let mut input = vec![link_byte(frame.link)];
                input.extend_from_slice(frame.data);
                if !frames.contains(&input) {
                    frames.push(input);
                }
                if frames.len() == FRAMES_PER_CAPTURE {
                    break;
                }
            }
            Ok(Next::Idle) => {}
            Ok(Next::End) | Err(_) => break,
        }
    }
    frames
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let paths = files(&repo().join("captures"), &["pcap", "pcapng"]);
        let mut captures = Vec::new();
        let mut frames = Vec::new();
        for path in &paths {
            let mut data = fs::read(path).unwrap();
            data.truncate(MAX_SEED);
            captures.push((name_of(path), data));
            frames.extend(frames_of(path));
        }
        captures
            .extend(synthetic_captures().into_iter().enumerate().map(|(i, c)| (format!("synthetic-{i}"), c)));
        let configs = files(&repo().join("rules"), &["toml"])
            .iter()
            .map(|p| (name_of(p), fs::read(p).unwrap()))
            .collect();
        Seeds { captures, frames, configs }
    })
}

#[test]
fn every_seed_goes_through_the_bodies() {
    let seeds = seeds();
    assert!(seeds.captures.len() >= 40, "{} captures", seeds.captures.len());
    assert!(seeds.frames.len() >= 300, "{} frames", seeds.frames.len());
    for (name, data) in &seeds.captures {
        let summary = read_capture(data);
        if !name.starts_with("malformed-pcap") {
            assert!(summary.opened && summary.frames > 0, "{name}: {summary:?}");
        }
        if name.starts_with("synthetic-") {
            assert!(summary.frames >= 2 && summary.decoded >= 2 && !summary.damaged, "{name}: {summary:?}");
        }
    }
    let sample = fs::read(repo().join("captures/sample-contoso.pcap")).unwrap();
    let summary = read_capture(&sample);
    assert!(summary.decoded > 100 && summary.events > 0 && !summary.damaged, "{summary:?}");
    let decoded = seeds.frames.iter().filter(|frame| decode_frame(frame).is_some()).count();
    assert!(decoded * 10 >= seeds.frames.len() * 9, "{decoded} of {} frames decode", seeds.frames.len());
    for (name, text) in &seeds.configs {
        let summary = parse_config(text);
        match name.as_str() {
            "exchange.toml" => assert!(summary.policy && !summary.topology, "{summary:?}"),
            "topology.toml" => {
                assert!(summary.topology && !summary.policy && summary.lints == 0, "{summary:?}")
            }
            _ => {}
        }
    }
}

/// One random change to an input.
#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Flip(usize, u8),
    /// A 32-bit field set to a value that lengths and counts get wrong.
    Word(usize, u32),
    Truncate(usize),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    /// A copy of `len` bytes from the position, inserted after them.
    Duplicate(usize, usize),
}

/// A position: mostly in the headers at the start, else anywhere (taken modulo the length).
fn position() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..64, 2 => any::<usize>()]
}

fn edit(byte: BoxedStrategy<u8>, insert: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Edit> {
    let word = prop::sample::select(vec![
        0u32,
        1,
        3,
        0x7fff_ffff,
        0xffff_ffff,
        0xffff,
        0x4_0000,
        0x4_0001,
        0x100_0000,
    ]);
    prop_oneof![
        4 => (position(), byte).prop_map(|(at, value)| Edit::Set(at, value)),
        3 => (position(), 0u8..8).prop_map(|(at, bit)| Edit::Flip(at, bit)),
        2 => (position(), word, any::<bool>())
            .prop_map(|(at, value, swap)| Edit::Word(at, if swap { value.swap_bytes() } else { value })),
        1 => position().prop_map(Edit::Truncate),
        1 => (position(), 1usize..64).prop_map(|(at, len)| Edit::Delete(at, len)),
        1 => (position(), insert).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        1 => (position(), 1usize..256).prop_map(|(at, len)| Edit::Duplicate(at, len)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = data.len();
        let at = |i: usize| if len == 0 { 0 } else { i % len };
        match edit {
            Edit::Set(i, value) if len > 0 => data[at(*i)] = *value,
            Edit::Flip(i, bit) if len > 0 => data[at(*i)] ^= 1 << bit,
            Edit::Word(i, value) => {
                let start = at(*i);
                let end = (start + 4).min(len);
                data[start..end].copy_from_slice(&value.to_le_bytes()[..end - start]);
            }
            Edit::Truncate(i) => data.truncate(at(*i)),
            Edit::Delete(i, n) => {
                let start = at(*i);
                data.drain(start..(start + n).min(len));
            }
            Edit::Insert(i, bytes) => {
                let start = at(*i);
                data.splice(start..start, bytes.iter().copied());
            }
            Edit::Duplicate(i, n) => {
                let start = at(*i);
                let copy = data[start..(start + n).min(len)].to_vec();
                data.splice(start + copy.len()..start + copy.len(), copy);
            }
            Edit::Set(..) | Edit::Flip(..) => {}
        }
    }
    data
}

fn binary_edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(edit(any::<u8>().boxed(), vec(any::<u8>(), 1..16).boxed()), 1..6)
}

/// Edits to TOML text: its punctuation and digits, and tokens that parsers get wrong.
fn text_edits() -> impl Strategy<Value = Vec<Edit>> {
    let byte = prop::sample::select(b"[]{}=\"'.,#\n\\ 0123456789-/:abcdefxyz_".to_vec()).boxed();
    let tokens: Vec<Vec<u8>> = [
        "\"",
        "[",
        "]]",
        "\n[[rule]]\n",
        "\n[[evidence]]\n",
        "\n[roles]\n",
        "\n[[edge_subscription]]\n",
        "99999999999999999999",
        "-1",
        "65535",
        "4294967296",
        "\"0.0.0.0/0\"",
        "\"::/0\"",
        "\"::/129\"",
        "\"10.0.0.0/33\"",
        "\"1-65535\"",
        "\"65535-0\"",
        "\"any\"",
        "1e400",
        "nan",
        "\u{feff}",
        "\u{10ffff}",
        "\r\n",
        "\"\"\"",
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .collect();
    let insert = prop_oneof![prop::sample::select(tokens), vec(any::<u8>(), 1..8)].boxed();
    vec(edit(byte, insert), 1..8)
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Bytes that start like a capture file of each format, so arbitrary bytes reach the
/// record and block parsers rather than failing at the magic number.
fn capture_headers() -> Vec<Vec<u8>> {
    let pcap = |magic: [u8; 4], big_endian: bool, link: u32| {
        let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut h = magic.to_vec();
        h.extend(u16b(2));
        h.extend(u16b(4));
        h.extend(u32b(0));
        h.extend(u32b(0));
        h.extend(u32b(65535));
        h.extend(u32b(link));
        h
    };
    let shb = [
        0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
    ];
    let idb = [1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0];
    vec![
        pcap([0xd4, 0xc3, 0xb2, 0xa1], false, 1),
        pcap([0x4d, 0x3c, 0xb2, 0xa1], false, 113),
        pcap([0xa1, 0xb2, 0xc3, 0xd4], true, 276),
        pcap([0xa1, 0xb2, 0x3c, 0x4d], true, 101),
        pcap([0xd4, 0xc3, 0xb2, 0xa1], false, 0),
        shb.to_vec(),
        [&shb[..], &idb[..]].concat(),
    ]
}

proptest! {
    #![proptest_config(config(6000))]

    #[test]
    fn decode_frame_on_arbitrary_bytes(data in vec(any::<u8>(), 0..1600)) {
        decode_frame(&data);
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn decode_frame_on_mutated_real_frames(index in any::<usize>(), edits in binary_edits()) {
        let frames = &seeds().frames;
        decode_frame(&apply(frames[index % frames.len()].clone(), &edits));
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn read_capture_on_arbitrary_bytes(header in prop::sample::select(capture_headers()), body in vec(any::<u8>(), 0..4096)) {
        read_capture(&body);
        read_capture(&[header, body].concat());
    }

    #[test]
    fn read_capture_on_mutated_real_captures(index in any::<usize>(), edits in binary_edits()) {
        let captures = &seeds().captures;
        let (_, data) = &captures[index % captures.len()];
        read_capture(&apply(data.clone(), &edits));
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn parse_config_on_arbitrary_bytes(data in vec(any::<u8>(), 0..512), text in "[\\[\\]a-z_=\"0-9./:, \n-]{0,200}") {
        parse_config(&data);
        parse_config(text.as_bytes());
    }

    #[test]
    fn parse_config_on_mutated_rules(index in any::<usize>(), edits in text_edits()) {
        let configs = &seeds().configs;
        let (_, text) = &configs[index % configs.len()];
        parse_config(&apply(text.clone(), &edits));
    }
}

// --- Regression tests: inputs the fuzzer found -------------------------------------------

/// Found by `fuzz/run.sh` (decode_frame, first minute; minimised with `cargo fuzz tmin`):
/// an IPv4 packet whose protocol is 58 (ICMPv6) and whose message is an ICMPv6 error. The
/// decoder reads it as an ICMP error about the packet it quotes, but `route_hash` hashes
/// IPv4 from its outer addresses unless the protocol is 1 (`route_hash_fast` in
/// src/decode.rs), so the error goes to another worker than the flow it quotes: what a
/// capture reports then depends on the worker count.
#[test]
fn regression_icmpv6_error_over_ipv4_routes_with_the_flow_it_quotes() {
    // The fuzzer's input: link byte 0 (Ethernet), IPv4 10.10.0.1 -> 10.10.1.11, protocol
    // 58, ICMPv6 type 3 (time exceeded), quoting an IPv4 header of protocol 94.
    let found: &[u8] = &[
        0x00, 0x00, 0x15, 0x5d, 0x01, 0x02, 0x03, 0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x38, 0x12, 0x34, 0x40, 0x00, 0x40, 0x3a, 0x13, 0x72, 0x0a, 0x0a, 0x00, 0x01, 0x0a, 0x0a, 0x01,
        0x0b, 0x03, 0x0d, 0xae, 0x02, 0x00, 0x00, 0x00, 0x48, 0x45, 0x00, 0x00, 0x15, 0x5d, 0x02, 0x03, 0x00,
        0x06, 0x5e, 0xac, 0x10, 0x0a, 0x0a, 0x12, 0x50, 0x64, 0x0a, 0x0a, 0x0b,
    ];

    // The same shape made plain: raw IP, 10.0.0.254 -> 10.10.1.11, protocol 58, ICMPv6
    // destination unreachable / administratively prohibited (type 1 code 1), quoting a TCP
    // SYN from Mailbox 10.10.1.11:50001 to Mailbox 10.10.1.12:135, which must never be
    // restricted.
    #[rustfmt::skip]
    let ip: &[u8] = &[
        0x45, 0x00, 0x00, 0x38, 0x00, 0x01, 0x00, 0x00, 0x40, 0x3a, 0x00, 0x00, 10, 0, 0, 254, 10, 10, 1, 11,
        0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x45, 0x00, 0x00, 0x28, 0x00, 0x02, 0x00, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 10, 1, 11, 10, 10, 1, 12,
        0xc3, 0x51, 0x00, 0x87, 0x00, 0x00, 0x00, 0x00,
    ];
    let packet = decode(LinkType::RawIp, Ts(0), ip.len() as u32, ip).unwrap();
    let Transport::IcmpError { kind: IcmpError::Prohibited, quoted, .. } = packet.transport else {
        panic!("not read as an ICMP prohibited error: {packet:?}");
    };
    assert_eq!((quoted.dst, quoted.dport), (IpAddr::from([10, 10, 1, 12]), 135));
    assert_eq!(
        route_hash(LinkType::RawIp, ip),
        pair_hash(quoted.src, quoted.dst),
        "the ICMP error is routed by its outer addresses, not with the flow it quotes"
    );
    decode_frame(&[&[link_byte(LinkType::RawIp)], ip].concat());
    decode_frame(found);
}

/// A pcapng file whose interface says `if_tsoffset` is `i64::MAX` seconds, and one packet
/// one second after the epoch: the reader adds the two in an `i64` (`timestamp` in
/// src/capture/savefile.rs), which overflows.
#[test]
fn regression_pcapng_tsoffset_overflow() {
    #[rustfmt::skip]
    let file: &[u8] = &[
        // Section header block, little-endian, version 1.0, section length unknown.
        0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
        // Interface description block: Ethernet, no snap length, if_tsoffset = i64::MAX.
        1, 0, 0, 0, 36, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        14, 0, 8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 36, 0, 0, 0,
        // Enhanced packet block: interface 0, timestamp 1 000 000 us, no data.
        6, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x42, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        32, 0, 0, 0,
    ];
    let summary = read_capture(file);
    assert!(summary.opened && summary.frames == 1, "{summary:?}");
}
