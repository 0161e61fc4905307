//! `orch staging-check`: run a project's staging checks against a URL, print one line per check,
//! the `INFRA-WAIVED:` line when something was waived and the `VERDICT:` line, exit 0 or 1.

use tokio_util::sync::CancellationToken;

use crate::cli::StagingCheckArgs;
use crate::context::Context;
use crate::error::UsageError;

pub async fn run(ctx: &Context, a: StagingCheckArgs) -> anyhow::Result<i32> {
    let id = ctx.project_id(a.project.as_deref())?;
    let project = ctx.engine.project(&id)?;
    let file = project
        .settings
        .repo
        .join(orch_engine::project::files::DEPLOY);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let config = orch_deploy::DeployConfig::from_toml(&text)
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let mode = orch_deploy::Mode::parse(&a.mode)
        .ok_or_else(|| UsageError(format!("unknown mode `{}`", a.mode)))?;
    let tolerance = ctx.settings.staging_tolerance && !a.strict;
    let runs = orch_deploy::run_checks(
        &a.base_url,
        config.staging(),
        mode,
        &project.settings.repo,
        &CancellationToken::new(),
    )
    .await;
    let results: Vec<orch_core::staging::CheckResult> =
        runs.iter().map(|r| r.result.clone()).collect();
    let verdict = orch_core::staging::fold(&results, tolerance, None);
    for line in orch_deploy::report_lines(&runs, &verdict) {
        println!("{line}");
    }
    Ok(verdict.exit_code())
}
