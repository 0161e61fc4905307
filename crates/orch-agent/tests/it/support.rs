//! Worktrees, requests and the location of the real CLIs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use orch_agent::AgentRequest;

pub const ITEM: &str = "DEMO-1";
pub const ARTIFACT_DIR: &str = "docs/work-items/DEMO-1/";
pub const ARTIFACT: &str = "01-analysis.md";
pub const ARTIFACT_CONTENT: &str = "---\nanalysis_status: READY\n---\n# Analysis\nScripted.\n";

/// A git repository with one commit, as an item's worktree, and a directory for run logs.
#[derive(Debug)]
pub struct Workspace {
    _dir: tempfile::TempDir,
    pub worktree: PathBuf,
    pub logs: PathBuf,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let worktree = dir.path().join("wt");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(worktree.join(ARTIFACT_DIR)).expect("mkdir");
        std::fs::write(worktree.join("README.md"), "# demo\n").expect("write");
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "README.md"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "init",
            ],
        ] {
            let status = Command::new("git")
                .args(args)
                .current_dir(&worktree)
                .status()
                .expect("git runs");
            assert!(status.success(), "git {args:?}");
        }
        Self {
            _dir: dir,
            worktree,
            logs,
        }
    }

    pub fn artifact_path(&self) -> PathBuf {
        self.worktree.join(ARTIFACT_DIR).join(ARTIFACT)
    }

    pub fn request(&self, tools: &[&str]) -> AgentRequest {
        AgentRequest {
            item: orch_core::ItemId::parse(ITEM).expect("valid"),
            title: "Change the greeting".into(),
            stage: orch_core::StageName::parse("analysis").expect("valid"),
            attempt: 1,
            worktree: self.worktree.clone(),
            artifact_dir: ARTIFACT_DIR.into(),
            artifact: Some(ARTIFACT.into()),
            prompt: format!("Write the analysis of {ITEM} to {ARTIFACT_DIR}{ARTIFACT}."),
            model: Some("scripted-model".into()),
            tools: tools.iter().map(|t| (*t).to_owned()).collect(),
            timeout: Duration::from_secs(120),
            stall: Duration::from_secs(60),
            log: self.logs.join("analysis-1.log"),
            prompt_file: self.logs.join("analysis-1.prompt.md"),
            resume_session: None,
            sandbox: orch_process::Sandbox::Trusted,
        }
    }

    /// [`Workspace::request`] run in orch's bubblewrap sandbox, as orch runs agents by default;
    /// in its docker runtime instead when `ORCH_TEST_SANDBOX_RUNTIME=docker` (to run the
    /// real-CLI tests in containers).
    pub fn sandboxed_request(&self, tools: &[&str]) -> AgentRequest {
        let sandbox = match std::env::var("ORCH_TEST_SANDBOX_RUNTIME").as_deref() {
            Ok("docker") => orch_process::Sandbox::docker_for_agents(),
            _ => orch_process::Sandbox::for_agents(),
        };
        AgentRequest {
            sandbox,
            ..self.request(tools)
        }
    }

    /// A directory outside the worktree for stand-in programs.
    pub fn logs_parent(&self) -> PathBuf {
        let dir = self.logs.with_file_name("bin");
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    pub fn run_log(&self) -> String {
        std::fs::read_to_string(self.logs.join("analysis-1.log")).unwrap_or_default()
    }

    pub fn stream_log(&self) -> String {
        std::fs::read_to_string(self.logs.join("analysis-1.stream.jsonl")).unwrap_or_default()
    }
}

/// The real CLI `name`: `$<env_var>`, else on PATH, else installed by `.ci/install-agent-clis.sh`
/// (npm packages in `.ci/tools/node_modules`, aider in `.ci/tools/aider-venv`).
/// `None` (skipped and counted) when it is not installed, a failure where every dependency is
/// required (`.ci/run`, `CI=true`).
pub fn real_cli(env_var: &str, name: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os(env_var).map(PathBuf::from);
    let on_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    let installed = || {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/tools");
        ["node_modules/.bin", "aider-venv/bin"]
            .iter()
            .map(|dir| tools.join(dir).join(name))
            .find(|path| path.is_file())
    };
    let found = from_env.or_else(on_path).or_else(installed);
    if found.is_none() {
        let message = format!(
            "`{name}` not found (${env_var}, PATH, .ci/tools): run .ci/install-agent-clis.sh"
        );
        crate::skip::skip(&message);
    }
    found
}

/// Writes an executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}
