//! A whole pcap or pcapng file through the native reader; every frame decoded and tracked.
//! The body is `exwatch::testkit::fuzzing::read_capture`, which `cargo test` also runs under proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exwatch::testkit::fuzzing::read_capture(data);
});
