//! `analyze --bpf`: a BPF expression (tcpdump syntax) applied to the frames of capture
//! files, as a live capture's kernel applies it. libpcap compiles it once per link type
//! and runs it on each frame; a program belongs to the thread that compiled it.

use std::collections::HashMap;

use super::CaptureError;
use crate::decode::LinkType;

/// A BPF expression, compiled for each link type as frames of that type come.
pub struct Filter {
    expression: String,
    programs: HashMap<LinkType, pcap::BpfProgram>,
}

impl Filter {
    /// Compiles `expression` (for Ethernet, to say at once whether it is one).
    pub fn new(expression: &str) -> Result<Filter, CaptureError> {
        let mut filter = Filter { expression: expression.to_string(), programs: HashMap::new() };
        filter.program(LinkType::Ethernet)?;
        Ok(filter)
    }

    fn program(&mut self, link: LinkType) -> Result<&pcap::BpfProgram, CaptureError> {
        if !self.programs.contains_key(&link) {
            let Some(dlt) = dlt(link) else {
                return Err(CaptureError::Filter {
                    expression: self.expression.clone(),
                    message: "a link type exwatch does not decode".into(),
                });
            };
            let error = |e: pcap::Error| CaptureError::Filter {
                expression: self.expression.clone(),
                message: e.to_string(),
            };
            let program = pcap::Capture::dead(pcap::Linktype(dlt))
                .and_then(|dead| dead.compile(&self.expression, true))
                .map_err(error)?;
            self.programs.insert(link, program);
        }
        Ok(&self.programs[&link])
    }

    /// Whether the frame `data` of link type `link` passes. An expression that cannot
    /// apply to a link type (`ether host` on raw IP, say) passes nothing of it.
    pub fn matches(&mut self, link: LinkType, data: &[u8]) -> bool {
        self.program(link).is_ok_and(|program| program.filter(data))
    }
}

/// The libpcap link type (DLT) a frame of `link` is compiled for.
fn dlt(link: LinkType) -> Option<i32> {
    Some(match link {
        LinkType::Ethernet => 1,
        LinkType::LinuxSll => 113,
        LinkType::LinuxSll2 => 276,
        LinkType::RawIp => 12,
        LinkType::Null => 0,
        LinkType::Unsupported => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_expression_is_an_error_naming_it() {
        let err = Filter::new("tcp port").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("\"tcp port\""), "{err}");
    }
}
