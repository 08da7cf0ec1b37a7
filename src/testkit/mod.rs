//! Test support: never on the packet path of `analyze` or `live`.
//!
//! - [`synth`] builds captures of an Exchange organization, with the findings they must
//!   give: for tests, benches, the bundled sample and `exwatch generate`.
//! - [`fuzzing`] holds the fuzz targets' bodies, which the `fuzz/` crate runs under
//!   libFuzzer and `cargo test` runs under proptest.

pub mod fuzzing;
pub mod synth;
