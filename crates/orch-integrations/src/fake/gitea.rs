//! A fake Gitea repository: the repository object, labels, issues with their labels and
//! comments, pull requests, commit statuses, merges, branches and webhooks, under
//! `/api/v1/repos/{owner}/{repo}`, plus `GET /api/v1/user` and repository creation
//! (`POST /api/v1/user/repos`, `POST /api/v1/orgs/{org}/repos`; a repository may start absent),
//! with `Authorization: token` auth, `page`/`limit` paging and errors as `{"message", "url"}`.
//!
//! The remote is a real bare git repository on disk, served over smart HTTP at the
//! repository's `clone_url` (`{base_url}/{owner}/{repo}.git`, see [`super::smart_http`]): git
//! must send the token (`Authorization: token`, or in Basic credentials) or get a 401, as from
//! Gitea. The merge call performs a real merge commit into the pull request's `base`, only
//! while the head is the `head_commit_id` given (409 "head out of date" otherwise), or, with
//! `Do: fast-forward-only`, moves the base to the head when the head contains it (409 "Merge
//! DivergingFastForwardOnly" otherwise); the fake refuses `squash` and `rebase` with 405 rather
//! than pretend. Issue
//! webhooks follow docs.gitea.com/usage/webhooks (`action`, `number`, `issue`, `repository`,
//! `sender` with its `id` and `login`). Every label change, a person's or the token user's, is
//! kept in the issue's timeline (`GET issues/{n}/timeline`: entries of `type` `label`, `body`
//! `"1"` when added and empty when removed, `user`, `label`, `created_at`).

mod routes;

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::bare::{self, MergeRefusal};
use super::server::{not_found, query_pairs};
use super::smart_http::GitRepository;
use super::webhook::{Delivery, Sender};

#[derive(Debug, Clone)]
pub struct GiteaIssue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub labels: Vec<u64>,
    pub open: bool,
}

#[derive(Debug, Clone)]
pub struct GiteaPull {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub merged: bool,
    /// Closed without a merge.
    pub closed: bool,
}

/// A person's review of a pull request, with its comments on the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeReview {
    pub id: u64,
    pub pull: u64,
    pub user: u64,
    /// In GitHub's words: `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`; each fake answers in its
    /// forge's own.
    pub state: String,
    pub commit_id: String,
    pub body: String,
    pub dismissed: bool,
    /// `(path, line, body)`.
    pub comments: Vec<(String, u64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GiteaStatus {
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: String,
    pub target_url: String,
}

#[derive(Debug)]
pub struct FakeGitea {
    token: String,
    /// When set, every write answers 403 naming this scope, as Gitea does for a token without it.
    pub missing_scope: Option<String>,
    pub owner: String,
    pub repo: String,
    pub bare: PathBuf,
    pub default_branch: String,
    /// (id, name)
    pub labels: Vec<(u64, String)>,
    pub issues: Vec<GiteaIssue>,
    /// (issue number, body)
    pub comments: Vec<(u64, String)>,
    pub pulls: Vec<GiteaPull>,
    pub statuses: Vec<GiteaStatus>,
    pub reviews: Vec<FakeReview>,
    /// Whether the repository exists; one made by [`FakeGitea::absent`] appears on a create.
    pub exists: bool,
    pub description: String,
    /// The login of the token's user (`GET /user`); creating under another owner goes through
    /// `POST /orgs/{owner}/repos`.
    pub login: String,
    /// The repository's webhooks as sent: `type`, `config` (`url`, `content_type`, `secret`),
    /// `events`, `active`.
    pub hooks: Vec<Value>,
    /// A label name the fake refuses to create (422), as a host with a conflicting rule would.
    pub refuse_label: Option<String>,
    /// Accounts by (id, login): the token's user is id 1; people get ids from 100 in the order
    /// they first act.
    pub users: Vec<(u64, String)>,
    /// Every label change, oldest first.
    pub timeline: Vec<LabelChange>,
    /// The server's base URL once served: the clone URL is then `{base}/{owner}/{repo}.git`,
    /// over smart HTTP behind the token check.
    served_at: Option<String>,
    next_id: u64,
    deliveries: u64,
}

/// One label put on or taken off an issue, by an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    pub issue: u64,
    pub label: String,
    pub added: bool,
    pub user: u64,
}

impl FakeGitea {
    /// A fake whose remote is a new bare repository at `bare` with default branch `main`.
    pub async fn new(token: &str, owner: &str, repo: &str, bare: &Path) -> std::io::Result<Self> {
        bare::init(bare, "main").await?;
        Ok(Self {
            exists: true,
            ..Self::unborn(token, owner, repo, bare)
        })
    }

    /// A fake where the repository does not exist yet: `POST /user/repos` (or
    /// `/orgs/{owner}/repos`) creates it, as an empty bare repository at `bare`.
    pub async fn absent(
        token: &str,
        owner: &str,
        repo: &str,
        bare: &Path,
    ) -> std::io::Result<Self> {
        Ok(Self::unborn(token, owner, repo, bare))
    }

    /// The fake's state with no repository yet and nothing on disk.
    fn unborn(token: &str, owner: &str, repo: &str, bare: &Path) -> Self {
        Self {
            token: token.to_owned(),
            missing_scope: None,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            bare: bare.to_owned(),
            default_branch: "main".to_owned(),
            labels: Vec::new(),
            issues: Vec::new(),
            comments: Vec::new(),
            pulls: Vec::new(),
            statuses: Vec::new(),
            reviews: Vec::new(),
            exists: false,
            description: String::new(),
            login: owner.to_owned(),
            hooks: Vec::new(),
            refuse_label: None,
            users: vec![(1, owner.to_owned())],
            timeline: Vec::new(),
            served_at: None,
            next_id: 0,
            deliveries: 0,
        }
    }

    /// Creates the repository (an empty bare one) as `POST /user/repos` does.
    async fn create_repository(&mut self, body: &Value) -> (StatusCode, Value) {
        if body.get("name").and_then(Value::as_str) != Some(self.repo.as_str()) {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "message": "the fake holds one repository; name it" }),
            );
        }
        if self.exists {
            return (
                StatusCode::CONFLICT,
                json!({ "message": "The repository with the same name already exists." }),
            );
        }
        let branch = body
            .get("default_branch")
            .and_then(Value::as_str)
            .unwrap_or("main")
            .to_owned();
        if bare::init(&self.bare, &branch).await.is_err() {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": "git init --bare failed" }),
            );
        }
        self.exists = true;
        self.default_branch = branch;
        self.description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        (StatusCode::CREATED, self.repository_json())
    }

    /// The bare repository's branches and their commits.
    async fn branches(&self) -> Vec<(String, String)> {
        let output = tokio::process::Command::new("git")
            .args([
                "for-each-ref",
                "--format=%(refname:short) %(objectname)",
                "refs/heads",
            ])
            .current_dir(&self.bare)
            .output()
            .await;
        let Ok(output) = output else {
            return Vec::new();
        };
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(b, c)| (b.to_owned(), c.to_owned()))
            .collect()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// `login` reviews pull request `pull` on `commit` (`APPROVED`, `CHANGES_REQUESTED` or
    /// `COMMENTED`), with comments `(path, line, body)`; returns the review's id.
    pub fn add_review(
        &mut self,
        pull: u64,
        login: &str,
        state: &str,
        commit: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> u64 {
        let user = self.user_id(login);
        let id = 5000 + self.reviews.len() as u64;
        self.reviews.push(FakeReview {
            id,
            pull,
            user,
            state: state.to_owned(),
            commit_id: commit.to_owned(),
            body: body.to_owned(),
            dismissed: false,
            comments: comments
                .iter()
                .map(|(p, l, b)| ((*p).to_owned(), *l, (*b).to_owned()))
                .collect(),
        });
        id
    }

    /// The reviews of `pull` in the shape both forges share (`id`, `user`, `body`, `commit_id`);
    /// `state` is left to the caller's words.
    pub(crate) fn reviews_json(&self, pull: u64) -> Vec<(FakeReview, Value)> {
        self.reviews
            .iter()
            .filter(|r| r.pull == pull)
            .map(|r| {
                let json = json!({
                    "id": r.id, "user": { "id": r.user, "login": self.login_of(r.user) },
                    "body": r.body, "commit_id": r.commit_id,
                });
                (r.clone(), json)
            })
            .collect()
    }

    /// A CI system reports `state` for `context` on commit `sha` (what `POST statuses/{sha}`
    /// records); returns the `status` delivery Gitea sends for it (its `CommitStatusPayload`:
    /// `id`, `sha`, `state`, `context`, `description`, `target_url`, `repository`, `sender`).
    pub fn report_status(
        &mut self,
        sha: &str,
        context: &str,
        state: &str,
        description: &str,
    ) -> Delivery {
        let status = GiteaStatus {
            sha: sha.to_owned(),
            state: state.to_owned(),
            context: context.to_owned(),
            description: description.to_owned(),
            target_url: format!("http://ci.invalid/{context}/{}", self.statuses.len() + 1),
        };
        let ci = self.user_id("ci-bot");
        let payload = json!({
            "id": self.statuses.len() + 1,
            "sha": status.sha, "state": status.state, "context": status.context,
            "description": status.description, "target_url": status.target_url,
            "repository": self.repository_json(),
            "sender": { "login": "ci-bot", "id": ci },
        });
        self.statuses.push(status);
        self.deliveries += 1;
        Delivery::new(
            Sender::Gitea,
            format!("7d3b3a53-0000-4000-8000-{:012x}", self.deliveries),
            "status",
            &payload,
        )
    }

    /// The combined status of `sha` (docs: `GET repos/{owner}/{repo}/commits/{ref}/status`):
    /// the latest status per context, each naming its state `status`, as Gitea does.
    pub(crate) fn combined_status(&self, sha: &str) -> Value {
        let mut latest: Vec<&GiteaStatus> = Vec::new();
        for status in self.statuses.iter().rev().filter(|s| s.sha == sha) {
            if !latest.iter().any(|l| l.context == status.context) {
                latest.push(status);
            }
        }
        let worst = ["error", "failure", "pending", "warning", "success"]
            .into_iter()
            .find(|w| latest.iter().any(|s| s.state == *w))
            .unwrap_or("pending");
        json!({
            "state": worst, "sha": sha, "total_count": latest.len(),
            "statuses": latest.iter().map(|s| json!({
                "status": s.state, "context": s.context, "description": s.description,
                "target_url": s.target_url,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn add_label(&mut self, name: &str) -> u64 {
        let id = self.id();
        self.labels.push((id, name.to_owned()));
        id
    }

    pub(crate) fn label_id(&self, name: &str) -> Option<u64> {
        self.labels
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
    }

    pub fn label_names(&self, number: u64) -> Vec<String> {
        self.issues
            .iter()
            .find(|i| i.number == number)
            .map(|i| {
                i.labels
                    .iter()
                    .filter_map(|id| self.labels.iter().find(|(l, _)| l == id))
                    .map(|(_, n)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn add_issue(&mut self, title: &str, body: &str, labels: &[&str]) -> u64 {
        let number = self.issues.len() as u64 + self.pulls.len() as u64 + 1;
        let labels = labels.iter().filter_map(|l| self.label_id(l)).collect();
        self.issues.push(GiteaIssue {
            number,
            title: title.to_owned(),
            body: body.to_owned(),
            labels,
            open: true,
        });
        number
    }

    /// The id of the account `login`, made on first use.
    pub fn user_id(&mut self, login: &str) -> u64 {
        if let Some((id, _)) = self.users.iter().find(|(_, l)| l == login) {
            return *id;
        }
        let id = 99 + self.users.len() as u64;
        self.users.push((id, login.to_owned()));
        id
    }

    fn login_of(&self, user: u64) -> String {
        self.users
            .iter()
            .find(|(id, _)| *id == user)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }

    /// Replaces issue `number`'s labels with `new` (ids), recording what changed as `user`.
    pub(crate) fn set_labels(&mut self, number: u64, new: Vec<u64>, user: u64) -> Option<()> {
        let name = |labels: &[(u64, String)], id: u64| {
            labels
                .iter()
                .find(|(l, _)| *l == id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default()
        };
        let issue = self.issues.iter_mut().find(|i| i.number == number)?;
        let old = std::mem::replace(&mut issue.labels, new.clone());
        for id in old.iter().filter(|id| !new.contains(id)) {
            let label = name(&self.labels, *id);
            self.timeline.push(LabelChange {
                issue: number,
                label,
                added: false,
                user,
            });
        }
        for id in new.iter().filter(|id| !old.contains(id)) {
            let label = name(&self.labels, *id);
            self.timeline.push(LabelChange {
                issue: number,
                label,
                added: true,
                user,
            });
        }
        Some(())
    }

    /// Puts `label` on the issue (dropping other labels of its exclusive scope) as the person
    /// `by` would, and returns the delivery Gitea sends for it.
    pub fn label_issue(&mut self, number: u64, label: &str, by: &str) -> Option<Delivery> {
        let id = self.label_id(label)?;
        let scope = label.split_once('/').map(|(s, _)| format!("{s}/"));
        let names: Vec<(u64, String)> = self.labels.clone();
        let mut labels = self
            .issues
            .iter()
            .find(|i| i.number == number)?
            .labels
            .clone();
        labels.retain(|l| {
            let name = names.iter().find(|(i, _)| i == l).map(|(_, n)| n.as_str());
            !matches!((&scope, name), (Some(s), Some(n)) if n.starts_with(s.as_str()))
        });
        labels.push(id);
        let user = self.user_id(by);
        self.set_labels(number, labels, user)?;
        let payload = json!({
            "action": "label_updated",
            "number": number,
            "issue": self.issue_json(number)?,
            "repository": self.repository_json(),
            "sender": { "login": by, "id": user },
        });
        self.deliveries += 1;
        Some(Delivery::new(
            Sender::Gitea,
            format!("7d3b3a53-0000-4000-8000-{:012x}", self.deliveries),
            "issues",
            &payload,
        ))
    }

    pub(crate) fn repository_json(&self) -> Value {
        json!({
            "id": 1,
            "name": self.repo,
            "full_name": format!("{}/{}", self.owner, self.repo),
            "owner": { "login": self.owner, "id": 1 },
            "default_branch": self.default_branch,
            "description": self.description,
            "private": true,
            "clone_url": self.clone_url(),
            "html_url": format!("http://gitea.invalid/{}/{}", self.owner, self.repo),
            // What the token may do here: without `write:repository` it cannot push.
            "permissions": {
                "admin": self.missing_scope.is_none(),
                "push": !self.missing_scope.as_deref().is_some_and(|s| s.contains("repository")),
                "pull": true,
            },
        })
    }

    /// Issue `number`'s timeline as Gitea's API answers it.
    pub(crate) fn timeline_json(&self, number: u64) -> Vec<Value> {
        self.timeline
            .iter()
            .enumerate()
            .filter(|(_, c)| c.issue == number)
            .map(|(seq, c)| {
                json!({
                    "id": 5000 + seq, "type": "label", "body": if c.added { "1" } else { "" },
                    "user": { "id": c.user, "login": self.login_of(c.user) },
                    "label": { "id": self.label_id(&c.label), "name": c.label },
                    "created_at": timestamp(seq + 1),
                })
            })
            .collect()
    }

    /// Where git reaches the repository: over HTTP once served, else its path on disk.
    pub fn clone_url(&self) -> String {
        match &self.served_at {
            Some(base) => format!("{base}/{}/{}.git", self.owner, self.repo),
            None => self.bare.display().to_string(),
        }
    }

    pub(crate) fn set_served_at(&mut self, base_url: &str) {
        self.served_at = Some(base_url.to_owned());
    }

    pub(crate) fn git_repository(&self) -> Option<GitRepository> {
        self.exists.then(|| GitRepository {
            path: format!("/{}/{}.git", self.owner, self.repo),
            bare: self.bare.clone(),
        })
    }

    pub(crate) fn issue_json(&self, number: u64) -> Option<Value> {
        let i = self.issues.iter().find(|i| i.number == number)?;
        let labels: Vec<Value> = i
            .labels
            .iter()
            .filter_map(|id| self.labels.iter().find(|(l, _)| l == id))
            .map(|(id, name)| json!({ "id": id, "name": name }))
            .collect();
        // Each label change updates the issue, as in Gitea: deliveries about it differ.
        let changes = self.timeline.iter().filter(|c| c.issue == number).count();
        Some(json!({
            "id": 1000 + i.number, "number": i.number, "title": i.title, "body": i.body,
            "labels": labels, "state": if i.open { "open" } else { "closed" },
            "pull_request": null, "updated_at": timestamp(changes),
        }))
    }

    /// A pull request as both forges show it; `head.sha` is the head branch's commit now.
    async fn pull_json(&self, p: &GiteaPull) -> Value {
        let sha = bare::branch_sha(&self.bare, &p.head)
            .await
            .unwrap_or_default();
        json!({
            "id": 2000 + p.number, "number": p.number, "title": p.title,
            "state": if p.merged || p.closed { "closed" } else { "open" }, "merged": p.merged,
            "head": { "ref": p.head, "label": p.head, "sha": sha },
            "base": { "ref": p.base, "label": p.base },
            "html_url": format!("http://gitea.invalid/{}/{}/pulls/{}", self.owner, self.repo, p.number),
        })
    }

    async fn merge(&mut self, number: u64, body: &Value) -> (StatusCode, Value) {
        let Some(index) = self.pulls.iter().position(|p| p.number == number) else {
            return not_found("pull request");
        };
        let fast_forward = match body.get("Do").and_then(Value::as_str) {
            Some("merge") => false,
            Some("fast-forward-only") => true,
            Some(other) => {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({ "message": format!("the fake does not do `{other}` merges") }),
                );
            }
            None => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "message": "Do is required" }),
                );
            }
        };
        if self.pulls[index].closed {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "message": "The PR is closed" }),
            );
        }
        if self.pulls[index].merged {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "message": "The PR is already merged" }),
            );
        }
        let message = body
            .get("merge_message_field")
            .and_then(Value::as_str)
            .unwrap_or("Merge pull request")
            .to_owned();
        let (head, base) = (
            self.pulls[index].head.clone(),
            self.pulls[index].base.clone(),
        );
        let Some(theirs) = bare::branch_sha(&self.bare, &head).await else {
            return not_found("head branch");
        };
        // Gitea merges only while the head is still the commit the caller names (an empty or
        // absent `head_commit_id` skips the check): 409 "head out of date" otherwise.
        let expected = body
            .get("head_commit_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !expected.is_empty() && expected != theirs {
            return (
                StatusCode::CONFLICT,
                json!({ "message": "head out of date", "url": "" }),
            );
        }
        let merged = if fast_forward {
            bare::fast_forward(&self.bare, &base, &theirs).await
        } else {
            bare::merge(&self.bare, &base, &theirs, &message).await
        };
        match merged {
            Ok(_) => {
                self.pulls[index].merged = true;
                (StatusCode::OK, Value::Null)
            }
            Err(MergeRefusal::Conflict) => (
                StatusCode::CONFLICT,
                json!({ "message": "merge conflict", "url": "" }),
            ),
            Err(MergeRefusal::Moved) => (
                StatusCode::CONFLICT,
                json!({ "message": "merge push out of date", "url": "" }),
            ),
            // Gitea's ErrMergeDivergingFastForwardOnly.
            Err(MergeRefusal::NotFastForward) => (
                StatusCode::CONFLICT,
                json!({ "message": "Merge DivergingFastForwardOnly", "url": "" }),
            ),
            Err(MergeRefusal::NoBranch(b)) => not_found(&format!("branch {b}")),
            Err(MergeRefusal::Git(e)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": format!("merge failed: {e}"), "url": "" }),
            ),
        }
    }

    pub(crate) fn paged(items: Vec<Value>, query: &str) -> Value {
        let pairs = query_pairs(query);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let limit = get("limit").unwrap_or(30).clamp(1, 50);
        let page = get("page").unwrap_or(1).max(1);
        Value::Array(
            items
                .into_iter()
                .skip((page - 1) * limit)
                .take(limit)
                .collect(),
        )
    }
}

/// A fixed, increasing time for the `n`th change: a history reads in order.
pub(crate) fn timestamp(n: usize) -> String {
    format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        (n / 3600) % 24,
        (n / 60) % 60,
        n % 60
    )
}
