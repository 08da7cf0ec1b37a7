//! Inputs as they come: captures compressed with gzip or zstd (a week of archives usually
//! is), known by their first bytes whatever their name, and standard input (`-`).
//!
//! A compressed capture is decompressed as it is read, never to a file or to memory in
//! full: the native reader ([`super::Savefile`]) reads the decompressed stream as it reads
//! a plain file, so offsets it reports are offsets in that stream. A stream that stops
//! early or does not decompress is an error from [`Read::read`], which the reader turns
//! into damage at the record where it happened.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;

/// The path that stands for standard input.
pub const STDIN: &str = "-";

/// Whether `path` stands for standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// A compression exwatch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952); members written one after the other are read as one stream,
    /// as `gzip -d` does.
    Gzip,
    /// Zstandard (RFC 8878); frames one after the other likewise, skippable frames
    /// skipped, checksums checked.
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Bytes [`sniff`] needs to tell a compression.
pub const MAGIC_LEN: usize = 4;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression of a stream that starts with `first`, or `None` when it is not one
/// exwatch reads (or fewer bytes than the magic number are given).
pub fn sniff(first: &[u8]) -> Option<Compression> {
    if first.starts_with(&GZIP_MAGIC) {
        Some(Compression::Gzip)
    } else if first.starts_with(&ZSTD_MAGIC) {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// An input opened for reading: its bytes (decompressed when it was compressed), and
/// which compression it had.
pub struct Input {
    pub bytes: Box<dyn Read + Send>,
    pub compression: Option<Compression>,
}

/// Opens a file, or standard input for [`STDIN`].
pub fn open_raw(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    if is_stdin(path) {
        // A file on a duplicate of descriptor 0: unbuffered, so reads go straight into
        // the reader's chunks, and `Send`, unlike a lock on `Stdin`.
        Ok(Box::new(File::from(io::stdin().as_fd().try_clone_to_owned()?)))
    } else {
        Ok(Box::new(File::open(path)?))
    }
}

/// Opens `path` (or standard input) and decompresses it if its first bytes say it is
/// compressed.
pub fn open(path: &Path) -> io::Result<Input> {
    decompressed(open_raw(path)?)
}

/// `raw`, decompressed if its first bytes say it is compressed. The bytes read to tell
/// are given back in front of the rest, so nothing is read twice or lost (a pipe cannot
/// seek).
pub fn decompressed(mut raw: Box<dyn Read + Send>) -> io::Result<Input> {
    let head = read_up_to(&mut raw, MAGIC_LEN)?;
    let compression = sniff(&head);
    let whole: Box<dyn Read + Send> =
        if head.is_empty() { raw } else { Box::new(io::Cursor::new(head).chain(raw)) };
    let bytes: Box<dyn Read + Send> = match compression {
        None => whole,
        Some(Compression::Gzip) => Box::new(Named {
            inner: flate2::read::MultiGzDecoder::new(whole),
            compression: Compression::Gzip,
        }),
        Some(Compression::Zstd) => Box::new(Named {
            inner: zstd::stream::read::Decoder::new(whole)?,
            compression: Compression::Zstd,
        }),
    };
    Ok(Input { bytes, compression })
}

/// Up to `len` bytes, fewer only at the end of the stream.
fn read_up_to(reader: &mut dyn Read, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// The first `len` bytes of the capture inside a file (decompressed if it is compressed),
/// fewer if it is shorter: what tells a capture from other files in a directory.
pub fn first_bytes(path: &Path, len: usize) -> io::Result<Vec<u8>> {
    read_up_to(&mut open(path)?.bytes, len)
}

/// The first bytes of a file as they are, [`MAGIC_LEN`] or fewer.
pub fn first_raw_bytes(path: &Path) -> io::Result<Vec<u8>> {
    read_up_to(&mut File::open(path)?, MAGIC_LEN)
}

/// A decompressor whose errors say which decompressor failed, and that a stream cut short
/// is a truncated file, not the end of the capture.
struct Named<R> {
    inner: R,
    compression: Compression,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let name = self.compression.name();
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), format!("the {name} stream ends early (the file is truncated)"))
            } else {
                io::Error::new(e.kind(), format!("{name}: {e}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("compress");
        encoder.finish().expect("compress")
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        zstd::encode_all(bytes, 1).expect("compress")
    }

    fn read_all(compressed: Vec<u8>) -> io::Result<(Option<Compression>, Vec<u8>)> {
        let mut input = decompressed(Box::new(io::Cursor::new(compressed)))?;
        let mut out = Vec::new();
        input.bytes.read_to_end(&mut out)?;
        Ok((input.compression, out))
    }

    /// Bytes that compress, but not to nothing.
    fn content() -> Vec<u8> {
        (0..300_000u32).flat_map(|i| (i % 251 + i / 1000).to_le_bytes()).collect()
    }

    #[test]
    fn plain_bytes_come_back_untouched_however_short() {
        for len in [0, 1, 3, 4, 5, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            assert_eq!(read_all(bytes.clone()).expect("read"), (None, bytes), "{len} bytes");
        }
    }

    #[test]
    fn gzip_and_zstd_are_told_by_their_first_bytes_and_decompressed() {
        let content = content();
        assert_eq!(read_all(gzip(&content)).expect("gzip"), (Some(Compression::Gzip), content.clone()));
        assert_eq!(read_all(zstd(&content)).expect("zstd"), (Some(Compression::Zstd), content));
    }

    #[test]
    fn members_and_frames_one_after_the_other_are_one_stream() {
        let content = content();
        let (a, b) = content.split_at(123_457);
        let two_members = [gzip(a), gzip(b)].concat();
        assert_eq!(read_all(two_members).expect("gzip").1, content);
        // A skippable frame between two frames, as some tools write metadata.
        let skippable = [&0x184d_2a50u32.to_le_bytes()[..], &3u32.to_le_bytes(), b"abc"].concat();
        let frames = [zstd(a), skippable, zstd(b)].concat();
        assert_eq!(read_all(frames).expect("zstd").1, content);
    }

    #[test]
    fn a_truncated_stream_is_an_error_after_what_it_held() {
        let content = content();
        for compressed in [gzip(&content), zstd(&content)] {
            for cut in [compressed.len() / 2, compressed.len() - 1] {
                let mut input =
                    decompressed(Box::new(io::Cursor::new(compressed[..cut].to_vec()))).expect("open");
                let mut out = Vec::new();
                let err = input.bytes.read_to_end(&mut out).expect_err("truncated");
                let name = input.compression.map(Compression::name).unwrap_or_default();
                assert_eq!(err.to_string(), format!("the {name} stream ends early (the file is truncated)"));
                assert!(!out.is_empty() && content.starts_with(&out), "{name}: what was there is kept");
            }
        }
    }

    #[test]
    fn a_corrupt_stream_is_an_error_naming_the_decompressor() {
        let content = content();
        for compressed in [gzip(&content), zstd(&content)] {
            let mut corrupt = compressed.clone();
            let middle = corrupt.len() / 2;
            for b in &mut corrupt[middle..middle + 64] {
                *b ^= 0xa5;
            }
            let err = read_all(corrupt).expect_err("corrupt");
            let name = sniff(&compressed).map(Compression::name).unwrap_or_default();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }
}
