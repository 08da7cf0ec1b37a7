//! Inputs as they come: captures compressed with gzip or zstd (alone, in directories,
//! with several members or frames), standard input, truncated archives, and the raw IPv4
//! and raw IPv6 link types.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use exwatch::capture::{FrameSource, Next, Savefile};
use exwatch::testkit::synth::{self, wire::PcapWriter, OrgOptions};
use exwatch::time::Ts;
use serde_json::Value;

use crate::util::{self, analyze};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("zstd")
}

/// The ways an archive holds a capture, each with the suffix its file gets.
fn archives(plain: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // Cut anywhere, not at a record: `cat a.gz b.gz` of a file split by `split -b`.
    let (head, tail) = plain.split_at(plain.len() * 2 / 5 + 7);
    vec![
        ("gz", gzip(plain)),
        ("zst", zstd(plain)),
        ("two-members.gz", [gzip(head), gzip(tail)].concat()),
        ("two-frames.zst", [zstd(head), zstd(tail)].concat()),
    ]
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create dir");
    }
    std::fs::write(path, bytes).expect("write file");
    path.to_path_buf()
}

/// The summary without what depends on the machine (timings, memory).
fn counts(run: &util::Run) -> Value {
    let mut summary = run.summary.clone().unwrap_or_else(|| panic!("no summary json: {}", run.stderr));
    let object = summary.as_object_mut().expect("summary object");
    object.remove("latency_ns");
    object.remove("throughput");
    // Each file's counts, not its name (an archive's or standard input's).
    for file in object.get_mut("files").and_then(Value::as_array_mut).into_iter().flatten() {
        file.as_object_mut().expect("file object").remove("path");
    }
    summary
}

#[test]
fn gzip_and_zstd_captures_give_the_events_and_counts_of_the_plain_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let captures = [
        util::capture("sample-contoso.pcap"),
        util::capture("real/imaps-993.pcapng"),
        util::capture("real/bigendian-nanosecond-http.pcap"),
        util::capture("real/linux-sll2-http.pcap"),
        util::capture("real/dns-udp-tcp-fragmented-v4v6.pcap"),
        util::capture("real/pcapng-many-interfaces-mixed-linktypes.pcapng"),
    ];
    for plain in &captures {
        let reference = analyze(&[plain], &["--flows"]);
        assert!(!reference.lines.is_empty(), "{}: {}", plain.display(), reference.stderr);
        let bytes = std::fs::read(plain).expect("read capture");
        let name = plain.file_name().and_then(|n| n.to_str()).expect("file name");
        for (suffix, archive) in archives(&bytes) {
            let path = write(&dir.path().join(format!("{name}.{suffix}")), &archive);
            let run = analyze(&[&path], &["--flows"]);
            assert_eq!(run.status, reference.status, "{}: {}", path.display(), run.stderr);
            assert!(
                stripped(&run.lines) == stripped(&reference.lines),
                "{}: the EVE log differs from the plain file's",
                path.display()
            );
            assert_eq!(counts(&run), counts(&reference), "{}", path.display());
        }
    }
}

/// The generated organisation's capture for `seed`, as pcap bytes.
fn org_capture(seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = PcapWriter::new(&mut bytes, 1).expect("header");
    let options = OrgOptions { packets: 5_000, seed, ..OrgOptions::default() };
    synth::organization(&options, |ts, frame| writer.write(ts, frame, frame.len() as u32)).expect("generate");
    bytes
}

#[test]
fn compressed_captures_in_a_directory_are_analysed_and_other_compressed_files_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let (a, b, c) = (org_capture(81), org_capture(82), org_capture(83));
    let plain = [
        write(&root.join("plain/a"), &a),
        write(&root.join("plain/b"), &b),
        write(&root.join("plain/c"), &c),
    ];
    write(&root.join("week/mon.pcap.gz"), &gzip(&a));
    // Named as rotated archives often are: known by their first bytes and their content's.
    write(&root.join("week/sub/tue-0001"), &zstd(&b));
    write(&root.join("week/wed.pcap.gz"), &[gzip(&c[..1000]), gzip(&c[1000..])].concat());
    let notes = write(&root.join("week/notes.txt.gz"), &gzip(b"captures of the week\n"));

    let run = analyze(&[&root.join("week")], &["--flows"]);
    let files: Vec<&Path> = plain.iter().map(PathBuf::as_path).collect();
    let reference = analyze(&files, &["--flows"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let sorted = |run: &util::Run| {
        let mut lines = stripped(&run.lines);
        lines.sort();
        lines
    };
    assert!(sorted(&run) == sorted(&reference), "the archives give the events of the plain files");
    let notice = format!(
        "exwatch: 1 file in {} is not a capture, skipped: {}",
        root.join("week").display(),
        notes.display()
    );
    assert!(run.stderr.lines().any(|l| l == notice), "want {notice:?} in:\n{}", run.stderr);
    assert_eq!(run.summary.as_ref().expect("summary")["reading"]["count"], 3);

    // Given by name, a compressed file that holds no capture says so.
    let run = analyze(&[&notes], &[]);
    assert_eq!(run.status, 2);
    let said = format!(
        "{}: cannot open: compressed with gzip, but not a pcap or pcapng file inside",
        notes.display()
    );
    assert!(run.stderr.contains(&said), "{}", run.stderr);
}

/// Runs `exwatch analyze -` (and `extra`) with `input` written to its standard input
/// through a pipe, as `tcpdump -w - |` does.
fn analyze_stdin(input: Vec<u8>, extra: &[&str]) -> util::Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.json");
    let summary = dir.path().join("summary.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["analyze", "-", "--no-progress", "--flows"])
        .arg("--eve-log")
        .arg(&eve)
        .arg("--summary-json")
        .arg(&summary)
        .args(extra)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run exwatch");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        // In pieces, as a pipe delivers them.
        for piece in input.chunks(7_001) {
            if stdin.write_all(piece).is_err() {
                break;
            }
        }
    });
    let output = child.wait_with_output().expect("wait for exwatch");
    feeder.join().expect("feeder");
    let lines: Vec<String> =
        std::fs::read_to_string(&eve).unwrap_or_default().lines().map(String::from).collect();
    let events = lines.iter().map(|l| serde_json::from_str(l).expect("EVE line")).collect();
    util::Run {
        status: output.status.code().unwrap_or(-1),
        lines,
        events,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        summary: std::fs::read(&summary).ok().and_then(|b| serde_json::from_slice(&b).ok()),
    }
}

#[test]
fn standard_input_is_read_plain_or_compressed_and_by_either_reader() {
    let sample = util::capture("sample-contoso.pcap");
    let reference = analyze(&[&sample], &["--flows"]);
    let bytes = std::fs::read(&sample).expect("sample");
    for (what, input, extra) in [
        ("plain", bytes.clone(), &[][..]),
        ("gzip", gzip(&bytes), &[]),
        ("zstd", zstd(&bytes), &[]),
        ("plain, libpcap", bytes.clone(), &["--reader", "libpcap"]),
    ] {
        let run = analyze_stdin(input, extra);
        assert_eq!(run.status, reference.status, "{what}: {}", run.stderr);
        assert!(
            stripped(&run.lines) == stripped(&reference.lines),
            "{what}: the EVE log differs from the file's"
        );
        assert_eq!(counts(&run), counts(&reference), "{what}");
    }

    // `exwatch analyze - < file`: standard input is the file itself.
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.json");
    let status = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["analyze", "-", "--no-progress", "--flows", "--eve-log"])
        .arg(&eve)
        .stdin(std::fs::File::open(&sample).expect("sample"))
        .stderr(Stdio::null())
        .status()
        .expect("run exwatch");
    assert_eq!(status.code(), Some(reference.status));
    let lines: Vec<String> = std::fs::read_to_string(&eve).expect("eve").lines().map(String::from).collect();
    assert!(stripped(&lines) == stripped(&reference.lines), "< file: the EVE log differs");
}

#[test]
fn the_libpcap_reader_says_why_compressed_standard_input_fails() {
    let bytes = std::fs::read(util::capture("sample-contoso.pcap")).expect("sample");
    let run = analyze_stdin(gzip(&bytes), &["--reader", "libpcap"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("-: cannot open: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("(--reader libpcap reads no compressed capture; the native reader does)"),
        "{}",
        run.stderr
    );
}

#[test]
fn standard_input_given_twice_is_refused() {
    let (status, _, stderr) = util::exwatch(&["analyze", "-", "--no-progress", "-"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("- (standard input) is given more than once"), "{stderr}");
}

#[test]
fn the_libpcap_reader_refuses_a_compressed_file_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = std::fs::read(util::capture("sample-contoso.pcap")).expect("sample");
    let path = write(&dir.path().join("sample.pcap.zst"), &zstd(&bytes));
    let run = analyze(&[&path], &["--reader", "libpcap"]);
    assert_eq!(run.status, 2);
    let said = format!(
        "{}: cannot open: compressed with zstd: --reader libpcap reads no compressed capture (the native reader does)",
        path.display()
    );
    assert!(run.stderr.contains(&said), "{}", run.stderr);
}

/// The byte offset of every record of a pcap file written by [`PcapWriter`].
fn record_offsets(pcap: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 24;
    while at < pcap.len() {
        offsets.push(at);
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4 bytes"));
        at += 16 + caplen as usize;
    }
    offsets
}

#[test]
fn a_truncated_archive_is_damage_at_a_record_of_the_decompressed_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = org_capture(91);
    let offsets = record_offsets(&plain);
    for (name, compressed) in [("cut.pcap.gz", gzip(&plain)), ("cut.pcap.zst", zstd(&plain))] {
        let path = write(&dir.path().join(name), &compressed[..compressed.len() * 3 / 5]);
        let run = analyze(&[&path], &["--flows"]);
        assert_eq!(run.status, 2, "{}", run.stderr);
        let line = run.stderr.lines().find(|l| l.contains("damaged at record")).unwrap_or_else(|| {
            panic!("{name}: no damage in:\n{}", run.stderr);
        });
        // "PATH: damaged at record N (byte offset O in the gzip-decompressed stream): ..."
        let kind = if name.ends_with(".gz") { "gzip" } else { "zstd" };
        let prefix = format!("exwatch: {}: damaged at record ", path.display());
        let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{line}"));
        let (record, rest) = rest.split_once(" (byte offset ").expect("offset");
        let (offset, rest) = rest.split_once(' ').expect("offset");
        let (record, offset): (usize, usize) =
            (record.parse().expect("record"), offset.parse().expect("offset"));
        assert!(
            rest.starts_with(&format!("in the {kind}-decompressed stream): the {kind} stream ends early")),
            "{line}"
        );
        assert!(record > 100 && record < offsets.len(), "{line}");
        assert_eq!(offset, offsets[record - 1], "the offset is where record {record} starts: {line}");
        // The damaged record is the first the truncated stream does not hold in full: every
        // record decompressed before the stream broke was analysed.
        let mut held = Vec::new();
        let mut input = exwatch::capture::compressed::decompressed(Box::new(std::io::Cursor::new(
            compressed[..compressed.len() * 3 / 5].to_vec(),
        )))
        .expect("open");
        std::io::Read::read_to_end(&mut input.bytes, &mut held).expect_err("truncated");
        assert!(offset <= held.len() && held.len() < offsets[record], "{} bytes held: {line}", held.len());
        // Every event before the damage is kept: those of the capture up to that record.
        let prefix = write(&dir.path().join(format!("{name}.prefix")), &plain[..offset]);
        let before = analyze(&[&prefix], &["--flows"]);
        assert!(!before.lines.is_empty());
        assert!(
            stripped(&run.lines) == stripped(&before.lines),
            "{name}: the events before the damage differ"
        );
    }
}

/// Every frame of a capture file: (time, bytes, length on the wire).
fn frames(path: &Path) -> Vec<(Ts, Vec<u8>, u32)> {
    let mut source = Savefile::open(path).expect("open capture");
    let mut out = Vec::new();
    while let Next::Frame(frame) = source.next_frame().expect("frame") {
        out.push((frame.ts, frame.data.to_vec(), frame.wire_len));
    }
    out
}

fn pcap(linktype: u32, frames: &[(Ts, Vec<u8>, u32)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = PcapWriter::new(&mut bytes, linktype).expect("header");
    for (ts, frame, wire_len) in frames {
        writer.write(*ts, frame, *wire_len).expect("record");
    }
    bytes
}

/// A pcapng file of one interface of `linktype`, nanosecond timestamps.
fn pcapng(linktype: u16, frames: &[(Ts, Vec<u8>, u32)]) -> Vec<u8> {
    fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().div_ceil(4) * 4, 0);
        let len = (12 + body.len() as u32).to_le_bytes();
        [&block_type.to_le_bytes()[..], &len, &body, &len].concat()
    }
    let shb = [&0x1a2b_3c4du32.to_le_bytes()[..], &[1, 0, 0, 0], &[0xff; 8]].concat();
    // if_tsresol 9 (nanoseconds), then the end of options.
    let idb = [&linktype.to_le_bytes()[..], &[0, 0], &[0; 4], &[9, 0, 1, 0, 9, 0, 0, 0], &[0; 4]].concat();
    let mut file = [block(0x0a0d_0d0a, &shb), block(1, &idb)].concat();
    for (ts, frame, wire_len) in frames {
        let body = [
            &0u32.to_le_bytes()[..],
            &((ts.0 >> 32) as u32).to_le_bytes(),
            &(ts.0 as u32).to_le_bytes(),
            &(frame.len() as u32).to_le_bytes(),
            &wire_len.to_le_bytes(),
            frame,
        ]
        .concat();
        file.extend(block(6, &body));
    }
    file
}

/// What a flow event says of its flow apart from bytes on the wire (an Ethernet header
/// has 14 more): endpoints, packets, state.
fn flows(run: &util::Run) -> Vec<String> {
    let mut flows: Vec<String> = run
        .flows()
        .iter()
        .map(|e| {
            let f = &e["flow"];
            format!(
                "{} {} {} {} {} {} {} {} {}",
                e["src_ip"],
                e["src_port"],
                e["dest_ip"],
                e["dest_port"],
                e["proto"],
                f["pkts_toserver"],
                f["pkts_toclient"],
                f["state"],
                e["policy"]["verdict"]
            )
        })
        .collect();
    flows.sort();
    flows
}

#[test]
fn raw_ipv4_and_raw_ipv6_captures_give_the_flows_of_ethernet() {
    let dir = tempfile::tempdir().expect("temp dir");
    // IPv4 from the generated organisation (Ethernet), IPv6 from a real raw-IP capture.
    let org = write(&dir.path().join("org.pcap"), &org_capture(95));
    let v4_ethernet: Vec<_> =
        frames(&org).into_iter().filter(|(_, f, _)| f[12..14] == [0x08, 0x00]).collect();
    let v6_raw: Vec<_> = frames(&util::capture("real/raw-ip-ipv6-http.pcap"))
        .into_iter()
        .filter(|(_, f, _)| f.first().is_some_and(|b| b >> 4 == 6))
        .collect();
    assert!(v4_ethernet.len() > 4_000 && v6_raw.len() > 5);
    let strip = |frames: &[(Ts, Vec<u8>, u32)]| -> Vec<_> {
        frames.iter().map(|(ts, f, wire)| (*ts, f[14..].to_vec(), wire - 14)).collect()
    };
    let ethernet_header = [&[2, 0, 0, 0, 0, 1][..], &[2, 0, 0, 0, 0, 2], &[0x86, 0xdd]].concat();
    let v6_ethernet: Vec<_> =
        v6_raw.iter().map(|(ts, f, wire)| (*ts, [&ethernet_header[..], f].concat(), wire + 14)).collect();

    for (version, linktype, ethernet, raw) in
        [("IPv4", 228u16, v4_ethernet.clone(), strip(&v4_ethernet)), ("IPv6", 229, v6_ethernet, v6_raw)]
    {
        let reference = analyze(
            &[&write(&dir.path().join(format!("{version}-eth.pcap")), &pcap(1, &ethernet))],
            &["--flows"],
        );
        assert!(!reference.flows().is_empty(), "{version}: {}", reference.stderr);
        let files = [
            (write(&dir.path().join(format!("{version}.pcap")), &pcap(linktype.into(), &raw)), "native"),
            (write(&dir.path().join(format!("{version}.pcapng")), &pcapng(linktype, &raw)), "native"),
            (dir.path().join(format!("{version}.pcap")), "libpcap"),
        ];
        for (file, reader) in &files {
            let run = analyze(&[file], &["--flows", "--reader", reader]);
            assert_eq!(run.status, reference.status, "{version} {}: {}", file.display(), run.stderr);
            assert_eq!(flows(&run), flows(&reference), "{version} {} ({reader})", file.display());
            assert_eq!(run.findings(), reference.findings(), "{version} {} ({reader})", file.display());
        }
    }
}

/// EVE lines without `pcap_filename`: the same packets read from a file of another name
/// (compressed, standard input) are the same events.
fn stripped(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| util::without_file(l)).collect()
}
