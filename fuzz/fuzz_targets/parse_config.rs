//! Topology and policy text through their parsers, the topology lints and the engine.
//! The body is `exwatch::testkit::fuzzing::parse_config`, which `cargo test` also runs under proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exwatch::testkit::fuzzing::parse_config(data);
});
