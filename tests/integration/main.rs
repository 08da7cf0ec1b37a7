//! exwatch's integration tests: one binary (fast to link), modules by area.

mod util;

mod answers;
mod benches;
mod bound;
mod captures;
mod cli;
mod compare;
mod daemon;
mod fanout;
mod files;
mod firewall;
mod flood;
mod fuzz;
mod green;
mod inputs;
mod layout;
mod learn;
mod live;
mod ops;
mod organization;
mod output;
mod payload;
mod redis;
mod report;
mod scenarios;
mod soc;
mod verdicts;
