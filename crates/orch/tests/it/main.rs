//! End-to-end tests of the `orch` binary: real processes, real git, a real SQLite file, real
//! deploys on loopback ports.

mod bad_input;
mod bench;
mod chaos;
mod crash;
mod demo;
mod harness;
mod onboard;
mod projects;
mod selfdeploy;
mod serve;
mod staging;
mod worker;
