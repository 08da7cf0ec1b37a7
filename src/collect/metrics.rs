//! The collector's `/metrics`: each rule's status in the last report, each sensor's
//! last-seen time (so an alert can fire when a sensor goes quiet), and what was
//! collected. Label values are rule ids, statuses and sensor names: bounded by the
//! policy and the sites, never addresses.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Control, Shared};
use crate::report::{Report, Status};

const STATUSES: [Status; 6] = [
    Status::Compliant,
    Status::Advisory,
    Status::Violation,
    Status::Restriction,
    Status::OutOfScope,
    Status::NotObserved,
];

/// Each rule of a report and its status's code.
pub fn rule_statuses(report: &Report) -> Vec<(String, String)> {
    report
        .sections
        .iter()
        .flat_map(|s| &s.rows)
        .map(|row| (row.rule.clone(), row.status.code().to_string()))
        .collect()
}

/// The metrics page.
pub fn page(shared: &Shared) -> String {
    let mut out = String::with_capacity(4096);
    let counts = shared.counts.lock().map(|c| c.clone()).unwrap_or_default();
    let series = [
        (
            "exwatch_collect_events_total",
            "EVE lines written to a sensor's file and acknowledged.",
            counts.events,
        ),
        (
            "exwatch_collect_pending_reread_total",
            "Entries read again from this collector's pending list on start.",
            counts.pending_reread,
        ),
        (
            "exwatch_collect_already_written_total",
            "Of the entries read again, those found at the end of their sensor's file (not written again).",
            counts.already_written,
        ),
        (
            "exwatch_collect_without_eve_total",
            "Stream entries with no eve field (acknowledged, not written).",
            counts.without_eve,
        ),
        (
            "exwatch_collect_unreadable_total",
            "Lines that are not EVE events exwatch reads.",
            counts.unreadable,
        ),
        ("exwatch_collect_reports_total", "Reports written.", counts.reports),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP exwatch_rule_status The status of each rule in the last report: 1 for its status, 0 for the others.\n# TYPE exwatch_rule_status gauge"
    );
    if let Ok(rules) = shared.rules.lock() {
        for (rule, status) in rules.iter() {
            for s in STATUSES {
                let on = u8::from(s.code() == status);
                let _ = writeln!(out, "exwatch_rule_status{{rule=\"{rule}\",status=\"{}\"}} {on}", s.code());
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP exwatch_sensor_last_seen_seconds When the collector last wrote an event of each sensor (Unix time).\n# TYPE exwatch_sensor_last_seen_seconds gauge"
    );
    if let Ok(sensors) = shared.sensors.lock() {
        for (sensor, at) in sensors.iter() {
            let _ =
                writeln!(out, "exwatch_sensor_last_seen_seconds{{sensor=\"{}\"}} {at:.3}", escape(sensor));
        }
    }
    out
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `/metrics` on `listener` until `control.stop` is set.
pub fn serve(listener: TcpListener, shared: &Shared, control: &Control) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    while !control.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // One client's error is that client's.
                let _ = answer(stream, shared);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = [0u8; 2048];
    let n = stream.read(&mut request)?;
    let head = String::from_utf8_lossy(&request[..n]);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" {
        ("200 OK", page(shared))
    } else {
        ("404 Not Found", "not found\n".to_string())
    };
    let send_body = !head.starts_with("HEAD ");
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if send_body {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}
