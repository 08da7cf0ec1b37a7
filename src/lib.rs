//! exwatch: proves, packet by packet, that traffic around Microsoft Exchange servers
//! follows the Exchange network-port policy.
//!
//! ```text
//!                 batches of frames, by symmetric hash of the addresses
//!   reader ──┬──► [bounded channel] ──► worker 0: decode → flow table → policy ──┐
//!  (capture) ├──► [bounded channel] ──► worker 1: decode → flow table → policy ──┼──► writer ──► EVE log
//!            └──► ...                                                             │   (orders, bounds and
//!                                                                                 │    formats alerts)
//!      ▲                                                                          │
//!      └────────────── empty batches come back for reuse ◄────────────────────────┘
//! ```
//!
//! Several files that are each a capture of their own (the default for two or more
//! files; `--continuous` reads them as one stream instead) are analysed by jobs, a file
//! at a time each, with no channel on the packet path:
//!
//! ```text
//!  files, next one taken ──┬──► job 0: read → decode → flow table → policy ──┐
//!  in argument order       ├──► job 1: read → decode → flow table → policy ──┼──► writer ──► EVE log
//!                          └──► ...                                       ───┘
//! ```
//!
//! A live interface has capture threads, one per socket of a fanout group, each its own
//! worker:
//!
//! ```text
//!  socket 0 ──► capture thread 0: read → decode → flow table → policy ──┐
//!  socket 1 ──► capture thread 1: read → decode → flow table → policy ──┼──► writer ──► EVE log
//! ```
//!
//! Ownership: the reader owns the capture handle; a file is read in shared 512 KiB
//! chunks that batches reference rather than copy; a capture thread judges frames where
//! libpcap's ring holds them. Each worker owns its flow table and fragment table outright (no locks on the packet
//! path); the policy, the topology and the table of recent SMTP senders to an Edge are
//! shared through one [`policy::Engine`] behind an `Arc`. A job owns the file it reads,
//! that file's flow table and an engine of its own ([`policy::Engine::split`]), so files
//! analysed side by side never see each other's state. Time is packet time everywhere,
//! so a capture gives the same events on every run and with any worker or job count.
//! Every table and queue has a bound, and what does not fit is counted; so has the
//! stream of alerts: the writer puts each stream's alerts in one canonical order
//! (`pipeline/order.rs`) and the alert bound ([`output::bound`]) counts a flood's
//! further findings into aggregate alerts.
//!
//! Which module owns what, and what it must never do. A module imports only modules
//! below it in this table (tests/integration/layout.rs checks every `crate::` path
//! against it, so there is no cycle either):
//!
//! | module | owns | never |
//! |---|---|---|
//! | [`command`] | the commands, one function each: settings in, an outcome out; what they print | parses flags, or does a stage's work |
//! | [`collect`] | `exwatch collect`: a broker's events to one EVE file per sensor, and the report of them kept current | judges a flow |
//! | [`report`] | the compliance report: findings and rows aggregated from events, rendered as HTML, JSON, CSV | sees a packet, or changes a verdict |
//! | [`learn`] | a per-host view of ended flows; the topology drafted from it, and compared | sees a packet, or changes a verdict |
//! | [`compare`] | two captures' handshakes matched | tracks flows |
//! | [`testkit`] | test support: synthetic organizations, fuzz bodies | runs on the packet path |
//! | [`pipeline`] | the threads and channels: reader, workers, jobs, writer | decodes, judges or formats itself |
//! | [`output`] | EVE lines, the sink, the alert bound (aggregates), the summary | decides a verdict |
//! | [`telemetry`] | gauges, sampled latency, the run's record, `/metrics` | decides anything |
//! | [`flow`] | per-worker flow tables, TCP state, fragments, timers; turns verdicts into events | reads the clock, or the policy's rules directly |
//! | [`counters`] | the counter table, declared once; what a worker, job or run counted | decides anything |
//! | [`policy`] | the policy and topology, compiled; the engine that judges a flow | sees a packet |
//! | [`capture`] | capture handles and file formats; hands out frame bytes; the fanout program that picks a live frame's socket by its addresses, and joining its group (`capture/fanout.rs`: the crate's second `unsafe`, two `setsockopt` calls the `pcap` crate does not make) | decodes |
//! | [`decode`] | every borrowed view of frame bytes; bytes in, one owned `Packet` out | panics, or keeps state |
//! | [`config`] | reading TOML with file, line and key in errors | |
//! | [`time`] | packet time: `Ts` and `SECOND` | reads the wall clock |
//! | [`prefetch`] | cache hints, the first of the crate's two `unsafe` (the other joins a fanout group, in `capture`) | reads or writes memory |

//! Words, one per concept: the *reader* is the thread that reads a capture (a file or
//! an interface) and feeds the *workers*; a *job* reads, decodes and tracks whole files
//! on its own; a *chunk* is a shared block of a file's bytes that batches point into; a
//! *finding* is a verdict other than `ok` (its EVE event is an `alert`); *settings* are
//! a stage's validated configuration.

pub mod capture;
pub mod collect;
pub mod command;
pub mod compare;
pub mod config;
pub mod counters;
pub mod decode;
pub mod flow;
pub mod learn;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod prefetch;
pub mod report;
pub mod telemetry;
pub mod testkit;
pub mod time;
