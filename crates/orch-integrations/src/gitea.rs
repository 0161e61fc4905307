//! Gitea and Forgejo as a tracker and a forge, over the REST API v1 (`Authorization: token`).
//!
//! Paths follow the Gitea API reference (docs.gitea.com/api, the swagger at `/api/swagger`),
//! all under `/api/v1/repos/{owner}/{repo}`: the repository itself (`clone_url`,
//! `default_branch`), `labels`, `issues` (filtered by `labels`, `state`, `type`; paged by `page`
//! and `limit`), `issues/{n}/labels` (PUT replaces), `issues/{n}/comments`, `pulls` (list,
//! create with `head`/`base`), `pulls/{n}`, `pulls/{n}/merge` (`Do`: merge, squash, rebase) and
//! `statuses/{sha}`. A missing token scope is a 403 whose `message` names it.
//!
//! Gitea issues are only open or closed, so an item's canonical state is an exclusive scoped
//! label `state/<Name>` (Gitea keeps at most one label of an exclusive scope on an issue).

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::{IntegrationError, Result};
use crate::forge::{CommitStatus, Forge, MergeStyle, PullRequest};
use crate::http::{ApiClient, RetryPolicy};
use crate::repo_api::{LabelHistory, RepoApi, full_sha};
pub use crate::repo_api::{STATE_LABEL_PREFIX, state_of_labels};
use crate::repo_setup::Shapes;
use crate::secret::Token;
use crate::setup::{SetupSpec, SetupStep};
use crate::tracker::{RemoteItem, Tracker, TrackerUser, canonical};

#[derive(Debug, Clone)]
pub struct GiteaConfig {
    pub base_url: String,
    pub owner: String,
    pub repo: String,
    pub token: Token,
    pub retry: RetryPolicy,
}

#[derive(Debug)]
pub struct Gitea {
    rest: RepoApi,
}

impl Gitea {
    pub fn new(config: GiteaConfig) -> Result<Self> {
        let api = ApiClient::new(
            "gitea",
            &config.base_url,
            "authorization",
            "token ",
            config.token,
            config.retry,
        )?;
        let rest = RepoApi::new(
            api,
            "gitea",
            "/api/v1",
            &config.owner,
            &config.repo,
            "limit",
        )?;
        Ok(Self { rest })
    }
}

/// What onboarding sends Gitea (its documented request bodies) and where a branch keeps its
/// commit id.
const SHAPES: Shapes = Shapes {
    label: |name, state| {
        json!({ "name": name, "color": "#6b7280", "exclusive": true,
                "description": format!("orch: the item's pipeline state ({})", state.group.as_str()) })
    },
    hook: |url, secret| {
        json!({ "type": "gitea", "active": true, "events": ["issues", "issue_label"],
                   "config": { "url": url, "content_type": "json", "secret": secret } })
    },
    repository: |name, description, default_branch| {
        json!({ "name": name, "description": description, "private": true, "auto_init": false,
                   "default_branch": default_branch })
    },
    commit_pointer: "/commit/id",
};

#[async_trait]
impl Tracker for Gitea {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    async fn survey_setup(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>> {
        self.rest.survey_tracker(spec).await
    }

    async fn apply_setup(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()> {
        self.rest.apply_tracker(step, spec, &SHAPES).await
    }

    async fn list_items(&self, state: &str) -> Result<Vec<RemoteItem>> {
        self.rest.list_items(state, "&type=issues").await
    }

    async fn get_item(&self, id: &str) -> Result<RemoteItem> {
        self.rest.get_item(id).await
    }

    async fn state_setter(&self, id: &str, state: &str) -> Result<Option<TrackerUser>> {
        self.rest
            .label_setter(id, state, LabelHistory::GiteaTimeline)
            .await
    }

    /// Replaces the issue's labels by id (`PUT` replaces): its other labels and the new state.
    async fn set_state(&self, id: &str, state: &str) -> Result<()> {
        canonical(state)?;
        let n = self.rest.issue_number(id)?;
        let wanted = format!("{STATE_LABEL_PREFIX}{state}");
        let all = self.rest.labels().await?;
        let state_id = all
            .iter()
            .find(|(_, name)| *name == wanted)
            .map(|(id, _)| *id)
            .ok_or_else(|| IntegrationError::NotFound {
                service: "gitea".into(),
                what: format!("label `{wanted}` (create it in the repository's labels; docs/trackers/gitea.md lists them)"),
            })?;
        let mut ids: Vec<u64> = self
            .rest
            .issue_label_names(n)
            .await?
            .into_iter()
            .filter(|(_, name)| !name.starts_with(STATE_LABEL_PREFIX))
            .map(|(id, _)| id)
            .collect();
        ids.push(state_id);
        self.rest
            .api
            .put(
                &format!("{}/issues/{n}/labels", self.rest.prefix),
                json!({ "labels": ids }),
            )
            .await
            .map(|_| ())
    }

    async fn add_comment(&self, id: &str, text: &str) -> Result<()> {
        self.rest.add_comment(id, text).await
    }
}

#[async_trait]
impl Forge for Gitea {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    async fn push_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<()> {
        self.rest
            .push_branch(repo, branch, || self.rest.api.auth_header_line())
            .await
    }

    async fn fetch_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<String> {
        self.rest
            .fetch_branch(repo, branch, || self.rest.api.auth_header_line())
            .await
    }

    async fn fetch_default(&self, repo: &orch_git::Repo) -> Result<(String, String)> {
        self.rest
            .fetch_default(repo, || self.rest.api.auth_header_line())
            .await
    }

    async fn open_pull_request(
        &self,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest> {
        self.rest.open_pull_request(branch, title, body).await
    }

    async fn close_pull_request(&self, branch: &str) -> Result<()> {
        self.rest.close_pull_request(branch).await
    }

    async fn set_commit_status(&self, sha: &str, status: &CommitStatus) -> Result<()> {
        self.rest.set_commit_status(sha, status).await
    }

    /// Gitea reports CI (Gitea Actions, Woodpecker, Drone...) as commit statuses; its API has no
    /// check runs, and no log tail.
    async fn commit_checks(&self, sha: &str) -> Result<Vec<crate::ExternalCheck>> {
        self.rest.commit_statuses(sha).await
    }

    /// Each review's comments are `GET pulls/{n}/reviews/{id}/comments`.
    async fn reviews(&self, number: u64) -> Result<Vec<crate::Review>> {
        let mut reviews = self.rest.reviews(number).await?;
        for review in &mut reviews {
            let comments = self
                .rest
                .list_all(&format!(
                    "{}/pulls/{number}/reviews/{}/comments",
                    self.rest.prefix, review.id
                ))
                .await?;
            review.comments = comments.iter().map(crate::reviews::comment).collect();
        }
        Ok(reviews)
    }

    /// `head_commit_id` is Gitea's head guard: 409 "head out of date" when the branch moved.
    async fn merge_pull_request(
        &self,
        number: u64,
        expected_head: &str,
        style: MergeStyle,
        message: &str,
    ) -> Result<()> {
        full_sha(expected_head)?;
        if self.rest.get_pull(number).await?.merged {
            return Ok(());
        }
        self.rest
            .api
            .post(
                &format!("{}/pulls/{number}/merge", self.rest.prefix),
                json!({ "Do": gitea_merge_style(style), "merge_message_field": message,
                        "head_commit_id": expected_head, "delete_branch_after_merge": false }),
            )
            .await
            .map(|_: Value| ())
    }

    async fn survey_repository(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>> {
        self.rest.survey_forge(spec, &SHAPES).await
    }

    async fn apply_repository(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()> {
        self.rest
            .apply_forge(step, spec, &SHAPES, || self.rest.api.auth_header_line())
            .await
    }
}

/// Gitea's name of a merge style (`Do`); a fast-forward is `fast-forward-only` (Gitea 1.21+,
/// Forgejo 7+), which refuses when the head does not contain the base.
fn gitea_merge_style(style: MergeStyle) -> &'static str {
    match style {
        MergeStyle::FastForward => "fast-forward-only",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_change_the_path_are_refused() {
        let config = |owner: &str| GiteaConfig {
            base_url: "http://127.0.0.1:1".into(),
            owner: owner.into(),
            repo: "r".into(),
            token: Token::new("t").expect("token"),
            retry: RetryPolicy::default(),
        };
        assert!(Gitea::new(config("../x")).is_err());
        assert!(Gitea::new(config("team-1")).is_ok());
    }
}
