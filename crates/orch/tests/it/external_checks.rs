//! The team's own CI has a say: the checks a project requires must have passed on the very
//! candidate before it is promoted, read from the forge (the fake GitHub's check runs with their
//! output, the fake Gitea's commit statuses). A red check sends the item back to development
//! with its output in the prompt; a check on another commit, a cancelled run or a pending one
//! is no verdict (the deploy waits, then blocks); the same red check twice stops the item.

use std::path::Path;

use orch_integrations::fake::github::CheckRun;
use orch_integrations::fake::{FakeApi, FakeServer};

use crate::queue::{Drives, events_of, runs_of, status};
use crate::queue_forge::{Forged, TOKEN, candidate, forged, gitea, github};

/// A forge project whose `[projects.forge.checks]` requires `required`, waiting `timeout_secs`.
async fn with_checks<A: FakeApi>(
    kind: &str,
    required: &str,
    timeout_secs: u64,
    fake: impl AsyncFnOnce(&Path) -> A,
) -> (Forged, FakeServer<A>) {
    with_checks_before(kind, required, timeout_secs, "[]", fake).await
}

/// The same, with `before_stages = before`.
async fn with_checks_before<A: FakeApi>(
    kind: &str,
    required: &str,
    timeout_secs: u64,
    before: &str,
    fake: impl AsyncFnOnce(&Path) -> A,
) -> (Forged, FakeServer<A>) {
    let (f, server) = forged(false, kind, fake).await;
    f.second_development_attempt_fixes();
    let config = f.orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    toml.push_str(&format!(
        "\n[projects.forge.checks]\nrequired = {required}\ntimeout_secs = {timeout_secs}\n\
         poll_secs = 1\nbefore_stages = {before}\n"
    ));
    std::fs::write(&config, toml).expect("write orch.toml");
    (f, server)
}

fn red(sha: &str, output: &str) -> CheckRun {
    CheckRun {
        name: "test".into(),
        head_sha: sha.into(),
        status: "completed".into(),
        conclusion: Some("failure".into()),
        title: "1 test failed".into(),
        text: output.into(),
    }
}

fn green(sha: &str) -> CheckRun {
    CheckRun {
        name: "test".into(),
        head_sha: sha.into(),
        status: "completed".into(),
        conclusion: Some("success".into()),
        ..Default::default()
    }
}

/// To awaiting approval, then the candidate.
fn staged(f: &Forged) -> String {
    f.ok(&["run"]);
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    candidate(&item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_check_sends_the_item_back_with_its_output_and_a_green_one_lets_it_through() {
    let (f, server) = with_checks("github", r#"["test"]"#, 60, github).await;
    f.ok(&["item", "add", "--title", "A"]);
    let first = staged(&f);
    server
        .with(|g| {
            g.check_runs.push(red(
                &first,
                "test parse_dates ... FAILED\nexpected 3, got 4",
            ))
        })
        .await;
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    f.ok(&["run"]);
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    assert!(
        !f.orch
            .path()
            .join("deploy/quick/prod/current.json")
            .exists(),
        "nothing was promoted"
    );
    // The developer saw the check's name, its link and the end of its output.
    let prompt = std::fs::read_to_string(
        f.orch
            .path()
            .join("logs/quick/QUICK-1/development-2.prompt.md"),
    )
    .expect("a second development prompt");
    assert!(
        prompt.contains("`test` failed")
            && prompt.contains("expected 3, got 4")
            && prompt.contains("https://github.invalid/actions/runs/"),
        "{prompt}"
    );
    let second = candidate(&item);
    assert_ne!(second, first, "a new candidate, with the developer's fix");
    // What the forge said is on the item.
    assert!(
        events_of(&item, "checks.read")
            .iter()
            .any(|e| e["data"]["verdict"] == "failed" && e["data"]["sha"] == first.as_str()),
        "{item:#}"
    );
    // `orch item show` lists what the forge said, with the link.
    let shown = f.ok(&["item", "show", "QUICK-1"]);
    assert!(
        shown.contains("external checks on")
            && shown.contains("failure")
            && shown.contains("https://github.invalid/actions/runs/"),
        "{shown}"
    );
    server.with(|g| g.check_runs.push(green(&second))).await;
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    f.ok(&["run"]);
    assert_eq!(status(&f, "QUICK-1"), "done");
    f.assert_prod_is_main();
    assert_eq!(f.prod_sha(), second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_red_check_twice_stops_the_item() {
    let (f, server) = with_checks("github", r#"["test"]"#, 60, github).await;
    f.ok(&["item", "add", "--title", "A"]);
    let first = staged(&f);
    let output = "test parse_dates ... FAILED\nexpected 3, got 4";
    server
        .with(|g| g.check_runs.push(red(&first, output)))
        .await;
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    f.ok(&["run"]);
    let second = candidate(&f.item("QUICK-1"));
    server
        .with(|g| g.check_runs.push(red(&second, output)))
        .await;
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    f.ok(&["run"]);
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("failed again identically"), "{reason}");
    assert_eq!(
        runs_of(&item, "development").len(),
        2,
        "no third development run for the same failure"
    );
}

/// Waits until the timeout and blocks, with no agent run again and prod untouched.
fn assert_waited_then_blocked(f: &Forged, why: &str) {
    f.ok(&["run"]);
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no verdict after") && reason.contains(why),
        "{reason}"
    );
    assert_eq!(runs_of(&item, "development").len(), 1, "no agent ran again");
    assert!(
        !f.orch
            .path()
            .join("deploy/quick/prod/current.json")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_reported_for_another_commit_is_no_verdict() {
    let (f, server) = with_checks("gitea", r#"["ci/build"]"#, 2, gitea).await;
    f.ok(&["item", "add", "--title", "A"]);
    staged(&f);
    // Green, but on the branch's older head, not on the candidate.
    let item = f.item("QUICK-1");
    let older = runs_of(&item, "qa")
        .last()
        .and_then(|r| r["verdict"]["head"].as_str().map(str::to_owned))
        .expect("qa's head");
    server
        .with(|g| g.report_status(&older, "ci/build", "success", "all green"))
        .await;
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    assert_waited_then_blocked(&f, "ci/build is not reported on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_is_no_verdict_and_a_pending_one_blocks_after_the_timeout() {
    let (f, server) = with_checks("github", r#"["*"]"#, 2, github).await;
    f.ok(&["item", "add", "--title", "A"]);
    let sha = staged(&f);
    server
        .with(|g| {
            g.check_runs.push(CheckRun {
                name: "test".into(),
                head_sha: sha.clone(),
                status: "completed".into(),
                conclusion: Some("cancelled".into()),
                ..Default::default()
            });
            g.check_runs.push(CheckRun {
                name: "e2e".into(),
                head_sha: sha.clone(),
                status: "in_progress".into(),
                ..Default::default()
            });
        })
        .await;
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    assert_waited_then_blocked(&f, "e2e is in_progress");
    let reason = f.item("QUICK-1")["blocked_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("test ended `cancelled`"), "{reason}");
    // Reported at last, retried: delivered.
    server
        .with(|g| {
            g.check_runs.push(green(&sha));
            g.check_runs.push(CheckRun {
                name: "e2e".into(),
                ..green(&sha)
            });
        })
        .await;
    f.ok(&["retry", "QUICK-1"]);
    f.ok(&["run"]);
    assert_eq!(status(&f, "QUICK-1"), "done");
}

/// The branch head the item's latest development run recorded, once it passed.
fn development_head(f: &Forged, attempt: u64) -> Option<String> {
    let item = f.item("QUICK-1");
    runs_of(&item, "development")
        .iter()
        .find(|r| r["attempt"] == attempt && r["verdict"]["class"] == "pass")
        .and_then(|r| r["verdict"]["head"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_starts_only_once_the_checks_passed_on_the_branch_head() {
    let (f, server) =
        with_checks_before("github", r#"["test"]"#, 60, r#"["review"]"#, github).await;
    f.ok(&["item", "add", "--title", "A"]);
    let mut run = f
        .orch
        .command(&["run"])
        .env(crate::queue_forge::TOKEN_ENV, TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("orch run");
    // CI reports red on the first head, green on the second, while orch waits for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut reported = 0;
    while reported < 2 {
        assert!(std::time::Instant::now() < deadline, "no development head");
        if let Some(head) = development_head(&f, reported + 1) {
            let check = if reported == 0 {
                red(&head, "lint: unused import")
            } else {
                green(&head)
            };
            server.with(|g| g.check_runs.push(check)).await;
            reported += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let status_of_run = run.wait().expect("orch run ends");
    assert!(status_of_run.success());
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    let reviews = runs_of(&item, "review");
    assert_eq!(reviews.len(), 2, "{item:#}");
    // The first review ran no agent: failed on the check, with its output for the developer.
    let first = &reviews[0]["verdict"]["reasons"];
    assert!(first.to_string().contains("lint: unused import"), "{first}");
    assert!(
        !f.orch
            .path()
            .join("logs/quick/QUICK-1/review-1.prompt.md")
            .exists(),
        "no review agent ran on red code"
    );
    assert!(
        f.orch
            .path()
            .join("logs/quick/QUICK-1/review-2.prompt.md")
            .exists(),
        "the review agent ran on green code"
    );
}
