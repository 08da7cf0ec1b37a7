//! The policy and the example topology built into the binary, used when no file is
//! given: the same files as `rules/exchange.toml` and `rules/topology.toml`, embedded
//! once here.

use std::path::Path;

use super::{Policy, Topology};
use crate::config::ConfigError;

/// Where the built-in policy comes from, as its errors and the summary name it.
pub const POLICY_NAME: &str = "rules/exchange.toml";
/// Where the built-in example topology comes from.
pub const TOPOLOGY_NAME: &str = "rules/topology.toml";

/// The text of the built-in policy (hashed into reports).
pub const POLICY: &str = include_str!("../../rules/exchange.toml");
/// The text of the built-in example topology.
pub const TOPOLOGY: &str = include_str!("../../rules/topology.toml");

/// The Exchange policy.
pub fn policy() -> Result<Policy, ConfigError> {
    Policy::parse(Path::new(POLICY_NAME), POLICY)
}

/// The example organization "contoso".
pub fn topology() -> Result<Topology, ConfigError> {
    Topology::parse(Path::new(TOPOLOGY_NAME), TOPOLOGY)
}
