//! The few git operations onboarding needs, run synchronously in the project's repository with
//! a controlled environment (no pager, no prompt, no signing, orch's identity on commits).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

/// Variables that would point git at another repository than the directory it runs in.
const REPOSITORY_SELECTORS: [&str; 5] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
];

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgSign=false"])
        .args(args)
        .stdin(Stdio::null());
    for name in REPOSITORY_SELECTORS {
        c.env_remove(name);
    }
    c.env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        // Reads (plan, verify) must not even refresh the index.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_AUTHOR_NAME", "orch")
        .env("GIT_AUTHOR_EMAIL", "orch@localhost")
        .env("GIT_COMMITTER_NAME", "orch")
        .env("GIT_COMMITTER_EMAIL", "orch@localhost");
    c
}

fn output(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    command(dir, args)
        .output()
        .with_context(|| format!("cannot run `git {}`; is git installed?", args.join(" ")))
}

/// Runs git and returns its trimmed stdout; a failure names the command and git's message.
pub fn run(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = output(dir, args)?;
    if !out.status.success() {
        bail!(
            "`git {}` in {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs a git query whose exit code is the answer: 0 yes, 1 (or 128 for a missing object) no.
pub fn probe(dir: &Path, args: &[&str]) -> anyhow::Result<bool> {
    Ok(output(dir, args)?.status.success())
}

/// Whether the repository has at least one commit.
pub fn has_commits(repo: &Path) -> anyhow::Result<bool> {
    probe(repo, &["rev-parse", "--verify", "-q", "HEAD^{commit}"])
}

/// The branch HEAD points at (born or not); an error for a detached HEAD.
pub fn current_branch(repo: &Path) -> anyhow::Result<String> {
    let out = output(repo, &["symbolic-ref", "--short", "-q", "HEAD"])?;
    if !out.status.success() {
        bail!(
            "{}: HEAD is detached; check out the default branch first",
            repo.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn branch_exists(repo: &Path, branch: &str) -> anyhow::Result<bool> {
    probe(
        repo,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("refs/heads/{branch}"),
        ],
    )
}

/// Whether `path` exists in the tree of `rev`.
pub fn exists_at(repo: &Path, rev: &str, path: &str) -> anyhow::Result<bool> {
    probe(repo, &["cat-file", "-e", &format!("{rev}:{path}")])
}

/// Stages exactly `paths` (never `-A`: a stray `.env` must not be committed; `-f` because a
/// kit file such as `.env.example` may match an ignore pattern) and commits them.
pub fn commit_paths(worktree: &Path, paths: &[String], message: &str) -> anyhow::Result<()> {
    let mut add = vec!["add", "-f", "--"];
    add.extend(paths.iter().map(String::as_str));
    run(worktree, &add)?;
    let mut commit = vec!["commit", "-q", "-m", message, "--"];
    commit.extend(paths.iter().map(String::as_str));
    run(worktree, &commit)?;
    Ok(())
}
