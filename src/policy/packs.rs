//! Policy packs: the rules of the article's linked topics ("Hybrid deployment protocols,
//! ports, and endpoints"; "UM protocols, ports, and services"), shipped as policy files
//! in `rules/packs/` and built in. A pack is on only when the topology's
//! `[organization] packs` names it; its rules then go into the policy before the rule
//! its header names (`insert_before`), so they are tried before the ground rules that
//! would judge the same hosts as external.

use std::path::Path;

use super::rules::Policy;
use super::topology::{Pack, Topology};
use crate::config::ConfigError;

/// Where a pack's built-in file comes from, as its errors name it, and its text.
pub fn source(pack: Pack) -> (&'static str, &'static str) {
    match pack {
        Pack::Hybrid => ("rules/packs/hybrid.toml", include_str!("../../rules/packs/hybrid.toml")),
        Pack::UnifiedMessaging => {
            ("rules/packs/unified-messaging.toml", include_str!("../../rules/packs/unified-messaging.toml"))
        }
    }
}

/// The pack's rules, parsed.
pub fn load(pack: Pack) -> Result<Policy, ConfigError> {
    let (name, text) = source(pack);
    Policy::parse(Path::new(name), text)
}

/// `policy` with the rules of every pack the topology turns on.
pub fn apply(mut policy: Policy, topology: &Topology) -> Result<Policy, ConfigError> {
    for &(pack, _) in &topology.packs {
        let rules = load(pack)?;
        let file = Path::new(source(pack).0);
        let error = |key: &str, message: String| ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: key.to_string(),
            message,
        };
        let Some(before) = rules.insert_before.as_deref() else {
            return Err(error("policy.insert_before", "a pack names the rule its rules go before".into()));
        };
        let Some(at) = policy.rules.iter().position(|r| r.id == before) else {
            return Err(error(
                "policy.insert_before",
                format!("policy {:?} has no rule {before:?} for this pack's rules to go before", policy.name),
            ));
        };
        for rule in &rules.rules {
            let clash = policy
                .rules
                .iter()
                .map(|r| (&r.id, r.sid))
                .chain(policy.evidence.iter().map(|e| (&e.id, e.sid)));
            if let Some((id, sid)) = clash.into_iter().find(|(id, sid)| **id == rule.id || *sid == rule.sid) {
                return Err(error(
                    &format!("rule {:?}", rule.id),
                    format!(
                        "id {:?} / sid {} is already policy {:?}'s rule {id:?} (sid {sid})",
                        rule.id, rule.sid, policy.name
                    ),
                ));
            }
        }
        policy.rules.splice(at..at, rules.rules);
    }
    policy.name_ports();
    Ok(policy)
}
