//! The policy file (`rules/*.toml`): parsed, validated and compiled once into an
//! immutable [`Policy`].

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::topology::Role;
use crate::config::{self, ConfigError, Source};
use crate::decode::proto;
use crate::time::SECOND;

/// The policy schema this build reads.
pub const SCHEMA: u32 = 1;

/// What a rule says of the flows it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Allowed: no event.
    Ok,
    /// Allowed but worth knowing: an event.
    Advisory,
    /// Should not exist: an event.
    Violation,
    /// Evidence that traffic which must never be restricted is being restricted.
    Restriction,
    /// Touches no Exchange server: counted, no event.
    OutOfScope,
    /// A finding that an unexpired `[[exception]]` of the topology covers: an event,
    /// never a failed run.
    Accepted,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Advisory => "advisory",
            Verdict::Violation => "violation",
            Verdict::Restriction => "restriction",
            Verdict::OutOfScope => "out_of_scope",
            Verdict::Accepted => "accepted",
        }
    }

    pub fn from_name(name: &str) -> Option<Verdict> {
        [
            Verdict::Ok,
            Verdict::Advisory,
            Verdict::Violation,
            Verdict::Restriction,
            Verdict::OutOfScope,
            Verdict::Accepted,
        ]
        .into_iter()
        .find(|v| v.name() == name)
    }

    /// Whether flows with this verdict produce an alert event.
    pub fn is_finding(self) -> bool {
        matches!(self, Verdict::Advisory | Verdict::Violation | Verdict::Restriction | Verdict::Accepted)
    }
}

/// Conditions on the topology and on other flows; an absent condition always holds.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The topology lists at least one Edge Transport server.
    pub edge_deployed: Option<bool>,
    /// The topology lists at least one DNS server.
    pub dns_role: Option<bool>,
    /// `[organization] restrict_internal_clients`.
    pub restrict_internal_clients: Option<bool>,
    /// The Edge and the Mailbox server of the flow share an `[[edge_subscription]]`.
    pub same_subscription: Option<bool>,
    /// The responder is a configured open-proxy-detection proxy (address and port).
    pub responder_is_proxy: Option<bool>,
    /// The responder sent SMTP to the originator within the policy's open-proxy window.
    pub responder_sent_smtp: Option<bool>,
    /// The client's first payload on a TCP flow was not TLS (`app_proto`).
    pub client_plaintext: Option<bool>,
}

/// Kinds of restriction evidence the engine knows how to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// An ICMP/ICMPv6 "administratively prohibited" error quoting the pair's packet.
    IcmpProhibited,
    /// An ICMP/ICMPv6 port or protocol unreachable quoting the pair's packet, sent by
    /// neither of its endpoints: a firewall's REJECT.
    IcmpRejected,
    /// A TCP SYN retried with no answer within the SYN timeout.
    SynUnanswered,
    /// A TCP RST whose TTL / hop limit differs from the earlier packets of the side it
    /// claims to come from: injected by a middlebox.
    ResetInjected,
    /// TCP handshake options rewritten between two capture points (`exwatch compare`).
    OptionsAltered,
    /// A TCP SYN seen at one capture point and not at the next one (`exwatch compare`).
    SynDropped,
}

impl EvidenceKind {
    fn from_name(name: &str) -> Option<EvidenceKind> {
        match name {
            "icmp_prohibited" => Some(EvidenceKind::IcmpProhibited),
            "icmp_rejected" => Some(EvidenceKind::IcmpRejected),
            "syn_unanswered" => Some(EvidenceKind::SynUnanswered),
            "reset_injected" => Some(EvidenceKind::ResetInjected),
            "options_altered" => Some(EvidenceKind::OptionsAltered),
            "syn_dropped" => Some(EvidenceKind::SynDropped),
            _ => None,
        }
    }
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub sid: u32,
    pub rev: u32,
    pub section: String,
    pub reason: String,
    pub verdict: Verdict,
    /// Role bitmasks (see [`Role::bit`]).
    pub from: u16,
    pub to: u16,
    /// IP protocol numbers; empty means any.
    pub protos: Vec<u8>,
    /// Responder port ranges, inclusive; empty means any.
    pub ports: Vec<(u16, u16)>,
    pub both_ways: bool,
    pub never_restrict: bool,
    pub remember_smtp_sender: bool,
    /// Whether a flood of this rule's findings may be aggregated by responder or
    /// originator (the EVE alert bound); `None`: the default, yes for the rule's own
    /// findings and no for restriction evidence on it.
    pub aggregate: Option<bool>,
    pub when: When,
}

impl Rule {
    pub fn port_matches(&self, port: u16) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    }

    pub fn proto_matches(&self, proto: u8) -> bool {
        self.protos.is_empty() || self.protos.contains(&proto)
    }
}

/// One kind of restriction evidence and how it is reported.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub id: String,
    pub sid: u32,
    pub rev: u32,
    pub kind: EvidenceKind,
    pub section: String,
    pub reason: String,
}

/// A compiled policy: rules in file order (the first match wins) and evidence kinds.
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    /// The document the rules come from.
    pub source: String,
    pub rules: Vec<Rule>,
    pub evidence: Vec<Evidence>,
    /// How long after an SMTP connection to an Edge a probe of its sender is legitimate.
    pub open_proxy_window_ns: u64,
    /// Every port a rule names, sorted: used to infer the responder of mid-stream flows.
    pub named_ports: Vec<u16>,
    /// SHA-256 of the policy file's text.
    pub sha256: String,
    /// For a pack (`rules/packs/`): the rule of the main policy its rules go before.
    pub insert_before: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    schema: Spanned<u32>,
    policy: RawHeader,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    evidence: Vec<Spanned<RawEvidence>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    source: String,
    #[serde(default = "default_window")]
    open_proxy_window_secs: u64,
    insert_before: Option<String>,
}

fn default_window() -> u64 {
    3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    sid: u32,
    #[serde(default = "one")]
    rev: u32,
    section: String,
    reason: String,
    verdict: Spanned<String>,
    from: Vec<Spanned<String>>,
    to: Vec<Spanned<String>>,
    #[serde(default)]
    proto: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<PortSpec>>,
    #[serde(default)]
    both_ways: bool,
    #[serde(default)]
    never_restrict: bool,
    #[serde(default)]
    remember_smtp_sender: bool,
    aggregate: Option<bool>,
    #[serde(default)]
    when: When,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    id: String,
    sid: u32,
    #[serde(default = "one")]
    rev: u32,
    kind: Spanned<String>,
    section: String,
    reason: String,
}

/// Signature ids reserved for local rules by the SID allocation convention: ids in it
/// are never linked to a public ruleset's pages.
pub const LOCAL_SIDS: std::ops::RangeInclusive<u32> = 1_000_000..=1_999_999;

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortSpec {
    One(u16),
    Range(String),
}

impl Policy {
    pub fn load(file: &Path) -> Result<Policy, ConfigError> {
        let text = config::read(file)?;
        Policy::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Policy, ConfigError> {
        let source = Source { file, text };
        let raw: RawPolicy = source.parse()?;
        if *raw.schema.get_ref() != SCHEMA {
            return Err(source.error(
                raw.schema.span(),
                "schema",
                format!(
                    "schema {} is not supported; this exwatch reads schema {SCHEMA}",
                    raw.schema.get_ref()
                ),
            ));
        }
        let mut ids = HashSet::new();
        let mut sids = HashSet::new();
        let mut unique = |id: &str, sid: u32, span: std::ops::Range<usize>, key: &str| {
            if !ids.insert(id.to_string()) {
                return Err(source.error(span.clone(), key, format!("id {id:?} is used twice")));
            }
            if !sids.insert(sid) {
                return Err(source.error(span, key, format!("sid {sid} is used twice")));
            }
            if !LOCAL_SIDS.contains(&sid) {
                return Err(source.error(
                    span,
                    key,
                    format!("sid {sid} is outside the range reserved for local rules, 1000000-1999999 (CHANGELOG.md: 90000NN became 19300NN)"),
                ));
            }
            Ok(())
        };
        // A flow keeps its rule's index in 16 bits.
        if let Some(extra) = raw.rule.get(usize::from(u16::MAX)) {
            let message = format!("a policy holds at most {} rules", u16::MAX);
            return Err(source.error(extra.span(), "rule", message));
        }
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (i, spanned) in raw.rule.iter().enumerate() {
            let r = spanned.get_ref();
            let key = format!("rule[{i}] ({:?})", r.id);
            unique(&r.id, r.sid, spanned.span(), &key)?;
            let verdict = match Verdict::from_name(r.verdict.get_ref()) {
                Some(v) if !matches!(v, Verdict::Restriction | Verdict::Accepted) => v,
                _ => {
                    return Err(source.error(
                        r.verdict.span(),
                        &format!("{key}.verdict"),
                        format!(
                            "`{}` is not a rule verdict (ok, advisory, violation, out_of_scope)",
                            r.verdict.get_ref()
                        ),
                    ))
                }
            };
            rules.push(Rule {
                id: r.id.clone(),
                sid: r.sid,
                rev: r.rev,
                section: r.section.clone(),
                reason: r.reason.clone(),
                verdict,
                from: roles(&source, &format!("{key}.from"), &r.from)?,
                to: roles(&source, &format!("{key}.to"), &r.to)?,
                protos: protos(&source, &format!("{key}.proto"), &r.proto)?,
                ports: ports(&source, &format!("{key}.ports"), &r.ports)?,
                both_ways: r.both_ways,
                never_restrict: r.never_restrict,
                remember_smtp_sender: r.remember_smtp_sender,
                aggregate: r.aggregate,
                when: r.when.clone(),
            });
        }
        let mut evidence = Vec::new();
        for (i, spanned) in raw.evidence.iter().enumerate() {
            let e = spanned.get_ref();
            let key = format!("evidence[{i}] ({:?})", e.id);
            unique(&e.id, e.sid, spanned.span(), &key)?;
            let kind = EvidenceKind::from_name(e.kind.get_ref()).ok_or_else(|| {
                source.error(
                    e.kind.span(),
                    &format!("{key}.kind"),
                    format!(
                        "`{}` is not an evidence kind (icmp_prohibited, icmp_rejected, syn_unanswered, reset_injected, options_altered, syn_dropped)",
                        e.kind.get_ref()
                    ),
                )
            })?;
            evidence.push(Evidence {
                id: e.id.clone(),
                sid: e.sid,
                rev: e.rev,
                kind,
                section: e.section.clone(),
                reason: e.reason.clone(),
            });
        }
        let mut policy = Policy {
            name: raw.policy.name,
            source: raw.policy.source,
            rules,
            evidence,
            open_proxy_window_ns: raw.policy.open_proxy_window_secs.saturating_mul(SECOND),
            named_ports: Vec::new(),
            insert_before: raw.policy.insert_before,
            sha256: config::sha256(text),
        };
        policy.name_ports();
        Ok(policy)
    }

    /// Collects every single port a rule names into [`Policy::named_ports`].
    pub fn name_ports(&mut self) {
        let named: BTreeSet<u16> = self
            .rules
            .iter()
            .flat_map(|r| r.ports.iter())
            .filter(|(lo, hi)| lo == hi)
            .map(|&(lo, _)| lo)
            .collect();
        self.named_ports = named.into_iter().collect();
    }

    /// The index (into [`Policy::evidence`]) of the evidence of this kind, if the
    /// policy reports it.
    pub fn evidence_of(&self, kind: EvidenceKind) -> Option<usize> {
        self.evidence.iter().position(|e| e.kind == kind)
    }

    pub fn is_named_port(&self, port: u16) -> bool {
        self.named_ports.binary_search(&port).is_ok()
    }
}

fn roles(source: &Source<'_>, key: &str, names: &[Spanned<String>]) -> Result<u16, ConfigError> {
    let mut mask = 0;
    for name in names {
        mask |= match name.get_ref().as_str() {
            "any" => u16::MAX,
            other => Role::from_name(other).map(Role::bit).ok_or_else(|| {
                source.error(
                    name.span(),
                    key,
                    format!("`{other}` is not a role ({}, any)", Role::ALL.map(Role::name).join(", ")),
                )
            })?,
        };
    }
    if mask == 0 {
        return Err(ConfigError {
            file: source.file.to_path_buf(),
            line: None,
            key: key.to_string(),
            message: "lists no role; use [\"any\"] to match every role".to_string(),
        });
    }
    Ok(mask)
}

fn protos(source: &Source<'_>, key: &str, names: &[Spanned<String>]) -> Result<Vec<u8>, ConfigError> {
    let mut out = Vec::new();
    for name in names {
        match name.get_ref().as_str() {
            "any" => return Ok(Vec::new()),
            "tcp" => out.push(proto::TCP),
            "udp" => out.push(proto::UDP),
            "icmp" => out.extend([proto::ICMP, proto::ICMPV6]),
            other => {
                return Err(source.error(
                    name.span(),
                    key,
                    format!("`{other}` is not a protocol (tcp, udp, icmp, any)"),
                ))
            }
        }
    }
    Ok(out)
}

fn ports(
    source: &Source<'_>,
    key: &str,
    specs: &[Spanned<PortSpec>],
) -> Result<Vec<(u16, u16)>, ConfigError> {
    specs
        .iter()
        .map(|spec| match spec.get_ref() {
            PortSpec::One(port) => Ok((*port, *port)),
            PortSpec::Range(text) => {
                let parsed = text.split_once('-').and_then(|(lo, hi)| {
                    Some((lo.trim().parse::<u16>().ok()?, hi.trim().parse::<u16>().ok()?))
                });
                match parsed {
                    Some((lo, hi)) if lo <= hi => Ok((lo, hi)),
                    _ => Err(source.error(
                        spec.span(),
                        key,
                        format!("`{text}` is not a port or a range like \"49152-65535\""),
                    )),
                }
            }
        })
        .collect()
}
