//! `promote` of the process deployer: the build that passed staging goes to prod, or prod is
//! restored to the build it ran before, or (when that fails too) prod is frozen for a person.

use tokio_util::sync::CancellationToken;

use super::{ProcessDeployer, Validation, short};
use crate::build::{Build, check_sha_format, load_verified};
use crate::error::DeployError;
use crate::instance::{self, Env, InstanceRecord};
use crate::layout::{read_record, write_record};
use crate::pause;
use crate::report::{DeployReport, DeployStatus};
use crate::soak;

pub(super) async fn promote(
    deployer: &ProcessDeployer,
    validated_sha: &str,
    cancel: &CancellationToken,
) -> DeployReport {
    let mut report = DeployReport {
        infra_error: false,
        status: DeployStatus::Success,
        sha: validated_sha.to_owned(),
        digest: None,
        restored: None,
        frozen: false,
        lines: Vec::new(),
    };
    let build = match validated_build(deployer, validated_sha) {
        Ok(build) => build,
        Err(e) => return refuse(report, &e, e.caused_by_change()),
    };
    report.digest = Some(build.digest.clone());
    report.lines.push(format!(
        "promoting {} ({})",
        short(&build.sha),
        build.digest
    ));
    let restore_target = match prepare_prod(deployer, &mut report.lines).await {
        Ok(target) => target,
        Err(e) => return refuse(report, &e, e.caused_by_change()),
    };
    let error = match deployer
        .start_healthy(Env::Prod, &build, cancel, &mut report.lines)
        .await
    {
        Ok(record) => match soak_prod(deployer, &record, cancel, &mut report.lines).await {
            Ok(()) => return report,
            Err(e) => e,
        },
        Err(e) => e,
    };
    let Some(previous) = restore_target else {
        let reason = format!("{error}; there was no previous prod build to restore");
        return refuse(report, &reason, error.caused_by_change());
    };
    match restore(deployer, &previous, cancel, &mut report.lines).await {
        Ok(()) => {
            report.restored = Some(previous.sha.clone());
            let reason = format!("{error}; prod was restored to {}", short(&previous.sha));
            pause::pause_after_restore(&deployer.layout, &mut report.lines, &reason);
            refuse(report, &reason, error.caused_by_change())
        }
        Err(restore_error) => {
            let reason = format!(
                "{error}; restoring {} failed too: {restore_error}",
                short(&previous.sha)
            );
            let marker = deployer.layout.frozen_marker();
            if let Err(e) = std::fs::write(&marker, format!("{reason}\n")) {
                report
                    .lines
                    .push(format!("could not write {}: {e}", marker.display()));
            }
            report.frozen = true;
            report.lines.push(format!(
                "prod is FROZEN: fix it by hand, then delete {}",
                marker.display()
            ));
            // A frozen prod needs a person before anything else: the item blocks.
            refuse(report, &reason, false)
        }
    }
}

/// Watches the new prod instance through the soak window, if the project has one; a failure
/// goes down the same restore path as a failed health check.
async fn soak_prod(
    deployer: &ProcessDeployer,
    record: &InstanceRecord,
    cancel: &CancellationToken,
    lines: &mut Vec<String>,
) -> Result<(), DeployError> {
    let Some(window) = deployer.spec.soak else {
        return Ok(());
    };
    let health = &deployer.spec.health;
    let url = format!("{}{}", deployer.base_url(Env::Prod), health.path);
    lines.push(format!(
        "prod: soaking for {}s, probing {} every {}ms",
        window.duration.as_secs(),
        health.path,
        window.interval.as_millis()
    ));
    let outcome = soak::soak(&url, window, health.timeout, cancel, || {
        (!record.is_running()).then(|| "the prod process exited".to_owned())
    })
    .await;
    match outcome {
        Ok(probes) => {
            lines.push(soak::passed_line(window, probes));
            Ok(())
        }
        Err(e) => {
            lines.push(format!("prod: {e}"));
            Err(e)
        }
    }
}

/// A failed promotion. `caused_by_change` (see [`DeployError::caused_by_change`]) decides
/// whether the item goes back to development or blocks for a person with the cause.
fn refuse(
    mut report: DeployReport,
    reason: &dyn std::fmt::Display,
    caused_by_change: bool,
) -> DeployReport {
    report.infra_error = !caused_by_change;
    let reason = reason.to_string();
    report.lines.push(format!("FAILED: {reason}"));
    report.status = DeployStatus::Failed { reason };
    report
}

/// The build staging runs, checked against the validated SHA and against its own label (build
/// once, contract 6: never promote anything else).
fn validated_build(deployer: &ProcessDeployer, validated_sha: &str) -> Result<Build, DeployError> {
    check_sha_format(validated_sha)?;
    pause::refuse_if_held(&deployer.layout)?;
    let proof: Validation =
        read_record(&deployer.layout.validation(validated_sha))?.ok_or_else(|| {
            DeployError::NotValidated {
                validated: validated_sha.to_owned(),
                proof: deployer.layout.validation(validated_sha),
            }
        })?;
    let expected_dir = deployer.layout.build_dir(validated_sha);
    let tampered = |detail: String| DeployError::BuildTampered {
        build_dir: expected_dir.clone(),
        detail,
    };
    let build = load_verified(&expected_dir)?;
    if build.sha != validated_sha || proof.sha != validated_sha {
        return Err(tampered(format!(
            "its label says it was built from {}",
            build.sha
        )));
    }
    if build.digest != proof.digest {
        return Err(tampered(format!(
            "staging validated digest {}, the label says {}",
            proof.digest, build.digest
        )));
    }
    Ok(build)
}

/// Makes the prod port ready for the new build and returns the build to restore on failure.
///
/// The instance being replaced becomes the restore target only if it had passed its health
/// check; otherwise (a crash mid-promotion left an unconfirmed instance) the earlier target stays.
async fn prepare_prod(
    deployer: &ProcessDeployer,
    lines: &mut Vec<String>,
) -> Result<Option<InstanceRecord>, DeployError> {
    let layout = &deployer.layout;
    let port = deployer.ports.prod;
    // A start orch died in the middle of (spawned, not yet recorded) is ours, not a stranger's.
    if instance::reap_unrecorded(layout, Env::Prod).await? > 0 {
        lines.push("prod: stopped an instance whose start was never recorded".to_owned());
        instance::wait_for_free_port(port).await;
    }
    let current = deployer.current(Env::Prod)?;
    let ours_holds_port = current.as_ref().is_some_and(InstanceRecord::is_running);
    if !ours_holds_port && !instance::port_is_free(port) {
        // Nothing was touched yet: a foreign program on the port is not a reason to freeze prod.
        return Err(DeployError::PortInUse {
            port,
            env: Env::Prod,
        });
    }
    if let Some(record) = current.as_ref().filter(|record| record.healthy) {
        write_record(&layout.previous_prod(), record)?;
    }
    if let Some(stopped) = instance::stop(layout, Env::Prod).await? {
        lines.push(format!(
            "prod: stopped {} (pid {})",
            short(&stopped.sha),
            stopped.pid
        ));
        if !instance::wait_for_free_port(port).await {
            return Err(DeployError::PortInUse {
                port,
                env: Env::Prod,
            });
        }
    }
    read_record(&layout.previous_prod())
}

/// Starts the previous prod build again. Never rolled back itself: its failure is final.
async fn restore(
    deployer: &ProcessDeployer,
    previous: &InstanceRecord,
    cancel: &CancellationToken,
    lines: &mut Vec<String>,
) -> Result<(), DeployError> {
    lines.push(format!("prod: restoring {}", short(&previous.sha)));
    let build = load_verified(&previous.build_dir)?;
    deployer
        .start_healthy(Env::Prod, &build, cancel, lines)
        .await
        .map(drop)
}
