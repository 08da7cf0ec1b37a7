//! What exwatch writes: EVE events ([`eve`]), where they go ([`Sink`]), the bound on
//! how many alerts reach them ([`bound`]), and the end-of-run [`summary`].
//!
//! This module formats; it never decides. Verdicts come in already made, counters come
//! in as a plain snapshot.

pub mod bound;
pub mod eve;
pub mod summary;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

pub use summary::Summary;

/// Where EVE lines go.
#[derive(Clone, Debug)]
pub enum Sink {
    Stdout,
    /// A file, created anew (offline) or appended to (live, so a restart keeps the log).
    File {
        path: PathBuf,
        append: bool,
    },
    /// Formatted, then thrown away (benchmarks, which measure the formatting too).
    Discard,
    /// No EVE output: events are not even formatted; only an observer sees them
    /// (`exwatch learn`, a report alone).
    Off,
}

impl Sink {
    /// `-` is standard output; a file is created anew, or appended to (live).
    pub fn at(path: &std::path::Path, append: bool) -> Sink {
        if path.as_os_str() == "-" {
            Sink::Stdout
        } else {
            Sink::File { path: path.to_path_buf(), append }
        }
    }

    pub fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Sink::Stdout => Box::new(io::stdout()),
            Sink::File { path, append: false } => Box::new(File::create(path)?),
            Sink::File { path, append: true } => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
            Sink::Discard | Sink::Off => Box::new(io::sink()),
        })
    }
}
