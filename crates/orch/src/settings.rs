//! `orch.toml`: the store, the engine and the registry of projects, layered with `ORCH_*`
//! environment variables and resolved once into typed settings. Relative paths are relative to
//! the directory of the file, which is also orch's data directory (worktrees, logs, deploys).

use std::path::{Path, PathBuf};

use anyhow::Context;
use orch_core::ProjectId;
use serde::{Deserialize, Serialize};

use crate::env;

mod notify;
mod remotes;
mod sandbox;
pub mod telemetry;

use crate::error::UsageError;
pub use notify::NotifyEntry;
pub use sandbox::parse_sandbox;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(default)]
    pub projects: Vec<ProjectEntry>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub telemetry: telemetry::TelemetrySection,
}

/// `[server]`: what `orch serve` answers to and trusts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Host names (with or without a port) the server answers to, besides IP addresses and
    /// `localhost`; others are refused (DNS rebinding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Without any credential, the read-only dashboard shows artifact text, logs and diffs.
    #[serde(default)]
    pub public_content: bool,
    /// Addresses of reverse proxies whose `X-Forwarded-For`/`X-Forwarded-Proto` count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Session cookies always `Secure` (TLS ends before orch).
    #[serde(default)]
    pub secure_cookies: bool,
    /// A trusted proxy's `X-Auth-Request-User`/`X-Forwarded-User` logs that person in.
    #[serde(default)]
    pub proxy_auth: bool,
    /// The name `ORCH_API_TOKEN` acts under (default `automation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The dashboard's address as people reach it (`https://orch.example.com`): notifications
    /// link to item pages under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// `[store]`: `url` may be left out (the SQLite file beside orch.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    pub url: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: "sqlite://orch.db".to_owned(),
        }
    }
}

/// `[engine]`: every value may be left out and takes its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub max_parallel: usize,
    pub lease_secs: u64,
    /// Stage runs held at once by all processes sharing the store; none = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Stage runs of one project held at once by all processes sharing the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running_per_project: Option<u32>,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            max_parallel: 4,
            lease_secs: 30,
            max_running: None,
            max_running_per_project: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectEntry {
    pub name: String,
    pub repo: String,
    pub staging_port: u16,
    pub prod_port: u16,
    /// Health probe tries and interval, overriding the project's `.orch/deploy.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_tries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_interval_ms: Option<u64>,
    /// The people who may approve this project's items; empty or absent means any person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Seconds an approval stays good: a promotion that starts later asks for a new approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_ttl_secs: Option<u64>,
    /// Ask a person again whenever a candidate is integrated anew, even for the same change;
    /// by default an approval carries over a clean re-integration of the change it approved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reapprove_on_reintegration: bool,
    /// Where the project's items come from; absent means the built-in board.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker: Option<RemoteEntry>,
    /// Where its branches go and are merged; absent means the local merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<RemoteEntry>,
    /// Where the code its agents write runs; absent means bubblewrap with the default limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxEntry>,
    /// Who is told when an item awaits approval, is blocked, is deployed... (`[[projects.notify]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyEntry>,
}

/// `sandbox = { mode = "none" }` or `[projects.sandbox]`: the agent sandbox of one project. It
/// lives in orch.toml, the operator's file, never in the repository, which agents write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxEntry {
    /// `bubblewrap` (the default) or `none` (agents run unconfined, with a warning every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// What confines the agents: `bubblewrap` (the default) or `docker` (a container per run,
    /// for container hosts; docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// More host folders agents and command gates may read (a toolchain outside `/usr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<String>,
    /// Each process's address space, in MiB (default 16384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// The processes an agent run may have at once (default 1024; not enforced when orch runs
    /// as root, see docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Hosts the agents may reach through the sandbox's egress proxy (`example.com`, or
    /// `*.example.com` for its subdomains); default none. Every other attempt is recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// The largest file an agent may write, in MiB (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mib: Option<u64>,
}

/// `[projects.tracker]` or `[projects.forge]`: a Plane or Gitea/Forgejo service. The token is
/// read from the environment variable named by `token_env`; the file never holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteEntry {
    /// `plane` (tracker only), `gitea`, `forgejo` or `github`.
    pub kind: String,
    pub base_url: String,
    /// Plane: the workspace slug and the project id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Gitea/Forgejo: the repository's owner and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub token_env: String,
    /// Tracker: the state that makes an item enter the pipeline (default `Ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_state: Option<String>,
    /// Tracker: seconds between reconciliation polls (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secs: Option<u64>,
    /// Forge: `merge` (default), `squash`, `rebase` or `fast-forward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_style: Option<String>,
    /// Forge: `[projects.forge.checks]`, the team's CI checks a promotion requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksEntry>,
    /// Forge: `[projects.forge.reviews]`, what people's reviews may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviews: Option<ReviewsEntry>,
}

/// `[projects.forge.reviews]`: orch people (names) whose approving review on the validated
/// candidate approves the item, and whether comment reviews send it back like requested changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewsEntry {
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub comments: bool,
    /// How long the deploy waits for a re-review after changes were requested (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// How often the forge is asked while waiting (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secs: Option<u64>,
}

/// `[projects.forge.checks]`: the commit statuses and check runs (by name, `*` patterns, or
/// `["*"]` for every one reported) that must have passed on a candidate before it is promoted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksEntry {
    pub required: Vec<String>,
    /// How long a check may stay without a verdict before the item blocks (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// How often the forge is asked again while waiting (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secs: Option<u64>,
    /// Agent stages that start only once the checks passed on the branch head (default
    /// `["review"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_stages: Option<Vec<String>>,
}

/// How often trackers are polled when no project says otherwise.
pub const DEFAULT_TRACKER_POLL_SECS: u64 = 60;

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub store_url: String,
    pub max_parallel: usize,
    pub lease_secs: u64,
    /// `[engine] max_running` and `max_running_per_project`, across every process.
    pub claim_limits: orch_store::ClaimLimits,
    pub projects: Vec<orch_engine::ProjectSettings>,
    /// Each project's agent sandbox, by project id.
    pub sandboxes: std::collections::BTreeMap<orch_core::ProjectId, orch_process::Sandbox>,
    pub staging_tolerance: bool,
    pub crashpoint: Option<String>,
    /// Between two reconciliation polls of the trackers: the shortest any project asks for.
    pub tracker_poll: std::time::Duration,
    /// `[server]`, for `orch serve`.
    pub server: ServerSection,
    /// The name `ORCH_API_TOKEN` acts under.
    pub service_name: String,
    /// Where traces go (`[telemetry]`, `OTEL_*`); `None`: nowhere.
    pub traces: Option<telemetry::Traces>,
    /// `[server] public_url`, without a trailing `/`.
    pub public_url: Option<String>,
}

/// Parses one registry entry: the single parser for every caller (contract 14).
pub fn parse_project(
    entry: &ProjectEntry,
    data_dir: &Path,
) -> Result<orch_engine::ProjectSettings, String> {
    let id = ProjectId::parse(&entry.name).map_err(|e| format!("projects.name: {e}"))?;
    if entry.repo.trim().is_empty() {
        return Err(format!(
            "project `{id}`, field `repo`: must name the project's git repository"
        ));
    }
    if entry.staging_port == 0 || entry.prod_port == 0 || entry.staging_port == entry.prod_port {
        return Err(format!(
            "project `{id}`, fields `staging_port`/`prod_port`: need two different non-zero ports"
        ));
    }
    let health_override = match (entry.health_tries, entry.health_interval_ms) {
        (None, None) => None,
        (tries, interval) => {
            let tries = tries.unwrap_or(10);
            if tries == 0 {
                return Err(format!(
                    "project `{id}`, field `health_tries`: must be at least 1"
                ));
            }
            Some((
                tries,
                std::time::Duration::from_millis(interval.unwrap_or(6000)),
            ))
        }
    };
    if let Some(index) = entry.approvers.iter().position(|a| a.trim().is_empty()) {
        return Err(format!(
            "project `{id}`, field `approvers[{index}]`: is empty; list people's names, or leave `approvers` out to let any person approve"
        ));
    }
    if entry.approval_ttl_secs == Some(0) {
        return Err(format!(
            "project `{id}`, field `approval_ttl_secs`: must be at least 1; leave it out for approvals that do not expire"
        ));
    }
    let remotes = orch_engine::Remotes {
        tracker: entry
            .tracker
            .as_ref()
            .map(|t| remotes::tracker(&id, t))
            .transpose()?,
        forge: entry
            .forge
            .as_ref()
            .map(|f| remotes::forge(&id, f))
            .transpose()?,
    };
    let notify = notify::targets(&id, &entry.notify)?;
    Ok(orch_engine::ProjectSettings {
        id,
        repo: data_dir.join(&entry.repo),
        data_dir: data_dir.to_path_buf(),
        staging_port: entry.staging_port,
        prod_port: entry.prod_port,
        health_override,
        approvers: entry
            .approvers
            .iter()
            .map(|a| a.trim().to_owned())
            .collect(),
        approval_ttl: entry.approval_ttl_secs.map(std::time::Duration::from_secs),
        reapprove_on_reintegration: entry.reapprove_on_reintegration,
        remotes,
        notify,
    })
}

/// [`env::CRASHPOINT`]: unset, or one of the engine's crash points (a typo would silently
/// never crash, and the test relying on it would pass for the wrong reason).
fn crashpoint() -> Result<Option<String>, UsageError> {
    let value = std::env::var(env::CRASHPOINT).unwrap_or_default();
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if orch_engine::CRASHPOINTS.contains(&value) {
        return Ok(Some(value.to_owned()));
    }
    Err(UsageError(format!(
        "{}={value:?} is not a crash point; use one of: {}",
        env::CRASHPOINT,
        orch_engine::CRASHPOINTS.join(", ")
    )))
}

/// The registry entries of [`env::PROJECTS_JSON`]: a JSON array of objects with the fields of
/// `[[projects]]`. Each entry is then checked by [`parse_project`], like the file's.
fn registry_from_json(json: &str) -> Result<Vec<ProjectEntry>, UsageError> {
    let values: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| {
        UsageError(format!(
            "{}: not a JSON array of project entries: {e}",
            env::PROJECTS_JSON
        ))
    })?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            serde_json::from_value(value).map_err(|e| {
                let hint = orch_core::toml_error::did_you_mean(&e.to_string())
                    .map(|name| format!(" (did you mean `{name}`?)"))
                    .unwrap_or_default();
                UsageError(format!("{}: entry {index}: {e}{hint}", env::PROJECTS_JSON))
            })
        })
        .collect()
}

impl ConfigFile {
    /// Reads and parses `orch.toml`; every error names the file and is a usage error (exit 2).
    pub fn read(path: &Path) -> Result<Self, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError(format!(
                "cannot read {}: {e}\nhint: run `orch demo` to create one, or pass --config FILE (env {})",
                path.display(),
                env::CONFIG
            ))
        })?;
        orch_core::toml_error::parse(&text)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))
    }

    /// The registry entries in force: [`env::PROJECTS_JSON`]'s when set, else the file's, with
    /// where they came from (for error messages).
    pub fn registry(&self, path: &Path) -> Result<(Vec<ProjectEntry>, String), UsageError> {
        match std::env::var(env::PROJECTS_JSON) {
            Ok(json) => Ok((registry_from_json(&json)?, env::PROJECTS_JSON.to_owned())),
            Err(_) => Ok((self.projects.clone(), path.display().to_string())),
        }
    }

    /// The store URL in force ([`env::STORE_URL`] over `[store] url`), a relative SQLite path
    /// resolved against the data directory.
    pub fn store_url(&self, data_dir: &Path) -> String {
        let mut store_url = std::env::var(env::STORE_URL).unwrap_or(self.store.url.clone());
        if let Some(rel) = store_url.strip_prefix("sqlite://")
            && !rel.starts_with('/')
            && !rel.starts_with(':')
        {
            store_url = format!("sqlite://{}", data_dir.join(rel).display());
        }
        store_url
    }
}

/// orch's data directory: the folder of the configuration file, absolute.
pub fn data_dir(path: &Path) -> anyhow::Result<PathBuf> {
    let abs =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

impl Settings {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file = ConfigFile::read(path)?;
        let abs = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let data_dir = data_dir(path)?;
        let (entries, source) = file.registry(path)?;
        let mut projects = Vec::new();
        let mut sandboxes = std::collections::BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for entry in &entries {
            let p = parse_project(entry, &data_dir)
                .map_err(|e| UsageError(format!("{source}: {e}")))?;
            let sandbox = parse_sandbox(entry, &data_dir)
                .map_err(|e| UsageError(format!("{source}: {e}")))?;
            sandboxes.insert(p.id.clone(), sandbox);
            if !seen.insert(p.id.clone()) {
                return Err(
                    UsageError(format!("{source}: project `{}` is listed twice", p.id)).into(),
                );
            }
            projects.push(p);
        }
        let store_url = file.store_url(&data_dir);
        let max_parallel = match std::env::var(env::MAX_PARALLEL) {
            Ok(v) => v.trim().parse().map_err(|_| {
                UsageError(format!(
                    "{}={v:?}: not a number; set a whole number of runs, 1 or more",
                    env::MAX_PARALLEL
                ))
            })?,
            Err(_) => file.engine.max_parallel,
        };
        for (field, value) in [
            ("max_running", file.engine.max_running),
            (
                "max_running_per_project",
                file.engine.max_running_per_project,
            ),
        ] {
            if value == Some(0) {
                return Err(UsageError(format!(
                    "{}: [engine] {field} must be at least 1; leave it out for no limit",
                    path.display()
                ))
                .into());
            }
        }
        let service_name = file
            .server
            .service_name
            .clone()
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|| orch_server::DEFAULT_SERVICE_NAME.to_owned());
        orch_engine::people::valid_person_name(&service_name)
            .map_err(|e| UsageError(format!("{}: [server] service_name: {e}", path.display())))?;
        let traces = telemetry::resolve(&file.telemetry, |name| std::env::var(name).ok())
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let public_url = match file.server.public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Some(url.trim_end_matches('/').to_owned())
            }
            Some(url) => {
                return Err(UsageError(format!(
                    "{}: [server] public_url: `{url}` must start with https:// or http://",
                    path.display()
                ))
                .into());
            }
        };
        Ok(Self {
            traces,
            server: file.server.clone(),
            service_name,
            public_url,
            path: abs,
            store_url,
            max_parallel,
            lease_secs: file.engine.lease_secs.max(1),
            claim_limits: orch_store::ClaimLimits {
                global: file.engine.max_running,
                per_project: file.engine.max_running_per_project,
            },
            projects,
            sandboxes,
            staging_tolerance: env::flag(env::STAGING_INFRA_TOLERANCE_ENABLED, true)
                .map_err(UsageError)?,
            crashpoint: crashpoint()?,
            tracker_poll: std::time::Duration::from_secs(
                file.projects
                    .iter()
                    .filter_map(|p| p.tracker.as_ref())
                    .map(|t| t.poll_secs.unwrap_or(DEFAULT_TRACKER_POLL_SECS).max(1))
                    .min()
                    .unwrap_or(DEFAULT_TRACKER_POLL_SECS),
            ),
        })
    }
}
