use super::*;
use crate::gate::{GateFailure, GateVerdict, VerdictClass};
use crate::pipeline::{DEFAULT_PIPELINE_TOML, GateKind};
use crate::spend::{LimitScope, Overrun};

fn pipeline() -> Pipeline {
    Pipeline::from_toml(DEFAULT_PIPELINE_TOML).expect("valid")
}

fn name(s: &str) -> StageName {
    StageName::parse(s).expect("valid")
}

fn pass() -> Outcome {
    Outcome::Verdict {
        verdict: GateVerdict {
            class: VerdictClass::Pass,
            value: None,
            failures: vec![],
        },
        fingerprint: String::new(),
        overrun: None,
    }
}

fn fail(reason: &str, fingerprint: &str) -> Outcome {
    Outcome::Verdict {
        verdict: GateVerdict {
            class: VerdictClass::Fail,
            value: None,
            failures: vec![GateFailure {
                gate: GateKind::Command,
                reason: reason.into(),
            }],
        },
        fingerprint: fingerprint.into(),
        overrun: None,
    }
}

/// Applies outcomes in order and returns a one-line summary per step: stage, status, effects.
fn run(outcomes: Vec<Outcome>) -> Vec<String> {
    let p = pipeline();
    let d = start(&p);
    let mut lines = vec![summary(&d)];
    let mut progress = d.progress;
    for o in outcomes {
        match decide(&p, &progress, o) {
            Ok(d) => {
                lines.push(summary(&d));
                progress = d.progress;
            }
            Err(e) => lines.push(format!("error: {e}")),
        }
    }
    lines
}

fn summary(d: &Decision) -> String {
    let effects: Vec<String> = d
        .effects
        .iter()
        .map(|e| match e {
            Effect::StartRun {
                stage,
                attempt,
                feedback,
            } => {
                format!(
                    "start {stage}#{attempt}{}",
                    if feedback.is_empty() {
                        String::new()
                    } else {
                        format!(" fb={}", feedback.len())
                    }
                )
            }
            Effect::Blocked { reason } => format!("blocked: {reason}"),
            Effect::NeedsInfo => "needs-info".into(),
            Effect::Merge => "merge".into(),
            Effect::Cancel => "cancel".into(),
        })
        .collect();
    format!(
        "{} {} [{}]",
        d.progress.stage,
        d.progress.status.as_str(),
        effects.join(", ")
    )
}

#[test]
fn happy_path_through_the_canon() {
    let lines = run(vec![
        pass(),
        pass(),
        pass(),
        pass(),
        pass(),
        pass(),
        Outcome::Approved,
        pass(),
        Outcome::Merged,
    ]);
    assert_eq!(
        lines,
        [
            "analysis queued [start analysis#1]",
            "architecture queued [start architecture#1]",
            "development queued [start development#1]",
            "review queued [start review#1]",
            "qa queued [start qa#1]",
            "deploy-staging queued [start deploy-staging#1]",
            "confirm-deploy awaiting-approval [start confirm-deploy#1]",
            "deploy queued [start deploy#1]",
            "deploy merging [merge]",
            "deploy done []",
        ]
    );
}

#[test]
fn rollback_carries_feedback_and_counts_attempts() {
    let lines = run(vec![
        pass(),
        pass(),
        pass(),
        fail("REQUEST_CHANGES", "r1"),
        pass(),
        pass(),
    ]);
    assert_eq!(lines[4], "development queued [start development#2 fb=2]");
    assert_eq!(lines[6], "qa queued [start qa#1]");
}

#[test]
fn budget_spent_blocks() {
    // development -> development has budget 3: three retries, the fourth failure blocks.
    let lines = run(vec![
        pass(),
        pass(),
        fail("a", "1"),
        fail("b", "2"),
        fail("c", "3"),
        fail("d", "4"),
    ]);
    assert_eq!(lines[3], "development queued [start development#2 fb=2]");
    assert_eq!(lines[5], "development queued [start development#4 fb=2]");
    assert_eq!(
        lines[6],
        "development blocked [blocked: budget of 3 for development->development is spent (command: d)]"
    );
}

#[test]
fn repeated_identical_failure_stops_at_once() {
    let lines = run(vec![pass(), pass(), fail("same", "fp"), fail("same", "fp")]);
    assert_eq!(
        lines[4],
        "development blocked [blocked: stage development failed again identically (command: same); retrying would only burn tokens]"
    );
}

#[test]
fn needs_info_waits_and_retry_resumes_with_the_answer() {
    let needs = Outcome::Verdict {
        verdict: GateVerdict {
            class: VerdictClass::NeedsInfo,
            value: Some("NEEDS_INFO".into()),
            failures: vec![],
        },
        fingerprint: String::new(),
        overrun: None,
    };
    let lines = run(vec![
        needs,
        Outcome::Retried {
            answer: Some("use port 8080".into()),
        },
        Outcome::Approved,
    ]);
    assert_eq!(lines[1], "analysis needs-info [needs-info]");
    assert_eq!(lines[2], "analysis queued [start analysis#2 fb=1]");
    assert_eq!(
        lines[3],
        "error: item is queued, not awaiting approval at an approval stage"
    );
}

#[test]
fn block_verdict_does_not_spend_budget() {
    let block = Outcome::Verdict {
        verdict: GateVerdict {
            class: VerdictClass::Block("sandbox broken".into()),
            value: None,
            failures: vec![],
        },
        fingerprint: String::new(),
        overrun: None,
    };
    let lines = run(vec![block, Outcome::Retried { answer: None }]);
    assert_eq!(lines[1], "analysis blocked [blocked: sandbox broken]");
    assert_eq!(lines[2], "analysis queued [start analysis#2]");
}

#[test]
fn stop_cancels_and_terminal_items_refuse_everything() {
    let lines = run(vec![pass(), Outcome::Stopped, pass(), Outcome::Stopped]);
    assert_eq!(lines[2], "architecture cancelled [cancel]");
    assert_eq!(lines[3], "error: item is already cancelled");
    assert_eq!(lines[4], "error: item is already cancelled");
}

#[test]
fn a_stage_missing_from_the_pipeline_is_an_error() {
    let p = pipeline();
    let mut progress = start(&p).progress;
    progress.stage = name("gone");
    assert_eq!(
        decide(&p, &progress, pass()),
        Err(DecideError::UnknownStage(name("gone")))
    );
}

fn over_tokens(stage: &str) -> Overrun {
    Overrun::Tokens {
        scope: LimitScope::Stage(stage.into()),
        limit: 100,
        spent: 150,
    }
}

/// `outcome` (a verdict) with a spend overrun attached.
fn over(outcome: Outcome, overrun: Overrun) -> Outcome {
    match outcome {
        Outcome::Verdict {
            verdict,
            fingerprint,
            ..
        } => Outcome::Verdict {
            verdict,
            fingerprint,
            overrun: Some(overrun),
        },
        other => other,
    }
}

#[test]
fn a_run_refused_for_spend_blocks_at_its_stage_and_a_retry_runs_it_again() {
    let lines = run(vec![
        pass(),
        Outcome::OverBudget(over_tokens("architecture")),
        Outcome::Retried { answer: None },
    ]);
    assert_eq!(
        lines[2],
        "architecture blocked [blocked: stage architecture's token budget of 100 is spent (150 tokens used)]"
    );
    assert_eq!(lines[3], "architecture queued [start architecture#2]");
}

#[test]
fn a_run_that_overspent_holds_the_item_where_it_would_go_next() {
    // A pass: held at the next stage, whose first run a retry starts.
    let lines = run(vec![
        over(pass(), over_tokens("analysis")),
        Outcome::Retried { answer: None },
    ]);
    assert_eq!(
        lines[1],
        "architecture blocked [blocked: stage analysis's token budget of 100 is spent (150 tokens used)]"
    );
    assert_eq!(lines[2], "architecture queued [start architecture#1]");
    // A failure with a fail edge: held at the edge's target, attempt count unchanged.
    let lines = run(vec![
        pass(),
        pass(),
        over(fail("tests", "f1"), over_tokens("development")),
        Outcome::Retried { answer: None },
    ]);
    assert_eq!(
        lines[3],
        "development blocked [blocked: stage development's token budget of 100 is spent (150 tokens used)]"
    );
    assert_eq!(lines[4], "development queued [start development#2]");
}

#[test]
fn an_overrun_does_not_change_decisions_that_start_no_run() {
    let p = pipeline();
    let mut progress = start(&p).progress;
    progress.stage = name("deploy");
    progress.status = ItemStatus::Running;
    let d = decide(&p, &progress, over(pass(), over_tokens("deploy"))).expect("decides");
    assert_eq!(summary(&d), "deploy merging [merge]");
    // Refused outside a run: the item moved on without this worker.
    progress.status = ItemStatus::Blocked;
    assert_eq!(
        decide(&p, &progress, Outcome::OverBudget(over_tokens("deploy"))),
        Err(DecideError::NotRunning { status: "blocked" })
    );
}

#[test]
fn an_expired_approval_goes_back_to_the_approval_stage_without_spending_budget() {
    let reapprove = || Outcome::Verdict {
        verdict: GateVerdict {
            class: VerdictClass::Reapprove("the approval expired".into()),
            value: None,
            failures: vec![],
        },
        fingerprint: String::new(),
        overrun: None,
    };
    let mut outcomes = vec![pass(), pass(), pass(), pass(), pass(), pass()];
    outcomes.extend([Outcome::Approved, reapprove(), Outcome::Approved, pass()]);
    let lines = run(outcomes);
    assert_eq!(lines[7], "deploy queued [start deploy#1]");
    assert_eq!(
        lines[8],
        "confirm-deploy awaiting-approval [start confirm-deploy#2 fb=1]"
    );
    assert_eq!(lines[9], "deploy queued [start deploy#2]");
    assert_eq!(lines[10], "deploy merging [merge]");

    // A stage with no approval before it has nowhere to go back to: it blocks instead.
    let early = run(vec![reapprove()]);
    assert_eq!(early[1], "analysis blocked [blocked: the approval expired]");
}

#[test]
fn a_moved_default_branch_sends_the_deploy_back_to_staging_without_spending_budget() {
    let revalidate = || Outcome::Verdict {
        verdict: GateVerdict {
            class: VerdictClass::Revalidate("main moved".into()),
            value: None,
            failures: vec![],
        },
        fingerprint: String::new(),
        overrun: None,
    };
    let mut outcomes = vec![pass(), pass(), pass(), pass(), pass(), pass()];
    outcomes.extend([Outcome::Approved, revalidate(), pass()]);
    // Three times in a row: more than any fail budget, and still no block.
    outcomes.extend([Outcome::Approved, revalidate(), pass(), Outcome::Approved]);
    outcomes.extend([revalidate(), pass(), Outcome::Approved, pass()]);
    let lines = run(outcomes);
    assert_eq!(lines[7], "deploy queued [start deploy#1]");
    assert_eq!(
        lines[8],
        "deploy-staging queued [start deploy-staging#2 fb=1]"
    );
    assert_eq!(
        lines[9],
        "confirm-deploy awaiting-approval [start confirm-deploy#2]"
    );
    assert_eq!(
        lines[14],
        "deploy-staging queued [start deploy-staging#4 fb=1]"
    );
    assert_eq!(lines[17], "deploy merging [merge]");

    // A stage with no deploy-staging before it has nowhere to go back to: it blocks instead.
    let early = run(vec![revalidate()]);
    assert_eq!(early[1], "analysis blocked [blocked: main moved]");
}
