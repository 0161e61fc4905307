//! End-to-end tests of the `orch` binary: real processes, real git, a real SQLite file, real
//! deploys on loopback ports.

mod bad_input;
mod bench;
mod budget;
mod chaos;
mod crash;
mod crossmachine;
mod dashboard;
mod demo;
mod deployment_doc;
mod dumpable;
mod gates;
mod harness;
mod hostile;
mod integrations;
mod isolation;
mod notify;
mod onboard;
mod onboard_remote;
mod pg;
mod pgrestart;
mod projects;
mod queue;
mod resume;
mod selfdeploy;
mod serve;
#[path = "../../../../test-support/skip.rs"]
mod skip;
mod staging;
mod store_error;
mod users;
mod worker;
