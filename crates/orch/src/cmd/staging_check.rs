//! `orch staging-check`: run a project's staging checks against a URL, print one line per check,
//! the `INFRA-WAIVED:` line when something was waived and the `VERDICT:` line, exit 0 or 1.
//!
//! It reads only `orch.toml` (the project's entry: repository and ports) and the project's
//! `.orch/deploy.toml`, or with `--repo DIR --prod-port PORT` only the deploy file: no store, no
//! pipeline, no roles, so a team can run its checks before the rest of `.orch/` exists. It must
//! never probe prod by accident: a URL on the project's prod port is refused (exit 2) unless
//! `--allow-prod` says so, and without a registry the prod port must be given.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::cli::StagingCheckArgs;
use crate::error::UsageError;
use crate::settings::Settings;

pub async fn run(config: &Path, a: StagingCheckArgs) -> anyhow::Result<i32> {
    let target = target(config, &a)?;
    let port =
        orch_deploy::probe_port(&a.base_url).map_err(|e| UsageError(format!("--base-url: {e}")))?;
    if Some(port) == target.prod_port && !a.allow_prod {
        return Err(UsageError(format!(
            "--base-url {} is on port {port}, {}'s prod port; staging checks never touch \
             prod. Use the staging port, or pass --allow-prod to check prod on purpose",
            a.base_url, target.name
        ))
        .into());
    }
    let file = target.repo.join(orch_engine::project::files::DEPLOY);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let config = orch_deploy::DeployConfig::from_toml(&text)
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let mode = orch_deploy::Mode::parse(&a.mode)
        .ok_or_else(|| UsageError(format!("unknown mode `{}`", a.mode)))?;
    let tolerance = target.tolerance && !a.strict;
    let runs = orch_deploy::run_checks(
        &a.base_url,
        config.staging(),
        mode,
        &target.repo,
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

/// What the checks run against: the repository, the prod port to stay off, the tolerance.
struct Target {
    name: String,
    repo: PathBuf,
    /// `None` only with `--repo --allow-prod`: nothing to refuse.
    prod_port: Option<u16>,
    tolerance: bool,
}

fn target(config: &Path, a: &StagingCheckArgs) -> anyhow::Result<Target> {
    let Some(repo) = &a.repo else {
        let settings = Settings::load(config)?;
        let project = pick_project(&settings, a.project.as_deref())?;
        return Ok(Target {
            name: format!("project `{}`", project.id),
            repo: project.repo.clone(),
            prod_port: Some(project.prod_port),
            tolerance: settings.staging_tolerance,
        });
    };
    // Without a registry the prod port is only known if given: never guess that a URL is safe.
    if a.prod_port.is_none() && !a.allow_prod {
        return Err(UsageError(
            "--repo needs --prod-port PORT (the port staging checks must never touch), or --allow-prod"
                .to_owned(),
        )
        .into());
    }
    Ok(Target {
        name: repo.display().to_string(),
        repo: repo.clone(),
        prod_port: a.prod_port,
        tolerance: crate::env::flag(crate::env::STAGING_INFRA_TOLERANCE_ENABLED, true)
            .map_err(UsageError)?,
    })
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
