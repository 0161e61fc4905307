//! The project's entry in `orch.toml`: whether it is there, whether the name or the repository
//! is taken by another project, and the file with the entry appended (the rest byte-for-byte).

use std::path::{Component, Path, PathBuf};

use orch_core::ProjectId;

use crate::error::UsageError;
use crate::settings::{self, ConfigFile, ProjectEntry, RemoteEntry};

/// Where the ports of new projects start when `--staging-port`/`--prod-port` are not given.
const FIRST_DEFAULT_PORT: u16 = 8600;

/// The registry file as it is on disk (absent is an empty registry).
#[derive(Debug)]
pub struct Registry {
    pub path: PathBuf,
    /// The directory relative repository paths are resolved against.
    pub data_dir: PathBuf,
    /// The file's text, `None` when it does not exist yet.
    pub text: Option<String>,
    pub file: ConfigFile,
}

/// The project's entry: already registered, or the one to add.
#[derive(Debug, Clone)]
pub enum EntryState {
    Present(ProjectEntry),
    Absent(ProjectEntry),
}

impl EntryState {
    pub fn entry(&self) -> &ProjectEntry {
        match self {
            EntryState::Present(e) | EntryState::Absent(e) => e,
        }
    }
}

/// `path` made absolute with `.` and `..` folded, so two spellings of a directory compare equal.
pub fn normalize(path: &Path) -> anyhow::Result<PathBuf> {
    let abs = std::path::absolute(path)
        .map_err(|e| UsageError(format!("cannot resolve {}: {e}", path.display())))?;
    let mut out = PathBuf::new();
    for part in abs.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

impl Registry {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let abs = normalize(path)?;
        let data_dir = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let text = match std::fs::read_to_string(&abs) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(UsageError(format!("cannot read {}: {e}", abs.display())).into());
            }
        };
        let file: ConfigFile = toml::from_str(text.as_deref().unwrap_or(""))
            .map_err(|e| UsageError(format!("{}: {e}", abs.display())))?;
        Ok(Self {
            path: abs,
            data_dir,
            text,
            file,
        })
    }

    /// The repository as the entry spells it: relative to the data directory when inside it.
    fn repo_field(&self, repo: &Path) -> anyhow::Result<String> {
        let shown = match repo.strip_prefix(&self.data_dir) {
            Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
            Ok(rel) => rel.to_path_buf(),
            Err(_) => repo.to_path_buf(),
        };
        shown.to_str().map(str::to_owned).ok_or_else(|| {
            UsageError(format!("{}: the path is not valid UTF-8", repo.display())).into()
        })
    }

    fn entry_repo(&self, entry: &ProjectEntry) -> anyhow::Result<PathBuf> {
        normalize(&self.data_dir.join(&entry.repo))
    }

    /// The entry of project `name` at `repo` (normalized): present, or the one to add. Refuses
    /// (exit 2) a name another repository holds, a repository another name holds, and ports
    /// another project uses.
    pub fn entry_for(
        &self,
        name: &ProjectId,
        repo: &Path,
        staging_port: Option<u16>,
        prod_port: Option<u16>,
        remotes: (Option<RemoteEntry>, Option<RemoteEntry>),
    ) -> anyhow::Result<EntryState> {
        let (tracker, forge) = remotes;
        for other in &self.file.projects {
            let other_repo = self.entry_repo(other)?;
            if other.name == name.as_str() {
                if other_repo != repo {
                    return Err(UsageError(format!(
                        "the name `{name}` is taken in {} by the project at {}; choose another name",
                        self.path.display(),
                        other_repo.display()
                    ))
                    .into());
                }
                for (table, given, registered) in [
                    ("tracker", &tracker, &other.tracker),
                    ("forge", &forge, &other.forge),
                ] {
                    if given.is_some() && !same(given, registered) {
                        return Err(UsageError(format!(
                            "project `{name}` is registered in {} with a different [projects.{table}] table; orch does not edit registered projects: change the table by hand, or leave out the {table} flags to use it",
                            self.path.display()
                        ))
                        .into());
                    }
                }
                return Ok(EntryState::Present(other.clone()));
            }
            if other_repo == repo {
                return Err(UsageError(format!(
                    "{} is already the repository of project `{}` in {}; one repository belongs to one project",
                    repo.display(),
                    other.name,
                    self.path.display()
                ))
                .into());
            }
        }
        let used: Vec<u16> = self
            .file
            .projects
            .iter()
            .flat_map(|p| [p.staging_port, p.prod_port])
            .collect();
        for (flag, port) in [("--staging-port", staging_port), ("--prod-port", prod_port)] {
            if let Some(port) = port.filter(|p| used.contains(p)) {
                return Err(UsageError(format!(
                    "{flag} {port}: another project in {} uses that port; pick a free one",
                    self.path.display()
                ))
                .into());
            }
        }
        let (default_prod, default_staging) = self.free_port_pair(&used);
        let entry = ProjectEntry {
            name: name.to_string(),
            repo: self.repo_field(repo)?,
            staging_port: staging_port.unwrap_or(default_staging),
            prod_port: prod_port.unwrap_or(default_prod),
            health_tries: None,
            health_interval_ms: None,
            approvers: Vec::new(),
            approval_ttl_secs: None,
            reapprove_on_reintegration: false,
            sandbox: None,
            notify: Vec::new(),
            tracker,
            forge,
        };
        settings::parse_project(&entry, &self.data_dir)
            .map_err(|e| UsageError(format!("the new entry does not parse: {e}")))?;
        Ok(EntryState::Absent(entry))
    }

    /// The first (prod, staging) pair of adjacent ports from 8600 that no project uses.
    fn free_port_pair(&self, used: &[u16]) -> (u16, u16) {
        let mut prod = FIRST_DEFAULT_PORT;
        while used.contains(&prod) || used.contains(&(prod + 1)) {
            prod = prod.saturating_add(2);
        }
        (prod, prod + 1)
    }

    /// The file's text with `entry` appended as a `[[projects]]` table; checked to parse back
    /// into exactly this entry before anything is written.
    pub fn text_with(&self, entry: &ProjectEntry) -> anyhow::Result<String> {
        let mut text = self.text.clone().unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        if !text.is_empty() {
            text.push('\n');
        }
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        text.push_str(&format!(
            "[[projects]]\nname = {}\nrepo = {}\nstaging_port = {}\nprod_port = {}\n",
            quote(&entry.name),
            quote(&entry.repo),
            entry.staging_port,
            entry.prod_port
        ));
        for (table, remote) in [("tracker", &entry.tracker), ("forge", &entry.forge)] {
            if let Some(remote) = remote {
                let body = toml::to_string(remote).map_err(|e| {
                    UsageError(format!(
                        "the [projects.{table}] table cannot be written: {e}"
                    ))
                })?;
                text.push_str(&format!("\n[projects.{table}]\n{body}"));
            }
        }
        let back: ConfigFile = toml::from_str(&text).map_err(|e| {
            UsageError(format!(
                "{}: appending a [[projects]] table would not parse ({e}); add the entry by hand",
                self.path.display()
            ))
        })?;
        let parsed_back = back.projects.iter().any(|p| {
            p.name == entry.name
                && p.repo == entry.repo
                && p.staging_port == entry.staging_port
                && p.prod_port == entry.prod_port
                && same(&p.tracker, &entry.tracker)
                && same(&p.forge, &entry.forge)
        });
        if !parsed_back || back.projects.len() != self.file.projects.len() + 1 {
            return Err(UsageError(format!(
                "{}: the appended [[projects]] table does not read back as the new entry; add it by hand",
                self.path.display()
            ))
            .into());
        }
        Ok(text)
    }
}

/// Whether two optional tracker or forge tables say the same.
fn same(a: &Option<RemoteEntry>, b: &Option<RemoteEntry>) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}
