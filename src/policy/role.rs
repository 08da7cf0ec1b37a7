//! Roles: what an address is in the organization, alone or several at once, and the
//! packs whose rules name the roles of the article's linked topics.

use std::fmt;

/// The role of an address. Anything the topology does not list is `External`, except
/// what never leaves the segment, which is `Local` whatever the topology says. An
/// address may hold several roles ([`RoleSet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Mailbox,
    Edge,
    DomainController,
    Skype,
    Dns,
    InternalClient,
    /// Microsoft's Exchange Online (the `hybrid` pack): judged as `external` by every
    /// rule that does not name it.
    ExchangeOnline,
    /// VoIP gateways, IP PBXs and session border controllers (the `unified-messaging`
    /// pack).
    UmGateway,
    External,
    /// Built in, tried before the topology's roles: link-local, multicast and broadcast
    /// addresses (and, for a flow, frames to a group MAC address and the segment's own
    /// control traffic: IGMP, neighbour discovery, MLD, DHCP between ports 67 and 68).
    Local,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Mailbox,
        Role::Edge,
        Role::DomainController,
        Role::Skype,
        Role::Dns,
        Role::InternalClient,
        Role::ExchangeOnline,
        Role::UmGateway,
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
            Role::ExchangeOnline => "exchange_online",
            Role::UmGateway => "um_gateway",
            Role::External => "external",
            Role::Local => "local",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The pack that must be on for the topology to list this role.
    pub fn pack(self) -> Option<Pack> {
        match self {
            Role::ExchangeOnline => Some(Pack::Hybrid),
            Role::UmGateway => Some(Pack::UnifiedMessaging),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The roles one address holds (bits of [`Role::bit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(pub u16);

impl RoleSet {
    pub fn of(role: Role) -> RoleSet {
        RoleSet(role.bit())
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    /// The roles of the set that a rule's role mask names.
    pub fn within(self, mask: u16) -> RoleSet {
        RoleSet(self.0 & mask)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles, in [`Role::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |role| self.contains(*role))
    }

    /// The first role in [`Role::ALL`] order.
    pub fn first(self) -> Option<Role> {
        self.iter().next()
    }
}

/// A policy pack of the article's linked topics (`rules/packs/`), turned on by the
/// topology's `[organization] packs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pack {
    Hybrid,
    UnifiedMessaging,
}

impl Pack {
    pub const ALL: [Pack; 2] = [Pack::Hybrid, Pack::UnifiedMessaging];

    pub fn name(self) -> &'static str {
        match self {
            Pack::Hybrid => "hybrid",
            Pack::UnifiedMessaging => "unified-messaging",
        }
    }

    pub fn from_name(name: &str) -> Option<Pack> {
        Pack::ALL.into_iter().find(|pack| pack.name() == name)
    }

    /// The role the pack's rules are about.
    pub fn role(self) -> Role {
        match self {
            Pack::Hybrid => Role::ExchangeOnline,
            Pack::UnifiedMessaging => Role::UmGateway,
        }
    }
}
