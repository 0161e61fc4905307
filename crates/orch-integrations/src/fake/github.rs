//! A fake GitHub repository, following the REST API reference (docs.github.com/rest, version
//! `2022-11-28`): `/repos/{owner}/{repo}` and its `labels`, `labels/{name}`, `issues`,
//! `issues/{n}`, `issues/{n}/labels` (`PUT {"labels": [names]}` replaces, creating missing
//! labels as GitHub does), `issues/{n}/comments`, `pulls`, `pulls/{n}` (`PATCH`),
//! `PUT pulls/{n}/merge` (`merge_method`, `commit_title`; answers `{sha, merged, message}`),
//! `PATCH git/refs/heads/{branch}` (a fast-forward only; the pull requests the base then
//! contains are merged, as GitHub marks them) and
//! `statuses/{sha}`, `branches` (a branch's `commit.sha`) and `hooks` (`name: web`, `config`),
//! plus `GET /user` and repository creation (`POST /user/repos`, `POST /orgs/{org}/repos`), paged
//! by `page`/`per_page`, errors as `{"message", "documentation_url"}`.
//!
//! The resources are the same as Gitea's, so the repository's state is a [`FakeGitea`] (its
//! bare repository is served at the `clone_url` over smart HTTP, where git must send Basic
//! `x-access-token:<token>`, and a merge is a real merge commit into the base, refused with 409
//! "Head branch was modified" when `sha` is not the head);
//! this fake translates GitHub's paths, auth and bodies at the edge.
//!
//! Auth is `Authorization: Bearer <token>`. The fake is stricter than GitHub in two ways: it
//! requires `X-GitHub-Api-Version: 2022-11-28` (GitHub defaults a missing one; it answers 400 to
//! an unsupported one) and `Accept: application/vnd.github+json` (the documented recommendation),
//! so a client that forgets either is caught with a 400.
//! Permissions named in [`FakeGitHub::denied`] are missing from the token: a write needing one
//! answers 403 `Resource not accessible by personal access token` with
//! `X-Accepted-GitHub-Permissions: <name>=write`
//! (docs.github.com/rest/authentication/permissions-required-for-fine-grained-personal-access-tokens).
//! Deliveries follow docs.github.com/webhooks/webhook-events-and-payloads#issues: event
//! `issues`, actions `labeled`/`unlabeled` with `issue`, `label`, `repository`, `sender` (its
//! `id` and `login`). An issue's label history is `GET issues/{n}/events` (docs.github.com/rest/
//! issues/events: `event` `labeled`/`unlabeled`, `actor`, `label`, `created_at`), oldest first.

use std::path::Path;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use super::bare::MergeRefusal;
use super::gitea::FakeGitea;
use super::server::{FakeApi, decode, not_found, query_pairs};
use super::smart_http::{GitRepository, basic_credentials};
use super::webhook::{Delivery, Sender};
use crate::github::API_VERSION;

const DOCS: &str = "https://docs.github.com/rest";

#[derive(Debug)]
pub struct FakeGitHub {
    token: String,
    /// The repository: labels, issues, comments, pulls, statuses and the bare git repository.
    pub state: FakeGitea,
    /// Fine-grained permissions the token lacks (`issues`, `pull_requests`, `statuses`,
    /// `contents`): writes that need one are refused naming it.
    pub denied: Vec<String>,
    /// Check runs (docs.github.com/rest/checks/runs), newest last.
    pub check_runs: Vec<CheckRun>,
    deliveries: u64,
}

/// A check run as GitHub Actions (or any GitHub App) reports it on a commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckRun {
    pub name: String,
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Once completed: `success`, `failure`, `cancelled`, `timed_out`, `neutral`, `skipped`...
    pub conclusion: Option<String>,
    pub title: String,
    /// The run's output text (its log, as far as orch reads it).
    pub text: String,
}

impl FakeGitHub {
    /// A fake whose remote is a new bare repository at `bare` with default branch `main`.
    pub async fn new(token: &str, owner: &str, repo: &str, bare: &Path) -> std::io::Result<Self> {
        // The inner model never sees a request with its own auth: only its routes are used.
        let state = FakeGitea::new(token, owner, repo, bare).await?;
        Ok(Self {
            token: token.to_owned(),
            state,
            denied: Vec::new(),
            check_runs: Vec::new(),
            deliveries: 0,
        })
    }

    /// A fake where the repository does not exist yet: `POST /user/repos` (or
    /// `/orgs/{owner}/repos`) creates it, empty.
    pub async fn absent(
        token: &str,
        owner: &str,
        repo: &str,
        bare: &Path,
    ) -> std::io::Result<Self> {
        Ok(Self {
            token: token.to_owned(),
            state: FakeGitea::absent(token, owner, repo, bare).await?,
            denied: Vec::new(),
            check_runs: Vec::new(),
            deliveries: 0,
        })
    }

    /// Labels issue `number` with `label` as a person would in GitHub's web page, first
    /// removing its other labels of the same `scope/`, and returns the deliveries GitHub sends:
    /// one `unlabeled` per label removed, then `labeled`.
    pub fn label_issue(&mut self, number: u64, label: &str, by: &str) -> Vec<Delivery> {
        let scope = label.split_once('/').map(|(s, _)| format!("{s}/"));
        let removed: Vec<String> = self
            .state
            .label_names(number)
            .into_iter()
            .filter(|n| scope.as_deref().is_some_and(|s| n.starts_with(s)) && n != label)
            .collect();
        if self.state.label_issue(number, label, by).is_none() {
            return Vec::new();
        }
        let user = self.state.user_id(by);
        let mut out = Vec::new();
        for (action, name) in removed
            .iter()
            .map(|n| ("unlabeled", n.as_str()))
            .chain([("labeled", label)])
        {
            let Some(issue) = self.state.issue_json(number) else {
                break;
            };
            let mut repository = self.state.repository_json();
            repository["html_url"] = json!(format!(
                "https://github.invalid/{}/{}",
                self.state.owner, self.state.repo
            ));
            let payload = json!({
                "action": action,
                "issue": issue,
                "label": { "id": self.state.label_id(name), "name": name },
                "repository": repository,
                "sender": { "login": by, "id": user, "type": "User" },
            });
            self.deliveries += 1;
            out.push(Delivery::new(
                Sender::GitHub,
                format!("72d3162e-cc78-11e3-81ab-{:012x}", self.deliveries),
                "issues",
                &payload,
            ));
        }
        out
    }

    /// The permission a write needs, as GitHub names it.
    fn permission(method: &Method, parts: &[&str]) -> Option<&'static str> {
        if method == Method::GET {
            return None;
        }
        Some(match parts {
            ["pulls", _, "merge"] | ["git", ..] => "contents",
            ["pulls", ..] => "pull_requests",
            ["statuses", ..] => "statuses",
            ["hooks", ..] => "webhooks",
            _ => "issues",
        })
    }

    fn routes(path: &str, prefix: &str) -> Option<Vec<String>> {
        let rest = path.strip_prefix(prefix)?;
        Some(
            rest.trim_matches('/')
                .split('/')
                .filter(|p| !p.is_empty())
                .map(decode)
                .collect(),
        )
    }

    fn prefix(&self) -> String {
        format!("/repos/{}/{}", self.state.owner, self.state.repo)
    }

    fn pull_urls(&self, value: &mut Value) {
        let fix = |p: &mut Value| {
            if let Some(n) = p.get("number").and_then(Value::as_u64) {
                p["html_url"] = json!(format!(
                    "https://github.invalid/{}/{}/pull/{n}",
                    self.state.owner, self.state.repo
                ));
            }
        };
        match value {
            Value::Array(items) => items.iter_mut().for_each(fix),
            other => fix(other),
        }
    }

    /// GitHub's `per_page` is the inner model's `limit`.
    fn gitea_query(query: &str) -> String {
        query_pairs(query)
            .into_iter()
            .map(|(k, v)| {
                let k = if k == "per_page" {
                    "limit".to_owned()
                } else {
                    k
                };
                format!("{k}={}", crate::repo_api::query_value(&v))
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    async fn merge(&mut self, inner: &str, body: &Value) -> (StatusCode, Value) {
        let method = body
            .get("merge_method")
            .and_then(Value::as_str)
            .unwrap_or("merge");
        let title = body
            .get("commit_title")
            .and_then(Value::as_str)
            .unwrap_or("Merge pull request");
        // GitHub's head guard is `sha`; the inner model's is Gitea's `head_commit_id`.
        let expected = body.get("sha").and_then(Value::as_str).unwrap_or_default();
        let (status, answer) = self
            .state
            .answer(
                &Method::POST,
                inner,
                "",
                json!({ "Do": method, "merge_message_field": title, "head_commit_id": expected }),
            )
            .await;
        if status == StatusCode::CONFLICT && answer["message"] == "head out of date" {
            return message(
                StatusCode::CONFLICT,
                "Head branch was modified. Review and try the merge again.",
            );
        }
        if !status.is_success() {
            return (status, answer);
        }
        let base = inner
            .rsplit('/')
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|n| self.state.pulls.iter().find(|p| p.number == n))
            .map(|p| p.base.clone())
            .unwrap_or_else(|| self.state.default_branch.clone());
        let sha = super::bare::branch_sha(&self.state.bare, &base)
            .await
            .unwrap_or_default();
        (
            StatusCode::OK,
            json!({ "sha": sha, "merged": true, "message": "Pull Request successfully merged" }),
        )
    }
}

impl FakeGitHub {
    /// `GET commits/{ref}/check-runs` with the default `filter=latest`: the newest run per name.
    fn check_runs_json(&self, sha: &str) -> Value {
        let mut latest: Vec<(usize, &CheckRun)> = Vec::new();
        for (i, run) in self.check_runs.iter().enumerate().rev() {
            if run.head_sha == sha && !latest.iter().any(|(_, l)| l.name == run.name) {
                latest.push((i, run));
            }
        }
        let runs: Vec<Value> = latest
            .iter()
            .map(|(i, r)| {
                json!({
                    "id": 9000 + i, "name": r.name, "head_sha": r.head_sha, "status": r.status,
                    "conclusion": r.conclusion,
                    "details_url": format!("https://github.invalid/actions/runs/{}", 9000 + i),
                    "output": { "title": r.title, "summary": "", "text": r.text },
                })
            })
            .collect();
        json!({ "total_count": runs.len(), "check_runs": runs })
    }

    /// `PATCH git/refs/heads/{branch}` (docs.github.com/rest/git/refs#update-a-reference):
    /// `{sha, force}`; without `force` only a fast-forward, else 422 "Update is not a fast
    /// forward". A pull request whose head the base now contains is merged, as GitHub marks it.
    /// The fake does no forced updates (422 rather than pretend).
    async fn update_ref(&mut self, branch: &str, body: &Value) -> (StatusCode, Value) {
        let Some(sha) = body.get("sha").and_then(Value::as_str) else {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request: sha is required",
            );
        };
        if body.get("force").and_then(Value::as_bool) == Some(true) {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the fake does not do forced reference updates",
            );
        }
        match super::bare::fast_forward(&self.state.bare, branch, sha).await {
            Ok(_) => {}
            Err(MergeRefusal::NoBranch(_)) => {
                return message(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist");
            }
            Err(MergeRefusal::NotFastForward | MergeRefusal::Moved) => {
                return message(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Update is not a fast forward",
                );
            }
            Err(MergeRefusal::Conflict | MergeRefusal::Git(_)) => {
                return message(StatusCode::INTERNAL_SERVER_ERROR, "reference update failed");
            }
        }
        for index in 0..self.state.pulls.len() {
            let pull = &self.state.pulls[index];
            if pull.base != branch || pull.merged || pull.closed {
                continue;
            }
            let Some(head) = super::bare::branch_sha(&self.state.bare, &pull.head).await else {
                continue;
            };
            if super::bare::contains(&self.state.bare, branch, &head).await {
                self.state.pulls[index].merged = true;
            }
        }
        let reference = format!("refs/heads/{branch}");
        (
            StatusCode::OK,
            json!({
                "ref": reference,
                "url": format!("https://api.github.invalid{}/git/{reference}", self.prefix()),
                "object": { "type": "commit", "sha": sha },
            }),
        )
    }
}

fn message(status: StatusCode, text: &str) -> (StatusCode, Value) {
    (
        status,
        json!({ "message": text, "documentation_url": DOCS }),
    )
}

#[async_trait]
impl FakeApi for FakeGitHub {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.token)
    }

    fn serving_at(&mut self, base_url: &str) {
        self.state.set_served_at(base_url);
    }

    fn git_repository(&self) -> Option<GitRepository> {
        self.state.git_repository()
    }

    /// git over HTTPS takes the token as Basic credentials with the user `x-access-token`
    /// (the form orch sends); the REST API's `Bearer` header is not git's.
    fn git_user(&self, headers: &HeaderMap) -> Option<String> {
        let (user, password) = basic_credentials(headers)?;
        (user == "x-access-token" && password == self.token).then(|| self.state.login.clone())
    }

    fn git_realm(&self) -> &'static str {
        "GitHub"
    }

    fn refuse_headers(&self, headers: &HeaderMap) -> Option<(StatusCode, Value)> {
        let version = headers
            .get("x-github-api-version")
            .and_then(|v| v.to_str().ok());
        if version != Some(API_VERSION) {
            return Some(message(
                StatusCode::BAD_REQUEST,
                &format!("API version {version:?} is not supported (the fake requires it)"),
            ));
        }
        let accept = headers.get("accept").and_then(|v| v.to_str().ok());
        (accept != Some("application/vnd.github+json")).then(|| {
            message(
                StatusCode::BAD_REQUEST,
                &format!("Accept {accept:?}: the fake requires application/vnd.github+json"),
            )
        })
    }

    fn answer_headers(&self, method: &Method, path: &str, status: StatusCode) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let parts = Self::routes(path, &self.prefix()).unwrap_or_default();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        if let Some(permission) = Self::permission(method, &parts)
            && status == StatusCode::FORBIDDEN
            && let Ok(value) = HeaderValue::from_str(&format!("{permission}=write"))
        {
            headers.insert("x-accepted-github-permissions", value);
        }
        headers
    }

    async fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        // The token's user and repository creation live outside the repository's paths.
        let org_repos = format!("/orgs/{}/repos", self.state.owner);
        if path == "/user" || path == "/user/repos" || path == org_repos {
            let permission_denied =
                method != Method::GET && self.denied.iter().any(|d| d == "administration");
            if permission_denied {
                return message(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by personal access token",
                );
            }
            return self
                .state
                .answer(method, &format!("/api/v1{path}"), query, body)
                .await;
        }
        let Some(parts) = Self::routes(path, &self.prefix()) else {
            return message(StatusCode::NOT_FOUND, "Not Found");
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        if let Some(permission) = Self::permission(method, &parts)
            && self.denied.iter().any(|d| d == permission)
        {
            return message(
                StatusCode::FORBIDDEN,
                "Resource not accessible by personal access token",
            );
        }
        let inner = format!("/api/v1{path}");
        let query = Self::gitea_query(query);
        match (method, parts.as_slice()) {
            (&Method::GET, ["labels", name]) => match self.state.label_id(name) {
                Some(id) => (
                    StatusCode::OK,
                    json!({ "id": id, "name": name, "color": "6b7280" }),
                ),
                None => message(StatusCode::NOT_FOUND, "Not Found"),
            },
            (&Method::PUT, ["issues", n, "labels"]) => {
                let names: Vec<String> = body
                    .get("labels")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let ids: Vec<u64> = names
                    .iter()
                    .map(|name| {
                        self.state
                            .label_id(name)
                            .unwrap_or_else(|| self.state.add_label(name))
                    })
                    .collect();
                let inner = format!("/api/v1{}/issues/{n}/labels", self.prefix());
                self.state
                    .answer(method, &inner, "", json!({ "labels": ids }))
                    .await
            }
            (&Method::GET, ["branches", ..]) => {
                // GitHub names a branch's commit id `sha`, where Gitea says `id`.
                let (status, mut value) = self.state.answer(method, &inner, &query, body).await;
                let fix = |b: &mut Value| {
                    if let Some(id) = b.pointer("/commit/id").cloned() {
                        b["commit"] = json!({ "sha": id });
                    }
                };
                match &mut value {
                    Value::Array(items) => items.iter_mut().for_each(fix),
                    other => fix(other),
                }
                (status, value)
            }
            (&Method::GET, ["issues", n, "events"]) => {
                let Some(n) = n
                    .parse()
                    .ok()
                    .filter(|n| self.state.issue_json(*n).is_some())
                else {
                    return message(StatusCode::NOT_FOUND, "Not Found");
                };
                let events = self
                    .state
                    .timeline_json(n)
                    .into_iter()
                    .map(|e| {
                        json!({
                            "id": e["id"],
                            "event": if e["body"] == "1" { "labeled" } else { "unlabeled" },
                            "actor": e["user"],
                            "label": { "name": e["label"]["name"] },
                            "created_at": e["created_at"],
                        })
                    })
                    .collect();
                (StatusCode::OK, FakeGitea::paged(events, &query))
            }
            (&Method::GET, ["commits", sha, "status"]) => {
                // GitHub names a status's state `state`, where Gitea says `status`.
                let mut combined = self.state.combined_status(sha);
                if let Some(statuses) = combined["statuses"].as_array_mut() {
                    for s in statuses {
                        s["state"] = s["status"].take();
                    }
                }
                (StatusCode::OK, combined)
            }
            (&Method::GET, ["commits", sha, "check-runs"]) => {
                (StatusCode::OK, self.check_runs_json(sha))
            }
            (&Method::GET, ["pulls", n, "reviews"]) => {
                let Some(n) = n.parse().ok() else {
                    return message(StatusCode::NOT_FOUND, "Not Found");
                };
                let items = self
                    .state
                    .reviews_json(n)
                    .into_iter()
                    .map(|(r, mut v)| {
                        v["state"] = json!(if r.dismissed {
                            "DISMISSED"
                        } else {
                            r.state.as_str()
                        });
                        v
                    })
                    .collect();
                (StatusCode::OK, FakeGitea::paged(items, &query))
            }
            (&Method::GET, ["pulls", n, "comments"]) => {
                let Some(n) = n.parse::<u64>().ok() else {
                    return message(StatusCode::NOT_FOUND, "Not Found");
                };
                let items = self
                    .state
                    .reviews
                    .iter()
                    .filter(|r| r.pull == n)
                    .flat_map(|r| {
                        r.comments.iter().map(|(path, line, body)| {
                            json!({ "pull_request_review_id": r.id, "path": path, "line": line,
                                    "original_line": line, "body": body, "commit_id": r.commit_id })
                        })
                    })
                    .collect();
                (StatusCode::OK, FakeGitea::paged(items, &query))
            }
            (&Method::PUT, ["pulls", _, "merge"]) => self.merge(&inner, &body).await,
            (&Method::PATCH, ["git", "refs", "heads", branch @ ..]) => {
                self.update_ref(&branch.join("/"), &body).await
            }
            // GitHub merges with PUT; the inner model's POST route is not GitHub's.
            (&Method::POST, ["pulls", _, "merge"]) => not_found("route"),
            (_, ["pulls", ..]) => {
                let (status, mut value) = self.state.answer(method, &inner, &query, body).await;
                self.pull_urls(&mut value);
                // GitHub answers an update with 200, where Gitea says 201.
                let status = if method == Method::PATCH && status.is_success() {
                    StatusCode::OK
                } else {
                    status
                };
                (status, value)
            }
            _ => self.state.answer(method, &inner, &query, body).await,
        }
    }
}
