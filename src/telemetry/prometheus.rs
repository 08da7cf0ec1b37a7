//! The Prometheus `/metrics` endpoint of a live capture, and `/healthz` (200 while the
//! capture runs, 503 once it has stopped or failed): text exposition format over a
//! minimal HTTP/1.1 server on its own thread; GET and HEAD. Label values are bounded (rule ids,
//! verdicts, skip reasons, stages), never addresses or ports.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{CaptureState, Counter, Monitor, Snapshot, COMMIT, LATENCY_SAMPLE, VERSION};
use crate::decode::Skip;
use crate::policy::Engine;

/// The metrics page, with the process's own metrics.
pub fn render(engine: &Engine, monitor: &Monitor) -> String {
    let mut out = page(engine, &monitor.snapshot(engine));
    sockets_and_queues(&mut out, monitor);
    if let Some(delivery) = &monitor.delivery {
        delivery.counts().write_metrics(&mut out);
    }
    super::process::render(&mut out, &super::process::sample());
    out
}

/// Each capture socket's counters (several are one fanout group), and the depth of
/// each queue between stages.
fn sockets_and_queues(out: &mut String, monitor: &Monitor) {
    let sockets = monitor.socket_stats();
    for (name, help, value) in [
        (
            "exwatch_socket_received_total",
            "Frames the kernel received for this capture socket.",
            (|s: &crate::capture::CaptureStats| s.received) as fn(&_) -> u64,
        ),
        (
            "exwatch_socket_kernel_dropped_total",
            "Frames the kernel dropped for this capture socket (its ring was full).",
            |s| s.kernel_dropped,
        ),
        (
            "exwatch_socket_interface_dropped_total",
            "Frames the interface or its driver dropped, as this socket reads it.",
            |s| s.interface_dropped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (socket, stats) in sockets.iter().enumerate() {
            let _ = writeln!(out, "{name}{{socket=\"{socket}\"}} {}", value(stats));
        }
    }
    let _ = writeln!(
        out,
        "# HELP exwatch_queue_depth Items waiting in a queue between stages now (events: chunks of events for the writer).\n# TYPE exwatch_queue_depth gauge"
    );
    for (queue, depth) in monitor.queue_depths() {
        let _ = writeln!(out, "exwatch_queue_depth{{queue=\"{queue}\"}} {depth}");
    }
}

/// Upper bounds (seconds) of the latency histogram's buckets: a packet's time in a
/// stage is microseconds when all is well, milliseconds when a worker stalls.
const LATENCY_BUCKETS: [f64; 12] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1.0];

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
    let accepted: Vec<_> =
        super::accepted_series(engine, c).map(|(id, n)| (format!("{{rule=\"{id}\"}}"), n)).collect();
    metric(
        "exwatch_alerts_accepted_total",
        "counter",
        "Of exwatch_alerts_total, the findings an exception of the topology accepted (verdict accepted), by rule (or evidence).",
        &accepted,
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
        "# HELP exwatch_stage_latency_seconds Per-packet time in each stage (one packet in {LATENCY_SAMPLE} timed).\n# TYPE exwatch_stage_latency_seconds histogram"
    );
    let latency = &snapshot.latency;
    for (stage, h, sum_ns) in
        [("decode", &latency.decode, latency.decode_sum_ns), ("flow", &latency.flow, latency.flow_sum_ns)]
    {
        // Buckets, not quantiles, so that sensors' latencies add up in one query.
        for le in LATENCY_BUCKETS {
            let count = h.count_between(0, (le * 1e9) as u64);
            let _ = writeln!(
                out,
                "exwatch_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "exwatch_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}",
            h.len()
        );
        let _ =
            writeln!(out, "exwatch_stage_latency_seconds_sum{{stage=\"{stage}\"}} {}", sum_ns as f64 / 1e9);
        let _ = writeln!(out, "exwatch_stage_latency_seconds_count{{stage=\"{stage}\"}} {}", h.len());
    }
    let _ = writeln!(
        out,
        "# HELP exwatch_build_info The exwatch version and the git commit it was built from.\n# TYPE exwatch_build_info gauge\n\
         exwatch_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"
    );
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
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let text = "text/plain; charset=utf-8";
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(engine, monitor))
        }
        ("GET" | "HEAD", "/healthz") => match health(&monitor.capture_state()) {
            (true, body) => ("200 OK", text, body),
            (false, body) => ("503 Service Unavailable", text, body),
        },
        ("GET" | "HEAD", _) => ("404 Not Found", text, "exwatch serves /metrics and /healthz\n".to_string()),
        _ => ("405 Method Not Allowed", text, "exwatch answers GET and HEAD\n".to_string()),
    };
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )?;
    // HEAD: the headers GET would send (its Content-Length included), no body.
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// `/healthz`: healthy while the capture runs; the body says what it is doing.
fn health(state: &CaptureState) -> (bool, String) {
    match state {
        CaptureState::Running => (true, "ok: capturing\n".into()),
        CaptureState::Starting => (false, "starting: the capture is not running yet\n".into()),
        CaptureState::Stopped => (false, "stopped: the capture has ended\n".into()),
        CaptureState::Failed(why) => (false, format!("failed: {why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;

    use super::*;
    use crate::policy::builtin;

    fn engine() -> Engine {
        Engine::new(
            Arc::new(builtin::policy().expect("policy")),
            Arc::new(builtin::topology().expect("topology")),
            10,
        )
    }

    /// One request answered by [`answer`] over a real socket: the whole response.
    fn ask(engine: &Engine, monitor: &Monitor, request: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client.write_all(request.as_bytes()).expect("send");
        let (server, _) = listener.accept().expect("accept");
        answer(server, engine, monitor).expect("answer");
        let _ = client.shutdown(Shutdown::Write);
        let mut response = String::new();
        client.read_to_string(&mut response).expect("read");
        response
    }

    fn content_length(response: &str) -> usize {
        let line = response.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("a length");
        line.trim().parse().expect("a number")
    }

    #[test]
    fn accepted_findings_are_a_series_of_their_own() {
        let engine = engine();
        let mut counters = crate::counters::Counters::for_policy(&engine.policy);
        let external = engine.policy.rules.iter().position(|r| r.id == "external-to-mailbox").expect("rule");
        let pair = ("198.51.100.7".parse().unwrap(), "10.10.1.11".parse().unwrap());
        counters.record_finding(crate::policy::Verdict::Violation, external, None, pair);
        counters.record_finding(crate::policy::Verdict::Accepted, external, None, pair);
        counters.record_finding(crate::policy::Verdict::Accepted, 1, Some(1), pair);
        let snapshot = Snapshot {
            counters,
            flows_active: 0,
            latency: crate::telemetry::Latency::default(),
            uptime: std::time::Duration::from_secs(1),
        };
        let page = page(&engine, &snapshot);
        let evidence = &engine.policy.evidence[1].id;
        for line in [
            "exwatch_accepted_total 2".to_string(),
            "exwatch_violations_total 1".to_string(),
            r#"exwatch_alerts_total{rule="external-to-mailbox",verdict="violation"} 2"#.to_string(),
            r#"exwatch_alerts_accepted_total{rule="external-to-mailbox"} 1"#.to_string(),
            format!(r#"exwatch_alerts_accepted_total{{rule="{evidence}"}} 1"#),
        ] {
            assert!(page.lines().any(|l| l == line), "{line} in\n{page}");
        }
    }

    #[test]
    fn head_answers_with_the_headers_of_get_and_no_body() {
        let (engine, monitor) = (engine(), Monitor::new(&engine(), 1));
        let get = ask(&engine, &monitor, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let head = ask(&engine, &monitor, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "a HEAD response has no body: {head}");
        let body = &get[get.find("\r\n\r\n").expect("end of headers") + 4..];
        assert_eq!(content_length(&get), body.len());
        // The uptime and the process's CPU time, memory and files (read anew at each
        // scrape) may differ by a few digits between the two pages; the rest is the same.
        assert!(content_length(&head).abs_diff(body.len()) <= 64, "{head}");
        let post = ask(&engine, &monitor, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    }

    #[test]
    fn healthz_is_200_only_while_the_capture_runs() {
        let (engine, monitor) = (engine(), Monitor::new(&engine(), 1));
        let status = |monitor: &Monitor| {
            let response = ask(&engine, monitor, "GET /healthz HTTP/1.1\r\n\r\n");
            response.split_whitespace().nth(1).unwrap_or_default().to_string()
        };
        assert_eq!(status(&monitor), "503", "not running yet");
        monitor.set_capture_state(CaptureState::Running);
        assert_eq!(status(&monitor), "200");
        monitor.set_capture_state(CaptureState::Failed("eth9: the interface went down".into()));
        let response = ask(&engine, &monitor, "GET /healthz HTTP/1.1\r\n\r\n");
        assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
        assert!(response.ends_with("failed: eth9: the interface went down\n"), "{response}");
        monitor.set_capture_state(CaptureState::Stopped);
        assert_eq!(status(&monitor), "503");
    }

    #[test]
    fn latency_is_a_histogram_and_build_info_and_process_metrics_are_there() {
        let engine = engine();
        let monitor = Monitor::new(&engine, 2);
        let mut latency = crate::telemetry::Latency::default();
        latency.record(1_000, 3_000);
        latency.record(2_000, 5_000);
        monitor.gauges[1].publish_latency(&latency);
        let page = render(&engine, &monitor);
        assert!(page.contains("exwatch_stage_latency_seconds_sum{stage=\"decode\"} 0.000003\n"), "{page}");
        assert!(page.contains("exwatch_stage_latency_seconds_sum{stage=\"flow\"} 0.000008\n"), "{page}");
        assert!(page.contains("exwatch_stage_latency_seconds_count{stage=\"flow\"} 2\n"), "{page}");
        assert!(page.contains("# TYPE exwatch_stage_latency_seconds histogram\n"), "{page}");
        // Cumulative buckets: 3 and 5 microseconds are both under 5 µs, neither under 2.5.
        assert!(
            page.contains("exwatch_stage_latency_seconds_bucket{stage=\"flow\",le=\"0.0000025\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("exwatch_stage_latency_seconds_bucket{stage=\"flow\",le=\"0.000005\"} 2\n"),
            "{page}"
        );
        assert!(
            page.contains("exwatch_stage_latency_seconds_bucket{stage=\"flow\",le=\"+Inf\"} 2\n"),
            "{page}"
        );
        assert!(page.contains("\nprocess_resident_memory_bytes "), "{page}");
        let info = format!("exwatch_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1\n");
        assert!(page.contains(&info), "{page}");
    }
}
