//! The follower: each item's new events, from its cursor, become notifications recorded in the
//! same store transaction that moves the cursor past them.

use orch_store::NewNotification;

use super::render::{self, Source};
use super::{mapping, receiver_key};
use crate::{Engine, EngineError};

/// Events older than this when first seen are not notified: a receiver added to a project with
/// a history, or an orch started after a long stop, does not flood anyone with stale news.
const MAX_AGE_MS: i64 = 24 * 60 * 60 * 1000;

/// The store cursor of an item's notification follower.
pub(crate) fn cursor_name(item: &orch_core::ItemId) -> String {
    format!("notify:{item}")
}

impl Engine {
    /// One pass of the notification follower over every item of a project with receivers.
    /// Returns how many notifications it recorded.
    pub async fn follow_notifications(&self) -> Result<u32, EngineError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut recorded = 0;
        for item in self.store.list_items(None).await? {
            let Ok(project) = self.project(&item.project) else {
                continue;
            };
            if project.settings.notify.is_empty() || self.is_settled(&item.id) {
                continue;
            }
            let cursor = cursor_name(&item.id);
            let from = self.store.cursor(&cursor).await?;
            let new = self.store.list_events(&item.id, from).await?;
            // A finished item gets no event people wait for any more (they all come before it
            // finishes, and these events were read after it had): once read, it is skipped, so
            // a pass costs a look at the items in flight, not at every item ever filed.
            let settled = item.progress.status.is_terminal();
            let Some(last) = new.last() else {
                if settled {
                    self.settle(&item.id);
                }
                continue;
            };
            let mut notifications = Vec::new();
            for event in new.iter().filter(|e| now - e.at <= MAX_AGE_MS) {
                let Some(notice) = mapping::notice(event) else {
                    continue;
                };
                for target in project
                    .settings
                    .notify
                    .iter()
                    .filter(|t| t.wants(notice.event))
                {
                    let receiver = receiver_key(project.id(), &target.name);
                    let delivery_id = format!("{receiver}/{}/{}", item.id, event.seq);
                    let source = Source {
                        delivery_id: &delivery_id,
                        item: &item,
                        event,
                        notice: &notice,
                        public_url: self.settings.public_url.as_deref(),
                    };
                    notifications.push(NewNotification {
                        receiver,
                        event_seq: event.seq,
                        kind: notice.event.as_str().to_owned(),
                        body: render::body(target.format, &source),
                    });
                }
            }
            recorded += u32::try_from(notifications.len()).unwrap_or(u32::MAX);
            self.store
                .enqueue_notifications(&item.id, &cursor, last.seq, notifications)
                .await?;
            self.crashpoint("after-notify-enqueue");
            if settled {
                self.settle(&item.id);
            }
        }
        Ok(recorded)
    }

    fn is_settled(&self, item: &orch_core::ItemId) -> bool {
        self.notify_settled
            .lock()
            .is_ok_and(|settled| settled.contains(item))
    }

    fn settle(&self, item: &orch_core::ItemId) {
        if let Ok(mut settled) = self.notify_settled.lock() {
            settled.insert(item.clone());
        }
    }
}
