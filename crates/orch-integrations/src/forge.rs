//! The `Forge` port: where item branches are pushed, reviewed as pull requests, marked with
//! commit statuses and merged. orch never pushes the default branch: it moves only by a pull
//! request's merge, and a promoted candidate's by a fast-forward to exactly that candidate.

use async_trait::async_trait;

use crate::error::Result;
use crate::setup::{SetupSpec, SetupStep};

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeStyle {
    /// A merge commit: the history shows each item as one unit (orch's local merge does this).
    #[default]
    Merge,
    Squash,
    Rebase,
    /// The default branch moves to the pull request's head itself, which must contain it: how a
    /// promoted candidate (already the merge commit) is merged, so that the default branch holds
    /// exactly the commit prod runs.
    FastForward,
}

impl MergeStyle {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "merge" => Some(MergeStyle::Merge),
            "squash" => Some(MergeStyle::Squash),
            "rebase" => Some(MergeStyle::Rebase),
            "fast-forward" => Some(MergeStyle::FastForward),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
            MergeStyle::Rebase => "rebase",
            MergeStyle::FastForward => "fast-forward",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    pub merged: bool,
}

/// A commit status's state, in the words Gitea and GitHub share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: CommitState,
    /// Which check this is (`orch/review`); one status per context is shown.
    pub context: String,
    pub description: String,
}

#[async_trait]
pub trait Forge: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> &'static str;
    /// Pushes `branch` of the local `repo` to the forge; refuses the default branch.
    async fn push_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<()>;
    /// Fetches `branch` from the forge into the local `repo` (under
    /// [`orch_git::fetched_ref`]) and returns the SHA the forge holds, so that a worker on
    /// another machine can continue an item from where the last stage left it.
    async fn fetch_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<String>;
    /// Fetches the forge's default branch into the local `repo` (under
    /// [`orch_git::fetched_ref`]) and returns its name and the commit the forge holds: the tip
    /// candidates are integrated with and promotions are checked against.
    async fn fetch_default(&self, repo: &orch_git::Repo) -> Result<(String, String)>;
    /// The open pull request of `branch` into the default branch, opened if there is none.
    async fn open_pull_request(&self, branch: &str, title: &str, body: &str)
    -> Result<PullRequest>;
    async fn set_commit_status(&self, sha: &str, status: &CommitStatus) -> Result<()>;
    /// The commit statuses (and, where the forge has them, check runs) reported on commit
    /// `sha`, the latest per name, each with the commit it was reported for. orch's own
    /// `orch/*` statuses are left out: a verdict of orch's is never an external check.
    async fn commit_checks(&self, sha: &str) -> Result<Vec<crate::ExternalCheck>>;
    /// People's reviews of pull request `number`, oldest first, each with its comments on the
    /// diff.
    async fn reviews(&self, number: u64) -> Result<Vec<crate::Review>>;
    /// Closes the open pull request of `branch` unmerged (its item was stopped); none open is
    /// success.
    async fn close_pull_request(&self, branch: &str) -> Result<()>;
    /// Merges the pull request into its base only while its head is still `expected_head` (a
    /// full commit SHA: the commit orch checked); the forge refuses the merge when the branch
    /// moved since, and so does this call. A pull request that is already merged is success
    /// (idempotent).
    async fn merge_pull_request(
        &self,
        number: u64,
        expected_head: &str,
        style: MergeStyle,
        message: &str,
    ) -> Result<()>;
    /// What onboarding needs here (the repository, the first push into it) and whether each
    /// exists. GET requests only.
    async fn survey_repository(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>>;
    /// Carries out one missing step of [`Forge::survey_repository`]. The first push goes only
    /// into a repository that is empty and that orch created (its description says so).
    async fn apply_repository(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()>;
}
