//! The JSON API: health, authentication, and the board's commands over HTTP.

use serde_json::json;

use crate::support::{Request, Server, TOKEN};

#[tokio::test]
async fn healthz_answers_ok_without_a_token() {
    let server = Server::start().await;
    let response = server.send(Request::get("/healthz")).await;
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    server.stop().await;
}

#[tokio::test]
async fn api_requires_the_configured_token() {
    let server = Server::start().await;
    let none = server.send(Request::get("/api/v1/items")).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert!(none.error().contains("Authorization: Bearer"), "{none:?}");
    let wrong = server
        .send(Request::get("/api/v1/items").token("test-api-tokeX"))
        .await;
    assert_eq!(wrong.status, 401);
    let prefix = server
        .send(Request::get("/api/v1/items").token(&TOKEN[..4]))
        .await;
    assert_eq!(prefix.status, 401, "a prefix of the token is not the token");
    let wrong_post = server
        .send(
            Request::post("/api/v1/items")
                .token("nope")
                .json(&json!({"title": "x"})),
        )
        .await;
    assert_eq!(wrong_post.status, 401);
    let right = server
        .send(Request::get("/api/v1/items").token(TOKEN))
        .await;
    assert_eq!(right.status, 200, "{right:?}");
    assert_eq!(right.json(), json!([]));
    assert!(
        !wrong.body.contains(TOKEN) && !none.body.contains(TOKEN),
        "errors never echo the token"
    );
}

#[tokio::test]
async fn without_a_configured_token_reads_work_and_writes_are_refused() {
    let server = Server::start_with(|state| state).await;
    let read = server.send(Request::get("/api/v1/items")).await;
    assert_eq!(read.status, 200, "{read:?}");
    let write = server
        .send(Request::post("/api/v1/items").json(&json!({"title": "x"})))
        .await;
    assert_eq!(write.status, 403, "{write:?}");
    assert!(write.error().contains("orch serve --help"), "{write:?}");
    let listed = server.send(Request::get("/api/v1/items")).await;
    assert_eq!(listed.json(), json!([]), "the refused write filed nothing");
}

#[tokio::test]
async fn create_list_show_and_stop_an_item() {
    let server = Server::start().await;
    let created =
        server
            .send(Request::post("/api/v1/items").token(TOKEN).json(
                &json!({"project": "quick", "title": "Change the greeting", "body": "Say hi"}),
            ))
            .await;
    assert_eq!(created.status, 201, "{created:?}");
    let item = created.json();
    assert_eq!(item["id"], "QUICK-1");
    assert_eq!(item["stage"], "analysis");
    assert_eq!(item["status"], "queued");

    // `curl -d` sends a form content type; the body is read as JSON anyway.
    let second = server
        .send(
            Request::post("/api/v1/items")
                .token(TOKEN)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(r#"{"title": "Second"}"#),
        )
        .await;
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(
        second.json()["project"],
        "quick",
        "the only project is the default"
    );

    let listed = server
        .send(Request::get("/api/v1/items?project=quick").token(TOKEN))
        .await;
    let ids: Vec<_> = listed
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("QUICK-1"), json!("QUICK-2")]);

    let shown = server
        .send(Request::get("/api/v1/items/QUICK-1").token(TOKEN))
        .await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let detail = shown.json();
    assert_eq!(detail["title"], "Change the greeting");
    assert_eq!(detail["body"], "Say hi");
    assert_eq!(detail["runs"][0]["stage"], "analysis");
    assert_eq!(detail["runs"][0]["state"], "queued");
    assert_eq!(detail["events"][0]["kind"], "item.created");

    // alice acts with her own token; the body cannot name someone else.
    let alice = orch_server::people::new_token().expect("token");
    server
        .state
        .engine()
        .store()
        .add_person("alice", &orch_server::people::token_sha256(&alice))
        .await
        .expect("alice");
    let impersonating = server
        .send(
            Request::post("/api/v1/items/QUICK-1/stop")
                .token(&alice)
                .json(&json!({"by": "bob"})),
        )
        .await;
    assert_eq!(impersonating.status, 400, "{impersonating:?}");
    let stopped = server
        .send(
            Request::post("/api/v1/items/QUICK-1/stop")
                .token(&alice)
                .json(&json!({"by": "alice"})),
        )
        .await;
    assert_eq!(stopped.status, 200, "{stopped:?}");
    let after = server
        .send(Request::get("/api/v1/items/QUICK-1").token(TOKEN))
        .await
        .json();
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(after["runs"][0]["state"], "cancelled");
    let stop_event = after["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "item.stopped")
        .unwrap_or_else(|| panic!("a stop event in {after}"));
    assert_eq!(stop_event["data"]["by"], "alice");
    assert_eq!(stop_event["data"]["by_kind"], "person");

    let again = server
        .send(Request::post("/api/v1/items/QUICK-1/stop").token(TOKEN))
        .await;
    assert_eq!(
        again.status, 409,
        "a cancelled item cannot be stopped again: {again:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn refused_transitions_are_409_and_unknown_items_404() {
    let server = Server::start().await;
    server
        .send(
            Request::post("/api/v1/items")
                .token(TOKEN)
                .json(&json!({"title": "Waits at analysis"})),
        )
        .await;
    let approve = server
        .send(
            Request::post("/api/v1/items/QUICK-1/approve")
                .token(TOKEN)
                .json(&json!({"by": "automation"})),
        )
        .await;
    assert_eq!(approve.status, 409, "{approve:?}");
    assert!(approve.error().contains("QUICK-1"), "{approve:?}");
    let retry = server
        .send(
            Request::post("/api/v1/items/QUICK-1/retry")
                .token(TOKEN)
                .json(&json!({"answer": "use port 8080"})),
        )
        .await;
    assert_eq!(retry.status, 409, "a queued item is not blocked: {retry:?}");
    let shown = server
        .send(Request::get("/api/v1/items/QUICK-1").token(TOKEN))
        .await
        .json();
    assert_eq!(
        shown["status"], "queued",
        "refusals change nothing: {shown}"
    );

    let missing = server
        .send(Request::get("/api/v1/items/QUICK-99").token(TOKEN))
        .await;
    assert_eq!(missing.status, 404, "{missing:?}");
    let missing_stop = server
        .send(Request::post("/api/v1/items/QUICK-99/stop").token(TOKEN))
        .await;
    assert_eq!(missing_stop.status, 404, "{missing_stop:?}");
    let unknown_project = server
        .send(
            Request::post("/api/v1/items")
                .token(TOKEN)
                .json(&json!({"project": "other", "title": "x"})),
        )
        .await;
    assert_eq!(unknown_project.status, 404, "{unknown_project:?}");
}

#[tokio::test]
async fn bad_input_is_400_with_a_json_error() {
    let server = Server::start().await;
    for path in [
        "/api/v1/items/..%2Fx",
        "/api/v1/items/..%2F..%2Fetc",
        "/api/v1/items/not%20an%20id",
    ] {
        let response = server.send(Request::get(path).token(TOKEN)).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert!(response.error().contains("item id"), "{path}: {response:?}");
    }
    let bad_stop = server
        .send(Request::post("/api/v1/items/..%2Fx/stop").token(TOKEN))
        .await;
    assert_eq!(bad_stop.status, 400, "{bad_stop:?}");
    let cases = [
        ("not json", "not JSON"),
        (r#"{"body": "no title"}"#, "missing title"),
        (r#"{"title": "   "}"#, "blank title"),
        (r#"{"title": "x", "colour": "red"}"#, "unknown field"),
        (r#"{"title": "x", "project": "../up"}"#, "bad project name"),
    ];
    for (body, why) in cases {
        let response = server
            .send(Request::post("/api/v1/items").token(TOKEN).body(body))
            .await;
        assert_eq!(response.status, 400, "{why}: {response:?}");
        response.error();
    }
    let bad_query = server
        .send(Request::get("/api/v1/items?project=..%2Fx").token(TOKEN))
        .await;
    assert_eq!(bad_query.status, 400, "{bad_query:?}");
    let listed = server
        .send(Request::get("/api/v1/items").token(TOKEN))
        .await;
    assert_eq!(listed.json(), json!([]), "nothing was filed");
}
