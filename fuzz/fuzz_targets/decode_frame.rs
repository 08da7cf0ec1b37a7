//! One frame: the first byte picks the link type, the rest is the frame; decoded, routed, tracked.
//! The body is `exwatch::testkit::fuzzing::decode_frame`, which `cargo test` also runs under proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exwatch::testkit::fuzzing::decode_frame(data);
});
