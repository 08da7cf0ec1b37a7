//! Many files at once: independent captures analysed in parallel (`--jobs`), the pieces
//! of one rotated capture read as one stream (`--continuous`), directories, and what
//! happens to a bad input among good ones.

use std::path::{Path, PathBuf};

use exwatch::testkit::synth::{self, wire::PcapWriter, OrgOptions};

use crate::util::{self, analyze};

/// Packets per generated capture: enough for every kind of finding, quick to analyse.
const PACKETS: u64 = 5_000;

/// The generated organisation's capture for `seed`, as pcap bytes.
fn org_capture(seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = PcapWriter::new(&mut bytes, 1).expect("header");
    let options = OrgOptions { packets: PACKETS, seed, ..OrgOptions::default() };
    synth::organization(&options, |ts, frame| writer.write(ts, frame, frame.len() as u32)).expect("generate");
    bytes
}

/// Writes `bytes` to `path`, making its directory.
fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create dir");
    }
    std::fs::write(path, bytes).expect("write file");
    path.to_path_buf()
}

/// The byte offset of every record of a pcap file written by [`PcapWriter`] (24-byte
/// header, little endian, 16-byte record headers), and the file's length at the end.
fn record_offsets(pcap: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 24;
    while at < pcap.len() {
        offsets.push(at);
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4 bytes"));
        at += 16 + caplen as usize;
    }
    assert_eq!(at, pcap.len(), "records end with the file");
    offsets.push(at);
    offsets
}

/// Cuts a capture into `pieces` consecutive files, as `tcpdump -C` rotates one: each with
/// the same global header and a run of the records.
fn split(pcap: &[u8], pieces: usize) -> Vec<Vec<u8>> {
    let offsets = record_offsets(pcap);
    let records = offsets.len() - 1;
    (0..pieces)
        .map(|i| {
            let (from, to) = (offsets[records * i / pieces], offsets[records * (i + 1) / pieces]);
            [&pcap[..24], &pcap[from..to]].concat()
        })
        .collect()
}

fn sorted_lines(run: &util::Run) -> Vec<String> {
    let mut lines = run.lines.clone();
    lines.sort();
    lines
}

fn summary<'a>(run: &'a util::Run, section: &str, field: &str) -> &'a serde_json::Value {
    &run.summary.as_ref().unwrap_or_else(|| panic!("no summary json: {}", run.stderr))[section][field]
}

/// The findings of each file analysed alone, together.
fn findings_alone(files: &[&Path]) -> Vec<(String, String, String, String)> {
    let mut all: Vec<_> = files.iter().flat_map(|file| analyze(&[file], &[]).findings()).collect();
    all.sort();
    all
}

#[test]
fn jobs_1_and_3_give_the_same_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> =
        (1..=4).map(|seed| write(&dir.path().join(format!("{seed}.pcap")), &org_capture(seed))).collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let one = analyze(&files, &["--flows", "--jobs", "1"]);
    let three = analyze(&files, &["--flows", "--jobs", "3"]);
    assert_eq!(one.status, 1, "{}", one.stderr);
    assert!(one.flows().len() > 400 && one.alerts().len() > 40, "{}", one.stderr);
    assert_eq!(sorted_lines(&one), sorted_lines(&three));
    assert_eq!(summary(&one, "reading", "jobs"), 1);
    assert_eq!(summary(&three, "reading", "jobs"), 3);
    assert_eq!(summary(&three, "reading", "mode"), "independent");
    assert!(three.stderr.contains("files: 4 read independently by 3 jobs"), "{}", three.stderr);
}

#[test]
fn several_files_give_the_findings_of_each_file_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> =
        (11..=13).map(|seed| write(&dir.path().join(format!("{seed}.pcap")), &org_capture(seed))).collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let together = analyze(&files, &["--jobs", "2"]);
    assert_eq!(together.status, 1, "{}", together.stderr);
    assert_eq!(together.findings(), findings_alone(&files));
}

#[test]
fn continuous_pieces_are_the_whole_capture_and_independent_pieces_are_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = org_capture(7);
    let whole_path = write(&dir.path().join("whole.pcap"), &whole);
    let pieces: Vec<PathBuf> = split(&whole, 3)
        .iter()
        .enumerate()
        .map(|(i, piece)| write(&dir.path().join(format!("rotated.pcap{i}")), piece))
        .collect();
    let pieces: Vec<&Path> = pieces.iter().map(PathBuf::as_path).collect();

    let reference = analyze(&[&whole_path], &["--flows"]);
    let continuous = analyze(&pieces, &["--flows", "--continuous"]);
    assert!(reference.flows().len() > 100, "{}", reference.stderr);
    // The same events, but for the file each flow began in (EVE's `pcap_filename`).
    let without_file = |run: &util::Run| {
        let mut events: Vec<String> = run
            .events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().map(|o| o.remove("pcap_filename"));
                e.to_string()
            })
            .collect();
        events.sort();
        events
    };
    assert_eq!(without_file(&continuous), without_file(&reference));
    let named = |run: &util::Run| -> std::collections::BTreeSet<String> {
        // The run's final `stats` event counts every file, and names none.
        let events = run.events.iter().filter(|e| e["event_type"] != "stats");
        events.map(|e| e["pcap_filename"].as_str().unwrap_or("none").to_string()).collect()
    };
    assert_eq!(named(&reference), [whole_path.display().to_string()].into());
    let piece_names: std::collections::BTreeSet<String> =
        pieces.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(named(&continuous), piece_names, "every piece starts flows, each named by its file");
    let first_flow =
        continuous.flows().into_iter().min_by_key(|f| f["flow"]["start"].as_str().map(String::from));
    assert_eq!(
        first_flow.map(|f| f["pcap_filename"].clone()),
        Some(serde_json::json!(pieces[0].display().to_string()))
    );
    assert_eq!(summary(&continuous, "reading", "mode"), "stream");
    assert_eq!(summary(&continuous, "reading", "count"), 3);

    // Each piece on its own: the flows that span a cut are seen twice, the second time
    // without their handshake.
    let independent = analyze(&pieces, &["--flows"]);
    let midstream = |run: &util::Run| summary(run, "flows", "midstream").as_u64().expect("midstream");
    assert!(
        midstream(&independent) > midstream(&reference),
        "pieces read independently: {} flows picked up mid-stream, the whole capture {}",
        midstream(&independent),
        midstream(&reference)
    );
    assert!(independent.flows().len() > reference.flows().len());
}

#[test]
fn a_damaged_file_among_good_ones_is_named_and_the_others_are_analysed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = write(&dir.path().join("a.pcap"), &org_capture(21));
    let last = write(&dir.path().join("c.pcap"), &org_capture(23));
    let whole = org_capture(22);
    let offsets = record_offsets(&whole);
    // Half-way through a record in the middle of the file.
    let cut = offsets[offsets.len() / 2] + 10;
    let damaged = write(&dir.path().join("b.pcap"), &whole[..cut]);

    let run = analyze(&[&first, &damaged, &last], &["--jobs", "2"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    let damage: Vec<&str> = run.stderr.lines().filter(|l| l.contains("damaged at record")).collect();
    assert_eq!(damage.len(), 1, "{}", run.stderr);
    assert!(damage[0].contains(&damaged.display().to_string()), "{}", damage[0]);
    // The good files in full, and the damaged one up to its damage.
    assert_eq!(run.findings(), findings_alone(&[&first, &damaged, &last]));
    let good = findings_alone(&[&first, &last]);
    assert!(!good.is_empty());
    assert!(good.iter().all(|f| run.findings().contains(f)));
}

#[test]
fn a_missing_file_is_named_with_status_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write(&dir.path().join("good.pcap"), &org_capture(31));
    let missing = dir.path().join("missing.pcap");
    let run = analyze(&[&good, &missing], &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains(&format!("{}: cannot open", missing.display())), "{}", run.stderr);
    assert_eq!(run.findings(), findings_alone(&[&good]));
}

#[test]
fn jobs_0_is_refused() {
    let (status, _, stderr) = util::exwatch(&["analyze", "--jobs", "0", "x.pcap", "y.pcap"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("--jobs must be at least 1"), "{stderr}");
}

#[test]
fn a_directory_is_every_capture_under_it_whatever_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let captures = [
        write(&root.join("a.pcap"), &org_capture(41)),
        // Rotated captures are often named like this: recognised by their first bytes.
        write(&root.join("sub/deeper/trace-0002"), &org_capture(42)),
        write(&root.join("sub/b.cap"), &org_capture(43)),
    ];
    let readme = write(&root.join("README.txt"), b"captures of the week\n");
    // A link back up the tree: walked once, not forever.
    std::os::unix::fs::symlink("..", root.join("sub/loop")).expect("symlink");

    let run = analyze(&[root], &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let files: Vec<&Path> = captures.iter().map(PathBuf::as_path).collect();
    assert_eq!(run.findings(), findings_alone(&files));
    let notice =
        format!("exwatch: 1 file in {} is not a capture, skipped: {}", root.display(), readme.display());
    assert!(run.stderr.lines().any(|l| l == notice), "want {notice:?} in:\n{}", run.stderr);
    assert_eq!(summary(&run, "reading", "count"), 3);
    assert_eq!(summary(&run, "reading", "not_captures"), 1);
    assert!(run.stderr.contains("1 file in directories skipped (not captures)"), "{}", run.stderr);
}

#[test]
fn files_in_a_directory_are_taken_in_path_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = org_capture(51);
    // Damaged files: each is named in the summary's errors, in the order they were taken.
    let cut = &whole[..record_offsets(&whole)[3] + 5];
    for name in ["c.pcap", "a/z.pcap", "b.pcap", "a/y/x.pcap"] {
        write(&dir.path().join(name), cut);
    }
    let run = analyze(&[dir.path()], &["--jobs", "3"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    let errors: Vec<String> = run.summary.as_ref().expect("summary json")["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| util::str_of(&e[1]))
        .collect();
    let order: Vec<String> = ["a/y/x.pcap", "a/z.pcap", "b.pcap", "c.pcap"]
        .iter()
        .map(|n| dir.path().join(n).display().to_string())
        .collect();
    assert_eq!(errors.len(), order.len(), "{errors:?}");
    for (error, path) in errors.iter().zip(&order) {
        assert!(error.starts_with(&format!("{path}: damaged at record 4")), "{error} should be about {path}");
    }
}

#[test]
fn a_path_given_on_the_command_line_is_always_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let notes = write(&dir.path().join("notes.txt"), b"not a capture at all\n");
    let good = write(&dir.path().join("good.pcap"), &org_capture(61));
    let run = analyze(&[&notes, &good], &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains(&format!("{}: cannot open: not a pcap", notes.display())), "{}", run.stderr);
    assert_eq!(run.findings(), findings_alone(&[&good]));
}

#[test]
fn a_directory_without_captures_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let good = write(&dir.path().join("good.pcap"), &org_capture(71));
    let run = analyze(&[&good, &empty], &[]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains(&format!("{}: no pcap or pcapng capture", empty.display())),
        "{}",
        run.stderr
    );

    write(&empty.join("notes/README.md"), b"# captures go here\n");
    let run = analyze(&[&empty], &[]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains(&format!("{}: no pcap or pcapng capture", empty.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(1 file, not a capture)"), "{}", run.stderr);
}
