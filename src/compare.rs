//! Two capture points, one packet: finds TCP handshake packets whose options were
//! rewritten between them (MSS clamping, stripped options), the "altered bits on the
//! wire" the article forbids between Exchange servers.
//!
//! It reads both captures whole, keeps only SYN and SYN-ACK options, and never decodes
//! more than it compares.

use std::collections::HashMap;

use crate::capture::{CaptureError, FrameSource, Next};
use crate::decode::{self, SynOptions, TcpOptions, Ts, Tuple};

/// Handshake packets remembered from the first capture at most; more are counted.
pub const MAX_HANDSHAKES: usize = 1 << 20;

/// A handshake packet seen at both capture points with different options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Altered {
    /// When the second capture point saw it.
    pub ts: Ts,
    pub tuple: Tuple,
    pub flags: u8,
    pub first: TcpOptions,
    pub second: TcpOptions,
}

impl Altered {
    /// What changed, in words.
    pub fn detail(&self) -> String {
        match (self.first.mss, self.second.mss) {
            (Some(a), Some(b)) if a != b => format!("MSS {a} at the first capture point, {b} at the second"),
            (Some(a), None) => format!("MSS option ({a}) stripped between the capture points"),
            _ => format!(
                "TCP options differ: {} bytes at the first capture point, {} at the second",
                self.first.raw().len(),
                self.second.raw().len()
            ),
        }
    }
}

/// What the comparison counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub first_handshakes: u64,
    pub second_handshakes: u64,
    /// Handshake packets seen at both points.
    pub matched: u64,
    /// Handshake packets of the first capture not remembered (table full).
    pub untracked: u64,
}

/// Compares the handshake packets of two captures of the same traffic.
pub fn compare(
    first: &mut dyn FrameSource,
    second: &mut dyn FrameSource,
) -> Result<(Vec<Altered>, Counts), CaptureError> {
    let mut counts = Counts::default();
    let mut seen: HashMap<(Tuple, u32, u8), TcpOptions> = HashMap::new();
    while let Next::Frame(frame) = first.next_frame()? {
        if let Some(SynOptions { tuple, seq, flags, options }) = decode::syn_options(frame.link, frame.data) {
            counts.first_handshakes += 1;
            if seen.len() < MAX_HANDSHAKES {
                seen.entry((tuple, seq, flags)).or_insert(options);
            } else {
                counts.untracked += 1;
            }
        }
    }
    let mut altered = Vec::new();
    while let Next::Frame(frame) = second.next_frame()? {
        let Some(SynOptions { tuple, seq, flags, options }) = decode::syn_options(frame.link, frame.data)
        else {
            continue;
        };
        counts.second_handshakes += 1;
        // Each packet is judged once: a retransmission is the same evidence.
        if let Some(before) = seen.remove(&(tuple, seq, flags)) {
            counts.matched += 1;
            if before != options {
                altered.push(Altered { ts: frame.ts, tuple, flags, first: before, second: options });
            }
        }
    }
    Ok((altered, counts))
}
