//! A project as the engine runs it: its repository, its validated pipeline, its roles, its
//! agents and its deployer, all loaded once from the repository's `.orch/` folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orch_agent::AgentsConfig;
use orch_agent::config::BuiltAgent;
use orch_core::pipeline::{Pipeline, StageKind};
use orch_core::role::Role;
use orch_core::{ProjectId, RoleName};

use crate::EngineError;

/// Files under `.orch/` in a project's repository.
pub mod files {
    pub const DIR: &str = ".orch";
    pub const PIPELINE: &str = ".orch/pipeline.toml";
    pub const AGENTS: &str = ".orch/agents.toml";
    pub const ROLES_DIR: &str = ".orch/agents";
    pub const DEPLOY: &str = ".orch/deploy.toml";
}

/// Where a project's state lives on this machine, and its deploy ports.
#[derive(Debug, Clone)]
pub struct ProjectSettings {
    pub id: ProjectId,
    /// The project's main git repository (its default branch receives the merges).
    pub repo: PathBuf,
    /// orch's data directory: worktrees, logs and deploys of every project live under it.
    pub data_dir: PathBuf,
    pub staging_port: u16,
    pub prod_port: u16,
    /// Health probe tries and interval override (tests and the demo use short ones).
    pub health_override: Option<(u32, std::time::Duration)>,
    /// Who may approve this project's items; empty means any person (never an agent).
    pub approvers: Vec<String>,
    /// How long an approval stays good for its promotion; `None`: until it is used.
    pub approval_ttl: Option<std::time::Duration>,
    /// Ask for a new approval after every re-integration, even of the same change.
    pub reapprove_on_reintegration: bool,
    /// The project's tracker and forge; without them, the built-in board and the local forge.
    pub remotes: Remotes,
    /// Where its notifications go (`[[projects.notify]]`); none by default.
    pub notify: Vec<crate::notify::NotifyTarget>,
}

/// A project's tracker and forge, each optional.
#[derive(Debug, Clone, Default)]
pub struct Remotes {
    pub tracker: Option<TrackerLink>,
    pub forge: Option<ForgeLink>,
}

impl Remotes {
    pub fn is_empty(&self) -> bool {
        self.tracker.is_none() && self.forge.is_none()
    }
}

/// The tracker a project's items come from.
#[derive(Debug, Clone)]
pub struct TrackerLink {
    pub tracker: Arc<dyn orch_integrations::Tracker>,
    /// What names the project in the tracker's webhooks: a Plane project id, a Gitea
    /// `owner/repo`.
    pub key: String,
    /// The canonical state that makes an item enter the pipeline (`Ready` by default).
    pub ready_state: String,
}

/// The forge a project's branches go to; it then merges them instead of the local merge.
#[derive(Debug, Clone)]
pub struct ForgeLink {
    pub forge: Arc<dyn orch_integrations::Forge>,
    pub merge_style: orch_integrations::MergeStyle,
    /// `[projects.forge.checks]`: the team's CI checks a promotion requires; `None`: none.
    pub checks: Option<crate::CheckPolicy>,
    /// `[projects.forge.reviews]`: who may approve by review, whether comments send back.
    pub reviews: Option<crate::ReviewPolicy>,
}

pub struct Project {
    pub settings: ProjectSettings,
    pub pipeline: Pipeline,
    pub roles: BTreeMap<RoleName, Role>,
    agents: BTreeMap<String, BuiltAgent>,
    /// The model CLIs this project's agents run, as (kind, program), each once: what `orch
    /// doctor` looks for.
    pub agent_clis: Vec<(orch_agent::AgentKind, String)>,
    pub deployer: Option<Arc<dyn orch_deploy::Deployer>>,
    /// Where the code agents write runs: their runs and the command gates that execute it.
    /// Bubblewrap unless the operator's `orch.toml` says otherwise ([`Project::with_sandbox`]).
    pub sandbox: orch_process::Sandbox,
    /// The main repository, opened (and checked) once on first use: every stage would otherwise
    /// pay a git process to open it again.
    repo: tokio::sync::OnceCell<orch_git::Repo>,
    /// `.orch/deploy.toml` as loaded, to build the deployer again under another sandbox.
    deploy_text: Option<String>,
}

/// The most of one `.orch/` file read; a longer one is refused (it is not a configuration).
const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// A file of the project's `.orch/`, read without following a link (a role prompt linked to
/// `/proc/self/environ` would send orch's environment to the model provider), as a regular
/// file, bounded.
fn read(repo: &Path, rel: &str) -> Result<Option<String>, EngineError> {
    use orch_process::safe_file::{SafeFileError, read_regular_bounded};
    let err = |message: String| EngineError::Config {
        file: rel.to_owned(),
        message,
    };
    match read_regular_bounded(repo, Path::new(rel), MAX_CONFIG_BYTES) {
        Ok(read) if read.truncated => Err(err(format!(
            "larger than {MAX_CONFIG_BYTES} bytes; is it the right file?"
        ))),
        Ok(read) => String::from_utf8(read.bytes)
            .map(Some)
            .map_err(|_| err("is not valid UTF-8".to_owned())),
        Err(SafeFileError::NotFound { .. }) => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

fn config_err(file: &str, message: impl ToString) -> EngineError {
    EngineError::Config {
        file: file.to_owned(),
        message: message.to_string(),
    }
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("settings", &self.settings)
            .field("roles", &self.roles.keys())
            .finish()
    }
}

impl Project {
    /// Loads and validates everything under `.orch/`; any problem is an error naming the file.
    pub fn load(settings: ProjectSettings) -> Result<Self, EngineError> {
        let repo = settings.repo.clone();
        if !repo.join(".git").exists() {
            return Err(config_err(
                &repo.display().to_string(),
                "is not a git repository (no .git); run `git init` there or fix the project's `repo`",
            ));
        }
        let text = read(&repo, files::PIPELINE)?.ok_or_else(|| {
            config_err(
                files::PIPELINE,
                "is missing; run `orch init` in the repository to write the default pipeline",
            )
        })?;
        let pipeline = Pipeline::from_toml(&text).map_err(|e| config_err(files::PIPELINE, e))?;

        let mut roles = BTreeMap::new();
        for stage in pipeline.stages() {
            if let StageKind::Agent { role } = &stage.kind {
                if roles.contains_key(role) {
                    continue;
                }
                let rel = format!("{}/{}.md", files::ROLES_DIR, role);
                let text = read(&repo, &rel)?.ok_or_else(|| {
                    config_err(
                        &rel,
                        format!("is missing; stage `{}` needs role `{role}`", stage.name),
                    )
                })?;
                let parsed = Role::parse(role, &text).map_err(|e| config_err(&rel, e))?;
                roles.insert(role.clone(), parsed);
            }
        }

        let agents_text = read(&repo, files::AGENTS)?.ok_or_else(|| {
            config_err(
                files::AGENTS,
                "is missing; it names the agent for each role (see `orch init`)",
            )
        })?;
        let agents_config =
            AgentsConfig::from_toml(&agents_text).map_err(|e| config_err(files::AGENTS, e))?;
        let agents = agents_config
            .build(&repo)
            .map_err(|e| config_err(files::AGENTS, e))?;
        let mut agent_clis = Vec::new();
        for spec in std::iter::once(&agents_config.default).chain(agents_config.roles.values()) {
            if let Some(program) = spec.cli_program()
                && !agent_clis.contains(&(spec.kind, program.clone()))
            {
                agent_clis.push((spec.kind, program));
            }
        }

        let needs_deployer = pipeline
            .stages()
            .iter()
            .any(|s| matches!(s.kind, StageKind::Action { .. }));
        let sandbox = orch_process::Sandbox::for_agents();
        let deploy_text = read(&repo, files::DEPLOY)?;
        let deployer = match &deploy_text {
            Some(text) => Some(build_deployer(&settings, text, &sandbox)?),
            None if needs_deployer => {
                return Err(config_err(
                    files::DEPLOY,
                    "is missing; the pipeline has deploy stages, which need it",
                ));
            }
            None => None,
        };
        Ok(Self {
            settings,
            pipeline,
            roles,
            agents,
            agent_clis,
            deployer,
            repo: tokio::sync::OnceCell::new(),
            sandbox,
            deploy_text,
        })
    }

    /// The project's main repository. Opened on first use; a failure is not kept, so the next
    /// call tries again (a repository restored after an outage is found).
    pub async fn repo(&self) -> Result<&orch_git::Repo, orch_git::GitError> {
        self.repo
            .get_or_try_init(|| orch_git::Repo::open(&self.settings.repo))
            .await
    }

    pub fn id(&self) -> &ProjectId {
        &self.settings.id
    }

    /// This project with its agents' code run under `sandbox`: the agents, the command gates,
    /// and the deployer's builds and instances.
    pub fn with_sandbox(mut self, sandbox: orch_process::Sandbox) -> Result<Self, EngineError> {
        if let Some(text) = &self.deploy_text {
            self.deployer = Some(build_deployer(&self.settings, text, &sandbox)?);
        }
        self.sandbox = sandbox;
        Ok(self)
    }

    /// The agent for a role: its override, or the project default.
    pub fn agent(&self, role: &RoleName) -> Option<&BuiltAgent> {
        self.agents
            .get(role.as_str())
            .or_else(|| self.agents.get(""))
    }

    pub fn worktree(&self, item: &orch_core::ItemId) -> PathBuf {
        self.settings
            .data_dir
            .join("worktrees")
            .join(self.id().as_str())
            .join(item.as_str())
    }

    pub fn run_log(&self, item: &orch_core::ItemId, stage: &str, attempt: u32) -> PathBuf {
        self.item_log_dir(item)
            .join(format!("{stage}-{attempt}.log"))
    }

    /// Where an item's run logs and orch's own stage logs live, outside every work tree.
    pub fn item_log_dir(&self, item: &orch_core::ItemId) -> PathBuf {
        self.settings
            .data_dir
            .join("logs")
            .join(self.id().as_str())
            .join(item.as_str())
    }
}

/// The deployer `.orch/deploy.toml` chooses with its `kind`.
fn build_deployer(
    settings: &ProjectSettings,
    text: &str,
    sandbox: &orch_process::Sandbox,
) -> Result<Arc<dyn orch_deploy::Deployer>, EngineError> {
    let config =
        orch_deploy::DeployConfig::from_toml(text).map_err(|e| config_err(files::DEPLOY, e))?;
    let root = settings.data_dir.join("deploy").join(settings.id.as_str());
    let ports = orch_deploy::Ports {
        staging: settings.staging_port,
        prod: settings.prod_port,
    };
    let deployer: Arc<dyn orch_deploy::Deployer> = match config {
        orch_deploy::DeployConfig::Process(mut spec) => {
            if let Some((tries, interval)) = settings.health_override {
                spec.health.tries = tries;
                spec.health.interval = interval;
            }
            // Builds and instances run the item's code: confined like its command gates, and
            // nothing of orch's data directory visible to an instance.
            let confinement =
                orch_deploy::Confinement::of_project(sandbox, vec![settings.data_dir.clone()]);
            Arc::new(
                orch_deploy::ProcessDeployer::new(root, spec, ports)
                    .map_err(|e| config_err(files::DEPLOY, e))?
                    .with_confinement(confinement),
            )
        }
        orch_deploy::DeployConfig::Hook(mut spec) => {
            // Only a self-deploy is health-probed by orch; any other hook probes by itself.
            if let (Some((tries, interval)), Some(own)) =
                (settings.health_override, spec.self_deploy.as_mut())
            {
                own.health.tries = tries;
                own.health.interval = interval;
            }
            Arc::new(
                orch_deploy::HookDeployer::new(root, settings.id.as_str(), spec, ports)
                    .map_err(|e| config_err(files::DEPLOY, e))?,
            )
        }
        orch_deploy::DeployConfig::Docker(mut spec) => {
            if let Some((tries, interval)) = settings.health_override {
                spec.health.tries = tries;
                spec.health.interval = interval;
            }
            Arc::new(
                orch_deploy::DockerDeployer::new(root, settings.id.as_str(), spec, ports)
                    .map_err(|e| config_err(files::DEPLOY, e))?,
            )
        }
    };
    Ok(deployer)
}

/// The branch of an item.
pub fn branch(item: &orch_core::ItemId) -> String {
    format!("orch/{item}")
}

/// The artifact directory of an item, relative to the worktree, with a trailing `/`.
pub fn artifact_dir(item: &orch_core::ItemId) -> String {
    format!("docs/work-items/{item}/")
}
