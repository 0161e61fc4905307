//! End-to-end tests of the `orch` binary: real processes, real git, a real SQLite file, real
//! deploys on loopback ports.

mod bad_input;
mod bench;
mod bench_launch;
mod budget;
mod chaos;
mod config;
mod crash;
mod crossmachine;
mod dashboard;
mod demo;
mod deployment_doc;
mod docker_sandbox;
mod doctor;
mod dumpable;
mod external_checks;
mod forge_news;
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
mod pr_reviews;
mod projects;
mod queue;
mod queue_forge;
mod resume;
mod selfdeploy;
mod selfdeploy_session;
mod serve;
#[path = "../../../../test-support/skip.rs"]
mod skip;
mod staging;
mod staging_check;
mod store_error;
mod traces;
mod users;
mod worker;
