//! End-to-end tests of the `orch` binary: real processes, real git, a real SQLite file, real
//! deploys on loopback ports.

mod bad_input;
mod bench;
mod crash;
mod demo;
mod harness;
mod integrations;
mod onboard;
mod serve;
mod staging;
mod worker;
