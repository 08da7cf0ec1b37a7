//! `exwatch learn`: topologies drafted from traffic, and compared with a site's.

use std::path::PathBuf;

use crate::util::{exwatch, repo};

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
    assert_eq!(status, 0, "{stderr}");
    let dcs = listed(&draft, "domain_controller");
    // Every host that answers Kerberos (88) or LDAP (389, CLDAP included) in them.
    for host in ["192.169.160.131", "192.168.1.32", "192.168.10.186", "192.168.122.3", "127.0.1.1"] {
        assert!(dcs.contains(&host.to_string()), "{host} missing from {dcs:?}\n{draft}");
    }
    assert_eq!(dcs.len(), 5, "{draft}");
    // RPC and SMB alone (the NetLogon captures' server) are named, not given a role.
    assert!(draft.contains("# 172.16.5.58: answered 135 from 1 host, 445 from 1 host"), "{draft}");
    passes_check(&draft);
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
    assert_eq!(status, 1, "{out}{stderr}");
    // The sample's Skype server only opens connections, and its IPv6 Mailbox server
    // answers nothing but HTTPS: both are listed, neither acts its role.
    assert!(out.contains("never_acted: 10.10.3.20 is listed as skype"), "{out}");
    assert!(out.contains("never_acted: 2001:db8:10::11 is listed as mailbox"), "{out}");
}
