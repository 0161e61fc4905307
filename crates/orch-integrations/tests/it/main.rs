//! The adapters against the in-process fakes: documented paths, pagination, retries, typed
//! errors, and a real push and merge through the fake Gitea's bare repository.

mod checks;
mod fast_forward;
mod git_http;
mod gitea;
mod github;
mod merge_guard;
mod plane;
mod recording;
mod setup;
mod setup_gaps;

use std::time::Duration;

use orch_integrations::RetryPolicy;

/// Short waits so retry tests take milliseconds.
pub fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
    }
}
