//! Turns a core [`Decision`] into what the store writes: the next run, the blocked reason and the
//! events that tell the story. One place, so every path records transitions the same way.

use orch_core::pipeline::{Pipeline, StageKind};
use orch_core::transition::{Decision, Effect};
use orch_store::{NewEvent, NewRun, RunState};
use serde_json::json;

use crate::events;

/// What a decision writes besides the item's progress.
#[derive(Debug, Default)]
pub(crate) struct Planned {
    pub next_run: Option<NewRun>,
    pub blocked_reason: Option<String>,
    pub events: Vec<NewEvent>,
}

pub(crate) fn plan(pipeline: &Pipeline, decision: &Decision) -> Planned {
    let mut out = Planned::default();
    for effect in &decision.effects {
        match effect {
            Effect::StartRun {
                stage,
                attempt,
                feedback,
            } => {
                let approval = pipeline
                    .stage(stage)
                    .is_some_and(|s| s.kind == StageKind::Approval);
                out.next_run = Some(NewRun {
                    stage: stage.clone(),
                    attempt: *attempt,
                    state: if approval {
                        RunState::Waiting
                    } else {
                        RunState::Queued
                    },
                    feedback: feedback.clone(),
                });
                out.events.push(NewEvent::new(
                    events::STAGE_ENTERED,
                    json!({ "stage": stage.as_str(), "attempt": attempt, "feedback": feedback }),
                ));
                if approval {
                    out.events.push(NewEvent::new(
                        events::APPROVAL_REQUESTED,
                        json!({ "stage": stage.as_str() }),
                    ));
                }
            }
            Effect::Blocked { reason } => {
                out.blocked_reason = Some(reason.clone());
                out.events
                    .push(NewEvent::new(events::BLOCKED, json!({ "reason": reason })));
            }
            Effect::NeedsInfo => {
                out.events.push(NewEvent::new(
                    events::NEEDS_INFO,
                    json!({ "stage": decision.progress.stage.as_str() }),
                ));
            }
            // The merge runs after the write, from the item's `merging` status; STOP's events are
            // written by the command that stopped the item.
            Effect::Merge | Effect::Cancel => {}
        }
    }
    out
}
