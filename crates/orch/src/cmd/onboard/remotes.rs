//! The tracker and forge of a project being onboarded: their registry tables, built from the
//! flags, and what they need (the repository, its first push, states or state labels, the
//! webhook), surveyed and created through the same ports `orch serve` uses.

use std::path::PathBuf;
use std::sync::Arc;

use orch_core::ProjectId;
use orch_integrations::{
    Forge, SetupOp, SetupSpec, SetupStatus, SetupStep, Token, Tracker, WebhookSpec,
};

use super::survey::Line;
use crate::cli::OnboardRemotes;
use crate::env;
use crate::error::UsageError;
use crate::settings::{ProjectEntry, RemoteEntry};

/// GitHub's API, the default `--forge-url` of a GitHub forge.
const GITHUB_API: &str = orch_integrations::github::DEFAULT_BASE_URL;

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// The `[projects.tracker]` and `[projects.forge]` tables the flags describe (both `None`
/// without flags). Errors name the flag.
pub fn entries(
    name: &ProjectId,
    f: &OnboardRemotes,
) -> anyhow::Result<(Option<RemoteEntry>, Option<RemoteEntry>)> {
    let repo_name = f.remote_repo.clone().unwrap_or_else(|| name.to_string());
    let need = |flag: &str, value: &Option<String>, why: &str| {
        value
            .clone()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| usage(format!("{flag} is required {why}")))
    };
    let forge = match f.forge.as_deref() {
        None => None,
        Some(kind @ ("gitea" | "forgejo" | "github")) => {
            let base_url = match (kind, &f.forge_url) {
                ("github", None) => GITHUB_API.to_owned(),
                _ => need("--forge-url", &f.forge_url, "with --forge")?,
            };
            Some(RemoteEntry {
                kind: kind.to_owned(),
                base_url,
                workspace: None,
                project: None,
                owner: Some(need("--owner", &f.owner, "with --forge")?),
                repo: Some(repo_name.clone()),
                token_env: need("--forge-token-env", &f.forge_token_env, "with --forge")?,
                ready_state: None,
                poll_secs: None,
                merge_style: None,
                checks: None,
                reviews: None,
            })
        }
        Some(other) => {
            return Err(usage(format!(
                "--forge: `{other}` is not a forge; use gitea, forgejo or github"
            )));
        }
    };
    let tracker = match f.tracker.as_deref() {
        None => None,
        Some("plane") => Some(RemoteEntry {
            kind: "plane".into(),
            base_url: need("--tracker-url", &f.tracker_url, "with --tracker plane")?,
            workspace: Some(need(
                "--plane-workspace",
                &f.plane_workspace,
                "with --tracker plane",
            )?),
            project: Some(need(
                "--plane-project",
                &f.plane_project,
                "with --tracker plane",
            )?),
            owner: None,
            repo: None,
            token_env: need(
                "--tracker-token-env",
                &f.tracker_token_env,
                "with --tracker plane",
            )?,
            ready_state: None,
            poll_secs: None,
            merge_style: None,
            checks: None,
            reviews: None,
        }),
        Some(kind @ ("gitea" | "forgejo" | "github")) => {
            let why = "with a gitea or github --tracker (or --forge-url)";
            let base_url = match (kind, f.tracker_url.as_ref().or(f.forge_url.as_ref())) {
                (_, Some(url)) => url.clone(),
                ("github", None) => GITHUB_API.to_owned(),
                (_, None) => return Err(usage(format!("--tracker-url is required {why}"))),
            };
            let token_env = f
                .tracker_token_env
                .clone()
                .or_else(|| f.forge_token_env.clone());
            Some(RemoteEntry {
                kind: kind.to_owned(),
                base_url,
                workspace: None,
                project: None,
                owner: Some(need("--owner", &f.owner, why)?),
                repo: Some(repo_name),
                token_env: need("--tracker-token-env", &token_env, why)?,
                ready_state: None,
                poll_secs: None,
                merge_style: None,
                checks: None,
                reviews: None,
            })
        }
        Some(other) => {
            return Err(usage(format!(
                "--tracker: `{other}` is not a tracker; use plane, gitea, forgejo or github"
            )));
        }
    };
    if tracker.is_none() && forge.is_none() {
        let stray = [
            ("--owner", &f.owner),
            ("--remote-repo", &f.remote_repo),
            ("--forge-url", &f.forge_url),
            ("--forge-token-env", &f.forge_token_env),
            ("--tracker-url", &f.tracker_url),
            ("--tracker-token-env", &f.tracker_token_env),
            ("--plane-workspace", &f.plane_workspace),
            ("--plane-project", &f.plane_project),
            ("--webhook-url", &f.webhook_url),
        ]
        .into_iter()
        .find(|(_, v)| v.is_some());
        if let Some((flag, _)) = stray {
            return Err(usage(format!(
                "{flag} needs --tracker or --forge (it describes the project's tracker or forge)"
            )));
        }
    }
    Ok((tracker, forge))
}

/// The tracker and forge of one project, with what each is asked to have.
pub struct RemoteSetup {
    tracker: Option<Arc<dyn Tracker>>,
    forge: Option<Arc<dyn Forge>>,
    tracker_spec: SetupSpec,
    forge_spec: SetupSpec,
    /// The variable holding the webhook secret, when a webhook is asked for.
    secret_env: Option<&'static str>,
    /// Why no webhook is surveyed although there is a tracker.
    no_webhook: Option<String>,
}

/// The webhook source path and secret variable of a tracker kind (as `orch serve` routes them).
fn webhook_source(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "plane" => ("plane", env::PLANE_WEBHOOK_SECRET),
        "github" => ("github", env::GITHUB_WEBHOOK_SECRET),
        _ => ("gitea", env::GITEA_WEBHOOK_SECRET),
    }
}

impl RemoteSetup {
    /// From the project as the registry parser built it and its entry; `local` is the project's
    /// repository and default branch.
    pub fn new(
        project: &orch_engine::ProjectSettings,
        entry: &ProjectEntry,
        local: (PathBuf, String),
        webhook_url: Option<&str>,
        labels: &[String],
    ) -> anyhow::Result<Self> {
        let description = format!("orch project {}", project.id);
        let labels = checked_labels(entry, labels)?;
        let tracker = project.remotes.tracker.as_ref().map(|t| t.tracker.clone());
        let mut secret_env = None;
        let mut no_webhook = None;
        let webhook = match (&entry.tracker, webhook_url) {
            (None, _) => None,
            (Some(t), None) => {
                let (_, var) = webhook_source(&t.kind);
                no_webhook = Some(format!(
                    "{}: webhook: give --webhook-url (orch's public URL) to have it created; until then orch polls the tracker every poll_secs. Its secret is {var}",
                    t.kind
                ));
                None
            }
            (Some(t), Some(base)) => {
                let base = base.trim().trim_end_matches('/');
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    return Err(usage(format!(
                        "--webhook-url {base}: must start with http:// or https://"
                    )));
                }
                let (source, var) = webhook_source(&t.kind);
                secret_env = Some(var);
                let secret = crate::cmd::serve::secret(var)?.and_then(Token::new);
                Some(WebhookSpec {
                    url: format!("{base}/hooks/{source}"),
                    secret,
                })
            }
        };
        Ok(Self {
            tracker,
            forge: project.remotes.forge.as_ref().map(|f| f.forge.clone()),
            tracker_spec: SetupSpec {
                webhook,
                local: None,
                description: description.clone(),
                labels,
            },
            forge_spec: SetupSpec {
                webhook: None,
                local: Some(local),
                description,
                labels: Vec::new(),
            },
            secret_env,
            no_webhook,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_none() && self.forge.is_none()
    }

    async fn survey_forge(&self) -> anyhow::Result<Vec<SetupStep>> {
        match &self.forge {
            Some(forge) => Ok(forge.survey_repository(&self.forge_spec).await?),
            None => Ok(Vec::new()),
        }
    }

    async fn survey_tracker(&self) -> anyhow::Result<Vec<SetupStep>> {
        let Some(tracker) = &self.tracker else {
            return Ok(Vec::new());
        };
        let mut steps = tracker.survey_setup(&self.tracker_spec).await?;
        // A webhook apply could not sign is a step for a person, not a failure.
        let secret_missing = self
            .tracker_spec
            .webhook
            .as_ref()
            .is_some_and(|w| w.secret.is_none());
        if let (true, Some(var)) = (secret_missing, self.secret_env) {
            for step in steps
                .iter_mut()
                .filter(|s| s.op == SetupOp::Webhook && s.is_missing())
            {
                step.status = SetupStatus::Manual(format!(
                    "set {var} (the secret `orch serve` verifies these deliveries with) and run apply again"
                ));
            }
        }
        Ok(steps)
    }

    /// Everything both need and whether it exists: GET requests only.
    pub async fn survey(&self) -> anyhow::Result<Vec<SetupStep>> {
        let mut steps = self.survey_forge().await?;
        steps.extend(self.survey_tracker().await?);
        Ok(steps)
    }

    /// The lines of a survey, plus the note about a webhook nobody asked for.
    pub fn lines(&self, steps: &[SetupStep]) -> Vec<Line> {
        steps.iter().map(line).chain(self.note()).collect()
    }

    /// Why no webhook is set up although there is a tracker, as a line.
    pub fn note(&self) -> Option<Line> {
        self.no_webhook.as_ref().map(|note| Line {
            verb: "note",
            what: note.clone(),
        })
    }

    /// Creates what is missing, the forge first (the tracker's labels need its repository);
    /// a step the host refuses becomes a manual step. Returns the lines and whether every
    /// step that needed doing was done.
    pub async fn apply(&self) -> anyhow::Result<(Vec<Line>, bool)> {
        let mut lines = Vec::new();
        let mut done = true;
        if let Some(forge) = &self.forge {
            for step in self.survey_forge().await? {
                let outcome = if step.is_missing() {
                    Some(forge.apply_repository(&step, &self.forge_spec).await)
                } else {
                    None
                };
                done &= record(&mut lines, &step, outcome);
            }
        }
        if let Some(tracker) = &self.tracker {
            for step in self.survey_tracker().await? {
                let outcome = if step.is_missing() {
                    Some(tracker.apply_setup(&step, &self.tracker_spec).await)
                } else {
                    None
                };
                done &= record(&mut lines, &step, outcome);
            }
        }
        lines.extend(self.note());
        Ok((lines, done))
    }
}

/// The `--label` names: only for a Plane tracker (Gitea's and GitHub's labels are orch's own
/// `state/` labels), each 1 to 255 printable characters, each once.
fn checked_labels(entry: &ProjectEntry, labels: &[String]) -> anyhow::Result<Vec<String>> {
    if labels.is_empty() {
        return Ok(Vec::new());
    }
    if entry.tracker.as_ref().map(|t| t.kind.as_str()) != Some("plane") {
        return Err(usage(
            "--label applies to a Plane tracker (--tracker plane); Gitea and GitHub get orch's state/ labels".to_owned(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for label in labels {
        let printable = !label.trim().is_empty()
            && label.chars().count() <= 255
            && !label.chars().any(char::is_control);
        if !printable {
            return Err(usage(format!(
                "--label `{label}`: a label is 1 to 255 printable characters"
            )));
        }
        if !seen.insert(label.as_str()) {
            return Err(usage(format!("--label `{label}` is given twice")));
        }
    }
    Ok(labels.to_vec())
}

/// Whether nothing is left for apply: every step present or for a person.
pub fn all_done(steps: &[SetupStep]) -> bool {
    steps
        .iter()
        .all(|s| matches!(s.status, SetupStatus::Present | SetupStatus::Manual(_)))
}

/// A gap `verify` reports, if the step is one.
pub fn gap(step: &SetupStep) -> Option<String> {
    match &step.status {
        SetupStatus::Missing => Some(format!(
            "{}: {} is missing (run `orch onboard apply`)",
            step.service, step.what
        )),
        SetupStatus::Refused(why) => Some(format!("{}: {}: {why}", step.service, step.what)),
        SetupStatus::Present | SetupStatus::Manual(_) => None,
    }
}

/// The survey line of a step: what plan prints.
pub fn line(step: &SetupStep) -> Line {
    let what = format!("{}: {}", step.service, step.what);
    match &step.status {
        SetupStatus::Present => Line {
            verb: "exists",
            what,
        },
        SetupStatus::Missing => Line {
            verb: if step.op == SetupOp::FirstPush {
                "push"
            } else {
                "create"
            },
            what: format!("{what}  [{}]", step.calls.join("; ")),
        },
        SetupStatus::Manual(how) => Line {
            verb: "manual",
            what: format!("{what}: {how}"),
        },
        SetupStatus::Refused(why) => Line {
            verb: "refused",
            what: format!("{what}: {why}"),
        },
    }
}

/// Adds the line of a step apply looked at; returns false when it is left undone.
fn record(
    lines: &mut Vec<Line>,
    step: &SetupStep,
    outcome: Option<orch_integrations::Result<()>>,
) -> bool {
    let what = format!("{}: {}", step.service, step.what);
    match outcome {
        None => {
            lines.push(line(step));
            !matches!(step.status, SetupStatus::Refused(_))
        }
        Some(Ok(())) => {
            lines.push(Line {
                verb: if step.op == SetupOp::FirstPush {
                    "pushed"
                } else {
                    "created"
                },
                what,
            });
            true
        }
        Some(Err(e)) => {
            lines.push(Line {
                verb: "manual",
                what: format!("{what}: {} refused it ({e}); do it by hand", step.service),
            });
            false
        }
    }
}
