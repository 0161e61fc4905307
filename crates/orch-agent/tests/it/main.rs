//! orch-agent's integration tests: the CLI adapters driving the real CLIs against a scripted
//! model server on loopback, and the adapters' environment, failure handling and bad-output
//! handling with stand-in programs.

mod bad_output;
mod bridge;
mod fake_cli;
mod model_server;
mod real_cli;
mod sandboxed;
#[path = "../../../../test-support/skip.rs"]
mod skip;
mod support;
