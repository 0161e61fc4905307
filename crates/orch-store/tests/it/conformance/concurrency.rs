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

async fn item_of(store: &dyn Store, project: &str, title: &str) {
    let (progress, run) = start();
    store
        .upsert_project(&project_id(project), "/srv/x")
        .await
        .expect("project");
    store
        .create_item(&project_id(project), "X", title, "", &progress, run, vec![])
        .await
        .expect("item");
}

pub async fn claims_respect_global_and_per_project_limits(b: &dyn Backend) {
    let store = b.open().await;
    for n in 0..3 {
        item_of(&*store, "alpha", &format!("a{n}")).await;
    }
    item_of(&*store, "beta", "b0").await;
    let per_project = orch_store::ClaimLimits {
        global: None,
        per_project: Some(1),
    };
    let first = store
        .claim_next_run_within("w1", LEASE_MS, per_project)
        .await
        .expect("claim")
        .expect("alpha's oldest");
    assert_eq!(first.project.as_str(), "alpha");
    // alpha is at its limit, so the next claim skips alpha's older runs for beta's.
    let second = store
        .claim_next_run_within("w2", LEASE_MS, per_project)
        .await
        .expect("claim")
        .expect("beta's run");
    assert_eq!(second.project.as_str(), "beta");
    assert_eq!(
        store
            .claim_next_run_within("w3", LEASE_MS, per_project)
            .await
            .expect("claim"),
        None,
        "both projects are at their limit"
    );
    let global = orch_store::ClaimLimits {
        global: Some(2),
        per_project: None,
    };
    assert_eq!(
        store
            .claim_next_run_within("w3", LEASE_MS, global)
            .await
            .expect("claim"),
        None,
        "two runs are held: the global limit of 2 is reached"
    );
    // A lease that ran out no longer counts: its run is claimable again, within the limit.
    store.expire_lease(first.fence()).await.expect("expire");
    let again = store
        .claim_next_run_within("w3", LEASE_MS, global)
        .await
        .expect("claim")
        .expect("the freed slot is used");
    assert_eq!(
        again.id, first.id,
        "the expired run is the oldest claimable"
    );
    assert_eq!(again.epoch, first.epoch + 1);
    // Without limits everything claimable is claimed.
    assert!(
        store
            .claim_next_run("w4", LEASE_MS)
            .await
            .expect("claim")
            .is_some()
    );
}

/// Many claimers on separate handles with a global limit: the number of live leases never
/// exceeds it, although every claimer races the others.
pub async fn concurrent_claimers_never_overshoot_a_limit(b: &dyn Backend) {
    const LIMIT: u32 = 3;
    let handles = [b.open().await, b.open().await, b.open().await];
    demo_project(&*handles[0]).await;
    for n in 0..ITEMS {
        new_item(&*handles[0], &format!("item {n}")).await;
    }
    let limits = orch_store::ClaimLimits {
        global: Some(LIMIT),
        per_project: None,
    };
    let mut tasks = Vec::new();
    for (h, handle) in handles.iter().enumerate() {
        for t in 0..3 {
            let store = Arc::clone(handle);
            tasks.push(tokio::spawn(async move {
                store
                    .claim_next_run_within(&format!("w{h}-{t}"), LEASE_MS, limits)
                    .await
                    .expect("claim")
            }));
        }
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.expect("task").is_some());
    }
    let held = handles[0].list_running().await.expect("running");
    assert_eq!(won, LIMIT as usize, "9 claimers, limit {LIMIT}");
    assert_eq!(held.len(), LIMIT as usize);
}
