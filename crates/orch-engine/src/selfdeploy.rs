//! The self-deploy finalizer (contract 8, phases B and C). The deploy stage of a project that is
//! orch itself starts prod's hook detached, records it in the run's checkpoint under the run's
//! lease, and waits for the hook's exit file. The wait holds nothing a restart would lose: if this
//! orch dies (the hook restarting it, a crash), the run's lease is freed (at once by an orch on
//! this machine, else when it expires) and the run is claimed and executed again, by whichever
//! orch is up, through the same pass every `orch run`, `orch worker` and `orch serve` makes. That
//! execution finds the recorded deploy, never starts a second one, and judges the one that ran.
//! The verdict is then recorded by the usual fenced `finish_run`: once, however many orch
//! processes finalize.

use std::time::Duration;

use orch_core::pipeline::{Pipeline, StageKind};
use orch_deploy::{DeployReport, DetachedDeploy, DetachedState, SelfDeploy};
use orch_store::{NewEvent, RunRecord, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::execute::StageError;
use crate::{Engine, events};

/// The key of the run's checkpoint that holds its detached deploy.
pub(crate) const CHECKPOINT_KEY: &str = "detached_deploy";

/// How often the finalizer looks for the hook's exit file.
const POLL: Duration = Duration::from_millis(250);

/// The deploy id of a run: one detached deploy per stage run, whatever its epoch.
fn deploy_id(run: &RunRecord) -> String {
    format!("run-{}", run.id)
}

/// Phase A: orch restarts itself only after a person approved the very build, so a
/// self-deploying project's pipeline must have an approval stage (whose approval the deploy
/// stage then checks like any other).
fn approval_gates_the_deploy(pipeline: &Pipeline) -> Result<(), String> {
    if pipeline
        .stages()
        .iter()
        .any(|stage| stage.kind == StageKind::Approval)
    {
        Ok(())
    } else {
        Err(
            "a self-deploy (hook.self_deploy = true) needs an approval stage before deploy in \
             .orch/pipeline.toml (contract 8, phase A); add one, then `orch retry`"
                .to_owned(),
        )
    }
}

/// The detached deploy an earlier execution of this run started, if any.
fn recorded(checkpoint: &Value) -> Option<Result<DetachedDeploy, serde_json::Error>> {
    checkpoint
        .get(CHECKPOINT_KEY)
        .map(|value| serde_json::from_value(value.clone()))
}

impl Engine {
    /// Promotes `sha` through a detached deploy and returns the verdict's report. Resumes the
    /// deploy an earlier execution of this run recorded instead of starting another.
    pub(crate) async fn promote_detached(
        &self,
        own: &dyn SelfDeploy,
        pipeline: &Pipeline,
        run: &RunRecord,
        sha: &str,
        cancel: &CancellationToken,
    ) -> Result<DeployReport, StageError> {
        if let Err(reason) = approval_gates_the_deploy(pipeline) {
            return Ok(DeployReport::failed(sha, &reason, false));
        }
        let deploy = match recorded(&run.checkpoint) {
            Some(Ok(deploy)) if deploy.sha == sha => deploy,
            Some(Ok(deploy)) => {
                return Ok(DeployReport::failed(
                    sha,
                    &format!(
                        "this run's detached deploy {} promoted {}, not the validated {sha}",
                        deploy.id, deploy.sha
                    ),
                    false,
                ));
            }
            // Whatever ran cannot be known: never start another one on top of it.
            Some(Err(e)) => {
                return Ok(DeployReport::failed(
                    sha,
                    &format!("the run's record of its detached deploy is unreadable: {e}"),
                    false,
                ));
            }
            None => {
                let deploy = match own.start_detached(&deploy_id(run), sha) {
                    Ok(deploy) => deploy,
                    Err(e) => return Ok(DeployReport::failed(sha, &e, e.caused_by_change())),
                };
                let started = NewEvent::for_run(
                    events::DEPLOY_DETACHED,
                    run.id,
                    json!({
                        "id": deploy.id, "sha": deploy.sha, "pid": deploy.pid,
                        "exit_file": deploy.exit_file, "log": deploy.log,
                    }),
                );
                // Under the lease: a run taken over meanwhile is abandoned, and its new holder
                // finds the deploy by its id (starting is idempotent) rather than in this record.
                let saved = self
                    .store
                    .save_checkpoint(
                        run.fence(),
                        json!({ CHECKPOINT_KEY: deploy }),
                        vec![started],
                    )
                    .await;
                match saved {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost { .. }) => return Err(StageError::Abandoned),
                    // The hook runs all the same: judge it rather than fail a deploy in flight.
                    Err(e) => tracing::warn!(
                        "run {}: cannot record its detached deploy {}: {e}",
                        run.id,
                        deploy.id
                    ),
                }
                self.crashpoint("after-detached-start");
                deploy
            }
        };
        let ended = loop {
            match own.poll(&deploy).await {
                DetachedState::Ended(ended) => break ended,
                DetachedState::Running => {
                    tokio::select! {
                        // Stopped or the lease lost: the hook runs on, and whoever holds the run
                        // next finalizes it.
                        () = cancel.cancelled() => return Err(StageError::Abandoned),
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
            }
        };
        Ok(own.conclude(&deploy, ended, cancel).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_deploy_needs_an_approval_stage() {
        let default =
            Pipeline::from_toml(include_str!("../../orch-core/src/default_pipeline.toml"))
                .expect("the default pipeline");
        assert_eq!(approval_gates_the_deploy(&default), Ok(()));
        let unapproved = Pipeline::from_toml(
            "[[stages]]\nname = \"deploy\"\nkind = \"action\"\naction = \"deploy\"\n\
             artifact = \"14-deploy-log.md\"\n\
             verdict = { field = \"deploy_status\", pass = [\"SUCCESS\"], fail = [\"FAILED\"] }\n\
             on_pass = \"done\"\n",
        )
        .expect("a pipeline without approval");
        let refused = approval_gates_the_deploy(&unapproved).expect_err("refused");
        assert!(refused.contains("needs an approval stage"), "{refused}");
    }

    #[test]
    fn a_checkpoint_without_a_deploy_starts_one_and_a_broken_one_is_an_error() {
        assert!(recorded(&json!({ "base": "abc" })).is_none());
        assert!(recorded(&Value::Null).is_none());
        assert!(matches!(
            recorded(&json!({ CHECKPOINT_KEY: { "id": 3 } })),
            Some(Err(_))
        ));
    }
}
