//! Attacks on who acts through the API and the dashboard: an approver named by the caller, a
//! person not on `approvers`, a read-only dashboard that shows too much, a DNS-rebound host, a
//! login guessed at speed, a session cookie sent in clear, a proxy's user header from anywhere.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::attacks::{file, gitea, status};
use crate::support::{Request, Server, TOKEN, await_approval};

#[tokio::test]
async fn the_api_does_not_take_the_approver_from_the_body() {
    use orch_server::people::{new_token, token_sha256};

    let setup = gitea(&["ada"]).await;
    let (_, item) = file(&setup, "grace").await;
    await_approval(setup.server.state.engine(), &item, "abc123").await;
    let approve = |token: &str, body: serde_json::Value| {
        Request::post(format!("/api/v1/items/{item}/approve"))
            .token(token)
            .json(&body)
    };
    // The automation token naming ada: refused, it is not ada.
    let answer = setup
        .server
        .send(approve(TOKEN, json!({ "by": "ada" })))
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    // Nor is it an approver when it names itself.
    let answer = setup.server.send(approve(TOKEN, json!({}))).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert!(answer.error().contains("automation token"), "{answer:?}");
    // Mallory with her own token: a person, not an approver.
    let store = setup.server.state.engine().store();
    let (ada, mallory) = (new_token().expect("t"), new_token().expect("t"));
    store
        .add_person("ada", &token_sha256(&ada))
        .await
        .expect("ada");
    store
        .add_person("mallory", &token_sha256(&mallory))
        .await
        .expect("mallory");
    let answer = setup
        .server
        .send(approve(&mallory, json!({ "by": "ada" })))
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let answer = setup.server.send(approve(&mallory, json!({}))).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(status(&setup.server, &item).await, "awaiting-approval");
    // A revoked token opens nothing.
    store.revoke_person("ada").await.expect("revoke");
    let answer = setup.server.send(approve(&ada, json!({}))).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    // Ada, with a new token: approved, recorded as her.
    let ada = new_token().expect("t");
    store
        .add_person("ada", &token_sha256(&ada))
        .await
        .expect("ada again");
    let answer = setup.server.send(approve(&ada, json!({}))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let granted = store
        .list_events(&item, 0)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "approval.granted")
        .expect("approved");
    assert_eq!(
        (granted.data["by"].clone(), granted.data["by_kind"].clone()),
        (json!("ada"), json!("person"))
    );
}

#[tokio::test]
async fn the_dashboard_acts_as_the_person_who_logged_in() {
    use orch_server::people::{new_token, token_sha256};

    let setup = gitea(&["ada"]).await;
    let server = &setup.server;
    let (_, item) = file(&setup, "grace").await;
    await_approval(server.state.engine(), &item, "abc123").await;
    let store = server.state.engine().store();
    let (ada, mallory) = (new_token().expect("t"), new_token().expect("t"));
    store
        .add_person("ada", &token_sha256(&ada))
        .await
        .expect("ada");
    store
        .add_person("mallory", &token_sha256(&mallory))
        .await
        .expect("mallory");
    async fn approve_as(
        server: &Server,
        item: &orch_core::ItemId,
        token: String,
    ) -> crate::support::Response {
        let answer = server
            .send(
                Request::post("/login")
                    .header("Origin", format!("http://{}", server.addr))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(format!("token={token}")),
            )
            .await;
        assert_eq!(answer.status, 303, "{answer:?}");
        let cookie = answer
            .header("set-cookie")
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let page = server
            .send(Request::get(format!("/items/{item}")).header("Cookie", cookie.clone()))
            .await;
        let at = page.body.find("name=\"csrf\" value=\"").expect("csrf") + 19;
        let csrf = page.body[at..].split('"').next().expect("value").to_owned();
        server
            .send(
                Request::post(format!("/items/{item}/approve"))
                    .header("Origin", format!("http://{}", server.addr))
                    .header("Cookie", cookie)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(format!("csrf={csrf}")),
            )
            .await
    }
    let refused = approve_as(server, &item, mallory).await;
    assert_eq!(refused.status, 409, "mallory is no approver: {refused:?}");
    assert_eq!(status(server, &item).await, "awaiting-approval");
    let approved = approve_as(server, &item, ada).await;
    assert_eq!(approved.status, 303, "{approved:?}");
    let granted = store
        .list_events(&item, 0)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "approval.granted")
        .expect("approved");
    assert_eq!(granted.data["by"], "ada");
}

#[tokio::test]
async fn a_read_only_dashboard_shows_no_artifact_text_and_no_log() {
    let server = Server::start_with(|s| s).await;
    let engine = Arc::clone(server.state.engine());
    let project = orch_core::ProjectId::parse("quick").expect("id");
    let item = engine
        .create_item(&project, "Secret work", "")
        .await
        .expect("item");
    let p = engine.project(&project).expect("project");
    let dir = p
        .settings
        .repo
        .join(orch_engine::project::artifact_dir(&item.id));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("01-analysis.md"),
        "---\nanalysis_status: READY\n---\nTHE-ARTIFACT-TEXT\n",
    )
    .expect("artifact");
    let log = p.run_log(&item.id, "analysis", 1);
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "THE-LOG-TEXT\n").expect("log");

    let page = server
        .send(Request::get(format!("/items/{}", item.id)))
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Secret work"), "the item itself shows");
    assert!(!page.body.contains("THE-ARTIFACT-TEXT"), "{}", page.body);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        server.send(Request::get(format!("/items/{}/log/stream", item.id))),
    )
    .await
    .expect("a refused stream ends at once");
    assert_eq!(stream.status, 403, "{stream:?}");
    assert!(!stream.body.contains("THE-LOG-TEXT"), "{stream:?}");

    // The operator opted in: the same pages show it all.
    let open = Server::start_with(|s| s.with_public_content(true)).await;
    let engine = Arc::clone(open.state.engine());
    let item = engine
        .create_item(&project, "Open work", "")
        .await
        .expect("item");
    let p = engine.project(&project).expect("project");
    let dir = p
        .settings
        .repo
        .join(orch_engine::project::artifact_dir(&item.id));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("01-analysis.md"), "---\nx: y\n---\nSHOWN-TEXT\n").expect("artifact");
    let page = open.send(Request::get(format!("/items/{}", item.id))).await;
    assert!(page.body.contains("SHOWN-TEXT"), "{}", page.body);
}

#[tokio::test]
async fn a_host_that_is_not_configured_is_refused() {
    let server = Server::start_with(|s| s).await;
    let rebound = server
        .send(Request::get("/").header("Host", format!("evil.example:{}", server.addr.port())))
        .await;
    assert_eq!(
        rebound.status, 421,
        "a DNS-rebound request is refused: {rebound:?}"
    );
    let api = server
        .send(Request::get("/api/v1/items").header("Host", "evil.example".to_owned()))
        .await;
    assert_eq!(api.status, 421, "{api:?}");
    let local = server
        .send(Request::get("/").header("Host", format!("localhost:{}", server.addr.port())))
        .await;
    assert_eq!(local.status, 200, "{local:?}");
    let named = Server::start_with(|s| s.with_allowed_hosts(vec!["orch.example.com".into()])).await;
    let answer = named
        .send(Request::get("/").header("Host", "orch.example.com".to_owned()))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn the_login_is_rate_limited() {
    let server = Server::start().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = server
            .send(
                Request::post("/login")
                    .header("Origin", format!("http://{}", server.addr))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body("token=a-guess"),
            )
            .await;
        statuses.push(answer.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses[..5].iter().all(|s| *s == 401),
        "five tries are answered: {statuses:?}"
    );
    // Even the right token waits out the window.
    let right = server
        .send(
            Request::post("/login")
                .header("Origin", format!("http://{}", server.addr))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("token={TOKEN}")),
        )
        .await;
    assert_eq!(right.status, 429, "{right:?}");
    assert!(right.header("retry-after").is_some());
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_a_tls_proxy() {
    let server = Server::start_with(|s| {
        s.with_api_token(TOKEN)
            .with_trusted_proxies(vec!["127.0.0.1".parse().expect("ip")])
    })
    .await;
    let login = |proto: Option<&str>| {
        let request = Request::post("/login")
            .header("Origin", format!("http://{}", server.addr))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={TOKEN}"));
        match proto {
            Some(p) => request.header("X-Forwarded-Proto", p.to_owned()),
            None => request,
        }
    };
    let plain = server.send(login(None)).await;
    assert!(
        !plain
            .header("set-cookie")
            .expect("cookie")
            .contains("Secure")
    );
    let tls = server.send(login(Some("https"))).await;
    assert!(
        tls.header("set-cookie")
            .expect("cookie")
            .contains("; Secure"),
        "{tls:?}"
    );
    // From an address that is no listed proxy, the header counts for nothing.
    let untrusted = Server::start_with(|s| s.with_api_token(TOKEN)).await;
    let answer = untrusted
        .send(
            Request::post("/login")
                .header("Origin", format!("http://{}", untrusted.addr))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Forwarded-Proto", "https")
                .body(format!("token={TOKEN}")),
        )
        .await;
    assert!(
        !answer
            .header("set-cookie")
            .expect("cookie")
            .contains("Secure")
    );
}

#[tokio::test]
async fn an_authenticating_proxy_logs_people_in_only_from_its_address() {
    use orch_server::people::{new_token, token_sha256};

    let proxied = Server::start_with(|s| {
        s.with_api_token(TOKEN)
            .with_trusted_proxies(vec!["127.0.0.1".parse().expect("ip")])
            .with_proxy_auth(true)
    })
    .await;
    let store = proxied.state.engine().store();
    store
        .add_person("ada", &token_sha256(&new_token().expect("t")))
        .await
        .expect("ada");
    let as_user = |server: &Server, user: &str| {
        Request::get("/login")
            .header("X-Auth-Request-User", user.to_owned())
            .header("Host", format!("{}", server.addr))
    };
    let answer = proxied.send(as_user(&proxied, "ada")).await;
    assert_eq!(answer.status, 303, "{answer:?}");
    let cookie = answer.header("set-cookie").expect("a session").to_owned();
    let page = proxied
        .send(
            Request::get("/").header("Cookie", cookie.split(';').next().expect("pair").to_owned()),
        )
        .await;
    assert_eq!(page.status, 200, "the session opens the board: {page:?}");
    let stranger = proxied.send(as_user(&proxied, "mallory")).await;
    assert_eq!(stranger.status, 403, "{stranger:?}");
    assert!(stranger.header("set-cookie").is_none());

    // Without the proxy listed, the same header is only a header.
    let direct = Server::start_with(|s| s.with_api_token(TOKEN).with_proxy_auth(true)).await;
    direct
        .state
        .engine()
        .store()
        .add_person("ada", &token_sha256(&new_token().expect("t")))
        .await
        .expect("ada");
    let answer = direct.send(as_user(&direct, "ada")).await;
    assert_eq!(answer.status, 200, "the login form, no session: {answer:?}");
    assert!(answer.header("set-cookie").is_none());
}
