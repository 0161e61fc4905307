//! What exists and what onboarding would do: read-only, shared by `plan` (which prints it) and
//! `apply` (which carries it out).

use std::path::{Path, PathBuf};

use orch_core::ProjectId;

use super::git;
use super::registry::{EntryState, Registry};
use super::remotes::RemoteSetup;
use super::template::{self, Params};
use crate::cli::OnboardRemotes;
use crate::error::UsageError;

/// The branch that receives the kit in a repository that already has commits.
pub const ONBOARDING_BRANCH: &str = "orch/onboarding";
/// The first branch of a repository onboarding creates.
const NEW_REPO_BRANCH: &str = "main";
pub const COMMIT_MESSAGE: &str = "orch onboard: add the project kit";

/// The state of the project's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoState {
    /// No directory: create it and `git init`.
    Missing,
    /// A directory that is not a git repository: `git init` it.
    NotGit,
    /// A repository without commits: the kit is its first commit, on `branch`.
    Empty { branch: String },
    /// A repository with history: the kit goes on [`ONBOARDING_BRANCH`], cut from `branch`.
    Committed { branch: String, onboarding: bool },
}

impl RepoState {
    /// Whether kit files go into the repository's own work tree (a repository without history)
    /// rather than onto the onboarding branch.
    pub fn fresh(&self) -> bool {
        !matches!(self, RepoState::Committed { .. })
    }
}

/// One kit file, rendered, and whether the repository already has it.
#[derive(Debug, Clone)]
pub struct KitFile {
    pub rel: String,
    pub text: String,
    pub present: bool,
}

/// Everything `plan` reports and `apply` acts on.
#[derive(Debug)]
pub struct Survey {
    pub name: ProjectId,
    /// The repository as the user spelled it, for output.
    pub repo_shown: String,
    pub repo: PathBuf,
    pub state: RepoState,
    pub files: Vec<KitFile>,
    pub registry: Registry,
    pub entry: EntryState,
}

/// One line of output: a verb (`create`, `exists`, ...) and what it is about.
pub struct Line {
    pub verb: &'static str,
    pub what: String,
}

impl Survey {
    /// Looks at the repository and the registry; writes nothing.
    pub fn take(
        config: &Path,
        name: &str,
        repo: &Path,
        staging_port: Option<u16>,
        prod_port: Option<u16>,
        remotes: &OnboardRemotes,
    ) -> anyhow::Result<Self> {
        let name = parse_name(name)?;
        let remotes = super::remotes::entries(&name, remotes)?;
        let repo_shown = repo.display().to_string();
        let repo_abs = super::registry::normalize(repo)?;
        if repo_abs.exists() && !repo_abs.is_dir() {
            return Err(
                UsageError(format!("--repo {repo_shown}: is a file, not a directory")).into(),
            );
        }
        let registry = Registry::load(config)?;
        let entry = registry.entry_for(&name, &repo_abs, staging_port, prod_port, remotes)?;
        let state = repo_state(&repo_abs)?;
        let default_branch = match &state {
            RepoState::Missing | RepoState::NotGit => NEW_REPO_BRANCH.to_owned(),
            RepoState::Empty { branch } | RepoState::Committed { branch, .. } => branch.clone(),
        };
        let params = Params {
            project_name: name.to_string(),
            item_prefix: name.item_prefix(),
            staging_port: entry.entry().staging_port,
            prod_port: entry.entry().prod_port,
            default_branch,
        };
        let rendered = template::kit_files(&params).map_err(anyhow::Error::msg)?;
        let mut files = Vec::new();
        for (rel, text) in rendered {
            let present = match &state {
                RepoState::Missing => false,
                RepoState::NotGit | RepoState::Empty { .. } => {
                    repo_abs.join(&rel).symlink_metadata().is_ok()
                }
                RepoState::Committed { branch, onboarding } => {
                    let rev = if *onboarding {
                        ONBOARDING_BRANCH
                    } else {
                        branch
                    };
                    git::exists_at(&repo_abs, rev, &rel)?
                }
            };
            files.push(KitFile { rel, text, present });
        }
        Ok(Self {
            name,
            repo_shown,
            repo: repo_abs,
            state,
            files,
            registry,
            entry,
        })
    }

    /// The branch the repository's history is on (what a first push sends).
    pub fn default_branch(&self) -> String {
        match &self.state {
            RepoState::Missing | RepoState::NotGit => NEW_REPO_BRANCH.to_owned(),
            RepoState::Empty { branch } | RepoState::Committed { branch, .. } => branch.clone(),
        }
    }

    /// The project's tracker and forge, built by the registry parser from the entry.
    pub fn remotes(
        &self,
        webhook_url: Option<&str>,
        labels: &[String],
    ) -> anyhow::Result<RemoteSetup> {
        let entry = self.entry.entry();
        let project = crate::settings::parse_project(entry, &self.registry.data_dir)
            .map_err(|e| UsageError(format!("{}: {e}", self.registry.path.display())))?;
        RemoteSetup::new(
            &project,
            entry,
            (self.repo.clone(), self.default_branch()),
            webhook_url,
            labels,
        )
    }

    pub fn missing(&self) -> impl Iterator<Item = &KitFile> {
        self.files.iter().filter(|f| !f.present)
    }

    /// Whether the repository needs a commit: a fresh repository gets its first one; one with
    /// history gets one on the onboarding branch when kit files are missing there.
    pub fn needs_commit(&self) -> bool {
        self.state.fresh() || self.missing().next().is_some()
    }

    pub fn nothing_to_do(&self) -> bool {
        !self.needs_commit() && matches!(self.entry, EntryState::Present(_))
    }

    /// Every action and every thing found, in the order apply goes.
    pub fn lines(&self) -> Vec<Line> {
        let repo = &self.repo_shown;
        let mut lines = Vec::new();
        let mut line = |verb, what: String| lines.push(Line { verb, what });
        match &self.state {
            RepoState::Missing => {
                line("create", format!("{repo}/"));
                line(
                    "init",
                    format!("{repo} (git init, branch {NEW_REPO_BRANCH})"),
                );
            }
            RepoState::NotGit => {
                line("exists", format!("{repo}/ (not a git repository)"));
                line(
                    "init",
                    format!("{repo} (git init, branch {NEW_REPO_BRANCH})"),
                );
            }
            RepoState::Empty { branch } => {
                line(
                    "exists",
                    format!("{repo} (git repository without commits, branch {branch})"),
                );
            }
            RepoState::Committed { branch, onboarding } => {
                line(
                    "exists",
                    format!("{repo} (git repository, default branch {branch})"),
                );
                if *onboarding {
                    line("exists", format!("{repo} branch {ONBOARDING_BRANCH}"));
                } else if self.needs_commit() {
                    line(
                        "branch",
                        format!(
                            "{repo} {ONBOARDING_BRANCH} from {branch} (the default branch is not touched)"
                        ),
                    );
                }
            }
        }
        let on_branch = if self.state.fresh() {
            String::new()
        } else {
            format!(" (on branch {ONBOARDING_BRANCH})")
        };
        for f in &self.files {
            if f.present {
                line("exists", format!("{repo}/{}", f.rel));
            } else {
                line("create", format!("{repo}/{}{on_branch}", f.rel));
            }
        }
        if self.needs_commit() {
            let branch = match &self.state {
                RepoState::Committed { .. } => ONBOARDING_BRANCH.to_owned(),
                RepoState::Empty { branch } => branch.clone(),
                RepoState::Missing | RepoState::NotGit => NEW_REPO_BRANCH.to_owned(),
            };
            line(
                "commit",
                format!("{repo} on {branch}: \"{COMMIT_MESSAGE}\""),
            );
        }
        let entry = self.entry.entry();
        let config = self.registry.path.display();
        let remotes: String = [("tracker", &entry.tracker), ("forge", &entry.forge)]
            .into_iter()
            .filter_map(|(table, r)| {
                r.as_ref()
                    .map(|r| format!(" [projects.{table}] kind = \"{}\"", r.kind))
            })
            .collect();
        match &self.entry {
            EntryState::Present(_) => line(
                "exists",
                format!("{config} [[projects]] name = \"{}\"{remotes}", entry.name),
            ),
            EntryState::Absent(_) => line(
                "add",
                format!(
                    "{config} [[projects]] name = \"{}\" repo = \"{}\" staging_port = {} prod_port = {}{remotes}",
                    entry.name, entry.repo, entry.staging_port, entry.prod_port
                ),
            ),
        }
        lines
    }
}

fn repo_state(repo: &Path) -> anyhow::Result<RepoState> {
    if !repo.exists() {
        return Ok(RepoState::Missing);
    }
    if !repo.join(".git").exists() {
        return Ok(RepoState::NotGit);
    }
    let branch = git::current_branch(repo).map_err(|e| UsageError(format!("{e:#}")))?;
    if branch == ONBOARDING_BRANCH {
        return Err(UsageError(format!(
            "{}: {ONBOARDING_BRANCH} is checked out; check out the default branch first",
            repo.display()
        ))
        .into());
    }
    if !git::has_commits(repo)? {
        return Ok(RepoState::Empty { branch });
    }
    let onboarding = git::branch_exists(repo, ONBOARDING_BRANCH)?;
    Ok(RepoState::Committed { branch, onboarding })
}

/// Prints lines aligned on the verb column.
pub fn print(lines: &[Line]) {
    for l in lines {
        println!("{:<7} {}", l.verb, l.what);
    }
}

/// The project name, or a usage error saying what a name may hold.
pub fn parse_name(name: &str) -> anyhow::Result<ProjectId> {
    ProjectId::parse(name).map_err(|e| {
        UsageError(format!(
            "--name: {e}; use lowercase letters, digits and single `-`, such as `billing-api`"
        ))
        .into()
    })
}
