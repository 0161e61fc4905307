//! The staging gate end to end: INFRA-only failures are waived (or block the item in strict mode)
//! and never send it back to development, a REAL failure always does; approvals are bound to the
//! validated build and given only by the people allowed to.

use serde_json::Value;

use crate::harness::{Orch, git};

/// Always fails, and is on the INFRA allowlist: the sandbox, not the change, is broken.
const INFRA_CHECK_FAILS: &str = r#"
[[staging.checks]]
id = "sandbox"
category = "INFRA"
kind = "command"
run = "false"
tries = 1
"#;

/// Always fails, and is REAL: the change is broken.
const REAL_CHECK_FAILS: &str = r#"
[[staging.checks]]
id = "smoke"
category = "REAL"
kind = "command"
run = "false"
tries = 1
"#;

const STRICT: (&str, &str) = ("ORCH_STAGING_INFRA_TOLERANCE_ENABLED", "false");
const TOLERANT: (&str, &str) = ("ORCH_STAGING_INFRA_TOLERANCE_ENABLED", "true");

/// The quick project with the bench deploy config (a passing REAL health check) plus `checks`.
fn with_checks(checks: &str) -> Orch {
    let orch = Orch::new(None);
    let deploy = include_str!("../../kit/bench/deploy.toml")
        .replace("infra_allowlist = []", "infra_allowlist = [\"sandbox\"]");
    commit_file(&orch, ".orch/deploy.toml", &format!("{deploy}\n{checks}"));
    orch
}

fn commit_file(orch: &Orch, rel: &str, text: &str) {
    std::fs::write(orch.repo().join(rel), text).expect("write");
    git(&orch.repo(), &["commit", "-qam", &format!("test: {rel}")]);
}

fn run_with(orch: &Orch, setting: (&str, &str)) {
    let out = orch
        .command(&["run"])
        .env(setting.0, setting.1)
        .output()
        .expect("orch runs");
    assert!(
        out.status.success(),
        "orch run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn staging_log(orch: &Orch) -> String {
    let path = orch.path().join("logs/quick/QUICK-1/15-staging-log.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn events_of(item: &Value) -> &Vec<Value> {
    item["events"].as_array().expect("events")
}

fn runs_of(item: &Value, stage: &str) -> usize {
    item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["stage"] == stage)
        .count()
}

/// The stage entered right after deploy-staging first failed.
fn stage_after_first_staging_failure(item: &Value) -> Option<String> {
    let events = events_of(item);
    let failed = events
        .iter()
        .position(|e| e["kind"] == "stage.failed" && e["data"]["stage"] == "deploy-staging")?;
    events[failed..]
        .iter()
        .find(|e| e["kind"] == "stage.entered")
        .and_then(|e| e["data"]["stage"].as_str().map(str::to_owned))
}

#[test]
fn an_infra_only_failure_is_waived_by_default_and_the_log_says_so() {
    let orch = with_checks(INFRA_CHECK_FAILS);
    orch.ok(&["item", "add", "--title", "infra flake"]);
    run_with(&orch, TOLERANT);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    assert_eq!(item["stage"], "confirm-deploy", "{item:#}");
    let log = staging_log(&orch);
    assert!(log.contains("staging_status: SUCCESS"), "{log}");
    assert!(log.contains("\nINFRA-WAIVED: sandbox"), "{log}");
    assert_eq!(runs_of(&item, "development"), 1, "never rolled back");
    let done = orch.drive_to_end("QUICK-1");
    assert_eq!(done["status"], "done", "{done:#}");
}

#[test]
fn an_infra_only_failure_in_strict_mode_blocks_the_item_instead_of_rolling_it_back() {
    let orch = with_checks(INFRA_CHECK_FAILS);
    orch.ok(&["item", "add", "--title", "infra flake, strict"]);
    run_with(&orch, STRICT);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert_eq!(item["stage"], "deploy-staging", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("INFRA"), "the reason names INFRA: {reason}");
    assert_eq!(runs_of(&item, "development"), 1, "never rolled back");
    assert!(staging_log(&orch).contains("staging_status: FAILED"));
}

#[test]
fn a_real_failure_goes_back_to_development_whatever_the_setting() {
    for setting in [TOLERANT, STRICT] {
        let orch = with_checks(&format!("{INFRA_CHECK_FAILS}\n{REAL_CHECK_FAILS}"));
        orch.ok(&["item", "add", "--title", "really broken"]);
        run_with(&orch, setting);
        let item = orch.item("QUICK-1");
        assert_eq!(
            stage_after_first_staging_failure(&item).as_deref(),
            Some("development"),
            "{setting:?}: {item:#}"
        );
        assert_ne!(item["status"], "awaiting-approval", "{setting:?}");
        assert_ne!(item["status"], "done", "{setting:?}");
    }
}

fn approve(orch: &Orch, by: &str) -> std::process::Output {
    orch.run(&["approve", "QUICK-1", "--by", by])
}

fn refusal(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "the approval must be refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn approvals(item: &Value) -> Vec<&Value> {
    events_of(item)
        .iter()
        .filter(|e| e["kind"] == "approval.granted")
        .collect()
}

#[test]
fn an_agent_can_never_approve_and_a_person_approves_the_validated_sha() {
    let orch = Orch::new(None);
    orch.ok(&["item", "add", "--title", "approve me"]);
    orch.ok(&["run"]);
    for agent in ["claude", "scripted", "agent:deployer"] {
        let message = refusal(&approve(&orch, agent));
        assert!(message.contains("names an agent"), "{agent}: {message}");
    }
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval");
    assert!(approvals(&item).is_empty(), "a refusal records nothing");

    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    let item = orch.item("QUICK-1");
    let granted = approvals(&item);
    assert_eq!(granted.len(), 1);
    let staging_sha = events_of(&item)
        .iter()
        .rev()
        .find(|e| e["kind"] == "deploy.staging")
        .map(|e| e["data"]["sha"].clone())
        .expect("a staging deploy");
    assert_eq!(granted[0]["data"]["sha"], staging_sha, "bound to the build");
    assert_eq!(granted[0]["data"]["by"], "alice");
}

#[test]
fn only_the_listed_approvers_may_approve() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("approvers = [\"alice\", \"bob\"]\n");
    std::fs::write(&config, text).expect("orch.toml");
    orch.ok(&["item", "add", "--title", "approve me"]);
    orch.ok(&["run"]);
    let message = refusal(&approve(&orch, "mallory"));
    assert!(
        message.contains("its approvers are: alice, bob"),
        "{message}"
    );
    orch.ok(&["approve", "QUICK-1", "--by", "bob"]);
    assert_eq!(orch.item("QUICK-1")["stage"], "deploy");
}

#[test]
fn an_empty_approver_name_is_a_configuration_error_naming_the_field() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("approvers = [\"alice\", \" \"]\n");
    std::fs::write(&config, text).expect("orch.toml");
    let out = orch.run(&["item", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("approvers[1]"), "{stderr}");
}

#[test]
fn nothing_can_be_approved_before_staging_validated_it() {
    let orch = Orch::new(None);
    // The approval stage placed before deploy-staging: the item waits with nothing validated.
    let original =
        std::fs::read_to_string(orch.repo().join(".orch/pipeline.toml")).expect("pipeline");
    let mut pipeline = original.clone();
    for (from, to) in [
        (
            "artifact = \"15-staging-log.md\"\nverdict = { field = \"staging_status\", pass = [\"SUCCESS\"], fail = [\"FAILED\"] }\non_pass = \"confirm-deploy\"",
            "artifact = \"15-staging-log.md\"\nverdict = { field = \"staging_status\", pass = [\"SUCCESS\"], fail = [\"FAILED\"] }\non_pass = \"deploy\"",
        ),
        (
            "on_pass = \"deploy-staging\"",
            "on_pass = \"confirm-deploy\"",
        ),
        (
            "kind = \"approval\"\non_pass = \"deploy\"",
            "kind = \"approval\"\non_pass = \"deploy-staging\"",
        ),
    ] {
        assert!(pipeline.contains(from), "the default pipeline has `{from}`");
        pipeline = pipeline.replace(from, to);
    }
    commit_file(&orch, ".orch/pipeline.toml", &pipeline);
    orch.ok(&["item", "add", "--title", "too early"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["stage"], "confirm-deploy", "{item:#}");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    let message = refusal(&approve(&orch, "alice"));
    assert!(
        message.contains("nothing was validated to approve"),
        "{message}"
    );
    assert!(approvals(&orch.item("QUICK-1")).is_empty());
}

#[test]
fn a_hook_project_deploys_through_its_script_and_keeps_the_hook_output() {
    let orch = Orch::new(None);
    let script = orch.repo().join("deploy.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"hook $TARGET_SERVICE $GIT_SHA port $TARGET_PORT from $SOURCE_IMAGE\"\n",
    )
    .expect("hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    git(&orch.repo(), &["add", "deploy.sh"]);
    commit_file(
        &orch,
        ".orch/deploy.toml",
        "kind = \"hook\"\n\n[hook]\ncommand = [\"./deploy.sh\"]\ntimeout_secs = 30\n\n\
         [[staging.checks]]\nid = \"smoke\"\nkind = \"command\"\nrun = \"true\"\ntries = 1\n",
    );
    orch.ok(&["item", "add", "--title", "hooked"]);
    let item = orch.drive_to_end("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    let sha = events_of(&item)
        .iter()
        .find(|e| e["kind"] == "deploy.prod")
        .and_then(|e| e["data"]["sha"].as_str())
        .expect("a prod deploy")
        .to_owned();
    let hook_dir = orch.path().join("deploy/quick/hook");
    let read = |name: String| {
        std::fs::read_to_string(hook_dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert!(read(format!("{sha}.staging.log")).contains(&format!("hook staging {sha}")));
    assert!(
        read(format!("{sha}.prod.log")).contains(&format!("hook prod {sha} port ")),
        "prod got the validated SHA"
    );
    assert!(read(format!("{sha}.prod.log")).contains(&format!("from orch-quick:{sha}")));
}

/// A staging port held by another program is the sandbox's fault: the item is blocked with the
/// reason, never sent back to development.
#[test]
fn a_taken_staging_port_blocks_the_item_instead_of_rolling_it_back() {
    let orch = Orch::new(None);
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(orch.path().join("orch.toml")).expect("read"))
            .expect("toml");
    let port = config["projects"][0]["staging_port"]
        .as_integer()
        .expect("staging_port");
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", u16::try_from(port).expect("port")))
        .expect("bind");
    orch.ok(&["item", "add", "--title", "x"]);
    run_with(&orch, TOLERANT);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("port {port} is in use")),
        "{reason}"
    );
    assert!(reason.contains("not the change"), "{reason}");
    assert_eq!(
        runs_of(&item, "development"),
        1,
        "never rolled back to development"
    );
}

/// After a restore the deployer writes `deploy/<project>/prod/PAUSED`; `orch resume-promotions`
/// is how a person clears it, and says what it cleared.
#[test]
fn resume_promotions_clears_the_pause_and_says_why_it_was_there() {
    let orch = Orch::new(None);
    let marker = orch.path().join("deploy/quick/prod/PAUSED");
    std::fs::create_dir_all(marker.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &marker,
        "prod was restored to abc123 after def456 failed its health check\n",
    )
    .expect("marker");
    let out = orch.ok(&["resume-promotions"]);
    assert!(
        out.contains(
            "quick: promotions resumed; they had paused because: prod was restored to abc123"
        ),
        "{out}"
    );
    assert!(!marker.exists(), "the pause is cleared");
    let again = orch.ok(&["resume-promotions", "--project", "quick"]);
    assert!(again.contains("were not paused"), "{again}");
    let unknown = orch.run(&["resume-promotions", "--project", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// An approval older than the project's `approval_ttl_secs` when the promotion starts does not
/// cover it: the item goes back to confirm-deploy for a fresh approval, and the same validated
/// build (no second staging run) is promoted once a person approves again.
#[test]
fn an_expired_approval_asks_again_and_keeps_the_validated_build() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("approval_ttl_secs = 1\n");
    std::fs::write(&config, text).expect("orch.toml");
    orch.ok(&["item", "add", "--title", "approve me twice"]);
    orch.ok(&["run"]);
    assert_eq!(orch.item("QUICK-1")["status"], "awaiting-approval");
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    std::thread::sleep(std::time::Duration::from_millis(2200));
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item}");
    assert_eq!(item["stage"], "confirm-deploy");
    let deploy_runs: Vec<&Value> = item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["stage"] == "deploy")
        .collect();
    assert_eq!(deploy_runs.len(), 1);
    assert_eq!(deploy_runs[0]["verdict"]["class"], "reapprove");
    assert!(
        deploy_runs[0]["verdict"]["reapprove_reason"]
            .as_str()
            .is_some_and(|r| r.contains("approval by alice expired")),
        "{}",
        deploy_runs[0]
    );
    assert!(
        !orch.path().join("deploy/quick/prod/current.json").exists(),
        "nothing was promoted on the expired approval"
    );

    orch.ok(&["approve", "QUICK-1", "--by", "bob"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item}");
    let staging_runs = item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["stage"] == "deploy-staging")
        .count();
    assert_eq!(
        staging_runs, 1,
        "the build validated once is the one promoted"
    );
    crate::harness::assert_clean_history(&item);
}

/// A suite reporting C9a FAIL (on the allowlist) among passing ids: each id in the staging log,
/// the waiver orch's own.
const SUITE_C9A_FAILS: &str = r#"
[[staging.checks]]
id = "suite"
kind = "command"
tries = 1
reports = ["A1", "sandbox"]
run = "echo 'CHECK A1 PASS'; echo 'CHECK sandbox FAIL bot is not a member'; exit 1"
"#;

#[test]
fn a_suites_ids_reach_the_staging_log_and_an_infra_id_is_waived() {
    let orch = Orch::new(None);
    let deploy = include_str!("../../kit/bench/deploy.toml")
        .replace("infra_allowlist = []", "infra_allowlist = [\"sandbox\"]");
    commit_file(
        &orch,
        ".orch/deploy.toml",
        &format!("{deploy}\n{SUITE_C9A_FAILS}"),
    );
    orch.ok(&["item", "add", "--title", "suite"]);
    run_with(&orch, TOLERANT);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    let log = staging_log(&orch);
    for line in [
        "\nPASS suite (REAL): ",
        "\nPASS A1 (REAL): the suite reported PASS",
        "\nFAIL sandbox (INFRA): bot is not a member",
        "\nINFRA-WAIVED: sandbox",
    ] {
        assert!(log.contains(line), "{line}\n{log}");
    }
}
