//! exwatch's integration tests: one binary (fast to link), modules by area.

mod util;

mod captures;
mod cli;
mod compare;
mod files;
mod flood;
mod fuzz;
mod live;
mod output;
mod report;
mod scenarios;
