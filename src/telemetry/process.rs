//! The process's own metrics under the names every Prometheus client library's process
//! collector uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), so
//! the dashboards and alerts written for any exporter work for exwatch. Read from the
//! kernel (`/proc/self`, `getrusage`, `getrlimit`) at each scrape; a value the kernel
//! does not give is left out of the page, never made up.

use std::fmt::Write as _;

/// Clock ticks per second of the times in `/proc` (the kernel's `USER_HZ`, which its
/// user-space interface fixes at 100).
const USER_HZ: f64 = 100.0;

/// One reading of the process's resources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch when the process started.
    pub start_time: Option<f64>,
}

/// Reads the process's resources now.
pub fn sample() -> Process {
    use nix::sys::resource::{getrlimit, getrusage, Resource, UsageWho};
    let cpu_seconds = getrusage(UsageWho::RUSAGE_SELF).ok().map(|u| {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(u.user_time()) + seconds(u.system_time())
    });
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    // The directory's own descriptor, open while it is read, is not counted.
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count().saturating_sub(1) as u64);
    Process {
        cpu_seconds,
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: kib("VmSize:"),
        open_fds,
        max_fds: getrlimit(Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft),
        start_time: start_time(),
    }
}

/// The process's start: its start in ticks after boot (`/proc/self/stat`, field 22)
/// plus the boot time (`/proc/stat`, `btime`).
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Some(btime + ticks / USER_HZ)
}

/// Appends the process metrics to a `/metrics` page.
pub fn render(out: &mut String, p: &Process) {
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    };
    let float = |v: Option<f64>| v.map(|v| format!("{v}"));
    let int = |v: Option<u64>| v.map(|v| v.to_string());
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        float(p.cpu_seconds),
    );
    metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", int(p.resident_bytes));
    metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", int(p.virtual_bytes));
    metric("process_open_fds", "gauge", "Number of open file descriptors.", int(p.open_fds));
    metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", int(p.max_fds));
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        float(p.start_time),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel says of this very process: it has used CPU, holds memory and
    /// files, and started before now and after the machine booted.
    #[test]
    fn the_kernel_describes_this_process() {
        let p = sample();
        assert!(p.cpu_seconds.is_some_and(|s| s > 0.0), "{p:?}");
        assert!(p.resident_bytes.is_some_and(|b| b > 1 << 20), "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3) && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(p.start_time.is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0 * 365.0), "{p:?}");
        let mut page = String::new();
        render(&mut page, &p);
        for name in
            ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_start_time_seconds "]
        {
            assert!(page.contains(name), "{page}");
        }
    }
}
