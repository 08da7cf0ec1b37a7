//! Builds the seed corpora of the fuzz targets from the repository's own inputs:
//!
//! - `read_capture/`: every capture under `captures/`, whole (cut to [`MAX_SEED`] bytes),
//!   and the hand-made ones of `exwatch::testkit::fuzzing::synthetic_captures`;
//! - `decode_frame/`: the distinct frames of those captures, each behind the byte that
//!   selects its link type (at most [`FRAMES_PER_CAPTURE`] from each capture);
//! - `parse_config/`: every `rules/*.toml`.
//!
//! Usage: `seed_corpus <repo> <corpus-dir>`. Files are named by a hash of their content,
//! so running it again adds nothing twice.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use exwatch::capture::{FrameSource, Next, Savefile};
use exwatch::testkit::fuzzing::{link_byte, synthetic_captures};

/// Seeds larger than this are cut: libFuzzer sizes its inputs by the corpus, and a
/// prefix of a capture is a capture.
const MAX_SEED: usize = 64 << 10;
/// Distinct frames taken from one capture.
const FRAMES_PER_CAPTURE: usize = 256;

fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, keep, out)?;
        } else if keep(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e))
}

/// Writes one seed, named by its content; returns whether it is new.
fn write_seed(dir: &Path, data: &[u8]) -> io::Result<bool> {
    let mut hasher = DefaultHasher::new();
    data.hash(&mut hasher);
    let path = dir.join(format!("seed-{:016x}", hasher.finish()));
    if path.exists() {
        return Ok(false);
    }
    fs::write(path, data)?;
    Ok(true)
}

/// The distinct frames of one capture, link byte first. A damaged capture gives the
/// frames before the damage.
fn frames_of(path: &Path) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut seen = HashSet::new();
    let Ok(mut file) = Savefile::open(path) else {
        return frames;
    };
    while frames.len() < FRAMES_PER_CAPTURE {
        match file.next_frame() {
            Ok(Next::Frame(frame)) => {
                let mut seed = Vec::with_capacity(frame.data.len() + 1);
                seed.push(link_byte(frame.link));
                seed.extend_from_slice(frame.data);
                if seen.insert(seed.clone()) {
                    frames.push(seed);
                }
            }
            Ok(Next::Idle) => {}
            Ok(Next::End) | Err(_) => break,
        }
    }
    frames
}

fn run(repo: &Path, corpus: &Path) -> io::Result<()> {
    let dirs = ["read_capture", "decode_frame", "parse_config"].map(|t| corpus.join(t));
    for dir in &dirs {
        fs::create_dir_all(dir)?;
    }
    let [capture_dir, frame_dir, config_dir] = &dirs;
    let mut captures = Vec::new();
    files_under(&repo.join("captures"), &|p| has_extension(p, &["pcap", "pcapng", "cap"]), &mut captures)?;
    let (mut whole, mut frames) = (0, 0);
    for path in &captures {
        let data = fs::read(path)?;
        whole += usize::from(write_seed(capture_dir, &data[..data.len().min(MAX_SEED)])?);
        for frame in frames_of(path) {
            frames += usize::from(write_seed(frame_dir, &frame)?);
        }
    }
    for data in synthetic_captures() {
        whole += usize::from(write_seed(capture_dir, &data)?);
    }
    let mut configs = Vec::new();
    files_under(&repo.join("rules"), &|p| has_extension(p, &["toml"]), &mut configs)?;
    let mut texts = 0;
    for path in &configs {
        texts += usize::from(write_seed(config_dir, &fs::read(path)?)?);
    }
    println!(
        "seed corpus in {}: {whole} new captures (of {} and the hand-made ones), {frames} new frames, \
         {texts} new config files (of {})",
        corpus.display(),
        captures.len(),
        configs.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [repo, corpus] = args.as_slice() else {
        eprintln!("usage: seed_corpus <repo> <corpus-dir>");
        return ExitCode::from(2);
    };
    match run(repo, corpus) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("seed_corpus: {err}");
            ExitCode::FAILURE
        }
    }
}
