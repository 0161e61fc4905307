//! The records of people and of webhook deliveries as the store returns them.

use crate::Millis;

/// How [`crate::Store::inbox_insert`] recorded a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Seen for the first time: act on it.
    Stored,
    /// Its delivery id was recorded before: a redelivery.
    SameDelivery,
    /// Its body was recorded before under another delivery id: a replay.
    SameBody,
}

/// A person who acts on items under their own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    pub name: String,
    pub created_at: Millis,
    /// Set when their token was revoked: they can no longer log in, call the API or approve
    /// through their tracker account.
    pub revoked_at: Option<Millis>,
    /// Their tracker accounts (`plane:<uuid>`, `gitea:<id>`, `github:<id>`), sorted.
    pub tracker_accounts: Vec<String>,
}

impl PersonRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}
