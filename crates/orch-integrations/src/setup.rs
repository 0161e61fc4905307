//! What `orch onboard` ensures on a tracker or a forge, as data: a survey lists each thing a
//! project needs there (a canonical state or state label, the webhook, the repository, the first
//! push) with whether it exists and the requests apply would send; apply carries out one missing
//! step. A survey only reads (GET requests); nothing here ever deletes or edits what exists.

use std::path::PathBuf;

use crate::secret::Token;

/// Whether a thing exists as orch needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupStatus {
    /// There, as orch needs it.
    Present,
    /// Missing: apply creates it with the step's calls.
    Missing,
    /// The API cannot do this (or orch will not do it for you): what a person does instead.
    /// Not an error: onboarding goes on and says so.
    Manual(String),
    /// Something is in the way that orch will not touch (a non-empty repository with unknown
    /// history): a gap until a person resolves it.
    Refused(String),
}

/// What applying a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupOp {
    /// Create the canonical state with this name (or its `state/<Name>` label).
    State(&'static str),
    /// Create the label `SetupSpec::labels[i]` (Plane: a project label the team's board uses).
    Label(usize),
    /// Create the webhook that sends the project's deliveries to orch.
    Webhook,
    /// Create the forge repository (private, empty).
    Repository,
    /// Push the local default branch into the empty repository orch created.
    FirstPush,
}

/// One thing onboarding needs on a tracker or a forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupStep {
    /// `plane`, `gitea`, `github`.
    pub service: &'static str,
    /// What it is about, for people: `state STOP (cancelled)`.
    pub what: String,
    pub status: SetupStatus,
    /// The requests apply sends for it (`POST /api/v1/...`, `git push ...`), for `plan`.
    pub calls: Vec<String>,
    pub op: SetupOp,
}

impl SetupStep {
    pub(crate) fn new(service: &'static str, op: SetupOp, what: String) -> Self {
        Self {
            service,
            what,
            status: SetupStatus::Present,
            calls: Vec::new(),
            op,
        }
    }

    pub(crate) fn missing(mut self, calls: Vec<String>) -> Self {
        self.status = SetupStatus::Missing;
        self.calls = calls;
        self
    }

    pub(crate) fn with_status(mut self, status: SetupStatus) -> Self {
        self.status = status;
        self
    }

    pub fn is_missing(&self) -> bool {
        self.status == SetupStatus::Missing
    }
}

/// The webhook a tracker should have.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    /// orch's delivery URL for this tracker kind (`https://orch.example.com/hooks/gitea`).
    pub url: String,
    /// The global secret `orch serve` verifies this kind's deliveries with; apply needs it,
    /// a survey does not (no API returns a webhook's secret).
    pub secret: Option<Token>,
}

/// What onboarding asks of a tracker or a forge.
#[derive(Debug, Clone, Default)]
pub struct SetupSpec {
    /// The webhook to ensure; `None` leaves webhooks out of the survey.
    pub webhook: Option<WebhookSpec>,
    /// The local repository (it may not exist yet) and its default branch: what the first push
    /// sends, and the history a non-empty forge repository must share.
    pub local: Option<(PathBuf, String)>,
    /// The description of a repository orch creates; an empty repository carrying it is one an
    /// earlier apply created (and may still push into).
    pub description: String,
    /// Work item labels the tracker's project must have (`orch onboard --label`); Plane only.
    pub labels: Vec<String>,
}
