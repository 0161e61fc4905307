//! `orch onboard plan|apply|verify`: bring a new project online on the built-in board and the
//! local forge. `plan` (the default) only reads; `apply` creates what is missing and never
//! deletes or overwrites anything; `verify` checks the result with the server's own parsers.

mod apply;
mod git;
mod registry;
mod remotes;
mod survey;
mod template;
mod verify;

use std::path::Path;

use crate::cli::{OnboardAction, OnboardArgs, OnboardTarget};
use crate::error::UsageError;
use survey::{ONBOARDING_BRANCH, RepoState, Survey};

pub async fn run(config: &Path, args: OnboardArgs) -> anyhow::Result<i32> {
    match (args.action, args.target) {
        (Some(OnboardAction::Plan(t)), _) | (None, Some(t)) => plan(config, &t).await,
        (Some(OnboardAction::Apply(t)), _) => apply(config, &t).await,
        (Some(OnboardAction::Verify(t)), _) => verify::verify(config, &t).await,
        (None, None) => Err(UsageError(
            "name the project: orch onboard [plan|apply|verify] --name NAME --repo PATH".into(),
        )
        .into()),
    }
}

fn take(config: &Path, t: &OnboardTarget) -> anyhow::Result<Survey> {
    Survey::take(
        config,
        &t.name,
        &t.repo,
        t.staging_port,
        t.prod_port,
        &t.remotes(),
    )
}

async fn plan(config: &Path, t: &OnboardTarget) -> anyhow::Result<i32> {
    let s = take(config, t)?;
    let remote = s.remotes(t.webhook_url.as_deref(), &t.labels)?;
    let steps = remote.survey().await?;
    println!("plan for project `{}` (nothing is written):", s.name);
    survey::print(&s.lines());
    survey::print(&remote.lines(&steps));
    if s.nothing_to_do() && remotes::all_done(&steps) {
        println!("\nNothing to do: `{}` is onboarded.", s.name);
    } else {
        println!(
            "\nRun the same command with `apply` to do this; it creates only what is missing."
        );
    }
    Ok(0)
}

async fn apply(config: &Path, t: &OnboardTarget) -> anyhow::Result<i32> {
    let s = take(config, t)?;
    let local_done = s.nothing_to_do();
    if local_done {
        survey::print(&s.lines());
    } else {
        survey::print(&apply::apply(&s)?);
    }
    // The forge and tracker are looked at after the local repository has its first commit
    // and the registry its entry, so a later apply finds both and completes the rest.
    let remote = s.remotes(t.webhook_url.as_deref(), &t.labels)?;
    let (lines, remote_complete) = remote.apply().await?;
    survey::print(&lines);
    let remote_untouched = lines
        .iter()
        .all(|l| !matches!(l.verb, "created" | "pushed"));
    if !remote_complete {
        println!(
            "\nSome steps are left for a person (the `manual` and `refused` lines); do them, then run verify."
        );
        return Ok(1);
    }
    if local_done && remote_untouched {
        println!("\nNothing to do: `{}` is already onboarded.", s.name);
        return Ok(0);
    }
    let config = s.registry.path.display();
    let verify = format!(
        "orch --config {config} onboard verify --name {} --repo {}",
        s.name, s.repo_shown
    );
    println!("\nNext:");
    match &s.state {
        RepoState::Committed { branch, .. } if s.needs_commit() => println!(
            "  1. Review and merge the kit into {branch}: git -C {} merge {ONBOARDING_BRANCH}\n  \
             2. Point .orch/agents.toml at your agent and set the test and deploy commands.\n  \
             3. {verify}",
            s.repo_shown
        ),
        _ => println!(
            "  1. Point .orch/agents.toml at your agent (it names `my-agent`).\n  \
             2. Set the test command in .orch/pipeline.toml and the build and run commands in \
             .orch/deploy.toml; fill in docs/operations/INFRA.md.\n  \
             3. {verify}\n  \
             4. orch --config {config} item add --project {} --title \"...\"",
            s.name
        ),
    }
    Ok(0)
}
