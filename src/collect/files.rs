//! The collector's files: one EVE log per sensor, `DIR/<host>/eve.json`, appended to,
//! synced before anything they hold is acknowledged, reopened on SIGHUP; and the
//! report, replaced whole (write, fsync, rename) so a reader never sees half of one.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Error;

/// The directory of events that carry no `host`.
pub const UNNAMED: &str = "_unnamed";

/// The directory of lines that are not EVE events exwatch reads.
pub const UNREADABLE: &str = "_unreadable";

/// A sensor's name as a directory name: one path component whatever the name holds
/// (`site-a#3` stays itself; a `/`, a `..` or a control character does not get through).
pub fn dir_name(host: Option<&str>) -> String {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return UNNAMED.to_string();
    };
    let name: String =
        host.chars().map(|c| if c.is_alphanumeric() || "._-#@:+=,".contains(c) { c } else { '_' }).collect();
    if name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// The open sensor files.
pub struct Files {
    out: PathBuf,
    open: HashMap<String, (PathBuf, BufWriter<File>)>,
    /// Written to since the last sync.
    dirty: Vec<String>,
}

impl Files {
    pub fn new(out: &Path) -> Files {
        Files { out: out.to_path_buf(), open: HashMap::new(), dirty: Vec::new() }
    }

    /// Appends one line (its newline added) to `dir`'s file.
    pub fn append(&mut self, dir: &str, line: &[u8]) -> Result<(), Error> {
        if !self.open.contains_key(dir) {
            let folder = self.out.join(dir);
            std::fs::create_dir_all(&folder).map_err(io(&folder))?;
            let path = folder.join("eve.json");
            let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
            self.open.insert(dir.to_string(), (path, BufWriter::with_capacity(1 << 16, file)));
        }
        let Some((path, file)) = self.open.get_mut(dir) else { return Ok(()) };
        file.write_all(line).and_then(|_| file.write_all(b"\n")).map_err(io(path))?;
        if !self.dirty.iter().any(|d| d == dir) {
            self.dirty.push(dir.to_string());
        }
        Ok(())
    }

    /// Flushes and syncs every file written to since the last time: what it holds may
    /// then be acknowledged.
    pub fn sync(&mut self) -> Result<(), Error> {
        for dir in self.dirty.drain(..) {
            if let Some((path, file)) = self.open.get_mut(&dir) {
                file.flush().map_err(io(path))?;
                file.get_ref().sync_data().map_err(io(path))?;
            }
        }
        Ok(())
    }

    /// Closes every file (they are synced after every batch); each is opened again,
    /// by name, when its next line comes (after logrotate moved it).
    pub fn reopen(&mut self) {
        self.open.clear();
    }
}

/// Each sensor directory under `out` and when its file was last written (Unix time).
pub fn last_written(out: &Path) -> Vec<(String, f64)> {
    let Ok(dirs) = std::fs::read_dir(out) else { return Vec::new() };
    let mut found: Vec<(String, f64)> = dirs
        .flatten()
        .filter_map(|entry| {
            let modified = std::fs::metadata(entry.path().join("eve.json")).ok()?.modified().ok()?;
            let at = modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
            Some((entry.file_name().to_string_lossy().into_owned(), at))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// What the sensors' files may hold of a batch a collector wrote and was killed before
/// it acknowledged: the last `n` lines of each (at most one batch of lines was written
/// and not acknowledged, however it fell across the sensors), as (length, hash) of each
/// line. A line the kill cut in half is not an event: it is cut off the file, to be
/// written again whole.
pub fn written_tails(out: &Path, dirs: &[String], n: usize) -> Result<HashSet<(usize, u64)>, Error> {
    let mut tails = HashSet::new();
    for dir in dirs {
        let path = out.join(dir).join("eve.json");
        let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
        let tail = read_tail(&mut file, n).map_err(io(&path))?;
        let whole = memchr::memrchr(b'\n', &tail).map_or(0, |i| i + 1);
        if whole < tail.len() {
            let len = file.metadata().map_err(io(&path))?.len();
            file.set_len(len - (tail.len() - whole) as u64).map_err(io(&path))?;
            file.sync_data().map_err(io(&path))?;
        }
        for line in tail[..whole].split(|&b| b == b'\n').filter(|l| !l.is_empty()).rev().take(n) {
            tails.insert(line_key(line));
        }
    }
    Ok(tails)
}

/// A line as [`written_tails`] keeps it.
pub fn line_key(line: &[u8]) -> (usize, u64) {
    (line.len(), foldhash::fast::FixedState::with_seed(0x0063_6f6c_6c65_6374).hash_one(line))
}

/// The end of a file holding its last `n` whole lines and whatever follows them.
fn read_tail(file: &mut File, n: usize) -> std::io::Result<Vec<u8>> {
    const STEP: u64 = 1 << 20;
    let len = file.metadata()?.len();
    let mut from = len;
    let mut tail = Vec::new();
    while from > 0 && memchr::memchr_iter(b'\n', &tail).count() <= n {
        let start = from.saturating_sub(STEP);
        let mut chunk = vec![0; (from - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        from = start;
    }
    Ok(tail)
}

/// Replaces `path` with `bytes`: written beside it, synced, renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensor_name_is_one_safe_path_component() {
        assert_eq!(dir_name(Some("site-a#3")), "site-a#3");
        assert_eq!(dir_name(Some("../etc")), "_.._etc");
        assert_eq!(dir_name(Some("a/b")), "a_b");
        assert_eq!(dir_name(Some("..")), "_..");
        assert_eq!(dir_name(Some("")), UNNAMED);
        assert_eq!(dir_name(None), UNNAMED);
    }

    /// The last lines of each file are found, and a half line at the end is cut off.
    #[test]
    fn tails_of_the_sensors_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lines: Vec<String> =
            (0..3000).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(700))).collect();
        std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
        std::fs::write(dir.path().join("a/eve.json"), lines.join("\n") + "\n").expect("write");
        std::fs::write(dir.path().join("b/eve.json"), format!("{}\n{{\"half", lines[7])).expect("write");
        let tails = written_tails(dir.path(), &["a".into(), "b".into()], 2000).expect("tails");
        assert_eq!(tails.len(), 2001);
        assert!(tails.contains(&line_key(lines[2999].as_bytes())));
        assert!(tails.contains(&line_key(lines[1000].as_bytes())));
        assert!(!tails.contains(&line_key(lines[999].as_bytes())), "more than n lines of a");
        assert!(tails.contains(&line_key(lines[7].as_bytes())));
        let b = std::fs::read_to_string(dir.path().join("b/eve.json")).expect("read");
        assert_eq!(b, format!("{}\n", lines[7]), "the half line is cut off");
    }
}
