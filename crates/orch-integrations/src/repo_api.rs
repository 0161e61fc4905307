//! The repository REST shapes Gitea and GitHub share: one repository under
//! `{root}/repos/{owner}/{repo}` with `clone_url` and `default_branch`, `labels`, `issues`
//! (filtered by `labels` and `state`, paged by `page` and a page-size parameter), comments,
//! `pulls` (with `head.ref`, `number`, `html_url`, `merged`), `statuses/{sha}`, and a pull request
//! closed by a `PATCH` of `state`. Each adapter keeps only what differs: its auth, how an issue's
//! labels are replaced and how a merge is asked for.
//!
//! Both trackers keep an item's canonical state as one label `state/<Name>`; the adapters keep
//! it exclusive (Gitea also does so itself for an exclusive scope).

use serde_json::{Value, json};

use crate::error::{IntegrationError, Result};
use crate::forge::{CommitStatus, PullRequest};
use crate::http::ApiClient;
use crate::tracker::{RemoteItem, TrackerUser, canonical};

/// The scope of the labels that carry orch's states.
pub const STATE_LABEL_PREFIX: &str = "state/";

/// Items per page; both APIs accept 50 (Gitea's default maximum, under GitHub's 100).
const PAGE: usize = 50;
/// No listing reads more pages than this (2,000 items): a bound, not an expectation.
const MAX_PAGES: usize = 40;

/// Where an issue's label history is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelHistory {
    GiteaTimeline,
    GitHubEvents,
}

/// One repository's REST API.
#[derive(Debug)]
pub(crate) struct RepoApi {
    pub(crate) service: &'static str,
    pub(crate) api: ApiClient,
    /// `{root}/repos/{owner}/{repo}`.
    pub(crate) prefix: String,
    /// The API's root path (`/api/v1` for Gitea, empty for GitHub), the owner and the name.
    pub(crate) root: String,
    pub(crate) owner: String,
    pub(crate) name: String,
    /// The page-size query parameter: `limit` (Gitea) or `per_page` (GitHub).
    pub(crate) page_param: &'static str,
}

impl RepoApi {
    /// Refuses owner or repository names that could change the path.
    pub(crate) fn new(
        api: ApiClient,
        service: &'static str,
        root: &str,
        owner: &str,
        repo: &str,
        page_param: &'static str,
    ) -> Result<Self> {
        for (field, value) in [("owner", owner), ("repo", repo)] {
            if value.trim().is_empty() || !value.chars().all(name_char) {
                return Err(IntegrationError::Config(format!(
                    "{service} `{field}` `{value}` must be a user or repository name"
                )));
            }
        }
        Ok(Self {
            service,
            api,
            prefix: format!("{root}/repos/{owner}/{repo}"),
            root: root.to_owned(),
            owner: owner.to_owned(),
            name: repo.to_owned(),
            page_param,
        })
    }

    pub(crate) fn bad(&self, detail: String) -> IntegrationError {
        IntegrationError::BadResponse {
            service: self.service.into(),
            detail,
        }
    }

    /// The issue number an item id holds (`12` or `#12`).
    pub(crate) fn issue_number(&self, id: &str) -> Result<u64> {
        id.trim_start_matches('#').parse().map_err(|_| {
            IntegrationError::Config(format!("`{id}` is not a {} issue number", self.service))
        })
    }

    /// Every page of a listing.
    pub(crate) async fn list_all(&self, path: &str) -> Result<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let value = self
                .api
                .get(&format!(
                    "{path}{sep}page={page}&{}={PAGE}",
                    self.page_param
                ))
                .await?;
            let Value::Array(items) = value else {
                return Err(self.bad(format!("{path}: expected a JSON array")));
            };
            let last = items.len() < PAGE;
            all.extend(items);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// The repository's labels as (id, name).
    pub(crate) async fn labels(&self) -> Result<Vec<(u64, String)>> {
        Ok(self
            .list_all(&format!("{}/labels", self.prefix))
            .await?
            .iter()
            .filter_map(|l| Some((l.get("id")?.as_u64()?, l.get("name")?.as_str()?.to_owned())))
            .collect())
    }

    /// The names of the labels an issue carries.
    pub(crate) async fn issue_label_names(&self, number: u64) -> Result<Vec<(u64, String)>> {
        let current = self
            .api
            .get(&format!("{}/issues/{number}/labels", self.prefix))
            .await?;
        let Value::Array(labels) = current else {
            return Err(self.bad(format!("issue {number}: labels are not a JSON array")));
        };
        Ok(labels
            .iter()
            .filter_map(|l| Some((l.get("id")?.as_u64()?, l.get("name")?.as_str()?.to_owned())))
            .collect())
    }

    /// The open issues labelled with the canonical state `state` (pull requests left out).
    pub(crate) async fn list_items(
        &self,
        state: &str,
        extra_query: &str,
    ) -> Result<Vec<RemoteItem>> {
        canonical(state)?;
        let label = query_value(&format!("{STATE_LABEL_PREFIX}{state}"));
        self.list_all(&format!(
            "{}/issues?state=open{extra_query}&labels={label}",
            self.prefix
        ))
        .await?
        .iter()
        .filter(|i| i.get("pull_request").is_none_or(Value::is_null))
        .map(|i| self.issue(i))
        .collect()
    }

    pub(crate) async fn get_item(&self, id: &str) -> Result<RemoteItem> {
        let n = self.issue_number(id)?;
        let value = self.api.get(&format!("{}/issues/{n}", self.prefix)).await?;
        self.issue(&value)
    }

    /// Who last put the label of `state` on the issue, from its history at
    /// `{prefix}/issues/{n}/{history}`: Gitea's `timeline` (entries of `type` `label`, `body`
    /// `"1"` when added, `user`) or GitHub's `events` (`event` `labeled`, `actor`), both oldest
    /// first.
    pub(crate) async fn label_setter(
        &self,
        id: &str,
        state: &str,
        history: LabelHistory,
    ) -> Result<Option<TrackerUser>> {
        canonical(state)?;
        let n = self.issue_number(id)?;
        let wanted = format!("{STATE_LABEL_PREFIX}{state}");
        let (path, user) = match history {
            LabelHistory::GiteaTimeline => ("timeline", "user"),
            LabelHistory::GitHubEvents => ("events", "actor"),
        };
        let entries = self
            .list_all(&format!("{}/issues/{n}/{path}", self.prefix))
            .await?;
        let added = |e: &Value| match history {
            LabelHistory::GiteaTimeline => {
                e.get("type").and_then(Value::as_str) == Some("label")
                    && e.get("body").and_then(Value::as_str) == Some("1")
            }
            LabelHistory::GitHubEvents => e.get("event").and_then(Value::as_str) == Some("labeled"),
        };
        let Some(last) = entries.iter().rev().find(|e| {
            added(e) && e.pointer("/label/name").and_then(Value::as_str) == Some(wanted.as_str())
        }) else {
            return Ok(None);
        };
        let account = last.get(user);
        let user_id = account
            .and_then(|u| u.get("id"))
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad(format!("issue {n}: a label change without a user id")))?;
        Ok(Some(TrackerUser {
            id: user_id.to_string(),
            login: account
                .and_then(|u| u.get("login"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    pub(crate) async fn add_comment(&self, id: &str, text: &str) -> Result<()> {
        let n = self.issue_number(id)?;
        self.api
            .post(
                &format!("{}/issues/{n}/comments", self.prefix),
                json!({ "body": text }),
            )
            .await
            .map(|_| ())
    }

    /// The repository's (`clone_url`, `default_branch`).
    pub(crate) async fn repository(&self) -> Result<(String, String)> {
        let repo = self.api.get(&self.prefix).await?;
        let field = |k: &str| {
            repo.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| self.bad(format!("the repository has no `{k}`")))
        };
        Ok((field("clone_url")?, field("default_branch")?))
    }

    /// Pushes `branch` to the repository's clone URL, never its default branch; `header` is the
    /// auth header line git sends over HTTP (out of its arguments).
    pub(crate) async fn push_branch(
        &self,
        repo: &orch_git::Repo,
        branch: &str,
        header: impl FnOnce() -> String,
    ) -> Result<()> {
        let (clone_url, default_branch) = self.repository().await?;
        if branch == default_branch {
            return Err(IntegrationError::Refused(format!(
                "orch never pushes the default branch `{branch}`"
            )));
        }
        let header = clone_url.starts_with("http").then(header);
        repo.push_branch(&clone_url, branch, header.as_deref())
            .await
            .map_err(IntegrationError::from)
    }

    /// Fetches `branch` from the repository's clone URL with the same auth header as a push.
    pub(crate) async fn fetch_branch(
        &self,
        repo: &orch_git::Repo,
        branch: &str,
        header: impl FnOnce() -> String,
    ) -> Result<String> {
        let (clone_url, _) = self.repository().await?;
        let header = clone_url.starts_with("http").then(header);
        repo.fetch_branch(&clone_url, branch, header.as_deref())
            .await
            .map_err(IntegrationError::from)
    }

    pub(crate) async fn fetch_default(
        &self,
        repo: &orch_git::Repo,
        header: impl FnOnce() -> String,
    ) -> Result<(String, String)> {
        let (clone_url, default_branch) = self.repository().await?;
        let header = clone_url.starts_with("http").then(header);
        let sha = repo
            .fetch_branch(&clone_url, &default_branch, header.as_deref())
            .await?;
        Ok((default_branch, sha))
    }

    /// The open pull request whose head is `branch`, if any.
    pub(crate) async fn open_pull_of(&self, branch: &str) -> Result<Option<PullRequest>> {
        let open = self
            .list_all(&format!("{}/pulls?state=open", self.prefix))
            .await?;
        open.iter()
            .find(|p| {
                p.get("head")
                    .and_then(|h| h.get("ref"))
                    .and_then(Value::as_str)
                    == Some(branch)
            })
            .map(|p| self.pull(p))
            .transpose()
    }

    /// The open pull request of `branch` into the default branch, opened if there is none.
    pub(crate) async fn open_pull_request(
        &self,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest> {
        if let Some(found) = self.open_pull_of(branch).await? {
            return Ok(found);
        }
        let (_, base) = self.repository().await?;
        let created = self
            .api
            .post(
                &format!("{}/pulls", self.prefix),
                json!({ "head": branch, "base": base, "title": title, "body": body }),
            )
            .await?;
        self.pull(&created)
    }

    pub(crate) async fn get_pull(&self, number: u64) -> Result<PullRequest> {
        self.pull(&self.get_pull_json(number).await?)
    }

    /// A pull request as the forge answers it (its `head.sha` and `base.ref` among the fields).
    pub(crate) async fn get_pull_json(&self, number: u64) -> Result<Value> {
        self.api
            .get(&format!("{}/pulls/{number}", self.prefix))
            .await
    }

    pub(crate) async fn close_pull_request(&self, branch: &str) -> Result<()> {
        let Some(open) = self.open_pull_of(branch).await? else {
            return Ok(());
        };
        self.api
            .patch(
                &format!("{}/pulls/{}", self.prefix, open.number),
                json!({ "state": "closed" }),
            )
            .await
            .map(|_| ())
    }

    pub(crate) async fn set_commit_status(&self, sha: &str, status: &CommitStatus) -> Result<()> {
        if sha.len() < 7 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IntegrationError::Config(format!(
                "`{sha}` is not a commit SHA"
            )));
        }
        self.api
            .post(
                &format!("{}/statuses/{sha}", self.prefix),
                json!({ "state": status.state.as_str(), "context": status.context,
                        "description": status.description }),
            )
            .await
            .map(|_| ())
    }

    /// The reviews of pull request `number` (`GET pulls/{n}/reviews`), oldest first, without
    /// their comments.
    pub(crate) async fn reviews(&self, number: u64) -> Result<Vec<crate::Review>> {
        let all = self
            .list_all(&format!("{}/pulls/{number}/reviews", self.prefix))
            .await?;
        all.iter()
            .map(|v| {
                crate::reviews::review(v)
                    .ok_or_else(|| self.bad("a review without an `id` or a `user`".into()))
            })
            .collect()
    }

    /// The combined status of `sha` (the latest status per context), without orch's own.
    pub(crate) async fn commit_statuses(&self, sha: &str) -> Result<Vec<crate::ExternalCheck>> {
        full_sha(sha)?;
        let answer = self
            .api
            .get(&format!("{}/commits/{sha}/status", self.prefix))
            .await?;
        Ok(crate::checks::from_combined_status(&answer, sha)
            .into_iter()
            .filter(|c| !c.name.starts_with("orch/"))
            .collect())
    }

    fn pull(&self, value: &Value) -> Result<PullRequest> {
        Ok(PullRequest {
            number: value
                .get("number")
                .and_then(Value::as_u64)
                .ok_or_else(|| self.bad("a pull request without a `number`".into()))?,
            url: value
                .get("html_url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            merged: value
                .get("merged")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn issue(&self, value: &Value) -> Result<RemoteItem> {
        let number = value
            .get("number")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad("an issue without a `number`".into()))?;
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let labels: Vec<&str> = value
            .get("labels")
            .and_then(Value::as_array)
            .map(|ls| ls.iter().filter_map(|l| l.get("name")?.as_str()).collect())
            .unwrap_or_default();
        Ok(RemoteItem {
            id: number.to_string(),
            key: format!("#{number}"),
            title: text("title"),
            body: text("body"),
            state: state_of_labels(labels),
        })
    }
}

/// Refuses anything but a full commit SHA (40 or 64 lowercase hex digits) as a merge's head
/// guard: both forges skip the check for an empty value, so a blank would merge whatever the
/// branch holds.
pub(crate) fn full_sha(sha: &str) -> Result<()> {
    let hex = sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    if hex && matches!(sha.len(), 40 | 64) {
        Ok(())
    } else {
        Err(IntegrationError::Config(format!(
            "`{sha}` is not a full commit SHA; a merge names the head it expects"
        )))
    }
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Percent-encodes a query or path value (label names hold `/` and spaces).
pub(crate) fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The canonical state an issue's labels show, if any.
pub fn state_of_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Option<String> {
    labels
        .into_iter()
        .filter_map(|l| l.strip_prefix(STATE_LABEL_PREFIX))
        .find(|name| canonical(name).is_ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_labels_map_to_canonical_states() {
        assert_eq!(
            state_of_labels(["bug", "state/Ready"]).as_deref(),
            Some("Ready")
        );
        assert_eq!(state_of_labels(["state/Nonsense"]), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_value("state/Deploy Staging"),
            "state%2FDeploy%20Staging"
        );
    }
}
