//! Outgoing notifications as the store keeps them: what to send to which receiver, and how its
//! delivery went. The store never decides what is worth a notification nor how to send one; it
//! keeps each exactly once per (receiver, item, event) and hands it to one sender at a time.

use orch_core::ItemId;

use crate::Millis;

/// A notification to record for an item's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Who gets it: `<project>/<receiver name>`, as configured.
    pub receiver: String,
    /// The event of the item that caused it (its `seq`).
    pub event_seq: i64,
    /// What happened, as receivers filter on it (`blocked`, `deployed`...).
    pub kind: String,
    /// Exactly the bytes to send (a signature covers them, so every retry sends the same).
    pub body: String,
}

/// Where a notification's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationState {
    /// Not delivered yet: due at `next_attempt_at`, or claimed by a sender until then.
    Pending,
    /// The receiver answered 2xx.
    Sent,
    /// Every attempt failed: it is not tried again.
    GivenUp,
}

impl NotificationState {
    pub const ALL: [NotificationState; 3] = [Self::Pending, Self::Sent, Self::GivenUp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::GivenUp => "given-up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: i64,
    pub receiver: String,
    pub item: ItemId,
    pub event_seq: i64,
    pub kind: String,
    pub body: String,
    pub state: NotificationState,
    /// Claims so far; a claim's result is recorded only with the count it was claimed at.
    pub attempts: u32,
    pub next_attempt_at: Millis,
    /// Why the last attempt failed (never a secret nor a receiver's URL).
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
}

/// How one claimed attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Sent,
    /// Failed; tried again `retry_in_ms` from now (database clock).
    Retry {
        error: String,
        retry_in_ms: i64,
    },
    /// Failed for the last time.
    GiveUp {
        error: String,
    },
}
