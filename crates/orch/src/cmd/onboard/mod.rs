//! `orch onboard plan|apply|verify`: bring a new project online on the built-in board and the
//! local forge. `plan` (the default) only reads; `apply` creates what is missing and never
//! deletes or overwrites anything; `verify` checks the result with the server's own parsers.

mod apply;
mod git;
mod registry;
mod survey;
mod template;
mod verify;

use std::path::Path;

use crate::cli::{OnboardAction, OnboardArgs, OnboardTarget};
use crate::error::UsageError;
use survey::{ONBOARDING_BRANCH, RepoState, Survey};

pub fn run(config: &Path, args: OnboardArgs) -> anyhow::Result<i32> {
    match (args.action, args.target) {
        (Some(OnboardAction::Plan(t)), _) | (None, Some(t)) => plan(config, &t),
        (Some(OnboardAction::Apply(t)), _) => apply(config, &t),
        (Some(OnboardAction::Verify(t)), _) => verify::verify(config, &t.name, &t.repo),
        (None, None) => Err(UsageError(
            "name the project: orch onboard [plan|apply|verify] --name NAME --repo PATH".into(),
        )
        .into()),
    }
}

fn take(config: &Path, t: &OnboardTarget) -> anyhow::Result<Survey> {
    Survey::take(config, &t.name, &t.repo, t.staging_port, t.prod_port)
}

fn plan(config: &Path, t: &OnboardTarget) -> anyhow::Result<i32> {
    let s = take(config, t)?;
    println!("plan for project `{}` (nothing is written):", s.name);
    survey::print(&s.lines());
    if s.nothing_to_do() {
        println!("\nNothing to do: `{}` is onboarded.", s.name);
    } else {
        println!(
            "\nRun the same command with `apply` to do this; it creates only what is missing."
        );
    }
    Ok(0)
}

fn apply(config: &Path, t: &OnboardTarget) -> anyhow::Result<i32> {
    let s = take(config, t)?;
    if s.nothing_to_do() {
        survey::print(&s.lines());
        println!("\nNothing to do: `{}` is already onboarded.", s.name);
        return Ok(0);
    }
    let lines = apply::apply(&s)?;
    survey::print(&lines);
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
