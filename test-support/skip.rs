//! What a test does when something it needs from outside the workspace is missing (docker,
//! PostgreSQL, Chromium, an agent CLI): a skip is never a silent pass.
//!
//! - Under `.ci/run` (`ORCH_TEST_REQUIRE_ALL=1`) or `CI=true` the missing dependency fails the
//!   test: those runs install everything, so a missing piece is a broken run.
//! - Elsewhere the test returns early, prints `SKIPPED: <test>: <why>` on stderr and appends the
//!   same line to the skip log (`$ORCH_TEST_SKIP_LOG`, else `target/tmp/orch-test-skips.log`),
//!   which `.ci/skipped` counts: nextest has no skip status for a test that ran, so the count
//!   is kept beside its report.
//!
//! Shared by the test crates that need it with `#[path = "../../../../test-support/skip.rs"]`
//! (no crate of its own). It never decides that a dependency is present; its caller does.

#![allow(dead_code)]

use std::io::Write as _;

/// Set to `1` by `.ci/run`: every dependency is required.
pub const REQUIRE_VAR: &str = "ORCH_TEST_REQUIRE_ALL";
/// Where skips are logged, when set.
pub const LOG_VAR: &str = "ORCH_TEST_SKIP_LOG";

/// Whether a missing dependency must fail the test in this run.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).as_deref() == Ok("1") || std::env::var("CI").as_deref() == Ok("true")
}

/// The skip log's path.
pub fn log_path() -> std::path::PathBuf {
    match std::env::var_os(LOG_VAR) {
        Some(path) if !path.is_empty() => path.into(),
        _ => std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("orch-test-skips.log"),
    }
}

/// The running test's name (libtest names the thread after the test; `#[tokio::test]` runs on
/// that thread).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned()
}

/// The running test cannot run here because of `why` (what is missing and how to install it):
/// fails the test when every dependency is required, else reports and counts the skip. The
/// caller then returns without asserting anything.
#[track_caller]
pub fn skip(why: &str) {
    let test = current_test();
    assert!(
        !required(),
        "{test}: {why}; this run requires every dependency ({REQUIRE_VAR}=1 or CI=true), so a \
         missing one fails instead of skipping"
    );
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    let path = log_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One short `write` per line in append mode: concurrent test processes do not interleave.
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = log.write_all(format!("{line}\n").as_bytes());
    }
}
