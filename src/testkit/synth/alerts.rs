//! A flood of findings, for the alert bound's tests and bench: spoofed SYNs from the
//! Internet at one Mailbox port, a vertical scan of the Edge interleaved with them, and
//! two unrelated violations in the middle.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::org::{Expected, EDGE, MAILBOX_SUBSCRIBED};
use super::wire::{self, Link, Segment, DEFAULT_TTL};
use super::{EPOCH, SYN};
use crate::policy::Verdict;
use crate::time::Ts;

/// What [`alert_flood`] wrote.
#[derive(Clone, Debug)]
pub struct AlertFlood {
    /// The flood's target (rule `external-to-mailbox`), one SYN from each spoofed source.
    pub target: SocketAddr,
    pub syns: u64,
    /// The scan's originator (rule `edge-perimeter`) and the Edge ports it probed.
    pub scanner: IpAddr,
    pub scanned_ports: u64,
    /// Two violations of other rules, sent halfway through.
    pub violations: [Expected; 2],
}

/// First port of the scan: clear of 25, which the Edge may take from the Internet.
const SCAN_FROM: u16 = 2000;

/// Writes `syns` spoofed SYNs at a Mailbox server's 3389, one a microsecond, with a
/// scan of `scanned_ports` Edge ports spread among them.
pub fn alert_flood(
    syns: u64,
    scanned_ports: u64,
    mut emit: impl FnMut(Ts, &[u8]) -> io::Result<()>,
) -> io::Result<AlertFlood> {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(MAILBOX_SUBSCRIBED[0])), 3389);
    let scanner = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
    let edge = IpAddr::V4(Ipv4Addr::from(EDGE));
    let mailbox = IpAddr::V4(Ipv4Addr::from(MAILBOX_SUBSCRIBED[1]));
    let violations = [
        Expected {
            rule: "mailbox-to-external",
            verdict: Verdict::Violation,
            src: SocketAddr::new(mailbox, 50_123),
            dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77)), 6667),
        },
        Expected {
            rule: "outbound-smtp-bypasses-edge",
            verdict: Verdict::Violation,
            src: SocketAddr::new(mailbox, 50_124),
            dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)), 25),
        },
    ];
    let syn = Segment::Tcp { flags: SYN, seq: 1, ack: 0, payload: &[] };
    let mut frame = |now: Ts, src: SocketAddr, dst: SocketAddr| {
        emit(now, &wire::ethernet(Link::default(), &wire::ip_packet(src, dst, DEFAULT_TTL, syn)))
    };
    let scan_every = (syns / scanned_ports.max(1)).max(1);
    let mut scanned = 0;
    let mut now = EPOCH;
    for i in 0..syns {
        now = now.saturating_add(1_000);
        let n = i.to_be_bytes();
        let spoofed = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(100, 64 | (n[5] & 0x3f), n[6], n[7])),
            1024 + (i % 60_000) as u16,
        );
        frame(now, spoofed, target)?;
        if i % scan_every == 0 && scanned < scanned_ports {
            let port = SCAN_FROM + scanned as u16;
            frame(now, SocketAddr::new(scanner, 40_000), SocketAddr::new(edge, port))?;
            scanned += 1;
        }
        if i == syns / 2 {
            for v in &violations {
                frame(now, v.src, v.dst)?;
            }
        }
    }
    Ok(AlertFlood { target, syns, scanner, scanned_ports: scanned, violations })
}
