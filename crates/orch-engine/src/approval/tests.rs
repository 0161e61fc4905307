use orch_core::pipeline::{DEFAULT_PIPELINE_TOML, Pipeline};
use orch_core::{ItemId, ProjectId, StageName};
use orch_store::{EventRecord, RunRecord, RunState};
use serde_json::{Value, json};

use super::*;

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn pipeline() -> Pipeline {
    Pipeline::from_toml(DEFAULT_PIPELINE_TOML).expect("default pipeline")
}

fn run(id: i64, stage: &str, state: RunState) -> RunRecord {
    RunRecord {
        id,
        item: ItemId::parse("QUICK-1").expect("item id"),
        project: ProjectId::parse("quick").expect("project id"),
        stage: StageName::parse(stage).expect("stage name"),
        attempt: 1,
        state,
        epoch: 1,
        lease: None,
        feedback: Vec::new(),
        checkpoint: Value::Null,
        verdict: Some(json!({ "sha": SHA_A })),
        usage: None,
        created_at: 0,
        started_at: None,
        finished_at: None,
    }
}

fn event(seq: i64, kind: &str, data: Value) -> EventRecord {
    EventRecord {
        item: ItemId::parse("QUICK-1").expect("item id"),
        seq,
        at: 0,
        kind: kind.to_owned(),
        run_id: None,
        data,
    }
}

#[test]
fn agents_never_approve_and_a_list_of_approvers_is_enforced() {
    let person = |name: &str| Actor::Person(name.to_owned());
    for agent in ["scripted", "command", "claude", "Codex", "agent:developer"] {
        let refusal = refuse_approver(&person(agent), &[]).expect("an agent is refused");
        assert!(refusal.contains("names an agent"), "{refusal}");
    }
    assert_eq!(
        refuse_approver(&person("alice"), &[]),
        None,
        "no list: any person"
    );
    let approvers = vec!["alice".to_owned(), "bob".to_owned()];
    assert_eq!(refuse_approver(&person("bob"), &approvers), None);
    let refusal = refuse_approver(&person("mallory"), &approvers).expect("not on the list");
    assert!(
        refusal.contains("its approvers are: alice, bob"),
        "{refusal}"
    );
    assert!(
        refuse_approver(&person("  "), &[]).is_some(),
        "a name is required"
    );
}

#[test]
fn automation_and_unlinked_tracker_accounts_are_not_people() {
    let service = Actor::Service("automation".into());
    let refusal = refuse_approver(&service, &[]).expect("automation is no approver by default");
    assert!(refusal.contains("automation token"), "{refusal}");
    assert_eq!(
        refuse_approver(&service, &["automation".to_owned()]),
        None,
        "unless the project lists it"
    );
    let account = Actor::TrackerAccount {
        account: "plane:0c7e".into(),
        login: "alice".into(),
    };
    assert_eq!(
        refuse_approver(&account, &[]),
        None,
        "no list: anyone the tracker lets move the item"
    );
    let refusal = refuse_approver(&account, &["alice".to_owned()])
        .expect("a display name that reads `alice` is not alice");
    assert!(refusal.contains("--tracker-id plane:0c7e"), "{refusal}");
}

#[test]
fn only_the_latest_passed_staging_run_with_nothing_after_it_can_be_approved() {
    let p = pipeline();
    let ok = [
        run(1, "development", RunState::Passed),
        run(2, "deploy-staging", RunState::Passed),
        run(3, "confirm-deploy", RunState::Waiting),
    ];
    assert_eq!(validated_staging(&p, &ok).map(|r| r.id), Ok(2));

    let none = [run(1, "development", RunState::Passed)];
    assert!(validated_staging(&p, &none).is_err_and(|e| e.contains("no deploy-staging run")));

    let failed = [
        run(1, "deploy-staging", RunState::Passed),
        run(2, "development", RunState::Passed),
        run(3, "deploy-staging", RunState::Failed),
    ];
    assert!(validated_staging(&p, &failed).is_err_and(|e| e.contains("not passed")));

    let rolled_back = [
        run(1, "deploy-staging", RunState::Passed),
        run(2, "confirm-deploy", RunState::Passed),
        run(3, "deploy", RunState::Failed),
        run(4, "development", RunState::Running),
    ];
    assert!(validated_staging(&p, &rolled_back).is_err_and(|e| e.contains("deploy run followed")));
}

#[test]
fn a_deploy_is_covered_only_by_an_approval_of_its_own_sha() {
    let p = pipeline();
    assert!(approval_covers(&p, &[], SHA_A).is_err_and(|e| e.contains("no approval")));
    let approved_a = [event(
        1,
        events::APPROVED,
        json!({ "by": "alice", "sha": SHA_A }),
    )];
    assert_eq!(approval_covers(&p, &approved_a, SHA_A), Ok(()));
    let refusal = approval_covers(&p, &approved_a, SHA_B).expect_err("another SHA");
    assert!(
        refusal.contains(&format!("given for {SHA_A}, but {SHA_B}")),
        "{refusal}"
    );

    let newer_b = [
        event(1, events::APPROVED, json!({ "sha": SHA_A })),
        event(2, events::APPROVED, json!({ "sha": SHA_B })),
    ];
    assert!(
        approval_covers(&p, &newer_b, SHA_A).is_err(),
        "the latest approval decides"
    );
    let no_sha = [event(1, events::APPROVED, json!({ "sha": null }))];
    assert!(approval_covers(&p, &no_sha, SHA_A).is_err());
}

#[test]
fn a_pipeline_without_an_approval_stage_needs_no_approval() {
    let text = DEFAULT_PIPELINE_TOML
        .replace("on_pass = \"confirm-deploy\"", "on_pass = \"deploy\"")
        .replace(
            "[[stages]]\nname = \"confirm-deploy\"\nkind = \"approval\"\non_pass = \"deploy\"\n\n",
            "",
        );
    let without = Pipeline::from_toml(&text).expect("a pipeline without approval");
    assert!(
        without
            .stages()
            .iter()
            .all(|s| s.kind != StageKind::Approval)
    );
    assert_eq!(approval_covers(&without, &[], SHA_A), Ok(()));
}

#[test]
fn an_approval_expires_after_its_ttl_and_only_then() {
    let approved_at_10s = [EventRecord {
        at: 10_000,
        ..event(1, events::APPROVED, json!({ "by": "alice", "sha": SHA_A }))
    }];
    let ttl = Some(std::time::Duration::from_secs(60));
    assert_eq!(approval_expired(&approved_at_10s, ttl, 70_000), None);
    let expired = approval_expired(&approved_at_10s, ttl, 70_001).expect("expired");
    assert!(
        expired.contains("approval by alice expired") && expired.contains("last 60 s"),
        "{expired}"
    );
    // Without a TTL approvals do not expire; without an approval there is nothing to expire.
    assert_eq!(approval_expired(&approved_at_10s, None, i64::MAX), None);
    assert_eq!(approval_expired(&[], ttl, 70_001), None);
}

#[test]
fn a_promotion_sent_back_for_reapproval_keeps_the_staging_validation() {
    let p = pipeline();
    let mut reapproved = run(3, "deploy", RunState::Failed);
    reapproved.verdict = Some(json!({ "class": "reapprove" }));
    let runs = [
        run(1, "deploy-staging", RunState::Passed),
        run(2, "confirm-deploy", RunState::Passed),
        reapproved,
        run(4, "confirm-deploy", RunState::Waiting),
    ];
    assert_eq!(validated_staging(&p, &runs).map(|r| r.id), Ok(1));
}

#[test]
fn an_approval_carries_over_to_a_new_candidate_of_the_same_change_only() {
    let approved = [event(
        1,
        events::APPROVED,
        json!({ "by": "alice", "sha": SHA_A, "change_id": "c1" }),
    )];
    let staging = |sha: &str, change: &str| json!({ "sha": sha, "change_id": change });
    // Re-integrated onto a new tip, same change: carried.
    let carried = carried_approval(&approved, &staging(SHA_B, "c1"), false).expect("carried");
    assert_eq!(carried.data["by"], "alice");
    // A new change (the developer committed again): a person approves again.
    assert!(carried_approval(&approved, &staging(SHA_B, "c2"), false).is_none());
    // The very candidate it was given for: nothing to carry, it already holds.
    assert!(carried_approval(&approved, &staging(SHA_A, "c1"), false).is_none());
    // The project asks for a new approval on every re-integration.
    assert!(carried_approval(&approved, &staging(SHA_B, "c1"), true).is_none());
    // A validation without a change id (or no approval at all) carries nothing.
    assert!(carried_approval(&approved, &json!({ "sha": SHA_B }), false).is_none());
    assert!(carried_approval(&[], &staging(SHA_B, "c1"), false).is_none());
}

#[test]
fn a_carried_approval_keeps_the_age_of_the_persons_approval() {
    let carried = [EventRecord {
        at: 100_000,
        ..event(
            2,
            events::APPROVED,
            json!({ "by": "alice", "sha": SHA_B, GIVEN_AT: 10_000 }),
        )
    }];
    let ttl = Some(std::time::Duration::from_secs(60));
    assert!(approval_expired(&carried, ttl, 70_001).is_some());
    assert_eq!(approval_expired(&carried, ttl, 70_000), None);
}
