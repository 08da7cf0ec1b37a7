//! `exwatch learn`: topologies drafted from traffic, and compared with a site's.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use exwatch::policy::{Role, Topology};
use exwatch::testkit::synth;

use crate::util::{analyze, exwatch, repo};

/// Runs `exwatch learn` on `files` with extra arguments: (status, stdout, stderr).
fn learn(files: &[PathBuf], extra: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = vec!["learn".into(), "--no-progress".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    exwatch(&args)
}

/// The addresses listed under `role` in a drafted topology.
fn listed(draft: &str, role: &str) -> Vec<String> {
    let table: toml::Table =
        toml::from_str(draft).unwrap_or_else(|e| panic!("draft is not TOML: {e}\n{draft}"));
    table["roles"]
        .get(role)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).map(String::from).collect())
        .unwrap_or_default()
}

/// `exwatch check` accepts the draft with no lint.
fn passes_check(draft: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("draft.toml");
    std::fs::write(&path, draft).expect("write draft");
    let (status, stdout, stderr) = exwatch(&["check", "--topology", path.to_str().expect("utf-8 path")]);
    assert_eq!(status, 0, "check refused the draft:\n{stdout}{stderr}\n{draft}");
}

/// `exwatch check` refuses a draft with no Mailbox and no Edge server, as analyze would.
fn refused_by_check(draft: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("draft.toml");
    std::fs::write(&path, draft).expect("write draft");
    let (status, _, stderr) = exwatch(&["check", "--topology", path.to_str().expect("utf-8 path")]);
    assert_eq!(status, 2, "check accepted a draft analyze would refuse:\n{stderr}\n{draft}");
    assert!(stderr.contains("lists no Mailbox and no Edge server"), "{stderr}");
}

/// The real Active Directory captures under captures/real/.
fn ad_captures() -> Vec<PathBuf> {
    let dir = repo().join("captures/real");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("captures/real")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            ["kerberos-", "ldap-", "msrpc-"].iter().any(|s| name.starts_with(s))
                || name == "cldap-udp-389.pcap"
        })
        .collect();
    files.sort();
    files
}

#[test]
fn real_kerberos_and_ldap_servers_are_drafted_as_domain_controllers() {
    let files = ad_captures();
    assert_eq!(files.len(), 8, "{files:?}");
    let (status, draft, stderr) = learn(&files, &[]);
    // No Exchange server in these captures: the draft is written, and learn says it
    // would be refused as it stands (status 2), as check and analyze would.
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("the draft lists no Mailbox and no Edge server"), "{stderr}");
    let dcs = listed(&draft, "domain_controller");
    // Every host that answers Kerberos (88) or LDAP (389, CLDAP included) in them.
    for host in ["192.169.160.131", "192.168.1.32", "192.168.10.186", "192.168.122.3", "127.0.1.1"] {
        assert!(dcs.contains(&host.to_string()), "{host} missing from {dcs:?}\n{draft}");
    }
    assert_eq!(dcs.len(), 5, "{draft}");
    // RPC and SMB alone (the NetLogon captures' server) are named, not given a role.
    assert!(draft.contains("# 172.16.5.58: answered 135 from 1 host, 445 from 1 host"), "{draft}");
    refused_by_check(&draft);
}

#[test]
fn the_sample_is_drafted_and_compared_with_its_topology() {
    let sample = repo().join("captures/sample-contoso.pcap");
    let (status, draft, stderr) = learn(std::slice::from_ref(&sample), &[]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(listed(&draft, "edge"), ["172.16.0.25"]);
    assert_eq!(listed(&draft, "domain_controller"), ["10.10.0.5", "10.10.0.6"]);
    assert_eq!(listed(&draft, "mailbox"), ["10.10.1.11", "10.10.1.12", "10.10.2.11"]);
    assert_eq!(listed(&draft, "internal_client"), ["10.20.0.0/16"]);
    passes_check(&draft);

    let topology = repo().join("rules/topology.toml");
    let (status, out, stderr) = learn(&[sample], &["--topology", topology.to_str().expect("utf-8")]);
    // The sample's Skype server only opens two connections, and its IPv6 Mailbox server
    // answers HTTPS to six hosts, once each: too little to judge either, and said so
    // (not "never acted like"), which is no difference with the topology.
    assert_eq!(status, 0, "{out}{stderr}");
    assert!(out.contains("not_enough_evidence: 10.10.3.20 is listed as skype: not enough evidence"), "{out}");
    assert!(
        out.contains("not_enough_evidence: 2001:db8:10::11 is listed as mailbox: not enough evidence"),
        "{out}"
    );
    assert!(!out.contains("never_acted"), "{out}");
    assert!(
        out.ends_with(
            "0 difference(s) with the traffic; 2 listed host(s) with not enough evidence to judge\n"
        ),
        "{out}"
    );
}

/// Writes a capture of the organization in `tests/fixtures/learn/{name}.toml`.
fn generate(name: &str, packets: u64) -> (tempfile::TempDir, PathBuf, Topology, Vec<synth::Expected>) {
    let path = repo().join(format!("tests/fixtures/learn/{name}.toml"));
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join(format!("{name}.pcap"));
    let file = std::io::BufWriter::new(std::fs::File::create(&pcap).expect("create pcap"));
    let mut writer = synth::wire::PcapWriter::new(file, 1).expect("pcap header");
    let options = synth::OrgOptions { packets, seed: 7, ..Default::default() };
    let expected = synth::site(&topology, &options, |ts, frame| writer.write(ts, frame, frame.len() as u32))
        .expect("generate");
    std::io::Write::flush(&mut writer.into_inner()).expect("flush");
    (dir, pcap, topology, expected)
}

/// The single hosts a topology lists in `role`.
fn hosts_in(topology: &Topology, role: Role) -> BTreeSet<IpAddr> {
    topology.listings.iter().filter(|l| l.role == role).map(|l| l.prefix.network()).collect()
}

const SERVER_ROLES: [Role; 5] = [Role::Mailbox, Role::Edge, Role::DomainController, Role::Skype, Role::Dns];

#[test]
fn drafts_of_generated_organizations_find_every_server_in_its_role() {
    // dual-stack: most IPv6 clients are seen with a Mailbox server only, never with a
    // domain controller, in a global /48 that holds no server.
    for name in ["two-sites", "no-edge", "ipv6", "dual-stack"] {
        let (_dir, pcap, truth, _) = generate(name, 30_000);
        let (status, text, stderr) = learn(std::slice::from_ref(&pcap), &[]);
        assert_eq!(status, 0, "{name}: {stderr}");
        passes_check(&text);
        let draft = Topology::parse(Path::new("draft.toml"), &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Recall and precision of host roles, over the server roles.
        let (mut right, mut truths, mut drafted) = (0usize, 0usize, 0usize);
        for role in SERVER_ROLES {
            let (want, got) = (hosts_in(&truth, role), hosts_in(&draft, role));
            truths += want.len();
            drafted += got.len();
            right += want.intersection(&got).count();
        }
        let recall = right as f64 / truths.max(1) as f64;
        let precision = right as f64 / drafted.max(1) as f64;
        println!("{name}: {truths} servers, {drafted} drafted, {right} right: recall {recall:.3}, precision {precision:.3}");
        assert!(
            recall >= 0.95 && precision >= 0.95,
            "{name}: recall {recall}, precision {precision}\n{text}"
        );
        // Subscriptions: the same Edge and Mailbox sets, whatever the site's name.
        let subscriptions = |t: &Topology| -> BTreeSet<(Vec<String>, Vec<String>)> {
            t.subscriptions
                .iter()
                .map(|s| {
                    let mut edge: Vec<String> = s.edge.iter().map(|p| p.to_string()).collect();
                    let mut mailbox: Vec<String> = s.mailbox.iter().map(|p| p.to_string()).collect();
                    edge.sort();
                    mailbox.sort();
                    (edge, mailbox)
                })
                .collect()
        };
        assert_eq!(subscriptions(&draft), subscriptions(&truth), "{name}\n{text}");
        // Every client of the capture is inside a drafted client prefix, and no drafted
        // client prefix holds a server.
        let clients: Vec<_> =
            draft.listings.iter().filter(|l| l.role == Role::InternalClient).map(|l| l.prefix).collect();
        assert!(!clients.is_empty(), "{name}\n{text}");
        for role in SERVER_ROLES {
            for server in hosts_in(&truth, role) {
                assert!(
                    !clients.iter().any(|p| p.contains(server)),
                    "{name}: {server} in a client prefix\n{text}"
                );
            }
        }
        let seen = client_addresses(&pcap, &truth, &repo().join(format!("tests/fixtures/learn/{name}.toml")));
        assert!(seen.len() > 50, "{name}: {} clients", seen.len());
        for client in &seen {
            assert!(
                clients.iter().any(|p| p.contains(*client)),
                "{name}: client {client} outside {clients:?}"
            );
        }
    }
}

/// The internal clients of `truth` that opened a connection in the capture.
/// The clients (by the topology `truth`, loaded from `file`) that opened a flow.
fn client_addresses(pcap: &Path, truth: &Topology, file: &Path) -> BTreeSet<IpAddr> {
    let run =
        analyze(&[pcap], &["--flows", "--fail-on", "never", "--topology", file.to_str().expect("utf-8")]);
    run.flows()
        .iter()
        .filter_map(|f| f["src_ip"].as_str().and_then(|a| a.parse::<IpAddr>().ok()))
        .filter(|a| truth.role_of(*a) == Role::InternalClient)
        .collect()
}

#[test]
fn generated_organizations_give_the_findings_they_expect() {
    for name in ["two-sites", "no-edge", "ipv6"] {
        let (_dir, pcap, _, expected) = generate(name, 10_000);
        let topology = repo().join(format!("tests/fixtures/learn/{name}.toml"));
        let run = analyze(&[&pcap], &["--topology", topology.to_str().expect("utf-8")]);
        let want: Vec<_> = expected
            .iter()
            .map(|e| (e.verdict.name().to_string(), e.rule.to_string(), e.src.to_string(), e.dst.to_string()))
            .collect();
        let mut want = want;
        want.sort();
        assert!(!want.is_empty(), "{name}");
        assert_eq!(run.findings(), want, "{name}: {}", run.stderr);
    }
}

#[test]
fn an_unlisted_mailbox_server_is_named_by_learn_and_by_analyze() {
    let (dir, pcap, _, _) = generate("two-sites", 20_000);
    let text = std::fs::read_to_string(repo().join("tests/fixtures/learn/two-sites.toml")).expect("fixture");
    let without = text.replace("\"10.1.10.13\", ", "").replace(", \"10.1.10.13\"]", "]");
    assert!(!without.contains("10.1.10.13"));
    let topology = dir.path().join("without.toml");
    std::fs::write(&topology, without).expect("write topology");
    let topology = topology.to_str().expect("utf-8");

    let (status, out, stderr) = learn(std::slice::from_ref(&pcap), &["--topology", topology]);
    assert_eq!(status, 1, "{out}{stderr}");
    assert!(out.contains("unlisted: 10.1.10.13 behaves like a Mailbox server: "), "{out}");
    assert!(out.contains("Mailbox servers; the topology does not list it"), "{out}");

    let run = analyze(&[&pcap], &["--topology", topology, "--fail-on", "never"]);
    assert!(run.stderr.contains("warning: 10.1.10.13 behaves like a Mailbox server"), "{}", run.stderr);
    // Said once: the text summary once printed its warnings twice.
    assert_eq!(run.stderr.matches("warning: 10.1.10.13 ").count(), 1, "{}", run.stderr);
    let summary = run.summary.expect("summary");
    let warnings = summary["warnings"].as_array().expect("warnings array");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().is_some_and(|w| w.starts_with("10.1.10.13 behaves like a Mailbox server")));

    // With the whole topology, nothing to say.
    let full = repo().join("tests/fixtures/learn/two-sites.toml");
    let run = analyze(&[&pcap], &["--topology", full.to_str().expect("utf-8"), "--fail-on", "never"]);
    assert_eq!(run.summary.expect("summary")["warnings"], serde_json::json!([]));
}

#[test]
fn generate_without_a_topology_still_writes_the_example_organization() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("contoso.pcap");
    let (status, _, stderr) = exwatch(&["generate", out.to_str().expect("utf-8"), "--packets", "5000"]);
    assert_eq!(status, 0, "{stderr}");
    let mut expected = Vec::new();
    let mut writer = synth::wire::PcapWriter::new(&mut expected, 1).expect("header");
    let options = synth::OrgOptions { packets: 5000, ..Default::default() };
    synth::organization(&options, |ts, frame| writer.write(ts, frame, frame.len() as u32)).expect("generate");
    assert!(std::fs::read(&out).expect("written") == expected, "generate changed without --topology");
}

#[test]
fn generate_and_learn_from_the_command_line_on_a_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = repo().join("tests/fixtures/learn/no-edge.toml");
    let (pcap, expected) = (dir.path().join("a/site.pcap"), dir.path().join("expected.tsv"));
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::write(dir.path().join("a/README.txt"), "not a capture").expect("write");
    let (status, _, stderr) = exwatch(&[
        "generate",
        pcap.to_str().expect("utf-8"),
        "--packets",
        "8000",
        "--topology",
        fixture.to_str().expect("utf-8"),
        "--expected",
        expected.to_str().expect("utf-8"),
    ]);
    assert_eq!(status, 0, "{stderr}");
    let findings = std::fs::read_to_string(&expected).expect("expected findings");
    assert!(findings.lines().all(|l| l.split('\t').count() == 4) && !findings.is_empty(), "{findings}");
    // A directory is read as analyze reads it, the file that is not a capture skipped.
    let draft = dir.path().join("draft.toml");
    let (status, _, stderr) =
        learn(&[dir.path().join("a")], &["-o", draft.to_str().expect("utf-8"), "--workers", "1"]);
    assert_eq!(status, 0, "{stderr}");
    // The same notice as analyze's: one input type serves both commands.
    assert!(stderr.contains("1 file in ") && stderr.contains("is not a capture, skipped: "), "{stderr}");
    let text = std::fs::read_to_string(&draft).expect("draft");
    assert_eq!(listed(&text, "mailbox"), ["192.168.20.11", "192.168.20.12"], "{text}");
    assert_eq!(listed(&text, "skype"), ["192.168.30.20"], "{text}");
    let (status, out, _) = learn(&[pcap], &["--topology", fixture.to_str().expect("utf-8")]);
    assert_eq!((status, out.trim_end().ends_with("0 difference(s) with the traffic")), (0, true), "{out}");
}

#[test]
fn many_unlisted_hosts_are_counted_past_ten_lines() {
    // Another organization's capture judged with the example topology: its servers and
    // client prefixes act like roles the topology does not list, named ten at a time,
    // the rest counted. (This once leaned on the pool generator's IPv4-mapped addresses,
    // each a client prefix of its own.)
    let (_dir, pcap, _, _) = generate("two-sites", 20_000);
    let run = analyze(&[&pcap], &["--fail-on", "never"]);
    let warnings = run.summary.expect("summary")["warnings"].as_array().expect("warnings array").clone();
    assert_eq!(warnings.len(), 11, "{warnings:?}");
    let last = warnings[10].as_str().expect("text");
    let more: usize = last.split(' ').next().and_then(|n| n.parse().ok()).expect("a count first");
    assert!(more > 0 && last.ends_with("`exwatch learn --topology` lists them all"), "{last}");
    assert_eq!(run.stderr.lines().filter(|l| l.starts_with("warning: ")).count(), 11, "{}", run.stderr);
}

/// Client-side captures: one client's view of a Mailbox server, which answers it alone.
mod client_side {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};

    use exwatch::decode::tcp_flags::{ACK, FIN, SYN};
    use exwatch::testkit::synth::wire::Segment;
    use exwatch::testkit::synth::Scenario;

    use super::{learn, listed, passes_check};

    /// TCP's push flag (data segments carry it).
    const PSH: u8 = 0x08;
    const CLIENT: &str = "10.30.0.7";
    const MAILBOX: &str = "10.40.1.11";
    const DC: &str = "10.40.0.5";

    fn at(host: &str, port: u16) -> SocketAddr {
        SocketAddr::new(host.parse().expect("address"), port)
    }

    /// A TCP connection in which each side says its lines in turn, `lines[0]` first.
    /// `server_first`: the server speaks first (a greeting), else the client.
    fn dialogue(
        scenario: &mut Scenario,
        client: SocketAddr,
        server: SocketAddr,
        lines: &[&[u8]],
        server_first: bool,
    ) {
        let tcp = |flags, seq, payload| Segment::Tcp { flags, seq, ack: 1, payload };
        scenario.send(client, server, tcp(SYN, 1000, &[]));
        scenario.send(server, client, tcp(SYN | ACK, 5000, &[]));
        scenario.send(client, server, tcp(ACK, 1001, &[]));
        let mut seq = [1001u32, 5001u32];
        for (i, line) in lines.iter().enumerate() {
            let from_server = (i % 2 == 0) == server_first;
            let (src, dst, side) = if from_server { (server, client, 1) } else { (client, server, 0) };
            scenario.send(src, dst, tcp(PSH | ACK, seq[side], line));
            seq[side] += line.len() as u32;
        }
        scenario.send(client, server, tcp(FIN | ACK, seq[0], &[]));
        scenario.send(server, client, tcp(FIN | ACK, seq[1], &[]));
        scenario.send(client, server, tcp(ACK, seq[0] + 1, &[]));
    }

    /// A DCE/RPC bind (little-endian NDR) of one presentation context: the interface
    /// `uuid` (as written, `a4f1db00-ca47-1067-b31f-00dd010662da`) over NDR.
    fn rpc_bind(uuid: &str, version: u16) -> Vec<u8> {
        let hex: String = uuid.chars().filter(|c| *c != '-').collect();
        let raw: Vec<u8> =
            (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect();
        let mut ndr = raw.clone();
        ndr[0..4].reverse();
        ndr[4..6].reverse();
        ndr[6..8].reverse();
        let ndr_syntax: [u8; 16] =
            [0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60];
        let mut pdu = vec![5, 0, 11, 3, 0x10, 0, 0, 0, 72, 0, 0, 0, 1, 0, 0, 0];
        pdu.extend([0xd0, 0x16, 0xd0, 0x16, 0, 0, 0, 0]); // max_xmit_frag, max_recv_frag, assoc group
        pdu.extend([1, 0, 0, 0]); // one context
        pdu.extend([0, 0, 1, 0]); // context id 0, one transfer syntax
        pdu.extend(&ndr);
        pdu.extend(version.to_le_bytes());
        pdu.extend([0, 0]);
        pdu.extend(ndr_syntax);
        pdu.extend([2, 0, 0, 0]);
        assert_eq!(pdu.len(), 72);
        pdu
    }

    fn bind_ack() -> Vec<u8> {
        let mut pdu = vec![5, 0, 12, 3, 0x10, 0, 0, 0, 60, 0, 0, 0, 1, 0, 0, 0];
        pdu.resize(60, 0);
        pdu
    }

    fn smtp(scenario: &mut Scenario, port: u16, banner: &[u8]) {
        let lines: [&[u8]; 6] = [
            banner,
            b"EHLO pc7.contoso.example\r\n",
            b"250-mail.contoso.example Hello [10.30.0.7]\r\n250-SIZE 37748736\r\n250 STARTTLS\r\n",
            b"QUIT\r\n",
            b"221 2.0.0 Service closing transmission channel\r\n",
            b"",
        ];
        dialogue(scenario, at(CLIENT, port), at(MAILBOX, 25), &lines[..5], true);
    }

    const EXCHANGE_SMTP: &[u8] =
        b"220 mail.contoso.example Microsoft ESMTP MAIL Service ready at Fri, 4 Dec 2026 22:10:04 +0000\r\n";

    fn write(scenario: &Scenario, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        scenario.write_pcap(&path).expect("write pcap");
        path
    }

    /// The site's topology, as it is: the Mailbox server, a domain controller, the clients.
    fn topology(dir: &Path) -> PathBuf {
        let path = dir.join("site.toml");
        std::fs::write(
            &path,
            format!(
                "[organization]\nname = \"site\"\n\n[roles]\nmailbox = [\"{MAILBOX}\"]\ndomain_controller = [\"{DC}\"]\ninternal_client = [\"10.30.0.0/16\"]\n"
            ),
        )
        .expect("write topology");
        path
    }

    /// Learn drafts the server as Mailbox, and compared with the site's topology finds
    /// no difference (the domain controller, seen in one packet, not enough evidence).
    /// `said` is what the draft's comment says of it, `app` the app_proto it answered with.
    fn drafts_the_mailbox_server(scenario: &mut Scenario, what: &str, said: &str, app: &str) {
        // The domain controller: one datagram from the client, never answered.
        scenario.send(
            at(CLIENT, 50_000),
            at(DC, 389),
            Segment::Udp { payload: &[0x30, 0x84, 0, 0, 0, 0x30] },
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pcap = write(scenario, dir.path(), "client.pcap");
        let (status, draft, stderr) = learn(std::slice::from_ref(&pcap), &[]);
        assert_eq!(status, 0, "{what}: {stderr}\n{draft}");
        assert_eq!(listed(&draft, "mailbox"), [MAILBOX], "{what}\n{draft}");
        let line = draft.lines().find(|l| l.contains(&format!("\"{MAILBOX}\""))).expect("its line");
        assert!(line.contains(&format!("; said {said} to 1 host")), "{what}: {line}");
        assert!(line.contains(&format!("; app_proto {app};")), "{what}: {line}");
        assert_eq!(listed(&draft, "internal_client"), ["10.30.0.0/24"], "{what}\n{draft}");
        passes_check(&draft);
        let site = topology(dir.path());
        let (status, out, stderr) = learn(&[pcap], &["--topology", site.to_str().expect("utf-8")]);
        assert_eq!(status, 0, "{what}: {out}{stderr}");
        assert!(!out.contains(MAILBOX), "{what}: {out}");
        assert!(!out.contains("never_acted"), "{what}: {out}");
        assert!(
            out.contains(&format!(
                "not_enough_evidence: {DC} is listed as domain_controller: not enough evidence"
            )),
            "{what}: {out}"
        );
    }

    #[test]
    fn an_exchange_smtp_greeting_to_one_client_drafts_a_mailbox_server() {
        let mut scenario = Scenario::new();
        smtp(&mut scenario, 51_000, EXCHANGE_SMTP);
        scenario.tcp_session(at(CLIENT, 51_001), at(MAILBOX, 443), 2);
        let said = "the SMTP greeting \"Microsoft ESMTP MAIL Service\"";
        drafts_the_mailbox_server(&mut scenario, "SMTP", said, "smtp, tls");
    }

    #[test]
    fn an_exchange_imap4_greeting_to_one_client_drafts_a_mailbox_server() {
        let mut scenario = Scenario::new();
        let lines: [&[u8]; 3] = [
            b"* OK The Microsoft Exchange IMAP4 service is ready. [TQBCAFgAMAAxAC4AYwBvAG4AdABvAHMAbwA=]\r\n",
            b"a1 CAPABILITY\r\n",
            b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=NTLM STARTTLS\r\na1 OK CAPABILITY completed.\r\n",
        ];
        dialogue(&mut scenario, at(CLIENT, 52_000), at(MAILBOX, 143), &lines, true);
        drafts_the_mailbox_server(&mut scenario, "IMAP4", "the Exchange IMAP4 greeting", "imap");
    }

    #[test]
    fn a_mapi_bind_over_rpc_from_one_client_drafts_a_mailbox_server() {
        let mut scenario = Scenario::new();
        // The endpoint mapper on 135, then EMSMDB and NSPI bound on the port it named.
        let epm = rpc_bind("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3);
        dialogue(&mut scenario, at(CLIENT, 53_000), at(MAILBOX, 135), &[&epm, &bind_ack()], false);
        let emsmdb = rpc_bind("a4f1db00-ca47-1067-b31f-00dd010662da", 4813);
        dialogue(&mut scenario, at(CLIENT, 53_001), at(MAILBOX, 59_532), &[&emsmdb, &bind_ack()], false);
        let nspi = rpc_bind("f5cc5a18-4264-101a-8c59-08002b2f8426", 56);
        dialogue(&mut scenario, at(CLIENT, 53_002), at(MAILBOX, 59_533), &[&nspi, &bind_ack()], false);
        let said = "MAPI (EMSMDB) bound over RPC to 1 host, the address book (NSPI) bound over RPC";
        drafts_the_mailbox_server(&mut scenario, "MAPI", said, "dcerpc");
    }

    #[test]
    fn without_what_exchange_says_one_clients_view_is_not_enough_evidence() {
        // Another mail server's greeting, and HTTPS: what a Mailbox server answers too,
        // to one host only, which is no ground for "never acted like a Mailbox server".
        let mut scenario = Scenario::new();
        smtp(&mut scenario, 51_000, b"220 mail.contoso.example ESMTP Postfix\r\n");
        for port in 51_001..51_012 {
            scenario.tcp_session(at(CLIENT, port), at(MAILBOX, 443), 1);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let pcap = write(&scenario, dir.path(), "client.pcap");
        let (status, draft, _) = learn(std::slice::from_ref(&pcap), &[]);
        assert_eq!((status, listed(&draft, "mailbox").len()), (2, 0), "{draft}");
        let site = topology(dir.path());
        let (status, out, stderr) = learn(&[pcap], &["--topology", site.to_str().expect("utf-8")]);
        assert_eq!(status, 0, "{out}{stderr}");
        assert!(
            out.contains(&format!("not_enough_evidence: {MAILBOX} is listed as mailbox: not enough evidence to judge it: in 12 answered flows with 1 hosts it answered 25 from 1 host, 443 from 1 host")),
            "{out}"
        );
        assert!(!out.contains("never_acted"), "{out}");
    }
}

#[test]
fn a_dual_stack_port_has_every_client_address_inside_a_drafted_prefix() {
    // The busy port of `generate --pool`: clients on 10.20.0.0/16 and on one IPv6 /64 of
    // a global /48 that holds no server, whose domain controllers answer on IPv4 only;
    // the Internet clients are public IPv4 hosts.
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("pool.pcap");
    let path = pcap.to_str().expect("utf-8");
    let (status, _, stderr) = exwatch(&["generate", path, "--pool", "2000", "--packets", "60000"]);
    assert_eq!(status, 0, "{stderr}");
    let (_, text, stderr) = learn(std::slice::from_ref(&pcap), &[]);
    let draft = Topology::parse(Path::new("draft.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    let prefixes: Vec<_> =
        draft.listings.iter().filter(|l| l.role == Role::InternalClient).map(|l| l.prefix).collect();
    let mailboxes = hosts_in(&draft, Role::Mailbox);
    let run = analyze(&[&pcap], &["--flows", "--fail-on", "never"]);
    let clients: BTreeSet<IpAddr> = run
        .flows()
        .iter()
        .filter(|f| {
            f["proto"] == "TCP" && [25, 80, 443, 587, 993].contains(&f["dest_port"].as_u64().unwrap_or(0))
        })
        .filter(|f| {
            f["dest_ip"].as_str().and_then(|a| a.parse().ok()).is_some_and(|a| mailboxes.contains(&a))
        })
        .filter_map(|f| f["src_ip"].as_str().and_then(|a| a.parse::<IpAddr>().ok()))
        .filter(|a| match a {
            IpAddr::V4(v4) => v4.is_private(),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
        })
        .collect();
    let v6 = clients.iter().filter(|a| a.is_ipv6()).count();
    assert!(v6 > 100 && clients.len() > 1000, "{v6} IPv6 clients of {}", clients.len());
    let outside: Vec<&IpAddr> =
        clients.iter().filter(|c| !prefixes.iter().any(|p| p.contains(**c))).collect();
    assert!(
        outside.is_empty(),
        "{} of {} clients outside {prefixes:?}: {:?}",
        outside.len(),
        clients.len(),
        &outside[..outside.len().min(5)]
    );
}
