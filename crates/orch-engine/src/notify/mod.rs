//! Outgoing notifications on the events people wait for: an item awaits approval, is blocked,
//! is deployed, prod was restored after a failed promotion, a spend limit was reached.
//!
//! One place maps the event log to notifications ([`mapping::notice`]); nothing else in the
//! engine knows notifications exist. The follower ([`Engine::follow_notifications`]) reads each
//! item's new events from its cursor and records one notification per interested receiver, in
//! the store transaction that moves the cursor (so a crash neither loses nor doubles one). The
//! sender ([`Engine::send_notifications`]) claims due ones from the store and POSTs them,
//! retrying with exponential backoff, and gives up after the receiver's `max_attempts` with a
//! `notify.given-up` event. Delivery is at least once: a crash between the receiver's answer and
//! its record sends it again, with the same delivery id.
//!
//! Never: block or fail the pipeline (this runs beside the engine loop, and its errors are only
//! logged); put a receiver's secret, or its URL's path (which may be the credential), in a body,
//! an event, a log line or an error.

mod follow;
pub(crate) mod mapping;
mod render;
mod send;

use std::time::Duration;

use orch_integrations::notify::Receiver;

pub use send::SendSummary;

/// What a notification is about; receivers filter on these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyEvent {
    /// An item waits for a person to approve its deploy.
    Approval,
    /// An item is blocked; the reason says why.
    Blocked,
    /// An item's change runs in prod.
    Deployed,
    /// A promotion failed and prod was put back to its previous build (or could not be).
    ProdRestored,
    /// An item's or a stage's spend limit was reached.
    SpendLimit,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        Self::Approval,
        Self::Blocked,
        Self::Deployed,
        Self::ProdRestored,
        Self::SpendLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::Blocked => "blocked",
            Self::Deployed => "deployed",
            Self::ProdRestored => "prod-restored",
            Self::SpendLimit => "spend-limit",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// The body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// orch's JSON document, signed when a secret is configured.
    Json,
    /// Slack's incoming-webhook shape, `{"text": ...}` (also understood by Mattermost, Rocket.Chat
    /// and others).
    Slack,
}

impl NotifyFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "slack" => Some(Self::Slack),
            _ => None,
        }
    }
}

/// Defaults of a receiver's retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between two attempts, however many failed.
pub const MAX_RETRY: Duration = Duration::from_secs(30 * 60);
/// Each attempt's time limit.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured receiver of a project's notifications.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// Unique within the project; with the project's name, it names the receiver in the store.
    pub name: String,
    pub format: NotifyFormat,
    /// The events it wants; empty means all of them.
    pub events: Vec<NotifyEvent>,
    pub receiver: Receiver,
    /// Attempts before giving up (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each one, up to [`MAX_RETRY`].
    pub first_retry: Duration,
}

impl NotifyTarget {
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.events.is_empty() || self.events.contains(&event)
    }

    /// The wait before the attempt after `failed` failed ones.
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.first_retry.saturating_mul(factor).min(MAX_RETRY)
    }
}

/// The store's name of a project's receiver.
pub(crate) fn receiver_key(project: &orch_core::ProjectId, name: &str) -> String {
    format!("{project}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(first_retry: Duration) -> NotifyTarget {
        let url =
            orch_integrations::notify::ReceiverUrl::parse("http://127.0.0.1:9/h").expect("url");
        NotifyTarget {
            name: "ops".into(),
            format: NotifyFormat::Json,
            events: vec![NotifyEvent::Blocked],
            receiver: Receiver::new(url, None, ATTEMPT_TIMEOUT).expect("receiver"),
            max_attempts: 3,
            first_retry,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = target(Duration::from_secs(10));
        let waits: Vec<u64> = (1..=4).map(|n| t.backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80]);
        assert_eq!(t.backoff(40), MAX_RETRY);
    }

    #[test]
    fn a_filter_picks_events_and_names_round_trip() {
        let t = target(Duration::from_secs(1));
        assert!(t.wants(NotifyEvent::Blocked));
        assert!(!t.wants(NotifyEvent::Deployed));
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(NotifyEvent::parse("Blocked"), None);
    }
}
