//! The text of `policy.detail`: a [`Detail`] as written in events, with what only the
//! topology knows (an exception's id and expiry, an endpoints record's ports).

use crate::flow::Detail;
use crate::policy::Engine;

pub fn text(engine: &Engine, detail: Detail) -> String {
    let topology = &engine.topology;
    match detail {
        Detail::ExceptionExpired { exception } => match topology.exceptions.get(usize::from(exception)) {
            Some(e) => format!(
                "exception {} (owner {}) would accept this finding but expired on {}",
                e.id, e.owner, e.expires
            ),
            None => detail.to_string(),
        },
        Detail::EndpointsRecord { id } => match topology.endpoints.iter().find(|r| r.id == id) {
            Some(r) => {
                let ports = |list: &str| if list.is_empty() { "none".to_string() } else { list.to_string() };
                format!(
                    "Exchange Online address of Microsoft 365 endpoints record {id} (tcpPorts {}, udpPorts {})",
                    ports(&r.tcp_ports),
                    ports(&r.udp_ports)
                )
            }
            None => detail.to_string(),
        },
        other => other.to_string(),
    }
}
