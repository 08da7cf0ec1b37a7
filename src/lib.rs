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
//! Ownership: the reader owns the capture handle; each worker owns its flow table and
//! fragment table outright (no locks on the packet path); the policy, the topology and
//! the table of recent SMTP senders to an Edge are shared through one [`policy::Engine`]
//! behind an `Arc`. Time is packet time everywhere, so a capture gives the same events
//! on every run and with any worker count.
//!
//! Modules follow the stages: [`capture`] → [`decode`] → [`flow`] → [`policy`] →
//! [`output`], wired by [`pipeline`], counted by [`telemetry`]. [`synth`] builds
//! captures of an Exchange organization for tests, benches and the bundled sample.

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
