//! `exwatch generate`: a synthetic capture, of the example organization, of a site's
//! topology, or of a busy SPAN port, for demos, `learn` and benchmarks.

use std::io::Write;
use std::path::PathBuf;

use super::{Error, Outcome};
use crate::policy::Topology;
use crate::testkit::synth::{self, pool, wire::PcapWriter};

/// Everything `generate` needs.
pub struct Settings {
    pub out: PathBuf,
    pub packets: u64,
    pub seed: u64,
    /// Full-size segments each TCP response may go on with.
    pub bulk: u64,
    /// Where the expected findings go, one per line.
    pub expected: Option<PathBuf>,
    /// Flows open at once: the traffic of a busy SPAN port instead of an organization.
    pub pool: Option<usize>,
    /// The organization whose traffic to write, instead of the example one.
    pub topology: Option<PathBuf>,
}

pub fn run(settings: &Settings) -> Result<Outcome, Error> {
    let out = &settings.out;
    let fail = |e: std::io::Error| format!("{}: {e}", out.display());
    // A bad topology file is reported before the capture file is created.
    let topology = match &settings.topology {
        Some(path) => Some(Topology::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let file = std::fs::File::create(out).map_err(fail)?;
    let mut writer = PcapWriter::new(std::io::BufWriter::new(file), 1).map_err(fail)?;
    if let Some(flows) = settings.pool {
        let options = pool::PoolOptions { packets: settings.packets, flows, seed: settings.seed };
        let stats =
            pool::pool(&options, |ts, frame| writer.write(ts, frame, frame.len() as u32)).map_err(fail)?;
        writer.into_inner().flush().map_err(fail)?;
        eprintln!(
            "exwatch: wrote {} packets of {} flows ({flows} open at once, {:.0} bytes a frame on average) to {}",
            stats.packets,
            stats.flows,
            stats.frame_bytes as f64 / stats.packets.max(1) as f64,
            out.display()
        );
        return Ok(Outcome::Clean);
    }
    let options = synth::OrgOptions {
        packets: settings.packets,
        seed: settings.seed,
        bulk: settings.bulk,
        ..Default::default()
    };
    let mut packets = 0u64;
    let write = |ts, frame: &[u8]| {
        packets += 1;
        writer.write(ts, frame, frame.len() as u32)
    };
    let expected = match &topology {
        Some(topology) => synth::site(topology, &options, write),
        None => synth::organization(&options, write),
    }
    .map_err(fail)?;
    writer.into_inner().flush().map_err(fail)?;
    if let Some(path) = &settings.expected {
        let lines: String = expected
            .iter()
            .map(|e| format!("{}\t{}\t{}\t{}\n", e.verdict.name(), e.rule, e.src, e.dst))
            .collect();
        std::fs::write(path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!("exwatch: wrote {packets} packets to {} ({} expected findings)", out.display(), expected.len());
    Ok(Outcome::Clean)
}
