//! In-process fakes of Plane, Gitea and GitHub for tests: axum servers on loopback that answer the
//! documented paths with the documented shapes, record every request, fail on demand, and send
//! signed webhook deliveries the way the real services do.
//!
//! They follow the same references as the adapters (see [`crate::plane`], [`crate::gitea`] and
//! [`crate::github`]): developers.plane.so/api-reference and /dev-tools/intro-webhooks for Plane,
//! docs.gitea.com/api and docs.gitea.com/usage/webhooks for Gitea, docs.github.com/rest and
//! docs.github.com/webhooks for GitHub. What they leave out (most
//! fields, permissions beyond one token, squash and rebase merges) is said where it matters.

mod bare;
pub mod gitea;
pub mod github;
pub mod plane;
mod server;
pub mod webhook;

pub use server::{FakeApi, FakeServer, Fault, Recorded};
