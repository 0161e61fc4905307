use std::os::unix::process::CommandExt;

use orch_deploy::{DeployStatus, Env};

use crate::support::{GREETING_CHECK, Project};

/// A project whose prod runs "Hello v1" (staged and promoted), returning its SHA.
async fn with_v1_in_prod(project: &Project) -> String {
    let sha = project.head();
    assert!(project.stage(&sha, true).await.verdict.is_success());
    let report = project.promote(&sha).await;
    assert_eq!(report.status, DeployStatus::Success, "{:#?}", report.lines);
    sha
}

/// Commits and stages "Hello v2"; returns its SHA.
async fn stage_v2(project: &Project) -> String {
    let sha = project.commit("Hello v2", None);
    let report = project.stage(&sha, true).await;
    assert!(report.verdict.is_success(), "{:#?}", report.lines);
    sha
}

fn reason(status: &DeployStatus) -> &str {
    match status {
        DeployStatus::Failed { reason } => reason,
        DeployStatus::Success => panic!("expected a failure"),
    }
}

#[tokio::test]
async fn prod_runs_the_very_build_that_passed_staging() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let sha = with_v1_in_prod(&project).await;
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v1")
    );
    let staging = project.current(Env::Staging).expect("staging");
    let prod = project.current(Env::Prod).expect("prod");
    assert_eq!(
        (&prod.sha, &prod.digest, &prod.build_dir),
        (&staging.sha, &staging.digest, &staging.build_dir)
    );
    assert_eq!(
        (prod.sha.as_str(), prod.port, prod.healthy),
        (sha.as_str(), project.ports.prod, true)
    );
    assert_eq!(
        project.builds_run(),
        1,
        "promotion reuses the staged build, never rebuilds"
    );
    assert!(staging.is_running(), "promotion leaves staging alone");

    let report = project.promote(&sha).await;
    let log = report.log_markdown("2026-06-07T12:39:00Z");
    assert!(log.starts_with("---\ndeploy_status: SUCCESS\n"), "{log}");
    assert!(
        log.contains(&format!("digest: \"{}\"", prod.digest)),
        "{log}"
    );
}

#[tokio::test]
async fn staging_a_new_version_never_touches_prod() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    with_v1_in_prod(&project).await;
    let prod_before = project.current(Env::Prod).expect("prod");
    stage_v2(&project).await;
    assert_eq!(
        project.greeting_on(Env::Staging).await.as_deref(),
        Ok("Hello v2")
    );
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v1")
    );
    let prod_after = project.current(Env::Prod).expect("prod");
    assert_eq!(prod_after, prod_before, "same record, same pid");
    assert!(prod_after.is_running());
}

#[tokio::test]
async fn only_the_validated_sha_and_an_untampered_build_are_promoted() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let v1 = with_v1_in_prod(&project).await;
    let prod = project.current(Env::Prod).expect("prod");

    // A SHA that never passed staging.
    let v2 = project.commit("Hello v2", None);
    let report = project.promote(&v2).await;
    assert!(
        reason(&report.status).contains(&format!("{v2} never passed staging")),
        "{:?}",
        report.status
    );

    // The artifact's bytes changed after staging.
    assert!(project.stage(&v2, true).await.verdict.is_success());
    let build_dir = project.root().join("builds").join(&v2);
    std::fs::write(build_dir.join("artifact/dist/greeting.txt"), "Hello evil\n").expect("tamper");
    let report = project.promote(&v2).await;
    assert!(
        reason(&report.status).contains("does not match its label (the files hash to sha256:"),
        "{:?}",
        report.status
    );

    // The label's SHA was rewritten.
    assert!(
        !project.stage(&v2, true).await.build.expect("build").reused,
        "a mismatching build is rebuilt"
    );
    let label_path = build_dir.join("build.json");
    let label = std::fs::read_to_string(&label_path).expect("label");
    std::fs::write(&label_path, label.replace(&v2, &v1)).expect("tamper label");
    let report = project.promote(&v2).await;
    assert!(
        reason(&report.status).contains(&format!("its label says it was built from {v1}")),
        "{:?}",
        report.status
    );

    assert_eq!(
        project.current(Env::Prod),
        Some(prod),
        "every refusal left prod untouched"
    );
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v1")
    );
}

#[tokio::test]
async fn a_prod_build_that_fails_its_health_check_is_replaced_by_the_previous_one() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let v1 = with_v1_in_prod(&project).await;
    let v2 = stage_v2(&project).await;
    project.fail_health_of(&["Hello v2"]);

    let report = project.promote(&v2).await;
    assert!(
        reason(&report.status).contains("the prod instance never became healthy"),
        "{:?}",
        report.status
    );
    assert_eq!(
        (report.restored.as_deref(), report.frozen),
        (Some(v1.as_str()), false)
    );
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v1")
    );
    let prod = project.current(Env::Prod).expect("restored prod");
    assert!(prod.sha == v1 && prod.healthy && prod.is_running());
    let log = report.log_markdown("t");
    assert!(
        log.contains("deploy_status: FAILED") && log.contains(&format!("restored_to: \"{v1}\"")),
        "{log}"
    );
}

#[tokio::test]
async fn after_a_restore_promotions_pause_until_a_person_resumes_them() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    with_v1_in_prod(&project).await;
    let v2 = stage_v2(&project).await;
    project.fail_health_of(&["Hello v2"]);
    let restored = project.promote(&v2).await;
    assert!(restored.restored.is_some(), "{:#?}", restored.lines);
    assert!(
        restored
            .lines
            .iter()
            .any(|l| l.contains("promotions are PAUSED")),
        "{:#?}",
        restored.lines
    );

    project.fail_health_of(&[]);
    let again = project.promote(&v2).await;
    let refused = reason(&again.status);
    assert!(
        refused.starts_with("promotions are paused since prod was restored"),
        "{refused}"
    );
    assert!(
        refused.contains("the prod instance never became healthy"),
        "{refused}"
    );
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v1"),
        "a refused promotion leaves prod alone"
    );

    let cleared = orch_deploy::resume_promotions(&project.root()).expect("resume");
    assert!(cleared.is_some_and(|r| r.contains("prod was restored")));
    assert_eq!(
        orch_deploy::resume_promotions(&project.root()).expect("resume again"),
        None,
        "nothing left to resume"
    );
    assert_eq!(project.promote(&v2).await.status, DeployStatus::Success);
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v2")
    );
}

#[tokio::test]
async fn a_failed_restore_freezes_prod_until_a_person_clears_it() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    with_v1_in_prod(&project).await;
    let v2 = stage_v2(&project).await;
    project.fail_health_of(&["Hello v1", "Hello v2"]);

    let report = project.promote(&v2).await;
    assert!(
        report.frozen && report.restored.is_none(),
        "{:#?}",
        report.lines
    );
    assert!(
        reason(&report.status).contains("failed too"),
        "{:?}",
        report.status
    );
    let marker = project.root().join("prod/FROZEN");
    assert!(marker.is_file());
    assert_eq!(
        project.current(Env::Prod),
        None,
        "nothing unhealthy is left running"
    );

    project.fail_health_of(&[]);
    let again = project.promote(&v2).await;
    let refused = reason(&again.status);
    assert!(
        refused.starts_with("prod is frozen since a restore failed"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!(
            "then delete {} to allow deploys again",
            marker.display()
        )),
        "{refused}"
    );

    std::fs::remove_file(&marker).expect("a person clears the freeze");
    assert_eq!(project.promote(&v2).await.status, DeployStatus::Success);
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v2")
    );
}

#[tokio::test]
async fn a_prod_port_held_by_another_program_is_refused_before_anything_changes() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let sha = project.head();
    assert!(project.stage(&sha, true).await.verdict.is_success());
    let squatter =
        std::net::TcpListener::bind(("127.0.0.1", project.ports.prod)).expect("take the port");
    let report = project.promote(&sha).await;
    assert_eq!(
        reason(&report.status),
        format!(
            "port {} is in use by another program; free it or set a different prod port",
            project.ports.prod
        )
    );
    assert!(!report.frozen && !project.root().join("prod/FROZEN").exists());
    assert!(
        report.infra_error,
        "a stranger on the port is not the change's fault: the item must block, not go back"
    );
    drop(squatter);
}

#[tokio::test]
async fn an_unhealthy_change_is_the_changes_fault_and_a_paused_prod_is_not() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    with_v1_in_prod(&project).await;
    let v2 = stage_v2(&project).await;
    project.fail_health_of(&["Hello v2"]);
    let report = project.promote(&v2).await;
    assert!(report.restored.is_some(), "{:#?}", report.lines);
    assert!(!report.infra_error, "{:#?}", report.lines);
    // The restore paused promotions: the next one waits for a person, not for a developer.
    let refused = project.promote(&v2).await;
    assert!(
        reason(&refused.status).contains("paused"),
        "{:#?}",
        refused.lines
    );
    assert!(refused.infra_error);
}

#[tokio::test]
async fn an_instance_whose_start_was_never_recorded_does_not_outlive_the_next_promotion() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    with_v1_in_prod(&project).await;
    let v2 = stage_v2(&project).await;
    // orch died right after spawning a prod instance, before recording it: the marker file and
    // a process carrying the marker are all that is left.
    std::fs::write(
        project.root().join("prod/starting.json"),
        r#"{"token":"prod-test-1"}"#,
    )
    .expect("marker");
    let mut stray = std::process::Command::new("sleep")
        .arg("120")
        .env("ORCH_INSTANCE_START", "prod-test-1")
        .process_group(0)
        .spawn()
        .expect("spawn the stray instance");
    let pid = stray.id();
    let report = project.promote(&v2).await;
    assert_eq!(report.status, DeployStatus::Success, "{:#?}", report.lines);
    // Reaped (and waited for) by the promotion: it exits by the signal orch sent.
    let status = stray.wait().expect("wait");
    assert!(!status.success(), "pid {pid} was killed: {status:?}");
    assert!(!project.root().join("prod/starting.json").exists());
}

/// A project whose promotions soak for `secs` seconds, probing every 100 ms.
fn soaking(secs: u32) -> Project {
    Project::new(
        "Hello v1",
        &format!("{GREETING_CHECK}\n[soak]\nsecs = {secs}\ninterval_ms = 100\n"),
    )
}

#[tokio::test]
async fn a_healthy_promotion_is_watched_through_its_soak_window() {
    let project = soaking(1);
    let started = std::time::Instant::now();
    with_v1_in_prod(&project).await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let v2 = stage_v2(&project).await;
    let report = project.promote(&v2).await;
    assert_eq!(report.status, DeployStatus::Success, "{:#?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("stayed healthy through its 1s soak window")),
        "{:#?}",
        report.lines
    );
}

#[tokio::test]
async fn an_app_that_dies_mid_soak_is_a_failed_deploy_restored_and_paused() {
    let project = soaking(4);
    let v1 = with_v1_in_prod(&project).await;
    let v2 = stage_v2(&project).await;
    let root = project.root();
    let doomed = v2.clone();
    // Kills v2 once it is prod and healthy: it dies during its soak.
    let killer = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let current = std::fs::read_to_string(root.join("prod/current.json")).ok();
            let record: Option<serde_json::Value> =
                current.and_then(|t| serde_json::from_str(&t).ok());
            if let Some(record) = record
                && record["sha"] == doomed.as_str()
                && record["healthy"] == true
                && let Some(pid) = record["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
                && pid > 1
            {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let group = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    });
    let report = project.promote(&v2).await;
    assert!(
        killer.await.expect("killer"),
        "v2 never ran healthy in prod, so it could not die mid-soak: {:#?}",
        report.lines
    );
    let why = reason(&report.status);
    assert!(why.contains("soak window"), "{why}");
    assert_eq!(
        report.restored.as_deref(),
        Some(v1.as_str()),
        "{:#?}",
        report.lines
    );
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("promotions are PAUSED")),
        "{:#?}",
        report.lines
    );
    assert_eq!(
        project.greeting_on(Env::Prod).await.as_deref(),
        Ok("Hello v1")
    );
}
