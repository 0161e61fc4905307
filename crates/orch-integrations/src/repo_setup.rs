//! Onboarding on a repository host (Gitea, Forgejo, GitHub), in the REST shapes both share:
//! `GET {root}/user` (the token's `login`), `POST {root}/user/repos` or
//! `POST {root}/orgs/{org}/repos` (create), and under `{root}/repos/{owner}/{repo}`: the
//! repository, `branches` and `branches/{name}` (a branch's `commit`), `labels` and `hooks`
//! (each hook's `config.url`). What differs (request bodies, the commit id's key) comes from
//! the adapter as [`Shapes`].

use serde_json::Value;

use crate::error::{IntegrationError, Result};
use crate::repo_api::{RepoApi, STATE_LABEL_PREFIX};
use crate::setup::{SetupOp, SetupSpec, SetupStatus, SetupStep};
use crate::tracker::canonical;
use orch_core::states::{CANONICAL_STATES, TrackerState};

/// The request bodies and answer keys that differ between hosts.
pub(crate) struct Shapes {
    /// A new `state/<Name>` label.
    pub label: fn(name: &str, state: &TrackerState) -> Value,
    /// A new webhook sending issue events to `url`, signed with `secret`.
    pub hook: fn(url: &str, secret: &str) -> Value,
    /// A new private, empty repository.
    pub repository: fn(name: &str, description: &str, default_branch: &str) -> Value,
    /// Where a branch object keeps its commit id (`commit.id` on Gitea, `commit.sha` on GitHub).
    pub commit_pointer: &'static str,
}

/// The repository as the host describes it.
struct Described {
    clone_url: String,
    default_branch: String,
    description: String,
    /// `permissions.push` as the host reports it for the token's user; `None` when it says
    /// nothing (then nothing is concluded).
    can_push: Option<bool>,
}

impl RepoApi {
    /// The repository, or `None` when the host says there is none.
    async fn find_repository(&self) -> Result<Option<Described>> {
        let value = match self.api.get(&self.prefix).await {
            Ok(value) => value,
            Err(IntegrationError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Some(Described {
            clone_url: text("clone_url")
                .ok_or_else(|| self.bad("the repository has no `clone_url`".into()))?,
            default_branch: text("default_branch").unwrap_or_default(),
            description: text("description").unwrap_or_default(),
            can_push: value.pointer("/permissions/push").and_then(Value::as_bool),
        }))
    }

    /// Where a new repository is created: under the token's own user when it is the owner,
    /// else under the owner as an organisation.
    async fn create_path(&self) -> Result<String> {
        let user = self.api.get(&format!("{}/user", self.root)).await?;
        let login = user
            .get("login")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad("the token's user has no `login`".into()))?;
        Ok(if login.eq_ignore_ascii_case(&self.owner) {
            format!("{}/user/repos", self.root)
        } else {
            format!("{}/orgs/{}/repos", self.root, self.owner)
        })
    }

    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Every canonical state's label and, when asked, the webhook.
    pub(crate) async fn survey_tracker(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>> {
        let exists = self.find_repository().await?.is_some();
        let labels = if exists {
            self.labels().await?
        } else {
            Vec::new()
        };
        let create = format!("POST {}/labels", self.prefix);
        let mut steps: Vec<SetupStep> = CANONICAL_STATES
            .iter()
            .map(|state| {
                let name = format!("{STATE_LABEL_PREFIX}{}", state.name);
                let step = SetupStep::new(
                    self.service,
                    SetupOp::State(state.name),
                    format!("label {name} ({})", state.group.as_str()),
                );
                if labels.iter().any(|(_, n)| *n == name) {
                    step
                } else {
                    step.missing(vec![create.clone()])
                }
            })
            .collect();
        if let Some(hook) = &spec.webhook {
            let step = SetupStep::new(
                self.service,
                SetupOp::Webhook,
                format!("webhook {}", hook.url),
            );
            let hooks = if exists {
                self.list_all(&format!("{}/hooks", self.prefix)).await?
            } else {
                Vec::new()
            };
            steps.push(webhook_step(step, &hooks, &hook.url, &self.prefix));
        }
        Ok(steps)
    }

    pub(crate) async fn apply_tracker(
        &self,
        step: &SetupStep,
        spec: &SetupSpec,
        shapes: &Shapes,
    ) -> Result<()> {
        let (path, body) = match step.op {
            SetupOp::State(name) => {
                let state = canonical(name)?;
                let label = format!("{STATE_LABEL_PREFIX}{name}");
                (
                    format!("{}/labels", self.prefix),
                    (shapes.label)(&label, state),
                )
            }
            SetupOp::Webhook => {
                let hook = spec
                    .webhook
                    .as_ref()
                    .ok_or_else(|| IntegrationError::Config("no webhook was asked for".into()))?;
                let secret = hook.secret.as_ref().ok_or_else(|| {
                    IntegrationError::Config(format!(
                        "{}: the webhook needs the secret `orch serve` verifies {} deliveries with, and none was given",
                        self.service, self.service
                    ))
                })?;
                (
                    format!("{}/hooks", self.prefix),
                    (shapes.hook)(&hook.url, secret.expose()),
                )
            }
            SetupOp::Repository | SetupOp::FirstPush => {
                return Err(IntegrationError::Refused(format!(
                    "{}: `{}` is a forge step",
                    self.service, step.what
                )));
            }
            SetupOp::Label(_) => {
                return Err(IntegrationError::Refused(format!(
                    "{}: orch sets up only its state labels here, not `{}`",
                    self.service, step.what
                )));
            }
        };
        self.api.post(&path, body).await.map(|_| ())
    }

    /// The repository and, when a local repository is given, the first push into it.
    pub(crate) async fn survey_forge(
        &self,
        spec: &SetupSpec,
        shapes: &Shapes,
    ) -> Result<Vec<SetupStep>> {
        let full = self.full_name();
        let repository = SetupStep::new(
            self.service,
            SetupOp::Repository,
            format!("repository {full}"),
        );
        let found = self.find_repository().await?;
        // A token that cannot push can neither hand branches over nor merge: a gap to resolve.
        let repository = match &found {
            Some(repo) if repo.can_push == Some(false) => {
                repository.with_status(SetupStatus::Refused(format!(
                    "the token cannot push to {full} (the host reports `permissions.push` false); \
                     give it write access to the repository"
                )))
            }
            _ => repository,
        };
        let Some((local, branch)) = &spec.local else {
            return Ok(vec![match found {
                Some(_) => repository,
                None => repository.missing(vec![format!("POST {}", self.create_path().await?)]),
            }]);
        };
        let push = SetupStep::new(
            self.service,
            SetupOp::FirstPush,
            format!("first push of {branch} into {full}"),
        );
        let Some(repo) = found else {
            return Ok(vec![
                repository.missing(vec![format!("POST {}", self.create_path().await?)]),
                push.missing(vec![format!(
                    "git -C {} push <its clone URL> {branch} (the new, empty repository)",
                    local.display()
                )]),
            ]);
        };
        let status = self.first_push_status(&repo, spec, shapes).await?;
        let push = match status {
            None => push.missing(vec![format!(
                "git -C {} push {} {branch}",
                local.display(),
                repo.clone_url
            )]),
            Some(status) => push.with_status(status),
        };
        Ok(vec![repository, push])
    }

    /// `None` when the first push may go ahead (an empty repository an earlier apply created),
    /// else whether it is done (the host's default branch is in the local history) or why not.
    async fn first_push_status(
        &self,
        repo: &Described,
        spec: &SetupSpec,
        shapes: &Shapes,
    ) -> Result<Option<SetupStatus>> {
        let full = self.full_name();
        let Some((local, branch)) = &spec.local else {
            return Ok(Some(SetupStatus::Present));
        };
        let branches = self
            .api
            .get(&format!(
                "{}/branches?page=1&{}=1",
                self.prefix, self.page_param
            ))
            .await?;
        let empty = branches.as_array().is_some_and(Vec::is_empty);
        if empty {
            if repo.description == spec.description && !spec.description.is_empty() {
                return Ok(None);
            }
            return Ok(Some(SetupStatus::Manual(format!(
                "{full} exists and is empty, but orch onboard did not create it, so orch does not push into it; push it yourself: git -C {} push {} {branch}",
                local.display(),
                repo.clone_url
            ))));
        }
        let head = self
            .api
            .get(&format!(
                "{}/branches/{}",
                self.prefix,
                crate::repo_api::query_value(&repo.default_branch)
            ))
            .await?;
        let sha = head
            .pointer(shapes.commit_pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.bad(format!(
                    "branch `{}` has no `{}`",
                    repo.default_branch, shapes.commit_pointer
                ))
            })?;
        if local_has(local, sha).await {
            return Ok(Some(SetupStatus::Present));
        }
        Ok(Some(SetupStatus::Refused(format!(
            "{full} exists and is not empty, and its {} ({}) is not in the history of {}: orch pushes only into an empty repository it created. Onboard a clone of it (git clone {}), or choose another repository name",
            repo.default_branch,
            sha.get(..12).unwrap_or(sha),
            local.display(),
            repo.clone_url
        ))))
    }

    pub(crate) async fn apply_forge(
        &self,
        step: &SetupStep,
        spec: &SetupSpec,
        shapes: &Shapes,
        header: impl FnOnce() -> String,
    ) -> Result<()> {
        let branch = spec
            .local
            .as_ref()
            .map(|(_, b)| b.as_str())
            .unwrap_or("main");
        match step.op {
            SetupOp::Repository => {
                let path = self.create_path().await?;
                self.api
                    .post(
                        &path,
                        (shapes.repository)(&self.name, &spec.description, branch),
                    )
                    .await
                    .map(|_| ())
            }
            SetupOp::FirstPush => {
                let (local, branch) = spec.local.as_ref().ok_or_else(|| {
                    IntegrationError::Config("no local repository to push".into())
                })?;
                // Look again right before pushing: only an empty repository orch created.
                let repo =
                    self.find_repository()
                        .await?
                        .ok_or_else(|| IntegrationError::NotFound {
                            service: self.service.into(),
                            what: format!("repository {}", self.full_name()),
                        })?;
                match self.first_push_status(&repo, spec, shapes).await? {
                    None => {}
                    Some(SetupStatus::Present) => return Ok(()),
                    Some(SetupStatus::Manual(why) | SetupStatus::Refused(why)) => {
                        return Err(IntegrationError::Refused(why));
                    }
                    Some(SetupStatus::Missing) => {}
                }
                let local = orch_git::Repo::open(local).await?;
                let header = repo.clone_url.starts_with("http").then(header);
                local
                    .push_first(&repo.clone_url, branch, header.as_deref())
                    .await
                    .map_err(IntegrationError::from)
            }
            SetupOp::State(_) | SetupOp::Label(_) | SetupOp::Webhook => {
                Err(IntegrationError::Refused(format!(
                    "{}: `{}` is a tracker step",
                    self.service, step.what
                )))
            }
        }
    }
}

/// The webhook step from the repository's hooks. Fail-closed: a hook at orch's URL that is
/// inactive or does not send issue events delivers nothing, so it is a gap with the fix named
/// (orch never edits a hook); no hook at orch's URL is missing, and the step names a hook that
/// sends to another `/hooks/...` URL (an old address of orch, say).
fn webhook_step(step: SetupStep, hooks: &[Value], url: &str, prefix: &str) -> SetupStep {
    let url_of = |h: &Value| {
        h.pointer("/config/url")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let ours = hooks.iter().find(|h| url_of(h).as_deref() == Some(url));
    let Some(hook) = ours else {
        let path = url.find("/hooks/").map(|at| &url[at..]);
        let elsewhere: Vec<String> = hooks
            .iter()
            .filter_map(url_of)
            .filter(|other| path.is_some_and(|path| other.ends_with(path)))
            .collect();
        let mut step = step.missing(vec![format!("POST {prefix}/hooks")]);
        if !elsewhere.is_empty() {
            step.what = format!(
                "{} (the webhook at {} sends elsewhere; apply adds orch's, remove the stale one in the repository's settings → Webhooks)",
                step.what,
                elsewhere.join(", ")
            );
        }
        return step;
    };
    let active = hook.get("active").and_then(Value::as_bool).unwrap_or(false);
    let events: Vec<&str> = hook
        .get("events")
        .and_then(Value::as_array)
        .map(|events| events.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let sends_issues = events.iter().any(|e| *e == "issues" || *e == "*");
    match (active, sends_issues) {
        (true, true) => step,
        (false, _) => step.with_status(SetupStatus::Refused(
            "it is inactive: activate it in the repository's settings → Webhooks (orch does not edit webhooks)".to_owned(),
        )),
        (true, false) => step.with_status(SetupStatus::Refused(format!(
            "it sends {} but not issue events: tick Issues in the repository's settings → Webhooks (orch does not edit webhooks)",
            if events.is_empty() { "no events".to_owned() } else { events.join(", ") }
        ))),
    }
}

/// Whether the repository at `path` has commit `sha` (a missing repository has nothing).
async fn local_has(path: &std::path::Path, sha: &str) -> bool {
    let Ok(repo) = orch_git::Repo::open(path).await else {
        return false;
    };
    matches!(
        repo.rev_parse(&format!("{sha}^{{commit}}")).await,
        Ok(Some(_))
    )
}
