//! Captures built in code: hand-written scenarios for tests ([`Scenario`], in
//! `scenario.rs`), and generators of a busy Exchange organization that know which
//! findings they should produce (`org.rs`): the example topology in
//! `rules/topology.toml` ([`organization`]; tests, benches and the bundled sample use
//! it), or any topology ([`site`], behind `exwatch generate --topology`).

pub mod alerts;
mod org;
pub mod pool;
mod scenario;
mod site;
pub mod wire;

pub use org::{flood, organization, Expected, OrgOptions};
pub use scenario::{Scenario, SynthFrame};
pub use site::site;

use crate::decode::tcp_flags;
use crate::time::Ts;

/// 2026-11-27T04:55:14Z: where synthetic captures start.
pub const EPOCH: Ts = Ts(1_795_755_314_000_000_000);

const SYN: u8 = tcp_flags::SYN;
const ACK: u8 = tcp_flags::ACK;
const FIN: u8 = tcp_flags::FIN;
const RST: u8 = tcp_flags::RST;
const PSH: u8 = 0x08;

/// Small deterministic generator (splitmix64): the same seed gives the same capture.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}
