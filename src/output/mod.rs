//! What exwatch writes: EVE events ([`eve`]), where they go ([`Sink`]), the bound on
//! how many alerts reach them ([`bound`]), and the end-of-run [`summary`].
//!
//! This module formats; it never decides. Verdicts come in already made, counters come
//! in as a plain snapshot.

pub mod bound;
pub mod detail;
pub mod eve;
pub mod redis;
pub mod soc;
pub mod socket;
pub mod summary;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

pub use summary::Summary;

/// Where EVE lines go.
#[derive(Clone, Debug)]
pub enum Sink {
    Stdout,
    /// A file, appended to (as Suricata does: a shipper tailing it loses nothing of the
    /// next run or a restart), or created anew (`compare`'s findings, written files).
    File {
        path: PathBuf,
        append: bool,
    },
    /// A socket, as Suricata's `unix_stream` and `syslog` filetypes ([`socket`]).
    Socket(socket::Filetype, PathBuf),
    /// Formatted, then thrown away (benchmarks, which measure the formatting too).
    Discard,
    /// No EVE output: events are not even formatted; only an observer sees them
    /// (`exwatch learn`, a report alone).
    Off,
}

impl Sink {
    /// `-` is standard output; a file is appended to, or created anew.
    pub fn at(path: &std::path::Path, append: bool) -> Sink {
        if path.as_os_str() == "-" {
            Sink::Stdout
        } else {
            Sink::File { path: path.to_path_buf(), append }
        }
    }

    /// Opens the sink for writing. Standard output is written through a duplicate of
    /// its descriptor, unbuffered, so every write's outcome is known.
    pub fn open(&self) -> io::Result<EveOut> {
        let file = match self {
            Sink::Stdout => Some(File::from(io::stdout().as_fd().try_clone_to_owned()?)),
            Sink::File { path, append: false } => Some(File::create(path)?),
            Sink::File { path, append: true } => {
                Some(OpenOptions::new().create(true).append(true).open(path)?)
            }
            Sink::Socket(filetype, path) => {
                return Ok(EveOut {
                    file: None,
                    socket: Some(socket::SocketOut::connect(filetype, path)?),
                    tee: None,
                })
            }
            Sink::Discard | Sink::Off => None,
        };
        Ok(EveOut { file, socket: None, tee: None })
    }

    /// The file written to, if the sink is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Sink::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Stdout => f.write_str("standard output"),
            Sink::File { path, .. } => write!(f, "{}", path.display()),
            Sink::Socket(socket::Filetype::UnixStream, path) => write!(f, "unix socket {}", path.display()),
            Sink::Socket(_, path) => write!(f, "syslog {}", path.display()),
            Sink::Discard | Sink::Off => f.write_str("no EVE log"),
        }
    }
}

/// An open sink: a file (standard output included, through its descriptor), or nothing.
#[derive(Debug)]
pub struct EveOut {
    file: Option<File>,
    socket: Option<socket::SocketOut>,
    /// Sees every byte written (`--redis`).
    tee: Option<redis::Tee>,
}

impl EveOut {
    /// Hands every line written to `tee` as well (the publisher to Redis).
    pub fn with_tee(mut self, tee: Option<redis::Tee>) -> EveOut {
        self.tee = tee;
        self
    }

    /// The tee, to hand to the sink when it is opened again.
    pub fn take_tee(&mut self) -> Option<redis::Tee> {
        self.tee.take()
    }

    /// Removes the last `bytes` written (a line that could not be finished), so the log
    /// never keeps half a line. Only a regular file can be cut; a pipe cannot, and is
    /// left as it is (Err).
    pub fn cut(&mut self, bytes: u64) -> io::Result<()> {
        if let Some(tee) = &mut self.tee {
            tee.forget_partial();
        }
        if self.socket.is_some() {
            return Err(io::Error::other("not a regular file"));
        }
        let Some(file) = &mut self.file else { return Ok(()) };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let len = meta.len().saturating_sub(bytes);
        file.set_len(len)?;
        // A file not opened for appending writes at its offset, which must not stay
        // past the new end (the gap would read as zeros).
        file.seek(SeekFrom::Start(len)).map(|_| ())
    }
}

impl Write for EveOut {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = match (&mut self.socket, &mut self.file) {
            (Some(socket), _) => socket.write(bytes)?,
            (None, Some(file)) => file.write(bytes)?,
            (None, None) => bytes.len(),
        };
        if let Some(tee) = &mut self.tee {
            tee.offer(&bytes[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
