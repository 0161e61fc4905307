//! `orch init [PATH] [--force]`: write the default `.orch/` into a repository.

use crate::cli::InitArgs;
use crate::error::UsageError;
use crate::kit;

pub fn run(a: InitArgs) -> anyhow::Result<i32> {
    if !a.path.join(".git").exists() {
        return Err(UsageError(format!(
            "{} is not the root of a git repository; run `git init` there first, or pass the repository's path",
            a.path.display()
        ))
        .into());
    }
    let files = kit::orch_files(kit::INIT_AGENTS_TOML, kit::INIT_DEPLOY_TOML);
    let (written, skipped) = kit::write_files(&a.path, &files, a.force)?;
    for f in &written {
        println!("wrote   {f}");
    }
    for f in &skipped {
        println!("kept    {f} (exists; --force overwrites)");
    }
    println!(
        "\nNext steps:\n  1. Point .orch/agents.toml at your agent (a command that reads the prompt on stdin).\n  \
         2. Set the test command in .orch/pipeline.toml (stage development, gate `tests`).\n  \
         3. Set build, run and staging checks in .orch/deploy.toml.\n  \
         4. Add the project to orch.toml ([[projects]] name, repo, staging_port, prod_port) and run `orch item add`."
    );
    Ok(0)
}
