//! Shared plumbing for the TOML files exwatch reads: errors that name the file, the
//! line and the key, and spans turned into line numbers.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration file that cannot be used. Displays as `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// The key (or rule id) the problem is about.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The text of one configuration file, for turning byte spans into lines.
pub struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    pub fn error(&self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Parses the whole file, mapping TOML and schema errors to a [`ConfigError`].
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|err| {
            let line = err.span().map(|span| self.line_of(span.start));
            ConfigError {
                file: self.file.to_path_buf(),
                line,
                key: String::new(),
                message: err.message().trim_end().to_string(),
            }
        })
    }
}

/// The SHA-256 of a configuration file's text, in lower-case hex: what names the
/// policy and topology an event was judged under (EVE `stats`, the report's header).
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a configuration file, naming it in the error.
pub fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|err| ConfigError {
        file: file.to_path_buf(),
        line: None,
        key: String::new(),
        message: format!("cannot read: {err}"),
    })
}
