//! Rows to records, for every backend. Every value is checked on the way out: a row that does
//! not decode is [`StoreError::Corrupt`] naming the table, the row and the column, never a
//! silent default.
//!
//! The decoders are written once, in [`decoders!`], and instantiated per backend with its row
//! and database types (sqlx's decode bounds are per database, so one macro is simpler than a
//! generic function carrying every `Decode` bound).

pub(crate) const PROJECT_COLUMNS: &str = "id, repo_path, created_at";

pub(crate) const ITEM_COLUMNS: &str = "id, project_id, title, body, stage, status, progress_json, \
     blocked_reason, created_at, updated_at";

pub(crate) const RUN_COLUMNS: &str = "id, item_id, project_id, stage, attempt, state, epoch, \
     lease_owner, lease_expires_at, feedback_json, checkpoint_json, verdict_json, usage_json, \
     created_at, started_at, finished_at";

pub(crate) const EVENT_COLUMNS: &str = "item_id, seq, at, kind, run_id, data_json";

pub(crate) const NOTIFICATION_COLUMNS: &str = "id, receiver, item_id, event_seq, kind, body, \
     state, attempts, next_attempt_at, last_error, created_at, finished_at";

/// [`crate::Store::housekeeping_due`]'s one read, for both backends (`$1` is a parameter in
/// SQLite's syntax too; the status and state names are the stored ones).
pub(crate) const HOUSEKEEPING_DUE: &str = "SELECT \
     EXISTS (SELECT 1 FROM stage_runs WHERE state = 'running' AND lease_owner <> $1), \
     EXISTS (SELECT 1 FROM work_items WHERE status = 'merging'), \
     EXISTS (SELECT 1 FROM work_items WHERE status = 'awaiting-approval')";

/// The row [`HOUSEKEEPING_DUE`] returns, named.
pub(crate) fn housekeeping_due(
    (others_running, merging, awaiting_approval): (bool, bool, bool),
) -> crate::HousekeepingDue {
    crate::HousekeepingDue {
        others_running,
        merging,
        awaiting_approval,
    }
}

/// The project id run `run_id`'s row holds, checked.
pub(crate) fn run_project(run_id: i64, stored: &str) -> crate::Result<orch_core::ProjectId> {
    orch_core::ProjectId::parse(stored).map_err(|e| {
        crate::StoreError::Corrupt(format!("stage_runs.project_id of `{run_id}`: {e}"))
    })
}

/// Defines `project`, `item`, `run`, `event`, `notification` and `all` for one backend's row type.
macro_rules! decoders {
    ($row:ty, $db:ty) => {
        use orch_core::transition::{ItemProgress, ItemStatus};
        use orch_core::{ItemId, ProjectId, StageName};
        use serde::de::DeserializeOwned;
        use serde_json::Value;
        use sqlx::Row;

        use crate::{
            EventRecord, ItemRecord, Lease, NotificationRecord, NotificationState, ProjectRecord,
            Result, RunRecord, RunState, StoreError,
        };

        /// One row being decoded, with enough context to say which value is bad.
        struct Cells<'r> {
            row: &'r $row,
            table: &'static str,
            key: String,
        }

        impl<'r> Cells<'r> {
            fn new(row: &'r $row, table: &'static str, key_column: &str) -> Self {
                let key = row
                    .try_get::<String, _>(key_column)
                    .or_else(|_| row.try_get::<i64, _>(key_column).map(|n| n.to_string()))
                    .unwrap_or_else(|_| "?".to_owned());
                Self { row, table, key }
            }

            fn corrupt(&self, column: &str, why: impl std::fmt::Display) -> StoreError {
                StoreError::Corrupt(format!("{}.{column} of `{}`: {why}", self.table, self.key))
            }

            fn get<T>(&self, column: &str) -> Result<T>
            where
                T: sqlx::Decode<'r, $db> + sqlx::Type<$db>,
            {
                self.row
                    .try_get(column)
                    .map_err(|e| self.corrupt(column, e))
            }

            fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T> {
                let text: String = self.get(column)?;
                serde_json::from_str(&text).map_err(|e| self.corrupt(column, e))
            }

            fn optional_json(&self, column: &str) -> Result<Option<Value>> {
                let text: Option<String> = self.get(column)?;
                text.map(|t| serde_json::from_str(&t).map_err(|e| self.corrupt(column, e)))
                    .transpose()
            }

            fn item_id(&self, column: &str) -> Result<ItemId> {
                ItemId::parse(&self.get::<String>(column)?).map_err(|e| self.corrupt(column, e))
            }

            fn project_id(&self, column: &str) -> Result<ProjectId> {
                ProjectId::parse(&self.get::<String>(column)?).map_err(|e| self.corrupt(column, e))
            }

            fn stage(&self, column: &str) -> Result<StageName> {
                StageName::parse(&self.get::<String>(column)?).map_err(|e| self.corrupt(column, e))
            }
        }

        pub(super) fn project(row: &$row) -> Result<ProjectRecord> {
            let c = Cells::new(row, "projects", "id");
            Ok(ProjectRecord {
                id: c.project_id("id")?,
                repo_path: c.get("repo_path")?,
                created_at: c.get("created_at")?,
            })
        }

        pub(super) fn item(row: &$row) -> Result<ItemRecord> {
            let c = Cells::new(row, "work_items", "id");
            let progress: ItemProgress = c.json("progress_json")?;
            let status_text: String = c.get("status")?;
            let status = ItemStatus::parse(&status_text)
                .ok_or_else(|| c.corrupt("status", format!("unknown status `{status_text}`")))?;
            // The columns only mirror the JSON for queries; if they disagree, one of them was tampered with.
            if status != progress.status {
                return Err(c.corrupt(
                    "status",
                    format!(
                        "`{status_text}` disagrees with progress_json ({})",
                        progress.status.as_str()
                    ),
                ));
            }
            if c.stage("stage")? != progress.stage {
                return Err(c.corrupt(
                    "stage",
                    format!("disagrees with progress_json ({})", progress.stage),
                ));
            }
            Ok(ItemRecord {
                id: c.item_id("id")?,
                project: c.project_id("project_id")?,
                title: c.get("title")?,
                body: c.get("body")?,
                progress,
                blocked_reason: c.get("blocked_reason")?,
                created_at: c.get("created_at")?,
                updated_at: c.get("updated_at")?,
            })
        }

        pub(super) fn run(row: &$row) -> Result<RunRecord> {
            let c = Cells::new(row, "stage_runs", "id");
            let state_text: String = c.get("state")?;
            let state = RunState::parse(&state_text)
                .ok_or_else(|| c.corrupt("state", format!("unknown state `{state_text}`")))?;
            let attempt: i64 = c.get("attempt")?;
            let attempt = u32::try_from(attempt)
                .map_err(|_| c.corrupt("attempt", format!("{attempt} is out of range")))?;
            let lease = match (
                c.get::<Option<String>>("lease_owner")?,
                c.get::<Option<i64>>("lease_expires_at")?,
            ) {
                (Some(owner), Some(expires_at)) => Some(Lease { owner, expires_at }),
                (None, None) => None,
                _ => {
                    return Err(c.corrupt(
                        "lease_owner",
                        "lease owner and lease expiry must be set together",
                    ));
                }
            };
            Ok(RunRecord {
                id: c.get("id")?,
                item: c.item_id("item_id")?,
                project: c.project_id("project_id")?,
                stage: c.stage("stage")?,
                attempt,
                state,
                epoch: c.get("epoch")?,
                lease,
                feedback: c.json("feedback_json")?,
                checkpoint: c.json("checkpoint_json")?,
                verdict: c.optional_json("verdict_json")?,
                usage: c.optional_json("usage_json")?,
                created_at: c.get("created_at")?,
                started_at: c.get("started_at")?,
                finished_at: c.get("finished_at")?,
            })
        }

        pub(super) fn event(row: &$row) -> Result<EventRecord> {
            let c = Cells::new(row, "events", "item_id");
            Ok(EventRecord {
                item: c.item_id("item_id")?,
                seq: c.get("seq")?,
                at: c.get("at")?,
                kind: c.get("kind")?,
                run_id: c.get("run_id")?,
                data: c.json("data_json")?,
            })
        }

        pub(super) fn notification(row: &$row) -> Result<NotificationRecord> {
            let c = Cells::new(row, "notifications", "id");
            let state_text: String = c.get("state")?;
            let state = NotificationState::parse(&state_text)
                .ok_or_else(|| c.corrupt("state", format!("unknown state `{state_text}`")))?;
            let attempts: i64 = c.get("attempts")?;
            let attempts = u32::try_from(attempts)
                .map_err(|_| c.corrupt("attempts", format!("{attempts} is out of range")))?;
            Ok(NotificationRecord {
                id: c.get("id")?,
                receiver: c.get("receiver")?,
                item: c.item_id("item_id")?,
                event_seq: c.get("event_seq")?,
                kind: c.get("kind")?,
                body: c.get("body")?,
                state,
                attempts,
                next_attempt_at: c.get("next_attempt_at")?,
                last_error: c.get("last_error")?,
                created_at: c.get("created_at")?,
                finished_at: c.get("finished_at")?,
            })
        }

        /// Decodes every row with `decode`, stopping at the first corrupt one.
        pub(super) fn all<T>(rows: &[$row], decode: fn(&$row) -> Result<T>) -> Result<Vec<T>> {
            rows.iter().map(decode).collect()
        }
    };
}

pub(crate) use decoders;
