//! orch-agent's integration tests: the Claude Code and Codex adapters driving the real CLIs
//! against a scripted model server on loopback, and the adapters' environment and failure
//! handling with stand-in programs.

mod fake_cli;
mod model_server;
mod real_cli;
mod support;
