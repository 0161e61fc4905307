//! Integration tests of orch-store: a conformance suite every backend must pass, and the
//! backend-specific checks (SQLite: file handling, schema versions, constraints inside the
//! database; PostgreSQL: the same on a server, plus connection errors and `open_store`).

mod conformance;
mod postgres;
#[path = "../../../../test-support/skip.rs"]
mod skip;
mod sqlite;
