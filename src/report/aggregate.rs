//! The report builder: records in, one [`Report`] out.
//!
//! Memory is bounded by what the report shows, never by the number of events: per rule
//! its counters and host pairs, the distinct aggregated findings, the never-restrict
//! pairs, finding counts over time, and the dedup table (see [`Dedup`]). It never reads
//! files and never formats.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::dedup::Dedup;
use super::finish::{PairParts, Parts, RowParts};
use super::model::*;
use super::records::{format_timestamp, AlertRecord, FlowRecord, Micros, Record, StatsRecord};
use super::MAX_PAIR_PORTS;
use crate::policy::{Policy, Role, Topology, Verdict};
use crate::time::Ts;

/// Time slots of finding counts kept at most (see [`Builder::coarsen`]).
const TIME_SLOTS: usize = 100_000;

#[derive(Clone, Default)]
struct RowAcc {
    flows: u64,
    bytes: u64,
    /// Flows and bytes by (originator, responder).
    pairs: HashMap<(IpAddr, IpAddr), (u64, u64), foldhash::fast::FixedState>,
    ports: Ports,
    first: Option<Micros>,
    last: Option<Micros>,
    alerts: VerdictCounts,
}

impl RowAcc {
    /// `flows` flows (an aggregate flow record's, else 1) of `e`'s pair.
    fn add(&mut self, e: &super::records::Endpoints, (flows, bytes): (u64, u64), from: Micros, to: Micros) {
        self.flows += flows;
        self.bytes += bytes;
        let pair = self.pairs.entry((e.src_ip, e.dest_ip)).or_default();
        pair.0 += flows;
        pair.1 += bytes;
        self.ports.add(e.dest_port, &e.proto);
        let mut range = (self.first, self.last);
        span(&mut range, from, to);
        (self.first, self.last) = range;
    }
}

/// Responder ports: the first [`MAX_PAIR_PORTS`] listed, the rest counted.
#[derive(Default, Clone)]
struct Ports {
    listed: BTreeSet<(u16, String)>,
    /// Ports past the listed ones, as (port, hash of the protocol).
    more: HashSet<(u16, u64)>,
}

impl Ports {
    fn add(&mut self, port: Option<u16>, proto: &str) {
        let port = (port.unwrap_or(0), proto.to_string());
        if self.listed.len() < MAX_PAIR_PORTS || self.listed.contains(&port) {
            self.listed.insert(port);
        } else {
            let proto = foldhash::fast::FixedState::with_seed(3).hash_one(proto);
            self.more.insert((port.0, proto));
        }
    }

    fn into_parts(self) -> (Vec<String>, u64) {
        (
            self.listed.into_iter().map(|(port, proto)| format!("{port}/{proto}")).collect(),
            self.more.len() as u64,
        )
    }
}

/// What the flows that began in one capture file of this run show (`analyze --report`).
#[derive(Default, Clone)]
struct FileAcc {
    flows: u64,
    packets: u64,
    first: Option<Micros>,
    last: Option<Micros>,
}

#[derive(Clone)]
struct FindingAcc {
    count: u64,
    first: Micros,
    last: Micros,
    confidence: u8,
    community_id: String,
    sensor: Option<String>,
    pcap_filename: Option<String>,
    exception: Option<String>,
}

type FindingKey = (usize, Option<String>, Verdict, IpAddr, IpAddr, Option<u16>, String);

#[derive(Clone, Default)]
struct PairAcc {
    flows: u64,
    bytes: u64,
    ports: Ports,
    evidence: BTreeMap<String, u64>,
}

#[derive(Default, Clone, Copy)]
struct RoleAcc {
    flows: u64,
    /// Of `flows`, those a rule of the article covers.
    in_scope: u64,
    bytes: u64,
    worst: u8,
}

#[derive(Clone, Default)]
struct SensorAcc {
    events: u64,
    first: Option<Micros>,
    last: Option<Micros>,
}

/// Aggregates records into a report. Feed it with [`Builder::record`] (or the typed
/// methods) in any order; events roughly in time order dedup best.
#[derive(Clone)]
pub struct Builder {
    policy: Arc<Policy>,
    topology: Arc<Topology>,
    meta: Meta,
    rule_index: HashMap<String, usize, foldhash::fast::FixedState>,
    evidence_index: HashMap<String, usize, foldhash::fast::FixedState>,
    /// (from, to, both_ways) role masks of the never-restrict rules.
    protected: Vec<(u16, u16, bool)>,
    rows: Vec<RowAcc>,
    /// One per `[[evidence]]` of the policy: the flows it was found on.
    evidence_rows: Vec<RowAcc>,
    findings: HashMap<FindingKey, FindingAcc, foldhash::fast::FixedState>,
    pairs: HashMap<(IpAddr, IpAddr), PairAcc, foldhash::fast::FixedState>,
    roles: [[RoleAcc; Role::ALL.len()]; Role::ALL.len()],
    /// Findings per time slot of `slot` microseconds of capture time.
    minutes: BTreeMap<u64, VerdictCounts>,
    slot: Micros,
    sensors: BTreeMap<String, SensorAcc>,
    stats: BTreeMap<String, StatsRecord>,
    inputs: Vec<InputRef>,
    dedup: Dedup,
    health: Health,
    totals: Totals,
    first: Option<Micros>,
    last: Option<Micros>,
    conn_states: BTreeMap<String, u64>,
    flow_states: BTreeMap<String, u64>,
    /// The `host` of the events of this run (`analyze --report`).
    sensor_name: Option<String>,
    /// `report --since/--until`: only flows that started in it, in microseconds.
    window: Option<(Micros, Micros)>,
    /// The capture files of this run, by index (`analyze --report`): EVE's
    /// `pcap_filename` of its events.
    captures: Vec<String>,
    /// By index in `captures`.
    files: BTreeMap<u16, FileAcc>,
    /// Accepted findings per exception id.
    exceptions: BTreeMap<String, u64>,
}

const UNNAMED: &str = "(unnamed)";

fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Advisory => 1,
        Verdict::Violation => 2,
        Verdict::Restriction => 3,
        _ => 0,
    }
}

fn confidence_rank(name: &str) -> u8 {
    match name {
        "low" => 0,
        "medium" => 1,
        _ => 2,
    }
}

fn bump(counts: &mut VerdictCounts, v: Verdict, n: u64) {
    match v {
        Verdict::Advisory => counts.advisory += n,
        Verdict::Violation => counts.violation += n,
        Verdict::Restriction => counts.restriction += n,
        Verdict::Accepted => counts.accepted += n,
        _ => {}
    }
}

fn span(range: &mut (Option<Micros>, Option<Micros>), from: Micros, to: Micros) {
    range.0 = Some(range.0.map_or(from, |f| f.min(from)));
    range.1 = Some(range.1.map_or(to, |l| l.max(to)));
}

impl Builder {
    pub fn new(policy: Arc<Policy>, topology: Arc<Topology>, meta: Meta) -> Builder {
        let rule_index = policy.rules.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
        let rows = policy.rules.iter().map(|_| RowAcc::default()).collect();
        let evidence_index = policy.evidence.iter().enumerate().map(|(i, e)| (e.id.clone(), i)).collect();
        let evidence_rows = policy.evidence.iter().map(|_| RowAcc::default()).collect();
        let protected =
            policy.rules.iter().filter(|r| r.never_restrict).map(|r| (r.from, r.to, r.both_ways)).collect();
        Builder {
            policy,
            topology,
            meta,
            rule_index,
            evidence_index,
            protected,
            rows,
            evidence_rows,
            findings: HashMap::default(),
            pairs: HashMap::default(),
            roles: [[RoleAcc::default(); Role::ALL.len()]; Role::ALL.len()],
            minutes: BTreeMap::new(),
            slot: 1_000,
            sensors: BTreeMap::new(),
            stats: BTreeMap::new(),
            inputs: Vec::new(),
            dedup: Dedup::new(),
            health: Health {
                flows: 0,
                one_sided: 0,
                midstream: 0,
                gapped_flows: 0,
                gaps: 0,
                flow_states: Vec::new(),
                conn_states: Vec::new(),
                stats: None,
                low_confidence_findings: 0,
                dedup_forgotten: 0,
                notes: Vec::new(),
            },
            totals: Totals {
                flows: 0,
                flows_in_scope: 0,
                bytes: 0,
                duplicates: 0,
                unmatched_flows: 0,
                unknown_rule_events: 0,
                findings: VerdictCounts::default(),
                flows_counted_from: FlowsFrom::FlowEvents,
            },
            first: None,
            last: None,
            conn_states: BTreeMap::new(),
            flow_states: BTreeMap::new(),
            sensor_name: None,
            window: None,
            captures: Vec::new(),
            files: BTreeMap::new(),
            exceptions: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, record: Record) {
        let start = match &record {
            Record::Flow(f) => Some(f.start),
            Record::Alert(a) => Some(a.flow_start),
            Record::Stats(_) => None,
        };
        if let (Some(start), Some((since, until))) = (start, self.window) {
            if start < since || start >= until {
                return;
            }
        }
        match record {
            Record::Flow(f) => self.flow(&f),
            Record::Alert(a) => self.alert(&a),
            Record::Stats(s) => self.stats(s),
        }
    }

    /// A pipeline event, as `analyze --report` would feed it: the same record as its
    /// EVE line read back.
    pub fn event(&mut self, engine: &crate::policy::Engine, event: &crate::flow::Event) {
        let mut record = super::records::from_event(engine, event);
        let (crate::flow::Event::Flow { flow, .. } | crate::flow::Event::Alert { flow, .. }) = event;
        if let Record::Flow(FlowRecord { ends, .. }) | Record::Alert(AlertRecord { ends, .. }) = &mut record {
            if let Some(name) = &self.sensor_name {
                ends.host.get_or_insert_with(|| name.clone());
            }
            if let Some(capture) = self.captures.get(usize::from(flow.file)) {
                ends.pcap_filename.get_or_insert_with(|| capture.clone());
            }
        }
        if let Record::Flow(f) = &record {
            let file = self.files.entry(flow.file).or_default();
            file.flows += 1;
            file.packets += f.pkts[0] + f.pkts[1];
            let mut range = (file.first, file.last);
            span(&mut range, f.start, f.end);
            (file.first, file.last) = range;
        }
        self.record(record);
    }

    /// The capture files of the run whose events [`Builder::event`] is fed, in the
    /// order the pipeline numbers them, as EVE's `pcap_filename` names them.
    pub fn with_captures(mut self, names: Vec<String>) -> Builder {
        self.captures = names;
        self
    }

    /// Keeps only the flows that started in `window` (`--since`, `--until`), and the
    /// alerts on them.
    pub fn with_window(mut self, window: Option<(Ts, Ts)>) -> Builder {
        self.window = window.map(|(since, until)| (since.0 / 1_000, until.0 / 1_000));
        self
    }

    /// The sensor that saw the events fed with [`Builder::event`] (`--sensor-name`), as
    /// EVE's `host` names it.
    pub fn with_sensor(mut self, name: Option<String>) -> Builder {
        self.sensor_name = name;
        self
    }

    /// An input file, for the header. A capture of this run (`analyze --report`, the
    /// inputs given in the order of [`Builder::with_captures`]) gets the packets, flows
    /// and time range of the flows that began in it.
    pub fn input(&mut self, mut input: InputRef) {
        let index = u16::try_from(self.inputs.len()).unwrap_or(u16::MAX);
        if let Some(file) = self.files.get(&index).filter(|_| usize::from(index) < self.captures.len()) {
            input.flows = file.flows;
            input.packets = file.packets;
            input.first = file.first.map(format_timestamp);
            input.last = file.last.map(format_timestamp);
        }
        self.inputs.push(input);
    }

    fn sensor(&mut self, host: Option<&str>, ts: Micros) {
        let host = host.unwrap_or(UNNAMED);
        let acc = match self.sensors.get_mut(host) {
            Some(acc) => acc,
            None => self.sensors.entry(host.to_string()).or_default(),
        };
        acc.events += 1;
        let mut range = (acc.first, acc.last);
        span(&mut range, ts, ts);
        (acc.first, acc.last) = range;
    }

    pub fn flow(&mut self, f: &FlowRecord) {
        let e = &f.ends;
        self.sensor(e.host.as_deref(), f.end);
        let key = self.dedup.hash(("flow", &e.community_id, None));
        let sensor = self.dedup.sensor(e.host.as_deref());
        if self.dedup.duplicate(key, f.start, f.end, sensor) {
            return;
        }
        let bytes = f.total_bytes();
        let flows = f.flows;
        self.totals.flows += flows;
        self.totals.bytes += bytes;
        let mut range = (self.first, self.last);
        span(&mut range, f.start, f.end);
        (self.first, self.last) = range;
        // The capture's health reads each flow's shape, which an aggregate flow record
        // does not keep: it counts the flows written one by one.
        if !f.is_aggregate() {
            let h = &mut self.health;
            h.flows += 1;
            h.one_sided += u64::from(f.one_sided());
            h.midstream += u64::from(e.inferred);
            h.gapped_flows += u64::from(f.gaps > 0);
            h.gaps += u64::from(f.gaps);
            if let Some(code) = &f.conn_state {
                tally(&mut self.conn_states, code);
            }
            tally(&mut self.flow_states, &f.state);
        }
        let cell = &mut self.roles[e.src_role as usize][e.dest_role as usize];
        cell.flows += flows;
        cell.bytes += bytes;
        let index = f.rule.as_deref().and_then(|r| self.rule_index.get(r)).copied();
        if index.is_some_and(|i| self.policy.rules[i].never_restrict)
            || self.protected_pair(e.src_ip, e.dest_ip)
        {
            self.pair_traffic(f);
        }
        if f.rule.is_none() {
            self.totals.unmatched_flows += 1;
            return;
        }
        let Some(index) = index else {
            self.totals.unknown_rule_events += 1;
            return;
        };
        if self.policy.rules[index].verdict != Verdict::OutOfScope {
            self.totals.flows_in_scope += flows;
            self.roles[e.src_role as usize][e.dest_role as usize].in_scope += flows;
        }
        self.rows[index].add(e, (flows, bytes), f.start, f.end);
    }

    /// Whether the topology's roles of the two hosts make their traffic one that a
    /// never-restrict rule of the policy protects (either way for `both_ways` rules).
    fn protected_pair(&self, a: IpAddr, b: IpAddr) -> bool {
        let (ra, rb) = (self.topology.roles_of(a).0, self.topology.roles_of(b).0);
        self.protected.iter().any(|&(from, to, both_ways)| {
            (from & ra != 0 && to & rb != 0) || (both_ways && from & rb != 0 && to & ra != 0)
        })
    }

    /// Counts a flow of a never-restrict pair.
    fn pair_traffic(&mut self, f: &FlowRecord) {
        let e = &f.ends;
        let pair = self.pairs.entry(ordered(e.src_ip, e.dest_ip)).or_default();
        pair.flows += f.flows;
        pair.bytes += f.total_bytes();
        pair.ports.add(e.dest_port, &e.proto);
    }

    pub fn alert(&mut self, a: &AlertRecord) {
        let e = &a.ends;
        self.sensor(e.host.as_deref(), a.ts);
        let id = a.evidence.as_deref().unwrap_or(&a.rule);
        let key = self.dedup.hash(("alert", &e.community_id, Some(id)));
        let sensor = self.dedup.sensor(e.host.as_deref());
        if self.dedup.duplicate(key, a.flow_start, a.ts, sensor) {
            return;
        }
        let Some(&index) = self.rule_index.get(&a.rule) else {
            self.totals.unknown_rule_events += 1;
            return;
        };
        let evidence = match a.evidence.as_deref() {
            Some(id) => match self.evidence_index.get(id) {
                Some(&i) => Some(i),
                None => {
                    self.totals.unknown_rule_events += 1;
                    return;
                }
            },
            None => None,
        };
        // An aggregate alert counts the findings it stands for.
        let n = a.findings;
        if let Some(i) = evidence {
            self.evidence_rows[i].add(e, (n, 0), a.flow_start, a.ts);
            bump(&mut self.evidence_rows[i].alerts, a.verdict, n);
        }
        bump(&mut self.totals.findings, a.verdict, n);
        bump(&mut self.rows[index].alerts, a.verdict, n);
        bump(self.minutes.entry(a.ts / self.slot).or_default(), a.verdict, n);
        if self.minutes.len() > TIME_SLOTS {
            self.coarsen();
        }
        let cell = &mut self.roles[e.src_role as usize][e.dest_role as usize];
        cell.worst = cell.worst.max(severity(a.verdict));
        let rank = confidence_rank(&a.confidence);
        self.health.low_confidence_findings += u64::from(rank == 0);
        let key =
            (index, a.evidence.clone(), a.verdict, e.src_ip, e.dest_ip, e.dest_port, e.proto.to_string());
        let finding = self.findings.entry(key).or_insert_with(|| FindingAcc {
            count: 0,
            first: a.ts,
            last: a.ts,
            confidence: rank,
            community_id: e.community_id.clone(),
            sensor: e.host.clone(),
            pcap_filename: e.pcap_filename.clone(),
            exception: a.exception.clone(),
        });
        if let Some(exception) = &a.exception {
            *self.exceptions.entry(exception.clone()).or_default() += n;
        }
        finding.count += n;
        finding.first = finding.first.min(a.ts);
        finding.last = finding.last.max(a.ts);
        finding.confidence = finding.confidence.min(rank);
        // Restriction evidence an exception accepted stays visible in the matrix too.
        if a.verdict == Verdict::Restriction || (a.verdict == Verdict::Accepted && a.evidence.is_some()) {
            let pair = self.pairs.entry(ordered(e.src_ip, e.dest_ip)).or_default();
            *pair.evidence.entry(id.to_string()).or_default() += n;
        }
    }

    /// Slots ten times as wide, so that the finding counts over time stay bounded
    /// whatever the time range.
    fn coarsen(&mut self) {
        let mut wider: BTreeMap<u64, VerdictCounts> = BTreeMap::new();
        for (slot, n) in std::mem::take(&mut self.minutes) {
            let w = wider.entry(slot / 10).or_default();
            w.advisory += n.advisory;
            w.violation += n.violation;
            w.restriction += n.restriction;
            w.accepted += n.accepted;
        }
        self.minutes = wider;
        self.slot *= 10;
    }

    /// A sensor's counters: the last of each sensor counts (they are cumulative).
    /// The capture time of the last event seen so far: where a run's own counters,
    /// added at its end, stand in time.
    pub fn last_seen(&self) -> Option<Micros> {
        self.last
    }

    pub fn stats(&mut self, s: StatsRecord) {
        self.sensor(s.host.as_deref(), s.ts);
        let host = s.host.clone().unwrap_or_else(|| UNNAMED.to_string());
        match self.stats.get(&host) {
            Some(old) if old.ts > s.ts => {}
            _ => {
                self.stats.insert(host, s);
            }
        }
    }

    pub fn finish(self) -> Report {
        super::finish::finish(self.into_parts())
    }

    /// The report of what was fed so far, the builder going on to be fed more (a
    /// collector's periodic report). It copies the aggregates, not the dedup table.
    pub fn snapshot(&mut self) -> Report {
        let dedup = std::mem::take(&mut self.dedup);
        let mut copy = self.clone();
        copy.dedup.forgotten = dedup.forgotten;
        copy.dedup.duplicates = dedup.duplicates;
        self.dedup = dedup;
        copy.finish()
    }
}

/// Counts one more of `key` (a few distinct short codes: no allocation once seen).
fn tally(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

fn ordered(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl RowAcc {
    fn into_parts(self) -> RowParts {
        let mut pairs: Vec<_> = self.pairs.into_iter().collect();
        pairs.sort_by(|(a, (fa, _)), (b, (fb, _))| fb.cmp(fa).then_with(|| a.cmp(b)));
        let host_pairs = pairs.len() as u64;
        let top_pairs = pairs
            .into_iter()
            .take(super::TOP_PAIRS)
            .map(|((src, dst), (flows, bytes))| TopPair {
                src_ip: src.to_string(),
                dest_ip: dst.to_string(),
                flows,
                bytes,
            })
            .collect();
        let (ports, more_ports) = self.ports.into_parts();
        RowParts {
            flows: self.flows,
            bytes: self.bytes,
            host_pairs,
            first: self.first,
            last: self.last,
            alerts: self.alerts,
            ports,
            more_ports,
            top_pairs,
        }
    }
}

impl Builder {
    pub(super) fn into_parts(self) -> Parts {
        let names = ["", "advisory", "violation", "restriction"];
        let policy = Arc::clone(&self.policy);
        let findings = self
            .findings
            .into_iter()
            .map(|((index, evidence, verdict, src, dst, port, proto), acc)| {
                let finding = Finding {
                    rule: policy.rules[index].id.clone(),
                    evidence,
                    verdict: verdict.name().to_string(),
                    src_ip: src.to_string(),
                    dest_ip: dst.to_string(),
                    dest_port: port,
                    proto,
                    count: acc.count,
                    first_seen: format_timestamp(acc.first),
                    last_seen: format_timestamp(acc.last),
                    confidence: ["low", "medium", "high"][usize::from(acc.confidence.min(2))].to_string(),
                    community_id: acc.community_id,
                    sensor: acc.sensor,
                    pcap_filename: acc.pcap_filename,
                    exception: acc.exception,
                };
                (index, finding)
            })
            .collect();
        let mut roles = Vec::new();
        for (i, from) in Role::ALL.iter().enumerate() {
            for (j, to) in Role::ALL.iter().enumerate() {
                let cell = self.roles[i][j];
                if cell.flows > 0 || cell.worst > 0 {
                    roles.push(RoleCell {
                        src_role: from.name().to_string(),
                        dest_role: to.name().to_string(),
                        flows: cell.flows,
                        bytes: cell.bytes,
                        worst: match cell.worst {
                            0 if cell.in_scope == 0 => "out_of_scope",
                            0 => "ok",
                            w => names[usize::from(w)],
                        }
                        .to_string(),
                    });
                }
            }
        }
        let mut health = self.health;
        health.conn_states = self.conn_states.into_iter().collect();
        health.flow_states = self.flow_states.into_iter().collect();
        health.dedup_forgotten = self.dedup.forgotten;
        let mut totals = self.totals;
        totals.duplicates = self.dedup.duplicates;
        Parts {
            meta: self.meta,
            rows: self.rows.into_iter().map(RowAcc::into_parts).collect(),
            evidence_rows: self.evidence_rows.into_iter().map(RowAcc::into_parts).collect(),
            findings,
            pairs: self
                .pairs
                .into_iter()
                .map(|(k, p)| {
                    let (ports, more_ports) = p.ports.into_parts();
                    (
                        k,
                        PairParts {
                            flows: p.flows,
                            bytes: p.bytes,
                            ports,
                            more_ports,
                            evidence: p.evidence.into_iter().collect(),
                        },
                    )
                })
                .collect(),
            roles,
            minutes: self.minutes,
            slot: self.slot,
            sensors: self
                .sensors
                .into_iter()
                .map(|(name, s)| Sensor {
                    name,
                    events: s.events,
                    first: s.first.map(format_timestamp),
                    last: s.last.map(format_timestamp),
                })
                .collect(),
            stats: self.stats.into_values().collect(),
            inputs: self.inputs,
            health,
            totals,
            first: self.first,
            last: self.last,
            exceptions: self.exceptions,
            policy: self.policy,
            topology: self.topology,
        }
    }
}

/// The report of a run, built as it goes: `analyze --report`.
impl crate::pipeline::Observer for Builder {
    fn event(&mut self, engine: &crate::policy::Engine, event: &crate::flow::Event) {
        Builder::event(self, engine, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::dedup::SECOND_MICROS;
    use crate::report::model::FileRef;

    fn builder() -> Builder {
        let policy = Policy::parse(std::path::Path::new("p"), include_str!("../../rules/exchange.toml"));
        let topology = Topology::parse(std::path::Path::new("t"), include_str!("../../rules/topology.toml"));
        let file = |name: &str| FileRef { file: name.into(), sha256: String::new() };
        Builder::new(
            Arc::new(policy.expect("policy")),
            Arc::new(topology.expect("topology")),
            Meta { policy: file("p"), topology: file("t") },
        )
    }

    fn flow(src: &str, dst: &str, dport: u16, rule: Option<&str>, community_id: &str) -> FlowRecord {
        FlowRecord {
            ends: super::super::records::Endpoints {
                host: None,
                pcap_filename: None,
                community_id: community_id.into(),
                src_ip: src.parse().unwrap(),
                src_port: Some(50_000),
                dest_ip: dst.parse().unwrap(),
                dest_port: Some(dport),
                proto: "TCP".into(),
                src_role: Role::External,
                dest_role: Role::External,
                inferred: false,
            },
            start: 10 * SECOND_MICROS,
            end: 11 * SECOND_MICROS,
            pkts: [3, 2],
            bytes: [100, 200],
            state: "closed".into(),
            conn_state: Some("SF".into()),
            gaps: 0,
            verdict: Verdict::Ok,
            rule: rule.map(String::from),
            flows: 1,
        }
    }

    #[test]
    fn never_restrict_pairs_follow_the_topology_whatever_rule_the_sensor_matched() {
        let mut b = builder();
        // A sensor with another topology judged this Mailbox-to-DC flow as something else.
        b.flow(&flow("10.10.1.11", "10.10.0.5", 389, Some("mailbox-to-internal"), "1:a"));
        // A pair the policy protects, by its rule.
        b.flow(&flow("10.10.1.12", "10.10.1.11", 135, Some("exchange-internal"), "1:b"));
        // Neither: a client and a Mailbox server.
        b.flow(&flow("10.20.0.9", "10.10.1.11", 443, Some("client-https"), "1:c"));
        // An event of another policy's rule between two protected hosts still shows the pair.
        b.flow(&flow("10.10.3.20", "10.10.1.11", 5061, Some("a-rule-of-another-policy"), "1:d"));
        let report = b.finish();
        let pairs: Vec<(String, String)> =
            report.never_restrict.pairs.iter().map(|p| (p.a.clone(), p.b.clone())).collect();
        let want = [("10.10.0.5", "10.10.1.11"), ("10.10.1.11", "10.10.1.12"), ("10.10.1.11", "10.10.3.20")];
        assert_eq!(pairs, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(report.totals.unknown_rule_events, 1);
        let roles: Vec<&str> = report.never_restrict.hosts.iter().map(|h| h.role.as_str()).collect();
        assert_eq!(roles, ["mailbox", "mailbox", "domain_controller", "skype"]);
    }

    #[test]
    fn ports_past_the_listed_ones_are_counted_once_each() {
        let mut b = builder();
        for (i, port) in (1..=MAX_PAIR_PORTS as u16 + 3).chain([1, MAX_PAIR_PORTS as u16 + 2]).enumerate() {
            b.flow(&flow("10.10.1.12", "10.10.1.11", port, Some("exchange-internal"), &format!("1:{i}")));
        }
        let report = b.finish();
        let pair = &report.never_restrict.pairs[0];
        assert_eq!(pair.ports.len(), MAX_PAIR_PORTS);
        assert_eq!(pair.more_ports, 3);
        assert_eq!(pair.flows, MAX_PAIR_PORTS as u64 + 5);
    }
}
