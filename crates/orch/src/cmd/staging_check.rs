//! `orch staging-check`: run a project's staging checks against a URL, print one line per check,
//! the `INFRA-WAIVED:` line when something was waived and the `VERDICT:` line, exit 0 or 1.
//!
//! It reads only `orch.toml` (the project's entry: repository and ports) and the project's
//! `.orch/deploy.toml`: no store, no pipeline, no roles, so a team can run its checks before the
//! rest of `.orch/` exists. It must never probe prod by accident: a URL on the project's prod
//! port is refused (exit 2) unless `--allow-prod` says so.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::cli::StagingCheckArgs;
use crate::error::UsageError;
use crate::settings::Settings;

pub async fn run(config: &Path, a: StagingCheckArgs) -> anyhow::Result<i32> {
    let settings = Settings::load(config)?;
    let project = pick_project(&settings, a.project.as_deref())?;
    let port =
        orch_deploy::probe_port(&a.base_url).map_err(|e| UsageError(format!("--base-url: {e}")))?;
    if port == project.prod_port && !a.allow_prod {
        return Err(UsageError(format!(
            "--base-url {} is on port {port}, project `{}`'s prod port; staging checks never \
             touch prod. Use its staging port ({}), or pass --allow-prod to check prod on purpose",
            a.base_url, project.id, project.staging_port
        ))
        .into());
    }
    let file = project.repo.join(orch_engine::project::files::DEPLOY);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let config = orch_deploy::DeployConfig::from_toml(&text)
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let mode = orch_deploy::Mode::parse(&a.mode)
        .ok_or_else(|| UsageError(format!("unknown mode `{}`", a.mode)))?;
    let tolerance = settings.staging_tolerance && !a.strict;
    let runs = orch_deploy::run_checks(
        &a.base_url,
        config.staging(),
        mode,
        &project.repo,
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

/// The project named, or the only one configured.
fn pick_project<'a>(
    settings: &'a Settings,
    name: Option<&str>,
) -> Result<&'a orch_engine::ProjectSettings, UsageError> {
    match name {
        Some(name) => settings
            .projects
            .iter()
            .find(|p| p.id.as_str() == name)
            .ok_or_else(|| {
                UsageError(format!(
                    "{} has no project `{name}`",
                    settings.path.display()
                ))
            }),
        None => match settings.projects.as_slice() {
            [only] => Ok(only),
            [] => Err(UsageError(format!(
                "{} lists no projects",
                settings.path.display()
            ))),
            _ => Err(UsageError(
                "several projects are configured; pass --project NAME".into(),
            )),
        },
    }
}
