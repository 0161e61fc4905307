//! Pushing an item's branch to a remote (a forge's clone URL or a path on disk), and fetching it
//! back on another machine, so that any worker can continue an item from the forge.

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

    /// Fetches `branch` from `remote` (a URL or a path) into [`fetched_ref`]`(branch)`, replacing
    /// what an earlier fetch left there, and returns the SHA it fetched. The local branch itself
    /// is not touched: it may be checked out in a worktree, and the caller decides which commit
    /// the worktree is reset to. `auth_header` travels as in [`Repo::push_branch`].
    pub async fn fetch_branch(
        &self,
        remote: &str,
        branch: &str,
        auth_header: Option<&str>,
    ) -> Result<String> {
        check_ref("branch", branch)?;
        check_ref("remote", remote)?;
        let target = fetched_ref(branch);
        let mut git = Git::new(self.path()).args(["fetch", "--quiet", "--no-tags", "--"]);
        git = git
            .arg(remote)
            .arg(format!("+refs/heads/{branch}:{target}"));
        if let Some(header) = auth_header {
            git = git.hidden_config("http.extraHeader", header);
        }
        git.run().await?;
        self.rev_parse(&target)
            .await?
            .ok_or(GitError::UnknownBranch(target))
    }

    /// Whether the object store holds the commit `sha` (a full or abbreviated hex name), as
    /// opposed to merely being able to spell it: `rev-parse` alone accepts any full SHA.
    pub async fn has_commit(&self, sha: &str) -> Result<bool> {
        if sha.len() < 4 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(GitError::InvalidArgument {
                what: "commit",
                value: sha.to_owned(),
                reason: "it is not a hexadecimal commit name",
            });
        }
        Ok(self
            .rev_parse(&format!("{sha}^{{commit}}"))
            .await?
            .is_some())
    }
}

/// Where [`Repo::fetch_branch`] keeps what it fetched: a remote-tracking ref of the forge, so the
/// fetched commits stay reachable (and visible to people) until the next fetch.
pub fn fetched_ref(branch: &str) -> String {
    format!("refs/remotes/forge/{branch}")
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

    #[tokio::test]
    async fn a_fetched_branch_brings_its_commit_into_another_clone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo_with_branch(dir.path()).await;
        std::fs::write(dir.path().join("work/b.txt"), "b").expect("write");
        Git::new(repo.path())
            .args(["switch", "-q", "orch/X-1"])
            .run()
            .await
            .expect("switch");
        let sha = repo
            .commit_all(repo.path(), "on the branch")
            .await
            .expect("commit")
            .expect("a commit");
        let bare = dir.path().join("remote.git");
        Git::new(dir.path())
            .args(["clone", "-q", "--bare"])
            .arg(repo.path())
            .arg(&bare)
            .run()
            .await
            .expect("bare clone");
        let other = Repo::init(&dir.path().join("other"), "main")
            .await
            .expect("init");
        assert!(!other.has_commit(&sha).await.expect("look"));
        let remote = bare.display().to_string();
        let fetched = other
            .fetch_branch(&remote, "orch/X-1", Some("X-Test: 1"))
            .await
            .expect("fetch");
        assert_eq!(fetched, sha);
        assert!(other.has_commit(&sha).await.expect("look"));
        assert_eq!(
            other
                .rev_parse(&fetched_ref("orch/X-1"))
                .await
                .expect("ref"),
            Some(sha)
        );
        assert!(
            other
                .fetch_branch(&remote, "orch/X-404", None)
                .await
                .is_err(),
            "a branch the remote lacks is an error"
        );
        assert!(
            !other.has_commit(&"0".repeat(40)).await.expect("look"),
            "a well-formed SHA of no object is not held"
        );
        assert!(matches!(
            other.has_commit("--all").await,
            Err(GitError::InvalidArgument { .. })
        ));
    }
}
