//! The broker's flags: `--redis...` on `analyze` and `live`, and `exwatch collect`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;

use exwatch::collect;
use exwatch::command;
use exwatch::output::redis::{self, Mode, Target};
use exwatch::report::Meta;

use super::{load, ConfigFlags};

/// Flags `analyze` and `live` share to publish their events.
#[derive(ClapArgs, Debug)]
pub struct RedisFlags {
    /// Also send every EVE line to Redis, as Suricata's redis output does:
    /// redis://[:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS (the password may come
    /// from EXWATCH_REDIS_PASSWORD instead; it is never printed). The EVE log stays the
    /// sensor's record. `analyze` exits 2 when Redis cannot be reached at the start;
    /// `live` starts anyway and counts what it could not send.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// The Redis key events go to: a stream, or a list with --redis-mode list.
    #[arg(long, value_name = "KEY", default_value = redis::DEFAULT_KEY)]
    pub redis_key: String,
    /// stream: XADD to a stream (field `eve`), trimmed to about --redis-maxlen entries;
    /// list: RPUSH to a list, as Logstash's redis input and Security Onion read it.
    #[arg(long, value_name = "MODE", default_value = "stream", value_parser = Mode::NAMES)]
    pub redis_mode: String,
    /// Events that may wait for Redis while it is down or slow; past it they are dropped
    /// and counted (exwatch_redis_dropped_total). The capture never waits for Redis.
    #[arg(long, value_name = "EVENTS", default_value_t = redis::DEFAULT_QUEUE)]
    pub redis_queue: usize,
    /// Stream mode: entries the stream keeps, approximately (XADD MAXLEN ~ N).
    #[arg(long, value_name = "N", default_value_t = redis::DEFAULT_MAXLEN)]
    pub redis_maxlen: u64,
    /// Seconds the end of a run waits for the events still queued to reach Redis; what
    /// is left then is counted as dropped and said.
    #[arg(long, value_name = "SECONDS", default_value_t = redis::DEFAULT_TIMEOUT.as_secs_f64())]
    pub redis_timeout: f64,
}

impl RedisFlags {
    /// The publisher's settings, when --redis is given.
    pub fn settings(self) -> Result<Option<redis::Settings>, String> {
        let Some(url) = self.redis else { return Ok(None) };
        let target = Target::parse(&url).map_err(|e| format!("--redis {e}"))?;
        if self.redis_key.is_empty() {
            return Err("--redis-key must not be empty".into());
        }
        if self.redis_queue == 0 || self.redis_maxlen == 0 {
            return Err("--redis-queue and --redis-maxlen must be at least 1".into());
        }
        if !(self.redis_timeout.is_finite() && self.redis_timeout >= 0.0) {
            return Err(format!(
                "--redis-timeout {}: must be a number of seconds, 0 or more",
                self.redis_timeout
            ));
        }
        let mode = Mode::from_name(&self.redis_mode)
            .ok_or_else(|| format!("--redis-mode {}: one of {}", self.redis_mode, Mode::NAMES.join(", ")))?;
        Ok(Some(redis::Settings {
            target,
            key: self.redis_key,
            mode,
            queue: self.redis_queue,
            maxlen: self.redis_maxlen,
            timeout: Duration::from_secs_f64(self.redis_timeout),
        }))
    }
}

/// `exwatch collect`'s flags.
#[derive(ClapArgs, Debug)]
pub struct CollectFlags {
    /// The Redis the sensors publish to (see `analyze --redis`).
    #[arg(long, value_name = "URL")]
    pub redis: String,
    /// The stream (or list) the sensors publish to.
    #[arg(long, value_name = "KEY", default_value = redis::DEFAULT_KEY)]
    pub redis_key: String,
    /// stream: read with a consumer group; list: the sensors publish with --redis-mode
    /// list, and each line is moved to this collector's processing list (KEY:processing:C)
    /// until it is on disk.
    #[arg(long, value_name = "MODE", default_value = "stream", value_parser = Mode::NAMES)]
    pub redis_mode: String,
    /// The consumer group; collectors of one group share the stream's entries. Needed
    /// in stream mode; list mode has none (collectors share the list).
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// This collector's name in the group. Keep it across restarts: the entries it had
    /// not acknowledged are read again under it. Default: the hostname.
    #[arg(long, value_name = "C")]
    pub consumer: Option<String>,
    /// Where each sensor's events go: DIR/<host>/eve.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub config: ConfigFlags,
    /// The compliance report of everything collected, as HTML, rewritten every --every
    /// and at exit (written beside, then renamed over).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The same report as JSON (docs/report.md).
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// How often the report is rewritten: seconds, or a number with s, m or h.
    #[arg(long, value_name = "PERIOD", default_value = "5m")]
    pub every: String,
    /// Serve Prometheus metrics on http://ADDR/metrics: each rule's status, each sensor's
    /// last-seen time. A bare port binds 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Stream entries read, written, synced and acknowledged at a time: after a crash, at
    /// most this many of each sensor's last lines are looked at to find what was written
    /// and not acknowledged.
    #[arg(long, value_name = "N", default_value_t = collect::BATCH)]
    pub batch: usize,
    /// The report counts only the flows that started at or after TIME (RFC 3339, or a
    /// date: its midnight UTC), and the alerts on them; the files keep every event.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The report counts only the flows that started before TIME (as for --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// Validates the flags of `collect`.
pub fn collect(flags: CollectFlags) -> Result<command::collect::Settings, String> {
    let target = Target::parse(&flags.redis).map_err(|e| format!("--redis {e}"))?;
    let every = collect::parse_period(&flags.every).map_err(|e| format!("--every {e}"))?;
    if flags.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let meta = Meta::of_files(flags.config.topology.as_deref(), flags.config.policy.as_deref())?;
    let config = load(&flags.config)?;
    let consumer = flags.consumer.or_else(command::hostname).unwrap_or_else(|| "exwatch".into());
    let window = super::window(flags.since.as_deref(), flags.until.as_deref())?;
    let mode = Mode::from_name(&flags.redis_mode)
        .ok_or_else(|| format!("--redis-mode {}: one of {}", flags.redis_mode, Mode::NAMES.join(", ")))?;
    let group = match (mode, flags.group) {
        (Mode::Stream, None) => {
            return Err("--group G is needed to read a stream (--redis-mode stream)".into())
        }
        (Mode::List, Some(_)) => {
            return Err("--group is for streams: a list (--redis-mode list) has none".into())
        }
        (_, group) => group.unwrap_or_default(),
    };
    Ok(command::collect::Settings {
        collect: collect::Settings {
            target,
            key: flags.redis_key,
            mode,
            group,
            consumer,
            out: flags.out,
            report_html: flags.report,
            report_json: flags.report_json,
            every,
            batch: flags.batch,
            window,
        },
        config,
        meta,
        metrics: flags.metrics.as_deref().map(command::live::metrics_addr).transpose()?,
    })
}
