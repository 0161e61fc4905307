//! `deploy_staging` of the process deployer (contracts 5 and 6).

use std::path::Path;

use orch_core::staging::{CheckResult, fold};
use tokio_util::sync::CancellationToken;

use super::{ProcessDeployer, Validation};
use crate::build::ensure_build;
use crate::checks::{report_lines, run_checks};
use crate::error::DeployError;
use crate::instance::Env;
use crate::layout::{remove_file, write_record};
use crate::report::StagingReport;

pub(super) async fn deploy_staging(
    deployer: &ProcessDeployer,
    worktree: &Path,
    sha: &str,
    tolerance: bool,
    cancel: &CancellationToken,
) -> StagingReport {
    // Checks go to the staging port only; prod is never addressed from here.
    let base_url = deployer.base_url(Env::Staging);
    let mut refused = orch_process::EgressRefusals::default();
    let build = match ensure_build(
        &deployer.layout,
        &deployer.spec.build,
        &deployer.confinement.build,
        worktree,
        sha,
        cancel,
        &mut refused,
    )
    .await
    {
        Ok(build) => build,
        Err(e) => {
            let mut report =
                StagingReport::failed_before_checks(sha, None, base_url, tolerance, Vec::new(), &e);
            report.build_egress_refused = refused;
            return report;
        }
    };
    let mut steps = Vec::new();
    if let Err(e) = deployer
        .start_healthy(Env::Staging, &build, cancel, &mut steps)
        .await
    {
        let mut report = StagingReport::failed_before_checks(
            sha,
            Some(build),
            base_url,
            tolerance,
            Vec::new(),
            &e,
        );
        report.build_egress_refused = refused;
        return report;
    }
    for step in &steps {
        tracing::info!(sha, "{step}");
    }
    let checks = run_checks(
        &base_url,
        &deployer.spec.staging,
        deployer.mode,
        worktree,
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
        // Promotion reads this proof, not whatever staging runs now: other items may use staging
        // between this item's staging and its (human-approved) promotion.
        let proof = Validation {
            sha: build.sha.clone(),
            digest: build.digest.clone(),
        };
        if let Err(e) = write_record(&deployer.layout.validation(sha), &proof) {
            verdict = fold(&results, tolerance, Some(&e.to_string()));
        }
    } else {
        // A failed staging run voids an earlier proof of the same SHA.
        let _ = remove_file(&deployer.layout.validation(sha));
    }
    let lines = report_lines(&checks, &verdict);
    StagingReport {
        sha: sha.to_owned(),
        build: Some(build),
        base_url,
        checks,
        verdict,
        lines,
        error,
        infra_error: false,
        build_egress_refused: refused,
    }
}
