use super::*;
use crate::pipeline::{DEFAULT_PIPELINE_TOML, Pipeline};

fn stage(name: &str) -> Stage {
    let p = Pipeline::from_toml(DEFAULT_PIPELINE_TOML).expect("valid");
    p.stages()
        .iter()
        .find(|s| s.name.as_str() == name)
        .cloned()
        .expect("stage exists")
}

fn paths(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const DIR: &str = "docs/work-items/DEMO-1/";

/// One helper: a stage, its inputs, the expected class and reasons.
fn check(stage_name: &str, input: GateInput<'_>, class: VerdictClass, reasons: &[&str]) {
    let v = evaluate(&stage(stage_name), &input);
    assert_eq!(v.reasons(), reasons, "reasons for {stage_name}");
    assert_eq!(v.class, class, "class for {stage_name}");
}

fn ok_tests() -> Vec<CommandResult> {
    vec![CommandResult {
        name: "tests".into(),
        outcome: ExitOutcome::Exited(0),
        output_tail: String::new(),
    }]
}

#[test]
fn development_passes_with_code_notes_and_green_tests() {
    let changes = paths(&["src/main.rs", "docs/work-items/DEMO-1/03-dev-notes.md"]);
    let allow = paths(&["**"]);
    let cmds = ok_tests();
    check(
        "development",
        GateInput {
            artifact: Some("---\ndev_status: DONE\n---\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &changes,
            branch_changes: &changes,
            write_allowlist: Some(&allow),
            commands: &cmds,
            artifact_dir: DIR,
        },
        VerdictClass::Pass,
        &[],
    );
}

#[test]
fn development_fails_on_empty_diff_red_tests_and_dead_agent() {
    let changes = paths(&["docs/work-items/DEMO-1/03-dev-notes.md"]);
    let allow = paths(&["**"]);
    let cmds = vec![CommandResult {
        name: "tests".into(),
        outcome: ExitOutcome::Exited(101),
        output_tail: "test greeting ... FAILED\n".into(),
    }];
    check(
        "development",
        GateInput {
            artifact: Some("---\ndev_status: DONE\n---\n"),
            agent_exit: Some(ExitOutcome::Signaled(9)),
            stage_changes: &changes,
            branch_changes: &changes,
            write_allowlist: Some(&allow),
            commands: &cmds,
            artifact_dir: DIR,
        },
        VerdictClass::Fail,
        &[
            "agent-exit: the agent was killed by signal 9",
            "diff-nonempty: the attempt changed no file besides its artifacts",
            "command: `cargo test --quiet` exited with code 101; last output:\ntest greeting ... FAILED",
        ],
    );
}

#[test]
fn a_missing_command_result_is_failed() {
    let changes = paths(&["src/main.rs"]);
    let allow = paths(&["**"]);
    check(
        "development",
        GateInput {
            artifact: Some("---\ndev_status: DONE\n---\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &changes,
            branch_changes: &changes,
            write_allowlist: Some(&allow),
            commands: &[],
            artifact_dir: DIR,
        },
        VerdictClass::Fail,
        &["command: `cargo test --quiet` was not run (an earlier gate failed)"],
    );
}

#[test]
fn writes_outside_the_allowlist_fail() {
    let changes = paths(&["docs/work-items/DEMO-1/04-review.md", "src/main.rs"]);
    let allow = paths(&["docs/work-items/*/04-review.md"]);
    let branch = paths(&["src/main.rs", "CHANGELOG.md"]);
    check(
        "review",
        GateInput {
            artifact: Some("---\nreview_verdict: APPROVE\n---\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &changes,
            branch_changes: &branch,
            write_allowlist: Some(&allow),
            commands: &[],
            artifact_dir: DIR,
        },
        VerdictClass::Fail,
        &["write-allowlist: wrote outside the role's allowlist: src/main.rs"],
    );
    check(
        "review",
        GateInput {
            artifact: Some("---\nreview_verdict: APPROVE\n---\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &changes[..1],
            branch_changes: &branch,
            write_allowlist: None,
            commands: &[],
            artifact_dir: DIR,
        },
        VerdictClass::Fail,
        &["write-allowlist: the role has no write allowlist"],
    );
}

#[test]
fn another_items_folder_is_never_writable() {
    // The reviewer's allowlist covers every item's review; writing another item's is borrowing.
    let changes = paths(&[
        "docs/work-items/DEMO-1/04-review.md",
        "docs/work-items/DEMO-2/04-review.md",
    ]);
    let allow = paths(&["docs/work-items/*/04-review.md"]);
    let branch = paths(&["CHANGELOG.md"]);
    check(
        "review",
        GateInput {
            artifact: Some("---\nreview_verdict: APPROVE\n---\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &changes,
            branch_changes: &branch,
            write_allowlist: Some(&allow),
            commands: &[],
            artifact_dir: DIR,
        },
        VerdictClass::Fail,
        &[
            "write-allowlist: wrote another item's folder (a borrowed artifact is never this \
           item's): docs/work-items/DEMO-2/04-review.md",
        ],
    );
}

#[test]
fn protected_paths_need_an_allowlist_that_names_them() {
    let changes = paths(&[
        ".gitignore",
        ".orch/pipeline.toml",
        "docs/work-items/DEMO-1/03-dev-notes.md",
        "src/main.rs",
    ]);
    let cmds = ok_tests();
    let (star, named) = (paths(&["**"]), paths(&["**", ".orch/**", ".gitignore"]));
    let input = |allow| GateInput {
        artifact: Some("---\ndev_status: DONE\n---\n"),
        agent_exit: Some(ExitOutcome::Exited(0)),
        stage_changes: &changes,
        branch_changes: &changes,
        write_allowlist: Some(allow),
        commands: &cmds,
        artifact_dir: DIR,
    };
    check(
        "development",
        input(&star),
        VerdictClass::Fail,
        &[
            "write-allowlist: wrote protected paths that modify the pipeline, which the role's \
           allowlist does not name explicitly: .gitignore, .orch/pipeline.toml",
        ],
    );
    check("development", input(&named), VerdictClass::Pass, &[]);
}

#[test]
fn extra_failures_make_any_verdict_failed() {
    let v = GateVerdict {
        class: VerdictClass::Pass,
        value: Some("DONE".into()),
        failures: vec![],
    };
    assert!(v.clone().with_failures(vec![]).is_pass());
    let failed = v.with_failures(vec![GateFailure {
        gate: GateKind::WriteAllowlist,
        reason: "x is a FIFO".into(),
    }]);
    assert_eq!(failed.class, VerdictClass::Fail);
    assert_eq!(failed.reasons(), ["write-allowlist: x is a FIFO"]);
}

#[test]
fn doc_gate_turns_an_approve_into_request_changes() {
    let changes = paths(&["docs/work-items/DEMO-1/04-review.md"]);
    let allow = paths(&["docs/work-items/*/04-review.md"]);
    let code_only = paths(&["src/main.rs", "docs/work-items/DEMO-1/03-dev-notes.md"]);
    let input = |branch: &'static [String]| GateInput {
        artifact: Some("---\nreview_verdict: APPROVE\n---\n"),
        agent_exit: Some(ExitOutcome::Exited(0)),
        stage_changes: &changes,
        branch_changes: branch,
        write_allowlist: Some(&allow),
        commands: &[],
        artifact_dir: DIR,
    };
    let code_only: &'static [String] = Box::leak(code_only.into_boxed_slice());
    check(
        "review",
        input(code_only),
        VerdictClass::Fail,
        &[
            "doc-gate: code changed (src/main.rs) without a change to the docs (docs/**, CHANGELOG.md): REQUEST_CHANGES",
        ],
    );
    let with_changelog: &'static [String] =
        Box::leak(paths(&["src/main.rs", "CHANGELOG.md"]).into_boxed_slice());
    check("review", input(with_changelog), VerdictClass::Pass, &[]);
    let docs_only: &'static [String] = Box::leak(paths(&["docs/guide.md"]).into_boxed_slice());
    check("review", input(docs_only), VerdictClass::Pass, &[]);
}

#[test]
fn verdict_values_map_to_classes() {
    let changes = paths(&["docs/work-items/DEMO-1/01-analysis.md"]);
    let allow = paths(&["docs/work-items/*/01-analysis.md"]);
    let input = |artifact: &'static str| GateInput {
        artifact: Some(artifact),
        agent_exit: Some(ExitOutcome::Exited(0)),
        stage_changes: &changes,
        branch_changes: &changes,
        write_allowlist: Some(&allow),
        commands: &[],
        artifact_dir: DIR,
    };
    check(
        "analysis",
        input("---\nanalysis_status: READY\n---\n"),
        VerdictClass::Pass,
        &[],
    );
    check(
        "analysis",
        input("---\nanalysis_status: NEEDS_INFO\n---\n"),
        VerdictClass::NeedsInfo,
        &[],
    );
    check(
        "analysis",
        input("---\nanalysis_status: ready\n---\n"),
        VerdictClass::Fail,
        &[
            "verdict: 01-analysis.md: field `analysis_status` is `ready`, not one of READY, NEEDS_INFO (values are exact and uppercase)",
        ],
    );
    let v = evaluate(
        &stage("review"),
        &GateInput {
            artifact: Some("---\nreview_verdict: REQUEST_CHANGES\n---\nAdd a CHANGELOG entry.\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &paths(&["docs/work-items/DEMO-1/04-review.md"]),
            branch_changes: &paths(&["CHANGELOG.md"]),
            write_allowlist: Some(&paths(&["docs/work-items/*/04-review.md"])),
            commands: &[],
            artifact_dir: DIR,
        },
    );
    assert_eq!(v.class, VerdictClass::Fail);
    assert_eq!(v.value.as_deref(), Some("REQUEST_CHANGES"));
    assert_eq!(
        v.reasons(),
        ["verdict: 04-review.md: review_verdict is REQUEST_CHANGES"]
    );
}

#[test]
fn a_failed_gate_outweighs_needs_info() {
    let changes = paths(&["src/evil.rs"]);
    let allow = paths(&["docs/work-items/*/01-analysis.md"]);
    check(
        "analysis",
        GateInput {
            artifact: Some("---\nanalysis_status: NEEDS_INFO\n---\n"),
            agent_exit: Some(ExitOutcome::Exited(0)),
            stage_changes: &changes,
            branch_changes: &changes,
            write_allowlist: Some(&allow),
            commands: &[],
            artifact_dir: DIR,
        },
        VerdictClass::Fail,
        &["write-allowlist: wrote outside the role's allowlist: src/evil.rs"],
    );
}

#[test]
fn action_stages_read_only_the_artifact_orch_wrote() {
    let changes = paths(&["docs/work-items/DEMO-1/15-staging-log.md"]);
    let input = |a: Option<&'static str>| GateInput {
        artifact: a,
        agent_exit: None,
        stage_changes: &changes,
        branch_changes: &changes,
        write_allowlist: None,
        commands: &[],
        artifact_dir: DIR,
    };
    check(
        "deploy-staging",
        input(Some("---\nstaging_status: SUCCESS\n---\n")),
        VerdictClass::Pass,
        &[],
    );
    check(
        "deploy-staging",
        input(None),
        VerdictClass::Fail,
        &["verdict: 15-staging-log.md: artifact is missing"],
    );
}
