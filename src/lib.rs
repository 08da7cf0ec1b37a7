//! exwatch: proves, packet by packet, that traffic around Microsoft Exchange servers
//! follows the Exchange network-port policy.
//!
//! ```text
//!                 batches of frames, by symmetric hash of the addresses
//!  capture ──┬──► [bounded channel] ──► worker 0: decode → flow table → policy ──┐
//!  (reader)  ├──► [bounded channel] ──► worker 1: decode → flow table → policy ──┼──► writer ──► EVE log
//!            └──► ...                                                             │   (formats events)
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
//! Ownership: the reader owns the capture handle; a file is read in shared 512 KiB
//! chunks that batches reference rather than copy (a live capture's frames are copied). Each
//! worker owns its flow table and fragment table outright (no locks on the packet
//! path); the policy, the topology and the table of recent SMTP senders to an Edge are
//! shared through one [`policy::Engine`] behind an `Arc`. A job owns the file it reads,
//! that file's flow table and an engine of its own ([`policy::Engine::split`]), so files
//! analysed side by side never see each other's state. Time is packet time everywhere,
//! so a capture gives the same events on every run and with any worker or job count.
//! Every table and queue has a bound, and what does not fit is counted.
//!
//! Modules follow the stages: [`capture`] → [`decode`] → [`flow`] → [`policy`] →
//! [`output`], wired by [`pipeline`], counted by [`telemetry`]. [`report`] builds the
//! compliance report from EVE events of any number of runs and sensors. [`compare`] matches the
//! handshakes of two captures of the same traffic. [`synth`] builds captures of an
//! Exchange organization for tests, benches and the bundled sample; [`fuzzing`] holds
//! the fuzz targets' bodies, which `cargo test` also runs.

pub mod capture;
pub mod compare;
pub mod config;
pub mod decode;
pub mod flow;
pub mod fuzzing;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod synth;
pub mod telemetry;
