//! The `Tracker` port: where work items come from and where their state is shown.
//!
//! States are orch's canonical state names (`orch_core::states`); each adapter maps them to its
//! tracker's own notion (Plane workflow states, Gitea scoped labels).

use async_trait::async_trait;

use crate::error::Result;
use crate::setup::{SetupOp, SetupSpec, SetupStep};

/// A work item as a tracker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteItem {
    /// The tracker's stable id (a Plane UUID, a Gitea issue number): what orch links items by.
    pub id: String,
    /// What people call it (`WEB-12`, `#12`).
    pub key: String,
    pub title: String,
    pub body: String,
    /// The canonical state it is in, when it is in one orch knows.
    pub state: Option<String>,
}

/// A tracker account: the tracker's own user id, which its owner cannot change, and the login or
/// display name it showed (for messages only: a display name can be edited to anyone's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerUser {
    pub id: String,
    pub login: String,
}

#[async_trait]
pub trait Tracker: Send + Sync + std::fmt::Debug {
    /// `plane`, `gitea`, ...: the name in configuration, events and messages.
    fn kind(&self) -> &'static str;
    /// What onboarding needs here (every canonical state or state label, the webhook when
    /// `spec` asks for one) and whether each exists. GET requests only.
    async fn survey_setup(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>>;
    /// Carries out one missing step of [`Tracker::survey_setup`]; creates, never edits or
    /// deletes.
    async fn apply_setup(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()>;
    /// Creates whichever canonical states (or state labels) are missing; deletes nothing.
    async fn ensure_states(&self) -> Result<()> {
        let spec = SetupSpec::default();
        for step in self.survey_setup(&spec).await? {
            if step.is_missing() && matches!(step.op, SetupOp::State(_)) {
                self.apply_setup(&step, &spec).await?;
            }
        }
        Ok(())
    }
    /// The open items in the canonical state `state`.
    async fn list_items(&self, state: &str) -> Result<Vec<RemoteItem>>;
    async fn get_item(&self, id: &str) -> Result<RemoteItem>;
    /// Who last moved the item into the canonical state `state`, read from the tracker's own
    /// history of the item (Plane's activities, Gitea's timeline, GitHub's issue events); `None`
    /// when that history shows no such change.
    async fn state_setter(&self, id: &str, state: &str) -> Result<Option<TrackerUser>>;
    /// Moves the item to the canonical state `state`.
    async fn set_state(&self, id: &str, state: &str) -> Result<()>;
    /// Adds a plain-text comment.
    async fn add_comment(&self, id: &str, text: &str) -> Result<()>;
}

/// The canonical state named `name`, or a configuration error naming it.
pub(crate) fn canonical(name: &str) -> Result<&'static orch_core::states::TrackerState> {
    orch_core::states::CANONICAL_STATES
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            crate::IntegrationError::Config(format!("`{name}` is not one of orch's tracker states"))
        })
}
