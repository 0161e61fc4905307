//! The hook deployer: small shell scripts as hooks, judged by the exit-code contract (0 success,
//! 1 failed, 2 misuse, anything else FAILED), with the staging checks and the build-once proof.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_deploy::{DeployConfig, Deployer, Env, HookDeployer, Ports};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::free_ports;

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Records the environment the hook saw in `env.<TARGET_SERVICE>` inside the worktree.
const RECORD_ENV: &str = r#"
for name in TARGET_SERVICE TARGET_PORT BUILD_CONTEXT GIT_SHA SOURCE_IMAGE TARGET_IMAGE; do
  eval "echo $name=\${$name}"
done > "$BUILD_CONTEXT/env.$TARGET_SERVICE"
echo "deploying $GIT_SHA to $TARGET_SERVICE"
"#;

const PASSING_CHECK: &str = r#"
[[staging.checks]]
id = "smoke"
kind = "command"
run = "true"
tries = 1
"#;

struct Fixture {
    dir: TempDir,
    ports: Ports,
    deployer: HookDeployer,
}

impl Fixture {
    /// A worktree holding `deploy.sh` (with `body` after the environment is recorded).
    fn new(body: &str, extra_toml: &str, checks: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let worktree = dir.path().join("worktree");
        std::fs::create_dir_all(&worktree).expect("mkdir");
        let script = worktree.join("deploy.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{RECORD_ENV}\n{body}\n")).expect("write hook");
        set_executable(&script);
        let toml = format!(
            "kind = \"hook\"\n\n[hook]\ncommand = [\"./deploy.sh\"]\n{extra_toml}\n{checks}"
        );
        let DeployConfig::Hook(spec) = DeployConfig::from_toml(&toml).expect("valid config") else {
            panic!("kind = hook must read as a hook config");
        };
        let ports = free_ports();
        let deployer =
            HookDeployer::new(dir.path().join("deploy"), "shop", spec, ports).expect("deployer");
        Fixture {
            dir,
            ports,
            deployer,
        }
    }

    fn worktree(&self) -> PathBuf {
        self.dir.path().join("worktree")
    }

    fn seen_env(&self, env: Env) -> String {
        std::fs::read_to_string(self.worktree().join(format!("env.{env}"))).unwrap_or_default()
    }

    async fn staging(&self, sha: &str) -> orch_deploy::StagingReport {
        self.deployer
            .deploy_staging(&self.worktree(), sha, true, &CancellationToken::new())
            .await
    }

    async fn promote(&self, sha: &str) -> orch_deploy::DeployReport {
        self.deployer.promote(sha, &CancellationToken::new()).await
    }
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn failure_reason(report: &orch_deploy::StagingReport) -> String {
    assert!(!report.verdict.is_success(), "must be FAILED: {report:?}");
    report.error.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_successful_hook_gets_the_documented_environment_and_its_artifact_reaches_prod() {
    let f = Fixture::new(
        r#"[ "$TARGET_SERVICE" = staging ] && echo "ORCH_ARTIFACT=registry.local/shop@sha256:0abc"
exit 0"#,
        "timeout_secs = 30",
        PASSING_CHECK,
    );
    let staged = f.staging(SHA_A).await;
    assert!(staged.verdict.is_success(), "{staged:?}");
    assert_eq!(
        staged.base_url,
        format!("http://127.0.0.1:{}", f.ports.staging)
    );
    let seen = f.seen_env(Env::Staging);
    let worktree = f.worktree().display().to_string();
    for expected in [
        "TARGET_SERVICE=staging".to_owned(),
        format!("TARGET_PORT={}", f.ports.staging),
        format!("BUILD_CONTEXT={worktree}"),
        format!("GIT_SHA={SHA_A}"),
        format!("TARGET_IMAGE=orch-shop:{SHA_A}"),
        "SOURCE_IMAGE=".to_owned(),
    ] {
        assert!(
            seen.lines().any(|l| l == expected),
            "{expected} in:\n{seen}"
        );
    }
    assert!(
        staged
            .lines
            .iter()
            .any(|l| l == "PASS smoke (REAL): `true` exited 0"),
        "the staging checks ran after the hook: {:?}",
        staged.lines
    );
    let log = std::fs::read_to_string(f.deployer.hook_log(Env::Staging, SHA_A)).expect("hook log");
    assert!(
        log.contains(&format!("deploying {SHA_A} to staging")),
        "{log}"
    );

    let promoted = f.promote(SHA_A).await;
    assert!(promoted.is_success(), "{promoted:?}");
    let seen = f.seen_env(Env::Prod);
    for expected in [
        "TARGET_SERVICE=prod".to_owned(),
        format!("TARGET_PORT={}", f.ports.prod),
        format!("GIT_SHA={SHA_A}"),
        format!("BUILD_CONTEXT={worktree}"),
        "SOURCE_IMAGE=registry.local/shop@sha256:0abc".to_owned(),
        "TARGET_IMAGE=orch-shop:prod".to_owned(),
    ] {
        assert!(
            seen.lines().any(|l| l == expected),
            "{expected} in:\n{seen}"
        );
    }
}

#[tokio::test]
async fn without_a_printed_artifact_prod_gets_the_sha_tagged_name() {
    let f = Fixture::new("exit 0", "", PASSING_CHECK);
    assert!(f.staging(SHA_A).await.verdict.is_success());
    assert!(f.promote(SHA_A).await.is_success());
    assert!(
        f.seen_env(Env::Prod)
            .lines()
            .any(|l| l == format!("SOURCE_IMAGE=orch-shop:{SHA_A}")),
        "{}",
        f.seen_env(Env::Prod)
    );
}

#[tokio::test]
async fn every_exit_but_zero_is_failed_with_the_contract_meaning_and_leaves_nothing_to_promote() {
    for (code, meaning) in [
        (1, "exited 1: the deploy failed"),
        (2, "exited 2: misuse or configuration error"),
        (3, "exited 3, which the hook contract does not define"),
    ] {
        let f = Fixture::new(&format!("exit {code}"), "", PASSING_CHECK);
        let report = f.staging(SHA_A).await;
        let reason = failure_reason(&report);
        assert!(reason.contains(meaning), "exit {code}: {reason}");
        assert!(reason.contains("staging deploy hook"), "{reason}");
        assert!(report.checks.is_empty(), "no checks after a failed hook");
        let promoted = f.promote(SHA_A).await;
        assert!(!promoted.is_success(), "exit {code} must validate nothing");
        assert!(f.seen_env(Env::Prod).is_empty(), "the prod hook never ran");
    }
}

#[tokio::test]
async fn exit_2_blocks_the_item_as_infrastructure_while_exit_1_is_the_changes_fault() {
    for (code, infra) in [(1, false), (2, true), (3, false)] {
        let f = Fixture::new(&format!("exit {code}"), "", PASSING_CHECK);
        let report = f.staging(SHA_A).await;
        assert!(!report.verdict.is_success(), "exit {code}: {report:?}");
        assert_eq!(report.infra_error, infra, "exit {code}: {:?}", report.error);
    }
}

#[tokio::test]
async fn a_killed_hook_is_failed_naming_the_signal() {
    let f = Fixture::new("kill -9 $$", "", PASSING_CHECK);
    let reason = failure_reason(&f.staging(SHA_A).await);
    assert!(reason.contains("killed by signal 9"), "{reason}");
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_and_failed() {
    let f = Fixture::new("sleep 30", "timeout_secs = 1", PASSING_CHECK);
    let started = std::time::Instant::now();
    let reason = failure_reason(&f.staging(SHA_A).await);
    assert!(reason.contains("timed out"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed at its timeout"
    );
}

#[tokio::test]
async fn a_zero_exit_with_a_failing_real_check_is_failed_and_not_promotable() {
    let failing = r#"
[[staging.checks]]
id = "smoke"
kind = "command"
run = "false"
tries = 1
"#;
    let f = Fixture::new("exit 0", "", failing);
    let report = f.staging(SHA_A).await;
    assert!(!report.verdict.is_success(), "{report:?}");
    assert!(!f.promote(SHA_A).await.is_success());
}

#[tokio::test]
async fn promotion_refuses_any_sha_but_the_validated_one() {
    let f = Fixture::new("exit 0", "", PASSING_CHECK);
    assert!(f.staging(SHA_A).await.verdict.is_success());
    let refused = f.promote(SHA_B).await;
    let orch_deploy::DeployStatus::Failed { reason } = &refused.status else {
        panic!("promoting an unvalidated SHA must fail: {refused:?}");
    };
    assert!(reason.contains("never passed staging"), "{reason}");
    assert!(f.seen_env(Env::Prod).is_empty(), "the prod hook never ran");
    assert!(
        f.promote(SHA_A).await.is_success(),
        "the validated SHA still promotes"
    );
}

#[tokio::test]
async fn a_later_failed_staging_run_voids_the_proof() {
    // Only staging breaks: the prod hook itself would succeed, so a refused promotion can only
    // come from the voided proof, and the prod hook must never have been started.
    let f = Fixture::new(
        r#"[ "$TARGET_SERVICE" = staging ] && [ -f "$BUILD_CONTEXT/broken" ] && exit 1
exit 0"#,
        "",
        PASSING_CHECK,
    );
    assert!(f.staging(SHA_A).await.verdict.is_success());
    std::fs::write(f.worktree().join("broken"), "").expect("break the hook");
    assert!(!f.staging(SHA_A).await.verdict.is_success());
    let promoted = f.promote(SHA_A).await;
    assert!(
        !promoted.is_success(),
        "the earlier proof is void: {promoted:?}"
    );
    assert!(f.seen_env(Env::Prod).is_empty(), "the prod hook never ran");
}
