//! The fuzz target bodies of `exwatch::fuzzing` under proptest, so that `cargo test`
//! exercises them without the fuzzer: on arbitrary bytes, and on the real inputs of the
//! repository (captures/ files, their frames, rules/ files) with random byte edits and
//! truncations. Then the regression tests: the inputs the fuzzer (fuzz/run.sh) found.
//!
//! Each body must return for every input without panicking; the case counts keep this
//! module to a few seconds in a debug build.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use exwatch::capture::{FrameSource, Next, Savefile};
use exwatch::fuzzing::{decode_frame, link_byte, parse_config, read_capture, MAX_FRAMES};
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
    /// (file name, bytes cut to [`MAX_SEED`]) of every capture under captures/.
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
