//! Which CLI session an agent run continues: the session of its stage's latest earlier attempt
//! that recorded one (`session_id` in its usage record). A first attempt, or one whose earlier
//! attempts recorded no session (an agent without sessions, a run refused before it started, an
//! unreadable record), starts a new session. Adapters that cannot resume say so in the run log.

use orch_agent::Usage;
use orch_store::RunRecord;

/// The session `run` should resume, from the item's `runs`.
pub(crate) fn to_resume(runs: &[RunRecord], run: &RunRecord) -> Option<String> {
    runs.iter()
        .filter(|r| r.stage == run.stage && r.attempt < run.attempt)
        .filter_map(|r| Some((r.attempt, session_of(r)?)))
        .max_by_key(|(attempt, _)| *attempt)
        .map(|(_, session)| session)
}

fn session_of(run: &RunRecord) -> Option<String> {
    let usage = serde_json::from_value::<Usage>(run.usage.clone()?).ok()?;
    usage.session_id.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_core::{ItemId, ProjectId, StageName};
    use orch_store::RunState;
    use serde_json::json;

    fn run(stage: &str, attempt: u32, usage: Option<serde_json::Value>) -> RunRecord {
        RunRecord {
            id: i64::from(attempt) * 10,
            item: ItemId::parse("A-1").expect("id"),
            project: ProjectId::parse("p").expect("id"),
            stage: StageName::parse(stage).expect("stage"),
            attempt,
            state: RunState::Failed,
            epoch: 1,
            lease: None,
            feedback: vec![],
            checkpoint: json!({}),
            verdict: None,
            usage,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    fn session(id: &str) -> Option<serde_json::Value> {
        Some(json!({ "duration_ms": 1, "session_id": id }))
    }

    #[test]
    fn resumes_the_latest_earlier_session_of_the_same_stage() {
        let runs = [
            run("development", 1, session("s-1")),
            run("review", 1, session("r-1")),
            run("development", 2, session("s-2")),
            // Refused before it started: no usage record.
            run("development", 3, None),
            run("development", 4, None),
        ];
        assert_eq!(to_resume(&runs, &runs[4]).as_deref(), Some("s-2"));
        assert_eq!(to_resume(&runs, &runs[2]).as_deref(), Some("s-1"));
        assert_eq!(to_resume(&runs, &runs[0]), None, "a first attempt");
        let review = run("review", 2, None);
        assert_eq!(to_resume(&runs, &review).as_deref(), Some("r-1"));
    }

    #[test]
    fn records_without_a_readable_session_start_a_new_one() {
        let runs = [
            run("qa", 1, Some(json!("garbage"))),
            run("qa", 2, session(" ")),
            run("qa", 3, Some(json!({ "duration_ms": 1 }))),
            run("qa", 4, None),
        ];
        assert_eq!(to_resume(&runs, &runs[3]), None);
    }
}
