//! Executing one claimed stage run: keep its lease alive, run the agent or the action, measure,
//! ask the core for the verdict and the transition, and record them in one fenced write.

use std::sync::Arc;
use std::time::Duration;

use orch_core::gate::{GateVerdict, VerdictClass};
use orch_core::pipeline::{GateKind, Stage, StageKind};
use orch_core::spend::Overrun;
use orch_core::transition::{self, Outcome};
use orch_store::{FinishRun, ItemRecord, NewEvent, RunRecord, RunState, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::project::Project;
use crate::{Engine, EngineError, events, record};

/// What a stage's execution measured, ready for the decision.
pub(crate) struct Measured {
    pub verdict: GateVerdict,
    /// Identifies a failure, so an identical repeat stops the item.
    pub fingerprint: String,
    pub usage: Option<Value>,
    /// Facts kept on the run's verdict record (such as the SHA a staging deploy validated).
    pub facts: Value,
    pub events: Vec<NewEvent>,
    /// A spend limit this run reached: the item is held instead of going on to another run.
    pub overrun: Option<Overrun>,
}

impl Measured {
    /// FAILED by an action stage with several reasons (each a failure of its own, as the
    /// developer's feedback lists them), identified for the identical-failure rule by
    /// `fingerprint`.
    pub(crate) fn action_failed(
        reasons: &[String],
        fingerprint: String,
        facts: Value,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            fingerprint,
            verdict: GateVerdict {
                class: VerdictClass::Fail,
                value: None,
                failures: reasons
                    .iter()
                    .map(|reason| orch_core::gate::GateFailure {
                        gate: GateKind::Action,
                        reason: reason.clone(),
                    })
                    .collect(),
            },
            usage: None,
            facts,
            events,
            overrun: None,
        }
    }

    /// A stage that refused to act (a guard did not hold) is FAILED with the guard's reason.
    pub(crate) fn refused(gate: GateKind, reason: String) -> Self {
        Self {
            fingerprint: format!("refused|{reason}"),
            verdict: GateVerdict::failed(gate, reason),
            usage: None,
            facts: Value::Null,
            events: Vec::new(),
            overrun: None,
        }
    }

    /// orch could not do its own part (such as handing the branch over through the forge): FAILED
    /// and the item blocks, spending no fail budget, until a person runs `orch retry`.
    pub(crate) fn blocked(reason: String) -> Self {
        Self {
            fingerprint: format!("blocked|{reason}"),
            verdict: crate::handoff::blocked(reason),
            usage: None,
            facts: Value::Null,
            events: Vec::new(),
            overrun: None,
        }
    }

    /// An internal error while deciding is FAILED, never SUCCESS (fail-closed).
    pub(crate) fn internal_error(gate: GateKind, error: &dyn std::fmt::Display) -> Self {
        let reason = format!("internal error: {error}");
        Self {
            fingerprint: format!("internal|{reason}"),
            verdict: GateVerdict::failed(gate, reason),
            usage: None,
            facts: Value::Null,
            events: Vec::new(),
            overrun: None,
        }
    }
}

impl Engine {
    pub(crate) async fn execute(
        self: Arc<Self>,
        run: RunRecord,
        cancel: CancellationToken,
    ) -> Result<(), EngineError> {
        if let Ok(mut running) = self.running.lock() {
            running.insert(run.id, cancel.clone());
        }
        let result = self.execute_inner(&run, &cancel).await;
        if let Ok(mut running) = self.running.lock() {
            running.remove(&run.id);
        }
        cancel.cancel();
        result
    }

    async fn execute_inner(
        self: &Arc<Self>,
        run: &RunRecord,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let project = Arc::clone(self.project(&run.project)?);
        let item = self
            .store
            .get_item(&run.item)
            .await?
            .ok_or_else(|| EngineError::UnknownItem(run.item.to_string()))?;
        // Aborted on every way out, also when this future is dropped: a renewal outliving its
        // execution would hold the run's lease forever.
        let renewal = AbortOnDropHandle::new(self.keep_lease(run, cancel.clone()));
        self.report(item.id.as_str(), run.stage.as_str(), run.attempt, "started");
        // Sent when this execution ends, however it ends (the guard's drop).
        let mut span = self.settings.telemetry.stage_run(&item, run);

        let mut measured = match project.pipeline.stage(&run.stage) {
            None => Ok(Measured::internal_error(
                GateKind::Verdict,
                &format!("stage `{}` is no longer in the pipeline", run.stage),
            )),
            Some(stage) => self.measure(&project, &item, run, stage, cancel).await,
        };
        // Under the lease still: the branch reaches the forge before the result is recorded.
        if let (Ok(m), false) = (&mut measured, cancel.is_cancelled()) {
            self.publish_branch(&project, &item, run, m).await;
        }
        renewal.abort();
        let measured = match measured {
            Ok(m) => m,
            Err(StageError::Abandoned) => {
                span.set("orch.run.outcome", "stopped");
                self.report(item.id.as_str(), run.stage.as_str(), run.attempt, "stopped");
                return Ok(());
            }
            Err(StageError::OverBudget(overrun)) if !cancel.is_cancelled() => {
                span.set("orch.run.outcome", "over-budget");
                return self.record_over_budget(&project, &item, run, overrun).await;
            }
            Err(StageError::OverBudget(_)) => return Ok(()),
            Err(StageError::Engine(EngineError::Store(e))) if e.is_connection_lost() => {
                span.set("orch.run.outcome", "handed-back");
                self.hand_back(&item, run, &e).await;
                return Ok(());
            }
            Err(StageError::NotYourTurn(reason)) => {
                span.set("orch.run.outcome", "gave-way");
                self.give_way(&item, run, &reason, GIVE_WAY_PAUSE).await;
                return Ok(());
            }
            Err(StageError::Waiting { reason, pause }) => {
                span.set("orch.run.outcome", "waiting");
                self.give_way(&item, run, &reason, pause).await;
                return Ok(());
            }
            Err(StageError::Engine(e)) => Measured::internal_error(GateKind::Verdict, &e),
        };
        if cancel.is_cancelled() {
            // STOP or a lost lease: the fenced write below would be refused anyway.
            span.set("orch.run.outcome", "stopped");
            return Ok(());
        }
        let class = class_name(&measured.verdict.class);
        span.set("orch.run.outcome", "recorded");
        span.set("orch.verdict", class);
        if !measured.verdict.is_pass() {
            span.fail(class);
        }
        self.crashpoint("before-transition");
        self.record_verdict(&project, &item, run, measured).await
    }

    async fn measure(
        self: &Arc<Self>,
        project: &Arc<Project>,
        item: &ItemRecord,
        run: &RunRecord,
        stage: &Stage,
        cancel: &CancellationToken,
    ) -> Result<Measured, StageError> {
        match &stage.kind {
            StageKind::Agent { role } => {
                self.run_agent_stage(project, item, run, stage, role, cancel)
                    .await
            }
            StageKind::Action { action } => {
                self.run_action_stage(project, item, run, stage, *action, cancel)
                    .await
            }
            StageKind::Approval => Ok(Measured::internal_error(
                GateKind::Verdict,
                &"an approval stage was claimed as a run",
            )),
        }
    }

    /// The store, not the stage, failed while the stage ran: its connection was lost for longer
    /// than its own retries ride out (PostgreSQL restarting). That says nothing about the work,
    /// so nothing is recorded, neither a pass nor a FAILED that would send the item back; the
    /// run is handed back and executed again from its checkpoint, at once if the store takes the
    /// expiry, else when the lease runs out.
    async fn hand_back(&self, item: &ItemRecord, run: &RunRecord, error: &StoreError) {
        tracing::warn!(
            "{}: {} attempt {} interrupted by the store ({error}); the run will be claimed again",
            item.id,
            run.stage,
            run.attempt
        );
        match self.store.expire_lease(run.fence()).await {
            Ok(()) | Err(StoreError::LeaseLost { .. }) => {}
            Err(e) => tracing::warn!(
                "handing back run {} failed ({e}); it is claimed again when its lease runs out",
                run.id
            ),
        }
        self.report(
            item.id.as_str(),
            run.stage.as_str(),
            run.attempt,
            "interrupted: the store was unreachable; the run will be claimed again",
        );
    }

    /// The run may not go ahead yet (an item approved earlier is to be promoted first): it is
    /// handed back unrecorded, unclaimable for a short while and then behind every run queued
    /// before (the earlier item's among them), so waiting costs one claim per pause.
    async fn give_way(&self, item: &ItemRecord, run: &RunRecord, reason: &str, pause: Duration) {
        let delay_ms = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
        // A little past the delay, so that the run is claimable when the engine looks.
        self.defer_until(tokio::time::Instant::now() + pause + Duration::from_millis(50));
        match self.store.give_way(run.fence(), delay_ms).await {
            Ok(()) | Err(StoreError::LeaseLost { .. }) => {}
            Err(e) => tracing::warn!(
                "handing back run {} failed ({e}); it is claimed again when its lease runs out",
                run.id
            ),
        }
        self.report(
            item.id.as_str(),
            run.stage.as_str(),
            run.attempt,
            format!("waiting: {reason}"),
        );
    }

    /// Renews the run's lease every third of its length; on loss, cancels the run.
    fn keep_lease(
        &self,
        run: &RunRecord,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(&self.store);
        let fence = run.fence();
        let lease = self.settings.lease;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let period = (lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                match store.renew_lease(fence, lease_ms).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost { .. }) => {
                        cancel.cancel();
                        return;
                    }
                    // A transient store error (PostgreSQL restarting, say): the run goes on and
                    // the renewal is tried again next period, since a lease lasts three periods.
                    // Should the lease run out meanwhile, another worker claims the run and the
                    // next renewal finds the lease lost and stops this execution.
                    Err(e) => tracing::warn!(
                        "lease renewal of run {} failed: {e}; the run goes on, renewing again in {} ms",
                        fence.run_id,
                        period.as_millis()
                    ),
                }
            }
        })
    }

    async fn record_verdict(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        m: Measured,
    ) -> Result<(), EngineError> {
        let verdict_json = verdict_json(&m.verdict, &m.facts);
        let passed = m.verdict.is_pass();
        let class = class_name(&m.verdict.class);
        let reasons = m.verdict.reasons();
        let outcome = Outcome::Verdict {
            verdict: m.verdict,
            fingerprint: m.fingerprint,
            overrun: m.overrun,
        };
        let decision = match transition::decide(&project.pipeline, &item.progress, outcome) {
            Ok(d) => d,
            // The item moved on without us (stopped, say): nothing to record.
            Err(e) => {
                tracing::info!("{}: verdict of {} not recorded: {e}", item.id, run.stage);
                return Ok(());
            }
        };
        let planned = record::plan(&project.pipeline, &decision);
        let mut evs = m.events;
        evs.push(NewEvent::for_run(
            events::GATE_VERDICT,
            run.id,
            verdict_json.clone(),
        ));
        evs.push(NewEvent::for_run(
            if passed {
                events::STAGE_PASSED
            } else {
                events::STAGE_FAILED
            },
            run.id,
            json!({ "stage": run.stage.as_str(), "attempt": run.attempt, "class": class }),
        ));
        evs.extend(planned.events);
        let finish = FinishRun {
            state: if passed {
                RunState::Passed
            } else {
                RunState::Failed
            },
            verdict: verdict_json,
            usage: m.usage,
            progress: decision.progress.clone(),
            blocked_reason: planned.blocked_reason.clone(),
            next_run: planned.next_run,
            events: evs,
        };
        if !self.finish(run, finish).await? {
            return Ok(());
        }
        if decision.progress.status.is_terminal() {
            self.settings
                .telemetry
                .item_ended(item, decision.progress.status.as_str());
        }
        let mut what = if passed {
            "PASS".to_owned()
        } else {
            format!("{}: {}", class.to_uppercase(), reasons.join("; "))
        };
        if let Some(reason) = planned.blocked_reason {
            what = format!("{what} -> BLOCKED: {reason}");
        }
        self.report(item.id.as_str(), run.stage.as_str(), run.attempt, what);
        Ok(())
    }

    /// Records a run refused before it started because a spend limit was already reached: the
    /// run ends cancelled (it spent nothing) and the item is blocked with the limit as reason.
    async fn record_over_budget(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        overrun: Overrun,
    ) -> Result<(), EngineError> {
        let reason = overrun.to_string();
        let outcome = Outcome::OverBudget(overrun);
        let decision = match transition::decide(&project.pipeline, &item.progress, outcome) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!("{}: refusal of {} not recorded: {e}", item.id, run.stage);
                return Ok(());
            }
        };
        let planned = record::plan(&project.pipeline, &decision);
        let mut evs = vec![events::spend_limit_reached(run, &reason, "before-run")];
        evs.extend(planned.events);
        let finish = FinishRun {
            state: RunState::Cancelled,
            verdict: json!({ "class": "refused", "value": null, "reasons": [reason], "gates": [] }),
            usage: None,
            progress: decision.progress,
            blocked_reason: planned.blocked_reason,
            next_run: planned.next_run,
            events: evs,
        };
        if self.finish(run, finish).await? {
            let what = format!("NOT STARTED -> BLOCKED: {reason}");
            self.report(item.id.as_str(), run.stage.as_str(), run.attempt, what);
        }
        Ok(())
    }

    /// Ends the run with its fenced write; `false` when the lease was lost (nothing written).
    async fn finish(&self, run: &RunRecord, finish: FinishRun) -> Result<bool, EngineError> {
        match self.store.finish_run(run.fence(), finish).await {
            Ok(()) => Ok(true),
            Err(StoreError::LeaseLost { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// How long a run that gave way stays unclaimable: how often a waiting item looks again.
const GIVE_WAY_PAUSE: Duration = Duration::from_millis(500);

/// Why a stage could not be measured.
pub(crate) enum StageError {
    /// Another item goes first (the promotion queue's order): record nothing, run it later.
    NotYourTurn(String),
    /// Something outside orch has no verdict yet (a required CI check): record nothing, look
    /// again after `pause`.
    Waiting { reason: String, pause: Duration },
    /// Stopped or lease lost: record nothing.
    Abandoned,
    /// A spend limit was reached before the run started: it does not start, the item blocks.
    OverBudget(Overrun),
    /// An error of orch or its adapters: FAILED with the reason.
    Engine(EngineError),
}

impl From<EngineError> for StageError {
    fn from(e: EngineError) -> Self {
        StageError::Engine(e)
    }
}

impl From<orch_git::GitError> for StageError {
    fn from(e: orch_git::GitError) -> Self {
        StageError::Engine(e.into())
    }
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost { .. } => StageError::Abandoned,
            other => StageError::Engine(other.into()),
        }
    }
}

/// The stored name of [`VerdictClass::Reapprove`], which approval rules read back.
pub(crate) const REAPPROVE_CLASS: &str = "reapprove";
/// The stored name of [`VerdictClass::Revalidate`].
pub(crate) const REVALIDATE_CLASS: &str = "revalidate";

pub(crate) fn class_name(class: &VerdictClass) -> &'static str {
    match class {
        VerdictClass::Pass => "pass",
        VerdictClass::Fail => "fail",
        VerdictClass::NeedsInfo => "needs-info",
        VerdictClass::Block(_) => "block",
        VerdictClass::Reapprove(_) => REAPPROVE_CLASS,
        VerdictClass::Revalidate(_) => REVALIDATE_CLASS,
    }
}

fn verdict_json(v: &GateVerdict, facts: &Value) -> Value {
    let mut out = json!({
        "class": class_name(&v.class),
        "value": v.value,
        "reasons": v.reasons(),
        "gates": v.failures.iter().map(|f| f.gate.name()).collect::<Vec<_>>(),
    });
    match &v.class {
        VerdictClass::Block(reason) => out["block_reason"] = json!(reason),
        VerdictClass::Reapprove(reason) => out["reapprove_reason"] = json!(reason),
        VerdictClass::Revalidate(reason) => out["revalidate_reason"] = json!(reason),
        _ => {}
    }
    if let (Some(o), Value::Object(f)) = (out.as_object_mut(), facts) {
        for (k, val) in f {
            o.insert(k.clone(), val.clone());
        }
    }
    out
}

/// A stable fingerprint of a failure: FNV-1a over the stage, the reasons and the tree digest.
pub(crate) fn fingerprint(stage: &str, reasons: &[String], digest: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in std::iter::once(stage)
        .chain(reasons.iter().map(String::as_str))
        .chain(std::iter::once(digest))
    {
        for b in part.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
