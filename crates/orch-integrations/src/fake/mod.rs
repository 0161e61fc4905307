//! In-process fakes of Plane, Gitea and GitHub for tests: axum servers on loopback that answer the
//! documented paths with the documented shapes, record every request (method, path, headers,
//! body), fail on demand (only after the credentials are checked, as a real server would), serve
//! their git repository over smart HTTP behind the forge's own git credentials, and send signed
//! webhook deliveries the way the real services do.
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
pub mod smart_http;
pub mod webhook;

pub use server::{FakeApi, FakeServer, Fault, Recorded};
pub use smart_http::GitRepository;
