//! What an operator meets around the runs themselves (issue 13): how output errors end a
//! run, the version, the configuration file, completions and the man page, the shipped
//! systemd unit and logrotate snippet.

use crate::util::{capture, exwatch};

/// Offline, an EVE log that cannot be written ends the run with status 2 and a line
/// naming the log (the run can be done again; a live capture counts and goes on).
#[test]
fn analyze_to_a_full_device_exits_2_naming_the_log() {
    let sample = capture("sample-contoso.pcap");
    let (status, _, stderr) =
        exwatch(&["analyze", sample.to_str().expect("UTF-8 path"), "--no-progress", "--eve-log", "/dev/full"]);
    assert_eq!(status, 2, "stderr:\n{stderr}");
    assert!(stderr.contains("/dev/full") && stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
