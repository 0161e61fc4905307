//! `orch_notifications`: outgoing notifications by delivery state, read from the store at each
//! scrape (every worker's sender shares it). A growing `given-up` count is a receiver that keeps
//! failing; alert on its increase.

use orch_store::{NotificationState, Store, StoreError};

use super::exposition::{Exposition, Kind};

pub(crate) async fn render(store: &dyn Store, out: &mut Exposition) -> Result<(), StoreError> {
    let counts = store.count_notifications().await?;
    out.family(
        "orch_notifications",
        Kind::Gauge,
        "Outgoing notifications by delivery state (pending, sent, given-up).",
    );
    for state in NotificationState::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        out.sample("orch_notifications", &[("state", state.as_str())], n as f64);
    }
    Ok(())
}
