//! The one mapping from the event log to notifications: which events people wait for, and the
//! line that tells them. Everything else the engine records is not notified.

use orch_store::EventRecord;
use serde_json::{Value, json};

use super::NotifyEvent;
use crate::events;

/// What one event means to a person waiting for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notice {
    pub event: NotifyEvent,
    /// Follows the item's id: `WEB-3 <summary>`.
    pub summary: String,
    /// The event's facts a receiver may act on (stage, reason, commit).
    pub details: Value,
}

/// The notice of `event`, if it is one people wait for.
pub(crate) fn notice(event: &EventRecord) -> Option<Notice> {
    let text = |key: &str| {
        event
            .data
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let flag = |key: &str| event.data.get(key).and_then(Value::as_bool) == Some(true);
    // The SHA prod was put back to, when a failed promotion was restored.
    let restored = text("restored");
    let (kind, summary, details) = match event.kind.as_str() {
        events::APPROVAL_REQUESTED => (
            NotifyEvent::Approval,
            format!("awaits approval to deploy (stage {})", text("stage")),
            json!({ "stage": text("stage") }),
        ),
        events::BLOCKED => (
            NotifyEvent::Blocked,
            format!("is blocked: {}", text("reason")),
            json!({ "reason": text("reason") }),
        ),
        events::DEPLOY_PROD if flag("success") => (
            NotifyEvent::Deployed,
            format!("is deployed to prod ({})", short(&text("sha"))),
            json!({ "sha": text("sha") }),
        ),
        events::DEPLOY_PROD if !restored.is_empty() || flag("frozen") => {
            let summary = if restored.is_empty() {
                format!(
                    "failed its prod deploy ({}) and putting the previous build back FAILED: \
                     prod is frozen, look at it",
                    short(&text("sha"))
                )
            } else {
                format!(
                    "failed its prod deploy ({}); prod was put back to its previous build ({})",
                    short(&text("sha")),
                    short(&restored)
                )
            };
            (
                NotifyEvent::ProdRestored,
                summary,
                json!({ "sha": text("sha"), "restored_to": restored, "frozen": flag("frozen") }),
            )
        }
        events::SPEND_LIMIT_REACHED => (
            NotifyEvent::SpendLimit,
            format!(
                "reached a spend limit in stage {}: {}",
                text("stage"),
                text("reason")
            ),
            json!({ "stage": text("stage"), "reason": text("reason"), "when": text("when") }),
        ),
        _ => return None,
    };
    Some(Notice {
        event: kind,
        summary,
        details,
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: Value) -> EventRecord {
        EventRecord {
            item: orch_core::ItemId::parse("WEB-3").expect("id"),
            seq: 7,
            at: 0,
            kind: kind.to_owned(),
            run_id: None,
            data,
        }
    }

    fn check(kind: &str, data: Value, expect: Option<(NotifyEvent, &str)>) {
        let got = notice(&event(kind, data));
        assert_eq!(
            got.as_ref().map(|n| (n.event, n.summary.as_str())),
            expect,
            "{kind}"
        );
    }

    #[test]
    fn the_events_people_wait_for_and_only_those() {
        check(
            events::APPROVAL_REQUESTED,
            json!({ "stage": "confirm-deploy" }),
            Some((
                NotifyEvent::Approval,
                "awaits approval to deploy (stage confirm-deploy)",
            )),
        );
        check(
            events::BLOCKED,
            json!({ "reason": "budget spent" }),
            Some((NotifyEvent::Blocked, "is blocked: budget spent")),
        );
        check(
            events::DEPLOY_PROD,
            json!({ "sha": "0123456789abcdef0123", "success": true, "restored": null }),
            Some((NotifyEvent::Deployed, "is deployed to prod (0123456789ab)")),
        );
        check(
            events::DEPLOY_PROD,
            json!({ "sha": "abc", "success": false, "restored": "fed", "frozen": false }),
            Some((
                NotifyEvent::ProdRestored,
                "failed its prod deploy (abc); prod was put back to its previous build (fed)",
            )),
        );
        check(
            events::DEPLOY_PROD,
            json!({ "sha": "abc", "success": false, "restored": null, "frozen": true }),
            Some((
                NotifyEvent::ProdRestored,
                "failed its prod deploy (abc) and putting the previous build back FAILED: prod is frozen, look at it",
            )),
        );
        // A failed deploy that changed nothing in prod (an infrastructure failure) blocks the
        // item: that is the notification, not this event.
        check(
            events::DEPLOY_PROD,
            json!({ "sha": "abc", "success": false, "restored": null, "frozen": false }),
            None,
        );
        check(
            events::SPEND_LIMIT_REACHED,
            json!({ "stage": "development", "reason": "item limit $1.00", "when": "during-run" }),
            Some((
                NotifyEvent::SpendLimit,
                "reached a spend limit in stage development: item limit $1.00",
            )),
        );
        for quiet in [
            events::STAGE_PASSED,
            events::RUN_CLAIMED,
            events::DONE,
            events::NEEDS_INFO,
            "notify.given-up",
        ] {
            check(quiet, json!({}), None);
        }
    }
}
