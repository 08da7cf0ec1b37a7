//! `exwatch live` on real interfaces (issue 3, SPEC section 4): each test builds its own
//! pair of network namespaces joined by a veth pair, runs exwatch in one of them on its
//! end of the pair, and makes traffic with real programs (nc, swaks, dig, curl, and a
//! small Python SMTP/DNS responder) between the two namespaces' addresses only.
//!
//! Addresses are in 10.199.N.0/24, N distinct per test, and exist only inside the test's
//! namespaces. Everything a test creates (namespaces, veths, processes) is removed by
//! guards on drop, so a failing test cleans up too.
//!
//! Needs root and iproute2. Where the machine cannot create namespaces each test says
//! "skipped: <reason>" on stderr and returns; CI runs as root after scripts/setup.sh, so
//! there they run. The client programs are not optional: when root, a missing one fails
//! the test (scripts/setup.sh installs them).
//!
//! Waits are polls with generous deadlines, never timing assertions (SPEC section 6).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long anything the tests wait for may take: far above what it needs (exwatch
/// reports a finding within a second of the flow's first packets), so that a slow or
/// loaded machine never makes a test fail.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Names and subnets are numbered per process (names also carry the pid), so tests
/// running at once, or two test processes, never share a namespace.
static NEXT_NET: AtomicU32 = AtomicU32::new(1);

// --- Namespaces -----------------------------------------------------------------------

/// One of the two namespaces of a [`Net`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Holds the clients and servers exwatch watches from the other side.
    Outside = 0,
    /// Where exwatch runs, on this namespace's end of the veth pair.
    Inside = 1,
}

/// Two network namespaces joined by a veth pair: `Outside` has 10.199.N.1, `Inside`
/// 10.199.N.2. Dropping it kills what is left running in them and deletes them (which
/// deletes the veth pair).
pub(crate) struct Net {
    /// Namespace names, which are also the names of their veth ends (at most 15 bytes).
    names: [String; 2],
    subnet: u32,
    /// Scratch files: topologies, scripts.
    dir: tempfile::TempDir,
}

impl Net {
    /// Err is the reason the machine cannot run these tests.
    fn create() -> Result<Net, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: creating network namespaces needs root".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("no `ip` command (iproute2)".into());
        }
        let n = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        assert!(n < 255, "more test networks than subnets");
        let base = format!("exw{}-{n}", std::process::id());
        let net = Net {
            names: [format!("{base}a"), format!("{base}b")],
            subnet: n,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for side in [Side::Outside, Side::Inside] {
            let name = net.ns(side);
            // A namespace of this name can only be left over by an earlier process that had
            // the same pid and was killed before it could clean up.
            let _ = ip(&["netns", "del", name]);
            let out = ip(&["netns", "add", name]);
            if !out.status.success() {
                return Err(format!("cannot create a network namespace: {}", text(&out.stderr).trim()));
            }
            // No IPv6 on the test links: its link-local chatter (neighbour discovery,
            // router solicitations) would be traffic the test did not make.
            let disable_ipv6 = "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6";
            let _ = net.cmd(side, "sh", &["-c", disable_ipv6]).output();
        }
        let [a, b] = &net.names;
        ip_ok(&["link", "add", a, "netns", a, "type", "veth", "peer", "name", b, "netns", b]);
        for side in [Side::Outside, Side::Inside] {
            let (ns, host) = (net.ns(side), side as u8 + 1);
            ip_ok(&["-n", ns, "addr", "add", &format!("{}/24", net.addr(host)), "dev", ns]);
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
            ip_ok(&["-n", ns, "link", "set", ns, "up"]);
        }
        Ok(net)
    }

    pub(crate) fn ns(&self, side: Side) -> &str {
        &self.names[side as usize]
    }

    /// The veth end in `side`'s namespace.
    fn interface(&self, side: Side) -> &str {
        self.ns(side)
    }

    /// 10.199.N.host.
    pub(crate) fn addr(&self, host: u8) -> String {
        format!("10.199.{}.{host}", self.subnet)
    }

    /// Gives `side`'s veth end another address of the subnet.
    pub(crate) fn add_address(&self, side: Side, host: u8) {
        let ns = self.ns(side);
        ip_ok(&["-n", ns, "addr", "add", &format!("{}/24", self.addr(host)), "dev", ns]);
    }

    /// `program args...` inside `side`'s namespace. `ip netns exec` execs the program
    /// (no fork), so the child's pid is the program's.
    pub(crate) fn cmd(&self, side: Side, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(side)]).arg(program).args(args).stdin(Stdio::null());
        cmd
    }

    /// Runs a client to its end (within the deadline) and asserts it succeeded.
    pub(crate) fn ok(&self, side: Side, args: &[&str]) -> Output {
        let out = finish(self.cmd(side, args[0], &args[1..]), args[0]);
        assert!(
            out.status.success(),
            "`{}` in {} failed ({}): {}{}",
            args.join(" "),
            self.ns(side),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// Starts a server in the background; it is killed when the guard drops.
    pub(crate) fn spawn(&self, side: Side, args: &[&str]) -> Background {
        let child = self
            .cmd(side, args[0], &args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", args.join(" ")));
        Background { child, what: args.join(" ") }
    }

    /// Waits until something listens on `port` (TCP, or UDP if `udp`) in `side`, so a
    /// client never meets a refused connection because its server was still starting.
    fn wait_listening(&self, side: Side, udp: bool, port: u16, server: &mut Background) {
        let filter = format!("sport = :{port}");
        let flags = if udp { "-Hlnu" } else { "-Hlnt" };
        wait_until(&format!("`{}` listening", server.what), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("`{}` exited ({status}) before listening", server.what);
            }
            let out = self.cmd(side, "ss", &[flags, &filter]).output().expect("run ss (iproute2)");
            (!out.stdout.is_empty()).then_some(())
        });
    }

    /// `exwatch generate --packets N` into a scratch file, to replay: its path.
    pub(crate) fn generated_capture(&self, packets: u32) -> PathBuf {
        let capture = self.dir.path().join("replay.pcap");
        let out = Command::new(env!("CARGO_BIN_EXE_exwatch"))
            .args(["generate", capture.to_str().expect("utf-8 path"), "--packets", &packets.to_string()])
            .output()
            .expect("run exwatch generate");
        assert!(out.status.success(), "exwatch generate: {}", text(&out.stderr));
        capture
    }

    /// Writes a scratch file and returns its path.
    pub(crate) fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in &self.names {
            // The Exwatch and Background guards, made after the Net and so dropped before
            // it, have already ended what the test started; anything still in the
            // namespace (all of it started by this test) must go with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in text(&out.stdout).split_whitespace() {
                    let _ = Command::new("sh").args(["-c", &format!("kill -KILL {pid}")]).status();
                }
            }
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "`ip {}` failed: {}", args.join(" "), text(&out.stderr));
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The network of one test, or None after saying visibly why the test is skipped
/// (written to the real stderr: the test harness would hide an `eprintln!`).
pub(crate) fn setup(test: &str) -> Option<Net> {
    match Net::create() {
        Ok(net) => Some(net),
        Err(reason) => {
            let _ = writeln!(std::io::stderr(), "live::{test}: skipped: {reason}");
            None
        }
    }
}

/// A server running in a namespace, killed on drop.
pub(crate) struct Background {
    child: Child,
    what: String,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every [`POLL`] until it gives a value, or panics after [`DEADLINE`].
pub(crate) fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what} after {DEADLINE:?}");
        std::thread::sleep(POLL);
    }
}

/// Runs `cmd` to its end, killing it (and failing) if it outlives the deadline. Its
/// output is read at the end: the programs run this way write far less than a pipe holds.
pub(crate) fn finish(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("{what} did not end within {DEADLINE:?}; stderr: {}", text(&out.stderr));
        }
        std::thread::sleep(POLL);
    }
    child.wait_with_output().expect("collect output")
}

// --- Servers and clients ----------------------------------------------------------------

/// A tiny SMTP server (banner, EHLO, MAIL, RCPT, DATA, QUIT) and a DNS server that
/// answers NXDOMAIN, in the standard library only: Python's smtpd module is deprecated
/// and gone from Python 3.12.
const RESPONDER: &str = r#"
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "dns":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        q, peer = s.recvfrom(4096)
        if len(q) < 12:
            continue
        i = 12
        while i < len(q) and q[i] != 0:
            i += q[i] + 1
        # Same id, QR|RD|RA, NXDOMAIN, one question (echoed), no other records.
        s.sendto(q[:2] + b"\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00" + q[12:i + 5], peer)
else:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen()
    while True:
        c, _ = s.accept()
        f = c.makefile("rwb")
        def say(line):
            f.write(line.encode() + b"\r\n")
            f.flush()
        say("220 exwatch-test ESMTP")
        data = False
        for raw in f:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if data:
                if line == ".":
                    data = False
                    say("250 queued")
                continue
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                say("250 exwatch-test")
            elif verb == "DATA":
                data = True
                say("354 end with .")
            elif verb == "QUIT":
                say("221 bye")
                break
            else:
                say("250 ok")
        c.close()
"#;

/// Starts the Python responder (`smtp` or `dns`) on `addr:port` in `side` and waits until
/// it listens.
pub(crate) fn responder(net: &Net, side: Side, kind: &str, addr: &str, port: u16) -> Background {
    let script = net.file("responder.py", RESPONDER);
    let script = script.to_str().expect("temp path is UTF-8");
    let mut server = net.spawn(side, &["python3", script, kind, addr, &port.to_string()]);
    net.wait_listening(side, kind == "dns", port, &mut server);
    server
}

/// An nc listener on `addr:port` in `side` that accepts connection after connection.
pub(crate) fn nc_listener(net: &Net, side: Side, addr: &str, port: u16) -> Background {
    let mut server = net.spawn(side, &["nc", "-l", "-k", addr, &port.to_string()]);
    net.wait_listening(side, false, port, &mut server);
    server
}

/// One TCP connection from `side` to `addr:port` with nc, carrying a line of text.
pub(crate) fn nc_send(net: &Net, side: Side, addr: &str, port: u16) {
    net.ok(side, &["sh", "-c", &format!("echo hello | nc -N -w 3 {addr} {port}")]);
}

// --- Topologies -----------------------------------------------------------------------------

/// The Inside address (.2) is an Edge Transport server subscribed to a site whose only
/// Mailbox server (.11) is on no host; .53 is the DNS server the Edge uses. Everything
/// else, the Outside address (.1) among it, is external.
pub(crate) fn edge_site(net: &Net) -> String {
    let (edge, mailbox, dns) = (net.addr(2), net.addr(11), net.addr(53));
    format!(
        "[organization]\nname = \"live-test\"\n\n[roles]\nedge = [\"{edge}\"]\nmailbox = [\"{mailbox}\"]\n\
         dns = [\"{dns}\"]\n\n[[edge_subscription]]\nedge = [\"{edge}\"]\nsite = \"LAB\"\n\
         mailbox = [\"{mailbox}\"]\n"
    )
}

// --- exwatch --------------------------------------------------------------------------------

/// `exwatch live` running in the Inside namespace on its veth end; killed on drop if a
/// test did not stop it.
pub(crate) struct Exwatch {
    child: Child,
    /// Holds the topology, the EVE log, stderr and the summary.
    dir: tempfile::TempDir,
    pub(crate) eve: PathBuf,
    stderr: PathBuf,
    summary: Option<PathBuf>,
}

/// What a stopped exwatch left behind.
pub(crate) struct Stopped {
    signal: &'static str,
    pub(crate) status: ExitStatus,
    pub(crate) stderr: String,
    pub(crate) events: Vec<Value>,
    pub(crate) summary: Option<Value>,
}

impl Exwatch {
    /// Starts exwatch with `--topology`, `--eve-log`, `--summary-json` and `extra`, and
    /// waits until it says it is watching (the capture is open by then).
    pub(crate) fn start(net: &Net, topology: &str, extra: &[&str]) -> Exwatch {
        Exwatch::launch(net, topology, extra, true)
    }

    /// `with_summary` false leaves out `--summary-json`.
    pub(crate) fn launch(net: &Net, topology: &str, extra: &[&str], with_summary: bool) -> Exwatch {
        Exwatch::launch_at(net, topology, extra, with_summary, |dir| dir.join("eve.json"))
    }

    /// `eve_at` is given the test's directory and says where the EVE log goes.
    fn launch_at(
        net: &Net,
        topology: &str,
        extra: &[&str],
        with_summary: bool,
        eve_at: impl FnOnce(&Path) -> PathBuf,
    ) -> Exwatch {
        let dir = tempfile::tempdir().expect("temp dir");
        let topology_path = dir.path().join("topology.toml");
        std::fs::write(&topology_path, topology).expect("write topology");
        let eve = eve_at(dir.path());
        let stderr = dir.path().join("stderr.txt");
        let summary = with_summary.then(|| dir.path().join("summary.json"));
        let path = |p: &Path| p.to_str().expect("temp path is UTF-8").to_string();
        let mut args = vec![
            "live".to_string(),
            "--interface".into(),
            net.interface(Side::Inside).into(),
            "--topology".into(),
            path(&topology_path),
            "--eve-log".into(),
            path(&eve),
        ];
        if let Some(summary) = &summary {
            args.extend(["--summary-json".into(), path(summary)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = net
            .cmd(Side::Inside, env!("CARGO_BIN_EXE_exwatch"), &args)
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("create stderr file"))
            .spawn()
            .expect("start exwatch");
        let mut exwatch = Exwatch { child, dir, eve, stderr, summary };
        wait_until("exwatch to start watching", || {
            exwatch.assert_running("starting");
            exwatch.stderr_text().contains("watching").then_some(())
        });
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", exwatch.pid())).unwrap_or_default();
        assert_eq!(comm.trim(), "exwatch", "`ip netns exec` should exec exwatch in place");
        exwatch
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub(crate) fn assert_running(&mut self, doing: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("exwatch exited ({status}) while {doing}; stderr:\n{}", self.stderr_text());
        }
    }

    /// Sends a signal (by name: TERM, INT, HUP) to exwatch.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -s {name} {}", self.pid())])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits until an event of the EVE log satisfies `wanted` and returns it.
    pub(crate) fn wait_event(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            self.assert_running(&format!("waiting for {what}"));
            let events = events(&self.eve);
            if let Some(event) = events.iter().find(|e| wanted(e)) {
                return event.clone();
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "no {what} in the EVE log after {DEADLINE:?}; events:\n{}\nstderr:\n{}",
                    lines(&events),
                    self.stderr_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` (TERM or INT) and waits for exwatch to exit.
    pub(crate) fn stop(&mut self, signal: &'static str) -> Stopped {
        self.signal(signal);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for exwatch") {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "exwatch did not stop within {DEADLINE:?} of SIG{signal}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(POLL);
        };
        let summary = self
            .summary
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        Stopped { signal, status, stderr: self.stderr_text(), events: events(&self.eve), summary }
    }
}

impl Drop for Exwatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Stopped {
    /// SPEC section 4: a signal stops exwatch cleanly, with the summary and status 0.
    pub(crate) fn assert_clean(&self) {
        let s = &self.stderr;
        assert!(s.contains("exwatch summary"), "no summary on stderr after SIG{}:\n{s}", self.signal);
        assert!(s.contains("throughput:"), "no throughput line on stderr after SIG{}:\n{s}", self.signal);
        assert_eq!(self.status.code(), Some(0), "exit status after SIG{}; stderr:\n{s}", self.signal);
    }

    fn alerts(&self) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event_type"] == "alert").collect()
    }

    /// Flows the summary counts under `rule`.
    fn rule_flows(&self, rule: &str) -> u64 {
        let summary =
            self.summary.as_ref().unwrap_or_else(|| panic!("no summary json; stderr:\n{}", self.stderr));
        let rules = summary["rules"].as_array().expect("summary has a rules array");
        rules.iter().find(|r| r["rule"] == rule).and_then(|r| r["flows"].as_u64()).unwrap_or(0)
    }
}

/// The complete lines of an EVE log (a line still being written is left for next time).
pub(crate) fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad EVE line {l}: {e}")))
        .collect()
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("  {e}\n")).collect()
}

/// An alert for `id` (a rule, or the evidence of a restriction) on a flow to `dest_port`.
fn is_alert(event: &Value, id: &str, dest_port: u16) -> bool {
    let policy = &event["policy"];
    event["event_type"] == "alert"
        && event["dest_port"] == dest_port
        && policy.get("evidence").unwrap_or(&policy["rule"]) == id
}

// --- Metrics ---------------------------------------------------------------------------------

/// Port of the metrics endpoint. Each test's Inside namespace has a loopback of its own,
/// so a fixed port is always free there.
pub(crate) const METRICS_PORT: u16 = 9911;

/// The `/metrics` page, fetched with curl inside the namespace where it listens.
pub(crate) fn scrape(net: &Net) -> Option<String> {
    let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
    let out = net.cmd(Side::Inside, "curl", &["-sf", "-m", "3", &url]).output().expect("run curl");
    out.status.success().then(|| text(&out.stdout))
}

/// The value of the sample `series` (a name with its labels, as written) on a page.
pub(crate) fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

// --- Tests ------------------------------------------------------------------------------------

/// An external host reaches the Edge on 3389 (RDP): a violation of the Edge's perimeter,
/// reported while exwatch runs. SMTP from the same host to the Edge (swaks) and the Edge's
/// DNS query to its resolver (dig) are allowed: no alert, yet both are counted under their
/// `ok` rules, so they were seen and judged, not lost.
#[test]
fn live_reports_a_perimeter_violation_and_nothing_for_smtp_or_dns() {
    let Some(net) = setup("live_reports_a_perimeter_violation_and_nothing_for_smtp_or_dns") else {
        return;
    };
    let (external, edge, dns) = (net.addr(1), net.addr(2), net.addr(53));
    net.add_address(Side::Outside, 53);
    let _smtp = responder(&net, Side::Inside, "smtp", &edge, 25);
    let _dns = responder(&net, Side::Outside, "dns", &dns, 53);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &[]);

    let server = format!("{edge}:25");
    net.ok(
        Side::Outside,
        &["swaks", "--server", &server, "--from", "sender@example.test", "--to", "postmaster@lab.test"],
    );
    net.ok(Side::Inside, &["dig", "+tries=1", "+time=3", &format!("@{dns}"), "mail.example.test"]);
    nc_send(&net, Side::Outside, &edge, 3389);

    let alert = exwatch.wait_event("edge-perimeter alert for 3389", |e| is_alert(e, "edge-perimeter", 3389));
    assert_eq!(alert["policy"]["verdict"], "violation", "{alert}");
    assert_eq!(alert["src_ip"], external.as_str(), "{alert}");
    assert_eq!(alert["dest_ip"], edge.as_str(), "{alert}");
    assert_eq!(alert["proto"], "TCP", "{alert}");
    // Where Suricata says a live packet was seen: the interface, and no capture file.
    assert_eq!(alert["in_iface"], net.interface(Side::Inside), "{alert}");
    assert!(alert.get("pcap_filename").is_none(), "{alert}");
    assert_eq!(alert["policy"]["src_role"], "external", "{alert}");
    assert_eq!(alert["policy"]["dest_role"], "edge", "{alert}");
    assert_eq!(alert["policy"]["direction"], "observed", "{alert}");
    assert_eq!(alert["alert"]["signature_id"], 1930028, "{alert}");

    let stopped = exwatch.stop("TERM");
    let found: Vec<(String, u64)> = stopped
        .alerts()
        .iter()
        .map(|e| {
            (e["policy"]["rule"].as_str().unwrap_or("").to_string(), e["dest_port"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(
        found,
        [("edge-perimeter".to_string(), 3389)],
        "exactly one alert, for 3389; events:\n{}",
        lines(&stopped.events)
    );
    assert!(
        stopped.rule_flows("edge-inbound-smtp") >= 1,
        "SMTP flow not counted; stderr:\n{}",
        stopped.stderr
    );
    assert!(stopped.rule_flows("edge-dns") >= 1, "DNS flow not counted; stderr:\n{}", stopped.stderr);
    stopped.assert_clean();
}

/// `/metrics` answers in Prometheus text, and its counters move with the traffic.
#[test]
fn live_metrics_counters_move_with_traffic() {
    let Some(net) = setup("live_metrics_counters_move_with_traffic") else {
        return;
    };
    let edge = net.addr(2);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--metrics", &metrics]);
    let first = wait_until("the metrics endpoint", || scrape(&net));
    assert!(first.contains("# TYPE exwatch_packets_total counter"), "{first}");
    let packets_before = sample(&first, "exwatch_packets_total").expect("exwatch_packets_total");

    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);

    let alerts = r#"exwatch_alerts_total{rule="edge-perimeter",verdict="violation"}"#;
    let start = Instant::now();
    let last = loop {
        let page = scrape(&net).unwrap_or_default();
        // The socket's counters are read once a second, so they follow a little later.
        if sample(&page, "exwatch_packets_total").is_some_and(|p| p > packets_before)
            && sample(&page, alerts).is_some_and(|a| a >= 1.0)
            && sample(&page, r#"exwatch_socket_received_total{socket="0"}"#).is_some_and(|r| r >= 3.0)
        {
            break page;
        }
        assert!(start.elapsed() < DEADLINE, "counters did not move after {DEADLINE:?}; last scrape:\n{page}");
        std::thread::sleep(POLL);
    };
    assert!(sample(&last, r#"exwatch_queue_depth{queue="events"}"#).is_some(), "{last}");
    // Labels are bounded (rule, verdict, reason, stage): never an address or a port.
    let subnet = format!("10.199.{}.", net.subnet);
    assert!(!last.contains(&subnet), "a metric carries an address:\n{last}");

    exwatch.stop("TERM").assert_clean();
}

/// `--stats-interval 1` writes periodic EVE `stats` events whose counters are live.
#[test]
fn live_stats_events_are_periodic_and_count_traffic() {
    let Some(net) = setup("live_stats_events_are_periodic_and_count_traffic") else {
        return;
    };
    let edge = net.addr(2);
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--stats-interval", "1"]);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    let stats = exwatch.wait_event("stats event counting the violation", |e| {
        e["event_type"] == "stats"
            && e["stats"]["decoder"]["pkts"].as_u64().is_some_and(|p| p >= 3)
            && e["policy"]["alerts"]["edge-perimeter"].as_u64().is_some_and(|a| a >= 1)
    });
    assert!(stats["timestamp"].is_string(), "{stats}");
    // SIGINT stops it as cleanly as SIGTERM.
    let stopped = exwatch.stop("INT");
    stopped.assert_clean();
    let periodic = stopped.events.iter().filter(|e| e["event_type"] == "stats").count();
    assert!(periodic >= 1, "{}", lines(&stopped.events));
}

/// `--stats-log FILE`: the `stats` events go to a file of their own (for a pipeline that
/// rejects them), the EVE log keeps the alerts and carries no `stats` event.
#[test]
fn live_stats_log_takes_the_stats_events() {
    let Some(net) = setup("live_stats_log_takes_the_stats_events") else {
        return;
    };
    let edge = net.addr(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let stats_log = dir.path().join("stats.json");
    let path = stats_log.to_str().expect("utf-8");
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--stats-interval", "1", "--stats-log", path]);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    exwatch.wait_event("the violation", |e| is_alert(e, "edge-perimeter", 3389));
    wait_until("a stats event counting the violation in the stats log", || {
        events(&stats_log).into_iter().find(|e| {
            e["event_type"] == "stats"
                && e["policy"]["alerts"]["edge-perimeter"].as_u64().is_some_and(|a| a >= 1)
        })
    });
    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert!(stopped.events.iter().all(|e| e["event_type"] != "stats"), "{}", lines(&stopped.events));
    assert!(events(&stats_log).iter().all(|e| e["event_type"] == "stats"));
}

/// logrotate's way: rename the EVE log, SIGHUP, and the next event goes to a new file at
/// the original path.
#[test]
fn live_sighup_reopens_the_eve_log() {
    let Some(net) = setup("live_sighup_reopens_the_eve_log") else {
        return;
    };
    let edge = net.addr(2);
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &[]);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    let first = exwatch.wait_event("first violation", |e| is_alert(e, "edge-perimeter", 3389));

    let rotated = exwatch.dir.path().join("eve.json.1");
    std::fs::rename(&exwatch.eve, &rotated).expect("rotate the EVE log");
    // The next flow must come after exwatch took the signal.
    exwatch.hup();

    nc_send(&net, Side::Outside, &edge, 3389);
    let second =
        exwatch.wait_event("second violation, in a new file", |e| is_alert(e, "edge-perimeter", 3389));
    assert_ne!(first["src_port"], second["src_port"], "two connections, two flows");
    let old = events(&rotated);
    assert_eq!(old.len(), 1, "only the first alert in the rotated file:\n{}", lines(&old));
    assert_eq!(old[0]["src_port"], first["src_port"]);

    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert_eq!(
        stopped.alerts().len(),
        1,
        "only the second alert in the new file:\n{}",
        lines(&stopped.events)
    );
}

/// A missing interface: exit 2 and a message naming it.
#[test]
fn live_unknown_interface_exits_2_naming_it() {
    // Needs no namespace: the interface is looked up before anything is opened.
    let name = format!("exwno{}", std::process::id());
    let (status, _, stderr) = crate::util::exwatch(&["live", "--interface", &name]);
    assert_eq!(status, 2, "stderr:\n{stderr}");
    assert!(stderr.contains(&name), "the message should name {name}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A filter that does not compile: exit 2 and a message naming the filter, before any
/// capture starts.
#[test]
fn live_bad_bpf_filter_exits_2_naming_it() {
    let Some(net) = setup("live_bad_bpf_filter_exits_2_naming_it") else {
        return;
    };
    let filter = "tcp port nonsense";
    let cmd = net.cmd(
        Side::Inside,
        env!("CARGO_BIN_EXE_exwatch"),
        &["live", "--interface", net.interface(Side::Inside), "--bpf", filter],
    );
    let out = finish(cmd, "exwatch live --bpf");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains(filter), "the message should quote the filter:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A valid filter runs in the kernel: a flow it leaves out is never judged, while the
/// flows it lets through are.
#[test]
fn live_bpf_filter_decides_what_is_judged() {
    let Some(net) = setup("live_bpf_filter_decides_what_is_judged") else {
        return;
    };
    let edge = net.addr(2);
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--bpf", "not tcp port 3389"]);
    let _filtered = nc_listener(&net, Side::Inside, &edge, 3389);
    let _seen = nc_listener(&net, Side::Inside, &edge, 3390);
    nc_send(&net, Side::Outside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3390);
    exwatch.wait_event("edge-perimeter alert for 3390", |e| is_alert(e, "edge-perimeter", 3390));
    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    let filtered: Vec<_> = stopped.alerts().into_iter().filter(|e| e["dest_port"] == 3389).collect();
    assert!(filtered.is_empty(), "the filter excludes 3389: {filtered:?}");
}

/// Without the capabilities to capture (root with CAP_NET_RAW and CAP_NET_ADMIN taken out
/// of its bounding set): exit 2 and a message that names the interface and says what is
/// missing.
#[test]
fn live_without_capture_capabilities_exits_2_saying_so() {
    let Some(net) = setup("live_without_capture_capabilities_exits_2_saying_so") else {
        return;
    };
    let interface = net.interface(Side::Inside);
    let cmd = net.cmd(
        Side::Inside,
        "setpriv",
        &[
            "--bounding-set",
            "-net_raw,-net_admin",
            env!("CARGO_BIN_EXE_exwatch"),
            "live",
            "--interface",
            interface,
        ],
    );
    let out = finish(cmd, "exwatch live without capabilities");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains(interface), "the message should name {interface}:\n{stderr}");
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("cap_net_raw") || lower.contains("capabilit"),
        "the message should say which capability is missing:\n{stderr}"
    );
}

/// `--user nobody`: root is given up once the capture and the EVE log are open, and the
/// capture goes on finding violations.
#[test]
fn live_user_drops_root_and_keeps_capturing() {
    let Some(net) = setup("live_user_drops_root_and_keeps_capturing") else {
        return;
    };
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("a `nobody` account");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let edge = net.addr(2);
    let mut exwatch = Exwatch::launch(&net, &edge_site(&net), &["--user", "nobody"], false);

    let status = std::fs::read_to_string(format!("/proc/{}/status", exwatch.pid())).expect("process status");
    let ids = |key: &str| -> Vec<u32> {
        let line =
            status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in status"));
        line[key.len()..].split_whitespace().map(|v| v.parse().expect("an id")).collect()
    };
    assert_eq!(ids("Uid:"), [uid; 4], "real, effective, saved and fs uid are nobody's ({uid})");
    assert_eq!(ids("Gid:"), [gid; 4], "gids are nobody's group ({gid})");
    assert_eq!(ids("Groups:"), [gid], "no supplementary groups left");

    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    exwatch.wait_event("violation seen as nobody", |e| is_alert(e, "edge-perimeter", 3389));
    exwatch.stop("TERM").assert_clean();
}

/// Two Mailbox servers, and SYNs from one to the other go unanswered: a firewall dropping
/// traffic that must never be restricted. The client gives up after its first retry, so
/// no packet comes after the SYN timeout: the restriction can only come from exwatch's
/// clock running the timers while the link is quiet.
#[test]
fn live_silent_drop_is_reported_on_the_clock() {
    let Some(net) = setup("live_silent_drop_is_reported_on_the_clock") else {
        return;
    };
    let (mailbox, silent) = (net.addr(1), net.addr(3));
    let topology = format!(
        "[organization]\nname = \"live-test\"\n\n[roles]\nmailbox = [\"{mailbox}\", \"{silent}\"]\n\
         domain_controller = [\"{}\"]\n",
        net.addr(2)
    );
    // No host owns the second Mailbox address: a static neighbour entry (with a MAC no one
    // has) sends its SYNs onto the link without ARP, and nothing answers them: not an RST,
    // not an ICMP error.
    let outside = net.ns(Side::Outside);
    ip_ok(&["-n", outside, "neigh", "replace", &silent, "lladdr", "02:00:0a:c7:00:03", "dev", outside]);
    let mut exwatch = Exwatch::start(&net, &topology, &["--syn-timeout", "1.5"]);

    // nc's connect gives up after 2 s: the SYN at 0 s and its retry at 1 s, nothing more
    // (its exit status is a timeout, as it should be).
    let connect = net.cmd(Side::Outside, "nc", &["-z", "-w", "2", &silent, "445"]);
    let _ = finish(connect, "nc -z");
    let alert = exwatch.wait_event("silent-drop restriction", |e| is_alert(e, "restricted-silent-drop", 445));
    assert_eq!(alert["policy"]["verdict"], "restriction", "{alert}");
    assert_eq!(alert["policy"]["rule"], "exchange-internal", "{alert}");
    assert_eq!(alert["src_ip"], mailbox.as_str(), "{alert}");
    assert_eq!(alert["dest_ip"], silent.as_str(), "{alert}");
    assert_eq!(alert["alert"]["signature_id"], 1930102, "{alert}");

    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert_eq!(stopped.alerts().len(), 1, "one event for the flow:\n{}", lines(&stopped.events));
}

// --- Operations (issue 13) ----------------------------------------------------------------

/// `count` UDP datagrams from `side` to `addr:port`, as fast as Python sends them: a burst
/// of frames from one short program, with no server needed.
fn udp_burst(net: &Net, side: Side, addr: &str, port: u16, count: u32) {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range({count}):\n    s.sendto(b'x' * 64, ('{addr}', {port}))\n"
    );
    net.ok(side, &["python3", "-c", &script]);
}

/// An HTTP request written by hand with nc to the metrics endpoint: the raw response.
fn raw_http(net: &Net, request: &str) -> String {
    let script = format!("printf '{request}' | nc -N -w 3 127.0.0.1 {METRICS_PORT}");
    text(&net.ok(Side::Inside, &["sh", "-c", &script]).stdout)
}

/// After a burst of frames, `exwatch_stage_latency_seconds` has samples in its histogram,
/// a `_sum` and a `_count` (it stayed at 0 while a live capture's small batches never reached the
/// publishing count); the page passes `promtool check metrics`; `exwatch_build_info`
/// names the version; the process metrics and every metric the Grafana dashboard and the
/// alerting rules query are there; HEAD answers with headers only; `/healthz` is 200
/// while capturing.
#[test]
fn live_metrics_page_is_valid_and_latency_is_published() {
    let Some(net) = setup("live_metrics_page_is_valid_and_latency_is_published") else {
        return;
    };
    let edge = net.addr(2);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--metrics", &metrics]);
    wait_until("the metrics endpoint", || scrape(&net));
    udp_burst(&net, Side::Outside, &edge, 9999, 5000);

    let count = r#"exwatch_stage_latency_seconds_count{stage="decode"}"#;
    let start = Instant::now();
    let page = loop {
        let page = scrape(&net).unwrap_or_default();
        // Most of the burst, not all: a loaded machine may shed some of it (counted apart).
        if sample(&page, "exwatch_packets_total").is_some_and(|p| p >= 1000.0)
            && sample(&page, count).is_some_and(|n| n >= 1.0)
        {
            break page;
        }
        assert!(start.elapsed() < DEADLINE, "no latency samples after {DEADLINE:?}; last scrape:\n{page}");
        std::thread::sleep(POLL);
    };
    for stage in ["decode", "flow"] {
        let sum = sample(&page, &format!("exwatch_stage_latency_seconds_sum{{stage=\"{stage}\"}}"));
        assert!(sum.is_some_and(|s| s > 0.0), "{stage}: no positive _sum:\n{page}");
        // A histogram: its `+Inf` bucket holds every sample, as `_count` does.
        let all =
            sample(&page, &format!("exwatch_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}}"));
        let count = sample(&page, &format!("exwatch_stage_latency_seconds_count{{stage=\"{stage}\"}}"));
        assert!(all.is_some_and(|n| n >= 1.0) && all == count, "{stage}: buckets:\n{page}");
    }
    // The process's metrics under their standard names, and every metric the shipped
    // Grafana dashboard and alerting rules query, on this live page.
    let served = crate::soc::page_series(&page);
    let rules = std::fs::read_to_string(crate::util::repo().join("packaging/prometheus/exwatch-rules.yml"))
        .expect("rules");
    let named = crate::soc::named_metrics(&crate::soc::dashboard_queries());
    for name in named.iter().chain(&crate::soc::named_metrics(&rules)) {
        assert!(
            served.contains(name),
            "{name}: queried by the dashboard or rules, not on the live page:\n{page}"
        );
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
    ] {
        assert!(served.contains(name), "{name} missing:\n{page}");
    }
    assert!(sample(&page, "exwatch_eve_events_written_total").is_some(), "{page}");
    let info = page.lines().find(|l| l.starts_with("exwatch_build_info{")).expect("exwatch_build_info");
    assert!(info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{info}");
    assert!(info.contains("commit=\"") && info.ends_with("} 1"), "{info}");

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut promtool = promtool.expect("promtool (scripts/setup.sh installs Debian's prometheus package)");
    promtool.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("feed promtool");
    let checked = promtool.wait_with_output().expect("run promtool");
    let said = format!("{}{}", text(&checked.stdout), text(&checked.stderr));
    let _ = writeln!(std::io::stderr(), "live::promtool check metrics: {} {said:?}", checked.status);
    assert!(checked.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{page}");

    let head = raw_http(&net, "HEAD /metrics HTTP/1.1\\r\\nHost: exwatch\\r\\n\\r\\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: "), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD must send no body:\n{head}");
    let health = raw_http(&net, "GET /healthz HTTP/1.1\\r\\nHost: exwatch\\r\\n\\r\\n");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");

    exwatch.stop("TERM").assert_clean();
}

impl Exwatch {
    /// Sends SIGHUP and waits until it is no longer pending (the handler, which only
    /// records the request, has then run), so that traffic made next comes after it.
    fn hup(&self) {
        self.signal("HUP");
        let status = format!("/proc/{}/status", self.pid());
        wait_until("SIGHUP to be delivered", || {
            let text = std::fs::read_to_string(&status).unwrap_or_default();
            let pending = text
                .lines()
                .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
                .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
                .any(|mask| mask & 1 != 0);
            (!pending).then_some(())
        });
    }

    /// Waits until stderr says `what`.
    fn wait_stderr(&mut self, what: &str) -> String {
        wait_until(&format!("stderr to say {what:?}"), || {
            self.assert_running(&format!("waiting for stderr to say {what:?}"));
            let stderr = self.stderr_text();
            stderr.contains(what).then_some(stderr)
        })
    }
}

/// The `nobody` account's uid and gid.
fn nobody() -> (u32, u32) {
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("a `nobody` account");
    (nobody.uid.as_raw(), nobody.gid.as_raw())
}

fn owner(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).uid()
}

/// A directory for logs inside the test's directory, which `nobody` may enter; it
/// belongs to `nobody` when `writable`, as /var/log/exwatch belongs to the service's user.
fn log_dir(dir: &Path, writable: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = nobody();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod test dir");
    let logs = dir.join("logs");
    std::fs::create_dir(&logs).expect("create log dir");
    if writable {
        std::os::unix::fs::chown(&logs, Some(uid), Some(gid)).expect("chown log dir");
    }
    logs.join("eve.json")
}

/// Regression (issue 13): `--user nobody --eve-log F`, then SIGHUP, lost every later event
/// (F was root's, so the reopen failed), said nothing until SIGTERM, then exited 2 without
/// the summary. The log now belongs to the user exwatch runs as: SIGHUP without rotating
/// and SIGHUP after rotating both keep logging, and the run ends cleanly.
#[test]
fn live_user_nobody_keeps_logging_across_sighup() {
    let Some(net) = setup("live_user_nobody_keeps_logging_across_sighup") else {
        return;
    };
    let (uid, _) = nobody();
    let edge = net.addr(2);
    // The summary too is written at exit, as nobody, in a directory nobody cannot write.
    let mut exwatch =
        Exwatch::launch_at(&net, &edge_site(&net), &["--user", "nobody"], true, |dir| log_dir(dir, true));
    assert_eq!(owner(&exwatch.eve), uid, "the EVE log belongs to nobody");
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let rdp = |e: &Value| is_alert(e, "edge-perimeter", 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    exwatch.wait_event("first violation", rdp);

    // SIGHUP with nothing rotated: the same file is reopened and written on.
    exwatch.hup();
    nc_send(&net, Side::Outside, &edge, 3389);
    wait_until("two alerts in the log", || {
        (events(&exwatch.eve).iter().filter(|e| rdp(e)).count() == 2).then_some(())
    });

    // Rotated, then SIGHUP: a new file at the same path, nobody's too.
    let rotated = exwatch.eve.with_extension("json.1");
    std::fs::rename(&exwatch.eve, &rotated).expect("rotate the EVE log");
    exwatch.hup();
    wait_until("the new EVE log", || exwatch.eve.exists().then_some(()));
    assert_eq!(owner(&exwatch.eve), uid, "the reopened EVE log belongs to nobody");
    nc_send(&net, Side::Outside, &edge, 3389);
    exwatch.wait_event("third violation, in the new file", rdp);

    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert!(!stopped.stderr.contains("cannot reopen"), "{}", stopped.stderr);
    let summary = stopped.summary.as_ref().expect("the summary, written as nobody");
    assert_eq!(summary["findings"]["violation"], 3, "{summary}");
    assert_eq!(events(&rotated).len(), 2, "{}", lines(&events(&rotated)));
    assert_eq!(stopped.alerts().len(), 1, "{}", lines(&stopped.events));
}

/// A reopen that fails (rotated, and the directory is not the user's, so no new file can
/// be made) is said on stderr at once, at the SIGHUP, and events keep going to the file
/// that was open; the run still ends cleanly with its summary.
#[test]
fn live_failed_reopen_is_said_at_once_and_logging_goes_on() {
    let Some(net) = setup("live_failed_reopen_is_said_at_once_and_logging_goes_on") else {
        return;
    };
    let edge = net.addr(2);
    let mut exwatch =
        Exwatch::launch_at(&net, &edge_site(&net), &["--user", "nobody"], false, |dir| log_dir(dir, false));
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    exwatch.wait_event("first violation", |e| is_alert(e, "edge-perimeter", 3389));

    let rotated = exwatch.eve.with_extension("json.1");
    std::fs::rename(&exwatch.eve, &rotated).expect("rotate the EVE log");
    exwatch.hup();
    let said = exwatch.wait_stderr("cannot reopen the EVE log");
    assert!(said.contains(exwatch.eve.to_str().unwrap_or_default()), "names the log:\n{said}");
    assert!(said.contains("Permission denied"), "says why:\n{said}");

    nc_send(&net, Side::Outside, &edge, 3389);
    wait_until("the second alert, in the file open before", || {
        (events(&rotated).iter().filter(|e| is_alert(e, "edge-perimeter", 3389)).count() == 2).then_some(())
    });
    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert!(!exwatch.eve.exists(), "no file could be made at the old path");
}

/// A tmpfs mounted for one test, unmounted on drop (after the exwatch guards made later
/// have ended the process holding its files).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().to_str().expect("temp path is UTF-8");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs", target])
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount tmpfs: {}", text(&out.stderr));
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system is full; returns the bytes written.
    fn fill(&self) -> u64 {
        let mut file = File::create(self.path().join("filler")).expect("create filler");
        let (block, mut written) = ([0u8; 4096], 0u64);
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = self.dir.path().to_str().unwrap_or_default().to_string();
        let unmounted = Command::new("umount").arg(&target).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").args(["-l", &target]).status();
        }
    }
}

/// A full disk under the EVE log: the capture and the verdicts go on, the events that
/// could not be written are counted (metric and summary), the log never keeps half a
/// line, and writing resumes with whole lines once there is room again.
#[test]
fn live_full_disk_counts_lost_events_and_resumes_with_whole_lines() {
    let Some(net) = setup("live_full_disk_counts_lost_events_and_resumes_with_whole_lines") else {
        return;
    };
    const BEFORE: usize = 1;
    const WHILE_FULL: usize = 12;
    const AFTER: usize = 3;
    let tmpfs = Tmpfs::mount("64k");
    let eve = tmpfs.path().join("eve.json");
    let edge = net.addr(2);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    // Every alert is one flow to one port: the alert bound would hold most back.
    let args = ["--metrics", &metrics, "--no-aggregate"];
    let mut exwatch = Exwatch::launch_at(&net, &edge_site(&net), &args, true, |_| eve.clone());
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let alerts_seen = |n: usize| {
        let series = r#"exwatch_alerts_total{rule="edge-perimeter",verdict="violation"}"#;
        wait_until(&format!("{n} alerts counted"), || {
            let page = scrape(&net)?;
            (sample(&page, series)? >= n as f64).then_some(page)
        })
    };
    let unwritten =
        |page: &str| sample(page, "exwatch_eve_unwritten_events_total").expect("the counter") as usize;
    let whole_lines = |path: &Path| {
        let bytes = std::fs::read(path).expect("read the EVE log");
        assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "half a line at the end of the log");
        events(path)
    };

    for _ in 0..BEFORE {
        nc_send(&net, Side::Outside, &edge, 3389);
    }
    exwatch.wait_event("the alert before the disk is full", |e| is_alert(e, "edge-perimeter", 3389));
    let filled = tmpfs.fill();

    for _ in 0..WHILE_FULL {
        nc_send(&net, Side::Outside, &edge, 3389);
    }
    alerts_seen(BEFORE + WHILE_FULL);
    exwatch.wait_stderr("cannot write the EVE log");
    // Every alert ends in the log or counted as lost, once the writer has had them all.
    let (written, lost) = wait_until("every alert written or counted as lost", || {
        let lost = unwritten(&scrape(&net)?);
        let written = whole_lines(&eve).len();
        (written + lost == BEFORE + WHILE_FULL).then_some((written, lost))
    });
    assert!(lost >= 1, "the disk was full, yet nothing was lost");

    tmpfs.free();
    for _ in 0..AFTER {
        nc_send(&net, Side::Outside, &edge, 3389);
    }
    let page = alerts_seen(BEFORE + WHILE_FULL + AFTER);
    exwatch.wait_stderr("writing the EVE log again");
    wait_until("the alerts made after space was freed", || {
        (whole_lines(&eve).len() == written + AFTER).then_some(())
    });
    assert_eq!(unwritten(&page), lost, "nothing lost once there is room");

    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    let events = whole_lines(&eve);
    let ports: std::collections::HashSet<_> = events.iter().map(|e| e["src_port"].clone()).collect();
    assert_eq!(ports.len(), events.len(), "each flow's alert once:\n{}", lines(&events));
    let summary = stopped.summary.as_ref().expect("summary json");
    assert_eq!(summary["capture"]["eve_unwritten"], lost as u64, "{summary}");
    assert_eq!(summary["findings"]["violation"], (BEFORE + WHILE_FULL + AFTER) as u64, "{summary}");
    assert!(
        stopped.stderr.contains(&format!("{lost} events not written to the EVE log")),
        "{}",
        stopped.stderr
    );
    let _ = writeln!(
        std::io::stderr(),
        "live::full disk: {filled} bytes of filler; {} alerts, {written} written before space was freed, \
         {lost} counted as lost, {AFTER} written after; log {} lines, all whole",
        BEFORE + WHILE_FULL + AFTER,
        events.len()
    );
}

/// The shipped logrotate snippet (packaging/exwatch.logrotate) rotating a running
/// exwatch: with only its path, its user and its signal sender adapted to the test
/// (`kill` rather than `systemctl`), the next event goes to a new file that belongs to
/// the user exwatch runs as, and the rotated file keeps the earlier one.
#[test]
fn live_logrotate_snippet_rotates_a_running_exwatch() {
    let Some(net) = setup("live_logrotate_snippet_rotates_a_running_exwatch") else {
        return;
    };
    if Command::new("logrotate").arg("--version").output().is_err() {
        panic!("no logrotate (scripts/setup.sh installs it)");
    }
    let (uid, gid) = nobody();
    let group = nix::unistd::Group::from_gid(gid.into()).ok().flatten().expect("nobody's group").name;
    let edge = net.addr(2);
    let mut exwatch =
        Exwatch::launch_at(&net, &edge_site(&net), &["--user", "nobody"], false, |dir| log_dir(dir, true));
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    let first = exwatch.wait_event("first violation", |e| is_alert(e, "edge-perimeter", 3389));

    let snippet = std::fs::read_to_string(crate::util::repo().join("packaging/exwatch.logrotate"))
        .expect("packaging/exwatch.logrotate");
    let eve = exwatch.eve.to_str().expect("UTF-8 path").to_string();
    let adapted = snippet
        .replace("/var/log/exwatch/eve.json", &eve)
        .replace("create 0640 exwatch exwatch", &format!("create 0640 nobody {group}"))
        .replace(
            "systemctl kill --kill-whom=main --signal=HUP exwatch.service",
            &format!("kill -HUP {}", exwatch.pid()),
        );
    assert!(adapted.contains(&eve) && adapted.contains("kill -HUP"), "the snippet changed:\n{snippet}");
    let conf = net.file("logrotate.conf", &adapted);
    let state = net.dir.path().join("logrotate.state");
    let out =
        Command::new("logrotate").arg("-f").arg("-s").arg(&state).arg(&conf).output().expect("run logrotate");
    assert!(out.status.success(), "logrotate: {}{}", text(&out.stdout), text(&out.stderr));
    let rotated = PathBuf::from(format!("{eve}.1"));
    assert_eq!(events(&rotated).len(), 1, "the rotated file keeps the first alert");
    assert_eq!(owner(&exwatch.eve), uid, "logrotate made the new file for nobody");

    nc_send(&net, Side::Outside, &edge, 3389);
    let second =
        exwatch.wait_event("second violation, in the new file", |e| is_alert(e, "edge-perimeter", 3389));
    assert_ne!(first["src_port"], second["src_port"]);
    exwatch.stop("TERM").assert_clean();
}

/// `live --eve-log - | head -1`: once the reader of standard output has gone, the next
/// event ends the run as a stop would: the summary on stderr, status 0, no "Broken pipe".
#[test]
fn live_into_a_closed_pipe_ends_quietly_with_status_0() {
    use std::io::{BufRead, BufReader, Read};
    let Some(net) = setup("live_into_a_closed_pipe_ends_quietly_with_status_0") else {
        return;
    };
    let edge = net.addr(2);
    let topology = net.file("topology.toml", &edge_site(&net));
    let args = [
        "live",
        "--interface",
        net.interface(Side::Inside),
        "--topology",
        topology.to_str().expect("UTF-8"),
        "--eve-log",
        "-",
    ];
    let child = net
        .cmd(Side::Inside, env!("CARGO_BIN_EXE_exwatch"), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exwatch");
    let mut exwatch = Background { child, what: "exwatch live --eve-log -".into() };
    let mut stderr = BufReader::new(exwatch.child.stderr.take().expect("stderr"));
    let mut said = String::new();
    while !said.contains("watching") {
        assert!(stderr.read_line(&mut said).expect("read stderr") > 0, "exwatch ended: {said}");
    }
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    nc_send(&net, Side::Outside, &edge, 3389);
    let mut first = String::new();
    BufReader::new(exwatch.child.stdout.take().expect("stdout")).read_line(&mut first).expect("read a line");
    let event: Value = serde_json::from_str(&first).expect("an event");
    assert_eq!(event["event_type"], "alert", "{first}");

    // The pipe is closed now (its reader dropped): the next event cannot be written.
    nc_send(&net, Side::Outside, &edge, 3389);
    let status = wait_until("exwatch to end", || exwatch.child.try_wait().expect("wait"));
    stderr.read_to_string(&mut said).expect("read stderr");
    assert_eq!(status.code(), Some(0), "stderr:\n{said}");
    assert!(said.contains("exwatch summary") && said.contains("throughput:"), "{said}");
    assert!(!said.to_lowercase().contains("broken pipe"), "{said}");
}

/// The interface goes away under a running capture: exwatch ends with status 2, the
/// summary, and after it a line naming the interface; `/healthz` is never 200 after it.
#[test]
fn live_capture_failure_ends_with_status_2_after_the_summary() {
    let Some(net) = setup("live_capture_failure_ends_with_status_2_after_the_summary") else {
        return;
    };
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--metrics", &metrics]);
    let health = |net: &Net| {
        let url = format!("http://127.0.0.1:{METRICS_PORT}/healthz");
        let mut curl =
            net.cmd(Side::Inside, "curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3", &url]);
        text(&curl.output().expect("run curl").stdout)
    };
    wait_until("/healthz to be 200", || (health(&net) == "200").then_some(()));

    let interface = net.interface(Side::Inside).to_string();
    ip_ok(&["-n", net.ns(Side::Outside), "link", "del", net.interface(Side::Outside)]);
    let status = wait_until("exwatch to end", || exwatch.child.try_wait().expect("wait"));
    let stderr = exwatch.stderr_text();
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let end = lines.iter().position(|l| l.starts_with("throughput:")).expect("the summary");
    let error = lines.iter().rposition(|l| l.contains(&interface)).expect("a line naming the interface");
    assert!(error > end && lines[error].starts_with("exwatch: "), "{stderr}");
    assert_ne!(health(&net), "200", "nothing healthy answers once the capture failed");
}

/// `--config`: settings from the file reach the running capture (here `stats_interval`
/// and `bpf`), while the flags on the command line (the interface, the EVE log) win.
#[test]
fn live_config_file_settings_reach_the_capture() {
    let Some(net) = setup("live_config_file_settings_reach_the_capture") else {
        return;
    };
    let edge = net.addr(2);
    let config = net.file(
        "live.toml",
        "interface = \"no-such-interface\"\neve_log = \"not-this.json\"\nstats_interval = 1\nbpf = \"not tcp port 3390\"\n",
    );
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &["--config", config.to_str().expect("UTF-8")]);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let _filtered = nc_listener(&net, Side::Inside, &edge, 3390);
    nc_send(&net, Side::Outside, &edge, 3390);
    nc_send(&net, Side::Outside, &edge, 3389);
    exwatch.wait_event("the 3389 violation", |e| is_alert(e, "edge-perimeter", 3389));
    exwatch.wait_event("a stats event, from stats_interval", |e| e["event_type"] == "stats");
    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert!(stopped.alerts().iter().all(|e| e["dest_port"] != 3390), "the file's filter holds");
    assert!(!net.dir.path().join("not-this.json").exists(), "--eve-log wins over the file's");
}

/// Real clients on a Mailbox server's 443: curl's TLS is what the port must carry, nc's
/// line of text is plain text on an encrypted port, one advisory for it alone.
#[test]
fn live_plain_text_on_443_is_an_advisory_and_tls_is_not() {
    let Some(net) = setup("live_plain_text_on_443_is_an_advisory_and_tls_is_not") else {
        return;
    };
    let mailbox = net.addr(2);
    let topology = format!("[organization]\nname = \"live-test\"\n\n[roles]\nmailbox = [\"{mailbox}\"]\n");
    let mut exwatch = Exwatch::start(&net, &topology, &["--flows"]);
    let _https = nc_listener(&net, Side::Inside, &mailbox, 443);
    let url = format!("https://{mailbox}:443/");
    let _ = finish(net.cmd(Side::Outside, "curl", &["-sk", "--max-time", "2", &url]), "curl");
    nc_send(&net, Side::Outside, &mailbox, 443);

    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    let alerts = stopped.alerts();
    let found: Vec<_> =
        alerts.iter().map(|a| (a["policy"]["rule"].clone(), a["app_proto"].clone())).collect();
    assert_eq!(
        found,
        [(json!("plaintext-on-encrypted-port"), json!("failed"))],
        "{}",
        lines(&stopped.events)
    );
    let apps: Vec<_> = stopped
        .events
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["dest_port"] == 443)
        .map(|e| e["app_proto"].clone())
        .collect();
    assert!(apps.contains(&json!("tls")), "curl's flow is TLS: {}", lines(&stopped.events));
}

/// IPv6 on the veth pair (issue 10, item 1): the Inside end is a Mailbox server, the
/// Outside end an Internet client reaching it on 443. Neighbour discovery (solicitations
/// to solicited-node multicast, unicast advertisements), duplicate address detection and
/// MLD reports, all made by the kernels themselves, are the segment's own traffic: no
/// finding, counted as `local`; the client's HTTPS is judged as it should be.
#[test]
fn live_ipv6_neighbour_discovery_gives_no_finding() {
    let Some(net) = setup("live_ipv6_neighbour_discovery_gives_no_finding") else {
        return;
    };
    let v6 = |host: u8| format!("2001:db8:199:{}::{host}", net.subnet);
    let (client, mailbox) = (v6(1), v6(2));
    let topology = format!("[organization]\nname = \"live-test\"\n\n[roles]\nmailbox = [\"{mailbox}\"]\n");
    let mut exwatch = Exwatch::start(&net, &topology, &[]);
    // IPv6 on, after exwatch watches: the link-local addresses, their duplicate address
    // detection and MLD reports happen on the wire it captures.
    for side in [Side::Outside, Side::Inside] {
        let ns = net.ns(side);
        let enable = format!("echo 0 > /proc/sys/net/ipv6/conf/{ns}/disable_ipv6");
        net.ok(side, &["sh", "-c", &enable]);
        let addr = if side == Side::Outside { &client } else { &mailbox };
        ip_ok(&["-n", ns, "addr", "add", &format!("{addr}/64"), "dev", ns, "nodad"]);
    }
    let _https = nc_listener(&net, Side::Inside, &mailbox, 443);
    // A real TLS client: its ClientHello is what 443 must carry (plain text there is an
    // advisory, below).
    let url = format!("https://[{mailbox}]:443/");
    let _ = finish(net.cmd(Side::Outside, "curl", &["-sk", "--max-time", "2", &url]), "curl");

    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    assert!(stopped.alerts().is_empty(), "no finding expected:\n{}", lines(&stopped.events));
    let summary = stopped.summary.as_ref().expect("summary json");
    let local = summary["flows"]["local"].as_u64().unwrap_or(0);
    assert!(local >= 1, "neighbour discovery not counted as local; stderr:\n{}", stopped.stderr);
    assert!(stopped.rule_flows("client-https") >= 1, "HTTPS not judged; stderr:\n{}", stopped.stderr);
}

/// Issue 26: live rates are over the time frames came (from the first frame to the
/// last), not the sensor's whole run: exwatch idles 3 s before a 1 s replay, and its
/// summary's `wall_seconds` is the replay's second, not the 4 s it ran. The capture
/// socket's counters are in the summary, and the capture thread's busy time is its CPU.
#[test]
fn live_rates_are_over_the_frames_window_after_an_idle_start() {
    let Some(net) = setup("live_rates_are_over_the_frames_window_after_an_idle_start") else {
        return;
    };
    let capture = net.generated_capture(2000);
    let mut exwatch = Exwatch::start(&net, &edge_site(&net), &[]);
    std::thread::sleep(Duration::from_secs(3));
    let interface = net.interface(Side::Outside).to_string();
    net.ok(
        Side::Outside,
        &["tcpreplay", "-q", "--pps", "2000", "-i", &interface, capture.to_str().expect("utf-8")],
    );
    // The frames are read within a block timeout (50 ms) of their arrival.
    std::thread::sleep(Duration::from_millis(500));
    let stopped = exwatch.stop("TERM");
    stopped.assert_clean();
    let summary = stopped.summary.as_ref().expect("summary json");
    let t = &summary["throughput"];
    assert_eq!(t["reading"], "live", "{t}");
    assert_eq!(t["workers"], 1, "{t}");
    let frames = summary["packets"]["read"].as_f64().expect("frames counted");
    assert!(frames >= 2000.0, "{summary}");
    let window = t["wall_seconds"].as_f64().expect("wall seconds");
    assert!((0.5..3.0).contains(&window), "the rates' window should be the 1 s replay, not the run: {t}");
    let pps = t["packets_per_second"].as_f64().expect("rate");
    assert!((pps - frames / window).abs() < 1.0, "{t}");
    assert!(t["busy_seconds"]["read"].is_null(), "a capture thread reads and judges: {t}");
    let sockets = summary["capture"]["sockets"].as_array().expect("per-socket counters");
    assert_eq!(sockets.len(), 1, "{summary}");
    assert!(sockets[0]["received"].as_u64().is_some_and(|r| r as f64 >= frames), "{summary}");
    assert!(stopped.stderr.contains("over 1 capture thread"), "{}", stopped.stderr);
}

/// The judged events of a live run, without what depends on when the frames arrived
/// (timestamps, ages, a flow's end reason): alerts by rule and endpoints, flows by
/// Community ID, counts and state.
fn judged(events: &[Value]) -> Vec<String> {
    let mut judged: Vec<String> = events
        .iter()
        .filter_map(|e| match e["event_type"].as_str() {
            Some("alert") => Some(format!(
                "alert {} {} {}:{} {}:{}",
                e["alert"]["signature_id"],
                e["proto"],
                e["src_ip"],
                e["src_port"],
                e["dest_ip"],
                e["dest_port"]
            )),
            Some("flow") => Some(format!(
                "flow {} {} {} {} {} {} {}",
                e["community_id"],
                e["flow"]["pkts_toserver"],
                e["flow"]["pkts_toclient"],
                e["flow"]["bytes_toserver"],
                e["flow"]["bytes_toclient"],
                e["policy"]["verdict"],
                e["policy"]["rule"]
            )),
            _ => None,
        })
        .collect();
    judged.sort();
    judged
}

/// Issue 24: `--capture-threads 2` spreads the interface over two sockets of one fanout
/// group, each thread judging whole flows (both directions on one socket), so a replay
/// gives the same alerts and flow events, as a set, as one socket does; the summary
/// gives each socket's counters.
#[test]
fn live_two_capture_threads_judge_as_one_does() {
    let Some(net) = setup("live_two_capture_threads_judge_as_one_does") else {
        return;
    };
    let capture = net.generated_capture(3000);
    let topology =
        std::fs::read_to_string(crate::util::repo().join("rules/topology.toml")).expect("example topology");
    let interface = net.interface(Side::Outside).to_string();
    // Frames a little over 1514 bytes (tagged) must fit the veth's MTU.
    net.ok(Side::Outside, &["ip", "link", "set", &interface, "mtu", "9000"]);
    net.ok(Side::Inside, &["ip", "link", "set", net.interface(Side::Inside), "mtu", "9000"]);
    let mut runs = Vec::new();
    for threads in ["1", "2"] {
        let mut exwatch = Exwatch::start(&net, &topology, &["--capture-threads", threads, "--flows"]);
        net.ok(
            Side::Outside,
            &["tcpreplay", "-q", "--pps", "3000", "-i", &interface, capture.to_str().expect("utf-8")],
        );
        std::thread::sleep(Duration::from_millis(500));
        let stopped = exwatch.stop("TERM");
        assert_eq!(stopped.status.code().map(|c| c <= 1), Some(true), "{}", stopped.stderr);
        let summary = stopped.summary.clone().expect("summary json");
        let sockets = summary["capture"]["sockets"].as_array().cloned().unwrap_or_default();
        assert_eq!(sockets.len().to_string(), threads, "{summary}");
        assert!(
            sockets.iter().all(|s| s["received"].as_u64().is_some_and(|r| r > 0)),
            "every socket gets frames: {summary}"
        );
        assert!(!stopped.stderr.contains("one socket instead"), "{}", stopped.stderr);
        assert_eq!(stopped.stderr.contains("  socket 1: "), threads == "2", "{}", stopped.stderr);
        runs.push(judged(&stopped.events));
    }
    assert!(runs[0].iter().any(|e| e.starts_with("alert")), "the capture has findings: {:?}", runs[0]);
    assert_eq!(runs[0], runs[1], "two capture threads judged otherwise than one");
}
