//! Real git in temporary directories.

mod changes;
mod hostile;
mod integrate;
mod merge;
mod repo;
mod worktree;

use std::path::{Path, PathBuf};

use orch_git::Repo;

/// A repository at `<tmp>/repo` on `main` with one commit holding `README.md` and a
/// `.gitignore` that ignores `target/`.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: Repo,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let repo = Repo::init(&root.join("repo"), "main").await.expect("init");
        write(&repo.path().join("README.md"), "hello\n");
        write(&repo.path().join(".gitignore"), "target/\n");
        repo.commit_all(repo.path(), "initial")
            .await
            .expect("commit")
            .expect("a commit");
        Self {
            _dir: dir,
            root,
            repo,
        }
    }

    fn main_tree(&self) -> &Path {
        self.repo.path()
    }

    /// A worktree of `branch` (made from `main`) at `<tmp>/wt-<name>`.
    async fn worktree(&self, name: &str, branch: &str) -> PathBuf {
        let path = self.root.join(format!("wt-{name}"));
        self.repo
            .ensure_worktree(&path, branch, "main")
            .await
            .expect("worktree");
        path
    }
}

fn write(path: &Path, content: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

/// Runs git directly, for setting up and inspecting what the crate must not be trusted with.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
