//! Finds runs whose lease holder on this machine died (a SIGKILLed orch) and frees them at once,
//! instead of waiting for the lease to expire. Runs of other machines are reclaimed by expiry.
//! A detached self-deploy recorded in a run's checkpoint is never killed here: it is meant to
//! outlive orch, and the run's next execution waits for it and judges it (`selfdeploy`).

use crate::{Engine, EngineError};

/// `host:pid:nonce` → (host, pid).
fn parse_owner(owner: &str) -> Option<(&str, u32)> {
    let mut parts = owner.rsplitn(3, ':');
    let _nonce = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    Some((host, pid))
}

impl Engine {
    pub(crate) async fn reap_dead_owners(&self) -> Result<(), EngineError> {
        let Some((my_host, _)) = parse_owner(&self.settings.owner) else {
            return Ok(());
        };
        for run in self.store.list_running().await? {
            let Some(lease) = &run.lease else { continue };
            if lease.owner == self.settings.owner {
                continue;
            }
            let Some((host, pid)) = parse_owner(&lease.owner) else {
                continue;
            };
            if host != my_host || orch_process::is_alive(pid) {
                continue;
            }
            self.kill_previous_agent(&run).await;
            // The store records the expiry as an event in the same write.
            match self.store.expire_lease(run.fence()).await {
                Ok(()) => tracing::info!(
                    "run {} of {}: lease of dead owner {} expired",
                    run.id,
                    run.item,
                    lease.owner
                ),
                Err(orch_store::StoreError::LeaseLost { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn owners_parse() {
        assert_eq!(super::parse_owner("box:42:0000abcd"), Some(("box", 42)));
        assert_eq!(
            super::parse_owner("my:host:42:0000abcd"),
            Some(("my:host", 42))
        );
        assert_eq!(super::parse_owner("garbage"), None);
    }
}
