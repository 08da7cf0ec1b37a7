//! Real captures, cross-checked against tshark.
//!
//! captures/real holds small public captures (source, path and licence of each in its
//! MANIFEST.tsv). For each one, the TCP and UDP flows exwatch writes with `--flows` must
//! be the conversations of `tshark -z conv,tcp -z conv,udp`: the same pairs of endpoints,
//! and the same number of packets sent by each end. Every capture is in the table below
//! with what to expect of it; a capture whose flows cannot match tshark says why there.
//!
//! Flows are compared per pair of endpoints, summed: exwatch ends a flow on an idle
//! timeout or a new SYN after a close, where tshark keeps one conversation, and the
//! split is not what this test is about.
//!
//! tshark is required (scripts/setup.sh installs it): without it these tests fail.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use crate::util;

/// What to expect of one capture.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// exwatch's TCP and UDP flows are exactly tshark's conversations.
    Same,
    /// The capture holds fragmented datagrams. tshark (with reassembly off) counts a
    /// datagram's first fragment in its conversation and leaves the later ones out (they
    /// carry no ports); exwatch counts every fragment in the flow. So exwatch must count
    /// more than tshark by exactly the later fragments tshark sees between the same
    /// addresses, in the same direction. The text says what the capture holds.
    LaterFragments(&'static str),
    /// The capture's traffic comes inside VXLAN: tshark also lists the outer UDP
    /// conversation on port 4789, which exwatch looks through to judge the inner flows.
    /// The rest must be the same.
    Vxlan,
    /// The capture holds FIN or RST retransmissions sent after their closed connection
    /// had ended (and its closed timeout passed): exwatch joins them to the ended flow,
    /// whose flow event was written already, where tshark counts them in the
    /// conversation. So exwatch must count fewer than tshark by exactly the late
    /// retransmissions its summary reports, and never more. The text says what they are.
    LateRetransmissions(&'static str),
    /// Not compared, for the reason given.
    Skip(&'static str),
}

use Expect::{LateRetransmissions, LaterFragments, Same, Skip, Vxlan};

/// Declares the table of captures and one test per capture.
macro_rules! captures {
    ($($test:ident: $file:literal => $expect:expr,)*) => {
        /// Every capture in captures/real, with what to expect of it.
        const CAPTURES: &[(&str, Expect)] = &[$(($file, $expect)),*];

        $(
            #[test]
            fn $test() {
                check($file, $expect);
            }
        )*
    };
}

captures! {
    bigendian_nanosecond_http: "bigendian-nanosecond-http.pcap" => Same,
    cldap_udp_389: "cldap-udp-389.pcap" => Same,
    dns_tcp_53: "dns-tcp-53.pcap" => Same,
    dns_udp_tcp_fragmented_v4v6: "dns-udp-tcp-fragmented-v4v6.pcap" => LaterFragments(
        "large DNS answers over UDP split in two: 4 IPv4 and 3 IPv6 datagrams, one later fragment each",
    ),
    http_proxy_3128: "http-proxy-3128.pcap" => Same,
    imap_plain: "imap-plain.pcap" => Same,
    imap_starttls: "imap-starttls.pcap" => Same,
    imaps_993: "imaps-993.pcapng" => Same,
    ipv4_fragments_udp_nfs: "ipv4-fragments-udp-nfs.pcap" => LaterFragments(
        "NFS writes over UDP in 6 fragments each, some fragments sent twice (also after the datagram \
         was complete): 44 later fragments in all",
    ),
    ipv6_hopbyhop_atomic_frag_http: "ipv6-hopbyhop-atomic-frag-http.pcap" => Same,
    // The IPv6 header's destination is an intermediate hop of a Type 0 Routing header:
    // flows are keyed, like tshark's conversations, by the final destination (the
    // routing header's last address), the transport endpoint.
    ipv6_routing_header: "ipv6-routing-header.pcap" => Same,
    kerberos_as_req_segmented_ldap: "kerberos-as-req-segmented-ldap.pcap" => Same,
    kerberos_kinit_udp_tcp: "kerberos-kinit-udp-tcp.pcap" => Same,
    ldap_linux_sll: "ldap-linux-sll.pcapng" => Same,
    ldap_sasl_ntlm: "ldap-sasl-ntlm.pcap" => Same,
    linux_sll_nanosecond_handshake: "linux-sll-nanosecond-handshake.pcap" => Same,
    linux_sll2_http: "linux-sll2-http.pcap" => Same,
    malformed_ip_fragment_garbage: "malformed-ip-fragment-garbage.pcap" => Skip(
        "4 first fragments with contradictory garbage TCP headers share one IP ID with 1248 \
         overlapping later fragments, so which flow a later fragment joins is arbitrary, and tshark \
         leaves the bogus TCP headers out of its table; the damage tests cover this capture",
    ),
    malformed_pcap_invalid_version: "malformed-pcap-invalid-version.pcap" => Skip(
        "unreadable by design (pcap major version 1): tshark and exwatch both refuse it; the damage \
         tests cover it",
    ),
    malformed_pcapng_shb_option_too_long: "malformed-pcapng-shb-option-too-long.pcapng" => Skip(
        "unreadable by design (a section header option runs past its block): tshark and exwatch both \
         refuse it; the damage tests cover it",
    ),
    mixed_http_https_dns_vlan_medium: "mixed-http-https-dns-vlan-medium.pcap" => Same,
    msrpc_epm_135_kerberos: "msrpc-epm-135-kerberos.pcapng" => Same,
    msrpc_netlogon_dynamic_port: "msrpc-netlogon-dynamic-port.pcapng" => Same,
    msrpc_zerologon_epm_dynamic_smb: "msrpc-zerologon-epm-dynamic-smb.pcap" => Same,
    nmap_syn_scan: "nmap-syn-scan.pcap" => Same,
    // The interfaces of this pcapng have different link types (Ethernet, BSD loopback,
    // raw IP): the native reader decodes each frame by its interface's link type
    // (libpcap's reader refuses such a file).
    pcapng_many_interfaces_mixed_linktypes: "pcapng-many-interfaces-mixed-linktypes.pcapng" => Same,
    pcapng_two_interfaces_ns_and_us: "pcapng-two-interfaces-ns-and-us.pcapng" => Same,
    pop3_plain: "pop3-plain.pcap" => Same,
    pop3_starttls_bsd_loopback: "pop3-starttls-bsd-loopback.pcap" => Same,
    pop3s_995: "pop3s-995.pcapng" => Same,
    raw_ip_ipv6_http: "raw-ip-ipv6-http.pcap" => Same,
    sip_tcp_5060: "sip-tcp-5060.pcap" => Same,
    sip_udp_5060: "sip-udp-5060.pcap" => Same,
    smb_dcerpc_dssetup_bigendian: "smb-dcerpc-dssetup-bigendian.pcap" => Same,
    smb2_readwrite: "smb2-readwrite.pcap" => Same,
    smtp_ms_esmtp_attachment: "smtp-ms-esmtp-attachment.pcap" => Same,
    smtp_plain_session: "smtp-plain-session.pcap" => Same,
    smtp_starttls: "smtp-starttls.pcap" => Same,
    smtp_submission_587_auth: "smtp-submission-587-auth.pcap" => Same,
    smtps_465_implicit_tls: "smtps-465-implicit-tls.pcapng" => Same,
    socks5_1080_tls: "socks5-1080-tls.pcap" => Same,
    telnet_23: "telnet-23.pcap" => Same,
    // One record cut to 8 bytes: no flow for either tool.
    truncated_snaplen1_ethernet: "truncated-snaplen1-ethernet.pcap" => Same,
    vlan_qinqinq_http: "vlan-qinqinq-http.pcap" => Same,
    // Encapsulations a SPAN user meets: the inner flows are the conversations.
    erspan_type2_http_midstream: "erspan-type2-http-midstream.pcap" => LateRetransmissions(
        "two FIN or RST retransmissions on 41.108.52.138:54530 <-> 126.203.57.64:80 after that connection had closed and ended"
    ),
    gre_teb_ethernet_http_nbns: "gre-teb-ethernet-http-nbns.pcap" => Same,
    pppoe_session_http: "pppoe-session-http.pcap" => Same,
    vlan_mpls_http_telnet: "vlan-mpls-http-telnet.pcap" => Same,
    vxlan_http: "vxlan-http.pcap" => Vxlan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

/// Packets sent by each end of the flows (or conversations) between two endpoints, keyed
/// by protocol and the two endpoints, lower first: `[sent by the lower, sent by the higher]`.
type Conversations = BTreeMap<(Proto, SocketAddr, SocketAddr), [u64; 2]>;

/// Adds packets that `a` sent to `b` and `b` sent to `a`.
fn add(
    convs: &mut Conversations,
    proto: Proto,
    (a, a_sent): (SocketAddr, u64),
    (b, b_sent): (SocketAddr, u64),
) {
    let (key, sent) =
        if a <= b { ((proto, a, b), [a_sent, b_sent]) } else { ((proto, b, a), [b_sent, a_sent]) };
    let counts = convs.entry(key).or_default();
    counts[0] += sent[0];
    counts[1] += sent[1];
}

fn real(file: &str) -> std::path::PathBuf {
    util::capture(&format!("real/{file}"))
}

fn check(file: &str, expect: Expect) {
    let path = real(file);
    assert!(path.is_file(), "{} is missing", path.display());
    match expect {
        Same => {
            let ((exwatch, late), tshark) = (exwatch_flows(&path), tshark_conversations(&path));
            assert_eq!(late, 0, "{file}: late retransmissions; its row should say so");
            assert!(
                exwatch == tshark,
                "{file}: exwatch's flows differ from tshark's conversations:\n{}",
                differences(&exwatch, &tshark)
            );
        }
        LateRetransmissions(what) => {
            let ((exwatch, late), tshark) = (exwatch_flows(&path), tshark_conversations(&path));
            let (extra, fewer) = excess(&tshark, &exwatch);
            let missing: u64 = extra.values().sum();
            assert!(
                late > 0 && fewer.is_empty() && missing == late,
                "{file} ({what}): exwatch should count tshark's packets less the {late} late retransmissions \
                 it joined to their ended flows; it counts {missing} fewer:\n{}",
                differences(&exwatch, &tshark)
            );
        }
        LaterFragments(what) => {
            let ((exwatch, _), tshark) = (exwatch_flows(&path), tshark_conversations(&path));
            let pairs = |c: &Conversations| c.keys().copied().collect::<Vec<_>>();
            assert!(
                pairs(&exwatch) == pairs(&tshark),
                "{file}: exwatch's endpoint pairs differ from tshark's:\n{}",
                differences(&exwatch, &tshark)
            );
            let (extra, fewer) = excess(&exwatch, &tshark);
            let later = later_fragments(&path);
            assert!(!later.is_empty(), "{file} should hold later fragments ({what})");
            assert!(
                fewer.is_empty() && extra == later,
                "{file} ({what}): exwatch should count tshark's packets plus the later fragments.\n\
                 exwatch's excess per (protocol, sender, receiver): {extra:?}\n\
                 later fragments tshark sees: {later:?}\n{}",
                differences(&exwatch, &tshark)
            );
        }
        Vxlan => {
            let (exwatch, _) = exwatch_flows(&path);
            let mut tshark = tshark_conversations(&path);
            let outer = |(proto, a, b): &(Proto, SocketAddr, SocketAddr)| {
                *proto == Proto::Udp && (a.port() == 4789 || b.port() == 4789)
            };
            assert!(tshark.keys().any(outer), "{file} should hold a VXLAN conversation");
            tshark.retain(|key, _| !outer(key));
            assert!(
                exwatch == tshark,
                "{file}: exwatch's flows differ from tshark's inner conversations:\n{}",
                differences(&exwatch, &tshark)
            );
        }
        Skip(why) => eprintln!("{file}: not compared: {why}"),
    }
}

/// Frames exwatch skips on purpose, per capture: (file, reason code, count, what they are).
/// Any other skip fails the test, so no frame goes unexplained.
const EXPLAINED_SKIPS: &[(&str, &str, u64, &str)] = &[
    ("gre-teb-ethernet-http-nbns.pcap", "not_ip", 10, "ARP requests and replies bridged inside GRE"),
    ("mixed-http-https-dns-vlan-medium.pcap", "not_ip", 10, "4 ARP and 6 CDP frames (2 of them VLAN-tagged)"),
    (
        "smtp-submission-587-auth.pcap",
        "not_ip",
        1,
        "one frame of an unassigned ethertype (tshark: eth:ethertype:data)",
    ),
    (
        "truncated-snaplen1-ethernet.pcap",
        "link_truncated",
        1,
        "its only record holds 8 bytes of a 14-byte Ethernet header",
    ),
];

/// Checks that every frame exwatch skipped in `file` is one the table explains.
fn assert_skips_explained(file: &str, run: &util::Run) {
    let summary = run.summary.as_ref().expect("summary json");
    let mut got: Vec<(String, u64)> = summary["packets"]["skipped_by_reason"]
        .as_object()
        .expect("skipped_by_reason: a map of reason to count")
        .iter()
        .map(|(reason, n)| (reason.clone(), n.as_u64().expect("a count")))
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = EXPLAINED_SKIPS
        .iter()
        .filter(|(f, ..)| *f == file)
        .map(|(_, reason, count, _)| (reason.to_string(), *count))
        .collect();
    want.sort();
    assert_eq!(got, want, "{file}: frames skipped that the table does not explain");
}

/// exwatch's TCP and UDP flows in `path`.
/// exwatch's TCP and UDP flows of the capture, and the late retransmissions its summary
/// says it joined to ended flows.
fn exwatch_flows(path: &Path) -> (Conversations, u64) {
    let run = util::analyze(&[path], &["--flows"]);
    if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
        if run.read_whole() {
            assert_skips_explained(file, &run);
        }
    }
    // 0: clean, 1: policy findings. 2 means the file (or part of it) could not be read,
    // unless it only says the capture is of another network than the example topology.
    assert!(
        run.read_whole(),
        "exwatch failed on {} (status {}):\n{}",
        path.display(),
        run.status,
        run.stderr
    );
    let mut flows = Conversations::new();
    for flow in run.flows() {
        let proto = match flow["proto"].as_str() {
            Some("TCP") => Proto::Tcp,
            Some("UDP") => Proto::Udp,
            _ => continue,
        };
        let end = |ip, port| util::sa(&util::endpoint(ip, port));
        let sent =
            |side: &str| flow["flow"][side].as_u64().unwrap_or_else(|| panic!("flow without {side}: {flow}"));
        add(
            &mut flows,
            proto,
            (end(&flow["src_ip"], &flow["src_port"]), sent("pkts_toserver")),
            (end(&flow["dest_ip"], &flow["dest_port"]), sent("pkts_toclient")),
        );
    }
    let late = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("late retransmissions: "))
        .and_then(|rest| rest.split(' ').next())
        .map_or(0, |n| n.parse().expect("a count"));
    (flows, late)
}

/// Runs tshark with its default preferences (an empty personal configuration directory,
/// so a user's settings cannot change the counts), no name resolution, and IP
/// reassembly off: a first fragment then counts in its conversation as exwatch counts it,
/// rather than the frame that completes the datagram. Returns standard output.
fn tshark(path: &Path, args: &[&str]) -> String {
    let config = tempfile::tempdir().expect("temp dir");
    let output = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", config.path())
        .args(["-n", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-r"])
        .arg(path)
        .args(args)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            panic!("tshark is not installed: these tests check exwatch's flows against it (scripts/setup.sh installs it)")
        }
        Err(err) => panic!("cannot run tshark: {err}"),
    };
    assert!(
        output.status.success(),
        "tshark failed on {} ({}):\n{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tshark writes UTF-8")
}

/// tshark's TCP and UDP conversations in `path`.
fn tshark_conversations(path: &Path) -> Conversations {
    parse_conversations(&tshark(path, &["-q", "-z", "conv,tcp", "-z", "conv,udp"]))
}

/// Parses the tables of `tshark -q -z conv,tcp -z conv,udp`. A heading names each
/// table's protocol; each conversation is one line:
///
/// ```text
/// 10.0.0.1:55145   <-> 10.0.0.138:53   1 162 bytes   1 63 bytes   2 225 bytes   341296274.233   0.0170
/// ```
///
/// that is A, B, then frames and bytes B sent to A (`<-`), A sent to B (`->`), and in
/// total, then start and duration. Bytes come with a unit (bytes, kB, MB...).
fn parse_conversations(text: &str) -> Conversations {
    let mut convs = Conversations::new();
    let mut proto = None;
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = Some(Proto::Tcp);
        } else if line.starts_with("UDP Conversations") {
            proto = Some(Proto::Udp);
        } else if line.contains("<->") {
            let proto = proto.unwrap_or_else(|| panic!("tshark conversation before a table heading: {line}"));
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 12 || fields[1] != "<->" {
                unexpected(line);
            }
            // Frames of a column (frames, bytes, unit), checking the unit is where expected.
            let frames = |column: usize| {
                let at = 3 + 3 * column;
                if !matches!(fields[at + 2], "bytes" | "kB" | "MB" | "GB" | "TB") {
                    unexpected(line);
                }
                fields[at].parse::<u64>().unwrap_or_else(|_| unexpected(line))
            };
            let (b_to_a, a_to_b, total) = (frames(0), frames(1), frames(2));
            if a_to_b + b_to_a != total {
                unexpected(line);
            }
            add(&mut convs, proto, (endpoint(fields[0]), a_to_b), (endpoint(fields[2]), b_to_a));
        }
    }
    convs
}

fn unexpected(line: &str) -> ! {
    panic!("unexpected tshark conversation line (has its format changed?):\n{line}")
}

/// An endpoint as tshark writes it: `192.0.2.1:53`, `2001:db8::1:53` (IPv6 without
/// brackets: the port is after the last colon) or `[2001:db8::1]:53`.
fn endpoint(text: &str) -> SocketAddr {
    text.parse()
        .ok()
        .or_else(|| {
            let (ip, port) = text.rsplit_once(':')?;
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("bad endpoint in tshark's output: {text}"))
}

/// Packets sent, per (protocol, sender address, receiver address).
type Sent = BTreeMap<(Proto, IpAddr, IpAddr), u64>;

/// Later IP fragments (offset above zero) of TCP and UDP datagrams, as tshark sees them.
fn later_fragments(path: &Path) -> Sent {
    let fields = ["ip.proto", "ip.src", "ip.dst", "ipv6.fraghdr.nxt", "ipv6.src", "ipv6.dst"];
    let mut args = vec!["-Y", "ip.frag_offset > 0 || ipv6.fraghdr.offset > 0", "-T", "fields"];
    for field in &fields {
        args.extend(["-e", field]);
    }
    let mut later = Sent::new();
    for line in tshark(path, &args).lines() {
        let values: Vec<&str> = line.split('\t').collect();
        // One of the two triples is empty: IPv4 or IPv6. A tunnel would give lists.
        let (proto, src, dst) = match values[..] {
            [proto, src, dst, "", "", ""] | ["", "", "", proto, src, dst] => (proto, src, dst),
            _ => panic!("unexpected fragment line from tshark: {line:?}"),
        };
        let proto = match proto {
            "6" => Proto::Tcp,
            "17" => Proto::Udp,
            _ => continue,
        };
        let addr = |text: &str| -> IpAddr { text.parse().unwrap_or_else(|_| panic!("bad address {text:?}")) };
        *later.entry((proto, addr(src), addr(dst))).or_default() += 1;
    }
    later
}

/// How many more packets exwatch counts than tshark, per (protocol, sender, receiver),
/// and the (protocol, sender endpoint) of each pair where exwatch counts fewer.
fn excess(exwatch: &Conversations, tshark: &Conversations) -> (Sent, Vec<(Proto, SocketAddr)>) {
    let mut extra = Sent::new();
    let mut fewer = Vec::new();
    for (&(proto, lo, hi), ours) in exwatch {
        let theirs = tshark.get(&(proto, lo, hi)).copied().unwrap_or_default();
        for (sender, receiver, side) in [(lo, hi, 0), (hi, lo, 1)] {
            match ours[side].checked_sub(theirs[side]) {
                Some(0) => {}
                Some(more) => *extra.entry((proto, sender.ip(), receiver.ip())).or_default() += more,
                None => fewer.push((proto, sender)),
            }
        }
    }
    (extra, fewer)
}

/// The pairs of endpoints where exwatch and tshark disagree, one a line.
fn differences(exwatch: &Conversations, tshark: &Conversations) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<_> = exwatch.keys().chain(tshark.keys()).collect();
    for key in keys {
        let (proto, lo, hi) = key;
        let (ours, theirs) = (exwatch.get(key), tshark.get(key));
        if ours != theirs {
            let show = |c: Option<&[u64; 2]>| c.map_or("none".to_string(), |[a, b]| format!("{a} and {b}"));
            let _ = writeln!(
                out,
                "  {proto:?} {lo} <-> {hi}: packets sent by each end: exwatch {}, tshark {}",
                show(ours),
                show(theirs)
            );
        }
    }
    out
}

#[test]
fn every_real_capture_is_in_the_table() {
    let mut on_disk: Vec<String> = std::fs::read_dir(util::capture("real"))
        .expect("captures/real")
        .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pcap") || name.ends_with(".pcapng"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<&str> = CAPTURES.iter().map(|(file, _)| *file).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "captures/real and the table of this test must list the same captures");
}

#[test]
fn every_real_capture_is_attributed() {
    let manifest = std::fs::read_to_string(real("MANIFEST.tsv")).expect("captures/real/MANIFEST.tsv");
    let mut rows = manifest.lines();
    assert!(rows.next().is_some_and(|header| header.starts_with("file\tsource_repo\tsource_path\tlicense")));
    let attributed: Vec<&str> = rows.filter_map(|row| row.split('\t').next()).collect();
    for (file, _) in CAPTURES {
        assert!(attributed.contains(file), "{file} has no line in captures/real/MANIFEST.tsv");
    }
}

#[test]
fn parses_tshark_conversation_tables() {
    let text = "\
================================================================================
UDP Conversations
Filter:<No Filter>
                                                           |       <-      | |       ->      | |     Total     |    Relative    |   Duration   |
                                                           | Frames  Bytes | | Frames  Bytes | | Frames  Bytes |      Start     |              |
10.0.0.1:55145             <-> 10.0.0.138:53                    1 162 bytes       1 63 bytes        2 225 bytes  341296274.233097970         0.0170
================================================================================
TCP Conversations
Filter:<No Filter>
2001:618:400::5199:cc70:35995 <-> 2001:618:1:8000::5:80           12 13 kB          16 2323 bytes      28 15 kB         0.000000000         1.5845
10.0.0.1:55470             <-> 23.221.143.117:80                0 0 bytes        27 1755 bytes      27 1755 bytes  341296282.101992011         0.1385
================================================================================
";
    let convs = parse_conversations(text);
    let sa = util::sa;
    let want = Conversations::from([
        ((Proto::Udp, sa("10.0.0.1:55145"), sa("10.0.0.138:53")), [1, 1]),
        ((Proto::Tcp, sa("10.0.0.1:55470"), sa("23.221.143.117:80")), [27, 0]),
        ((Proto::Tcp, sa("[2001:618:1:8000::5]:80"), sa("[2001:618:400::5199:cc70]:35995")), [12, 16]),
    ]);
    assert_eq!(convs, want);
}

/// Every capture in captures/: the real ones and the bundled sample, in name order.
pub fn every_capture() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(util::repo().join("captures/real"))
        .expect("captures/real")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.push(util::capture("sample-contoso.pcap"));
    files.sort();
    files
}

/// exwatch's own reader and libpcap's must give the same events on every capture in
/// captures/, except where libpcap refuses a file the native reader reads.
#[test]
fn native_and_libpcap_readers_agree_on_every_capture() {
    let files = every_capture();
    for file in &files {
        let native = util::analyze(&[file], &["--flows", "--workers", "1"]);
        let libpcap = util::analyze(&[file], &["--flows", "--workers", "1", "--reader", "libpcap"]);
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "pcapng-many-interfaces-mixed-linktypes.pcapng" {
            assert_eq!(libpcap.status, 2, "libpcap refuses mixed link types");
            assert!(native.read_whole() && native.flows().len() > 10, "{name}: {}", native.stderr);
            continue;
        }
        assert_eq!(native.status, libpcap.status, "{name}: {}\n{}", native.stderr, libpcap.stderr);
        assert_eq!(native.lines, libpcap.lines, "{name}");
    }
}

/// Where frames are decoded (by the reader for a busy worker, or by the workers) must
/// change no event, on every capture in captures/ and with one worker or two, and the
/// summary must count what the reader decoded.
#[test]
fn decoding_in_the_reader_changes_no_event() {
    let files = every_capture();
    let decoded_by_reader = |run: &util::Run| {
        let summary = run.summary.as_ref().expect("summary");
        let read = summary["packets"]["read"].as_u64().expect("packets read");
        let decoded = summary["throughput"]["busy_seconds"]["read_decoded_frames"].as_u64().expect("counted");
        (decoded, read)
    };
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        for workers in ["1", "2"] {
            let flags = |when| ["--flows", "--workers", workers, "--reader-decodes", when];
            let never = util::analyze(&[file], &flags("never"));
            let always = util::analyze(&[file], &flags("always"));
            assert_eq!(never.status, always.status, "{name}: {}\n{}", never.stderr, always.stderr);
            let (mut a, mut b) = (never.lines.clone(), always.lines.clone());
            if workers == "2" {
                // Flow events of different workers interleave as the threads run.
                a.sort();
                b.sort();
            }
            assert_eq!(a, b, "{name}, {workers} workers");
            if never.summary.is_none() && always.summary.is_none() {
                // A file that does not open: nothing was read.
                continue;
            }
            assert_eq!(decoded_by_reader(&never).0, 0, "{name}");
            let (decoded, read) = decoded_by_reader(&always);
            assert_eq!(decoded, read, "{name}: the reader decodes every frame");
        }
    }
}

/// TCP flows in which exwatch saw a sequence gap must be the streams in which tshark's
/// TCP analysis flags a lost segment, on every real capture that both read.
#[test]
fn sequence_gaps_match_tsharks_lost_segments() {
    for (file, expect) in CAPTURES {
        if matches!(expect, Skip(_)) {
            continue;
        }
        let path = real(file);
        let run = util::analyze(&[&path], &[]);
        let gapped = run.summary.as_ref().map(|s| s["flows"]["gapped"].as_u64().unwrap_or(0)).unwrap_or(0);
        let streams: std::collections::BTreeSet<String> =
            // With IP reassembly on: a segment whose bytes sit in later IP fragments (a
            // fragmented tunnel packet) was not lost.
            tshark(&path, &["-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE", "-Y", "tcp.analysis.lost_segment", "-T", "fields", "-e", "tcp.stream"])
                .lines()
                .map(str::to_string)
                .collect();
        assert_eq!(
            gapped,
            streams.len() as u64,
            "{file}: flows with gaps vs tshark's streams with lost segments"
        );
    }
}
