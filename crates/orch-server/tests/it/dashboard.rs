//! The dashboard: login, the board, the item page, the forms' CSRF and origin checks, the live
//! log over server-sent events.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Request, Response, Server, TOKEN};

/// Logs in with `token`; the response of the login POST.
async fn login(server: &Server, token: &str) -> Response {
    server
        .send(
            Request::post("/login")
                .header("Origin", format!("http://{}", server.addr))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("token={token}")),
        )
        .await
}

/// A session cookie (`orch_session=...`) from a successful login.
async fn session(server: &Server) -> String {
    let response = login(server, TOKEN).await;
    assert_eq!(response.status, 303, "{response:?}");
    let cookie = response.header("set-cookie").expect("a cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

/// The CSRF token in the page's forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().expect("value").to_owned()
}

async fn file_item(server: &Server) -> String {
    let created = server
        .send(
            Request::post("/api/v1/items")
                .token(TOKEN)
                .json(&json!({"title": "Show <b>me</b>"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    created.json()["id"].as_str().expect("id").to_owned()
}

fn form_post(server: &Server, path: &str, cookie: &str, body: &str) -> Request<'static> {
    Request::post(path.to_owned())
        .header("Origin", format!("http://{}", server.addr))
        .header("Cookie", cookie.to_owned())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
}

#[tokio::test]
async fn pages_need_a_session_which_the_token_opens_and_the_cookie_never_holds() {
    let server = Server::start().await;
    let anonymous = server.send(Request::get("/")).await;
    assert_eq!(anonymous.status, 303, "{anonymous:?}");
    assert_eq!(anonymous.header("location"), Some("/login"));

    let wrong = login(&server, "not-the-token").await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.header("set-cookie").is_none());

    let foreign = server
        .send(
            Request::post("/login")
                .header("Origin", "http://evil.example")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("token={TOKEN}")),
        )
        .await;
    assert_eq!(
        foreign.status, 403,
        "a login from a foreign page is refused"
    );

    let response = login(&server, TOKEN).await;
    let set_cookie = response.header("set-cookie").expect("a cookie");
    assert!(
        !set_cookie.contains(TOKEN),
        "the cookie must not hold the token"
    );
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));

    let cookie = session(&server).await;
    let forged = format!("{}0", cookie);
    let refused = server
        .send(Request::get("/").header("Cookie", forged))
        .await;
    assert_eq!(refused.status, 303, "a tampered cookie is no session");

    let board = server
        .send(Request::get("/").header("Cookie", cookie))
        .await;
    assert_eq!(board.status, 200, "{board:?}");
    assert!(
        board
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("default-src 'self'"))
    );
    server.stop().await;
}

#[tokio::test]
async fn the_board_has_a_column_per_stage_and_escapes_titles() {
    let server = Server::start().await;
    let id = file_item(&server).await;
    let cookie = session(&server).await;
    let board = server
        .send(Request::get("/").header("Cookie", cookie))
        .await;
    assert_eq!(board.status, 200);
    let columns: Vec<&str> = board
        .body
        .split("data-stage=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        columns,
        [
            "analysis",
            "architecture",
            "development",
            "review",
            "qa",
            "deploy-staging",
            "confirm-deploy",
            "deploy",
            "finished"
        ]
    );
    let analysis = board
        .body
        .split("data-stage=\"analysis\"")
        .nth(1)
        .expect("column");
    let analysis = analysis
        .split("data-stage=")
        .next()
        .expect("until the next column");
    assert!(
        analysis.contains(&format!("data-item=\"{id}\"")),
        "{analysis}"
    );
    assert!(board.body.contains("Show &lt;b&gt;me&lt;/b&gt;"));
    assert!(!board.body.contains("<b>me</b>"), "titles are escaped");
    server.stop().await;
}

#[tokio::test]
async fn forms_need_the_origin_the_session_and_the_csrf_token() {
    let server = Server::start().await;
    let id = file_item(&server).await;
    let cookie = session(&server).await;
    let page = server
        .send(Request::get(format!("/items/{id}")).header("Cookie", cookie.clone()))
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("id=\"stop-button\""),
        "a queued item can be stopped"
    );
    assert!(
        !page.body.contains("id=\"approve-button\""),
        "it does not wait for approval"
    );
    let csrf = csrf_of(&page.body);
    let stop = format!("/items/{id}/stop");

    let no_csrf = server.send(form_post(&server, &stop, &cookie, "")).await;
    assert_eq!(no_csrf.status, 403, "{no_csrf:?}");
    let wrong_csrf = server
        .send(form_post(&server, &stop, &cookie, "csrf=00ff"))
        .await;
    assert_eq!(wrong_csrf.status, 403);
    let foreign = server
        .send(
            Request::post(stop.clone())
                .header("Origin", "http://evil.example")
                .header("Cookie", cookie.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}")),
        )
        .await;
    assert_eq!(foreign.status, 403, "a cross-origin POST is refused");
    let no_session = server
        .send(form_post(
            &server,
            &stop,
            "orch_session=x",
            &format!("csrf={csrf}"),
        ))
        .await;
    assert_eq!(no_session.status, 401);
    let item = server
        .send(Request::get(format!("/api/v1/items/{id}")).token(TOKEN))
        .await;
    assert_eq!(
        item.json()["status"],
        "queued",
        "no refused form changed anything"
    );

    let stopped = server
        .send(form_post(&server, &stop, &cookie, &format!("csrf={csrf}")))
        .await;
    assert_eq!(stopped.status, 303, "{stopped:?}");
    assert_eq!(
        stopped.header("location"),
        Some(format!("/items/{id}").as_str())
    );
    let item = server
        .send(Request::get(format!("/api/v1/items/{id}")).token(TOKEN))
        .await;
    assert_eq!(item.json()["status"], "cancelled");

    let refused = server
        .send(form_post(
            &server,
            &format!("/items/{id}/approve"),
            &cookie,
            &format!("csrf={csrf}"),
        ))
        .await;
    assert_eq!(
        refused.status, 409,
        "approving a cancelled item: {refused:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_the_dashboard_only_shows() {
    let server = Server::start_with(|state| state).await;
    let board = server.send(Request::get("/")).await;
    assert_eq!(board.status, 200, "{board:?}");
    assert!(board.body.contains("read-only"));
    let created = server.send(Request::get("/items/QUICK-1")).await;
    assert_eq!(created.status, 404, "{created:?}");
    let post = server
        .send(
            Request::post("/items/QUICK-1/stop")
                .header("Origin", format!("http://{}", server.addr))
                .body("csrf=x"),
        )
        .await;
    assert_eq!(post.status, 403, "{post:?}");
    server.stop().await;
}

/// One client following a streamed response on one connection.
struct Follower {
    stream: tokio::net::TcpStream,
    seen: Vec<u8>,
}

impl Follower {
    async fn open(server: &Server, path: &str, cookie: &str) -> Self {
        let mut stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            server.addr
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        Self {
            stream,
            seen: Vec::new(),
        }
    }

    /// Reads until `until` appears in what was received so far, and returns all of it; fails
    /// after 10 s (a deadline for a broken stream, not a bet on its timing).
    async fn read_until(&mut self, until: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&self.seen).contains(until) {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => panic!(
                    "the stream ended before `{until}`: {}",
                    String::from_utf8_lossy(&self.seen)
                ),
                Ok(Ok(n)) => self.seen.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!("reading the stream: {e}"),
                Err(_) => panic!(
                    "`{until}` never arrived: {}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

/// Reads a streamed (chunked) response until `until` appears in it or `limit` passes.
async fn read_stream(
    server: &Server,
    path: &str,
    cookie: &str,
    until: &str,
    limit: Duration,
) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("reading the stream: {e}"),
        }
        if String::from_utf8_lossy(&seen).contains(until) {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn the_log_streams_new_lines_and_ends_with_the_run() {
    let server = Server::start().await;
    let id = file_item(&server).await;
    let cookie = session(&server).await;
    let log = server
        .data_dir()
        .join(format!("logs/quick/{id}/analysis-1.log"));
    std::fs::create_dir_all(log.parent().expect("dir")).expect("mkdir");
    std::fs::write(&log, "first line\n").expect("write");
    let path = format!("/items/{id}/log/stream");

    let started = read_stream(
        &server,
        &path,
        &cookie,
        "first line",
        Duration::from_secs(5),
    )
    .await;
    assert!(started.contains("text/event-stream"), "{started}");
    assert!(
        started.contains("event: run\ndata: analysis 1"),
        "{started}"
    );
    assert!(started.contains("data: first line"), "{started}");

    // A line appended while a client follows arrives; the stop ends the run and the stream. Each
    // step waits for what the stream sent, not for a pause: the line is appended only after the
    // stream has sent the file's first line, so it can only arrive as an appended one.
    let mut follower = Follower::open(&server, &path, &cookie).await;
    follower.read_until("data: first line").await;
    let mut text = std::fs::read_to_string(&log).expect("read");
    text.push_str("second line\n");
    std::fs::write(&log, text).expect("append");
    let streamed = follower.read_until("data: second line").await;
    assert_eq!(
        streamed.matches("data: first line").count(),
        1,
        "the first line is not sent again: {streamed}"
    );
    server
        .state
        .engine()
        .stop(&orch_core::ItemId::parse(&id).expect("id"), "test")
        .await
        .expect("stop");
    let streamed = follower.read_until("event: end").await;
    assert!(
        streamed.contains("event: end\ndata: cancelled"),
        "{streamed}"
    );

    let anonymous = server.send(Request::get(path)).await;
    assert_eq!(anonymous.status, 303, "the stream needs a session too");
    server.stop().await;
}

#[tokio::test]
async fn an_open_log_stream_does_not_hold_the_shutdown() {
    let server = Server::start().await;
    let id = file_item(&server).await;
    let cookie = session(&server).await;
    let (addr, path) = (server.addr, format!("/items/{id}/log/stream"));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).await.expect("the stream starts");
    assert!(String::from_utf8_lossy(&first[..n]).contains("200 OK"));
    // The run is queued, so the stream would follow it indefinitely; the shutdown ends it.
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stops although a stream is open");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert!(String::from_utf8_lossy(&rest).contains("server stopping"));
}

#[tokio::test]
async fn the_projects_page_probes_staging_and_prod() {
    let server = Server::start().await;
    let cookie = session(&server).await;
    let page = server
        .send(Request::get("/projects").header("Cookie", cookie))
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    // The test project's ports are never bound: both instances are down, and the page says why.
    assert!(page.body.contains("<code>/healthz</code>"), "{}", page.body);
    assert_eq!(
        page.body.matches("class=\"health down\"").count(),
        2,
        "{}",
        page.body
    );
    assert!(page.body.contains(":18511") && page.body.contains(":18510"));
    server.stop().await;
}

#[tokio::test]
async fn an_artifact_linked_to_the_environment_or_a_fifo_shows_nothing_of_it() {
    // Read-only mode, no login, with the operator's opt-in to show content: the page an
    // anonymous visitor sees when artifacts are shown at all.
    let server = Server::start_with(|state| state.with_public_content(true)).await;
    let item = server
        .state
        .engine()
        .create_item(
            &orch_core::ProjectId::parse("quick").expect("id"),
            "linked",
            "",
        )
        .await
        .expect("filed");
    let id = item.id.as_str();
    let dir = server.data_dir().join("repo/docs/work-items").join(id);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::os::unix::fs::symlink("/proc/self/environ", dir.join("01-analysis.md")).expect("link");
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("02-design.md"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let page = tokio::time::timeout(
        Duration::from_secs(20),
        server.send(Request::get(format!("/items/{id}"))),
    )
    .await
    .expect("the page does not hang on a FIFO");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(!page.body.contains("PATH="), "{}", page.body);
    assert!(
        page.body.contains("01-analysis.md is not shown")
            && page.body.contains("is a symbolic link"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("02-design.md is not shown")
            && page.body.contains("FIFO (named pipe), not a regular file"),
        "{}",
        page.body
    );
    server.stop().await;
}

#[tokio::test]
async fn a_project_that_opted_out_of_the_sandbox_says_so_on_its_pages() {
    let server = Server::start_sandboxed(orch_process::Sandbox::OptedOut).await;
    let cookie = session(&server).await;
    let projects = server
        .send(Request::get("/projects").header("Cookie", cookie.clone()))
        .await;
    assert_eq!(projects.status, 200, "{projects:?}");
    assert!(
        projects
            .body
            .contains("<td class=\"sandbox unconfined\"><b>NOT SANDBOXED</b>"),
        "{}",
        projects.body
    );
    assert!(
        projects
            .body
            .contains("sandbox = { mode = &quot;none&quot; }"),
        "{}",
        projects.body
    );
    let id = file_item(&server).await;
    let item = server
        .send(Request::get(format!("/items/{id}")).header("Cookie", cookie))
        .await;
    assert_eq!(item.status, 200, "{item:?}");
    assert!(
        item.body
            .contains("<p class=\"unconfined\" id=\"unconfined\">NOT sandboxed:"),
        "{}",
        item.body
    );
    server.stop().await;
}

#[tokio::test]
async fn a_sandboxed_project_shows_its_sandbox_and_no_warning() {
    let server = Server::start().await;
    let cookie = session(&server).await;
    let projects = server
        .send(Request::get("/projects").header("Cookie", cookie.clone()))
        .await;
    assert!(
        projects
            .body
            .contains("<td class=\"sandbox\">bubblewrap</td>"),
        "{}",
        projects.body
    );
    assert!(
        !projects.body.contains("NOT SANDBOXED"),
        "{}",
        projects.body
    );
    let id = file_item(&server).await;
    let item = server
        .send(Request::get(format!("/items/{id}")).header("Cookie", cookie))
        .await;
    assert!(item.body.contains(&id), "{}", item.body);
    assert!(!item.body.contains("NOT sandboxed"), "{}", item.body);
    server.stop().await;
}
