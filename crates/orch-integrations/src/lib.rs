//! orch-integrations: trackers, forges and outgoing notification receivers. The `Tracker` port (where work items come from and
//! where their state is shown) and the `Forge` port (where item branches are pushed, reviewed,
//! marked and merged), with adapters for Plane CE, Gitea/Forgejo and GitHub over HTTP, and, behind the
//! `fake` feature, in-process fakes of both that tests run against. `notify` sends one
//! notification to a receiver; `signature` is the HMAC-SHA256 both directions of webhooks use.
//!
//! Invariants:
//! - Adapters do one thing each and know nothing of the pipeline: the engine and the server
//!   decide what to tell a tracker or a forge.
//! - A token never appears in `Debug`, an error or a log line.
//! - No forge call ever pushes to the default branch, except onboarding's first push (not
//!   forced) into an empty repository orch created.
//! - A setup survey sends GET requests only; setup creates, never edits or deletes.
//! - Every remote call is bounded: a timeout per request and a bounded number of retries.

pub mod checks;
mod error;
pub mod forge;
pub mod gitea;
pub mod github;
mod http;
pub mod notify;
pub mod plane;
mod repo_api;
mod repo_setup;
pub mod reviews;
mod secret;
pub mod setup;
pub mod signature;
pub mod tracker;

#[cfg(feature = "fake")]
pub mod fake;

pub use checks::{CheckState, ExternalCheck};
pub use error::{IntegrationError, Result};
pub use forge::{CommitState, CommitStatus, Forge, MergeStyle, PullRequest};
pub use gitea::{Gitea, GiteaConfig};
pub use github::{GitHub, GitHubConfig};
pub use http::RetryPolicy;
pub use plane::{Plane, PlaneConfig};
pub use reviews::{Review, ReviewComment, ReviewState};
pub use secret::Token;
pub use setup::{SetupOp, SetupSpec, SetupStatus, SetupStep, WebhookSpec};
pub use tracker::{RemoteItem, Tracker, TrackerUser};
