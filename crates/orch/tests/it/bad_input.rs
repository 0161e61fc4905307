//! Bad input gets a clear error naming the problem, exit code 2, and changes nothing.

use std::process::Command;

use crate::harness::{BIN, Orch};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_flag_and_missing_config() {
    let out = Command::new(BIN)
        .arg("--frobnicate")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--frobnicate"));
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/orch.toml", "status"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("cannot read /nonexistent/orch.toml"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn broken_project_files_name_the_file_and_field() {
    let orch = Orch::new(None);
    let pipeline = orch.repo().join(".orch/pipeline.toml");
    let good = std::fs::read_to_string(&pipeline).expect("read");
    std::fs::write(
        &pipeline,
        good.replace("on_pass = \"review\"", "on_pass = \"reveiw\""),
    )
    .expect("write");
    let out = orch.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains(
            ".orch/pipeline.toml: stage `development`, field `on_pass`: no stage is named `reveiw`"
        ),
        "{}",
        stderr_of(&out)
    );
    std::fs::write(&pipeline, good).expect("restore");

    let role = orch.repo().join(".orch/agents/reviewer.md");
    std::fs::write(&role, "# no frontmatter\n").expect("write");
    let out = orch.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains(".orch/agents/reviewer.md: role file has no frontmatter"),
        "{}",
        stderr_of(&out)
    );
    std::fs::remove_file(&role).expect("rm");
    let out = orch.run(&["status"]);
    assert!(
        stderr_of(&out)
            .contains(".orch/agents/reviewer.md: is missing; stage `review` needs role `reviewer`")
    );

    let orch = Orch::new(None);
    std::fs::write(
        orch.repo().join(".orch/scenario.toml"),
        "[[steps]]\nstage = \"qa\"\nfiles = [{ path = \"../escape\", content = \"x\" }]\n",
    )
    .expect("write");
    let out = orch.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("path `../escape` must be relative"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn bad_item_ids_and_commands_out_of_place() {
    let orch = Orch::new(None);
    for bad in ["../QUICK-1", "QUICK/1", "quick-1"] {
        let out = orch.run(&["item", "show", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr_of(&out).contains("invalid work item id"),
            "{}",
            stderr_of(&out)
        );
    }
    orch.ok(&["item", "add", "--title", "x"]);
    let out = orch.run(&["approve", "QUICK-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("not awaiting approval"),
        "{}",
        stderr_of(&out)
    );
    let out = orch.run(&["retry", "QUICK-1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = orch.run(&["item", "show", "QUICK-9"]);
    assert_eq!(out.status.code(), Some(2));
    let out = orch.run(&["item", "add", "--title", "  "]);
    assert_eq!(out.status.code(), Some(2));
}

/// A test command that hangs is killed at its timeout and fails the stage; with the budget spent
/// the item is blocked with the reason, and the repository's main branch is untouched.
#[test]
fn hanging_test_command_is_killed_and_blocks_after_budget() {
    let orch = Orch::new(None);
    let pipeline = orch.repo().join(".orch/pipeline.toml");
    let text = std::fs::read_to_string(&pipeline).expect("read");
    let text = text.replace(
        "run = \"true\", timeout_secs = 600",
        "run = \"sleep 30\", timeout_secs = 1",
    );
    std::fs::write(&pipeline, text).expect("write");
    crate::harness::git(&orch.repo(), &["commit", "-qam", "slow tests"]);
    let main_before = crate::harness::git(&orch.repo(), &["rev-parse", "main"]);
    orch.ok(&["item", "add", "--title", "x"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or("");
    assert!(reason.contains("timed out after 1s"), "{reason}");
    assert_eq!(
        crate::harness::git(&orch.repo(), &["rev-parse", "main"]),
        main_before
    );
}

#[test]
fn stop_cancels_an_item() {
    let orch = Orch::new(None);
    orch.ok(&["item", "add", "--title", "x"]);
    orch.ok(&["stop", "QUICK-1"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "cancelled");
    let out = orch.run(&["stop", "QUICK-1"]);
    assert_eq!(out.status.code(), Some(2));
    orch.ok(&["run"]);
    assert_eq!(orch.item("QUICK-1")["status"], "cancelled");
}

#[test]
fn an_engine_table_may_leave_values_out_and_a_switch_refuses_a_typo() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let text = std::fs::read_to_string(&config).expect("orch.toml");
    std::fs::write(&config, text.replace("lease_secs = 5\n", "")).expect("write");
    // `[engine]` with only max_parallel: the lease takes its default.
    orch.ok(&["status"]);
    // A typo in the staging tolerance kill-switch is refused, never read as "on".
    let out = orch
        .command(&["status"])
        .env("ORCH_STAGING_INFRA_TOLERANCE_ENABLED", "flase")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("ORCH_STAGING_INFRA_TOLERANCE_ENABLED=\"flase\"")
            && stderr_of(&out).contains("true or false"),
        "{}",
        stderr_of(&out)
    );
    let out = orch
        .command(&["status"])
        .env("ORCH_STAGING_INFRA_TOLERANCE_ENABLED", "off")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}
