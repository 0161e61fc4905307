//! `deploy_staging` of the docker deployer: build the image once, run it as the staging
//! container, check it, and prove which image passed.

use std::path::{Path, PathBuf};

use orch_core::staging::{CheckResult, fold};
use tokio_util::sync::CancellationToken;

use super::{DockerDeployer, ImageInfo, short_id};
use crate::build::{Build, build_failed, check_sha_format, check_worktree_at};
use crate::checks::{ExecTarget, report_lines, run_checks_in};
use crate::config::REVISION_LABEL;
use crate::error::DeployError;
use crate::instance::Env;
use crate::layout::{remove_file, write_record};
use crate::process_deployer::Validation;
use crate::report::StagingReport;

pub(super) async fn deploy_staging(
    deployer: &DockerDeployer,
    worktree: &Path,
    sha: &str,
    tolerance: bool,
    cancel: &CancellationToken,
) -> StagingReport {
    // Checks go to the staging port and container only; prod is never addressed from here.
    let base_url = deployer.base_url(Env::Staging);
    let mut lines = Vec::new();
    // A run that does not pass voids an earlier proof of the same SHA, whatever fails.
    if check_sha_format(sha).is_ok() {
        let _ = remove_file(&deployer.proof_path(sha));
    }
    let image = match build_once(deployer, worktree, sha, cancel, &mut lines).await {
        Ok(image) => image,
        Err(e) => {
            return StagingReport::failed_before_checks(sha, None, base_url, tolerance, lines, &e);
        }
    };
    let build = Some(image_as_build(deployer, sha, &image));
    if let Err(e) = deployer
        .start_healthy(Env::Staging, &image.info, cancel, &mut lines)
        .await
    {
        return StagingReport::failed_before_checks(sha, build, base_url, tolerance, lines, &e);
    }
    let container = deployer.container(Env::Staging);
    let target = ExecTarget {
        cli: &deployer.cli,
        container: &container,
    };
    let spec = &deployer.spec.staging;
    let checks = run_checks_in(
        &base_url,
        spec,
        deployer.mode,
        worktree,
        Some(target),
        cancel,
    )
    .await;
    let results: Vec<CheckResult> = checks.iter().map(|run| run.result.clone()).collect();
    // A cancelled run is an internal error: it must never fold into a (waived) success.
    let error = cancel
        .is_cancelled()
        .then(|| DeployError::Cancelled.to_string());
    let mut verdict = fold(&results, tolerance, error.as_deref());
    if verdict.is_success() {
        // Promotion reads this proof, not whatever staging runs by then.
        let proof = Validation {
            sha: sha.to_owned(),
            digest: image.info.id.clone(),
        };
        if let Err(e) = write_record(&deployer.proof_path(sha), &proof) {
            verdict = fold(&results, tolerance, Some(&e.to_string()));
        }
    }
    lines.extend(report_lines(&checks, &verdict));
    StagingReport {
        sha: sha.to_owned(),
        build,
        base_url,
        checks,
        verdict,
        lines,
        error,
        infra_error: false,
        build_egress_refused: orch_process::EgressRefusals::default(),
    }
}

/// The image of a SHA and whether it was already there.
struct ShaImage {
    info: ImageInfo,
    reused: bool,
}

/// Returns the image tagged with `sha`, building it first unless one labelled with `sha` exists.
async fn build_once(
    deployer: &DockerDeployer,
    worktree: &Path,
    sha: &str,
    cancel: &CancellationToken,
    lines: &mut Vec<String>,
) -> Result<ShaImage, DeployError> {
    check_worktree_at(worktree, sha).await?;
    let version = deployer.cli.ping(cancel).await?;
    lines.push(format!("docker engine {version}"));
    let tag = deployer.image(sha);
    match deployer.cli.image(&tag, cancel).await? {
        Some(info) if info.revision == sha => {
            lines.push(format!("reusing {tag} ({})", short_id(&info.id)));
            return Ok(ShaImage { info, reused: true });
        }
        Some(info) => lines.push(format!(
            "{tag} is labelled with revision `{}`, not {sha}: rebuilding",
            info.revision
        )),
        None => {}
    }
    build_image(deployer, worktree, sha, &tag, cancel).await?;
    let info = deployer
        .cli
        .image(&tag, cancel)
        .await?
        .ok_or_else(|| DeployError::Docker {
            action: format!("find {tag} after building it"),
            detail: "the build succeeded but no image carries the tag".to_owned(),
        })?;
    if info.revision != sha {
        return Err(DeployError::ImageMismatch {
            image: tag,
            detail: format!("its {REVISION_LABEL} label is `{}`", info.revision),
        });
    }
    lines.push(format!(
        "built {tag} ({}), output in {}",
        short_id(&info.id),
        deployer.build_log(sha).display()
    ));
    Ok(ShaImage {
        info,
        reused: false,
    })
}

async fn build_image(
    deployer: &DockerDeployer,
    worktree: &Path,
    sha: &str,
    tag: &str,
    cancel: &CancellationToken,
) -> Result<(), DeployError> {
    let spec = &deployer.spec;
    let dir = deployer.dir();
    std::fs::create_dir_all(&dir).map_err(DeployError::io("create", &dir))?;
    let log = deployer.build_log(sha);
    remove_file(&log)?;
    let dockerfile = worktree.join(&spec.dockerfile).display().to_string();
    let context = worktree.join(&spec.context).display().to_string();
    // Build args may be sensitive: the command shown in errors leaves them out.
    let shown = format!("docker build --file {dockerfile} --tag {tag} {context}");
    let mut args = vec![
        "build".to_owned(),
        "--file".to_owned(),
        dockerfile,
        "--tag".to_owned(),
        tag.to_owned(),
        "--label".to_owned(),
        format!("{REVISION_LABEL}={sha}"),
        "--label".to_owned(),
        format!("orch.project={}", deployer.project),
    ];
    for (name, value) in &spec.build_args {
        args.push("--build-arg".to_owned());
        args.push(format!("{name}={value}"));
    }
    args.push(context);
    let run = deployer
        .cli
        .command(worktree, spec.build_timeout)
        .args(args)
        .log(&log);
    match deployer.cli.run_spec(&run, cancel).await? {
        Ok(_) => Ok(()),
        Err(failure) => Err(build_failed(&shown, &failure.finished)),
    }
}

/// The image in the shape the stage log and the engine read (`digest` is the image id).
fn image_as_build(deployer: &DockerDeployer, sha: &str, image: &ShaImage) -> Build {
    Build {
        sha: sha.to_owned(),
        digest: image.info.id.clone(),
        dir: deployer.dir(),
        artifact: PathBuf::from(deployer.image(sha)),
        built_at: image.info.created.clone(),
        reused: image.reused,
    }
}
