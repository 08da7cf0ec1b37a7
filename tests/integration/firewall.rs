//! `exwatch compare` on two captures taken either side of a real router: three network
//! namespaces (a Mailbox server, a router running iptables, a domain controller), with
//! tcpdump on both of the router's legs. The router drops or rejects traffic the article
//! says must never be restricted; the comparison must say so.
//!
//! Addresses are the example topology's (rules/topology.toml) and exist only inside the
//! test's namespaces; everything the test creates is removed on drop. Needs root,
//! iproute2, iptables, tcpdump and nc (scripts/setup.sh installs them); without root the
//! test says "skipped" and returns.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::exwatch;

const DEADLINE: Duration = Duration::from_secs(10);

/// The three namespaces; dropping it ends what runs in them and deletes them.
struct Lab {
    base: String,
    dir: tempfile::TempDir,
}

impl Lab {
    fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.base)
    }

    fn run(&self, which: &str, args: &[&str]) -> Output {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(which)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "`{}` in {which} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn spawn(&self, which: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(which)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }

    /// A TCP connection attempt from the Mailbox server; its outcome is not asserted
    /// (the router decides it).
    fn connect(&self, port: u16) {
        self.connect_from("m", "10.10.0.5", port);
    }

    /// A TCP connection attempt from namespace `which` to `to`.
    fn connect_from(&self, which: &str, to: &str, port: u16) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns(which), "nc", "-z", "-w", "2", to, &port.to_string()])
            .stdin(Stdio::null())
            .output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for which in ["m", "r", "d"] {
            let name = self.ns(which);
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Mailbox 10.10.1.11 -- router 10.10.1.1 | 10.10.0.1 -- DC 10.10.0.5.
fn lab() -> Option<Lab> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("firewall: skipped: not root");
        return None;
    }
    let lab = Lab { base: format!("exf{}", std::process::id()), dir: tempfile::tempdir().expect("temp dir") };
    for which in ["m", "r", "d"] {
        let name = lab.ns(which);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        lab.run(which, &["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"]);
        lab.run(which, &["ip", "link", "set", "lo", "up"]);
    }
    let (m, r, d) = (lab.ns("m"), lab.ns("r"), lab.ns("d"));
    ip(&["link", "add", "mbx0", "netns", &m, "type", "veth", "peer", "name", "up0", "netns", &r]);
    ip(&["link", "add", "dc0", "netns", &d, "type", "veth", "peer", "name", "down0", "netns", &r]);
    for (which, dev, addr) in [
        ("m", "mbx0", "10.10.1.11/24"),
        ("r", "up0", "10.10.1.1/24"),
        ("r", "down0", "10.10.0.1/24"),
        ("d", "dc0", "10.10.0.5/24"),
    ] {
        lab.run(which, &["ip", "addr", "add", addr, "dev", dev]);
        lab.run(which, &["ip", "link", "set", dev, "up"]);
    }
    lab.run("m", &["ip", "route", "add", "default", "via", "10.10.1.1"]);
    lab.run("d", &["ip", "route", "add", "default", "via", "10.10.0.1"]);
    lab.run("r", &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    Some(lab)
}

/// Waits until tcpdump has written its file header (it is capturing).
fn wait_for_capture(path: &std::path::Path) {
    let start = Instant::now();
    while std::fs::metadata(path).map_or(0, |m| m.len()) < 24 {
        assert!(start.elapsed() < DEADLINE, "tcpdump never started writing {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn compare_names_what_a_router_between_two_capture_points_dropped() {
    let Some(lab) = lab() else { return };
    for rule in [
        "-p tcp --dport 445 -j DROP",
        "-p tcp --dport 389 -j REJECT --reject-with tcp-reset",
        "-p tcp --dport 135 -j REJECT --reject-with icmp-port-unreachable",
    ] {
        let args: Vec<&str> = ["iptables", "-A", "FORWARD"].into_iter().chain(rule.split(' ')).collect();
        lab.run("r", &args);
    }
    let mut servers: Vec<Child> = [88, 445, 389, 135]
        .iter()
        .map(|port| lab.spawn("d", &["nc", "-l", "-k", "-p", &port.to_string()]))
        .collect();
    // The Mailbox server answers too: the DC's connections to it cross the router the
    // other way.
    servers.extend([88, 445].iter().map(|port| lab.spawn("m", &["nc", "-l", "-k", "-p", &port.to_string()])));
    let (first, second) = (lab.dir.path().join("first.pcap"), lab.dir.path().join("second.pcap"));
    let mut dumps: Vec<Child> = [("up0", &first), ("down0", &second)]
        .iter()
        .map(|(dev, path)| {
            lab.spawn(
                "r",
                &[
                    "tcpdump",
                    "--immediate-mode",
                    "-i",
                    dev,
                    "-U",
                    "-n",
                    "-w",
                    path.to_str().expect("utf-8"),
                    "tcp",
                ],
            )
        })
        .collect();
    wait_for_capture(&first);
    wait_for_capture(&second);
    // Allowed traffic before and after, both ways, so each point is seen capturing
    // throughout and each direction's hops are known.
    lab.connect(88);
    lab.connect_from("d", "10.10.1.11", 88);
    std::thread::sleep(Duration::from_millis(1200));
    for port in [445, 389, 135] {
        lab.connect(port);
    }
    // The DC's SYNs to the Mailbox server's 445 are dropped too (the rule names no
    // direction): seen at the DC's side only.
    lab.connect_from("d", "10.10.1.11", 445);
    std::thread::sleep(Duration::from_millis(1200));
    lab.connect(88);
    lab.connect_from("d", "10.10.1.11", 88);
    // tcpdump writes each packet as it comes (immediate mode, -U); leave it time to.
    std::thread::sleep(Duration::from_millis(500));
    for child in dumps.iter_mut().chain(servers.iter_mut()) {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }

    let (a, b) = (first.to_str().expect("utf-8"), second.to_str().expect("utf-8"));
    // Given either way round, one run finds the drops of both directions, each at the
    // point nearer its sender; with SYNs crossing both ways, the order is not "swapped".
    for (x, y) in [(a, b), (b, a)] {
        let (status, stdout, stderr) = exwatch(&["compare", x, y]);
        assert_eq!(status, 1, "{stderr}");
        let events: Vec<serde_json::Value> =
            stdout.lines().map(|l| serde_json::from_str(l).expect("EVE")).collect();
        let mut found: Vec<(String, u64)> = events
            .iter()
            .inspect(|e| assert_eq!(e["policy"]["evidence"], "restricted-dropped-between-points", "{e}"))
            .map(|e| (crate::util::str_of(&e["src_ip"]), e["dest_port"].as_u64().expect("dest_port")))
            .collect();
        found.sort_unstable();
        found.dedup();
        let want = [("10.10.0.5", 445), ("10.10.1.11", 135), ("10.10.1.11", 389), ("10.10.1.11", 445)];
        assert_eq!(found, want.map(|(ip, port)| (ip.to_string(), port)), "{x} {y}: {stderr}\n{stdout}");
        let near_dc = if x == a { "second" } else { "first" };
        let from_dc = events.iter().find(|e| e["src_ip"] == "10.10.0.5").expect("the DC's drop");
        let detail = crate::util::str_of(&from_dc["policy"]["detail"]);
        assert!(detail.starts_with(&format!("SYN seen at the {near_dc} capture point")), "{detail}");
        assert!(!stderr.contains("swapped"), "{stderr}");
        assert!(stderr.contains("both ways"), "{stderr}");
    }
}
