//! `promote` of the docker deployer: the image staging validated becomes `:prod` by a retag (never
//! a build); on a failed health check `:previous` is restored (and promotions pause), and a failed
//! restore freezes prod.

use tokio_util::sync::CancellationToken;

use super::{DockerDeployer, ImageInfo, ProdRecord, short_id};
use crate::build::check_sha_format;
use crate::config::REVISION_LABEL;
use crate::error::DeployError;
use crate::instance::{self, Env};
use crate::layout::{read_record, remove_file, write_record};
use crate::pause;
use crate::process_deployer::{Validation, short};
use crate::report::{DeployReport, DeployStatus};

const PROD_TAG: &str = "prod";
const PREVIOUS_TAG: &str = "previous";

pub(super) async fn promote(
    deployer: &DockerDeployer,
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
    // Nothing is touched until the image is proven to be the validated one and the port is ours.
    let image = match validated_image(deployer, validated_sha, cancel).await {
        Ok(image) => image,
        Err(e) => return refuse(report, &e, e.caused_by_change()),
    };
    report.digest = Some(image.id.clone());
    report.lines.push(format!(
        "promoting {} ({})",
        deployer.image(validated_sha),
        short_id(&image.id)
    ));
    if let Err(e) = retag(deployer, validated_sha, &image, cancel, &mut report.lines).await {
        return refuse(report, &e, e.caused_by_change());
    }
    let error = match deployer
        .start_healthy(Env::Prod, &image, cancel, &mut report.lines)
        .await
    {
        Ok(()) => match record_prod(deployer, validated_sha, &image) {
            Ok(()) => return report,
            Err(e) => return refuse(report, &e, e.caused_by_change()),
        },
        Err(e) => e,
    };
    let previous = match deployer
        .cli
        .image(&deployer.image(PREVIOUS_TAG), cancel)
        .await
    {
        Ok(Some(previous)) => previous,
        Ok(None) => {
            // Nothing to go back to: `:prod` must not keep naming an image that failed there.
            let untagged = deployer.cli.untag(&deployer.image(PROD_TAG), cancel).await;
            let _ = remove_file(&deployer.prod_record());
            let mut reason = format!("{error}; there was no previous prod image to restore");
            if let Err(e) = untagged {
                reason.push_str(&format!(" ({e})"));
            }
            return refuse(report, &reason, error.caused_by_change());
        }
        Err(e) => return freeze(deployer, report, &format!("{error}; {e}")),
    };
    match restore(deployer, &previous, cancel, &mut report.lines).await {
        Ok(()) => {
            report.restored = Some(previous.revision.clone());
            let reason = format!(
                "{error}; prod was restored to {} ({})",
                deployer.image(PREVIOUS_TAG),
                short_id(&previous.id)
            );
            pause::pause_after_restore(&deployer.layout(), &mut report.lines, &reason);
            refuse(report, &reason, error.caused_by_change())
        }
        Err(restore_error) => {
            let reason = format!(
                "{error}; restoring {} failed too: {restore_error}",
                deployer.image(PREVIOUS_TAG)
            );
            freeze(deployer, report, &reason)
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

/// A restore failed: prod is frozen until a person fixes it and deletes the marker.
fn freeze(deployer: &DockerDeployer, mut report: DeployReport, reason: &str) -> DeployReport {
    let marker = deployer.layout().frozen_marker();
    let written = marker
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&marker, format!("{reason}\n")));
    if let Err(e) = written {
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

/// The image staging validated for `sha`, checked against the proof's image id and its own
/// revision label (build once, contract 6: never promote anything else). Also refuses while
/// prod is frozen, when docker cannot be reached, and when a foreign program holds the prod port.
async fn validated_image(
    deployer: &DockerDeployer,
    sha: &str,
    cancel: &CancellationToken,
) -> Result<ImageInfo, DeployError> {
    check_sha_format(sha)?;
    pause::refuse_if_held(&deployer.layout())?;
    deployer.cli.ping(cancel).await?;
    let proof_path = deployer.proof_path(sha);
    let proof: Validation = read_record(&proof_path)?.ok_or_else(|| DeployError::NotValidated {
        validated: sha.to_owned(),
        proof: proof_path.clone(),
    })?;
    let tag = deployer.image(sha);
    let mismatch = |detail: String| DeployError::ImageMismatch {
        image: tag.clone(),
        detail,
    };
    if proof.sha != sha {
        return Err(mismatch(format!("the proof validates {}", proof.sha)));
    }
    let image = deployer
        .cli
        .image(&tag, cancel)
        .await?
        .ok_or_else(|| mismatch("no image carries that tag any more".to_owned()))?;
    if image.id != proof.digest {
        return Err(mismatch(format!(
            "staging validated image {}, the tag now names {}",
            proof.digest, image.id
        )));
    }
    if image.revision != sha {
        return Err(mismatch(format!(
            "its {REVISION_LABEL} label is `{}`",
            image.revision
        )));
    }
    let port = deployer.ports.prod;
    let ours_holds_port = deployer
        .cli
        .is_running(&deployer.container(Env::Prod), cancel)
        .await?;
    if !ours_holds_port && !instance::port_is_free(port) {
        // Nothing was touched yet: a foreign program on the port is not a reason to freeze prod.
        return Err(DeployError::PortInUse {
            port,
            env: Env::Prod,
        });
    }
    Ok(image)
}

/// Keeps what prod ran healthily as `:previous`, then points `:prod` at the validated image.
async fn retag(
    deployer: &DockerDeployer,
    sha: &str,
    image: &ImageInfo,
    cancel: &CancellationToken,
    lines: &mut Vec<String>,
) -> Result<(), DeployError> {
    let last: Option<ProdRecord> = read_record(&deployer.prod_record())?;
    if let Some(last) = last.filter(|last| last.image_id != image.id) {
        let previous = deployer.image(PREVIOUS_TAG);
        deployer.cli.tag(&last.image_id, &previous, cancel).await?;
        lines.push(format!(
            "kept {} ({}) as {previous}",
            short_id(&last.image_id),
            short(&last.sha)
        ));
    }
    let prod = deployer.image(PROD_TAG);
    deployer
        .cli
        .tag(&deployer.image(sha), &prod, cancel)
        .await?;
    lines.push(format!("tagged {} as {prod}", deployer.image(sha)));
    Ok(())
}

fn record_prod(deployer: &DockerDeployer, sha: &str, image: &ImageInfo) -> Result<(), DeployError> {
    let record = ProdRecord {
        sha: sha.to_owned(),
        image_id: image.id.clone(),
    };
    write_record(&deployer.prod_record(), &record)
}

/// Runs `:previous` on prod again. Never rolled back itself: its failure is final.
async fn restore(
    deployer: &DockerDeployer,
    previous: &ImageInfo,
    cancel: &CancellationToken,
    lines: &mut Vec<String>,
) -> Result<(), DeployError> {
    let prod = deployer.image(PROD_TAG);
    lines.push(format!(
        "prod: restoring {} ({})",
        deployer.image(PREVIOUS_TAG),
        short_id(&previous.id)
    ));
    deployer.cli.tag(&previous.id, &prod, cancel).await?;
    deployer
        .start_healthy(Env::Prod, previous, cancel, lines)
        .await?;
    record_prod(deployer, &previous.revision, previous)
}
