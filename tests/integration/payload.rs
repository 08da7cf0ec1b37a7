//! What the wire says (SPEC section 2): each direction's first payload named as
//! Suricata's `app_proto`, mid-stream direction from the first payload before the ports,
//! and `plaintext-on-encrypted-port` when a client speaks plain text on a port the
//! article lists as encrypted. Scenarios built in code, on IPv4 and IPv6, and real
//! captures from other projects.

use std::net::SocketAddr;

use exwatch::decode::tcp_flags::{ACK, FIN, SYN};
use exwatch::testkit::synth::wire::{self, Segment};
use exwatch::testkit::synth::Scenario;
use serde_json::Value;

use crate::util::{self, Run};

const MAILBOX: &str = "10.10.1.11";
const MAILBOX_V6: &str = "2001:db8:10::11";
const CLIENT: &str = "10.20.0.5";
const EXTERNAL: &str = "198.51.100.7";
const EXTERNAL_V6: &str = "2001:db8:ff::7";
const PSH: u8 = 0x08;

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().expect("address literal"), port)
}

fn data(s: &mut Scenario, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    s.send(src, dst, Segment::Tcp { flags: PSH | ACK, seq: 1, ack: 1, payload });
}

/// A connection seen from its handshake, the client saying `request` first.
fn session(client: SocketAddr, server: SocketAddr, request: &[u8]) -> Scenario {
    let mut s = Scenario::new();
    s.send(client, server, Segment::Tcp { flags: SYN, seq: 0, ack: 0, payload: &[] });
    s.send(server, client, Segment::Tcp { flags: SYN | ACK, seq: 0, ack: 1, payload: &[] });
    s.send(client, server, Segment::Tcp { flags: ACK, seq: 1, ack: 1, payload: &[] });
    if !request.is_empty() {
        data(&mut s, client, server, request);
        data(&mut s, server, client, &wire::speech(server.port(), false, 200));
    }
    s.send(client, server, Segment::Tcp { flags: FIN | ACK, seq: 1, ack: 1, payload: &[] });
    s.send(server, client, Segment::Tcp { flags: FIN | ACK, seq: 1, ack: 1, payload: &[] });
    s
}

fn run(s: &Scenario, workers: &str) -> Run {
    util::analyze_scenario(s, &["--flows", "--workers", workers])
}

/// (verdict, rule, src, dest) of every alert, sorted.
fn findings(run: &Run) -> Vec<(String, String, String, String)> {
    run.findings()
}

fn only_flow(run: &Run) -> Value {
    let flows = run.flows();
    assert_eq!(flows.len(), 1, "{:?}", run.lines);
    flows[0].clone()
}

#[test]
fn a_mid_stream_flow_is_turned_by_its_first_payload_not_its_ports() {
    // (client, server, what the client says, what the server says, the rule it breaks)
    let cases = [
        // A Mailbox server browsing the Internet from a Windows client port that happens
        // to be EdgeSync's: not the Internet reaching 50636.
        (
            at(MAILBOX, 50636),
            at(EXTERNAL, 8080),
            &b"GET /update HTTP/1.1\r\n"[..],
            &b"HTTP/1.1 200 OK\r\n"[..],
        ),
        (at(MAILBOX_V6, 50636), at(EXTERNAL_V6, 8080), b"GET /update HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n"),
        // A TLS ClientHello from 64327 (DAG replication's port, also a client port).
        (
            at(MAILBOX, 64327),
            at(EXTERNAL, 8443),
            &[22, 3, 1, 0, 0xc8, 1, 0, 0],
            &[22, 3, 3, 0, 0x5a, 2, 0, 0],
        ),
    ];
    for (client, server, request, response) in cases {
        // The server speaks first in the capture: by ports alone the Internet host
        // would be the client (50636 and 64327 are ports the policy names).
        let mut s = Scenario::new();
        data(&mut s, server, client, response);
        data(&mut s, client, server, request);
        data(&mut s, server, client, response);
        for workers in ["1", "2"] {
            let r = run(&s, workers);
            let expected = vec![(
                "violation".to_string(),
                "mailbox-to-external".to_string(),
                client.to_string(),
                server.to_string(),
            )];
            assert_eq!(findings(&r), expected, "{client} -> {server}, {workers} workers: {:?}", r.lines);
            let alert = r.alerts()[0];
            assert_eq!(alert["policy"]["direction"], "inferred");
            let detail = alert["policy"]["detail"].as_str().unwrap_or_default();
            // The server's status line or ServerHello came first, and decided.
            assert!(detail.contains("first payload") && detail.contains("from the server"), "{detail}");
            let flow = only_flow(&r);
            assert_eq!(flow["src_ip"], client.ip().to_string(), "the flow names its client: {flow}");
        }
    }
}

#[test]
fn an_smtp_banner_names_its_sender_the_server() {
    // An Internet mail server's greeting from 25 toward a Mailbox server's 2525 (both
    // ports named by the policy): the Mailbox server opened the connection, to port 25.
    let (mailbox, mta) = (at(MAILBOX, 2525), at(EXTERNAL, 25));
    let mut s = Scenario::new();
    data(&mut s, mta, mailbox, b"220 mx.fabrikam.example ESMTP\r\n");
    data(&mut s, mailbox, mta, b"EHLO mail.contoso.example\r\n");
    let r = run(&s, "1");
    let expected = vec![(
        "violation".into(),
        "outbound-smtp-bypasses-edge".into(),
        mailbox.to_string(),
        mta.to_string(),
    )];
    assert_eq!(findings(&r), expected, "{:?}", r.lines);
    let detail = r.alerts()[0]["policy"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("smtp from the server"), "{detail}");
    assert_eq!(only_flow(&r)["app_proto"], "smtp");
}

#[test]
fn ports_decide_only_when_no_payload_does() {
    // A Mailbox server's dynamic port talking to an Edge's 50636, both ports dynamic:
    // the port the policy names is the service (hint 4), and EdgeSync is allowed.
    let (mailbox, edge) = (at(MAILBOX, 51000), at("172.16.0.25", 50636));
    let mut s = Scenario::new();
    data(&mut s, edge, mailbox, &[23, 3, 3, 0, 40]);
    data(&mut s, mailbox, edge, &[23, 3, 3, 0, 40]);
    let r = run(&s, "1");
    assert!(findings(&r).is_empty(), "{:?}", r.lines);
    let flow = only_flow(&r);
    assert_eq!((flow["src_port"].as_u64(), flow["dest_port"].as_u64()), (Some(51000), Some(50636)), "{flow}");
    assert_eq!(flow["policy"]["rule"], "edgesync");
    assert_eq!(flow["app_proto"], "tls", "TLS application data is tls, from either side");
}

#[test]
fn plain_text_on_an_encrypted_port_is_an_advisory_tls_is_not() {
    let https = at(MAILBOX, 443);
    let cases: [(SocketAddr, &[u8], Option<&str>); 6] = [
        (https, b"GET /owa/ HTTP/1.1\r\n", Some("http")),
        (https, &[22, 3, 1, 0, 0xc8, 1, 0, 0], None),
        (at(MAILBOX, 993), b"a1 LOGIN user pass\r\n", Some("failed")),
        (at(MAILBOX, 995), b"USER alice\r\n", Some("pop3")),
        (at(MAILBOX_V6, 443), b"POST /ews/exchange.asmx HTTP/1.1\r\n", Some("http")),
        // No client payload: nothing to judge.
        (https, b"", None),
    ];
    for (server, request, plain) in cases {
        let client = if server.is_ipv4() { at(CLIENT, 50000) } else { at(EXTERNAL_V6, 50000) };
        for workers in ["1", "2"] {
            let r = run(&session(client, server, request), workers);
            let expected: Vec<_> = plain
                .iter()
                .map(|_| {
                    (
                        "advisory".to_string(),
                        "plaintext-on-encrypted-port".to_string(),
                        client.to_string(),
                        server.to_string(),
                    )
                })
                .collect();
            assert_eq!(findings(&r), expected, "{server} {request:?}: {:?}", r.lines);
            let flow = only_flow(&r);
            match plain {
                Some(app) => {
                    assert_eq!(flow["policy"]["rule"], "plaintext-on-encrypted-port", "{flow}");
                    assert_eq!(r.alerts()[0]["app_proto"], app, "{:?}", r.lines);
                }
                None => assert_ne!(flow["policy"]["rule"], "plaintext-on-encrypted-port", "{flow}"),
            }
        }
    }
}

#[test]
fn a_mid_stream_segment_that_is_not_a_known_protocol_is_not_called_plain_text() {
    // Picked up mid-stream, the first segment seen may start inside a TLS record.
    let (client, server) = (at(CLIENT, 50001), at(MAILBOX, 443));
    let mut s = Scenario::new();
    data(&mut s, client, server, &[0x8e, 0x11, 0x42, 0x07, 0x99, 0x00, 0x13, 0x37]);
    data(&mut s, server, client, &[0x51, 0x23, 0x00, 0x42]);
    let r = run(&s, "1");
    assert!(findings(&r).is_empty(), "{:?}", r.lines);
    assert_eq!(only_flow(&r)["app_proto"], "failed");
}

/// Real captures from other projects: the flow on the service port names the protocol
/// its payload speaks.
#[test]
fn real_captures_name_their_application_protocol() {
    let cases = [
        ("imaps-993.pcapng", 993, "tls"),
        ("pop3s-995.pcapng", 995, "tls"),
        ("smtps-465-implicit-tls.pcapng", 465, "tls"),
        ("imap-plain.pcap", 143, "imap"),
        ("pop3-plain.pcap", 110, "pop3"),
        ("smtp-plain-session.pcap", 25, "smtp"),
        ("smtp-submission-587-auth.pcap", 587, "smtp"),
        ("dns-tcp-53.pcap", 53, "dns"),
        ("msrpc-epm-135-kerberos.pcapng", 135, "dcerpc"),
        ("smb2-readwrite.pcap", 445, "smb"),
        ("ldap-sasl-ntlm.pcap", 389, "ldap"),
        ("bigendian-nanosecond-http.pcap", 8000, "http"),
    ];
    for (file, port, app) in cases {
        let r = util::analyze(&[&util::capture(&format!("real/{file}"))], &["--flows", "--workers", "1"]);
        // Flows that carried payload (a refused SYN carries none, and has no app_proto).
        let named: Vec<&Value> = r
            .flows()
            .into_iter()
            .filter(|f| f["dest_port"].as_u64() == Some(port) && !f["app_proto"].is_null())
            .collect();
        assert!(!named.is_empty(), "{file}: no flow with payload to port {port}");
        for flow in named {
            assert_eq!(flow["app_proto"], app, "{file}: {flow}");
        }
    }
}
