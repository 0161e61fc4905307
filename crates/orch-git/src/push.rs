//! Pushing an item's branch to a remote (a forge's clone URL or a path on disk).

use crate::command::{Git, check_ref};
use crate::{GitError, Repo, Result};

impl Repo {
    /// Pushes `branch` to the same name at `remote` (a URL or a path), replacing what is there:
    /// the item branch belongs to orch, and a rollback may have rewritten it. Refuses the default
    /// branch, which only ever changes through a merge (contract 11).
    ///
    /// `auth_header` (such as `Authorization: token ...`) goes to git through its environment,
    /// never its arguments, so it cannot appear in an error or a process listing.
    pub async fn push_branch(
        &self,
        remote: &str,
        branch: &str,
        auth_header: Option<&str>,
    ) -> Result<()> {
        check_ref("branch", branch)?;
        check_ref("remote", remote)?;
        if branch == self.default_branch().await? {
            return Err(GitError::PushToDefault(branch.to_owned()));
        }
        self.push_refspec(
            remote,
            &format!("+refs/heads/{branch}:refs/heads/{branch}"),
            auth_header,
        )
        .await
    }

    /// Pushes `branch` to the same name at `remote` without forcing: the one push of a default
    /// branch orch makes, onboarding's first push into an empty repository it has just created
    /// (contract 12). The caller checks the remote is empty; should anything have appeared there
    /// meanwhile, git refuses the non-fast-forward rather than replace it.
    pub async fn push_first(
        &self,
        remote: &str,
        branch: &str,
        auth_header: Option<&str>,
    ) -> Result<()> {
        check_ref("branch", branch)?;
        check_ref("remote", remote)?;
        self.push_refspec(
            remote,
            &format!("refs/heads/{branch}:refs/heads/{branch}"),
            auth_header,
        )
        .await
    }

    /// `git push remote refspec`; `auth_header` goes to git through its environment, never its
    /// arguments, so it cannot appear in an error or a process listing.
    async fn push_refspec(
        &self,
        remote: &str,
        refspec: &str,
        auth_header: Option<&str>,
    ) -> Result<()> {
        let mut git = Git::new(self.path())
            .args(["push", "--quiet", "--porcelain", "--"])
            .arg(remote)
            .arg(refspec);
        if let Some(header) = auth_header {
            git = git.hidden_config("http.extraHeader", header);
        }
        git.run().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn repo_with_branch(dir: &std::path::Path) -> Repo {
        let repo = Repo::init(&dir.join("work"), "main").await.expect("init");
        std::fs::write(dir.join("work/a.txt"), "a").expect("write");
        repo.commit_all(repo.path(), "first").await.expect("commit");
        Git::new(repo.path())
            .args(["branch", "orch/X-1"])
            .run()
            .await
            .expect("branch");
        repo
    }

    #[tokio::test]
    async fn pushes_the_branch_and_refuses_the_default_branch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo_with_branch(dir.path()).await;
        let bare = dir.path().join("remote.git");
        Git::new(dir.path())
            .args(["init", "--bare", "-q"])
            .arg(&bare)
            .run()
            .await
            .expect("bare");
        let remote = bare.display().to_string();
        repo.push_branch(&remote, "orch/X-1", Some("X-Test: 1"))
            .await
            .expect("push");
        let pushed = Git::new(&bare)
            .args(["rev-parse", "refs/heads/orch/X-1"])
            .run_line()
            .await
            .expect("rev-parse");
        assert_eq!(
            Some(pushed),
            repo.rev_parse("orch/X-1").await.expect("local")
        );
        let refused = repo.push_branch(&remote, "main", None).await;
        assert!(
            matches!(refused, Err(GitError::PushToDefault(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_first_push_never_replaces_what_the_remote_has() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo_with_branch(dir.path()).await;
        let bare = dir.path().join("remote.git");
        Git::new(dir.path())
            .args(["init", "--bare", "-q", "-b", "main"])
            .arg(&bare)
            .run()
            .await
            .expect("bare");
        let remote = bare.display().to_string();
        repo.push_first(&remote, "main", None)
            .await
            .expect("first push into an empty repository");
        // The remote moves on (someone else pushed); local history diverges.
        let other = Repo::init(&dir.path().join("other"), "main")
            .await
            .expect("init");
        std::fs::write(dir.path().join("other/b.txt"), "b").expect("write");
        other
            .commit_all(other.path(), "unrelated")
            .await
            .expect("commit");
        let forced = Git::new(other.path())
            .args(["push", "-q", "--force"])
            .arg(&remote)
            .arg("main:main")
            .run()
            .await;
        assert!(forced.is_ok(), "{forced:?}");
        let theirs = Git::new(&bare)
            .args(["rev-parse", "refs/heads/main"])
            .run_line()
            .await
            .expect("rev-parse");
        let again = repo.push_first(&remote, "main", None).await;
        assert!(again.is_err(), "a non-fast-forward is refused: {again:?}");
        let after = Git::new(&bare)
            .args(["rev-parse", "refs/heads/main"])
            .run_line()
            .await
            .expect("rev-parse");
        assert_eq!(after, theirs, "the remote's history is untouched");
    }
}
