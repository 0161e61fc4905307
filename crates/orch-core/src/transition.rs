//! The transition function: given an item's progress and what just happened, the next progress
//! and the effects the engine must carry out, returned as data.
//!
//! Budgets (fail edges and spend) and the repeated-identical-failure stop live here, so every
//! rule of the pipeline is a plain function call in a test.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::gate::{GateVerdict, VerdictClass};
use crate::id::StageName;
use crate::pipeline::{Pipeline, StageKind, Target};
use crate::spend::Overrun;

/// Where an item stands. `Done`, `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    /// A run of the current stage waits for a worker.
    Queued,
    /// A worker holds the current stage's run.
    Running,
    /// The current stage is an approval and no one has approved yet.
    AwaitingApproval,
    /// The agent asked a question; `orch retry ID --answer ...` resumes.
    NeedsInfo,
    /// Stopped by a budget, a repeated failure or an operator-side fault; `orch retry` resumes.
    Blocked,
    /// The last stage passed; the branch is being merged.
    Merging,
    Done,
    Cancelled,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 8] = [
        ItemStatus::Queued,
        ItemStatus::Running,
        ItemStatus::AwaitingApproval,
        ItemStatus::NeedsInfo,
        ItemStatus::Blocked,
        ItemStatus::Merging,
        ItemStatus::Done,
        ItemStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Queued => "queued",
            ItemStatus::Running => "running",
            ItemStatus::AwaitingApproval => "awaiting-approval",
            ItemStatus::NeedsInfo => "needs-info",
            ItemStatus::Blocked => "blocked",
            ItemStatus::Merging => "merging",
            ItemStatus::Done => "done",
            ItemStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, ItemStatus::Done | ItemStatus::Cancelled)
    }
}

/// What the pipeline knows about one item: its stage, its status, and its spent budgets.
/// Stored as JSON beside the item; the field names are a storage format.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemProgress {
    pub stage: StageName,
    pub status: ItemStatus,
    /// How many runs each stage has had; the next run's attempt number is this plus one.
    pub attempts: BTreeMap<StageName, u32>,
    /// How often each fail edge (`from->to`) was taken.
    pub edges_taken: BTreeMap<String, u32>,
    /// The fingerprint of each stage's last failure, to stop a repeated identical one.
    pub last_failure: BTreeMap<StageName, String>,
}

/// An effect the engine must carry out, in order, after recording the new progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create the next run of `stage`. On an approval stage it waits for an approval.
    StartRun {
        stage: StageName,
        attempt: u32,
        feedback: Vec<String>,
    },
    /// Tell people the item stopped and why (tracker comment, event).
    Blocked { reason: String },
    /// The agent needs an answer from a person.
    NeedsInfo,
    /// Merge the item's branch into the default branch, then mark the item done.
    Merge,
    /// The item was stopped: kill its agent, remove its worktree.
    Cancel,
}

/// What happened to an item, as input to [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The current stage's gates decided. `fingerprint` identifies the failure (gate, reasons and
    /// the attempt's resulting tree) so an identical repeat is caught.
    ///
    /// `overrun` is a spend limit the item's spend reached with this run (see
    /// [`crate::spend::first_overrun`]). The verdict is decided as usual, but an item that would
    /// go on to another run is held there instead: blocked, with the overrun as its reason, so
    /// that nothing more is spent until a person raises the budget and retries.
    Verdict {
        verdict: GateVerdict,
        fingerprint: String,
        overrun: Option<Overrun>,
    },
    /// The current stage's run was refused before it started: the item's or the stage's spend
    /// had already reached its limit. The item is blocked at this stage; a retry runs it again.
    OverBudget(Overrun),
    /// A person approved the current approval stage.
    Approved,
    /// A person stopped the item (STOP).
    Stopped,
    /// A person resumed a blocked or needs-info item, with an optional answer.
    Retried { answer: Option<String> },
    /// The merge at the end finished.
    Merged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub progress: ItemProgress,
    pub effects: Vec<Effect>,
}

/// A command that does not fit the item's state: a person's error, never a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecideError {
    #[error("item is {status}, not awaiting approval at an approval stage")]
    NotAwaitingApproval { status: &'static str },
    #[error("item is {status}; only blocked or needs-info items can be retried")]
    NotRetryable { status: &'static str },
    #[error("item is already {status}")]
    Terminal { status: &'static str },
    #[error("item is {status}; a verdict arrives only while its stage runs")]
    NotRunning { status: &'static str },
    #[error("item is {status}; only a merging item can be merged")]
    NotMerging { status: &'static str },
    #[error(
        "stage `{0}` is not in the pipeline (was the pipeline file changed under a running item?)"
    )]
    UnknownStage(StageName),
}

/// The progress of a new item: its first stage, attempt 1.
pub fn start(pipeline: &Pipeline) -> Decision {
    let first = pipeline.first().name.clone();
    let progress = ItemProgress {
        stage: first.clone(),
        status: ItemStatus::Queued,
        attempts: BTreeMap::new(),
        edges_taken: BTreeMap::new(),
        last_failure: BTreeMap::new(),
    };
    let mut effects = Vec::new();
    let progress = enter(pipeline, progress, first, Vec::new(), &mut effects);
    Decision { progress, effects }
}

/// The one transition function of orch.
pub fn decide(
    pipeline: &Pipeline,
    current: &ItemProgress,
    outcome: Outcome,
) -> Result<Decision, DecideError> {
    let status = current.status;
    if status.is_terminal() {
        return Err(DecideError::Terminal {
            status: status.as_str(),
        });
    }
    let stage = pipeline
        .stage(&current.stage)
        .ok_or_else(|| DecideError::UnknownStage(current.stage.clone()))?;
    let mut p = current.clone();
    let mut effects = Vec::new();
    match outcome {
        Outcome::Stopped => {
            p.status = ItemStatus::Cancelled;
            effects.push(Effect::Cancel);
        }
        Outcome::Approved => {
            if status != ItemStatus::AwaitingApproval || stage.kind != StageKind::Approval {
                return Err(DecideError::NotAwaitingApproval {
                    status: status.as_str(),
                });
            }
            p = pass(pipeline, p, &stage.on_pass, &mut effects);
        }
        Outcome::Retried { answer } => {
            if !matches!(status, ItemStatus::Blocked | ItemStatus::NeedsInfo) {
                return Err(DecideError::NotRetryable {
                    status: status.as_str(),
                });
            }
            p.edges_taken.clear();
            p.last_failure.clear();
            let feedback = answer
                .map(|a| vec![format!("answer from a person: {a}")])
                .unwrap_or_default();
            let again = p.stage.clone();
            p = enter(pipeline, p, again, feedback, &mut effects);
        }
        Outcome::Merged => {
            if status != ItemStatus::Merging {
                return Err(DecideError::NotMerging {
                    status: status.as_str(),
                });
            }
            p.status = ItemStatus::Done;
        }
        Outcome::OverBudget(overrun) => {
            if !matches!(status, ItemStatus::Running | ItemStatus::Queued) {
                return Err(DecideError::NotRunning {
                    status: status.as_str(),
                });
            }
            block(&mut p, &mut effects, overrun.to_string());
        }
        Outcome::Verdict {
            verdict,
            fingerprint,
            overrun,
        } => {
            if !matches!(status, ItemStatus::Running | ItemStatus::Queued) {
                return Err(DecideError::NotRunning {
                    status: status.as_str(),
                });
            }
            match verdict.class {
                VerdictClass::Pass => {
                    p.last_failure.remove(&p.stage);
                    p = pass(pipeline, p, &stage.on_pass, &mut effects);
                }
                VerdictClass::NeedsInfo => {
                    p.status = ItemStatus::NeedsInfo;
                    effects.push(Effect::NeedsInfo);
                }
                VerdictClass::Block(reason) => block(&mut p, &mut effects, reason),
                VerdictClass::Reapprove(reason) => match approval_before(pipeline, &p.stage) {
                    Some(approval) => {
                        p = enter(pipeline, p, approval, vec![reason], &mut effects);
                    }
                    // Nothing to go back to: a person must look.
                    None => block(&mut p, &mut effects, reason),
                },
                VerdictClass::Revalidate(reason) => match validation_before(pipeline, &p.stage) {
                    Some(staging) => {
                        p.last_failure.remove(&staging);
                        p = enter(pipeline, p, staging, vec![reason], &mut effects);
                    }
                    None => block(&mut p, &mut effects, reason),
                },
                VerdictClass::Fail => {
                    let reasons = verdict.reasons();
                    let summary = reasons
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "failed".to_owned());
                    let name = stage.name.clone();
                    if p.last_failure.get(&name) == Some(&fingerprint) {
                        block(
                            &mut p,
                            &mut effects,
                            format!(
                                "stage {name} failed again identically ({summary}); retrying would only burn tokens"
                            ),
                        );
                    } else {
                        p.last_failure.insert(name.clone(), fingerprint);
                        match &stage.on_fail {
                            None => block(
                                &mut p,
                                &mut effects,
                                format!("stage {name} failed and has no fail edge ({summary})"),
                            ),
                            Some(edge) => {
                                let key = format!("{}->{}", name, edge.to);
                                let taken = p.edges_taken.get(&key).copied().unwrap_or(0);
                                if taken >= edge.budget {
                                    block(
                                        &mut p,
                                        &mut effects,
                                        format!(
                                            "budget of {} for {key} is spent ({summary})",
                                            edge.budget
                                        ),
                                    );
                                } else {
                                    p.edges_taken.insert(key, taken + 1);
                                    let attempt = p.attempts.get(&name).copied().unwrap_or(0);
                                    let mut feedback =
                                        vec![format!("stage {name} (attempt {attempt}) failed:")];
                                    feedback.extend(reasons);
                                    p = enter(pipeline, p, edge.to.clone(), feedback, &mut effects);
                                }
                            }
                        }
                    }
                }
            }
            if let Some(overrun) = overrun {
                p = hold_for_spend(current, p, &mut effects, &overrun);
            }
        }
    }
    Ok(Decision {
        progress: p,
        effects,
    })
}

/// Holds an item that reached a spend limit where its decision would start another run: the
/// run is not created, the item is blocked at that stage (whose attempt count is left as it
/// was, so a retry's run is its next attempt) with the overrun as the reason. Decisions that
/// start no run (a merge, a block, needs-info) stand: they spend nothing more.
///
/// The feedback the held run would have had is dropped; the earlier attempts' artifacts still
/// reach the next prompt.
fn hold_for_spend(
    before: &ItemProgress,
    mut p: ItemProgress,
    effects: &mut Vec<Effect>,
    overrun: &Overrun,
) -> ItemProgress {
    let Some(index) = effects
        .iter()
        .position(|e| matches!(e, Effect::StartRun { .. }))
    else {
        return p;
    };
    if let Effect::StartRun { stage, .. } = effects.remove(index) {
        match before.attempts.get(&stage) {
            Some(n) => p.attempts.insert(stage, *n),
            None => p.attempts.remove(&stage),
        };
    }
    block(&mut p, effects, overrun.to_string());
    p
}

/// The approval stage whose pass leads to `stage`, if there is one.
fn approval_before(pipeline: &Pipeline, stage: &StageName) -> Option<StageName> {
    pipeline
        .stages()
        .iter()
        .find(|s| s.kind == StageKind::Approval && s.on_pass == Target::Stage(stage.clone()))
        .map(|s| s.name.clone())
}

/// The deploy-staging stage that leads to `stage`, directly or through the approval stage
/// before it: where a candidate is integrated and validated again.
fn validation_before(pipeline: &Pipeline, stage: &StageName) -> Option<StageName> {
    let leads_here = |target: &StageName| {
        pipeline.stages().iter().find(|s| {
            s.kind
                == (StageKind::Action {
                    action: crate::pipeline::Action::DeployStaging,
                })
                && s.on_pass == Target::Stage(target.clone())
        })
    };
    leads_here(stage)
        .or_else(|| approval_before(pipeline, stage).and_then(|a| leads_here(&a)))
        .map(|s| s.name.clone())
}

fn block(p: &mut ItemProgress, effects: &mut Vec<Effect>, reason: String) {
    p.status = ItemStatus::Blocked;
    effects.push(Effect::Blocked { reason });
}

fn pass(
    pipeline: &Pipeline,
    p: ItemProgress,
    target: &Target,
    effects: &mut Vec<Effect>,
) -> ItemProgress {
    match target {
        Target::Stage(next) => enter(pipeline, p, next.clone(), Vec::new(), effects),
        Target::Done => {
            effects.push(Effect::Merge);
            ItemProgress {
                status: ItemStatus::Merging,
                ..p
            }
        }
    }
}

fn enter(
    pipeline: &Pipeline,
    mut p: ItemProgress,
    stage: StageName,
    feedback: Vec<String>,
    effects: &mut Vec<Effect>,
) -> ItemProgress {
    let attempt = p.attempts.get(&stage).copied().unwrap_or(0) + 1;
    p.attempts.insert(stage.clone(), attempt);
    let approval = pipeline
        .stage(&stage)
        .is_some_and(|s| s.kind == StageKind::Approval);
    p.status = if approval {
        ItemStatus::AwaitingApproval
    } else {
        ItemStatus::Queued
    };
    p.stage = stage.clone();
    effects.push(Effect::StartRun {
        stage,
        attempt,
        feedback,
    });
    p
}

#[cfg(test)]
mod tests;
