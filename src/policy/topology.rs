//! The site's topology file: which addresses hold which Exchange role.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::prefix::{Prefix, PrefixTable};
use crate::config::{self, ConfigError, Source};

/// The role of an address. Anything the topology does not list is `External`, except
/// what never leaves the segment, which is `Local` whatever the topology says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Mailbox,
    Edge,
    DomainController,
    Skype,
    Dns,
    InternalClient,
    External,
    /// Built in, tried before the topology's roles: link-local, multicast and broadcast
    /// addresses (and, for a flow, frames to a group MAC address and the segment's own
    /// control traffic: IGMP, neighbour discovery, MLD).
    Local,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Mailbox,
        Role::Edge,
        Role::DomainController,
        Role::Skype,
        Role::Dns,
        Role::InternalClient,
        Role::External,
        Role::Local,
    ];

    /// The name used in topology and policy files and in events.
    pub fn name(self) -> &'static str {
        match self {
            Role::Mailbox => "mailbox",
            Role::Edge => "edge",
            Role::DomainController => "domain_controller",
            Role::Skype => "skype",
            Role::Dns => "dns",
            Role::InternalClient => "internal_client",
            Role::External => "external",
            Role::Local => "local",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    organization: Option<RawOrganization>,
    #[serde(default)]
    roles: RawRoles,
    #[serde(default)]
    edge_subscription: Vec<RawSubscription>,
    open_proxy_detection: Option<RawProxy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    name: Option<String>,
    #[serde(default)]
    restrict_internal_clients: bool,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    edge: Addresses,
    site: String,
    mailbox: Addresses,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    proxy: Vec<Spanned<String>>,
}

/// One `[[edge_subscription]]`: Edge servers subscribed to an Active Directory site.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub site: String,
    pub edge: Vec<Prefix>,
    pub mailbox: Vec<Prefix>,
}

/// Where a listed prefix came from, for lints.
#[derive(Clone, Debug)]
pub struct Listing {
    pub prefix: Prefix,
    pub role: Role,
    pub line: usize,
}

/// A validated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    pub name: String,
    pub restrict_internal_clients: bool,
    roles: PrefixTable<Role>,
    /// The directed-broadcast address of every listed IPv4 prefix of 30 bits or fewer,
    /// sorted: a frame to one is for the whole subnet.
    broadcasts: Vec<u32>,
    pub listings: Vec<Listing>,
    pub subscriptions: Vec<Subscription>,
    pub subscription_lines: Vec<usize>,
    pub proxies: Vec<SocketAddr>,
    /// SHA-256 of the topology file's text.
    pub sha256: String,
}

impl Topology {
    pub fn load(file: &Path) -> Result<Topology, ConfigError> {
        let text = config::read(file)?;
        Topology::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Topology, ConfigError> {
        let source = Source { file, text };
        let raw: RawTopology = source.parse()?;
        let organization = raw.organization;
        let mut topology = Topology {
            name: organization.as_ref().and_then(|o| o.name.clone()).unwrap_or_default(),
            restrict_internal_clients: organization.is_some_and(|o| o.restrict_internal_clients),
            roles: PrefixTable::default(),
            broadcasts: Vec::new(),
            listings: Vec::new(),
            subscriptions: Vec::new(),
            subscription_lines: Vec::new(),
            proxies: Vec::new(),
            sha256: crate::config::sha256(text),
        };
        let RawRoles { mailbox, edge, domain_controller, skype, dns, internal_client } = raw.roles;
        let lists = [
            (Role::Mailbox, mailbox),
            (Role::Edge, edge),
            (Role::DomainController, domain_controller),
            (Role::Skype, skype),
            (Role::Dns, dns),
            (Role::InternalClient, internal_client),
        ];
        for (role, list) in lists {
            let key = format!("roles.{}", role.name());
            for (prefix, line) in prefixes(&source, &key, &list)? {
                topology.roles.insert(prefix, role);
                topology.listings.push(Listing { prefix, role, line });
                topology.broadcasts.extend(prefix.directed_broadcast());
            }
        }
        topology.broadcasts.sort_unstable();
        topology.broadcasts.dedup();
        for (i, sub) in raw.edge_subscription.iter().enumerate() {
            let key = format!("edge_subscription[{i}]");
            let edge = prefixes(&source, &format!("{key}.edge"), &sub.edge)?;
            let mailbox = prefixes(&source, &format!("{key}.mailbox"), &sub.mailbox)?;
            topology.subscription_lines.push(edge.first().map_or(0, |(_, line)| *line));
            topology.subscriptions.push(Subscription {
                site: sub.site.clone(),
                edge: edge.into_iter().map(|(p, _)| p).collect(),
                mailbox: mailbox.into_iter().map(|(p, _)| p).collect(),
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
        Ok(topology)
    }

    /// The role of an address: `Local` for what never leaves the segment, else the most
    /// specific listed prefix, else `External`. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is looked up as the IPv4 address.
    pub fn role_of(&self, addr: IpAddr) -> Role {
        let addr = addr.to_canonical();
        if self.is_local(addr) {
            return Role::Local;
        }
        self.roles.lookup(addr).copied().unwrap_or(Role::External)
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
        for (i, a) in self.listings.iter().enumerate() {
            for b in &self.listings[i + 1..] {
                if a.role == b.role || !a.prefix.overlaps(&b.prefix) {
                    continue;
                }
                let message = if a.prefix == b.prefix {
                    format!(
                        "{} is listed in two roles, {} and {}: the first listing wins",
                        a.prefix, a.role, b.role
                    )
                } else {
                    let (wide, narrow) =
                        if a.prefix.prefix_len() <= b.prefix.prefix_len() { (a, b) } else { (b, a) };
                    format!(
                        "roles overlap: {} ({}) lies inside {} ({}); the more specific prefix wins",
                        narrow.prefix, narrow.role, wide.prefix, wide.role
                    )
                };
                lints.push((b.line, message));
            }
        }
        lints.sort();
        lints
    }
}

fn prefixes(source: &Source<'_>, key: &str, list: &Addresses) -> Result<Vec<(Prefix, usize)>, ConfigError> {
    list.iter()
        .map(|item| {
            let prefix =
                item.get_ref().parse::<Prefix>().map_err(|msg| source.error(item.span(), key, msg))?;
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
    fn lints_unsupported_topologies() {
        let text = SPEC_EXAMPLE
            .replace("edge              = [\"172.16.0.25\"]", "edge = [\"172.16.0.25\", \"172.16.0.26\"]")
            .replace("skype             = [\"10.10.3.20\"]", "skype = [\"10.10.1.12\"]")
            .replace("internal_client   = [\"10.20.0.0/16\"]", "internal_client = [\"10.10.0.0/16\"]");
        let lints = parse(&text).unwrap().lint();
        let text_of = |needle: &str| lints.iter().any(|(_, l)| l.contains(needle));
        assert!(text_of("172.16.0.26/32 has no [[edge_subscription]]"), "{lints:?}");
        assert!(text_of("10.10.1.12/32 is listed in two roles, mailbox and skype"), "{lints:?}");
        assert!(
            text_of("roles overlap: 10.10.1.11/32 (mailbox) lies inside 10.10.0.0/16 (internal_client)"),
            "{lints:?}"
        );
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
