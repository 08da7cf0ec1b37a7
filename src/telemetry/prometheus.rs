//! The Prometheus `/metrics` endpoint of a live capture: text exposition format over a
//! minimal HTTP/1.1 server on its own thread. Label values are bounded (rule ids,
//! verdicts, skip reasons, stages), never addresses or ports.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::total;
use crate::decode::Skip;
use crate::pipeline::Monitor;
use crate::policy::{Engine, Verdict};

/// The metrics page.
pub fn render(engine: &Engine, monitor: &Monitor) -> String {
    let g = &monitor.gauges;
    let capture = monitor.capture_stats();
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |v: u64| vec![(String::new(), v)];
    metric(
        "exwatch_packets_total",
        "counter",
        "Frames received by the workers.",
        &plain(total(g, |w| &w.frames)),
    );
    metric(
        "exwatch_bytes_total",
        "counter",
        "Bytes (on the wire) of the frames received.",
        &plain(total(g, |w| &w.frame_bytes)),
    );
    metric(
        "exwatch_kernel_received_total",
        "counter",
        "Packets the kernel delivered to the capture (pcap stats).",
        &plain(capture.received),
    );
    metric(
        "exwatch_kernel_drops_total",
        "counter",
        "Packets the kernel dropped because its buffer was full (pcap stats).",
        &plain(capture.kernel_dropped),
    );
    metric(
        "exwatch_interface_drops_total",
        "counter",
        "Packets the interface or its driver dropped (pcap stats).",
        &plain(capture.interface_dropped),
    );
    metric(
        "exwatch_shed_frames_total",
        "counter",
        "Frames dropped because a worker fell behind.",
        &plain(monitor.shed.load(Ordering::Relaxed)),
    );
    let skipped: Vec<_> = Skip::ALL
        .iter()
        .map(|s| {
            let labels = format!("{{layer=\"{}\",reason=\"{}\"}}", s.layer().name(), s.code());
            (labels, total(g, |w| &w.skipped[s.index()]))
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
        &plain(total(g, |w| &w.flows_active)),
    );
    metric("exwatch_flows_total", "counter", "Flows tracked.", &plain(total(g, |w| &w.flows)));
    metric(
        "exwatch_flows_evicted_total",
        "counter",
        "Flows evicted because a flow table was full.",
        &plain(total(g, |w| &w.flows_evicted)),
    );
    metric(
        "exwatch_flows_timed_out_total",
        "counter",
        "Flows ended by their idle timeout.",
        &plain(total(g, |w| &w.flows_timed_out)),
    );
    let mut alerts = Vec::new();
    for (i, rule) in engine.policy.rules.iter().enumerate().filter(|(_, r)| r.verdict.is_finding()) {
        alerts.push((label_pair(&rule.id, rule.verdict), total(g, |w| &w.rule_alerts[i])));
    }
    for (i, evidence) in engine.policy.evidence.iter().enumerate() {
        alerts.push((label_pair(&evidence.id, Verdict::Restriction), total(g, |w| &w.evidence_alerts[i])));
    }
    metric(
        "exwatch_alerts_total",
        "counter",
        "Findings written, by rule (or evidence) and verdict.",
        &alerts,
    );
    let mut latency = super::Latency::default();
    for gauges in g {
        if let Ok(l) = gauges.latency.lock() {
            latency.merge(&l);
        }
    }
    let _ = writeln!(
        out,
        "# HELP exwatch_stage_latency_seconds Per-packet time in each stage (sampled).\n# TYPE exwatch_stage_latency_seconds summary"
    );
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

fn label_pair(rule: &str, verdict: Verdict) -> String {
    format!("{{rule=\"{rule}\",verdict=\"{}\"}}", verdict.name())
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
