//! Building a project's tracker and forge from its `[projects.tracker]` and `[projects.forge]`
//! tables. Part of the one registry parser: every error names the project and the field.

use std::sync::Arc;

use orch_core::ProjectId;
use orch_engine::{ForgeLink, TrackerLink};
use orch_integrations::{
    Forge, GitHub, GitHubConfig, Gitea, GiteaConfig, MergeStyle, Plane, PlaneConfig, RetryPolicy,
    Token, Tracker,
};

use super::RemoteEntry;

/// A required text field of the table, or an error naming it.
fn required<'a>(
    id: &ProjectId,
    table: &str,
    field: &str,
    value: &'a Option<String>,
) -> Result<&'a str, String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!("project `{id}`, field `{table}.{field}`: is required for this kind")
        })
}

/// The token from the environment variable the entry names; never from the file.
fn token(id: &ProjectId, table: &str, entry: &RemoteEntry) -> Result<Token, String> {
    let name = entry.token_env.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "project `{id}`, field `{table}.token_env`: must name an environment variable (letters, digits, `_`), not hold the token"
        ));
    }
    let value = std::env::var(name).unwrap_or_default();
    Token::new(value).ok_or_else(|| {
        format!("project `{id}`, field `{table}.token_env`: the environment variable `{name}` is not set")
    })
}

/// A repository host (Gitea, Forgejo, GitHub) as both a tracker and a forge, with its
/// `owner/repo` key (what its webhooks name the repository by).
type RepositoryHost = (Arc<dyn Tracker>, Arc<dyn Forge>, String);

fn both<H: Tracker + Forge + 'static>(host: H, key: String) -> RepositoryHost {
    let host = Arc::new(host);
    (host.clone(), host, key)
}

fn repository_host(
    id: &ProjectId,
    table: &str,
    entry: &RemoteEntry,
) -> Result<Option<RepositoryHost>, String> {
    if !matches!(entry.kind.as_str(), "gitea" | "forgejo" | "github") {
        return Ok(None);
    }
    let owner = required(id, table, "owner", &entry.owner)?.to_owned();
    let repo = required(id, table, "repo", &entry.repo)?.to_owned();
    let key = format!("{owner}/{repo}");
    let token = token(id, table, entry)?;
    let base_url = entry.base_url.clone();
    let retry = RetryPolicy::default();
    let built: Result<RepositoryHost, _> = if entry.kind == "github" {
        GitHub::new(GitHubConfig {
            base_url,
            owner,
            repo,
            token,
            retry,
        })
        .map(|host| both(host, key))
    } else {
        Gitea::new(GiteaConfig {
            base_url,
            owner,
            repo,
            token,
            retry,
        })
        .map(|host| both(host, key))
    };
    built
        .map(Some)
        .map_err(|e| format!("project `{id}`, table `{table}`: {e}"))
}

pub(super) fn tracker(id: &ProjectId, entry: &RemoteEntry) -> Result<TrackerLink, String> {
    let table = "tracker";
    let ready_state = entry
        .ready_state
        .clone()
        .unwrap_or_else(|| "Ready".to_owned());
    if !orch_core::states::CANONICAL_STATES
        .iter()
        .any(|s| s.name == ready_state)
    {
        return Err(format!(
            "project `{id}`, field `tracker.ready_state`: `{ready_state}` is not one of orch's tracker states"
        ));
    }
    if entry.merge_style.is_some() {
        return Err(format!(
            "project `{id}`, field `tracker.merge_style`: belongs in `[projects.forge]`"
        ));
    }
    let (tracker, key): (Arc<dyn Tracker>, String) = match entry.kind.as_str() {
        "plane" => {
            let workspace = required(id, table, "workspace", &entry.workspace)?;
            let project = required(id, table, "project", &entry.project)?;
            let plane = Plane::new(PlaneConfig {
                base_url: entry.base_url.clone(),
                workspace: workspace.to_owned(),
                project_id: project.to_owned(),
                token: token(id, table, entry)?,
                retry: RetryPolicy::default(),
            })
            .map_err(|e| format!("project `{id}`, table `tracker`: {e}"))?;
            (Arc::new(plane), project.to_owned())
        }
        other => match repository_host(id, table, entry)? {
            Some((tracker, _, key)) => (tracker, key),
            None => {
                return Err(format!(
                    "project `{id}`, field `tracker.kind`: `{other}` is not a tracker; use `plane`, `gitea`, `forgejo` or `github`"
                ));
            }
        },
    };
    Ok(TrackerLink {
        tracker,
        key,
        ready_state,
    })
}

/// `[projects.forge.checks]` as the engine's policy; an empty list or a zero interval is refused.
fn check_policy(
    id: &ProjectId,
    entry: &crate::settings::ChecksEntry,
) -> Result<orch_engine::CheckPolicy, String> {
    let field = |name: &str| format!("project `{id}`, field `forge.checks.{name}`");
    if entry.required.is_empty() || entry.required.iter().any(|r| r.trim().is_empty()) {
        return Err(format!(
            "{}: name at least one check (or `[\"*\"]` for every check reported); an empty name \
             or list requires nothing, which a gate must not do silently",
            field("required")
        ));
    }
    let secs = |value: Option<u64>, default: std::time::Duration, name: &str| match value {
        None => Ok(default),
        Some(0) => Err(format!("{}: must be at least 1", field(name))),
        Some(n) => Ok(std::time::Duration::from_secs(n)),
    };
    Ok(orch_engine::CheckPolicy {
        required: entry.required.clone(),
        timeout: secs(
            entry.timeout_secs,
            orch_engine::CheckPolicy::DEFAULT_TIMEOUT,
            "timeout_secs",
        )?,
        poll: secs(
            entry.poll_secs,
            orch_engine::CheckPolicy::DEFAULT_POLL,
            "poll_secs",
        )?,
        before_stages: entry
            .before_stages
            .clone()
            .unwrap_or_else(|| vec!["review".to_owned()]),
    })
}

/// `[projects.forge.reviews]` as the engine's policy.
fn review_policy(
    id: &ProjectId,
    entry: &crate::settings::ReviewsEntry,
) -> Result<orch_engine::ReviewPolicy, String> {
    let field = |name: &str| format!("project `{id}`, field `forge.reviews.{name}`");
    if let Some(bad) = entry
        .approvers
        .iter()
        .find(|a| orch_engine::people::valid_person_name(a).is_err())
    {
        return Err(format!(
            "{}: `{bad}` is not a person's name (see `orch user add`)",
            field("approvers")
        ));
    }
    let defaults = orch_engine::ReviewPolicy::default();
    let secs = |value: Option<u64>, default: std::time::Duration, name: &str| match value {
        None => Ok(default),
        Some(0) => Err(format!("{}: must be at least 1", field(name))),
        Some(n) => Ok(std::time::Duration::from_secs(n)),
    };
    Ok(orch_engine::ReviewPolicy {
        approvers: entry.approvers.clone(),
        comments: entry.comments,
        timeout: secs(entry.timeout_secs, defaults.timeout, "timeout_secs")?,
        poll: secs(entry.poll_secs, defaults.poll, "poll_secs")?,
    })
}

pub(super) fn forge(id: &ProjectId, entry: &RemoteEntry) -> Result<ForgeLink, String> {
    let table = "forge";
    if entry.ready_state.is_some() || entry.poll_secs.is_some() {
        return Err(format!(
            "project `{id}`, table `forge`: `ready_state` and `poll_secs` belong in `[projects.tracker]`"
        ));
    }
    let merge_style = match entry.merge_style.as_deref() {
        None => MergeStyle::default(),
        Some(s) => MergeStyle::parse(s).ok_or_else(|| {
            format!("project `{id}`, field `forge.merge_style`: `{s}` is not `merge`, `squash`, `rebase` or `fast-forward`")
        })?,
    };
    let checks = match &entry.checks {
        None => None,
        Some(c) => Some(check_policy(id, c)?),
    };
    let reviews = match &entry.reviews {
        None => None,
        Some(r) => Some(review_policy(id, r)?),
    };
    match repository_host(id, table, entry)? {
        Some((_, forge, _)) => Ok(ForgeLink {
            forge,
            merge_style,
            checks,
            reviews,
        }),
        None => Err(format!(
            "project `{id}`, field `forge.kind`: `{}` is not a forge; use `gitea`, `forgejo` or `github`",
            entry.kind
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::settings::{ProjectEntry, RemoteEntry, parse_project};

    /// `PATH` is set in every environment tests run in; it stands in for a token variable, so
    /// the tests need not change the process environment.
    const SET_VAR: &str = "PATH";

    fn entry(tracker: Option<RemoteEntry>, forge: Option<RemoteEntry>) -> ProjectEntry {
        ProjectEntry {
            name: "web".into(),
            repo: "repo".into(),
            staging_port: 18001,
            prod_port: 18002,
            health_tries: None,
            health_interval_ms: None,
            approvers: Vec::new(),
            approval_ttl_secs: None,
            reapprove_on_reintegration: false,
            sandbox: None,
            tracker,
            forge,
            notify: Vec::new(),
        }
    }

    fn remote(kind: &str) -> RemoteEntry {
        RemoteEntry {
            kind: kind.into(),
            base_url: "https://tracker.example.com".into(),
            workspace: Some("acme".into()),
            project: Some("4af6d1a2".into()),
            owner: Some("acme".into()),
            repo: Some("web".into()),
            token_env: SET_VAR.into(),
            ready_state: None,
            poll_secs: None,
            merge_style: None,
            checks: None,
            reviews: None,
        }
    }

    fn error(tracker: Option<RemoteEntry>, forge: Option<RemoteEntry>) -> String {
        parse_project(&entry(tracker, forge), Path::new("/data")).expect_err("refused")
    }

    #[test]
    fn a_plane_tracker_and_a_gitea_forge_parse() {
        let parsed = parse_project(
            &entry(Some(remote("plane")), Some(remote("gitea"))),
            Path::new("/data"),
        )
        .expect("parses");
        let tracker = parsed.remotes.tracker.expect("tracker");
        assert_eq!(
            (
                tracker.tracker.kind(),
                tracker.key.as_str(),
                tracker.ready_state.as_str()
            ),
            ("plane", "4af6d1a2", "Ready")
        );
        let forge = parsed.remotes.forge.expect("forge");
        assert_eq!(forge.forge.kind(), "gitea");
        assert_eq!(forge.merge_style, orch_integrations::MergeStyle::Merge);
        let shown = format!("{:?}", forge.forge);
        let token = std::env::var(SET_VAR).unwrap_or_default();
        assert!(!shown.contains(&token), "the token never shows in Debug");
    }

    #[test]
    fn a_github_repository_is_both_tracker_and_forge() {
        let github = || RemoteEntry {
            base_url: "https://api.github.com".into(),
            ..remote("github")
        };
        let parsed = parse_project(
            &entry(
                Some(github()),
                Some(RemoteEntry {
                    merge_style: Some("squash".into()),
                    checks: None,
                    reviews: None,
                    ..github()
                }),
            ),
            Path::new("/data"),
        )
        .expect("parses");
        let tracker = parsed.remotes.tracker.expect("tracker");
        assert_eq!(
            (tracker.tracker.kind(), tracker.key.as_str()),
            ("github", "acme/web"),
            "keyed by owner/repo, as GitHub's deliveries name the repository"
        );
        let forge = parsed.remotes.forge.expect("forge");
        assert_eq!(forge.forge.kind(), "github");
        assert_eq!(forge.merge_style, orch_integrations::MergeStyle::Squash);
        let token = std::env::var(SET_VAR).unwrap_or_default();
        assert!(!format!("{:?}", forge.forge).contains(&token));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(Option<RemoteEntry>, Option<RemoteEntry>, &str)> = vec![
            (Some(remote("jira")), None, "tracker.kind"),
            (None, Some(remote("plane")), "forge.kind"),
            (
                None,
                Some(RemoteEntry {
                    repo: None,
                    ..remote("github")
                }),
                "forge.repo",
            ),
            (
                Some(RemoteEntry {
                    owner: Some("../other".into()),
                    ..remote("github")
                }),
                None,
                "owner",
            ),
            (
                Some(RemoteEntry {
                    workspace: None,
                    ..remote("plane")
                }),
                None,
                "tracker.workspace",
            ),
            (
                Some(RemoteEntry {
                    owner: None,
                    ..remote("gitea")
                }),
                None,
                "tracker.owner",
            ),
            (
                Some(RemoteEntry {
                    token_env: "ORCH_TEST_SURELY_UNSET_TOKEN".into(),
                    ..remote("plane")
                }),
                None,
                "tracker.token_env",
            ),
            (
                Some(RemoteEntry {
                    token_env: "plane_api_0123 abc".into(),
                    ..remote("plane")
                }),
                None,
                "tracker.token_env",
            ),
            (
                Some(RemoteEntry {
                    ready_state: Some("Go".into()),
                    ..remote("plane")
                }),
                None,
                "tracker.ready_state",
            ),
            (
                None,
                Some(RemoteEntry {
                    merge_style: Some("octopus".into()),
                    ..remote("gitea")
                }),
                "forge.merge_style",
            ),
            (
                None,
                Some(RemoteEntry {
                    checks: Some(crate::settings::ChecksEntry {
                        required: Vec::new(),
                        timeout_secs: None,
                        poll_secs: None,
                        before_stages: None,
                    }),
                    reviews: None,
                    ..remote("gitea")
                }),
                "forge.checks.required",
            ),
            (
                None,
                Some(RemoteEntry {
                    checks: Some(crate::settings::ChecksEntry {
                        required: vec!["ci/*".into()],
                        timeout_secs: None,
                        poll_secs: Some(0),
                        before_stages: None,
                    }),
                    reviews: None,
                    ..remote("gitea")
                }),
                "forge.checks.poll_secs",
            ),
            (
                Some(RemoteEntry {
                    base_url: "ftp://x".into(),
                    ..remote("plane")
                }),
                None,
                "base_url",
            ),
        ];
        for (tracker, forge, field) in cases {
            let message = error(tracker, forge);
            assert!(message.contains(field), "`{field}` named in: {message}");
            assert!(message.contains("project `web`"), "{message}");
        }
    }
}
