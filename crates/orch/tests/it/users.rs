//! `orch user add|revoke|list`: a token printed once and kept only as a hash, revocation, tracker
//! accounts, and the names that are refused.

use serde_json::Value;

use crate::harness::Orch;

fn token_of(output: &str) -> String {
    output
        .lines()
        .find(|l| l.starts_with("orch_"))
        .unwrap_or_else(|| panic!("a token in {output}"))
        .to_owned()
}

fn people(orch: &Orch) -> Vec<Value> {
    let text = orch.ok(&["user", "list", "--json"]);
    serde_json::from_str::<Value>(&text)
        .expect("JSON")
        .as_array()
        .expect("a list")
        .clone()
}

#[test]
fn people_get_a_token_once_are_listed_and_revoked() {
    let orch = Orch::new(None);
    let added = orch.ok(&["user", "add", "ada", "--tracker-id", "github:583231"]);
    let token = token_of(&added);
    assert_eq!(token.len(), "orch_".len() + 64);
    let db = std::fs::read(orch.path().join("orch.db")).expect("the store");
    assert!(
        !String::from_utf8_lossy(&db).contains(&token),
        "the token itself is never stored"
    );
    let listed = people(&orch);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "ada");
    assert_eq!(listed[0]["active"], true);
    assert_eq!(listed[0]["tracker_accounts"][0], "github:583231");
    assert!(
        !orch.ok(&["user", "list"]).contains(&token),
        "never shown again"
    );

    let again = orch.run(&["user", "add", "ada"]);
    assert!(
        !again.status.success(),
        "an active person keeps their token"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoke"));
    for bad in [
        vec!["user", "add", "Ada Lovelace"],
        vec!["user", "add", "automation"],
        vec!["user", "add", "bob", "--tracker-id", "octocat"],
        vec!["user", "revoke", "nobody"],
    ] {
        let out = orch.run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?} is a usage error");
    }

    orch.ok(&["user", "revoke", "ada"]);
    assert_eq!(people(&orch)[0]["active"], false);
    let readded = token_of(&orch.ok(&["user", "add", "ada"]));
    assert_ne!(readded, token, "a new token");
    assert_eq!(people(&orch)[0]["active"], true);
}
