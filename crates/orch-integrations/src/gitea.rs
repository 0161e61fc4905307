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
use crate::secret::Token;
use crate::tracker::{RemoteItem, Tracker, canonical};

/// The scope of the labels that carry orch's states.
pub const STATE_LABEL_PREFIX: &str = "state/";

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
    api: ApiClient,
    prefix: String,
}

const PAGE: usize = 50;
const MAX_PAGES: usize = 40;

impl Gitea {
    pub fn new(config: GiteaConfig) -> Result<Self> {
        for (field, value) in [("owner", &config.owner), ("repo", &config.repo)] {
            if value.trim().is_empty() || !value.chars().all(name_char) {
                return Err(IntegrationError::Config(format!(
                    "gitea `{field}` `{value}` must be a user or repository name"
                )));
            }
        }
        let api = ApiClient::new(
            "gitea",
            &config.base_url,
            "authorization",
            "token ",
            config.token,
            config.retry,
        )?;
        Ok(Self {
            api,
            prefix: format!("/api/v1/repos/{}/{}", config.owner, config.repo),
        })
    }

    async fn list_all(&self, path: &str) -> Result<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let value = self
                .api
                .get(&format!("{path}{sep}page={page}&limit={PAGE}"))
                .await?;
            let Value::Array(items) = value else {
                return Err(bad(format!("{path}: expected a JSON array")));
            };
            let last = items.len() < PAGE;
            all.extend(items);
            if last {
                break;
            }
        }
        Ok(all)
    }

    async fn labels(&self) -> Result<Vec<(u64, String)>> {
        Ok(self
            .list_all(&format!("{}/labels", self.prefix))
            .await?
            .iter()
            .filter_map(|l| Some((l.get("id")?.as_u64()?, l.get("name")?.as_str()?.to_owned())))
            .collect())
    }

    async fn repository(&self) -> Result<(String, String)> {
        let repo = self.api.get(&self.prefix).await?;
        let field = |k: &str| {
            repo.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("the repository has no `{k}`")))
        };
        Ok((field("clone_url")?, field("default_branch")?))
    }

    /// The open pull request whose head is `branch`, if any.
    async fn open_pull_of(&self, branch: &str) -> Result<Option<PullRequest>> {
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
            .map(Self::pull)
            .transpose()
    }

    fn pull(value: &Value) -> Result<PullRequest> {
        Ok(PullRequest {
            number: value
                .get("number")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("a pull request without a `number`".into()))?,
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
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn bad(detail: String) -> IntegrationError {
    IntegrationError::BadResponse {
        service: "gitea".into(),
        detail,
    }
}

fn issue_number(id: &str) -> Result<u64> {
    id.trim_start_matches('#')
        .parse()
        .map_err(|_| IntegrationError::Config(format!("`{id}` is not a Gitea issue number")))
}

/// Percent-encodes a query value (label names hold `/` and spaces).
fn query_value(value: &str) -> String {
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

fn issue(value: &Value) -> Result<RemoteItem> {
    let number = value
        .get("number")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("an issue without a `number`".into()))?;
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

#[async_trait]
impl Tracker for Gitea {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    async fn ensure_states(&self) -> Result<()> {
        let existing = self.labels().await?;
        for state in orch_core::states::CANONICAL_STATES {
            let name = format!("{STATE_LABEL_PREFIX}{}", state.name);
            if existing.iter().any(|(_, n)| *n == name) {
                continue;
            }
            self.api
                .post(
                    &format!("{}/labels", self.prefix),
                    json!({ "name": name, "color": "#6b7280", "exclusive": true,
                            "description": "orch: the item's pipeline state" }),
                )
                .await?;
        }
        Ok(())
    }

    async fn list_items(&self, state: &str) -> Result<Vec<RemoteItem>> {
        canonical(state)?;
        let label = query_value(&format!("{STATE_LABEL_PREFIX}{state}"));
        self.list_all(&format!(
            "{}/issues?state=open&type=issues&labels={label}",
            self.prefix
        ))
        .await?
        .iter()
        .map(issue)
        .collect()
    }

    async fn get_item(&self, id: &str) -> Result<RemoteItem> {
        let n = issue_number(id)?;
        issue(&self.api.get(&format!("{}/issues/{n}", self.prefix)).await?)
    }

    async fn set_state(&self, id: &str, state: &str) -> Result<()> {
        canonical(state)?;
        let n = issue_number(id)?;
        let wanted = format!("{STATE_LABEL_PREFIX}{state}");
        let all = self.labels().await?;
        let state_id = all
            .iter()
            .find(|(_, name)| *name == wanted)
            .map(|(id, _)| *id)
            .ok_or_else(|| IntegrationError::NotFound {
                service: "gitea".into(),
                what: format!("label `{wanted}` (run `orch onboard apply` to create it)"),
            })?;
        let current = self
            .api
            .get(&format!("{}/issues/{n}/labels", self.prefix))
            .await?;
        let mut ids: Vec<u64> = current
            .as_array()
            .map(|ls| {
                ls.iter()
                    .filter(|l| {
                        !l.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.starts_with(STATE_LABEL_PREFIX))
                    })
                    .filter_map(|l| l.get("id")?.as_u64())
                    .collect()
            })
            .unwrap_or_default();
        ids.push(state_id);
        self.api
            .put(
                &format!("{}/issues/{n}/labels", self.prefix),
                json!({ "labels": ids }),
            )
            .await
            .map(|_| ())
    }

    async fn add_comment(&self, id: &str, text: &str) -> Result<()> {
        let n = issue_number(id)?;
        self.api
            .post(
                &format!("{}/issues/{n}/comments", self.prefix),
                json!({ "body": text }),
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Forge for Gitea {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    async fn push_branch(&self, repo: &orch_git::Repo, branch: &str) -> Result<()> {
        let (clone_url, default_branch) = self.repository().await?;
        if branch == default_branch {
            return Err(IntegrationError::Refused(format!(
                "orch never pushes the default branch `{branch}`"
            )));
        }
        let header = clone_url
            .starts_with("http")
            .then(|| self.api.auth_header_line());
        repo.push_branch(&clone_url, branch, header.as_deref())
            .await
            .map_err(IntegrationError::from)
    }

    async fn open_pull_request(
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
        Self::pull(&created)
    }

    async fn close_pull_request(&self, branch: &str) -> Result<()> {
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

    async fn set_commit_status(&self, sha: &str, status: &CommitStatus) -> Result<()> {
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

    async fn merge_pull_request(
        &self,
        number: u64,
        style: MergeStyle,
        message: &str,
    ) -> Result<()> {
        let pull = Self::pull(
            &self
                .api
                .get(&format!("{}/pulls/{number}", self.prefix))
                .await?,
        )?;
        if pull.merged {
            return Ok(());
        }
        self.api
            .post(
                &format!("{}/pulls/{number}/merge", self.prefix),
                json!({ "Do": style.as_str(), "merge_message_field": message,
                        "delete_branch_after_merge": false }),
            )
            .await
            .map(|_| ())
    }
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
