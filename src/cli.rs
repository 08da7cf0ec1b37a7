//! Flags as typed on the command line, and their validation into settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use toml::Spanned;

use exwatch::capture;
use exwatch::config;
use exwatch::output::{bound, Sink};
use exwatch::pipeline::{FileReader, ReaderDecodes, Settings};
use exwatch::policy::{builtin, Engine, Policy, Topology, Verdict, DEFAULT_MAX_SMTP_SENDERS};

#[derive(Parser, Debug)]
#[command(
    name = "exwatch",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("EXWATCH_COMMIT"), ")"),
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
    Check(CheckFlags),
    /// Compare two captures of the same traffic taken at two points (e.g. either side of
    /// a firewall): TCP handshake options rewritten between them (MSS clamping,
    /// stripped options) on traffic that must never be altered are restrictions.
    Compare(CompareFlags),
    /// Watch an interface (a SPAN or mirror port) until SIGINT or SIGTERM.
    Live(LiveFlags),
    /// Build the compliance report (HTML, JSON, CSV) from EVE logs written with --flows
    /// by any number of `analyze` runs and `live` sensors.
    ///
    /// The logs are read side by side, line by line, merged by event time; a flow seen by
    /// several sensors (same Community ID, start within a second) counts once. Exit
    /// status: 0 when no violation or restriction was found, 1 otherwise (or when the
    /// logs hold no flow event), 2 on bad input or configuration.
    Report(ReportFlags),
    /// Write a synthetic capture of the example organization (rules/topology.toml), with
    /// a known mix of allowed flows and findings, for demos and benchmarks.
    Generate(GenerateFlags),
    /// Print a completion script for SHELL on standard output, e.g.
    /// `exwatch completions bash > /usr/share/bash-completion/completions/exwatch`.
    Completions(CompletionsFlags),
    /// Print the man page (roff) on standard output: exwatch(1), or with COMMAND that
    /// command's page, exwatch-COMMAND(1). `exwatch man | man -l -` shows it.
    Man(ManFlags),
    /// Draft a topology from what each host does on the wire, or, with --topology,
    /// compare the traffic with a site's topology.
    ///
    /// The draft is a topology file (TOML) with the evidence of each host (ports, peers,
    /// flows, packets) and a confidence beside it; hosts with too little evidence are
    /// listed as comments. Only answered flows are evidence: a SYN nobody answered proves
    /// nothing. With --topology, names hosts that act like a role the topology does not
    /// give them, and listed servers that never acted like theirs (exit status 1 when
    /// there is any).
    Learn(LearnFlags),
}

#[derive(ClapArgs, Debug)]
pub struct CompletionsFlags {
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(ClapArgs, Debug)]
pub struct ManFlags {
    /// The command whose page to print (analyze, live...).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// The completion script for `shell`, from the flags' definitions.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "exwatch", &mut out);
    out
}

/// The man page of exwatch, or of one of its commands, from the flags' definitions.
pub fn man_page(command: Option<&str>) -> Result<Vec<u8>, String> {
    use clap::CommandFactory;
    let mut root = Args::command();
    root.build();
    let page = match command {
        None => root,
        Some(name) => {
            let names: Vec<String> =
                root.get_subcommands().map(|c| c.get_name().to_string()).filter(|n| n != "help").collect();
            let sub = root
                .find_subcommand(name)
                .filter(|_| name != "help")
                .ok_or_else(|| format!("man {name}: no such command (one of {})", names.join(", ")))?;
            // Its page is exwatch-NAME(1), and its usage line says `exwatch NAME`.
            sub.clone()
                .name(format!("exwatch-{name}"))
                .bin_name(format!("exwatch {name}"))
                .version(root.get_version().unwrap_or_default().to_string())
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[derive(ClapArgs, Debug)]
pub struct LearnFlags {
    /// Capture files or directories, as for analyze.
    #[arg(value_name = "PCAP", required = true)]
    pub files: Vec<PathBuf>,
    /// Where the draft goes: a file, or - for standard output.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// Compare the traffic with this topology instead of drafting one.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Hosts tracked at most; past it, the flows of new hosts are counted, not learned.
    #[arg(long, value_name = "N", default_value_t = exwatch::learn::DEFAULT_MAX_HOSTS)]
    pub max_hosts: usize,
    /// Parser workers, as for analyze.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Files analysed at once, as for analyze.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// The files are consecutive pieces of one capture, as for analyze.
    #[arg(long)]
    pub continuous: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Everything `learn` needs, validated.
pub struct LearnSettings {
    pub files: Vec<PathBuf>,
    /// Per directory given, the files under it that are not captures.
    pub not_captures: Vec<(PathBuf, Vec<PathBuf>)>,
    pub output: PathBuf,
    /// The topology to compare with, and its name.
    pub topology: Option<(Arc<Topology>, String)>,
    pub policy: Arc<Policy>,
    pub pipeline: Settings,
    pub learn: exwatch::learn::Settings,
    pub progress: bool,
}

impl LearnSettings {
    pub fn from_flags(flags: LearnFlags) -> Result<LearnSettings, String> {
        let mut pipeline = Settings::default();
        for (value, name, field) in
            [(flags.workers, "--workers", &mut pipeline.workers), (flags.jobs, "--jobs", &mut pipeline.jobs)]
        {
            match value {
                Some(0) => return Err(format!("{name} must be at least 1")),
                Some(n) => *field = n,
                None => {}
            }
        }
        pipeline.continuous = flags.continuous;
        if flags.max_hosts == 0 {
            return Err("--max-hosts must be at least 1".into());
        }
        let topology = match &flags.topology {
            Some(path) => {
                Some((Arc::new(Topology::load(path).map_err(|e| e.to_string())?), path.display().to_string()))
            }
            None => None,
        };
        let inputs = expand_files(&flags.files)?;
        Ok(LearnSettings {
            files: inputs.files,
            not_captures: inputs.not_captures,
            output: flags.output,
            topology,
            policy: Arc::new(builtin::policy().map_err(|e| e.to_string())?),
            pipeline,
            learn: exwatch::learn::Settings { max_hosts: flags.max_hosts, answered_only: false },
            progress: !flags.no_progress,
        })
    }

    /// One line per directory that held files other than captures.
    pub fn notices(&self) -> Vec<String> {
        self.not_captures
            .iter()
            .map(|(dir, skipped)| {
                format!("{} file(s) in {} not captures, skipped", skipped.len(), dir.display())
            })
            .collect()
    }
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
    /// Write the traffic of a busy SPAN port instead: each packet from a random one of N
    /// concurrently open flows, a finished flow replaced by a new one (flow lengths 4 to
    /// 5,000 packets; 78% TCP, 22% UDP; 10% IPv6; 3% 802.1Q; frames from minimal to 1,500
    /// bytes). Exactly --packets packets; --bulk and --expected do not apply.
    #[arg(long, value_name = "N", conflicts_with_all = ["bulk", "expected"])]
    pub pool: Option<usize>,
    /// Write traffic of this organization instead of the example one: its Mailbox
    /// servers, domain controllers, Edge servers and subscriptions, DNS servers, Skype
    /// servers and internal clients.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

#[derive(ClapArgs, Debug)]
pub struct ReportFlags {
    /// EVE logs (JSON lines) to read; - is standard input.
    #[arg(required = true, value_name = "EVE")]
    pub logs: Vec<PathBuf>,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the JSON report (docs/report.md) here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the aggregated findings as CSV here.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// A JSON report of an earlier run: the report then says what changed since.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigFlags,
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
pub struct CheckFlags {
    #[command(flatten)]
    pub config: ConfigFlags,
    /// Print the outcome as one JSON document on standard output (docs/operations.md
    /// describes it) rather than as text; the exit status is the same.
    #[arg(long)]
    pub json: bool,
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
    /// Capture files (pcap or pcapng, plain or compressed with gzip or zstd), taken in
    /// the order given; - for standard input (`tcpdump -w - | exwatch analyze -`); or
    /// directories: every capture under one, at any depth, in path order, recognised by
    /// its first bytes (and, compressed, by those of its content) whatever its name
    /// (other files found there are named on stderr and skipped).
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
    /// refuses pcapng files whose interfaces mix link types, and compressed files).
    #[arg(long, value_enum, default_value_t = ReaderFlag::Native)]
    pub reader: ReaderFlag,
    /// When the reader thread decodes frames itself: when-behind, only while a worker's
    /// queue is full, so a reader that would wait takes work off a busy worker; always;
    /// or never, leaving all decoding to the workers. The events are the same whatever
    /// it is; it is there to measure. It applies to one stream (one file, or --continuous);
    /// independent files' jobs each decode what they read. The summary's `stages` line says
    /// how many frames the reader decoded.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ReaderDecodesFlag::WhenBehind)]
    pub reader_decodes: ReaderDecodesFlag,
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
    /// Write the compliance report (which rows of Microsoft's article hold, with the
    /// evidence) as one self-contained HTML file at the end of the run; the same as
    /// `exwatch report` builds from this run's EVE log with --flows.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the compliance report as JSON (schema: docs/report.md).
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write the report's aggregated findings as CSV, one per line.
    #[arg(long, value_name = "FILE")]
    pub report_csv: Option<PathBuf>,
}

/// Where `analyze` writes the compliance report, when asked.
#[derive(Debug, Default)]
pub struct ReportFiles {
    pub html: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

impl ReportFiles {
    pub fn wanted(&self) -> bool {
        self.html.is_some() || self.json.is_some() || self.csv.is_some()
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReaderFlag {
    Native,
    Libpcap,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReaderDecodesFlag {
    WhenBehind,
    Always,
    Never,
}

#[derive(ClapArgs, Debug)]
pub struct LiveFlags {
    /// The interface to capture on (a SPAN or mirror port), in promiscuous mode.
    #[arg(long, short = 'i', value_name = "IF", required_unless_present = "config")]
    pub interface: Option<String>,
    /// Settings from a TOML file: the flags' names with `_` for `-` (`eve_log`,
    /// `stats_interval`...; `promiscuous = false` for --no-promiscuous). Flags given
    /// override it; an unknown key is an error. Relative paths in it are taken from
    /// the file's directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A BPF filter (tcpdump syntax), checked before the capture starts.
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    #[command(flatten)]
    pub site: ConfigFlags,
    #[command(flatten)]
    pub run: RunFlags,
    /// Serve Prometheus metrics on http://ADDR/metrics. A bare port binds 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Also write an EVE `stats` event every SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub stats_interval: Option<f64>,
    /// Write the `stats` events to FILE (appended) instead of the EVE log, for a
    /// pipeline that takes alerts and flows but rejects stats (Security Onion).
    #[arg(long, value_name = "FILE", requires = "stats_interval")]
    pub stats_log: Option<PathBuf>,
    /// Drop root for this user once the interface, the EVE log and the metrics socket
    /// are open.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Bytes captured of each frame.
    #[arg(long, value_name = "BYTES", default_value_t = capture::LiveSettings::default().snaplen)]
    pub snaplen: i32,
    /// Kernel capture buffer, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = capture::LiveSettings::default().buffer_size >> 20)]
    pub buffer_mib: i32,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    pub no_promiscuous: bool,
}

/// Flags `analyze` and `live` share.
#[derive(ClapArgs, Debug)]
pub struct RunFlags {
    /// Where EVE JSON lines go: a file, or - for standard output. Lines are appended to
    /// the file, as Suricata appends to eve.json (a shipper tailing it loses nothing of
    /// the next run); `live` reopens it on SIGHUP, for log rotation.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub eve_log: PathBuf,
    /// What --eve-log names, as Suricata's eve-log `filetype`: `regular` (a file, or -),
    /// `unix_stream` (a unix stream socket a shipper listens on), `syslog` (one RFC 5424
    /// message per event to unix:PATH, udp:HOST:PORT or tcp:HOST:PORT).
    #[arg(long, value_name = "TYPE", default_value = "regular")]
    pub eve_filetype: String,
    /// Also write one EVE `flow` event per flow when it ends (with Zeek's conn_state).
    #[arg(long)]
    pub flows: bool,
    /// Write the end-of-run summary as JSON to FILE, or - for standard output (it always
    /// goes to stderr as text).
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
    /// idle timeout is evicted (and counted). A full table costs about 240 bytes per flow
    /// (flow state, its timer, its index slot; more where servers that must never be
    /// restricted talk, whose host pairs are remembered too), so the default bounds flow
    /// state near 120 MB whatever the traffic.
    #[arg(long, value_name = "N", default_value_t = 500_000)]
    pub max_flows: usize,
    /// Hosts remembered at most as recent SMTP senders to an Edge (for the open-proxy
    /// rule), shared out between jobs (each file has a table of its own); past it new
    /// senders are counted, not remembered.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SMTP_SENDERS)]
    pub max_smtp_senders: usize,
    /// Alert bound: alerts written per key (the same finding toward one responder
    /// address and port, or from one originator: a scan) in each --aggregate-window;
    /// the key's further findings are counted, not written, and one aggregate alert
    /// (policy.aggregate) carries them when the window closes. Rules with
    /// `aggregate = false` in the policy (by default: restriction evidence) are exempt.
    /// 0: aggregates only.
    #[arg(long, value_name = "N", default_value_t = bound::Settings::default().per_key)]
    pub alerts_per_key: u64,
    /// Alert bound: a key's window, in seconds of capture time.
    #[arg(long, value_name = "SECONDS", default_value_t = bound::Settings::default().window_ns as f64 / 1e9)]
    pub aggregate_window: f64,
    /// Alert bound: alerts written at most per second of capture time, all keys
    /// together; past it, findings are counted into one aggregate per rule and window.
    /// 0: no cap.
    #[arg(long, value_name = "N", default_value_t = bound::Settings::default().per_second)]
    pub max_alert_rate: u64,
    /// Write every alert: no alert bound (the summary's counts are the same either way).
    #[arg(long)]
    pub no_aggregate: bool,
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
        Config::try_load(flags).map_err(|e| e.to_string())
    }

    /// As [`Config::load`], with the error as it was found (file, line, key).
    pub fn try_load(flags: &ConfigFlags) -> Result<Config, config::ConfigError> {
        let (policy, policy_name) = match &flags.policy {
            Some(path) => (Policy::load(path)?, path.display().to_string()),
            None => (builtin::policy()?, builtin::POLICY_NAME.into()),
        };
        let topology = Arc::new(match &flags.topology {
            Some(path) => Topology::load(path)?,
            None => builtin::topology()?,
        });
        let topology_name = match &flags.topology {
            Some(path) => path.display().to_string(),
            None => format!("built-in example {:?}", topology.name),
        };
        Ok(Config {
            policy: Arc::new(policy),
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

/// The policy and topology files as the report's header names them, with the SHA-256
/// of their bytes (the built-in text when no file was given).
pub fn config_files(flags: &ConfigFlags) -> Result<exwatch::report::Meta, String> {
    use exwatch::report::{logs::sha256, model::FileRef};
    let file = |path: &Option<PathBuf>, default: &str, builtin: &str| -> Result<FileRef, String> {
        Ok(match path {
            Some(path) => FileRef {
                file: path.display().to_string(),
                sha256: sha256(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?),
            },
            None => FileRef { file: format!("{default} (built in)"), sha256: sha256(builtin.as_bytes()) },
        })
    };
    Ok(exwatch::report::Meta {
        policy: file(&flags.policy, builtin::POLICY_NAME, builtin::POLICY)?,
        topology: file(&flags.topology, builtin::TOPOLOGY_NAME, builtin::TOPOLOGY)?,
    })
}

/// This machine's hostname, the default `--sensor-name`.
fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok())
}

/// What `analyze` and `live` share, validated.
pub struct RunSettings {
    pub config: Config,
    pub eve_log: PathBuf,
    pub eve_filetype: exwatch::output::socket::Filetype,
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
        if flags.max_flows > exwatch::flow::MAX_FLOWS {
            return Err(format!(
                "--max-flows {}: at most {} (a flow table's indices are 32-bit)",
                flags.max_flows,
                exwatch::flow::MAX_FLOWS
            ));
        }
        if flags.eve_log.as_os_str() == "-"
            && flags.summary_json.as_ref().is_some_and(|p| p.as_os_str() == "-")
        {
            return Err("--summary-json -: standard output already carries the EVE log (--eve-log -); \
                        give one of them a file"
                .into());
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
        if !(flags.aggregate_window.is_finite() && flags.aggregate_window > 0.0) {
            return Err(format!(
                "--aggregate-window {}: must be a positive number of seconds",
                flags.aggregate_window
            ));
        }
        pipeline.bound = (!flags.no_aggregate).then(|| bound::Settings {
            per_key: flags.alerts_per_key,
            window_ns: (flags.aggregate_window * 1e9) as u64,
            per_second: flags.max_alert_rate,
            ..bound::Settings::default()
        });
        pipeline.sensor_name = flags.sensor_name.or_else(hostname);
        let eve_filetype = exwatch::output::socket::Filetype::parse(&flags.eve_filetype, &flags.eve_log)?;
        Ok(RunSettings {
            config,
            eve_filetype,
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
    pub report: ReportFiles,
    /// The policy and topology files as the report's header names them.
    pub report_meta: Option<exwatch::report::Meta>,
}

impl AnalyzeSettings {
    pub fn from_flags(flags: AnalyzeFlags) -> Result<AnalyzeSettings, String> {
        let report = ReportFiles { html: flags.report, json: flags.report_json, csv: flags.report_csv };
        let report_meta = report.wanted().then(|| config_files(&flags.config)).transpose()?;
        let mut run = RunSettings::from_flags(&flags.config, flags.run)?;
        run.pipeline.file_reader = match flags.reader {
            ReaderFlag::Native => FileReader::Native,
            ReaderFlag::Libpcap => FileReader::Libpcap,
        };
        run.pipeline.reader_decodes = match flags.reader_decodes {
            ReaderDecodesFlag::WhenBehind => ReaderDecodes::WhenBehind,
            ReaderDecodesFlag::Always => ReaderDecodes::Always,
            ReaderDecodesFlag::Never => ReaderDecodes::Never,
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
            report,
            report_meta,
        })
    }

    pub fn sink(&self) -> Sink {
        self.run.eve_filetype.sink(&self.run.eve_log, true)
    }

    /// The files' size on disk, for the progress bar, or 0 when it is not known: the
    /// readers count the capture's bytes as they read them, which standard input never
    /// says in advance and a compressed file holds more of than its size.
    pub fn total_bytes(&self) -> u64 {
        use exwatch::capture::compressed;
        let unknown = |f: &PathBuf| {
            compressed::is_stdin(f)
                || compressed::first_raw_bytes(f).is_ok_and(|head| compressed::sniff(&head).is_some())
        };
        if self.files.iter().any(unknown) {
            return 0;
        }
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
    pub capture: capture::LiveSettings,
    pub run: RunSettings,
    pub metrics: Option<SocketAddr>,
    pub stats_interval: Option<Duration>,
    pub stats_log: Option<PathBuf>,
    pub user: Option<String>,
}

impl LiveSettings {
    /// Validates the flags, with the settings of `--config` under those that `matches`
    /// (the `live` subcommand's) says were not given on the command line.
    pub fn from_flags(mut flags: LiveFlags, matches: &clap::ArgMatches) -> Result<LiveSettings, String> {
        let origins = match flags.config.clone() {
            Some(path) => {
                let (file, text) = LiveFile::load(&path)?;
                file.apply(&path, &text, &mut flags, matches)
            }
            None => Vec::new(),
        };
        LiveSettings::validate(flags).map_err(|message| {
            // A bad value from the file: say where it was set.
            match origins.iter().find(|(flag, _)| message.contains(&format!("--{flag}"))) {
                Some((_, place)) => format!("{message} (set at {place})"),
                None => message,
            }
        })
    }

    fn validate(flags: LiveFlags) -> Result<LiveSettings, String> {
        let interface = flags
            .interface
            .ok_or("--interface is required (on the command line, or as `interface` in --config)")?;
        let default_workers = flags.run.workers.is_none();
        let mut run = RunSettings::from_flags(&flags.site, flags.run)?;
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
        run.pipeline.interface = Some(interface.clone());
        Ok(LiveSettings {
            interface,
            capture: capture::LiveSettings {
                snaplen: flags.snaplen,
                buffer_size: flags.buffer_mib << 20,
                promiscuous: !flags.no_promiscuous,
                bpf: flags.bpf,
                ..capture::LiveSettings::default()
            },
            run,
            metrics,
            stats_interval,
            stats_log: flags.stats_log,
            user: flags.user,
        })
    }

    pub fn sink(&self) -> Sink {
        self.run.eve_filetype.sink(&self.run.eve_log, true)
    }
}

/// `live --config FILE`: the settings of `live`, named as its flags with `_` for `-`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LiveFile {
    interface: Option<Spanned<String>>,
    bpf: Option<Spanned<String>>,
    topology: Option<Spanned<PathBuf>>,
    policy: Option<Spanned<PathBuf>>,
    eve_log: Option<Spanned<PathBuf>>,
    flows: Option<Spanned<bool>>,
    summary_json: Option<Spanned<PathBuf>>,
    workers: Option<Spanned<usize>>,
    syn_timeout: Option<Spanned<f64>>,
    max_flows: Option<Spanned<usize>>,
    max_smtp_senders: Option<Spanned<usize>>,
    metrics: Option<Spanned<String>>,
    stats_interval: Option<Spanned<f64>>,
    user: Option<Spanned<String>>,
    snaplen: Option<Spanned<i32>>,
    buffer_mib: Option<Spanned<i32>>,
    promiscuous: Option<Spanned<bool>>,
}

impl LiveFile {
    /// Reads and parses the file: a TOML error, a value of the wrong type or an
    /// unknown key is `file:line: key: message`.
    fn load(path: &Path) -> Result<(LiveFile, String), String> {
        let text = config::read(path).map_err(|e| e.to_string())?;
        let source = config::Source { file: path, text: &text };
        let file = source.parse::<LiveFile>().map_err(|mut e| {
            if e.key.is_empty() {
                e.key = key_named(&e.message).or_else(|| key_at(&text, e.line?)).unwrap_or_default();
            }
            e.to_string()
        })?;
        Ok((file, text))
    }
}

impl LiveFile {
    /// Sets every flag not given on the command line from the file (`text`, read from
    /// `path`); returns the flags set so, each with where (`file:line: key`), for error
    /// messages.
    fn apply(
        self,
        path: &Path,
        text: &str,
        flags: &mut LiveFlags,
        matches: &clap::ArgMatches,
    ) -> Vec<(&'static str, String)> {
        let file = self;
        let source = config::Source { file: path, text };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut origins = Vec::new();
        let mut take = |id: &'static str, flag: &'static str, span: std::ops::Range<usize>| {
            let given = matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            if !given {
                origins.push((flag, format!("{}:{}: {id}", path.display(), source.line_of(span.start))));
            }
            !given
        };
        let local = |p: PathBuf| if p.is_relative() && p.as_os_str() != "-" { dir.join(p) } else { p };
        macro_rules! set {
            ($key:ident, $flag:literal, $target:expr, $convert:expr) => {
                if let Some(value) = file.$key {
                    if take(stringify!($key), $flag, value.span()) {
                        $target = $convert(value.into_inner());
                    }
                }
            };
        }
        set!(interface, "interface", flags.interface, Some);
        set!(bpf, "bpf", flags.bpf, Some);
        set!(topology, "topology", flags.site.topology, |p| Some(local(p)));
        set!(policy, "policy", flags.site.policy, |p| Some(local(p)));
        set!(eve_log, "eve-log", flags.run.eve_log, local);
        set!(flows, "flows", flags.run.flows, |v| v);
        set!(summary_json, "summary-json", flags.run.summary_json, |p| Some(local(p)));
        set!(workers, "workers", flags.run.workers, Some);
        set!(syn_timeout, "syn-timeout", flags.run.syn_timeout, |v| v);
        set!(max_flows, "max-flows", flags.run.max_flows, |v| v);
        set!(max_smtp_senders, "max-smtp-senders", flags.run.max_smtp_senders, |v| v);
        set!(metrics, "metrics", flags.metrics, Some);
        set!(stats_interval, "stats-interval", flags.stats_interval, Some);
        set!(user, "user", flags.user, Some);
        set!(snaplen, "snaplen", flags.snaplen, |v| v);
        set!(buffer_mib, "buffer-mib", flags.buffer_mib, |v| v);
        if let Some(value) = file.promiscuous {
            if take("no_promiscuous", "no-promiscuous", value.span()) {
                flags.no_promiscuous = !value.into_inner();
            }
        }
        origins
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

/// Files as given (a missing or unreadable one then gives the usual capture error); `-`
/// is standard input, which can be read once only; a directory stands for the captures
/// under it. A directory without any is an error: it is most likely the wrong one,
/// better said before hours of analysis than after.
fn expand_files(paths: &[PathBuf]) -> Result<Inputs, String> {
    use exwatch::capture::compressed::is_stdin;
    if paths.iter().filter(|p| is_stdin(p)).count() > 1 {
        return Err("- (standard input) is given more than once; it can be read only once".into());
    }
    let mut inputs = Inputs { files: Vec::new(), not_captures: Vec::new() };
    for path in paths {
        if is_stdin(path) || !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
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
                "{}: no pcap or pcapng capture (plain, gzip or zstd) in this directory or below it{others}",
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
/// or nanosecond timestamps, or a pcapng section header), once decompressed if it is
/// compressed with gzip or zstd. One that cannot be read (or decompressed) is taken, so
/// the run names the error rather than the walk hiding the file.
fn starts_like_a_capture(path: &Path) -> bool {
    use exwatch::capture::{compressed, format};
    match compressed::first_bytes(path, format::MAGIC_LEN) {
        Ok(magic) => format::sniff(&magic).is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::UnexpectedEof,
    }
}

/// A bar of `total` bytes; with no total known (0), bytes read and the rate.
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let template = match total {
        0 => "{spinner} {bytes} {bytes_per_sec}",
        _ => "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
