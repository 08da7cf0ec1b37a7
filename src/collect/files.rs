//! The collector's files: one EVE log per sensor, `DIR/<host>/eve.json`, appended to,
//! synced before anything they hold is acknowledged, reopened on SIGHUP; and the
//! report, replaced whole (write, fsync, rename) so a reader never sees half of one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
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
}
