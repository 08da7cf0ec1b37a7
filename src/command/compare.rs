//! `exwatch compare`: two captures of the same traffic, taken at two points, matched
//! handshake by handshake.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Config, Error, Outcome};
use crate::capture::Savefile;
use crate::compare::Order;
use crate::policy::{Engine, EvidenceKind};

/// Everything `compare` needs, validated.
pub struct Settings {
    pub config: Config,
    /// The two captures; which is nearer a sender follows, per host pair, from the TTLs.
    pub first: PathBuf,
    pub second: PathBuf,
    pub eve_log: PathBuf,
}

pub fn run(settings: &Settings) -> Result<Outcome, Error> {
    let config = &settings.config;
    let engine = Engine::new(Arc::clone(&config.policy), Arc::clone(&config.topology), 0);
    let open = |path: &std::path::Path| Savefile::open(path).map_err(|e| e.to_string());
    let (mut first, mut second) = (open(&settings.first)?, open(&settings.second)?);
    let outcome = crate::compare::compare(&engine, &mut first, &mut second).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for event in &outcome.findings {
        crate::output::eve::write_event(&mut out, &engine, event);
    }
    super::write_out(&settings.eve_log, &out)?;
    let c = &outcome.counts;
    eprintln!(
        "exwatch compare: {} handshake packets in the first capture, {} in the second, {} seen in both, {} altered, {} on traffic that must never be altered; {} SYNs seen at the capture point nearer their sender never reached the other, {} between hosts that must never be restricted{}",
        c.first_handshakes,
        c.second_handshakes,
        c.matched,
        c.altered,
        outcome.evidence_count(&engine, EvidenceKind::OptionsAltered),
        c.missing,
        outcome.evidence_count(&engine, EvidenceKind::SynDropped),
        if c.untracked > 0 { format!(" ({} not compared: table full)", c.untracked) } else { String::new() }
    );
    match outcome.order {
        Order::LooksSwapped => eprintln!(
            "exwatch compare: the order looks swapped: in every direction the SYNs had more hops left at the second capture point than at the first, so the second is nearer the senders; each handshake was judged in its own direction all the same"
        ),
        Order::BothWays => eprintln!(
            "exwatch compare: handshakes crossed the capture points both ways; each was judged in its own direction"
        ),
        Order::AsGiven | Order::Unknown => {}
    }
    Ok(Outcome::found(!outcome.findings.is_empty()))
}
