//! `orch onboard verify`: round-trips the project through the parsers the server uses and
//! lists every gap. Exit 1 when there is any, 0 otherwise.

use std::path::Path;

use orch_core::states::CANONICAL_STATES;

use super::registry::{Registry, normalize};
use super::remotes::{self, RemoteSetup};
use super::survey::{self, parse_name};
use super::template;
use crate::cli::OnboardTarget;
use crate::settings;

/// The document every project must have: where it runs and what must never be restarted.
const INFRA_DOC: &str = "docs/operations/INFRA.md";

/// Checks and prints; returns the exit code.
pub async fn verify(config: &Path, target: &OnboardTarget) -> anyhow::Result<i32> {
    let name = parse_name(&target.name)?;
    let repo = target.repo.as_path();
    let repo_shown = repo.display().to_string();
    let repo = normalize(repo)?;
    let mut gaps: Vec<String> = Vec::new();
    let ok = |what: String| println!("ok      {what}");

    let registry = Registry::load(config)?;
    let config_shown = registry.path.display().to_string();
    match registry
        .file
        .projects
        .iter()
        .find(|p| p.name == name.as_str())
    {
        None => gaps.push(format!(
            "{config_shown}: no [[projects]] entry named `{name}` (run `orch onboard apply`)"
        )),
        Some(entry) => match settings::parse_project(entry, &registry.data_dir) {
            Err(e) => gaps.push(format!("{config_shown}: {e}")),
            Ok(project) => {
                ok(format!(
                    "{config_shown} [[projects]] name = \"{name}\" parses"
                ));
                if normalize(&project.repo)? != repo {
                    gaps.push(format!(
                        "{config_shown}: project `{name}` has repo {}, not {repo_shown}",
                        project.repo.display()
                    ));
                }
                check_remotes(&mut gaps, &project, entry, &repo, target).await?;
                match orch_engine::Project::load(project) {
                    Ok(_) => ok(format!(
                        "{repo_shown}/.orch loads (pipeline, roles, agents, deploy)"
                    )),
                    Err(e) => gaps.push(format!("{repo_shown}: {e}")),
                }
            }
        },
    }

    let mut complete = true;
    for rel in template::kit_paths() {
        let path = repo.join(&rel);
        let Ok(text) = std::fs::read(&path) else {
            complete = false;
            gaps.push(format!("{repo_shown}/{rel}: missing from the kit"));
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        for key in template::placeholders(&text) {
            gaps.push(format!(
                "{repo_shown}/{rel}: unresolved placeholder {{{{{key}}}}}"
            ));
        }
    }
    if complete {
        ok(format!("{repo_shown}: every kit file is present"));
    }
    if repo.join(INFRA_DOC).is_file() {
        ok(format!("{repo_shown}/{INFRA_DOC} present"));
    }

    // The built-in board shows items in these states; print them so a person can compare
    // with an external tracker's board.
    for state in CANONICAL_STATES {
        let terminal = if state.terminal { ", terminal" } else { "" };
        println!(
            "state   {} ({}{terminal})",
            state.name,
            state.group.as_str()
        );
    }

    if gaps.is_empty() {
        println!("\n{name} is onboarded: nothing is missing.");
        return Ok(0);
    }
    for gap in &gaps {
        println!("gap     {gap}");
    }
    println!(
        "\n{} gap(s). Fix them (or run `orch onboard apply`), then verify again.",
        gaps.len()
    );
    Ok(1)
}

/// The tracker and forge, surveyed (GET only) through the clients the registry parser built:
/// `ok` what is there, a gap for what is missing or refused, and the manual steps as they are.
async fn check_remotes(
    gaps: &mut Vec<String>,
    project: &orch_engine::ProjectSettings,
    entry: &crate::settings::ProjectEntry,
    repo: &Path,
    target: &OnboardTarget,
) -> anyhow::Result<()> {
    let branch = match orch_git::Repo::open(repo).await {
        Ok(local) => local
            .default_branch()
            .await
            .unwrap_or_else(|_| "main".to_owned()),
        Err(_) => "main".to_owned(),
    };
    let setup = RemoteSetup::new(
        project,
        entry,
        (repo.to_owned(), branch),
        target.webhook_url.as_deref(),
        &target.labels,
    )?;
    if setup.is_empty() {
        return Ok(());
    }
    let steps = match setup.survey().await {
        Ok(steps) => steps,
        Err(e) => {
            gaps.push(format!("tracker/forge: {e:#}"));
            return Ok(());
        }
    };
    for step in &steps {
        match remotes::gap(step) {
            Some(gap) => gaps.push(gap),
            None => survey::print(&[remotes::line(step)]),
        }
    }
    survey::print(&setup.note().into_iter().collect::<Vec<_>>());
    Ok(())
}
