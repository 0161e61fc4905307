//! People (named by the hash of their token, revocable) and the tracker accounts that are them.

use orch_store::StoreError;

use super::Backend;

pub async fn people_are_found_by_token_hash_until_revoked(b: &dyn Backend) {
    let store = b.open().await;
    assert!(!store.has_people().await.expect("has people"));
    let ada = store.add_person("ada", "hash-a").await.expect("add ada");
    assert_eq!(ada.name, "ada");
    assert!(ada.is_active());
    store
        .add_person("grace", "hash-g")
        .await
        .expect("add grace");
    assert!(store.has_people().await.expect("has people"));

    let found = store.person_by_token("hash-a").await.expect("by token");
    assert_eq!(found.map(|p| p.name).as_deref(), Some("ada"));
    assert_eq!(
        store.person_by_token("hash-x").await.expect("unknown"),
        None
    );

    let again = store.add_person("ada", "hash-b").await;
    assert!(
        matches!(again, Err(StoreError::Exists { what: "person", .. })),
        "an active person is not replaced: {again:?}"
    );

    assert!(store.revoke_person("ada").await.expect("revoke"));
    assert!(
        !store.revoke_person("ada").await.expect("twice"),
        "nothing to revoke"
    );
    assert!(!store.revoke_person("nobody").await.expect("unknown"));
    assert_eq!(
        store.person_by_token("hash-a").await.expect("revoked"),
        None,
        "a revoked token opens nothing"
    );
    let listed = store.list_people().await.expect("list");
    let names: Vec<(&str, bool)> = listed
        .iter()
        .map(|p| (p.name.as_str(), p.is_active()))
        .collect();
    assert_eq!(names, [("ada", false), ("grace", true)]);

    // Re-adding a revoked person gives them a new token; the old one stays dead.
    store.add_person("ada", "hash-c").await.expect("re-add");
    assert_eq!(store.person_by_token("hash-a").await.expect("old"), None);
    assert_eq!(
        store
            .person_by_token("hash-c")
            .await
            .expect("new")
            .map(|p| p.name)
            .as_deref(),
        Some("ada")
    );
    // Reopened (another process): the same people.
    let other = b.open().await;
    assert_eq!(other.list_people().await.expect("list").len(), 2);
}

pub async fn a_tracker_account_is_one_person(b: &dyn Backend) {
    let store = b.open().await;
    store.add_person("ada", "hash-a").await.expect("ada");
    store
        .add_person("mallory", "hash-m")
        .await
        .expect("mallory");
    store
        .link_tracker_account("ada", "plane:uuid-ada")
        .await
        .expect("link");
    store
        .link_tracker_account("ada", "plane:uuid-ada")
        .await
        .expect("linking again is a no-op");
    store
        .link_tracker_account("ada", "github:583231")
        .await
        .expect("second account");
    let taken = store
        .link_tracker_account("mallory", "plane:uuid-ada")
        .await;
    assert!(
        matches!(taken, Err(StoreError::Exists { .. })),
        "an account is never moved to someone else: {taken:?}"
    );
    let nobody = store.link_tracker_account("nobody", "gitea:7").await;
    assert!(
        matches!(nobody, Err(StoreError::NotFound { what: "person", .. })),
        "{nobody:?}"
    );

    let ada = store
        .person_by_tracker_account("plane:uuid-ada")
        .await
        .expect("lookup")
        .expect("ada");
    assert_eq!(ada.name, "ada");
    assert_eq!(ada.tracker_accounts, ["github:583231", "plane:uuid-ada"]);
    assert_eq!(
        store
            .person_by_tracker_account("plane:uuid-mallory")
            .await
            .expect("lookup"),
        None
    );
    // A revoked person is still who the account is; the caller refuses them.
    store.revoke_person("ada").await.expect("revoke");
    let revoked = store
        .person_by_tracker_account("github:583231")
        .await
        .expect("lookup")
        .expect("still ada");
    assert!(!revoked.is_active());
}
