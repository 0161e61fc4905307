//! Integration tests of orch-store: a conformance suite every backend must pass, and the
//! SQLite-specific checks (file handling, schema versions, constraints inside the database).

mod conformance;
mod sqlite;
