//! exwatch: proves, packet by packet, that traffic around Microsoft Exchange servers
//! follows the Exchange network-port policy.
//!
//! ```text
//!                 batches of frames, by symmetric hash of the addresses
//!  capture ──┬──► [bounded channel] ──► worker 0: decode → flow table → policy ──┐
//!  (reader)  ├──► [bounded channel] ──► worker 1: decode → flow table → policy ──┼──► writer ──► EVE log
//!            └──► ...                                                             │   (event lines)
//!      ▲                                                                          │
//!      └────────────── empty batches come back for reuse ◄────────────────────────┘
//! ```
//!
//! Ownership: the reader owns the capture handle; a file is read in shared 4 MiB chunks
//! that batches reference rather than copy (a live capture's frames are copied). Each
//! worker owns its flow table and fragment table outright (no locks on the packet
//! path); the policy, the topology and the table of recent SMTP senders to an Edge are
//! shared through one [`policy::Engine`] behind an `Arc`. Time is packet time everywhere,
//! so a capture gives the same events on every run and with any worker count. Every
//! table and queue has a bound, and what does not fit is counted.
//!
//! Modules follow the stages: [`capture`] → [`decode`] → [`flow`] → [`policy`] →
//! [`output`], wired by [`pipeline`], counted by [`telemetry`]. [`compare`] matches the
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
pub mod synth;
pub mod telemetry;
