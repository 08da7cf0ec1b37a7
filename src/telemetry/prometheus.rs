//! The Prometheus `/metrics` endpoint of a live capture: text exposition format over a
//! minimal HTTP/1.1 server on its own thread. Label values are bounded (rule ids,
//! verdicts, skip reasons, stages), never addresses or ports.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Counter, Monitor, Snapshot};
use crate::decode::Skip;
use crate::policy::Engine;

/// The metrics page.
pub fn render(engine: &Engine, monitor: &Monitor) -> String {
    page(engine, &monitor.snapshot(engine))
}

/// The metrics page of a snapshot: every counter of the table, then the labelled ones.
pub fn page(engine: &Engine, snapshot: &Snapshot) -> String {
    let c = &snapshot.counters;
    let mut out = String::with_capacity(8192);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    for counter in Counter::ALL {
        let def = counter.def();
        metric(def.prometheus, "counter", def.help, &[(String::new(), c[counter])]);
    }
    let skipped: Vec<_> = Skip::ALL
        .iter()
        .map(|s| {
            (format!("{{layer=\"{}\",reason=\"{}\"}}", s.layer().name(), s.code()), c.skipped[s.index()])
        })
        .collect();
    metric(
        "exwatch_decode_skipped_total",
        "counter",
        "Frames that did not decode, by the layer where decoding stopped and why.",
        &skipped,
    );
    metric(
        "exwatch_flows_active",
        "gauge",
        "Flows in the flow tables.",
        &[(String::new(), snapshot.flows_active)],
    );
    let alerts: Vec<_> = super::alert_series(engine, c)
        .map(|(id, verdict, n)| (format!("{{rule=\"{id}\",verdict=\"{}\"}}", verdict.name()), n))
        .collect();
    metric(
        "exwatch_alerts_total",
        "counter",
        "Findings, by rule (or evidence) and verdict, whether written or held back by the alert bound.",
        &alerts,
    );
    let aggregated: Vec<_> = super::aggregated_series(engine, c)
        .map(|(id, verdict, n)| (format!("{{rule=\"{id}\",verdict=\"{}\"}}", verdict.name()), n))
        .collect();
    metric(
        "exwatch_alerts_aggregated_by_rule_total",
        "counter",
        "Findings the alert bound held back from the EVE log (counted in aggregate alerts), by rule (or evidence) and verdict.",
        &aggregated,
    );
    let _ = writeln!(
        out,
        "# HELP exwatch_stage_latency_seconds Per-packet time in each stage (sampled).\n# TYPE exwatch_stage_latency_seconds summary"
    );
    let latency = &snapshot.latency;
    for (stage, h) in [("decode", &latency.decode), ("flow", &latency.flow)] {
        for q in [0.5, 0.9, 0.99] {
            let seconds = h.value_at_quantile(q) as f64 / 1e9;
            let _ = writeln!(
                out,
                "exwatch_stage_latency_seconds{{stage=\"{stage}\",quantile=\"{q}\"}} {seconds}"
            );
        }
        let _ = writeln!(out, "exwatch_stage_latency_seconds_count{{stage=\"{stage}\"}} {}", h.len());
    }
    out
}

/// Serves `/metrics` on `listener` until `monitor.stop` is set.
pub fn serve(listener: TcpListener, engine: &Engine, monitor: &Monitor) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    while !monitor.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // One slow or broken client must not stop the endpoint.
                let _ = answer(stream, engine, monitor);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn answer(mut stream: TcpStream, engine: &Engine, monitor: &Monitor) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut head = [0u8; 4096];
    let mut len = 0;
    while len < head.len() && !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let request = String::from_utf8_lossy(&head[..len]);
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) =
        if request.starts_with("GET ") && (target == "/metrics" || target.starts_with("/metrics?")) {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(engine, monitor))
        } else {
            ("404 Not Found", "text/plain; charset=utf-8", "exwatch serves /metrics\n".to_string())
        };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
