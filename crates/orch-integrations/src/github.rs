//! GitHub as a tracker and a forge, over the REST API (version `2022-11-28`).
//!
//! Paths and shapes follow docs.github.com/rest, all under `/repos/{owner}/{repo}`: the
//! repository (`clone_url`, `default_branch`), `labels` (create with a hex `color` without `#`),
//! `issues` (filtered by `labels` and `state`, paged by `page` and `per_page`; the list holds
//! pull requests too, marked by a `pull_request` object, which are left out),
//! `issues/{n}/labels` (`PUT {"labels": [names]}` replaces them), `issues/{n}/comments`, `pulls`
//! (list, create with `head`/`base`), `pulls/{n}` (`PATCH state` closes),
//! `PUT pulls/{n}/merge` (`merge_method`: merge, squash, rebase; `commit_title`) and
//! `statuses/{sha}`.
//!
//! Requests carry `Authorization: Bearer <token>`, `Accept: application/vnd.github+json` and
//! `X-GitHub-Api-Version`. A rate limit is a 403 or 429 with `x-ratelimit-remaining: 0` (wait
//! until `x-ratelimit-reset`) or with `retry-after`; a token without a permission gets a 403 (or
//! a 404 for what it may not see) whose `X-Accepted-GitHub-Permissions` names what is needed:
//! the shared client reads both (docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api,
//! /troubleshooting-the-rest-api).
//!
//! GitHub labels have no exclusive scopes, so `set_state` itself keeps the `state/<Name>` label
//! exclusive: it replaces the issue's labels with its other labels plus the one state label.
//! Pushes go to the repository's `clone_url` with the token as HTTP basic credentials
//! (`x-access-token`, the form git over HTTPS accepts for both personal and app tokens), handed
//! to git through its environment, never its arguments.

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::json;

use crate::error::{IntegrationError, Result};
use crate::forge::{CommitStatus, Forge, MergeStyle, PullRequest};
use crate::http::{ApiClient, RetryPolicy};
use crate::repo_api::{LabelHistory, RepoApi, STATE_LABEL_PREFIX, full_sha, query_value};
use crate::repo_setup::Shapes;
use crate::secret::Token;
use crate::setup::{SetupSpec, SetupStep};
use crate::tracker::{RemoteItem, Tracker, TrackerUser, canonical};

/// The REST API version orch is written against.
pub const API_VERSION: &str = "2022-11-28";
/// The public API; GitHub Enterprise Server's is `https://<host>/api/v3`.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";

#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// `https://api.github.com`, or an Enterprise Server's `/api/v3`.
    pub base_url: String,
    pub owner: String,
    pub repo: String,
    pub token: Token,
    pub retry: RetryPolicy,
}

/// One GitHub repository: its issues are the tracker, its pull requests the forge.
#[derive(Debug)]
pub struct GitHub {
    rest: RepoApi,
    token: Token,
}

impl GitHub {
    pub fn new(config: GitHubConfig) -> Result<Self> {
        let api = ApiClient::new(
            "github",
            &config.base_url,
            "authorization",
            "Bearer ",
            config.token.clone(),
            config.retry,
        )?
        .with_headers(
            "application/vnd.github+json",
            &[("x-github-api-version", API_VERSION)],
        );
        let rest = RepoApi::new(api, "github", "", &config.owner, &config.repo, "per_page")?;
        Ok(Self {
            rest,
            token: config.token,
        })
    }

    /// The header git sends when pushing over HTTPS: basic auth as `x-access-token`.
    fn git_auth_header(&self) -> String {
        let pair = format!("x-access-token:{}", self.token.expose());
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// What onboarding sends GitHub (its documented request bodies) and where a branch keeps its
/// commit id.
const SHAPES: Shapes = Shapes {
    label: |name, state| {
        json!({ "name": name, "color": "6b7280",
                "description": format!("orch: the item's pipeline state ({})", state.group.as_str()) })
    },
    hook: |url, secret| {
        json!({ "name": "web", "active": true, "events": ["issues"],
                   "config": { "url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0" } })
    },
    repository: |name, description, _default_branch| json!({ "name": name, "description": description, "private": true, "auto_init": false }),
    commit_pointer: "/commit/sha",
};

#[async_trait]
impl Tracker for GitHub {
    fn kind(&self) -> &'static str {
        "github"
    }

    async fn survey_setup(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>> {
        self.rest.survey_tracker(spec).await
    }

    async fn apply_setup(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()> {
        self.rest.apply_tracker(step, spec, &SHAPES).await
    }

    async fn list_items(&self, state: &str) -> Result<Vec<RemoteItem>> {
        self.rest.list_items(state, "").await
    }

    async fn get_item(&self, id: &str) -> Result<RemoteItem> {
        self.rest.get_item(id).await
    }

    async fn state_setter(&self, id: &str, state: &str) -> Result<Option<TrackerUser>> {
        self.rest
            .label_setter(id, state, LabelHistory::GitHubEvents)
            .await
    }

    /// Replaces the issue's labels by name: its labels outside `state/` plus the new state. The
    /// state label must exist (GitHub would create a missing one, uncoloured and undescribed).
    async fn set_state(&self, id: &str, state: &str) -> Result<()> {
        canonical(state)?;
        let n = self.rest.issue_number(id)?;
        let wanted = format!("{STATE_LABEL_PREFIX}{state}");
        let exists = self
            .rest
            .api
            .get(&format!(
                "{}/labels/{}",
                self.rest.prefix,
                query_value(&wanted)
            ))
            .await;
        if let Err(IntegrationError::NotFound { .. }) = exists {
            return Err(IntegrationError::NotFound {
                service: "github".into(),
                what: format!("label `{wanted}` (create the state labels in the repository)"),
            });
        }
        exists?;
        let mut names: Vec<String> = self
            .rest
            .issue_label_names(n)
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .filter(|name| !name.starts_with(STATE_LABEL_PREFIX))
            .collect();
        names.push(wanted);
        self.rest
            .api
            .put(
                &format!("{}/issues/{n}/labels", self.rest.prefix),
                json!({ "labels": names }),
            )
            .await
            .map(|_| ())
    }

    async fn add_comment(&self, id: &str, text: &str) -> Result<()> {
        self.rest.add_comment(id, text).await
    }
}

#[async_trait]
impl Forge for GitHub {
    fn kind(&self) -> &'static str {
        "github"
    }

    async fn push_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<()> {
        self.rest
            .push_branch(repo, branch, || self.git_auth_header())
            .await
    }

    async fn fetch_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<String> {
        self.rest
            .fetch_branch(repo, branch, || self.git_auth_header())
            .await
    }

    async fn fetch_default(&self, repo: &orch_git::Repo) -> Result<(String, String)> {
        self.rest
            .fetch_default(repo, || self.git_auth_header())
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

    /// Commit statuses and check runs (GitHub Actions reports check runs; the default
    /// `filter=latest` gives the latest run per name).
    async fn commit_checks(&self, sha: &str) -> Result<Vec<crate::ExternalCheck>> {
        let mut checks = self.rest.commit_statuses(sha).await?;
        let runs = self
            .rest
            .api
            .get(&format!(
                "{}/commits/{sha}/check-runs?per_page=100",
                self.rest.prefix
            ))
            .await?;
        checks.extend(crate::checks::from_check_runs(&runs));
        Ok(checks)
    }

    /// The pull request's review comments (`GET pulls/{n}/comments`) go to the review named by
    /// their `pull_request_review_id`.
    async fn reviews(&self, number: u64) -> Result<Vec<crate::Review>> {
        let mut reviews = self.rest.reviews(number).await?;
        let comments = self
            .rest
            .list_all(&format!("{}/pulls/{number}/comments", self.rest.prefix))
            .await?;
        for c in &comments {
            let owner = c
                .get("pull_request_review_id")
                .and_then(serde_json::Value::as_u64);
            if let Some(review) = reviews.iter_mut().find(|r| Some(r.id) == owner) {
                review.comments.push(crate::reviews::comment(c));
            }
        }
        Ok(reviews)
    }

    /// `sha` is GitHub's head guard: 409 "Head branch was modified" when the branch moved.
    async fn merge_pull_request(
        &self,
        number: u64,
        expected_head: &str,
        style: MergeStyle,
        message: &str,
    ) -> Result<()> {
        full_sha(expected_head)?;
        if style == MergeStyle::FastForward {
            return self.fast_forward(number, expected_head).await;
        }
        if self.rest.get_pull(number).await?.merged {
            return Ok(());
        }
        self.rest
            .api
            .put(
                &format!("{}/pulls/{number}/merge", self.rest.prefix),
                json!({ "merge_method": style.as_str(), "commit_title": message,
                        "sha": expected_head }),
            )
            .await
            .map(|_| ())
    }

    async fn survey_repository(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>> {
        self.rest.survey_forge(spec, &SHAPES).await
    }

    async fn apply_repository(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()> {
        self.rest
            .apply_forge(step, spec, &SHAPES, || self.git_auth_header())
            .await
    }
}

impl GitHub {
    /// GitHub's merge button never fast-forwards, so the base branch's reference is moved to the
    /// head with `force: false` (GitHub answers 422 "Update is not a fast forward" when the head
    /// does not contain the base), after checking that the pull request's head is still the
    /// commit orch checked. GitHub then marks the pull request merged, as it does for any base
    /// that comes to contain the head. The token needs `contents: write`; a protected branch
    /// that forbids this refuses it, and the refusal is the error.
    async fn fast_forward(&self, number: u64, expected_head: &str) -> Result<()> {
        let pull = self.rest.get_pull_json(number).await?;
        if pull.get("merged").and_then(serde_json::Value::as_bool) == Some(true) {
            return Ok(());
        }
        let field = |pointer: &str| {
            pull.pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| IntegrationError::BadResponse {
                    service: "github".into(),
                    detail: format!("pull request #{number} has no `{pointer}`"),
                })
        };
        let (head, base) = (field("/head/sha")?, field("/base/ref")?);
        if head != expected_head {
            return Err(IntegrationError::Refused(format!(
                "pull request #{number}'s head is {head}, not {expected_head}: the branch moved"
            )));
        }
        self.rest
            .api
            .patch(
                &format!(
                    "{}/git/refs/heads/{}",
                    self.rest.prefix,
                    base.split('/')
                        .map(query_value)
                        .collect::<Vec<_>>()
                        .join("/")
                ),
                json!({ "sha": expected_head, "force": false }),
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(owner: &str) -> GitHubConfig {
        GitHubConfig {
            base_url: DEFAULT_BASE_URL.into(),
            owner: owner.into(),
            repo: "web".into(),
            token: Token::new("ghp_secret").expect("token"),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn names_that_could_change_the_path_are_refused() {
        assert!(GitHub::new(config("../x")).is_err());
        assert!(GitHub::new(config("acme-1")).is_ok());
    }

    #[test]
    fn git_gets_the_token_as_basic_credentials() {
        let github = GitHub::new(config("acme")).expect("github");
        // base64("x-access-token:ghp_secret")
        assert_eq!(
            github.git_auth_header(),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hwX3NlY3JldA=="
        );
        assert!(!format!("{github:?}").contains("ghp_secret"));
    }
}
