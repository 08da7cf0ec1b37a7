//! The site's topology file: which addresses hold which Exchange role.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::endpoints;
use super::exceptions::{Exception, RawException};
use super::prefix::{Prefix, PrefixTable};
pub use super::role::{Pack, Role, RoleSet};
use crate::config::{self, ConfigError, Source};
use crate::time::Ts;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    organization: Option<RawOrganization>,
    #[serde(default)]
    roles: RawRoles,
    #[serde(default)]
    edge_subscription: Vec<RawSubscription>,
    open_proxy_detection: Option<RawProxy>,
    #[serde(default)]
    site: Vec<Spanned<RawSite>>,
    #[serde(default)]
    exception: Vec<Spanned<RawException>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    name: Option<String>,
    #[serde(default)]
    restrict_internal_clients: bool,
    exchange_version: Option<Spanned<i64>>,
    #[serde(default)]
    packs: Vec<Spanned<String>>,
}

type Addresses = Vec<Spanned<String>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    #[serde(default)]
    mailbox: Addresses,
    #[serde(default)]
    edge: Addresses,
    #[serde(default)]
    domain_controller: Addresses,
    #[serde(default)]
    skype: Addresses,
    #[serde(default)]
    dns: Addresses,
    #[serde(default)]
    internal_client: Addresses,
    #[serde(default)]
    exchange_online: Addresses,
    #[serde(default)]
    um_gateway: Addresses,
    exchange_online_endpoints: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    edge: Addresses,
    site: Spanned<String>,
    mailbox: Option<Addresses>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    proxy: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: Spanned<String>,
    networks: Addresses,
    restrict_internal_clients: Option<bool>,
}

/// One `[[edge_subscription]]`: Edge servers subscribed to an Active Directory site.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub site: String,
    pub edge: Vec<Prefix>,
    pub mailbox: Vec<Prefix>,
}

/// One `[[site]]`: an Active Directory site, its networks and its own settings.
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    pub networks: Vec<Prefix>,
    /// Overrides `[organization] restrict_internal_clients` for flows of this site.
    pub restrict_internal_clients: Option<bool>,
}

/// Where a listed prefix came from, for lints.
#[derive(Clone, Debug)]
pub struct Listing {
    pub prefix: Prefix,
    pub role: Role,
    pub line: usize,
}

/// How much a lint matters: a warning is repeated by every `analyze`; a notice is
/// shown by `check` only (an ordinary set-up worth knowing once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Notice,
}

/// A validated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    pub name: String,
    /// The file it was read from, for errors found against the policy.
    pub file: PathBuf,
    pub restrict_internal_clients: bool,
    /// `[organization] exchange_version`: 2016 or 2019 (the default).
    pub exchange_version: u16,
    /// The packs turned on, with the line that names each.
    pub packs: Vec<(Pack, usize)>,
    roles: PrefixTable<RoleSet>,
    /// Exchange Online addresses from the endpoints file: indices into `endpoints` of
    /// the records that list the prefix.
    endpoint_addrs: PrefixTable<Vec<usize>>,
    pub endpoints: Vec<endpoints::Record>,
    /// The directed-broadcast address of every listed IPv4 prefix of 30 bits or fewer,
    /// sorted: a frame to one is for the whole subnet.
    broadcasts: Vec<u32>,
    pub listings: Vec<Listing>,
    pub subscriptions: Vec<Subscription>,
    pub subscription_lines: Vec<usize>,
    pub proxies: Vec<SocketAddr>,
    /// SHA-256 of the topology file's text.
    pub sha256: String,
    pub sites: Vec<Site>,
    pub exceptions: Vec<Exception>,
}

impl Topology {
    pub fn load(file: &Path) -> Result<Topology, ConfigError> {
        let text = config::read(file)?;
        Topology::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Topology, ConfigError> {
        let source = Source { file, text };
        let raw: RawTopology = source.parse().map_err(|mut err| {
            // A value TOML itself refuses (a date that does not exist, say): name the
            // key set on that line.
            if err.key.is_empty() {
                let line = err.line.and_then(|n| text.lines().nth(n.checked_sub(1)?));
                err.key = line
                    .and_then(|l| l.split_once('='))
                    .map(|(k, _)| k.trim().to_string())
                    .unwrap_or_default();
            }
            err
        })?;
        let organization = raw.organization;
        let exchange_version = match organization.as_ref().and_then(|o| o.exchange_version.as_ref()) {
            None => 2019,
            Some(v) if matches!(*v.get_ref(), 2016 | 2019) => *v.get_ref() as u16,
            Some(v) => {
                return Err(source.error(
                    v.span(),
                    "organization.exchange_version",
                    format!("`{}` is not a supported Exchange version (2016, 2019)", v.get_ref()),
                ))
            }
        };
        let mut packs = Vec::new();
        for name in organization.as_ref().map_or(&[][..], |o| &o.packs) {
            let pack = Pack::from_name(name.get_ref()).ok_or_else(|| {
                source.error(
                    name.span(),
                    "organization.packs",
                    format!("`{}` is not a pack ({})", name.get_ref(), Pack::ALL.map(Pack::name).join(", ")),
                )
            })?;
            if pack == Pack::UnifiedMessaging && exchange_version != 2016 {
                return Err(source.error(
                    name.span(),
                    "organization.packs",
                    "unified-messaging needs exchange_version = 2016: Exchange 2019 has no Unified Messaging",
                ));
            }
            packs.push((pack, source.line_of(name.span().start)));
        }
        let mut topology = Topology {
            name: organization.as_ref().and_then(|o| o.name.clone()).unwrap_or_default(),
            file: file.to_path_buf(),
            restrict_internal_clients: organization.as_ref().is_some_and(|o| o.restrict_internal_clients),
            exchange_version,
            packs,
            roles: PrefixTable::default(),
            endpoint_addrs: PrefixTable::default(),
            endpoints: Vec::new(),
            broadcasts: Vec::new(),
            listings: Vec::new(),
            subscriptions: Vec::new(),
            subscription_lines: Vec::new(),
            proxies: Vec::new(),
            sha256: crate::config::sha256(text),
            sites: Vec::new(),
            exceptions: Vec::new(),
        };
        let RawRoles {
            mailbox,
            edge,
            domain_controller,
            skype,
            dns,
            internal_client,
            exchange_online,
            um_gateway,
            exchange_online_endpoints,
        } = raw.roles;
        let lists = [
            (Role::Mailbox, mailbox),
            (Role::Edge, edge),
            (Role::DomainController, domain_controller),
            (Role::Skype, skype),
            (Role::Dns, dns),
            (Role::InternalClient, internal_client),
            (Role::ExchangeOnline, exchange_online),
            (Role::UmGateway, um_gateway),
        ];
        let mut sets: HashMap<Prefix, RoleSet> = HashMap::new();
        for (role, list) in lists {
            let key = format!("roles.{}", role.name());
            let mut seen: HashMap<Prefix, &str> = HashMap::new();
            for (item, (prefix, line)) in list.iter().zip(prefixes(&source, &key, &list)?) {
                if let Some(earlier) = seen.insert(prefix, item.get_ref()) {
                    return Err(source.error(
                        item.span(),
                        &key,
                        format!(
                            "`{}` is `{earlier}` again ({prefix}): an address is listed once per role",
                            item.get_ref()
                        ),
                    ));
                }
                topology.add(prefix, role, line, &mut sets);
            }
        }
        if let Some(path) = &exchange_online_endpoints {
            let json = file.parent().unwrap_or(Path::new("")).join(path.get_ref());
            if !json.is_file() {
                return Err(source.error(
                    path.span(),
                    "roles.exchange_online_endpoints",
                    format!("cannot read {} (a path relative to the topology file)", json.display()),
                ));
            }
            topology.endpoints = endpoints::load(&json)?;
            let line = source.line_of(path.span().start);
            let records: Vec<(usize, Prefix)> = topology
                .endpoints
                .iter()
                .enumerate()
                .flat_map(|(i, record)| record.ips.iter().map(move |&prefix| (i, prefix)))
                .collect();
            let mut by_prefix: HashMap<Prefix, Vec<usize>> = HashMap::new();
            for (i, prefix) in records {
                let list = by_prefix.entry(prefix).or_default();
                if list.is_empty() && !sets.get(&prefix).is_some_and(|set| set.contains(Role::ExchangeOnline))
                {
                    topology.add(prefix, Role::ExchangeOnline, line, &mut sets);
                }
                list.push(i);
            }
            for (prefix, list) in by_prefix {
                topology.endpoint_addrs.insert(prefix, list);
            }
        }
        for edge in topology.listings.iter().filter(|l| l.role == Role::Edge) {
            let (prefix, set) = (edge.prefix, sets[&edge.prefix]);
            if set.0 != Role::Edge.bit() {
                let others: Vec<&str> = set.iter().filter(|r| *r != Role::Edge).map(Role::name).collect();
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line: Some(edge.line),
                    key: "roles.edge".into(),
                    message: format!(
                        "Edge Transport server {prefix} also holds {}: an Edge sits in the perimeter, is not domain-joined and holds no other role",
                        others.join(", ")
                    ),
                });
            }
        }
        for (prefix, set) in &sets {
            topology.roles.insert(*prefix, *set);
        }
        for role in [Role::ExchangeOnline, Role::UmGateway] {
            let pack = role.pack().map_or("", Pack::name);
            if let Some(listing) = topology.listings.iter().find(|l| l.role == role) {
                if !topology.has_pack(role.pack()) {
                    return Err(ConfigError {
                        file: file.to_path_buf(),
                        line: Some(listing.line),
                        key: format!("roles.{role}"),
                        message: format!(
                            "the {pack} pack is off: list it in [organization] packs, or remove roles.{role}"
                        ),
                    });
                }
            }
        }
        for &(pack, line) in &topology.packs {
            if !topology.has_role(pack.role()) {
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line: Some(line),
                    key: "organization.packs".into(),
                    message: format!(
                        "pack {} is on but roles.{} is empty{}",
                        pack.name(),
                        pack.role(),
                        if pack == Pack::Hybrid {
                            " (list addresses, or exchange_online_endpoints)"
                        } else {
                            ""
                        }
                    ),
                });
            }
        }
        topology.broadcasts.sort_unstable();
        topology.broadcasts.dedup();
        topology.parse_sites(&source, &raw.site)?;
        for (i, sub) in raw.edge_subscription.iter().enumerate() {
            let key = format!("edge_subscription[{i}]");
            let edge = prefixes(&source, &format!("{key}.edge"), &sub.edge)?;
            let site = topology.sites.iter().find(|s| s.name == *sub.site.get_ref());
            if site.is_none() && (!topology.sites.is_empty() || sub.mailbox.is_none()) {
                let names: Vec<&str> = topology.sites.iter().map(|s| s.name.as_str()).collect();
                return Err(source.error(
                    sub.site.span(),
                    &format!("{key}.site"),
                    format!(
                        "`{}` is not a [[site]] of the topology ({}){}",
                        sub.site.get_ref(),
                        if names.is_empty() { "none is defined".to_string() } else { names.join(", ") },
                        if sub.mailbox.is_none() {
                            ": without a mailbox list, the site must be defined"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            let mailbox: Vec<Prefix> = match (&sub.mailbox, site) {
                (Some(list), _) => {
                    prefixes(&source, &format!("{key}.mailbox"), list)?.into_iter().map(|(p, _)| p).collect()
                }
                (None, Some(site)) => topology
                    .listings
                    .iter()
                    .filter(|l| l.role == Role::Mailbox && site.networks.iter().any(|n| n.covers(&l.prefix)))
                    .map(|l| l.prefix)
                    .collect(),
                (None, None) => Vec::new(),
            };
            topology.subscription_lines.push(edge.first().map_or(0, |(_, line)| *line));
            topology.subscriptions.push(Subscription {
                site: sub.site.get_ref().clone(),
                edge: edge.into_iter().map(|(p, _)| p).collect(),
                mailbox,
            });
        }
        for proxy in raw.open_proxy_detection.map(|p| p.proxy).unwrap_or_default() {
            let addr = proxy.get_ref().parse::<SocketAddr>().map_err(|_| {
                source.error(
                    proxy.span(),
                    "open_proxy_detection.proxy",
                    format!("`{}` is not an address:port (e.g. \"10.10.9.9:3128\")", proxy.get_ref()),
                )
            })?;
            topology.proxies.push(addr);
        }
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (i, spanned) in raw.exception.iter().enumerate() {
            let exception = spanned.get_ref().compile(&source, &format!("exception[{i}]"), spanned.span())?;
            if let Some(line) = ids.insert(exception.id.clone(), exception.line) {
                return Err(source.error(
                    spanned.span(),
                    &format!("exception[{i}].id"),
                    format!("id {:?} is used twice (first on line {line})", exception.id),
                ));
            }
            topology.exceptions.push(exception);
        }
        Ok(topology)
    }

    /// Lists `prefix` (canonical) under `role`.
    fn add(&mut self, prefix: Prefix, role: Role, line: usize, sets: &mut HashMap<Prefix, RoleSet>) {
        sets.entry(prefix).or_default().insert(role);
        self.listings.push(Listing { prefix, role, line });
        if role != Role::ExchangeOnline {
            self.broadcasts.extend(prefix.directed_broadcast());
        }
    }

    fn parse_sites(&mut self, source: &Source<'_>, raw: &[Spanned<RawSite>]) -> Result<(), ConfigError> {
        for (i, spanned) in raw.iter().enumerate() {
            let site = spanned.get_ref();
            let key = format!("site[{i}]");
            if self.sites.iter().any(|s| s.name == *site.name.get_ref()) {
                return Err(source.error(
                    site.name.span(),
                    &format!("{key}.name"),
                    format!("site {:?} is defined twice", site.name.get_ref()),
                ));
            }
            let networks = prefixes(source, &format!("{key}.networks"), &site.networks)?;
            for (item, (prefix, _)) in site.networks.iter().zip(&networks) {
                let other = self
                    .sites
                    .iter()
                    .find_map(|s| s.networks.iter().find(|n| n.overlaps(prefix)).map(|n| (s, n)));
                if let Some((other, network)) = other {
                    return Err(source.error(
                        item.span(),
                        &format!("{key}.networks"),
                        format!(
                            "{prefix} shares addresses with {network} of site {:?}: an address belongs to one site",
                            other.name
                        ),
                    ));
                }
            }
            self.sites.push(Site {
                name: site.name.get_ref().clone(),
                networks: networks.into_iter().map(|(p, _)| p).collect(),
                restrict_internal_clients: site.restrict_internal_clients,
            });
        }
        Ok(())
    }

    /// Errors for exceptions naming a rule or evidence id that policy `policy` (whose
    /// rule and evidence ids `known` says) does not have.
    pub fn check_exceptions(&self, policy: &str, known: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        for (i, e) in self.exceptions.iter().enumerate() {
            if e.rule != "*" && !known(&e.rule) {
                return Err(ConfigError {
                    file: self.file.clone(),
                    line: Some(e.rule_line),
                    key: format!("exception[{i}].rule"),
                    message: format!(
                        "`{}` is not a rule or evidence id of policy {policy:?} (or \"*\" for any)",
                        e.rule
                    ),
                });
            }
        }
        Ok(())
    }

    /// The roles of an address: `Local` for what never leaves the segment, else those
    /// of the most specific listed prefix, else `External`. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is looked up as the IPv4 address. Exchange Online addresses
    /// are `external` too: every rule that does not name them judges them as such.
    pub fn roles_of(&self, addr: IpAddr) -> RoleSet {
        let addr = addr.to_canonical();
        if self.is_local(addr) {
            return RoleSet::of(Role::Local);
        }
        match self.roles.lookup(addr) {
            Some(&set) if set.contains(Role::ExchangeOnline) => RoleSet(set.0 | Role::External.bit()),
            Some(&set) => set,
            None => RoleSet::of(Role::External),
        }
    }

    /// The first of an address's roles ([`Topology::roles_of`]).
    pub fn role_of(&self, addr: IpAddr) -> Role {
        self.roles_of(addr).first().unwrap_or(Role::External)
    }

    /// The endpoints-file record an Exchange Online address comes from.
    /// Of several records listing it, the first whose ports name `(proto, port)`.
    pub fn endpoint_record(&self, addr: IpAddr, (proto, port): (u8, u16)) -> Option<&endpoints::Record> {
        let records: Vec<&endpoints::Record> = self
            .endpoint_addrs
            .lookup(addr.to_canonical())?
            .iter()
            .filter_map(|&i| self.endpoints.get(i))
            .collect();
        records.iter().find(|r| r.names_port(proto, port)).or(records.first()).copied()
    }

    /// `restrict_internal_clients` for a flow whose Exchange endpoint is `addr`: its
    /// site's setting, else the organization's.
    pub fn restrict_internal_clients_at(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.sites
            .iter()
            .find(|s| s.networks.iter().any(|n| n.contains(addr)))
            .and_then(|s| s.restrict_internal_clients)
            .unwrap_or(self.restrict_internal_clients)
    }

    /// Whether the pack is on (`None`: a role of no pack, always allowed).
    pub fn has_pack(&self, pack: Option<Pack>) -> bool {
        pack.is_none_or(|pack| self.packs.iter().any(|(p, _)| *p == pack))
    }

    /// Link-local, multicast and broadcast addresses, limited and directed (of a listed
    /// prefix). Unspecified addresses (a DHCP client before it has one) too.
    fn is_local(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => {
                v4.is_link_local()
                    || v4.is_multicast()
                    || v4.is_broadcast()
                    || v4.is_unspecified()
                    || self.broadcasts.binary_search(&u32::from(v4)).is_ok()
            }
            IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.is_multicast() || v6.is_unspecified(),
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.listings.iter().any(|l| l.role == role)
    }

    /// Whether some `[[edge_subscription]]` holds both this Edge and this Mailbox server.
    pub fn same_subscription(&self, edge: IpAddr, mailbox: IpAddr) -> bool {
        let (edge, mailbox) = (edge.to_canonical(), mailbox.to_canonical());
        self.subscriptions
            .iter()
            .any(|s| s.edge.iter().any(|p| p.contains(edge)) && s.mailbox.iter().any(|p| p.contains(mailbox)))
    }

    pub fn is_proxy(&self, addr: IpAddr, port: u16) -> bool {
        let addr = addr.to_canonical();
        self.proxies.iter().any(|p| p.ip().to_canonical() == addr && p.port() == port)
    }

    /// Topologies the seed calls unsupported or pointless. Each lint is `(line, text)`.
    pub fn lint(&self) -> Vec<(usize, String)> {
        let mut lints = Vec::new();
        for edge in self.listings.iter().filter(|l| l.role == Role::Edge) {
            let subscribed =
                self.subscriptions.iter().any(|s| s.edge.iter().any(|p| p.overlaps(&edge.prefix)));
            if !subscribed {
                lints.push((
                    edge.line,
                    format!(
                        "Edge Transport server {} has no [[edge_subscription]]: mail cannot flow through an unsubscribed Edge",
                        edge.prefix
                    ),
                ));
            }
        }
        for (i, (sub, &line)) in self.subscriptions.iter().zip(&self.subscription_lines).enumerate() {
            if sub.mailbox.is_empty() {
                lints.push((
                    line,
                    format!("edge_subscription for site {:?} lists no Mailbox server: its Edge has no site to send mail to", sub.site),
                ));
            }
            for earlier in &self.subscriptions[..i] {
                for prefix in sub.mailbox.iter().filter(|p| earlier.mailbox.iter().any(|q| q.overlaps(p))) {
                    lints.push((
                        line,
                        format!(
                            "Mailbox server {prefix} is in two edge subscriptions, sites {:?} and {:?}: a Mailbox server belongs to one Active Directory site",
                            earlier.site, sub.site
                        ),
                    ));
                }
            }
            for (prefixes, role) in [(&sub.edge, Role::Edge), (&sub.mailbox, Role::Mailbox)] {
                for prefix in prefixes {
                    let listed = self.listings.iter().any(|l| l.role == role && l.prefix.overlaps(prefix));
                    if !listed {
                        lints.push((
                            line,
                            format!("edge_subscription for site {:?} names {prefix}, which roles.{role} does not list", sub.site),
                        ));
                    }
                }
            }
        }
        lints.sort();
        lints
    }

    /// What `check` shows once and `analyze` does not repeat: a host inside a wider
    /// prefix of another role (the more specific prefix wins, which is ordinary).
    /// Each notice is `(line, text)`.
    pub fn notices(&self) -> Vec<(usize, String)> {
        let mut notices = Vec::new();
        for (i, a) in self.listings.iter().enumerate() {
            for b in &self.listings[i + 1..] {
                if a.role == b.role || a.prefix == b.prefix || !a.prefix.overlaps(&b.prefix) {
                    continue;
                }
                let (wide, narrow) =
                    if a.prefix.prefix_len() <= b.prefix.prefix_len() { (a, b) } else { (b, a) };
                notices.push((
                    narrow.line,
                    format!(
                        "{} ({}) lies inside {} ({}): the more specific prefix wins, so it holds {} only",
                        narrow.prefix, narrow.role, wide.prefix, wide.role, narrow.role
                    ),
                ));
            }
        }
        notices.sort();
        notices.dedup();
        notices
    }

    /// Exceptions that expire within 30 days of `now` (Unix seconds, wall clock), or
    /// have expired: `(line, text)`.
    pub fn expiring(&self, now_secs: u64) -> Vec<(usize, String)> {
        let soon = Ts::from_secs(now_secs.saturating_add(30 * 86_400));
        self.exceptions
            .iter()
            .filter(|e| e.end <= soon)
            .map(|e| {
                let when = if e.end <= Ts::from_secs(now_secs) { "expired" } else { "expires" };
                (e.line, format!("exception {:?} (owner {}) {when} on {}", e.id, e.owner, e.expires))
            })
            .collect()
    }
}

/// The prefixes of a list, canonical (an IPv4-mapped address as IPv4), with their lines.
fn prefixes(source: &Source<'_>, key: &str, list: &Addresses) -> Result<Vec<(Prefix, usize)>, ConfigError> {
    list.iter()
        .map(|item| {
            let prefix = item
                .get_ref()
                .parse::<Prefix>()
                .map(Prefix::canonical)
                .map_err(|msg| source.error(item.span(), key, msg))?;
            Ok((prefix, source.line_of(item.span().start)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
[organization]
name = "contoso"
restrict_internal_clients = false

[roles]
mailbox           = ["10.10.1.11", "10.10.1.12", "10.10.2.11", "2001:db8:10::11"]
edge              = ["172.16.0.25"]
domain_controller = ["10.10.0.5", "10.10.0.6"]
skype             = ["10.10.3.20"]
dns               = ["10.10.0.53"]
internal_client   = ["10.20.0.0/16"]

[[edge_subscription]]
edge    = ["172.16.0.25"]
site    = "HQ"
mailbox = ["10.10.1.11", "10.10.1.12"]

[open_proxy_detection]
proxy = ["10.10.9.9:3128"]
"#;

    fn parse(text: &str) -> Result<Topology, ConfigError> {
        Topology::parse(Path::new("site.toml"), text)
    }

    #[test]
    fn parses_the_spec_example() {
        let t = parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(t.role_of("10.10.1.11".parse().unwrap()), Role::Mailbox);
        assert_eq!(t.role_of("2001:db8:10::11".parse().unwrap()), Role::Mailbox);
        assert_eq!(t.role_of("10.20.7.7".parse().unwrap()), Role::InternalClient);
        assert_eq!(t.role_of("8.8.8.8".parse().unwrap()), Role::External);
        assert!(t.same_subscription("172.16.0.25".parse().unwrap(), "10.10.1.12".parse().unwrap()));
        assert!(!t.same_subscription("172.16.0.25".parse().unwrap(), "10.10.2.11".parse().unwrap()));
        assert!(t.is_proxy("10.10.9.9".parse().unwrap(), 3128));
        assert!(t.lint().is_empty(), "{:?}", t.lint());
    }

    #[test]
    fn local_addresses_come_before_the_listed_roles_and_mapped_addresses_are_ipv4() {
        let t = parse(SPEC_EXAMPLE).unwrap();
        let role = |text: &str| t.role_of(text.parse().unwrap());
        for local in [
            "224.0.0.252",
            "239.255.255.250",
            "255.255.255.255",
            "169.254.10.1",
            "0.0.0.0",
            "10.20.255.255", // the directed broadcast of internal_client 10.20.0.0/16
            "fe80::1",
            "ff02::1:ff00:1",
            "::ffff:224.0.0.251",
        ] {
            assert_eq!(role(local), Role::Local, "{local}");
        }
        assert_eq!(role("::ffff:10.10.1.11"), Role::Mailbox);
        assert_eq!(role("::ffff:10.20.0.9"), Role::InternalClient);
        assert_eq!(role("10.10.1.255"), Role::External, "no listed prefix has it as broadcast");
        assert!(t.same_subscription("::ffff:172.16.0.25".parse().unwrap(), "10.10.1.12".parse().unwrap()));
        // A listed link-local address is local all the same.
        let listed = parse(&SPEC_EXAMPLE.replace("\"2001:db8:10::11\"", "\"fe80::11\"")).unwrap();
        assert_eq!(listed.role_of("fe80::11".parse().unwrap()), Role::Local);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = SPEC_EXAMPLE.replace("\"10.10.0.6\"", "\"10.10.0.600\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(9));
        assert_eq!(err.key, "roles.domain_controller");
        assert!(err.to_string().starts_with("site.toml:9: roles.domain_controller: `10.10.0.600`"), "{err}");

        let err = parse(&SPEC_EXAMPLE.replace("skype ", "lync ")).unwrap_err();
        assert_eq!(err.line, Some(10));
        assert!(err.message.contains("unknown field `lync`"), "{err}");

        let err = parse(&SPEC_EXAMPLE.replace("10.10.9.9:3128", "10.10.9.9")).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (Some(20), "open_proxy_detection.proxy"));
    }

    #[test]
    fn lints_unsupported_topologies_and_notices_nested_hosts_once() {
        let text = SPEC_EXAMPLE
            .replace("edge              = [\"172.16.0.25\"]", "edge = [\"172.16.0.25\", \"172.16.0.26\"]")
            .replace("skype             = [\"10.10.3.20\"]", "skype = [\"10.10.1.12\"]")
            .replace("internal_client   = [\"10.20.0.0/16\"]", "internal_client = [\"10.10.0.0/16\"]");
        let t = parse(&text).unwrap();
        let lints = t.lint();
        assert_eq!(lints.len(), 1, "{lints:?}");
        assert!(lints[0].1.contains("172.16.0.26/32 has no [[edge_subscription]]"), "{lints:?}");
        let notices = t.notices();
        assert!(
            notices.iter().any(|(_, n)| n
                == "10.10.1.11/32 (mailbox) lies inside 10.10.0.0/16 (internal_client): the more specific prefix wins, so it holds mailbox only"),
            "{notices:?}"
        );
        let roles = t.roles_of("10.10.1.12".parse().unwrap());
        assert!(roles.contains(Role::Mailbox) && roles.contains(Role::Skype), "{roles:?}");
        assert!(!roles.contains(Role::InternalClient));
    }

    #[test]
    fn a_domain_controller_that_serves_dns_holds_both_roles() {
        let text = SPEC_EXAMPLE
            .replace("dns               = [\"10.10.0.53\"]", "dns = [\"10.10.0.5\", \"::ffff:10.10.0.6\"]");
        let t = parse(&text).unwrap();
        for dc in ["10.10.0.5", "10.10.0.6", "::ffff:10.10.0.5"] {
            let roles = t.roles_of(dc.parse().unwrap());
            assert_eq!(roles.iter().collect::<Vec<_>>(), [Role::DomainController, Role::Dns], "{dc}");
        }
        assert!(t.notices().is_empty() && t.lint().is_empty());
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn roles_that_cannot_be_are_errors_naming_file_line_and_key() {
        let text = SPEC_EXAMPLE.replace("skype             = [\"10.10.3.20\"]", "skype = [\"172.16.0.25\"]");
        assert_eq!(
            error_of(&text),
            "site.toml:8: roles.edge: Edge Transport server 172.16.0.25/32 also holds skype: an Edge sits in the perimeter, is not domain-joined and holds no other role"
        );
        let text =
            SPEC_EXAMPLE.replace("\"10.10.1.12\", \"10.10.2.11\"", "\"10.10.1.12\", \"::ffff:10.10.1.11\"");
        assert_eq!(
            error_of(&text),
            "site.toml:7: roles.mailbox: `::ffff:10.10.1.11` is `10.10.1.11` again (10.10.1.11/32): an address is listed once per role"
        );
    }

    const ORG: &str = "[organization]\nname = \"fabrikam\"\n";

    #[test]
    fn packs_need_their_role_and_roles_their_pack() {
        let roles = "[roles]\nmailbox = [\"10.1.10.11\"]\n";
        let cases = [
            ("packs = [\"voicemail\"]\n", "", "site.toml:3: organization.packs: `voicemail` is not a pack (hybrid, unified-messaging)"),
            (
                "packs = [\"unified-messaging\"]\n",
                "um_gateway = [\"10.1.50.5\"]\n",
                "site.toml:3: organization.packs: unified-messaging needs exchange_version = 2016: Exchange 2019 has no Unified Messaging",
            ),
            (
                "exchange_version = 2016\npacks = [\"unified-messaging\"]\n",
                "",
                "site.toml:4: organization.packs: pack unified-messaging is on but roles.um_gateway is empty",
            ),
            (
                "",
                "exchange_online = [\"40.92.0.0/15\"]\n",
                "site.toml:5: roles.exchange_online: the hybrid pack is off: list it in [organization] packs, or remove roles.exchange_online",
            ),
            ("exchange_version = 2013\n", "", "site.toml:3: organization.exchange_version: `2013` is not a supported Exchange version (2016, 2019)"),
        ];
        for (org, role, want) in cases {
            assert_eq!(error_of(&format!("{ORG}{org}{roles}{role}")), want);
        }
        let ok = format!("{ORG}exchange_version = 2016\npacks = [\"unified-messaging\", \"hybrid\"]\n{roles}um_gateway = [\"10.1.50.5\"]\nexchange_online = [\"40.92.0.0/15\"]\n");
        let t = parse(&ok).unwrap();
        assert_eq!(t.role_of("10.1.50.5".parse().unwrap()), Role::UmGateway);
        let online = t.roles_of("40.93.1.1".parse().unwrap());
        assert!(online.contains(Role::ExchangeOnline) && online.contains(Role::External), "{online:?}");
    }

    #[test]
    fn sites_group_addresses_and_name_subscriptions() {
        let text = format!(
            "{ORG}restrict_internal_clients = false\n[roles]\nmailbox = [\"10.1.10.11\", \"10.1.10.12\", \"10.2.10.11\"]\nedge = [\"172.16.0.25\"]\n\
             [[site]]\nname = \"HQ\"\nnetworks = [\"10.1.0.0/16\"]\nrestrict_internal_clients = true\n\
             [[site]]\nname = \"Branch\"\nnetworks = [\"10.2.0.0/16\"]\n\
             [[edge_subscription]]\nedge = [\"172.16.0.25\"]\nsite = \"HQ\"\n"
        );
        let t = parse(&text).unwrap();
        assert_eq!(
            t.subscriptions[0].mailbox,
            ["10.1.10.11".parse().unwrap(), "10.1.10.12".parse().unwrap()]
        );
        assert!(t.restrict_internal_clients_at("10.1.10.11".parse().unwrap()));
        assert!(!t.restrict_internal_clients_at("10.2.10.11".parse().unwrap()));
        assert!(!t.restrict_internal_clients_at("10.9.0.1".parse().unwrap()));
        assert_eq!(
            error_of(&text.replace("10.2.0.0/16", "10.1.128.0/17")),
            "site.toml:13: site[1].networks: 10.1.128.0/17 shares addresses with 10.1.0.0/16 of site \"HQ\": an address belongs to one site"
        );
        assert_eq!(
            error_of(&text.replace("site = \"HQ\"", "site = \"Paris\"")),
            "site.toml:16: edge_subscription[0].site: `Paris` is not a [[site]] of the topology (HQ, Branch): without a mailbox list, the site must be defined"
        );
    }

    #[test]
    fn exceptions_need_every_field_and_a_date() {
        let base = format!(
            "{ORG}[roles]\nmailbox = [\"10.1.10.11\"]\n[[exception]]\nid = \"CHG-4711\"\nrule = \"external-to-mailbox\"\nfrom = [\"10.1.128.20\"]\nto = [\"mailbox\"]\nports = [\"tcp/3389\"]\nowner = \"secops@contoso.example\"\nreason = \"jump host\"\nexpires = 2027-03-31\n"
        );
        let t = parse(&base).unwrap();
        assert_eq!(t.exceptions[0].expires, "2027-03-31");
        let cases = [
            ("expires = 2027-03-31", "expires = \"2027-03-31\"", "site.toml:13: exception[0].expires: `\"2027-03-31\"` is not a TOML date: write it unquoted, like 2027-03-31"),
            ("owner = \"secops@contoso.example\"\n", "", "site.toml:5: exception[0].owner: missing: every exception needs id, rule, owner, reason and expires (owner is not set)"),
            ("tcp/3389", "rdp/3389", "site.toml:10: exception[0].ports: `rdp/3389` is not proto/port or proto/lo-hi (tcp/3389, udp/1024-65535)"),
            ("10.1.128.20", "jumphost", "site.toml:8: exception[0].from: `jumphost` is neither an address or prefix nor a role (mailbox, edge, domain_controller, skype, dns, internal_client, exchange_online, um_gateway, external, local)"),
        ];
        for (from, to, want) in cases {
            assert_eq!(error_of(&base.replacen(from, to, 1)), want);
        }
        let policy = crate::policy::builtin::policy().unwrap();
        let known = |id: &str| policy.rules.iter().any(|r| r.id == id);
        let unknown = parse(&base.replace("external-to-mailbox", "rdp")).unwrap();
        assert_eq!(
            unknown.check_exceptions(&policy.name, known).unwrap_err().to_string(),
            "site.toml:7: exception[0].rule: `rdp` is not a rule or evidence id of policy \"exchange-2016-2019\" (or \"*\" for any)"
        );
        assert!(t.check_exceptions(&policy.name, known).is_ok());
        // 2027-03-05, wall clock: expires within 30 days.
        assert_eq!(t.expiring(1_804_204_800).len(), 1);
        assert!(t.expiring(1_790_000_000).is_empty());
    }

    #[test]
    fn lints_subscriptions_without_or_sharing_mailbox_servers() {
        let text = format!(
            "{SPEC_EXAMPLE}\n[[edge_subscription]]\nedge = [\"172.16.0.25\"]\nsite = \"Branch\"\nmailbox = [\"10.10.1.12\"]\n\n[[edge_subscription]]\nedge = [\"172.16.0.25\"]\nsite = \"Empty\"\nmailbox = []\n"
        );
        let lints = parse(&text).unwrap().lint();
        let text_of = |needle: &str| lints.iter().any(|(_, l)| l.contains(needle));
        assert!(
            text_of("Mailbox server 10.10.1.12/32 is in two edge subscriptions, sites \"HQ\" and \"Branch\""),
            "{lints:?}"
        );
        assert!(text_of("site \"Empty\" lists no Mailbox server"), "{lints:?}");
        assert_eq!(lints.len(), 2, "{lints:?}");
    }
}
