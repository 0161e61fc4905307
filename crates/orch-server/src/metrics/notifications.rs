//! `orch_notifications`: outgoing notifications by delivery state, read from the store at each
//! scrape (every worker's sender shares it). A growing `given-up` count is a receiver that keeps
//! failing; alert on its increase.

use orch_store::{NotificationState, Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub state: String,
}

/// Every state, with 0 for those no notification is in.
pub(crate) async fn gather(store: &dyn Store) -> Result<Family<StateLabels, Gauge>, StoreError> {
    let counts = store.count_notifications().await?;
    let family = Family::<StateLabels, Gauge>::default();
    for state in NotificationState::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        family
            .get_or_create(&StateLabels {
                state: state.as_str().to_owned(),
            })
            .set(n);
    }
    Ok(family)
}
