//! Many claimers at once, through one handle and through several: a run is never handed to two
//! claimers with the same epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use orch_store::Store;

use super::*;

const ITEMS: usize = 12;
/// Each run is claimed, then its lease expired, until it reaches this epoch; so claims and
/// reclaims race with each other as well as with other runs' claims.
const CLAIMS_PER_RUN: i64 = 3;

/// Claims until nothing is claimable; returns (run, epoch) of every claim it won.
async fn claim_all(store: Arc<dyn Store>, owner: String) -> Vec<(i64, i64)> {
    let mut won = Vec::new();
    while let Some(run) = store.claim_next_run(&owner, LEASE_MS).await.expect("claim") {
        won.push((run.id, run.epoch));
        if run.epoch < CLAIMS_PER_RUN {
            // Nobody else can hold this lease now, so expiring it must succeed.
            store
                .expire_lease(run.fence())
                .await
                .expect("expire own lease");
        }
    }
    won
}

async fn race(handles: Vec<Arc<dyn Store>>, tasks_per_handle: usize) {
    let store = Arc::clone(&handles[0]);
    demo_project(&*store).await;
    for n in 0..ITEMS {
        new_item(&*store, &format!("item {n}")).await;
    }
    let mut tasks = Vec::new();
    for (h, handle) in handles.iter().enumerate() {
        for t in 0..tasks_per_handle {
            tasks.push(tokio::spawn(claim_all(
                Arc::clone(handle),
                format!("worker-{h}-{t}"),
            )));
        }
    }
    let mut claims = Vec::new();
    for task in tasks {
        claims.extend(task.await.expect("claimer task"));
    }

    let distinct: BTreeSet<(i64, i64)> = claims.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        claims.len(),
        "a (run, epoch) was handed out twice: {claims:?}"
    );
    let mut epochs: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (run, epoch) in distinct {
        epochs.entry(run).or_default().push(epoch);
    }
    assert_eq!(epochs.len(), ITEMS, "every run was claimed");
    assert!(
        epochs
            .values()
            .all(|e| *e == (1..=CLAIMS_PER_RUN).collect::<Vec<_>>()),
        "{epochs:?}"
    );

    for it in store.list_items(None).await.expect("items") {
        let claimed = events(&*store, &it.id)
            .await
            .iter()
            .filter(|e| e.kind == "run.claimed")
            .count();
        assert_eq!(
            claimed, CLAIMS_PER_RUN as usize,
            "one event per claim on {}",
            it.id
        );
    }
}

pub async fn concurrent_claimers_on_one_handle_never_share_a_run(b: &dyn Backend) {
    race(vec![b.open().await], 6).await;
}

pub async fn concurrent_claimers_on_separate_handles_never_share_a_run(b: &dyn Backend) {
    race(vec![b.open().await, b.open().await, b.open().await], 3).await;
}
