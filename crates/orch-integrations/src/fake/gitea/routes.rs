//! The fake Gitea's HTTP side: its token check, git's credentials, and the REST routes it
//! answers (`/api/v1/...`), over the model in the parent module.

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::{FakeGitea, GiteaPull, GiteaStatus};
use crate::fake::bare;
use crate::fake::server::{FakeApi, not_found, query_pairs};
use crate::fake::smart_http::{GitRepository, basic_credentials};

#[async_trait]
impl FakeApi for FakeGitea {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("token "))
            .is_some_and(|t| t == self.token)
    }

    fn serving_at(&mut self, base_url: &str) {
        self.set_served_at(base_url);
    }

    fn git_repository(&self) -> Option<GitRepository> {
        FakeGitea::git_repository(self)
    }

    /// Gitea takes a token for git over HTTP as `Authorization: token <t>` or in Basic
    /// credentials, as the password (any user name) or as the user name.
    fn git_user(&self, headers: &HeaderMap) -> Option<String> {
        if self.authorized(headers) {
            return Some(self.login.clone());
        }
        let (user, password) = basic_credentials(headers)?;
        (password == self.token || user == self.token).then(|| self.login.clone())
    }

    fn git_realm(&self) -> &'static str {
        "Gitea"
    }

    async fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        if method != Method::GET
            && let Some(scope) = &self.missing_scope
        {
            return (
                StatusCode::FORBIDDEN,
                json!({ "message": format!("token does not have at least one of required scope(s): [{scope}]"), "url": "" }),
            );
        }
        let org_repos = format!("/api/v1/orgs/{}/repos", self.owner);
        match (method, path) {
            (&Method::GET, "/api/v1/user") => {
                return (
                    StatusCode::OK,
                    json!({ "id": 1, "login": self.login, "username": self.login }),
                );
            }
            (&Method::POST, "/api/v1/user/repos") if self.login == self.owner => {
                return self.create_repository(&body).await;
            }
            (&Method::POST, p) if p == org_repos && self.login != self.owner => {
                return self.create_repository(&body).await;
            }
            (&Method::POST, "/api/v1/user/repos") => {
                return (
                    StatusCode::FORBIDDEN,
                    json!({ "message": "the fake's repository belongs to an organisation" }),
                );
            }
            _ => {}
        }
        let prefix = format!("/api/v1/repos/{}/{}", self.owner, self.repo);
        let Some(rest) = path.strip_prefix(&prefix).filter(|_| self.exists) else {
            return (
                StatusCode::NOT_FOUND,
                json!({ "message": "The target couldn't be found.", "url": "", "errors": [] }),
            );
        };
        let parts: Vec<&str> = rest
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let number = |s: &str| s.parse::<u64>().ok();
        match (method, parts.as_slice()) {
            (&Method::GET, []) => (StatusCode::OK, self.repository_json()),
            (&Method::GET, ["labels"]) => {
                let labels = self.labels.iter().map(|(id, name)| json!({ "id": id, "name": name, "exclusive": name.contains('/') })).collect();
                (StatusCode::OK, Self::paged(labels, query))
            }
            (&Method::POST, ["labels"]) => {
                let Some(name) = body.get("name").and_then(Value::as_str) else {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({ "message": "name is required" }),
                    );
                };
                if self.refuse_label.as_deref() == Some(name) {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({ "message": format!("label name {name} is invalid"), "url": "" }),
                    );
                }
                let id = self.add_label(name);
                (StatusCode::CREATED, json!({ "id": id, "name": name }))
            }
            (&Method::GET, ["branches"]) => {
                let items = self
                    .branches()
                    .await
                    .into_iter()
                    .map(|(name, id)| json!({ "name": name, "commit": { "id": id } }))
                    .collect();
                (StatusCode::OK, Self::paged(items, query))
            }
            (&Method::GET, ["branches", name]) => {
                let wanted = crate::fake::server::decode(name);
                match self
                    .branches()
                    .await
                    .into_iter()
                    .find(|(b, _)| *b == wanted)
                {
                    Some((name, id)) => (
                        StatusCode::OK,
                        json!({ "name": name, "commit": { "id": id } }),
                    ),
                    None => not_found("branch"),
                }
            }
            (&Method::GET, ["hooks"]) => {
                // Gitea never returns a webhook's secret.
                let hooks = self
                    .hooks
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        json!({ "id": i + 1, "type": h["type"], "active": h["active"], "events": h["events"],
                                "config": { "url": h["config"]["url"], "content_type": h["config"]["content_type"] } })
                    })
                    .collect();
                (StatusCode::OK, Self::paged(hooks, query))
            }
            (&Method::POST, ["hooks"]) => {
                let url = body.pointer("/config/url").and_then(Value::as_str);
                // Gitea names the hook's kind `type`; GitHub's wrapper sends `name: web`.
                let kind = body
                    .get("type")
                    .or_else(|| body.get("name"))
                    .and_then(Value::as_str);
                if url.is_none() || kind.is_none() {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({ "message": "type and config.url are required" }),
                    );
                }
                self.hooks.push(body.clone());
                (
                    StatusCode::CREATED,
                    json!({ "id": self.hooks.len(), "type": kind, "config": { "url": url } }),
                )
            }
            (&Method::GET, ["issues"]) => {
                let pairs = query_pairs(query);
                let wanted: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| k == "labels")
                    .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
                    .filter(|v| !v.is_empty())
                    .collect();
                let open_only = !pairs.iter().any(|(k, v)| k == "state" && v != "open");
                let items = self
                    .issues
                    .iter()
                    .filter(|i| !open_only || i.open)
                    .filter(|i| {
                        let names = self.label_names(i.number);
                        wanted.iter().all(|w| names.contains(w))
                    })
                    .filter_map(|i| self.issue_json(i.number))
                    .collect();
                (StatusCode::OK, Self::paged(items, query))
            }
            (&Method::GET, ["issues", n]) => match number(n).and_then(|n| self.issue_json(n)) {
                Some(issue) => (StatusCode::OK, issue),
                None => not_found("issue"),
            },
            (&Method::GET, ["issues", n, "timeline"]) => match number(n) {
                Some(n) if self.issues.iter().any(|i| i.number == n) => {
                    (StatusCode::OK, Self::paged(self.timeline_json(n), query))
                }
                _ => not_found("issue"),
            },
            (&Method::GET, ["issues", n, "labels"]) => {
                match number(n).and_then(|n| self.issue_json(n)) {
                    Some(issue) => (StatusCode::OK, issue["labels"].clone()),
                    None => not_found("issue"),
                }
            }
            (&Method::PUT, ["issues", n, "labels"]) => {
                let ids: Vec<u64> = body
                    .get("labels")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                if ids
                    .iter()
                    .any(|id| !self.labels.iter().any(|(l, _)| l == id))
                {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({ "message": "label does not exist" }),
                    );
                }
                let Some(n) = number(n) else {
                    return not_found("issue");
                };
                // The token's user (id 1) made the change, as Gitea records it.
                if self.set_labels(n, ids, 1).is_none() {
                    return not_found("issue");
                }
                (
                    StatusCode::OK,
                    self.issue_json(n)
                        .map(|i| i["labels"].clone())
                        .unwrap_or_default(),
                )
            }
            (&Method::POST, ["issues", n, "comments"]) => {
                let Some(n) = number(n).filter(|n| self.issues.iter().any(|i| i.number == *n))
                else {
                    return not_found("issue");
                };
                let text = body
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.comments.push((n, text.clone()));
                (
                    StatusCode::CREATED,
                    json!({ "id": self.id(), "body": text }),
                )
            }
            (&Method::GET, ["pulls"]) => {
                let open_only = !query_pairs(query)
                    .iter()
                    .any(|(k, v)| k == "state" && v != "open");
                let mut items = Vec::new();
                for p in self
                    .pulls
                    .iter()
                    .filter(|p| !open_only || !(p.merged || p.closed))
                {
                    items.push(self.pull_json(p).await);
                }
                (StatusCode::OK, Self::paged(items, query))
            }
            (&Method::POST, ["pulls"]) => {
                let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
                let (Some(head), Some(base)) = (field("head"), field("base")) else {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({ "message": "head and base are required" }),
                    );
                };
                for (role, branch) in [("head", &head), ("base", &base)] {
                    if bare::branch_sha(&self.bare, branch).await.is_none() {
                        return (
                            StatusCode::NOT_FOUND,
                            json!({ "message": format!("{role} branch {branch} does not exist") }),
                        );
                    }
                }
                if self
                    .pulls
                    .iter()
                    .any(|p| p.head == head && !p.merged && !p.closed)
                {
                    return (
                        StatusCode::CONFLICT,
                        json!({ "message": "pull request already exists for these targets" }),
                    );
                }
                let number = self.issues.len() as u64 + self.pulls.len() as u64 + 1;
                let pull = GiteaPull {
                    number,
                    head,
                    base,
                    title: field("title").unwrap_or_default(),
                    merged: false,
                    closed: false,
                };
                let json = self.pull_json(&pull).await;
                self.pulls.push(pull);
                (StatusCode::CREATED, json)
            }
            (&Method::GET, ["pulls", n, "reviews"]) => {
                let Some(n) = number(n) else {
                    return not_found("pull request");
                };
                let items = self
                    .reviews_json(n)
                    .into_iter()
                    .map(|(r, mut v)| {
                        v["state"] = json!(match r.state.as_str() {
                            "CHANGES_REQUESTED" => "REQUEST_CHANGES",
                            "COMMENTED" => "COMMENT",
                            other => other,
                        });
                        v["dismissed"] = json!(r.dismissed);
                        v["stale"] = json!(false);
                        v
                    })
                    .collect();
                (StatusCode::OK, Self::paged(items, query))
            }
            (&Method::GET, ["pulls", _, "reviews", id, "comments"]) => {
                let Some(review) =
                    number(id).and_then(|id| self.reviews.iter().find(|r| r.id == id))
                else {
                    return not_found("review");
                };
                let items: Vec<Value> = review
                    .comments
                    .iter()
                    .map(|(path, line, body)| {
                        json!({ "path": path, "position": line, "original_position": line,
                                "body": body, "pull_request_review_id": review.id })
                    })
                    .collect();
                (StatusCode::OK, Self::paged(items, query))
            }
            (&Method::GET, ["pulls", n]) => {
                match number(n).and_then(|n| self.pulls.iter().find(|p| p.number == n)) {
                    Some(p) => (StatusCode::OK, self.pull_json(p).await),
                    None => not_found("pull request"),
                }
            }
            (&Method::PATCH, ["pulls", n]) => {
                let Some(pull) =
                    number(n).and_then(|n| self.pulls.iter_mut().find(|p| p.number == n))
                else {
                    return not_found("pull request");
                };
                match body.get("state").and_then(Value::as_str) {
                    Some("closed") if !pull.merged => pull.closed = true,
                    Some("open") if !pull.merged => pull.closed = false,
                    Some(_) | None => {}
                }
                let pull = pull.clone();
                (StatusCode::CREATED, self.pull_json(&pull).await)
            }
            (&Method::POST, ["pulls", n, "merge"]) => match number(n) {
                Some(n) => self.merge(n, &body).await,
                None => not_found("pull request"),
            },
            (&Method::POST, ["statuses", sha]) => {
                let field = |k: &str| {
                    body.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let state = field("state");
                if !["pending", "success", "error", "failure", "warning"].contains(&state.as_str())
                {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({ "message": "invalid state" }),
                    );
                }
                self.statuses.push(GiteaStatus {
                    sha: (*sha).to_owned(),
                    state: state.clone(),
                    context: field("context"),
                    description: field("description"),
                    target_url: field("target_url"),
                });
                (
                    StatusCode::CREATED,
                    json!({ "id": self.id(), "status": state, "context": field("context") }),
                )
            }
            (&Method::GET, ["commits", sha, "status"]) => {
                (StatusCode::OK, self.combined_status(sha))
            }
            _ => not_found("route"),
        }
    }
}
