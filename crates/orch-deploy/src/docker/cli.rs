//! The docker CLI, run through `orch-process` like every other child: cleared environment, a
//! timeout, its own process group. Only the commands and output formats documented for the CLI
//! are used (`docker version`, `image inspect`, `build`, `tag`, `rmi`, `run`, `rm -f`,
//! `container inspect`, `logs`, `exec`), so any engine that speaks the docker CLI works.

use std::path::Path;
use std::time::Duration;

use orch_process::{Finished, Spec};
use tokio_util::sync::CancellationToken;

use crate::build::StdoutLines;
use crate::config::DockerSpec;
use crate::error::DeployError;

/// Every CLI call but a build: they ask the daemon one thing and should answer in seconds.
pub(crate) const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What the daemon says when the object asked about does not exist.
const NO_SUCH: &str = "No such";

/// The docker CLI as the project configured it: which binary, which daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerCli {
    binary: String,
    host: Option<String>,
}

/// An image as `docker image inspect` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    /// `sha256:<hex>`: the content-addressed id, the same whatever its tags.
    pub id: String,
    /// The `org.opencontainers.image.revision` label, empty when absent.
    pub revision: String,
    pub created: String,
}

/// A CLI call that did not exit 0: how it ended and its last output lines.
#[derive(Debug, Clone)]
pub(crate) struct CliFailure {
    pub finished: Finished,
}

impl CliFailure {
    /// Whether the daemon answered that the object does not exist.
    pub fn is_no_such(&self) -> bool {
        self.finished.tail.contains(NO_SUCH)
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.finished.outcome {
            orch_process::ExitOutcome::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// How it ended, with what it printed last: for error messages.
    pub fn detail(&self) -> String {
        let said = self
            .finished
            .tail
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(|line| line.trim_start_matches("[stderr] ").trim().to_owned())
            .unwrap_or_default();
        if said.is_empty() {
            self.finished.outcome.describe()
        } else {
            format!("{}: {said}", self.finished.outcome.describe())
        }
    }
}

impl DockerCli {
    pub fn new(spec: &DockerSpec) -> DockerCli {
        DockerCli {
            binary: spec.binary.clone(),
            host: spec.host.clone(),
        }
    }

    /// A CLI invocation in `cwd` with `timeout`; the caller adds the arguments.
    pub fn command(&self, cwd: &Path, timeout: Duration) -> Spec {
        let spec = Spec::new(self.binary.clone(), cwd).timeout(timeout);
        match &self.host {
            Some(host) => spec.env("DOCKER_HOST", host.as_str()),
            None => spec,
        }
    }

    /// Runs `args` and returns the stdout lines, or how it failed.
    async fn run(
        &self,
        args: &[&str],
        cancel: &CancellationToken,
    ) -> Result<Result<Vec<String>, CliFailure>, DeployError> {
        let spec = self
            .command(&std::env::temp_dir(), CLI_TIMEOUT)
            .args(args.iter().copied());
        self.run_spec(&spec, cancel).await
    }

    /// Runs a prepared invocation; the outer `Err` is cancellation only.
    pub async fn run_spec(
        &self,
        spec: &Spec,
        cancel: &CancellationToken,
    ) -> Result<Result<Vec<String>, CliFailure>, DeployError> {
        let mut stdout = StdoutLines::default();
        let finished = orch_process::run(spec, cancel, &mut stdout).await;
        if cancel.is_cancelled() {
            return Err(DeployError::Cancelled);
        }
        if finished.outcome.success() {
            Ok(Ok(stdout.0))
        } else {
            Ok(Err(CliFailure { finished }))
        }
    }

    /// Runs `args`, mapping a failure to [`DeployError::Docker`] saying what `action` failed.
    async fn must(
        &self,
        action: &str,
        args: &[&str],
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, DeployError> {
        self.run(args, cancel)
            .await?
            .map_err(|failure| self.failed(action, &failure))
    }

    pub fn failed(&self, action: &str, failure: &CliFailure) -> DeployError {
        DeployError::Docker {
            action: action.to_owned(),
            detail: failure.detail(),
        }
    }

    /// Fails with [`DeployError::DockerUnreachable`] unless the CLI starts and its daemon answers.
    pub async fn ping(&self, cancel: &CancellationToken) -> Result<String, DeployError> {
        let answer = self
            .run(&["version", "--format", "{{.Server.Version}}"], cancel)
            .await?;
        let unreachable = |detail: String| DeployError::DockerUnreachable {
            binary: self.binary.clone(),
            host: self
                .host
                .clone()
                .unwrap_or_else(|| "the default".to_owned()),
            detail,
        };
        match answer {
            Ok(lines) => match lines.first().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                Some(version) => Ok(version.to_owned()),
                None => Err(unreachable("the daemon reported no version".to_owned())),
            },
            Err(failure) => Err(unreachable(failure.detail())),
        }
    }

    /// The image `reference` names (a tag or an id), or `None` when there is none.
    pub async fn image(
        &self,
        reference: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<ImageInfo>, DeployError> {
        let format = format!(
            "{{{{.Id}}}}|{{{{index .Config.Labels \"{}\"}}}}|{{{{.Created}}}}",
            crate::config::REVISION_LABEL
        );
        let lines = match self
            .run(
                &["image", "inspect", "--format", &format, reference],
                cancel,
            )
            .await?
        {
            Ok(lines) => lines,
            Err(failure) if failure.is_no_such() => return Ok(None),
            Err(failure) => return Err(self.failed(&format!("inspect {reference}"), &failure)),
        };
        let line = lines.first().map(|l| l.trim()).unwrap_or_default();
        let mut fields = line.splitn(3, '|');
        let (Some(id), Some(revision), Some(created)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(DeployError::Docker {
                action: format!("inspect {reference}"),
                detail: format!("unexpected answer `{line}`"),
            });
        };
        if !id.starts_with("sha256:") {
            return Err(DeployError::Docker {
                action: format!("inspect {reference}"),
                detail: format!("`{id}` is not an image id"),
            });
        }
        // A missing label prints as `<no value>` with some CLI versions.
        let revision = if revision == "<no value>" {
            ""
        } else {
            revision
        };
        Ok(Some(ImageInfo {
            id: id.to_owned(),
            revision: revision.to_owned(),
            created: created.to_owned(),
        }))
    }

    /// Points `tag` at `source` (a tag or an id); never builds.
    pub async fn tag(
        &self,
        source: &str,
        tag: &str,
        cancel: &CancellationToken,
    ) -> Result<(), DeployError> {
        self.must(
            &format!("tag {source} as {tag}"),
            &["tag", source, tag],
            cancel,
        )
        .await
        .map(drop)
    }

    /// Removes `tag` (not the image while another tag or a container still uses it).
    pub async fn untag(&self, tag: &str, cancel: &CancellationToken) -> Result<(), DeployError> {
        match self.run(&["image", "rm", tag], cancel).await? {
            Ok(_) => Ok(()),
            Err(failure) if failure.is_no_such() => Ok(()),
            Err(failure) => Err(self.failed(&format!("remove the tag {tag}"), &failure)),
        }
    }

    /// Removes the container `name`, running or not; `true` when there was one.
    pub async fn remove_container(
        &self,
        name: &str,
        cancel: &CancellationToken,
    ) -> Result<bool, DeployError> {
        match self
            .run(&["container", "rm", "--force", name], cancel)
            .await?
        {
            Ok(_) => Ok(true),
            Err(failure) if failure.is_no_such() => Ok(false),
            Err(failure) => Err(self.failed(&format!("remove the container {name}"), &failure)),
        }
    }

    /// Whether the container `name` exists and runs.
    pub async fn is_running(
        &self,
        name: &str,
        cancel: &CancellationToken,
    ) -> Result<bool, DeployError> {
        let args = [
            "container",
            "inspect",
            "--format",
            "{{.State.Running}}",
            name,
        ];
        match self.run(&args, cancel).await? {
            Ok(lines) => Ok(lines.first().is_some_and(|l| l.trim() == "true")),
            Err(failure) if failure.is_no_such() => Ok(false),
            Err(failure) => Err(self.failed(&format!("inspect the container {name}"), &failure)),
        }
    }

    /// Writes the container's output to `log` (best effort: it explains a failure, never decides).
    pub async fn save_logs(&self, name: &str, log: &Path, cancel: &CancellationToken) {
        let _ = crate::layout::remove_file(log);
        let spec = self
            .command(&std::env::temp_dir(), CLI_TIMEOUT)
            .args(["logs", name])
            .log(log);
        let _ = orch_process::run(&spec, cancel, &mut ()).await;
    }
}
