//! The sender: claims due notifications from the store, POSTs each once, and records how it
//! went: sent, tried again after a backoff, or given up with a `notify.given-up` event.

use orch_integrations::notify::Outgoing;
use orch_store::{AttemptOutcome, NewEvent, NotificationRecord};
use serde_json::json;

use super::{NotifyTarget, receiver_key};
use crate::{Engine, EngineError, events};

/// How long a claimed notification is this sender's: well over one attempt's time limit.
const CLAIM_MS: i64 = 60_000;
/// Notifications claimed (and sent concurrently) at once.
const BATCH: u32 = 16;
/// Batches in one pass at most: what is still due then waits for the next pass, so a pass
/// always ends (even when receivers fail with no backoff to speak of).
const MAX_BATCHES: usize = 8;

/// What one pass of [`Engine::send_notifications`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub sent: u32,
    /// Failed, to be tried again after their backoff.
    pub retrying: u32,
    pub given_up: u32,
}

impl Engine {
    /// Sends the notifications due now, in at most [`MAX_BATCHES`] batches. A failure waits
    /// for its backoff (a later pass sends it), so a receiver that is down never holds up this
    /// pass for long.
    pub async fn send_notifications(&self) -> Result<SendSummary, EngineError> {
        let mut summary = SendSummary::default();
        for _ in 0..MAX_BATCHES {
            let claimed = self.store.claim_notifications(CLAIM_MS, BATCH).await?;
            if claimed.is_empty() {
                return Ok(summary);
            }
            self.crashpoint("after-notify-claim");
            // Concurrently: one slow receiver does not delay the others by its timeout each.
            let mut attempts = tokio::task::JoinSet::new();
            for n in claimed {
                let target = self.notify_target(&n.receiver).cloned();
                attempts.spawn(async move {
                    let outcome = match &target {
                        Some(target) => attempt(target, &n).await,
                        None => AttemptOutcome::GiveUp {
                            error: format!("receiver `{}` is no longer configured", n.receiver),
                        },
                    };
                    (n, outcome)
                });
            }
            while let Some(joined) = attempts.join_next().await {
                match joined {
                    Ok((n, outcome)) => self.record(&n, outcome, &mut summary).await?,
                    // Its claim runs out and it is sent again by a later pass.
                    Err(e) => tracing::error!("a notification attempt failed: {e}"),
                }
            }
        }
        Ok(summary)
    }

    /// Both halves of a notification pass: record what new events ask for, then send.
    pub async fn notify_pass(&self) -> Result<SendSummary, EngineError> {
        if self.projects().all(|p| p.settings.notify.is_empty()) {
            return Ok(SendSummary::default());
        }
        self.follow_notifications().await?;
        self.send_notifications().await
    }

    fn notify_target(&self, key: &str) -> Option<&NotifyTarget> {
        self.projects().find_map(|p| {
            p.settings
                .notify
                .iter()
                .find(|t| receiver_key(p.id(), &t.name) == key)
        })
    }

    async fn record(
        &self,
        n: &NotificationRecord,
        outcome: AttemptOutcome,
        summary: &mut SendSummary,
    ) -> Result<(), EngineError> {
        let given_up = match &outcome {
            AttemptOutcome::Sent => {
                summary.sent += 1;
                None
            }
            AttemptOutcome::Retry { error, .. } => {
                summary.retrying += 1;
                tracing::warn!(
                    receiver = n.receiver,
                    item = n.item.as_str(),
                    attempt = n.attempts,
                    "notification not delivered, trying again later: {error}"
                );
                None
            }
            AttemptOutcome::GiveUp { error } => Some(error.clone()),
        };
        if !self.store.record_attempt(n.id, n.attempts, outcome).await? {
            // Its claim ran out and another sender took it: that one's result stands.
            return Ok(());
        }
        if let Some(error) = given_up {
            summary.given_up += 1;
            tracing::warn!(
                receiver = n.receiver,
                item = n.item.as_str(),
                attempts = n.attempts,
                "notification given up: {error}"
            );
            self.store
                .append_events(
                    &n.item,
                    vec![NewEvent::new(
                        events::NOTIFY_GIVEN_UP,
                        json!({
                            "receiver": n.receiver, "event": n.kind, "attempts": n.attempts,
                            "error": error, "event_seq": n.event_seq,
                        }),
                    )],
                )
                .await?;
            self.report(
                n.item.as_str(),
                "notify",
                n.attempts,
                format!("notification to {} given up: {error}", n.receiver),
            );
        }
        Ok(())
    }
}

/// One POST of `n` to `target`, and what to record for it.
async fn attempt(target: &NotifyTarget, n: &NotificationRecord) -> AttemptOutcome {
    let id = format!("{}/{}/{}", n.receiver, n.item, n.event_seq);
    let outgoing = Outgoing {
        id: &id,
        event: &n.kind,
        body: n.body.as_bytes(),
    };
    match target.receiver.deliver(&outgoing).await {
        Ok(()) => AttemptOutcome::Sent,
        Err(e) if n.attempts >= target.max_attempts => AttemptOutcome::GiveUp {
            error: format!("{e} (attempt {} of {})", n.attempts, target.max_attempts),
        },
        Err(e) => AttemptOutcome::Retry {
            error: e.to_string(),
            retry_in_ms: i64::try_from(target.backoff(n.attempts).as_millis()).unwrap_or(i64::MAX),
        },
    }
}
