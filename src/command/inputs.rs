//! The capture inputs of `analyze` and `learn`: files, directories, `-`, compressed or
//! not, with what the progress bar needs to know of their size.

use std::path::{Path, PathBuf};

use crate::capture::{compressed, format};

/// The capture files a command line stands for.
pub struct Inputs {
    pub files: Vec<PathBuf>,
    /// Per directory given, the files under it that are not captures.
    pub not_captures: Vec<(PathBuf, Vec<PathBuf>)>,
}

impl Inputs {
    /// Files as given (a missing or unreadable one then gives the usual capture error);
    /// `-` is standard input, which can be read once only; a directory stands for the
    /// captures under it. A directory without any is an error: it is most likely the
    /// wrong one, better said before hours of analysis than after.
    pub fn expand(paths: &[PathBuf]) -> Result<Inputs, String> {
        if paths.iter().filter(|p| compressed::is_stdin(p)).count() > 1 {
            return Err("- (standard input) is given more than once; it can be read only once".into());
        }
        let mut inputs = Inputs { files: Vec::new(), not_captures: Vec::new() };
        for path in paths {
            if compressed::is_stdin(path) || !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                inputs.files.push(path.clone());
                continue;
            }
            let (captures, others) = walk(path)?;
            if captures.is_empty() {
                let others = match others.len() {
                    0 => String::new(),
                    1 => " (1 file, not a capture)".to_string(),
                    n => format!(" ({n} files, none a capture)"),
                };
                return Err(format!(
                    "{}: no pcap or pcapng capture (plain, gzip or zstd) in this directory or below it{others}",
                    path.display()
                ));
            }
            inputs.files.extend(captures);
            if !others.is_empty() {
                inputs.not_captures.push((path.clone(), others));
            }
        }
        Ok(inputs)
    }

    /// The files' size on disk, for the progress bar, or 0 when it is not known: the
    /// readers count the capture's bytes as they read them, which standard input never
    /// says in advance and a compressed file holds more of than its size.
    pub fn total_bytes(&self) -> u64 {
        let unknown = |f: &PathBuf| {
            compressed::is_stdin(f)
                || compressed::first_raw_bytes(f).is_ok_and(|head| compressed::sniff(&head).is_some())
        };
        if self.files.iter().any(unknown) {
            return 0;
        }
        self.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    }

    /// One line per directory that held files other than captures: how many were
    /// skipped, naming the first few, so nothing is left out unsaid.
    pub fn notices(&self) -> Vec<String> {
        const NAMED: usize = 3;
        self.not_captures
            .iter()
            .map(|(dir, skipped)| {
                let mut names: Vec<String> =
                    skipped.iter().take(NAMED).map(|p| p.display().to_string()).collect();
                if skipped.len() > NAMED {
                    names.push(format!("and {} more", skipped.len() - NAMED));
                }
                let (files, are) = if skipped.len() == 1 {
                    ("file", "is not a capture")
                } else {
                    ("files", "are not captures")
                };
                format!("{} {files} in {} {are}, skipped: {}", skipped.len(), dir.display(), names.join(", "))
            })
            .collect()
    }

    pub fn not_captures_total(&self) -> usize {
        self.not_captures.iter().map(|(_, skipped)| skipped.len()).sum()
    }
}

/// The files under `root` at any depth, each sorted by path: (captures, the others).
/// Captures are known by their first bytes, since rotated captures are often named
/// `trace.pcap0`, `dump-0001` and the like. Symbolic links are followed, but each
/// directory is walked once, so a link back up the tree cannot loop.
fn walk(root: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    use std::os::unix::fs::MetadataExt;
    let mut walked = std::collections::HashSet::new();
    let mut pending = vec![root.to_path_buf()];
    let (mut captures, mut others) = (Vec::new(), Vec::new());
    while let Some(dir) = pending.pop() {
        let cannot_list = |e: std::io::Error| format!("{}: cannot list: {e}", dir.display());
        let meta = std::fs::metadata(&dir).map_err(cannot_list)?;
        if !walked.insert((meta.dev(), meta.ino())) {
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(cannot_list)? {
            let path = entry.map_err(cannot_list)?.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => pending.push(path),
                Ok(m) if m.is_file() && starts_like_a_capture(&path) => captures.push(path),
                // Other files, and what is never opened: broken links, pipes (opening one
                // would block), sockets, devices.
                _ => others.push(path),
            }
        }
    }
    captures.sort();
    others.sort();
    Ok((captures, others))
}

/// Whether a file starts as a capture does (a pcap file in either byte order, with micro-
/// or nanosecond timestamps, or a pcapng section header), once decompressed if it is
/// compressed with gzip or zstd. One that cannot be read (or decompressed) is taken, so
/// the run names the error rather than the walk hiding the file.
fn starts_like_a_capture(path: &Path) -> bool {
    match compressed::first_bytes(path, format::MAGIC_LEN) {
        Ok(magic) => format::sniff(&magic).is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::UnexpectedEof,
    }
}
