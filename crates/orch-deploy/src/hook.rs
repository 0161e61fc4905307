//! The `hook` deployer: the project's own script builds and runs the app (a docker compose file,
//! an ssh to a host), orch gives it the documented environment and judges only its exit code
//! (contract 3), then validates staging with the same checks as the process deployer.
//!
//! ```text
//! <root>/hook/<sha>.staging.log        the hook's output when it deployed <sha> to staging
//! <root>/hook/<sha>.prod.log           the hook's output when it promoted <sha>
//! <root>/hook/<sha>.validated.json     the proof that <sha> passed staging (build once)
//! ```

mod detached;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use orch_core::gate::ExitOutcome;
use orch_core::staging::{CheckResult, fold};
use orch_process::{Observer, Spec, Stream};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::build::check_sha_format;
use crate::checks::{report_lines, run_checks};
use crate::config::{HookSpec, HookTarget, Mode};
use crate::deployer::Deployer;
use crate::error::DeployError;
use crate::instance::{Env, Ports};
use crate::layout::{read_record, remove_file, write_record};
use crate::report::{DeployReport, DeployStatus, StagingReport};
use crate::selfdeploy::SelfDeploy;
use crate::template;

/// A staging hook may print this, then the reference of what it built (`ORCH_ARTIFACT=reg/app@sha256:..`);
/// prod then receives that reference as `SOURCE_IMAGE` instead of the SHA-tagged name.
pub const ARTIFACT_LINE_PREFIX: &str = "ORCH_ARTIFACT=";

#[derive(Debug, Clone)]
pub struct HookDeployer {
    root: PathBuf,
    project: String,
    spec: HookSpec,
    ports: Ports,
    mode: Mode,
}

/// Written when staging passed `sha`: promotion reads it, never whatever staging runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HookValidation {
    sha: String,
    /// What prod receives as `SOURCE_IMAGE`.
    artifact: String,
    /// The validated worktree, handed to the prod hook as `BUILD_CONTEXT`.
    build_context: PathBuf,
}

impl HookDeployer {
    /// A hook deployer for `project`, keeping its logs and proofs under `root`.
    pub fn new(
        root: impl Into<PathBuf>,
        project: &str,
        spec: HookSpec,
        ports: Ports,
    ) -> Result<HookDeployer, DeployError> {
        if ports.staging == 0 || ports.prod == 0 || ports.staging == ports.prod {
            return Err(DeployError::Config {
                field: "ports".to_owned(),
                problem: format!(
                    "staging ({}) and prod ({}) need two different, non-zero ports",
                    ports.staging, ports.prod
                ),
            });
        }
        Ok(HookDeployer {
            root: root.into(),
            project: project.to_owned(),
            spec,
            ports,
            mode: Mode::Stub,
        })
    }

    pub fn with_mode(mut self, mode: Mode) -> HookDeployer {
        self.mode = mode;
        self
    }

    /// Where the hook's output goes when it deploys `sha` to `env`.
    pub fn hook_log(&self, env: Env, sha: &str) -> PathBuf {
        self.root.join("hook").join(format!("{sha}.{env}.log"))
    }

    fn proof_path(&self, sha: &str) -> PathBuf {
        self.root.join("hook").join(format!("{sha}.validated.json"))
    }

    /// What prod's hook is asked to run (`TARGET_IMAGE`): `[hook.prod] image`, else
    /// `orch-<project>:prod`.
    fn prod_image(&self, sha: &str) -> String {
        self.image(Env::Prod, sha)
    }

    /// The SHA-tagged name of a build (`[hook.staging] image`, else `orch-<project>:<sha>`), used
    /// when the staging hook names no artifact of its own.
    fn tagged(&self, sha: &str) -> String {
        self.image(Env::Staging, sha)
    }

    fn target(&self, env: Env) -> &HookTarget {
        match env {
            Env::Staging => &self.spec.on_staging,
            Env::Prod => &self.spec.on_prod,
        }
    }

    fn image(&self, env: Env, sha: &str) -> String {
        let default = match env {
            Env::Staging => "orch-{project}:{sha}",
            Env::Prod => "orch-{project}:prod",
        };
        let template = self.target(env).image.as_deref().unwrap_or(default);
        // Validation allows only these two placeholders; a hand-built spec keeps its text.
        template::fill(template, &[("project", &self.project), ("sha", sha)])
            .unwrap_or_else(|_| template.to_owned())
    }

    /// The hook's run for `env`: its program (a relative one with a slash is the project's own
    /// script, found in the build context), orch's cleared environment plus the documented
    /// variables, its timeout and its log.
    fn hook_spec(&self, env: Env, hook: &HookEnv<'_>, log: &Path) -> Spec {
        let program = self.spec.command.first().cloned().unwrap_or_default();
        let program = if program.contains('/') && Path::new(&program).is_relative() {
            hook.build_context.join(&program).display().to_string()
        } else {
            program
        };
        let port = self.ports.of(env).to_string();
        let target = self.target(env);
        let mut spec = Spec::new(program, hook.build_context);
        // The project's own variables first: orch's documented ones below always win.
        for (name, value) in &target.env {
            spec = spec.env(name.as_str(), value.as_str());
        }
        let spec = spec
            .args(self.spec.command.iter().skip(1))
            .args(target.args.iter())
            .env(
                "TARGET_SERVICE",
                target.service.as_deref().unwrap_or(env.as_str()),
            )
            .env("TARGET_PORT", port.as_str())
            .env("BUILD_CONTEXT", hook.build_context.display().to_string())
            .env("GIT_SHA", hook.sha)
            .env("TARGET_IMAGE", hook.target_image)
            .timeout(self.spec.timeout)
            .log(log);
        // Unset, not empty, on staging: the seeds' hook tests `${SOURCE_IMAGE+set}` to choose
        // between a rebuild and a retag.
        match hook.source_image {
            Some(source) => spec.env("SOURCE_IMAGE", source),
            None => spec,
        }
    }

    /// Runs the hook for `env` and maps its ending onto contract 3; `Ok` carries what it printed
    /// after [`ARTIFACT_LINE_PREFIX`], if anything.
    async fn run_hook(
        &self,
        env: Env,
        hook: HookEnv<'_>,
        cancel: &CancellationToken,
        lines: &mut Vec<String>,
    ) -> Result<Option<String>, DeployError> {
        let log = self.hook_log(env, hook.sha);
        let hook_dir = self.root.join("hook");
        std::fs::create_dir_all(&hook_dir).map_err(DeployError::io("create", &hook_dir))?;
        remove_file(&log)?;
        let spec = self.hook_spec(env, &hook, &log);
        lines.push(format!(
            "{env}: running the hook `{}` (output in {})",
            self.spec.command.join(" "),
            log.display()
        ));
        let mut printed = ArtifactLine::default();
        let finished = orch_process::run(&spec, cancel, &mut printed).await;
        if cancel.is_cancelled() {
            return Err(DeployError::Cancelled);
        }
        match finished.outcome {
            ExitOutcome::Exited(0) => {
                lines.push(format!("{env}: the hook exited 0"));
                Ok(printed.0)
            }
            ExitOutcome::Exited(2) => Err(DeployError::HookMisuse { env, log }),
            outcome => Err(DeployError::HookFailed {
                env,
                outcome: hook_outcome(&outcome),
                log,
            }),
        }
    }

    async fn staging(
        &self,
        worktree: &Path,
        sha: &str,
        tolerance: bool,
        cancel: &CancellationToken,
    ) -> StagingReport {
        let base_url = format!("http://127.0.0.1:{}", self.ports.staging);
        let mut steps = Vec::new();
        // A failed run voids an earlier proof of the same SHA, whatever failed.
        let _ = remove_file(&self.proof_path(sha));
        let hooked = match check_sha_format(sha) {
            Ok(()) => {
                let env = HookEnv {
                    build_context: worktree,
                    sha,
                    target_image: &self.tagged(sha),
                    source_image: None,
                };
                self.run_hook(Env::Staging, env, cancel, &mut steps).await
            }
            Err(e) => Err(e),
        };
        let artifact = match hooked {
            Ok(printed) => printed.unwrap_or_else(|| self.tagged(sha)),
            Err(e) => {
                return StagingReport::failed_before_checks(
                    sha, None, base_url, tolerance, steps, &e,
                );
            }
        };
        let checks = run_checks(&base_url, &self.spec.staging, self.mode, worktree, cancel).await;
        let results: Vec<CheckResult> = checks.iter().map(|run| run.result.clone()).collect();
        let error = cancel
            .is_cancelled()
            .then(|| DeployError::Cancelled.to_string());
        let mut verdict = fold(&results, tolerance, error.as_deref());
        if verdict.is_success() {
            let proof = HookValidation {
                sha: sha.to_owned(),
                artifact,
                build_context: worktree.to_owned(),
            };
            if let Err(e) = write_record(&self.proof_path(sha), &proof) {
                verdict = fold(&results, tolerance, Some(&e.to_string()));
            }
        }
        steps.extend(report_lines(&checks, &verdict));
        StagingReport {
            sha: sha.to_owned(),
            build: None,
            base_url,
            checks,
            verdict,
            lines: steps,
            error,
            infra_error: false,
            build_egress_refused: orch_process::EgressRefusals::default(),
        }
    }

    async fn prod(&self, validated_sha: &str, cancel: &CancellationToken) -> DeployReport {
        let mut report = DeployReport {
            infra_error: false,
            status: DeployStatus::Success,
            sha: validated_sha.to_owned(),
            digest: None,
            restored: None,
            frozen: false,
            lines: Vec::new(),
        };
        let result = match self.validated(validated_sha) {
            Ok(proof) => {
                report.digest = Some(proof.artifact.clone());
                report
                    .lines
                    .push(format!("promoting {validated_sha} ({})", proof.artifact));
                let target_image = self.prod_image(&proof.sha);
                let env = HookEnv::prod(&proof, &target_image);
                self.run_hook(Env::Prod, env, cancel, &mut report.lines)
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let reason = e.to_string();
            report.lines.push(format!("FAILED: {reason}"));
            report.status = DeployStatus::Failed { reason };
            report.infra_error = !e.caused_by_change();
        }
        report
    }

    /// The proof staging wrote for exactly this SHA (build once, contract 6).
    fn validated(&self, sha: &str) -> Result<HookValidation, DeployError> {
        check_sha_format(sha)?;
        let path = self.proof_path(sha);
        let proof: HookValidation =
            read_record(&path)?.ok_or_else(|| DeployError::NotValidated {
                validated: sha.to_owned(),
                proof: path.clone(),
            })?;
        if proof.sha != sha {
            return Err(DeployError::Record {
                path,
                detail: format!("it validates {}, not {sha}", proof.sha),
            });
        }
        Ok(proof)
    }
}

#[async_trait]
impl Deployer for HookDeployer {
    async fn deploy_staging(
        &self,
        worktree: &Path,
        sha: &str,
        tolerance: bool,
        cancel: &CancellationToken,
    ) -> StagingReport {
        self.staging(worktree, sha, tolerance, cancel).await
    }

    async fn promote(&self, validated_sha: &str, cancel: &CancellationToken) -> DeployReport {
        self.prod(validated_sha, cancel).await
    }

    fn self_deploy(&self) -> Option<&dyn SelfDeploy> {
        self.spec
            .self_deploy
            .is_some()
            .then_some(self as &dyn SelfDeploy)
    }
}

/// The per-run part of the hook's environment.
struct HookEnv<'a> {
    build_context: &'a Path,
    sha: &'a str,
    target_image: &'a str,
    source_image: Option<&'a str>,
}

impl<'a> HookEnv<'a> {
    /// Prod's environment: the worktree, SHA and artifact that staging validated.
    fn prod(proof: &'a HookValidation, target_image: &'a str) -> HookEnv<'a> {
        HookEnv {
            build_context: &proof.build_context,
            sha: &proof.sha,
            target_image,
            source_image: Some(&proof.artifact),
        }
    }
}

/// Keeps the last `ORCH_ARTIFACT=` line the hook printed on stdout.
#[derive(Default)]
struct ArtifactLine(Option<String>);

impl Observer for ArtifactLine {
    fn line(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Stdout
            && let Some(reference) = line.trim().strip_prefix(ARTIFACT_LINE_PREFIX)
            && !reference.is_empty()
        {
            self.0 = Some(reference.to_owned());
        }
    }
}

/// Contract 3 in words: every ending but exit 0 is FAILED, and the reason says which it was
/// (exit 2 has its own error, [`DeployError::HookMisuse`]).
fn hook_outcome(outcome: &ExitOutcome) -> String {
    match outcome {
        ExitOutcome::Exited(1) => "exited 1: the deploy failed".to_owned(),
        ExitOutcome::Exited(code) => {
            format!("exited {code}, which the hook contract does not define (0, 1 or 2)")
        }
        other => other.describe(),
    }
}
