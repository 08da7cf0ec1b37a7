//! `exwatch live`: an interface (a SPAN or mirror port) watched until SIGINT or SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Error, Outcome, RunSettings};
use toml::Spanned;

use crate::capture::{self, LiveCapture};
use crate::config;
use crate::output::Sink;
use crate::pipeline;
use crate::telemetry::{prometheus, Monitor};

/// Everything `live` needs, validated.
pub struct Settings {
    pub interface: String,
    pub capture: capture::LiveSettings,
    pub run: RunSettings,
    pub metrics: Option<SocketAddr>,
    pub stats_interval: Option<Duration>,
    /// Where the `stats` events go instead of the EVE log (`--stats-log`).
    pub stats_log: Option<PathBuf>,
    /// The user to run as once the interface, the EVE log and the metrics socket are open.
    pub user: Option<String>,
}

impl Settings {
    pub fn sink(&self) -> Sink {
        self.run.eve_filetype.sink(&self.run.eve_log, true)
    }
}

pub fn run(mut settings: Settings) -> Result<Outcome, Error> {
    settings.run.config.judgeable()?;
    let engine = settings.run.engine();
    let sockets = open_sockets(&settings.interface, &settings.capture, settings.run.pipeline.workers)?;
    settings.run.pipeline.workers = sockets.len();
    let mut monitor = Monitor::new(&engine, sockets.len());
    // Said at once, while the capture goes on: the operator must not learn of a lost log
    // only at the end.
    monitor.notify = Box::new(|notice| eprintln!("exwatch: {notice}"));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once, should a clean stop hang.
        signal_hook::flag::register_conditional_shutdown(signal, 2, Arc::clone(&monitor.stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&monitor.stop)))
            .map_err(|e| format!("installing signal handlers: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&monitor.reopen))
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let publisher = super::publish::start(&mut settings.run, false)?;
    monitor.delivery = publisher.as_ref().map(|p| p.delivery());
    let sink = settings.sink();
    let out =
        sink.open().map_err(|e| format!("{}: cannot open EVE log: {e}", settings.run.eve_log.display()))?;
    let stats_log = match &settings.stats_log {
        Some(path) => Some(std::sync::Mutex::new(
            Sink::at(path, true)
                .open()
                .map_err(|e| format!("{}: cannot open the stats log: {e}", path.display()))?,
        )),
        None => None,
    };
    let listener = match settings.metrics {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?),
        None => None,
    };
    // Written at the end, when root may be gone: opened now, as the EVE log is.
    let summary_file = match (&settings.user, &settings.run.summary_json) {
        (Some(_), Some(path)) if path.as_os_str() != "-" => Some(
            std::fs::File::create(path)
                .map_err(|e| format!("{}: cannot write summary: {e}", path.display()))?,
        ),
        _ => None,
    };
    if let Some(user) = &settings.user {
        let account = account(user)?;
        if let Some(path) = sink.path() {
            // The log must stay writable after root is given up: reopened on SIGHUP with
            // or without rotation (as Suricata does with its run-as user).
            std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
                .map_err(|e| format!("{}: cannot give the EVE log to --user {user}: {e}", path.display()))?;
        }
        if let Some(path) = &settings.stats_log {
            std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw())).map_err(
                |e| format!("{}: cannot give the stats log to --user {user}: {e}", path.display()),
            )?;
        }
        drop_privileges(user, &account)?;
    }
    eprintln!(
        "exwatch: watching {} (SIGINT or SIGTERM to stop, SIGHUP to reopen the EVE log)",
        settings.interface
    );
    let record = std::thread::scope(|scope| {
        let server = listener.map(|l| scope.spawn(|| prometheus::serve(l, &engine, &monitor)));
        let record = pipeline::live(
            &engine,
            sockets,
            &settings.run.pipeline,
            (&sink, out),
            &monitor,
            (settings.stats_interval, stats_log.as_ref()),
        );
        monitor.stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(e))) = server.map(|s| s.join()) {
            eprintln!("exwatch: metrics endpoint stopped: {e}");
        }
        record
    })
    .map_err(|e| format!("{}: {e}", settings.run.eve_log.display()));
    let delivered = super::publish::finish(&settings.run, publisher);
    let record = record?;
    let outcome =
        if record.errors.is_empty() || record.eve_closed { Outcome::Clean } else { Outcome::Incomplete };
    let conclusion = super::conclusion(outcome, &record, &settings.run.config.topology_name);
    settings.run.summarize(
        &engine,
        &record,
        (&[], 0),
        summary_file,
        (Vec::new(), delivered),
        (outcome, conclusion),
    )?;
    Ok(outcome)
}

/// Opens `threads` capture sockets on the interface. Several join one fanout group (its
/// id from the process id, so two sensors on one host do not share a group); an
/// interface or a kernel that cannot do that gets one socket, and a line saying why.
fn open_sockets(
    interface: &str,
    options: &capture::LiveSettings,
    threads: usize,
) -> Result<Vec<Box<dyn capture::FrameSource + Send>>, Error> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads > cores {
        eprintln!(
            "exwatch: --capture-threads {threads} on {cores} cores: the threads will take turns on the cores, and the kernel's ring must hold what arrives meanwhile"
        );
    }
    let single = || LiveCapture::open(interface, options).map_err(|e| e.to_string());
    let Ok(sockets) = u16::try_from(threads) else {
        return Err(format!("--capture-threads {threads}: at most {}", u16::MAX));
    };
    if sockets <= 1 {
        return Ok(vec![Box::new(single()?)]);
    }
    let group = capture::FanoutGroup { id: std::process::id() as u16, sockets };
    // --buffer-mib is the kernel memory of the whole capture: each socket gets its share
    // of the traffic, and so its share of the ring.
    let share = (options.buffer_size / i32::from(sockets)).max(1 << 20);
    let options = capture::LiveSettings { fanout: Some(group), buffer_size: share, ..options.clone() };
    match LiveCapture::open_group(interface, &options) {
        Ok(group) => {
            Ok(group.into_iter().map(|s| Box::new(s) as Box<dyn capture::FrameSource + Send>).collect())
        }
        Err(err @ capture::CaptureError::Fanout { .. }) => {
            eprintln!("exwatch: {err}; capturing on one socket instead");
            Ok(vec![Box::new(single()?)])
        }
        Err(err) => Err(err.to_string()),
    }
}

fn account(user: &str) -> Result<nix::unistd::User, Error> {
    nix::unistd::User::from_name(user)
        .map_err(|e| format!("--user {user}: {e}"))?
        .ok_or_else(|| format!("--user {user}: no such user"))
}

/// Gives up root for `user` (its uid, gid and only that group).
fn drop_privileges(user: &str, account: &nix::unistd::User) -> Result<(), Error> {
    use nix::unistd::{setgid, setgroups, setuid};
    setgroups(&[account.gid])
        .and_then(|_| setgid(account.gid))
        .and_then(|_| setuid(account.uid))
        .map_err(|e| format!("--user {user}: cannot drop privileges: {e}"))
}

/// `live --config FILE`: the settings of `live`, named as its flags with `_` for `-`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub interface: Option<Spanned<String>>,
    pub bpf: Option<Spanned<String>>,
    pub topology: Option<Spanned<PathBuf>>,
    pub policy: Option<Spanned<PathBuf>>,
    pub eve_log: Option<Spanned<PathBuf>>,
    pub flows: Option<Spanned<FlowsKey>>,
    pub summary_json: Option<Spanned<PathBuf>>,
    pub workers: Option<Spanned<usize>>,
    pub capture_threads: Option<Spanned<usize>>,
    pub syn_timeout: Option<Spanned<f64>>,
    pub max_flows: Option<Spanned<usize>>,
    pub max_smtp_senders: Option<Spanned<usize>>,
    pub metrics: Option<Spanned<String>>,
    pub stats_interval: Option<Spanned<f64>>,
    pub user: Option<Spanned<String>>,
    pub snaplen: Option<Spanned<i32>>,
    pub buffer_mib: Option<Spanned<i32>>,
    pub promiscuous: Option<Spanned<bool>>,
    pub redis: Option<Spanned<String>>,
    pub redis_key: Option<Spanned<String>>,
    pub redis_mode: Option<Spanned<String>>,
    pub redis_queue: Option<Spanned<usize>>,
    pub redis_maxlen: Option<Spanned<u64>>,
    pub redis_timeout: Option<Spanned<f64>>,
}

impl ConfigFile {
    /// Reads and parses the file: a TOML error, a value of the wrong type or an
    /// unknown key is `file:line: key: message`.
    pub fn load(path: &Path) -> Result<(ConfigFile, String), String> {
        let text = config::read(path).map_err(|e| e.to_string())?;
        let source = config::Source { file: path, text: &text };
        let file = source.parse::<ConfigFile>().map_err(|mut e| {
            if e.key.is_empty() {
                e.key = key_named(&e.message).or_else(|| key_at(&text, e.line?)).unwrap_or_default();
            }
            e.to_string()
        })?;
        Ok((file, text))
    }
}

/// The key an "unknown field `key`" message is about.
fn key_named(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The key set on line `line` of `text` (`key = value`), if it is a plain key.
fn key_at(text: &str, line: usize) -> Option<String> {
    let (key, _) = text.lines().nth(line.checked_sub(1)?)?.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .then(|| key.to_string())
}

/// `127.0.0.1:9911`, `[::1]:9911`, or a bare port (bound to 127.0.0.1).
pub fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("--metrics {text}: not an address:port or a port"))
}

/// `flows` in the `live --config` file: `true` (every flow), `false`, or `"in-scope"`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum FlowsKey {
    On(bool),
    Which(String),
}

impl FlowsKey {
    /// The value of `--flows` the key stands for.
    pub fn flag(self) -> Option<String> {
        match self {
            FlowsKey::On(true) => Some("all".into()),
            FlowsKey::On(false) => None,
            FlowsKey::Which(which) => Some(which),
        }
    }
}
