//! Flags as typed on the command line, and their validation into settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

mod broker;

pub use broker::{collect, CollectFlags};

use exwatch::capture;
use exwatch::command::{self, analyze::ReportFiles, live::ConfigFile, Inputs, RunSettings};
use exwatch::config;
use exwatch::output::bound;
use exwatch::pipeline::{FileReader, ReaderDecodes, Settings};
use exwatch::policy::{builtin, Topology, DEFAULT_MAX_SMTP_SENDERS};
use exwatch::report::Meta;
use exwatch::time::{self, Ts};

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
    ///
    /// Exit status: 0 valid, 1 valid with lints, 2 invalid, or a topology analyze and live
    /// would refuse (no Mailbox and no Edge server: nothing the policy could judge).
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
    /// status: 0 when no violation or restriction was found, 1 otherwise, 2 when there
    /// was nothing to judge, a log was not read whole, events were judged under another
    /// topology or policy (unless --allow-mixed), or on bad input or configuration.
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
    /// there is any); a listed server with too little traffic to judge (fewer than 10
    /// answered flows or 3 peers) is "not enough evidence", not a difference.
    Learn(LearnFlags),
    /// Gather many sensors' events from Redis (published with --redis): one EVE file per
    /// sensor, DIR/<host>/eve.json, each entry acknowledged once it is on disk, and the
    /// compliance report of everything collected rewritten every --every. SIGTERM or
    /// SIGINT stops it (status 0), SIGHUP reopens its files.
    Collect(CollectFlags),
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
    /// servers and internal clients; Exchange Online and UM gateways with their packs;
    /// its exceptions' jump hosts and accepted destinations.
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
    /// Build the report even from events judged under another topology or policy than
    /// --topology/--policy, or against a baseline of another organization (refused,
    /// status 2, without it).
    #[arg(long)]
    pub allow_mixed: bool,
    /// Keep only the flows that started at or after TIME (RFC 3339, or a date: its
    /// midnight UTC), and the alerts on them: an audit's period.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Keep only the flows that started before TIME (as for --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[command(flatten)]
    pub config: ConfigFlags,
}

#[derive(ClapArgs, Debug)]
pub struct CompareFlags {
    /// One capture (pcap or pcapng); which of the two is nearer a sender follows, per
    /// host pair, from the TTLs, so handshakes are judged both ways.
    #[arg(value_name = "FIRST")]
    pub first: PathBuf,
    /// The other capture.
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
    /// restriction, advisory, accepted (findings an exception covers; never by
    /// default); or never.
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
    /// Analyse only the frames this BPF expression (tcpdump syntax) passes, as `live
    /// --bpf` does on an interface; the summary counts the others (`bpf_filtered`).
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Keep only the flows that started at or after TIME (RFC 3339, 2026-11-27T04:55:14Z,
    /// or a date, 2026-11-27: its midnight UTC): an audit's period. Earlier flows are
    /// still tracked, so the ones kept are judged with their whole history.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Keep only the flows that started before TIME (as for --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
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
    /// Kernel capture buffer, in MiB: the ring frames wait in while a capture thread
    /// works, shared out between the --capture-threads sockets.
    #[arg(long, value_name = "MIB", default_value_t = capture::LiveSettings::default().buffer_size >> 20)]
    pub buffer_mib: i32,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    pub no_promiscuous: bool,
    /// Capture sockets, one thread each that also judges what it reads; several form one
    /// PACKET_FANOUT group split by exwatch's own address hash, so each thread sees whole
    /// flows. Default: one per 5 Gb/s of the interface's speed, at most one per core but
    /// one (left to the writer), at least 1. --workers means the same for live.
    #[arg(long, value_name = "N")]
    pub capture_threads: Option<usize>,
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
    /// Also write one EVE `flow` event per flow when it ends (with Zeek's conn_state):
    /// every flow, or with --flows=in-scope only those the article covers (not
    /// `out_of_scope`: flows touching neither a Mailbox nor an Edge server, link-local).
    #[arg(long, value_name = "WHICH", num_args = 0..=1, require_equals = true, default_missing_value = "all")]
    pub flows: Option<String>,
    /// Write the end-of-run summary as JSON to FILE, or - for standard output (it always
    /// goes to stderr as text).
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Parser workers (each owns a share of the flows), fed by one reader thread, for
    /// analyze of one file or of --continuous files. Default: one per core but the one the
    /// reader keeps busy (at least one). For live, the same as --capture-threads.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Seconds of capture time a retried SYN between servers that must never be
    /// restricted may go unanswered before it is reported as a silent drop.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub syn_timeout: f64,
    /// Flows tracked at most, across workers (or jobs); past it the flow closest to its
    /// idle timeout is evicted (and counted). A full table costs the process about 385
    /// bytes per flow (the flow's 208, its timer, its index slot, its host pair; measured
    /// as peak memory over resident flows on a flood), so the default keeps a flooded
    /// analyze near 185 MB whatever the traffic.
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
    /// Flow bound (`--flows=in-scope`): in-scope flow events written per key (the same
    /// rule and verdict toward one responder address and port, or from one originator)
    /// in each --aggregate-window; the key's further flows are counted into one
    /// aggregate flow record (policy.aggregate). Flows an alert names are exempt. 0:
    /// aggregates only.
    #[arg(long, value_name = "N", default_value_t = bound::Settings::default().flows_per_key)]
    pub flows_per_key: u64,
    /// Flow bound: in-scope flow events written at most per second of capture time, all
    /// keys together. 0: no cap.
    #[arg(long, value_name = "N", default_value_t = bound::Settings::default().flows_per_second)]
    pub max_flow_rate: u64,
    /// Write every alert and every flow event asked for: no alert bound and no flow
    /// bound (the summary's counts are the same either way).
    #[arg(long)]
    pub no_aggregate: bool,
    /// The sensor's name, written as `host` on every EVE event (Suricata's sensor-name).
    /// Default: this machine's hostname; an empty name writes no `host`.
    #[arg(long, value_name = "NAME")]
    pub sensor_name: Option<String>,
    #[command(flatten)]
    pub redis: broker::RedisFlags,
}

/// `--workers`, `--jobs`: at least 1 when given.
fn at_least_one(value: Option<usize>, name: &str, field: &mut usize) -> Result<(), String> {
    match value {
        Some(0) => Err(format!("{name} must be at least 1")),
        Some(n) => {
            *field = n;
            Ok(())
        }
        None => Ok(()),
    }
}

fn load(flags: &ConfigFlags) -> Result<command::Config, String> {
    command::Config::load(flags.topology.as_deref(), flags.policy.as_deref())
}

fn run_settings(config: &ConfigFlags, flags: RunFlags) -> Result<RunSettings, String> {
    let config = load(config)?;
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
    if flags.eve_log.as_os_str() == "-" && flags.summary_json.as_ref().is_some_and(|p| p.as_os_str() == "-") {
        return Err("--summary-json -: standard output already carries the EVE log (--eve-log -); \
                    give one of them a file"
            .into());
    }
    let mut pipeline = Settings::default();
    at_least_one(flags.workers, "--workers", &mut pipeline.workers)?;
    pipeline.flows.syn_timeout_ns = (flags.syn_timeout * 1e9) as u64;
    pipeline.flows.max_flows = flags.max_flows;
    (pipeline.eve_flows, pipeline.flows_in_scope) = match flags.flows.as_deref() {
        None => (false, false),
        Some("all") => (true, false),
        Some("in-scope") => (true, true),
        Some(other) => return Err(format!("--flows={other}: not `all` or `in-scope`")),
    };
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
        flows_per_key: flags.flows_per_key,
        flows_per_second: flags.max_flow_rate,
        ..bound::Settings::default()
    });
    pipeline.sensor_name = flags.sensor_name.or_else(command::hostname);
    let eve_filetype = exwatch::output::socket::Filetype::parse(&flags.eve_filetype, &flags.eve_log)?;
    Ok(RunSettings {
        config,
        eve_filetype,
        eve_log: flags.eve_log,
        summary_json: flags.summary_json,
        pipeline,
        max_smtp_senders: flags.max_smtp_senders,
        redis: flags.redis.settings()?,
    })
}

pub fn analyze(flags: AnalyzeFlags) -> Result<command::analyze::Settings, String> {
    let report = ReportFiles { html: flags.report, json: flags.report_json, csv: flags.report_csv };
    let (topology, policy) = (flags.config.topology.as_deref(), flags.config.policy.as_deref());
    let report_meta = report.wanted().then(|| Meta::of_files(topology, policy)).transpose()?;
    let mut run = run_settings(&flags.config, flags.run)?;
    run.pipeline.file_reader = match flags.reader {
        ReaderFlag::Native => FileReader::Native,
        ReaderFlag::Libpcap => FileReader::Libpcap,
    };
    run.pipeline.reader_decodes = match flags.reader_decodes {
        ReaderDecodesFlag::WhenBehind => ReaderDecodes::WhenBehind,
        ReaderDecodesFlag::Always => ReaderDecodes::Always,
        ReaderDecodesFlag::Never => ReaderDecodes::Never,
    };
    at_least_one(flags.jobs, "--jobs", &mut run.pipeline.jobs)?;
    run.pipeline.continuous = flags.continuous;
    run.pipeline.flows.window = window(flags.since.as_deref(), flags.until.as_deref())?;
    if let Some(expression) = flags.bpf {
        exwatch::capture::filter::Filter::new(&expression).map_err(|e| e.to_string())?;
        run.pipeline.bpf = Some(expression);
    }
    Ok(command::analyze::Settings {
        inputs: Inputs::expand(&flags.files)?,
        run,
        fail_on: command::analyze::fail_on(&flags.fail_on)?,
        progress: !flags.no_progress,
        report,
        report_meta,
    })
}

pub fn learn(flags: LearnFlags) -> Result<command::learn::Settings, String> {
    let mut pipeline = Settings::default();
    at_least_one(flags.workers, "--workers", &mut pipeline.workers)?;
    at_least_one(flags.jobs, "--jobs", &mut pipeline.jobs)?;
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
    Ok(command::learn::Settings {
        inputs: Inputs::expand(&flags.files)?,
        output: flags.output,
        topology,
        policy: Arc::new(builtin::policy().map_err(|e| e.to_string())?),
        pipeline,
        learn: exwatch::learn::Settings { max_hosts: flags.max_hosts, answered_only: false },
        progress: !flags.no_progress,
    })
}

pub fn report(flags: ReportFlags) -> Result<command::report::Settings, String> {
    let (topology, policy) = (flags.config.topology.as_deref(), flags.config.policy.as_deref());
    Ok(command::report::Settings {
        config: load(&flags.config)?,
        meta: Meta::of_files(topology, policy)?,
        logs: flags.logs,
        outputs: ReportFiles { html: flags.html, json: flags.json, csv: flags.csv },
        baseline: flags.baseline,
        allow_mixed: flags.allow_mixed,
        window: window(flags.since.as_deref(), flags.until.as_deref())?,
    })
}

pub fn compare(flags: CompareFlags) -> Result<command::compare::Settings, String> {
    Ok(command::compare::Settings {
        config: load(&flags.config)?,
        first: flags.first,
        second: flags.second,
        eve_log: flags.eve_log,
    })
}

pub fn check(flags: CheckFlags) -> command::check::Settings {
    command::check::Settings {
        topology: flags.config.topology,
        policy: flags.config.policy,
        json: flags.json,
    }
}

pub fn generate(flags: GenerateFlags) -> command::generate::Settings {
    command::generate::Settings {
        out: flags.out,
        packets: flags.packets,
        seed: flags.seed,
        bulk: flags.bulk,
        expected: flags.expected,
        pool: flags.pool,
        topology: flags.topology,
    }
}

/// `--since`/`--until`: the period whose flows are kept.
fn window(since: Option<&str>, until: Option<&str>) -> Result<Option<(Ts, Ts)>, String> {
    let parse = |flag: &str, text: Option<&str>| {
        text.map(|t| time::parse(t).map_err(|e| format!("{flag} {e}"))).transpose()
    };
    let (since, until) = (parse("--since", since)?, parse("--until", until)?);
    if let (Some(a), Some(b)) = (since, until) {
        if a >= b {
            return Err("--since must be before --until".into());
        }
    }
    Ok((since.is_some() || until.is_some()).then(|| (since.unwrap_or(Ts(0)), until.unwrap_or(Ts(u64::MAX)))))
}

/// Validates the flags of `live`, with the settings of `--config` under those that
/// `matches` (the `live` subcommand's) says were not given on the command line.
pub fn live(mut flags: LiveFlags, matches: &clap::ArgMatches) -> Result<command::live::Settings, String> {
    let origins = match flags.config.clone() {
        Some(path) => {
            let (file, text) = ConfigFile::load(&path)?;
            apply(file, &path, &text, &mut flags, matches)
        }
        None => Vec::new(),
    };
    validate_live(flags).map_err(|message| {
        // A bad value from the file: say where it was set.
        match origins.iter().find(|(flag, _)| message.contains(&format!("--{flag}"))) {
            Some((_, place)) => format!("{message} (set at {place})"),
            None => message,
        }
    })
}

fn validate_live(flags: LiveFlags) -> Result<command::live::Settings, String> {
    let interface = flags
        .interface
        .ok_or("--interface is required (on the command line, or as `interface` in --config)")?;
    let threads = flags.capture_threads.or(flags.run.workers);
    if threads == Some(0) {
        return Err("--capture-threads must be at least 1".into());
    }
    let mut run = run_settings(&flags.site, flags.run)?;
    run.pipeline.workers = threads.unwrap_or_else(|| capture::default_threads(&interface));
    let metrics = flags.metrics.as_deref().map(command::live::metrics_addr).transpose()?;
    let stats_interval = match flags.stats_interval {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => return Err(format!("--stats-interval {secs}: must be a positive number of seconds")),
    };
    if flags.snaplen <= 0 || flags.buffer_mib <= 0 || flags.buffer_mib > 4095 {
        return Err("--snaplen must be positive and --buffer-mib from 1 to 4095".into());
    }
    run.pipeline.interface = Some(interface.clone());
    Ok(command::live::Settings {
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

/// Sets every flag not given on the command line from the `live --config` file (`text`,
/// read from `path`); returns the flags set so, each with where (`file:line: key`), for
/// error messages.
fn apply(
    file: ConfigFile,
    path: &Path,
    text: &str,
    flags: &mut LiveFlags,
    matches: &clap::ArgMatches,
) -> Vec<(&'static str, String)> {
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
    set!(flows, "flows", flags.run.flows, command::live::FlowsKey::flag);
    set!(summary_json, "summary-json", flags.run.summary_json, |p| Some(local(p)));
    set!(workers, "workers", flags.run.workers, Some);
    set!(capture_threads, "capture-threads", flags.capture_threads, Some);
    set!(syn_timeout, "syn-timeout", flags.run.syn_timeout, |v| v);
    set!(max_flows, "max-flows", flags.run.max_flows, |v| v);
    set!(max_smtp_senders, "max-smtp-senders", flags.run.max_smtp_senders, |v| v);
    set!(metrics, "metrics", flags.metrics, Some);
    set!(stats_interval, "stats-interval", flags.stats_interval, Some);
    set!(user, "user", flags.user, Some);
    set!(snaplen, "snaplen", flags.snaplen, |v| v);
    set!(buffer_mib, "buffer-mib", flags.buffer_mib, |v| v);
    set!(redis, "redis", flags.run.redis.redis, Some);
    set!(redis_key, "redis-key", flags.run.redis.redis_key, |v| v);
    set!(redis_mode, "redis-mode", flags.run.redis.redis_mode, |v| v);
    set!(redis_queue, "redis-queue", flags.run.redis.redis_queue, |v| v);
    set!(redis_maxlen, "redis-maxlen", flags.run.redis.redis_maxlen, |v| v);
    set!(redis_timeout, "redis-timeout", flags.run.redis.redis_timeout, |v| v);
    if let Some(value) = file.promiscuous {
        if take("no_promiscuous", "no-promiscuous", value.span()) {
            flags.no_promiscuous = !value.into_inner();
        }
    }
    origins
}
