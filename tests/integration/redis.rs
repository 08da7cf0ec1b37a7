//! Many sensors, one answer (issue 23, SPEC section 10), against a real `redis-server`:
//! sensors publishing with `--redis` (`analyze` runs and a `live` sensor on the veth lab
//! of `live.rs`), `exwatch collect` killed with SIGKILL and restarted, Redis stopped
//! under a running sensor, and the errors of a bad URL, a refused connection and a
//! wrong password.
//!
//! Each test starts its own `redis-server` (scripts/setup.sh installs it): on a free
//! loopback port, or inside the test's network namespace, with its data in a temporary
//! directory, and stops it by its pid. The tests that need the lab (root, namespaces)
//! say "skipped" where the machine cannot build it, as the live tests do.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::live::{self, edge_site, nc_listener, nc_send, Exwatch, Net, Side};
use crate::util;

/// How long a whole stream may take to collect: far above what it needs.
const COLLECT_DEADLINE: Duration = Duration::from_secs(120);

/// A `redis-server` of the test's own, with an append-only file synced at every write, so
/// that one stopped and started again has every entry it acknowledged.
struct Redis {
    child: Option<Child>,
    port: u16,
    /// The namespace it runs in, if not the test process's.
    ns: Option<String>,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Not started yet.
    fn new(ns: Option<&str>, port: u16, password: Option<&str>) -> Redis {
        Redis {
            child: None,
            port,
            ns: ns.map(str::to_string),
            password: password.map(str::to_string),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// On a free loopback port of the test process's namespace.
    fn on_loopback(password: Option<&str>) -> Redis {
        let mut redis = Redis::new(None, free_port(), password);
        redis.start();
        redis
    }

    fn command(&self, program: &str) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, program]);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Starts it (again, on the same data) and waits until it answers.
    fn start(&mut self) {
        let dir = self.dir.path().to_str().expect("temp path is UTF-8").to_string();
        let mut cmd = self.command("redis-server");
        let port = self.port.to_string();
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir, "--save", ""]);
        cmd.args(["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"]);
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let log = File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/setup.sh installs it)");
        self.child = Some(child);
        let start = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(start.elapsed() < live::DEADLINE, "redis-server did not answer: {}", self.log());
            std::thread::sleep(live::POLL);
        }
    }

    /// Stops it by its pid (SIGTERM: it syncs its data) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// `redis-cli ARGS`, its standard output.
    fn cli(&self, args: &[&str]) -> String {
        let mut cmd = self.command("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.args(["--no-auth-warning", "-a", password]);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn number(&self, args: &[&str]) -> u64 {
        let answer = self.cli(args);
        answer.trim().parse().unwrap_or_else(|_| panic!("redis-cli {}: {answer}", args.join(" ")))
    }

    /// The group's pending entries (the first line of `XPENDING`'s summary).
    fn pending(&self, key: &str, group: &str) -> u64 {
        let answer = self.cli(&["XPENDING", key, group]);
        let first = answer.lines().next().unwrap_or_default();
        first.trim().parse().unwrap_or_else(|_| panic!("redis-cli XPENDING: {answer}"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nothing listens on (the listener that found it is closed at once).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// A Redis on a free loopback port, and a temp dir for the test's own files.
fn redis_and_dir() -> (Redis, tempfile::TempDir) {
    (Redis::on_loopback(None), tempfile::tempdir().expect("temp dir"))
}

fn path(p: &Path) -> String {
    p.to_str().expect("temp path is UTF-8").to_string()
}

/// Runs exwatch in the lab's Inside namespace (where the test's Redis listens), to its end.
fn exwatch_in(net: &Net, args: &[&str]) -> (i32, String) {
    let out = net.cmd(Side::Inside, env!("CARGO_BIN_EXE_exwatch"), args).output().expect("run exwatch");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The lines of a file.
/// `analyze --flows` of the bundled sample as sensor `sensor`, its EVE log in `eve`,
/// published to `redis` with `more` arguments; status 1 (the sample's findings) is
/// success. Returns what it said on stderr.
fn publish_sample(redis: &Redis, eve: &Path, sensor: &str, more: &[&str]) -> String {
    let capture = util::capture("sample-contoso.pcap");
    let (capture, eve, url) = (path(&capture), path(eve), redis.url());
    let args = ["analyze", &capture, "--flows", "--eve-log", &eve, "--sensor-name", sensor, "--redis", &url];
    let (status, _, stderr) = util::exwatch(&[&args[..], more].concat());
    assert!(matches!(status, 0 | 1), "{stderr}");
    stderr
}

/// A Redis with the bundled sample published to it by sensor `site-a` (`more` added to
/// its arguments), the test's temp dir, the EVE log that run wrote there, and its lines.
fn sample_published(more: &[&str]) -> (Redis, tempfile::TempDir, PathBuf, Vec<String>) {
    let (redis, dir) = redis_and_dir();
    let eve = dir.path().join("eve.json");
    publish_sample(&redis, &eve, "site-a", more);
    let lines = lines_of(&eve);
    (redis, dir, eve, lines)
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

/// Every `<host>/eve.json` under a collector's directory: host -> lines.
fn collected(out: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut hosts = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        hosts.insert(name, lines_of(&entry.path().join("eve.json")));
    }
    hosts
}

/// `exwatch report --json` of EVE files, parsed.
fn report_of(files: &[PathBuf], json: &Path) -> Value {
    let mut args = vec!["report".to_string()];
    args.extend(files.iter().map(|f| path(f)));
    args.extend(["--json".to_string(), path(json)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, stderr) = util::exwatch(&args);
    assert!(matches!(status, 0 | 1), "exwatch report: {status}: {stderr}");
    serde_json::from_slice(&std::fs::read(json).expect("report written")).expect("report JSON")
}

/// What two reports of the same events must agree on: every row of every section, the
/// totals (flows, bytes, findings), the role matrix and the never-restrict pairs.
fn assert_same_report(a: &Value, b: &Value, what: &str) {
    let rows = |r: &Value| -> Vec<Value> {
        let sections = r["sections"].as_array().cloned().unwrap_or_default();
        sections.iter().flat_map(|s| s["rows"].as_array().cloned().unwrap_or_default()).collect()
    };
    let (rows_a, rows_b) = (rows(a), rows(b));
    assert_eq!(rows_a.len(), rows_b.len(), "{what}: rows");
    for (x, y) in rows_a.iter().zip(&rows_b) {
        for key in ["rule", "status", "flows", "bytes", "host_pairs", "alerts", "first_seen", "last_seen"] {
            assert_eq!(x[key], y[key], "{what}: row {}: {key}", x["rule"]);
        }
        assert!(x["findings"] == y["findings"], "{what}: row {}: findings differ", x["rule"]);
    }
    assert!(a["sections"] == b["sections"], "{what}: sections differ");
    for key in ["flows", "bytes", "findings", "unmatched_flows"] {
        assert_eq!(a["totals"][key], b["totals"][key], "{what}: totals.{key}");
    }
    assert!(a["role_matrix"] == b["role_matrix"], "{what}: role matrix differs");
    assert!(a["never_restrict"] == b["never_restrict"], "{what}: never-restrict pairs differ");
}

/// A collector started in the lab; killed on drop if the test did not stop it.
struct Collector {
    child: Child,
    stderr: PathBuf,
}

impl Collector {
    /// `name` names its stderr file in `dir`.
    fn start(net: &Net, redis: &Redis, (dir, name): (&Path, &str), extra: &[&str]) -> Collector {
        let stderr = dir.join(format!("{name}.txt"));
        let url = redis.url();
        let out = path(&dir.join("collected"));
        let mut args =
            vec!["collect", "--redis", &url, "--group", "central", "--consumer", "c1", "--out", &out];
        args.extend(extra);
        let child = net
            .cmd(Side::Inside, env!("CARGO_BIN_EXE_exwatch"), &args)
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start exwatch collect");
        Collector { child, stderr }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Three kinds of sensor into one stream: `analyze` of one capture as `site-a`, of
/// another as `site-b`, of the first again as `site-c` (so every flow of `site-a` is
/// seen twice), and a `live` sensor on the lab's veth pair fed by nc. A collector is
/// killed with SIGKILL in the middle of the stream and started again under the same
/// name: it reads its pending entries first, and in the end every sensor's file holds
/// every line of that sensor's own EVE log, a few at most twice. The report of the
/// collected files equals, row for row, the report of the sensors' own logs, the flows
/// written twice and the flows two sensors saw counted once; so does the collector's
/// own report, built in memory as it went.
#[test]
fn three_sensors_into_one_stream_and_a_collector_killed_midway() {
    let Some(net) = live::setup("three_sensors_into_one_stream_and_a_collector_killed_midway") else {
        return;
    };
    let mut redis = Redis::new(Some(net.ns(Side::Inside)), 6379, None);
    redis.start();
    let url = redis.url();
    let work = tempfile::tempdir().expect("temp dir");
    let generated = work.path().join("generated.pcap");
    let (status, _, stderr) =
        util::exwatch(&["generate", "--packets", "100000", "--seed", "23", &path(&generated)]);
    assert_eq!(status, 0, "{stderr}");

    let edge = net.addr(2);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let mut sensor = Exwatch::start(
        &net,
        &edge_site(&net),
        &["--flows", "--no-aggregate", "--sensor-name", "live-lab", "--redis", &url],
    );
    for _ in 0..3 {
        nc_send(&net, Side::Outside, &edge, 3389);
    }
    sensor.wait_event("an edge-perimeter alert", |e| e["event_type"] == "alert");
    let stopped = sensor.stop("TERM");
    stopped.assert_clean();
    let live_log = work.path().join("live-lab.json");
    std::fs::copy(&sensor.eve, &live_log).expect("copy the live sensor's log");

    let contoso = util::capture("sample-contoso.pcap");
    let mut logs = vec![live_log];
    for (name, capture) in [("site-a", &contoso), ("site-b", &generated), ("site-c", &contoso)] {
        let log = work.path().join(format!("{name}.json"));
        let (status, stderr) = exwatch_in(
            &net,
            &[
                "analyze",
                &path(capture),
                "--flows",
                "--eve-log",
                &path(&log),
                "--sensor-name",
                name,
                "--redis",
                &url,
            ],
        );
        assert!(matches!(status, 0 | 1), "analyze {name}: {status}: {stderr}");
        assert!(stderr.contains("0 dropped, 0 still queued"), "{name}: {stderr}");
        logs.push(log);
    }
    let total: usize = logs.iter().map(|l| lines_of(l).len()).sum();
    assert!(total > 2_000, "a stream long enough to kill a collector in: {total} events");
    assert_eq!(
        redis.number(&["XLEN", "exwatch:eve"]),
        total as u64,
        "every line the sensors wrote is in the stream"
    );

    // The collector, five entries at a time, killed once a quarter of the stream is on disk.
    let report_json = work.path().join("collected-live.json");
    let extra = ["--batch", "5", "--every", "1s", "--report-json", &path(&report_json), "--metrics", "9912"];
    let out = work.path().join("collected");
    let mut first = Collector::start(&net, &redis, (work.path(), "first"), &extra);
    let start = Instant::now();
    loop {
        let written: usize = collected(&out).values().map(Vec::len).sum();
        if written >= total / 4 {
            break;
        }
        assert!(first.child.try_wait().expect("wait").is_none(), "collect exited: {}", first.stderr_text());
        assert!(start.elapsed() < COLLECT_DEADLINE, "collect wrote {written} of {total} lines");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill();
    let written_at_kill: usize = collected(&out).values().map(Vec::len).sum();
    assert!(written_at_kill < total, "killed in the middle: {written_at_kill} of {total} written");
    let pending_at_kill = redis.pending("exwatch:eve", "central");

    let mut second = Collector::start(&net, &redis, (work.path(), "second"), &extra);
    let start = Instant::now();
    loop {
        let hosts = collected(&out);
        let written: usize = hosts.values().map(Vec::len).sum();
        let lag = redis.cli(&["XINFO", "GROUPS", "exwatch:eve"]);
        let pending = redis.pending("exwatch:eve", "central");
        if written >= total
            && pending == 0
            && lag.lines().collect::<Vec<_>>().windows(2).any(|w| w == ["lag", "0"])
        {
            break;
        }
        assert!(second.child.try_wait().expect("wait").is_none(), "collect exited: {}", second.stderr_text());
        assert!(start.elapsed() < COLLECT_DEADLINE, "collected {written} of {total} lines; {lag}");
        std::thread::sleep(live::POLL);
    }
    // The collector feeds its in-memory report after it has written and acknowledged a
    // batch: the page catches up with the files a moment later.
    let violation = "exwatch_rule_status{rule=\"edge-perimeter\",status=\"violation\"}";
    let start = std::time::Instant::now();
    let page = loop {
        let page = net
            .cmd(Side::Inside, "curl", &["-sf", "-m", "3", "http://127.0.0.1:9912/metrics"])
            .output()
            .expect("curl");
        let page = String::from_utf8_lossy(&page.stdout).into_owned();
        if live::sample(&page, violation).is_some() || start.elapsed() > COLLECT_DEADLINE {
            break page;
        }
        std::thread::sleep(live::POLL);
    };
    for sensor in ["live-lab", "site-a", "site-b", "site-c"] {
        let series = format!("exwatch_sensor_last_seen_seconds{{sensor=\"{sensor}\"}}");
        assert!(live::sample(&page, &series).is_some_and(|t| t > 1.7e9), "{series} on\n{page}");
    }
    assert_eq!(live::sample(&page, violation), Some(1.0), "{page}");
    let pid = second.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = second.child.wait().expect("wait for collect");
    let said = second.stderr_text();
    assert_eq!(status.code(), Some(0), "collect after SIGTERM: {said}");
    let reread = format!("({pending_at_kill} read again from the pending list, ");
    assert!(
        said.contains(&reread),
        "the entries pending at the kill were read again first: {reread}\n{said}"
    );

    // Every sensor's file: every line of its own log once, and nothing else: what was on
    // disk but not acknowledged when the collector was killed is found at the end of the
    // files, not written again.
    let hosts = collected(&out);
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["live-lab", "site-a", "site-b", "site-c"]);
    let mut twice = 0;
    for (host, lines) in &hosts {
        let own = lines_of(&work.path().join(format!("{host}.json")));
        let mut got = lines.clone();
        let mut want = own.clone();
        got.sort();
        got.dedup();
        want.sort();
        assert_eq!(got, want, "{host}: the collected lines are the sensor's lines");
        twice += lines.len() - own.len();
    }
    assert_eq!(twice, 0, "lines written twice");

    let collected_files: Vec<PathBuf> = hosts.keys().map(|h| out.join(h).join("eve.json")).collect();
    let from_sensors = report_of(&logs, &work.path().join("sensors.json"));
    let from_collected = report_of(&collected_files, &work.path().join("collected.json"));
    assert_same_report(&from_sensors, &from_collected, "sensors' logs vs collected files");
    let in_memory: Value =
        serde_json::from_slice(&std::fs::read(&report_json).expect("collect's report")).expect("JSON");
    assert_same_report(&from_sensors, &in_memory, "sensors' logs vs the collector's own report");
    let contoso_flows =
        lines_of(&logs[1]).iter().filter(|l| l.contains("\"event_type\":\"flow\"")).count() as u64;
    assert!(
        from_sensors["totals"]["duplicates"].as_u64() >= Some(contoso_flows),
        "site-c's flows are site-a's: counted once; {}",
        from_sensors["totals"]
    );
    redis.stop();
}

/// Redis stopped under a live sensor and started again: the sensor keeps capturing and
/// writing its log, the lines wait in its queue (`exwatch_redis_queued`), and once Redis
/// is back the backlog drains: the stream holds every line of the log, nothing dropped.
#[test]
fn live_keeps_capturing_while_redis_is_down_and_sends_the_backlog() {
    let Some(net) = live::setup("live_keeps_capturing_while_redis_is_down_and_sends_the_backlog") else {
        return;
    };
    let mut redis = Redis::new(Some(net.ns(Side::Inside)), 6379, None);
    redis.start();
    let url = redis.url();
    let edge = net.addr(2);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let metrics = live::METRICS_PORT.to_string();
    let mut sensor =
        Exwatch::start(&net, &edge_site(&net), &["--no-aggregate", "--redis", &url, "--metrics", &metrics]);
    let metric = |name: &str| live::scrape(&net).and_then(|page| live::sample(&page, name));
    nc_send(&net, Side::Outside, &edge, 3389);
    live::wait_until("the first alert sent", || (metric("exwatch_redis_sent_total")? >= 1.0).then_some(()));

    redis.stop();
    for _ in 0..5 {
        nc_send(&net, Side::Outside, &edge, 3389);
    }
    live::wait_until("six alerts in the local log", || (live::events(&sensor.eve).len() >= 6).then_some(()));
    live::wait_until("five lines queued", || (metric("exwatch_redis_queued")? >= 5.0).then_some(()));
    assert_eq!(metric("exwatch_redis_dropped_total"), Some(0.0));

    redis.start();
    live::wait_until("the backlog sent", || {
        (metric("exwatch_redis_queued")? == 0.0 && metric("exwatch_redis_reconnects_total")? >= 1.0)
            .then_some(())
    });
    let stopped = sensor.stop("TERM");
    stopped.assert_clean();
    let written = stopped.events.len() as u64;
    assert_eq!(written, 6, "{}", stopped.stderr);
    assert_eq!(redis.number(&["XLEN", "exwatch:eve"]), written, "every line of the log reached the stream");
    let summary = stopped.summary.as_ref().expect("summary");
    assert_eq!(summary["redis"]["sent"], written, "{summary}");
    assert_eq!(summary["redis"]["dropped"], 0, "{summary}");
    assert!(stopped.stderr.contains("connected to Redis again"), "{}", stopped.stderr);
    redis.stop();
}

/// A live sensor started while its Redis is not running starts anyway, says so, and
/// counts: with a queue of 2 and 5 alerts during the outage, exactly 3 are dropped;
/// once Redis runs, the 2 queued and every later line go to the list (list mode), so
/// sent + dropped = the lines of the local log, and the list holds what was sent.
#[test]
fn live_counts_exactly_what_a_small_queue_drops_in_list_mode() {
    let Some(net) = live::setup("live_counts_exactly_what_a_small_queue_drops_in_list_mode") else {
        return;
    };
    let mut redis = Redis::new(Some(net.ns(Side::Inside)), 6379, None);
    let url = redis.url();
    let edge = net.addr(2);
    let _rdp = nc_listener(&net, Side::Inside, &edge, 3389);
    let metrics = live::METRICS_PORT.to_string();
    let mut sensor = Exwatch::start(
        &net,
        &edge_site(&net),
        &[
            "--no-aggregate",
            "--redis",
            &url,
            "--redis-mode",
            "list",
            "--redis-key",
            "lab:eve",
            "--redis-queue",
            "2",
            "--metrics",
            &metrics,
        ],
    );
    assert!(
        sensor.stderr_text().contains("redis://127.0.0.1:6379: cannot connect to Redis"),
        "{}",
        sensor.stderr_text()
    );
    let metric = |name: &str| live::scrape(&net).and_then(|page| live::sample(&page, name));
    for _ in 0..5 {
        nc_send(&net, Side::Outside, &edge, 3389);
    }
    live::wait_until("three lines dropped", || (metric("exwatch_redis_dropped_total")? >= 3.0).then_some(()));
    redis.start();
    live::wait_until("the queue sent", || (metric("exwatch_redis_queued")? == 0.0).then_some(()));
    nc_send(&net, Side::Outside, &edge, 3389);
    live::wait_until("the sixth alert sent", || (metric("exwatch_redis_sent_total")? >= 3.0).then_some(()));
    let stopped = sensor.stop("TERM");
    stopped.assert_clean();
    let summary = stopped.summary.as_ref().expect("summary");
    let (sent, dropped) = (summary["redis"]["sent"].as_u64(), summary["redis"]["dropped"].as_u64());
    assert_eq!((sent, dropped), (Some(3), Some(3)), "{summary}");
    assert_eq!(stopped.events.len(), 6, "the local log keeps every alert");
    assert_eq!(redis.number(&["LLEN", "lab:eve"]), 3);
    let pushed = redis.cli(&["LRANGE", "lab:eve", "0", "-1"]);
    let local = std::fs::read_to_string(&sensor.eve).expect("the local log");
    let local: Vec<&str> = local.lines().collect();
    // The two queued first, then the one after the outage.
    assert_eq!(pushed.lines().collect::<Vec<_>>(), [local[0], local[1], local[5]]);
    redis.stop();
}

/// A wrong password, a refused connection and a URL that is not one: `analyze` and
/// `collect` exit 2 at once with a line naming the URL, never its password. The right
/// password from EXWATCH_REDIS_PASSWORD works, and every line goes to the stream.
#[test]
fn bad_redis_urls_and_servers_are_refused_at_start_naming_the_url_not_its_password() {
    let redis = Redis::on_loopback(Some("right-pw-4711"));
    let port = redis.port;
    let capture = util::capture("sample-contoso.pcap");
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.json");
    let refused = free_port();
    let cases = [
        (
            format!("redis://:wrong-pw-0815@127.0.0.1:{port}"),
            format!("redis://***@127.0.0.1:{port}: cannot connect to Redis"),
        ),
        (
            format!("redis://:wrong-pw-0815@127.0.0.1:{refused}/0"),
            format!("redis://***@127.0.0.1:{refused}/0: cannot connect to Redis"),
        ),
        (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}: not a Redis URL")),
        ("http://:wrong-pw-0815@host/".to_string(), "http://***@host/: not a Redis URL".to_string()),
    ];
    for (url, said) in &cases {
        let (status, _, stderr) =
            util::exwatch(&["analyze", &path(&capture), "--eve-log", &path(&eve), "--redis", url]);
        assert_eq!(status, 2, "analyze --redis {url}: {stderr}");
        assert!(stderr.contains(said), "analyze --redis {url}: {stderr}");
        assert!(!stderr.contains("wrong-pw-0815"), "the password was printed: {stderr}");
        assert!(!stderr.contains("exwatch summary"), "refused before the run: {stderr}");
        let out = path(&dir.path().join("collected"));
        let (status, _, stderr) = util::exwatch(&["collect", "--redis", url, "--group", "g", "--out", &out]);
        assert_eq!(status, 2, "collect --redis {url}: {stderr}");
        assert!(stderr.contains(said), "collect --redis {url}: {stderr}");
        assert!(!stderr.contains("wrong-pw-0815"), "the password was printed: {stderr}");
    }
    let (status, _, stderr) =
        util::exwatch(&["analyze", &path(&capture), "--eve-log", &path(&eve), "--redis", &cases[0].0]);
    assert!(stderr.contains("Password authentication failed"), "says why: {stderr}");
    assert_eq!(status, 2);

    let run = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["analyze", &path(&capture), "--flows", "--eve-log", &path(&eve), "--redis", &redis.url()])
        .env("EXWATCH_REDIS_PASSWORD", "right-pw-4711")
        .output()
        .expect("run exwatch");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(matches!(run.status.code(), Some(0 | 1)), "{stderr}");
    let lines = lines_of(&eve).len() as u64;
    assert!(lines > 0);
    assert_eq!(redis.number(&["XLEN", "exwatch:eve"]), lines, "{stderr}");
    let first = redis.cli(&["XRANGE", "exwatch:eve", "-", "+", "COUNT", "1"]);
    assert!(first.contains("eve\n{\"timestamp\""), "each entry's field is `eve`: {first}");
}

/// SIGHUP makes `collect` reopen its files (logrotate moved them): what it collects
/// after the signal goes to a new `eve.json`, what it wrote before stays in the moved
/// file, and SIGTERM ends it with status 0 and the report written.
#[test]
fn collect_reopens_its_files_on_sighup_and_stops_on_sigterm() {
    let (redis, dir) = redis_and_dir();
    let out = dir.path().join("collected");
    let report = dir.path().join("report.json");
    let stderr = dir.path().join("collect.txt");
    let mut collect = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["collect", "--redis", &redis.url(), "--group", "g", "--out", &path(&out)])
        .args(["--report-json", &path(&report)])
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start collect");
    let eve = dir.path().join("eve.json");
    let publish = || {
        publish_sample(&redis, &eve, "site-a", &[]);
        lines_of(&eve).len()
    };
    let file = out.join("site-a").join("eve.json");
    let n = publish();
    live::wait_until("the first run collected", || (lines_of(&file).len() == n).then_some(()));
    let rotated = out.join("site-a").join("eve.json.1");
    std::fs::rename(&file, &rotated).expect("rotate");
    let pid = collect.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    publish();
    let start = Instant::now();
    while lines_of(&file).len() < n {
        let said = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(
            start.elapsed() < live::DEADLINE,
            "the second run collected in a new file: {} of {n} lines, {} in the moved one; {said}",
            lines_of(&file).len(),
            lines_of(&rotated).len()
        );
        std::thread::sleep(live::POLL);
    }
    assert_eq!(lines_of(&file).len(), n);
    assert_eq!(lines_of(&rotated).len(), n, "the moved file keeps what was written before");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = collect.wait().expect("wait");
    let said = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(said.contains(&format!("{} events written and acknowledged", 2 * n)), "{said}");
    let built: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report at exit")).expect("JSON");
    assert!(built["totals"]["flows"].as_u64() > Some(0), "{}", built["totals"]);
}

/// The redis keys of `live --config` are read like the flags: a URL that is not one is
/// refused at start, naming the file, the line and the key.
#[test]
fn live_config_takes_the_redis_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("live.toml");
    std::fs::write(&config, "interface = \"lo\"\nredis = \"redis//:pw@nowhere\"\nredis_mode = \"list\"\n")
        .expect("write config");
    let topology = util::repo().join("rules/topology.toml");
    let (status, _, stderr) =
        util::exwatch(&["live", "--config", &path(&config), "--topology", &path(&topology)]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--redis ***@nowhere: not a Redis URL"), "{stderr}");
    assert!(stderr.contains(&format!("(set at {}:2: redis)", config.display())), "{stderr}");
    assert!(!stderr.contains(":pw@"), "{stderr}");
}

/// `analyze` with a queue of one line: what does not fit is dropped and said, and every
/// line of the log is either in the stream or counted as dropped (sent + dropped =
/// written), in the summary as on stderr.
#[test]
fn analyze_counts_and_says_what_it_could_not_deliver() {
    let (redis, dir) = redis_and_dir();
    let eve = dir.path().join("eve.json");
    let summary = dir.path().join("summary.json");
    let stderr =
        publish_sample(&redis, &eve, "site-a", &["--summary-json", &path(&summary), "--redis-queue", "1"]);
    let written = lines_of(&eve).len() as u64;
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("JSON");
    let (sent, dropped) = (summary["redis"]["sent"].as_u64(), summary["redis"]["dropped"].as_u64());
    let (Some(sent), Some(dropped)) = (sent, dropped) else { panic!("no redis counts: {summary}") };
    assert_eq!(sent + dropped, written, "{summary}");
    assert_eq!(redis.number(&["XLEN", "exwatch:eve"]), sent);
    assert!(dropped > 0, "the writer hands over lines by the chunk: a queue of one drops");
    let said = format!("{}: {dropped} event(s) not delivered to Redis ({sent} sent)", redis.url());
    assert!(stderr.contains(&said), "{said}\n{stderr}");
}

/// `--redis-maxlen N` keeps the stream near N entries (trimmed once a batch, as Redis
/// trims with `~`: whole nodes of about 100 entries), however many the run sends.
#[test]
fn the_stream_is_trimmed_near_redis_maxlen() {
    let (redis, dir) = redis_and_dir();
    let eve = dir.path().join("eve.json");
    let capture = dir.path().join("capture.pcap");
    let (status, _, stderr) = util::exwatch(&["generate", &path(&capture), "--packets", "50000"]);
    assert_eq!(status, 0, "{stderr}");
    let args = ["analyze", &path(&capture), "--flows", "--eve-log", &path(&eve), "--redis", &redis.url()];
    let (status, _, stderr) = util::exwatch(&[&args[..], &["--redis-maxlen", "200"]].concat());
    assert!(matches!(status, 0 | 1), "{stderr}");
    let written = lines_of(&eve).len() as u64;
    assert!(written > 1000, "enough events to trim: {written}");
    let kept = redis.number(&["XLEN", "exwatch:eve"]);
    assert!((200..=400).contains(&kept), "{kept} of {written} entries kept with --redis-maxlen 200");
}

/// `collect --since/--until`: its report counts only the flows that started inside the
/// period, the one that started at `--since` included and the one that started at
/// `--until` not, and the findings on them, as `exwatch report` does with the same
/// period; its files keep every event.
#[test]
fn collect_since_until_counts_the_flows_that_started_inside_the_period() {
    let (redis, dir, eve, lines) = sample_published(&[]);
    // Each flow's start, as --since takes it (EVE writes +0000, RFC 3339 wants Z).
    let starts: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("EVE line"))
        .filter(|e| e["event_type"] == "flow")
        .map(|e| e["flow"]["start"].as_str().expect("flow.start").replace("+0000", "Z"))
        .collect();
    let once = |s: &String| starts.iter().filter(|t| *t == s).count() == 1;
    let mut bounds: Vec<&String> = starts.iter().filter(|s| once(s)).collect();
    bounds.sort();
    let (since, until) = (bounds[bounds.len() / 4].clone(), bounds[bounds.len() * 3 / 4].clone());
    let inside = starts.iter().filter(|s| **s >= since && **s < until).count() as u64;
    assert!(inside > 0 && inside < starts.len() as u64, "a period that keeps some: {inside}");

    let out = dir.path().join("collected");
    let report = dir.path().join("report.json");
    let said = dir.path().join("collect.txt");
    let mut collect = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["collect", "--redis", &redis.url(), "--group", "g", "--out", &path(&out)])
        .args(["--report-json", &path(&report), "--since", &since, "--until", &until])
        .stdout(Stdio::null())
        .stderr(File::create(&said).expect("stderr file"))
        .spawn()
        .expect("start collect");
    let file = out.join("site-a").join("eve.json");
    live::wait_until("every line collected", || (lines_of(&file).len() == lines.len()).then_some(()));
    let pid = collect.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = collect.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&said).unwrap_or_default());
    assert_eq!(lines_of(&file), lines, "the files keep every event, inside the period or not");

    let built: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(built["totals"]["flows"].as_u64(), Some(inside), "{}", built["totals"]);
    let json = dir.path().join("period.json");
    let (status, _, stderr) =
        util::exwatch(&["report", &path(&eve), "--json", &path(&json), "--since", &since, "--until", &until]);
    assert!(matches!(status, 0 | 1), "{stderr}");
    let period: Value = serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    assert_same_report(&period, &built, "report --since/--until vs collect --since/--until");
    let everything = report_of(std::slice::from_ref(&eve), &dir.path().join("all.json"));
    assert!(
        everything["totals"]["findings"] != built["totals"]["findings"],
        "the period leaves findings out: {}",
        everything["totals"]
    );
    let (status, _, stderr) = util::exwatch(&[
        "collect",
        "--redis",
        &redis.url(),
        "--group",
        "g",
        "--out",
        &path(&out),
        "--until",
        "yesterday",
    ]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--until \"yesterday\": not an RFC 3339 time"), "{stderr}");
}

/// A collector killed after it wrote a batch and before it acknowledged it, as Redis and
/// the files then stand: 40 entries pending for its consumer, their lines at the end of
/// the sensor's file, and half of the next line the kill cut. Started again under the
/// same name, it finds those 40 on disk (acknowledged, not written again), cuts the half
/// line off, and writes the rest: the file holds every line of the sensor's log once,
/// and its report counts every flow once.
#[test]
fn collect_started_again_does_not_write_twice_what_it_wrote_before_it_was_killed() {
    let (redis, dir, eve, lines) = sample_published(&[]);
    assert!(lines.len() > 100, "{}", lines.len());
    assert_eq!(redis.cli(&["XGROUP", "CREATE", "exwatch:eve", "central", "0"]).trim(), "OK");
    redis.cli(&["XREADGROUP", "GROUP", "central", "c1", "COUNT", "40", "STREAMS", "exwatch:eve", ">"]);
    assert_eq!(redis.pending("exwatch:eve", "central"), 40);
    let out = dir.path().join("collected");
    std::fs::create_dir_all(out.join("site-a")).expect("mkdir");
    let half = &lines[40][..lines[40].len() / 2];
    std::fs::write(out.join("site-a/eve.json"), lines[..40].join("\n") + "\n" + half).expect("write");

    let report = dir.path().join("report.json");
    let said = dir.path().join("collect.txt");
    let mut collect = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["collect", "--redis", &redis.url(), "--group", "central", "--consumer", "c1"])
        .args(["--out", &path(&out), "--report-json", &path(&report)])
        .stdout(Stdio::null())
        .stderr(File::create(&said).expect("stderr file"))
        .spawn()
        .expect("start collect");
    live::wait_until("the group's entries all acknowledged", || {
        (redis.pending("exwatch:eve", "central") == 0
            && redis
                .cli(&["XINFO", "GROUPS", "exwatch:eve"])
                .lines()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["lag", "0"]))
        .then_some(())
    });
    let pid = collect.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = collect.wait().expect("wait");
    let said = std::fs::read_to_string(&said).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(
        said.contains("(40 read again from the pending list, 40 of them found already written)"),
        "{said}"
    );
    assert_eq!(lines_of(&out.join("site-a/eve.json")), lines, "every line once, and no half line");
    let built: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    let from_log = report_of(std::slice::from_ref(&eve), &dir.path().join("log.json"));
    assert_same_report(&from_log, &built, "the sensor's log vs the collector started again");
    assert_eq!(built["totals"]["duplicates"], from_log["totals"]["duplicates"], "{}", built["totals"]);
}

/// List mode: a sensor RPUSHes its lines (`--redis-mode list`), a collector reading the
/// list five lines at a time is killed with SIGKILL once a quarter is on disk, and one
/// started again under the same name reads its processing list first: in the end the
/// sensor's file holds every line of its log once, in order, both lists are empty, and
/// the collector's report equals the report of the sensor's log.
#[test]
fn list_mode_collect_killed_midway_loses_nothing_and_writes_nothing_twice() {
    let (redis, dir, eve, lines) = sample_published(&["--redis-mode", "list", "--redis-key", "lab:eve"]);
    assert_eq!(redis.number(&["LLEN", "lab:eve"]), lines.len() as u64);
    let out = dir.path().join("collected");
    let file = out.join("site-a/eve.json");
    let report = dir.path().join("report.json");
    let start = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_exwatch"))
            .args(["collect", "--redis", &redis.url(), "--redis-mode", "list", "--redis-key", "lab:eve"])
            .args(["--consumer", "c1", "--batch", "5", "--out", &path(&out)])
            .args(["--report-json", &path(&report)])
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join(name)).expect("stderr file"))
            .spawn()
            .expect("start collect")
    };
    let mut first = start("first.txt");
    let begun = Instant::now();
    while lines_of(&file).len() < lines.len() / 4 {
        assert!(first.try_wait().expect("wait").is_none(), "collect exited");
        assert!(begun.elapsed() < COLLECT_DEADLINE, "collect wrote {} lines", lines_of(&file).len());
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = first.kill();
    let _ = first.wait();
    let processing = redis.number(&["LLEN", "lab:eve:processing:c1"]);
    assert!(lines_of(&file).len() < lines.len(), "killed in the middle");

    let mut second = start("second.txt");
    live::wait_until("both lists empty and every line on disk", || {
        (redis.number(&["LLEN", "lab:eve"]) == 0
            && redis.number(&["LLEN", "lab:eve:processing:c1"]) == 0
            && lines_of(&file).len() >= lines.len())
        .then_some(())
    });
    let pid = second.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = second.wait().expect("wait");
    let said = std::fs::read_to_string(dir.path().join("second.txt")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(said.contains(&format!("({processing} read again from the pending list, ")), "{said}");
    assert_eq!(lines_of(&file), lines, "every line once, in order");
    let built: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    let from_log = report_of(std::slice::from_ref(&eve), &dir.path().join("log.json"));
    assert_same_report(&from_log, &built, "the sensor's log vs the list collector killed and started again");
    for (mode, group, said) in [
        ("stream", None, "--group G is needed to read a stream"),
        ("list", Some("g"), "--group is for streams: a list (--redis-mode list) has none"),
    ] {
        let mut args = vec!["collect", "--redis", "redis://127.0.0.1:1", "--redis-mode", mode, "--out", "x"];
        args.extend(group.map(|g| ["--group", g]).iter().flatten());
        let (status, _, stderr) = util::exwatch(&args);
        assert_eq!(status, 2, "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
    }
}

/// Redis stopped under a running collector and started again (its data kept): the
/// collector connects again, reads on, and every line of both sensors' logs is in their
/// files once.
#[test]
fn collect_rides_out_a_redis_restart() {
    let (mut redis, dir) = redis_and_dir();
    let publish = |redis: &Redis, name: &str| {
        let eve = dir.path().join(format!("{name}.json"));
        publish_sample(redis, &eve, name, &[]);
        lines_of(&eve)
    };
    let out = dir.path().join("collected");
    let said = dir.path().join("collect.txt");
    let mut collect = Command::new(env!("CARGO_BIN_EXE_exwatch"))
        .args(["collect", "--redis", &redis.url(), "--group", "g", "--consumer", "c1", "--out", &path(&out)])
        .stdout(Stdio::null())
        .stderr(File::create(&said).expect("stderr file"))
        .spawn()
        .expect("start collect");
    let a = publish(&redis, "site-a");
    let file_a = out.join("site-a/eve.json");
    live::wait_until("site-a collected", || (lines_of(&file_a).len() == a.len()).then_some(()));
    redis.stop();
    std::thread::sleep(Duration::from_millis(500));
    assert!(collect.try_wait().expect("wait").is_none(), "collect stayed up without Redis");
    redis.start();
    let b = publish(&redis, "site-b");
    let file_b = out.join("site-b/eve.json");
    live::wait_until("site-b collected after the restart", || {
        (lines_of(&file_b).len() >= b.len()).then_some(())
    });
    live::wait_until("nothing pending", || (redis.pending("exwatch:eve", "g") == 0).then_some(()));
    let pid = collect.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = collect.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&said).unwrap_or_default());
    assert_eq!(lines_of(&file_a), a, "site-a once");
    assert_eq!(lines_of(&file_b), b, "site-b once");
}
