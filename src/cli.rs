//! Flags as typed on the command line, and their validation into settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use exwatch::capture::LiveOptions;
use exwatch::output::Sink;
use exwatch::pipeline::{FileReader, Settings};
use exwatch::policy::{builtin, Engine, Policy, Topology, Verdict, DEFAULT_MAX_SMTP_SENDERS};

#[derive(Parser, Debug)]
#[command(
    name = "exwatch",
    version,
    about = "Proves, packet by packet, that traffic around Microsoft Exchange servers follows the Exchange network-port policy.",
    long_about = "Proves, packet by packet, that traffic around Microsoft Exchange servers follows the \
Exchange network-port policy (\"Network ports for clients and mail flow in Exchange\").\n\n\
Flows are grouped by 5-tuple and judged once against the policy in rules/exchange.toml, using \
the site's topology (which addresses are Mailbox, Edge, domain controllers...). Findings are \
written as Suricata EVE `alert` events.\n\n\
Exit status: 0 clean, 1 findings of a verdict listed in --fail-on, 2 bad input or configuration, \
or nothing checked (no packet read, or no flow touched a Mailbox or Edge server of the topology)."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse pcap/pcapng files offline and report policy findings.
    ///
    /// Several files are, by default, each a capture of its own (other days, other
    /// capture points): up to --jobs of them are analysed at once, each read, decoded and
    /// tracked in capture order by one thread, so all cores stay busy. A flow that spans
    /// two files is then seen as two flows, the second picked up mid-stream (its handshake
    /// was in the first file).
    ///
    /// Give --continuous when the files are consecutive pieces of one capture (rotated by
    /// `tcpdump -C` or `-G`): they are read in the order given as one stream, by one reader
    /// thread feeding the --workers, and flows continue from one file into the next. A
    /// single file is always read that way.
    Analyze(AnalyzeFlags),
    /// Validate a topology and a policy, and lint the topology.
    Check(ConfigFlags),
    /// Compare two captures of the same traffic taken at two points (e.g. either side of
    /// a firewall): TCP handshake options rewritten between them (MSS clamping,
    /// stripped options) on traffic that must never be altered are restrictions.
    Compare(CompareFlags),
    /// Watch an interface (a SPAN or mirror port) until SIGINT or SIGTERM.
    Live(LiveFlags),
    /// Write a synthetic capture of the example organization (rules/topology.toml), with
    /// a known mix of allowed flows and findings, for demos and benchmarks.
    Generate(GenerateFlags),
}

#[derive(ClapArgs, Debug)]
pub struct GenerateFlags {
    /// The pcap file to write.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// Packets to write (the flows open at the end are completed, so a few more).
    #[arg(long, default_value_t = 10_000)]
    pub packets: u64,
    /// Seed of the generator: the same seed writes the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Let each TCP response go on with up to N full-size segments, as downloads do:
    /// raises the average frame size (0 keeps the default mix, about 470 bytes a frame;
    /// 3 gives about 670).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub bulk: u64,
    /// Also write the expected findings, one per line (verdict, finding, source, destination).
    #[arg(long, value_name = "FILE")]
    pub expected: Option<PathBuf>,
}

#[derive(ClapArgs, Debug)]
pub struct CompareFlags {
    /// The capture nearer the sender (pcap or pcapng).
    #[arg(value_name = "FIRST")]
    pub first: PathBuf,
    /// The capture further along the path.
    #[arg(value_name = "SECOND")]
    pub second: PathBuf,
    #[command(flatten)]
    pub config: ConfigFlags,
    /// Where EVE JSON lines go: a file, or - for standard output.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub eve_log: PathBuf,
}

#[derive(ClapArgs, Debug)]
pub struct ConfigFlags {
    /// The site's topology (TOML). Default: the example topology, rules/topology.toml.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// The policy (TOML). Default: the Exchange policy, rules/exchange.toml.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(ClapArgs, Debug)]
pub struct AnalyzeFlags {
    /// Capture files (pcap or pcapng), taken in the order given, or directories: every
    /// capture under one, at any depth, in path order, recognised by its first bytes
    /// whatever its name (other files found there are named on stderr and skipped).
    #[arg(required = true, value_name = "PCAP")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigFlags,
    #[command(flatten)]
    pub run: RunFlags,
    /// Verdicts that make the exit status 1: a comma-separated list of violation,
    /// restriction, advisory; or never.
    #[arg(long, value_name = "LIST", default_value = "violation,restriction")]
    pub fail_on: String,
    /// Never draw a progress bar (one is drawn on stderr when it is a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// How capture files are read: exwatch's own reader, or libpcap's (slower; it
    /// refuses pcapng files whose interfaces mix link types).
    #[arg(long, value_enum, default_value_t = ReaderFlag::Native)]
    pub reader: ReaderFlag,
    /// Files analysed at once when several files are each a capture of their own (the
    /// default for two or more files); each job owns a share of --max-flows. Default: the
    /// number of cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// The files are consecutive pieces of one capture (rotated by `tcpdump -C` or `-G`):
    /// read them in the order given as one stream through the --workers, so flows
    /// continue across file boundaries, rather than as separate captures in parallel.
    #[arg(long)]
    pub continuous: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReaderFlag {
    Native,
    Libpcap,
}

#[derive(ClapArgs, Debug)]
pub struct LiveFlags {
    /// The interface to capture on (a SPAN or mirror port), in promiscuous mode.
    #[arg(long, short = 'i', value_name = "IF")]
    pub interface: String,
    /// A BPF filter (tcpdump syntax), checked before the capture starts.
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    #[command(flatten)]
    pub config: ConfigFlags,
    #[command(flatten)]
    pub run: RunFlags,
    /// Serve Prometheus metrics on http://ADDR/metrics. A bare port binds 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Also write an EVE `stats` event every SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub stats_interval: Option<f64>,
    /// Drop root for this user once the interface, the EVE log and the metrics socket
    /// are open.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Bytes captured of each frame.
    #[arg(long, value_name = "BYTES", default_value_t = LiveOptions::default().snaplen)]
    pub snaplen: i32,
    /// Kernel capture buffer, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = LiveOptions::default().buffer_size >> 20)]
    pub buffer_mib: i32,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    pub no_promiscuous: bool,
}

/// Flags `analyze` and `live` share.
#[derive(ClapArgs, Debug)]
pub struct RunFlags {
    /// Where EVE JSON lines go: a file, or - for standard output. `live` appends to the
    /// file and reopens it on SIGHUP, for log rotation.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub eve_log: PathBuf,
    /// Also write one EVE `flow` event per flow when it ends (with Zeek's conn_state).
    #[arg(long)]
    pub flows: bool,
    /// Write the end-of-run summary as JSON to FILE (it always goes to stderr as text).
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Parser workers (each owns a share of the flows), fed by one reader thread: on an
    /// interface, or for analyze of one file or of --continuous files. Default: for
    /// analyze, one per core but the one the reader keeps busy (at least one); for live,
    /// one per core.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Seconds of capture time a retried SYN between servers that must never be
    /// restricted may go unanswered before it is reported as a silent drop.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub syn_timeout: f64,
    /// Flows tracked at most, across workers (or jobs); past it the flow closest to its
    /// idle timeout is evicted (and counted). A full table costs about 0.9 KB per flow
    /// (flow state, timers, host-pair directions; hash tables round up), so the default
    /// bounds flow state near 450 MB whatever the traffic.
    #[arg(long, value_name = "N", default_value_t = 500_000)]
    pub max_flows: usize,
    /// Hosts remembered at most as recent SMTP senders to an Edge (for the open-proxy
    /// rule), shared out between jobs (each file has a table of its own); past it new
    /// senders are counted, not remembered.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SMTP_SENDERS)]
    pub max_smtp_senders: usize,
    /// The sensor's name, written as `host` on every EVE event (Suricata's sensor-name).
    /// Default: this machine's hostname; an empty name writes no `host`.
    #[arg(long, value_name = "NAME")]
    pub sensor_name: Option<String>,
}

/// Policy and topology, loaded and validated.
pub struct Config {
    pub policy: Arc<Policy>,
    pub topology: Arc<Topology>,
    pub policy_name: String,
    /// The topology file, or `built-in example "contoso"`.
    pub topology_name: String,
    /// No `--topology` was given: the example organization is what is judged against.
    pub builtin_topology: bool,
}

impl Config {
    pub fn load(flags: &ConfigFlags) -> Result<Config, String> {
        let (policy, policy_name) = match &flags.policy {
            Some(path) => (Policy::load(path), path.display().to_string()),
            None => (builtin::policy(), builtin::POLICY_NAME.into()),
        };
        let topology = match &flags.topology {
            Some(path) => Topology::load(path),
            None => builtin::topology(),
        };
        let topology = Arc::new(topology.map_err(|e| e.to_string())?);
        let topology_name = match &flags.topology {
            Some(path) => path.display().to_string(),
            None => format!("built-in example {:?}", topology.name),
        };
        Ok(Config {
            policy: Arc::new(policy.map_err(|e| e.to_string())?),
            topology,
            policy_name,
            topology_name,
            builtin_topology: flags.topology.is_none(),
        })
    }

    /// What `check` reports, as warnings: `FILE:LINE: text`.
    pub fn lints(&self) -> Vec<String> {
        let file = if self.builtin_topology { builtin::TOPOLOGY_NAME } else { &self.topology_name };
        self.topology.lint().into_iter().map(|(line, lint)| format!("{file}:{line}: {lint}")).collect()
    }
}

/// This machine's hostname, the default `--sensor-name`.
fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok())
}

/// What `analyze` and `live` share, validated.
pub struct RunSettings {
    pub config: Config,
    pub eve_log: PathBuf,
    pub summary_json: Option<PathBuf>,
    pub pipeline: Settings,
    pub max_smtp_senders: usize,
}

impl RunSettings {
    fn from_flags(config: &ConfigFlags, flags: RunFlags) -> Result<RunSettings, String> {
        let config = Config::load(config)?;
        if !(flags.syn_timeout.is_finite() && flags.syn_timeout > 0.0) {
            return Err(format!("--syn-timeout {}: must be a positive number of seconds", flags.syn_timeout));
        }
        if flags.max_flows == 0 {
            return Err("--max-flows must be at least 1".into());
        }
        let mut pipeline = Settings::default();
        if let Some(workers) = flags.workers {
            if workers == 0 {
                return Err("--workers must be at least 1".into());
            }
            pipeline.workers = workers;
        }
        pipeline.flows.syn_timeout_ns = (flags.syn_timeout * 1e9) as u64;
        pipeline.flows.max_flows = flags.max_flows;
        pipeline.eve_flows = flags.flows;
        pipeline.sensor_name = flags.sensor_name.or_else(hostname);
        Ok(RunSettings {
            config,
            eve_log: flags.eve_log,
            summary_json: flags.summary_json,
            pipeline,
            max_smtp_senders: flags.max_smtp_senders,
        })
    }

    pub fn engine(&self) -> Arc<Engine> {
        Arc::new(Engine::new(
            Arc::clone(&self.config.policy),
            Arc::clone(&self.config.topology),
            self.max_smtp_senders,
        ))
    }
}

/// Everything `analyze` needs, validated.
pub struct AnalyzeSettings {
    pub files: Vec<PathBuf>,
    /// Per directory given, the files under it that are not captures.
    pub not_captures: Vec<(PathBuf, Vec<PathBuf>)>,
    pub run: RunSettings,
    pub fail_on: Vec<Verdict>,
    pub progress: bool,
}

impl AnalyzeSettings {
    pub fn from_flags(flags: AnalyzeFlags) -> Result<AnalyzeSettings, String> {
        let mut run = RunSettings::from_flags(&flags.config, flags.run)?;
        run.pipeline.file_reader = match flags.reader {
            ReaderFlag::Native => FileReader::Native,
            ReaderFlag::Libpcap => FileReader::Libpcap,
        };
        match flags.jobs {
            Some(0) => return Err("--jobs must be at least 1".into()),
            Some(jobs) => run.pipeline.jobs = jobs,
            None => {}
        }
        run.pipeline.continuous = flags.continuous;
        let inputs = expand_files(&flags.files)?;
        Ok(AnalyzeSettings {
            files: inputs.files,
            not_captures: inputs.not_captures,
            run,
            fail_on: parse_fail_on(&flags.fail_on)?,
            progress: !flags.no_progress,
        })
    }

    pub fn sink(&self) -> Sink {
        Sink::at(&self.run.eve_log, false)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    }

    /// One line per directory that held files other than captures: how many were
    /// skipped, naming the first few, so nothing is left out unsaid.
    pub fn notices(&self) -> Vec<String> {
        const NAMED: usize = 3;
        self.not_captures
            .iter()
            .map(|(dir, skipped)| {
                let mut names: Vec<String> =
                    skipped.iter().take(NAMED).map(|p| p.display().to_string()).collect();
                if skipped.len() > NAMED {
                    names.push(format!("and {} more", skipped.len() - NAMED));
                }
                let (files, are) = if skipped.len() == 1 {
                    ("file", "is not a capture")
                } else {
                    ("files", "are not captures")
                };
                format!("{} {files} in {} {are}, skipped: {}", skipped.len(), dir.display(), names.join(", "))
            })
            .collect()
    }

    pub fn not_captures_total(&self) -> usize {
        self.not_captures.iter().map(|(_, skipped)| skipped.len()).sum()
    }
}

/// Everything `live` needs, validated.
pub struct LiveSettings {
    pub interface: String,
    pub capture: LiveOptions,
    pub run: RunSettings,
    pub metrics: Option<SocketAddr>,
    pub stats_interval: Option<Duration>,
    pub user: Option<String>,
}

impl LiveSettings {
    pub fn from_flags(flags: LiveFlags) -> Result<LiveSettings, String> {
        let default_workers = flags.run.workers.is_none();
        let mut run = RunSettings::from_flags(&flags.config, flags.run)?;
        if default_workers {
            // A capture thread mostly waits on the ring; under a flood the workers are
            // what falls behind, so live takes one per core.
            run.pipeline.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        let metrics = flags.metrics.as_deref().map(parse_metrics_addr).transpose()?;
        let stats_interval = match flags.stats_interval {
            None => None,
            Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
            Some(secs) => {
                return Err(format!("--stats-interval {secs}: must be a positive number of seconds"))
            }
        };
        if flags.snaplen <= 0 || flags.buffer_mib <= 0 || flags.buffer_mib > 4095 {
            return Err("--snaplen must be positive and --buffer-mib from 1 to 4095".into());
        }
        run.pipeline.interface = Some(flags.interface.clone());
        Ok(LiveSettings {
            interface: flags.interface,
            capture: LiveOptions {
                snaplen: flags.snaplen,
                buffer_size: flags.buffer_mib << 20,
                promiscuous: !flags.no_promiscuous,
                bpf: flags.bpf,
                ..LiveOptions::default()
            },
            run,
            metrics,
            stats_interval,
            user: flags.user,
        })
    }

    pub fn sink(&self) -> Sink {
        Sink::at(&self.run.eve_log, true)
    }
}

/// `127.0.0.1:9911`, `[::1]:9911`, or a bare port (bound to 127.0.0.1).
fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("--metrics {text}: not an address:port or a port"))
}

fn parse_fail_on(list: &str) -> Result<Vec<Verdict>, String> {
    if list.trim() == "never" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|item| match Verdict::from_name(item.trim()) {
            Some(v @ (Verdict::Violation | Verdict::Restriction | Verdict::Advisory)) => Ok(v),
            _ => Err(format!(
                "--fail-on: `{}` is not one of violation, restriction, advisory, never",
                item.trim()
            )),
        })
        .collect()
}

/// The capture files the command line stands for.
struct Inputs {
    files: Vec<PathBuf>,
    not_captures: Vec<(PathBuf, Vec<PathBuf>)>,
}

/// Files as given (a missing or unreadable one then gives the usual capture error); a
/// directory stands for the captures under it. A directory without any is an error: it
/// is most likely the wrong one, better said before hours of analysis than after.
fn expand_files(paths: &[PathBuf]) -> Result<Inputs, String> {
    let mut inputs = Inputs { files: Vec::new(), not_captures: Vec::new() };
    for path in paths {
        if !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            inputs.files.push(path.clone());
            continue;
        }
        let (captures, others) = walk(path)?;
        if captures.is_empty() {
            let others = match others.len() {
                0 => String::new(),
                1 => " (1 file, not a capture)".to_string(),
                n => format!(" ({n} files, none a capture)"),
            };
            return Err(format!(
                "{}: no pcap or pcapng capture in this directory or below it{others}",
                path.display()
            ));
        }
        inputs.files.extend(captures);
        if !others.is_empty() {
            inputs.not_captures.push((path.clone(), others));
        }
    }
    Ok(inputs)
}

/// The files under `root` at any depth, each sorted by path: (captures, the others).
/// Captures are known by their first bytes, since rotated captures are often named
/// `trace.pcap0`, `dump-0001` and the like. Symbolic links are followed, but each
/// directory is walked once, so a link back up the tree cannot loop.
fn walk(root: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    use std::os::unix::fs::MetadataExt;
    let mut walked = std::collections::HashSet::new();
    let mut pending = vec![root.to_path_buf()];
    let (mut captures, mut others) = (Vec::new(), Vec::new());
    while let Some(dir) = pending.pop() {
        let cannot_list = |e: std::io::Error| format!("{}: cannot list: {e}", dir.display());
        let meta = std::fs::metadata(&dir).map_err(cannot_list)?;
        if !walked.insert((meta.dev(), meta.ino())) {
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(cannot_list)? {
            let path = entry.map_err(cannot_list)?.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => pending.push(path),
                Ok(m) if m.is_file() && starts_like_a_capture(&path) => captures.push(path),
                // Other files, and what is never opened: broken links, pipes (opening one
                // would block), sockets, devices.
                _ => others.push(path),
            }
        }
    }
    captures.sort();
    others.sort();
    Ok((captures, others))
}

/// Whether a file starts as a capture does (a pcap file in either byte order, with micro-
/// or nanosecond timestamps, or a pcapng section header). One that cannot be read is
/// taken, so the run names the error rather than the walk hiding the file.
fn starts_like_a_capture(path: &Path) -> bool {
    use exwatch::capture::format;
    let mut magic = [0u8; format::MAGIC_LEN];
    match std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)) {
        Ok(()) => format::sniff(&magic).is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::UnexpectedEof,
    }
}

pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
