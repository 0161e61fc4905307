//! The dashboard in a real browser: headless Chromium driven through chromedriver's W3C
//! WebDriver HTTP API (https://www.w3.org/TR/webdriver2/), spoken with plain HTTP/1.1 requests.
//!
//! One story against `orch serve` with scripted agents: log in; the board shows the item move
//! from `development` to `confirm-deploy`; the item page streams the running agent's log over
//! server-sent events; a forged POST without the CSRF token is refused; pressing Approve deploys
//! and finishes the item. Screenshots go to `target/screenshots/`.
//!
//! Chromium and chromedriver are looked up on the PATH (`.ci/install-browser.sh` installs them).
//! Without them the test is skipped and counted, except under `.ci/run` or `CI=true`, where it
//! fails (`test-support/skip.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Served, installation};
use crate::harness::free_port;

const TOKEN: &str = "browser-test-token";
/// The names the browser and its driver are found under on the PATH (Debian's `chromium`,
/// Ubuntu's older `chromium-browser`), where `.ci/install-browser.sh` accepts them.
const CHROMIUM: [&str; 2] = ["chromium", "chromium-browser"];
const CHROMEDRIVER: [&str; 1] = ["chromedriver"];

/// The flags that make Chromium run headless on a closed network: without the background
/// networking ones it waits on connections that never succeed.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,900",
];

/// Where screenshots are written: `target/screenshots/`.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("screenshots")
}

/// A chromedriver process and one browser session in it; both end when dropped.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// Where the browser and its driver are.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Browser {
    fn start(tools: &Tools) -> Self {
        let port = free_port();
        let driver = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser
            .call("GET", "/status", None)
            .map_or(true, |v| v["value"]["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let created = browser
            .call(
                "POST",
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": tools.chromium, "args": args },
                } } })),
            )
            .expect("a session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; the decoded JSON answer, or the transport error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let body = read_response(&mut stream)?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// A command of this session that must succeed; its `value`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = self
            .call(method, &path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if answer["value"].get("error").is_some() {
            panic!("{method} {path}: {answer}");
        }
        answer["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn script_async(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn element(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 text"))
            .expect("a base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Evaluates `script` until it returns something else than null, or panics after `limit`.
    fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.script(script);
            if !value.is_null() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The body of one HTTP response. chromedriver keeps connections open whatever the request
/// says, so the body is read by its `Content-Length` (or to the last chunk), not to the end.
fn read_response(stream: &mut TcpStream) -> Result<String, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let complete = |raw: &[u8]| -> Option<String> {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let head = head.to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            return body.ends_with("0\r\n\r\n").then(|| dechunk(body));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())?;
        let body_bytes = raw.len() - (head.len() + 4);
        (body_bytes >= length).then(|| body.to_owned())
    };
    loop {
        if let Some(body) = complete(&raw) {
            return Ok(body);
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed mid-response: {}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The first of `names` found as a file in a directory of the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The browser tools from the PATH; when one is missing the test is skipped, or fails where
/// every dependency is required (`.ci/run`, `CI=true`).
fn browser_tools() -> Option<Tools> {
    match (on_path(&CHROMIUM), on_path(&CHROMEDRIVER)) {
        (Some(chromium), Some(chromedriver)) => Some(Tools {
            chromium,
            chromedriver,
        }),
        _ => {
            crate::skip::skip(&format!(
                "{CHROMIUM:?} or {CHROMEDRIVER:?} is not on the PATH; run .ci/install-browser.sh"
            ));
            None
        }
    }
}

/// The column the item's card is in on the current board page, or null.
const CARD_COLUMN: &str = "const card = document.querySelector('[data-item=\"QUICK-1\"]');\
     return card ? card.closest('.column').dataset.stage : null;";

#[test]
fn the_dashboard_in_chromium_moves_streams_refuses_forgeries_and_approves() {
    let Some(tools) = browser_tools() else {
        return;
    };
    // Development's first attempt takes 6 s: long enough to watch it on the board and the page.
    let orch = installation(6000);
    let served = Served::start(&orch, Some(TOKEN));
    let browser = Browser::start(&tools);

    // ada logs in with her own token (the automation token approves nothing), then a session
    // cookie.
    let added = orch.ok(&["user", "add", "ada"]);
    let ada_token = added
        .lines()
        .find(|l| l.starts_with("orch_"))
        .unwrap_or_else(|| panic!("a token in {added}"))
        .to_owned();
    browser.goto(&served.url("/"));
    assert_eq!(
        browser.script("return location.pathname;"),
        "/login",
        "the board needs a session"
    );
    browser.type_into("input[name=token]", &ada_token);
    browser.click("section.login button[type=submit]");
    browser.wait_for(
        "the board after login",
        "return location.pathname === '/' && document.querySelector('.board') ? true : null;",
        Duration::from_secs(10),
    );
    let cookie_visible = browser.script("return document.cookie;");
    assert_eq!(cookie_visible, "", "the session cookie is HttpOnly");

    orch.ok(&["item", "add", "--title", "Say hello from the dashboard"]);

    // The board, reloading itself, shows the card in development while the agent works...
    browser.wait_for(
        "the card in development",
        &column_is("development"),
        Duration::from_secs(30),
    );
    browser.screenshot("board.png");

    // ...and the item page streams that agent's log as it is written.
    browser.goto(&served.url("/items/QUICK-1"));
    let streaming = browser.wait_for(
        "the live log",
        "const log = document.getElementById('log');\
         return log && log.textContent.includes('dev line two') ? document.getElementById('log-state').textContent : null;",
        Duration::from_secs(15),
    );
    assert_eq!(streaming, "streaming development 1");
    browser.screenshot("item-live.png");
    let ended = browser.wait_for(
        "the end of the run",
        "const log = document.getElementById('log'); return log ? (log.dataset.ended || null) : null;",
        Duration::from_secs(30),
    );
    assert_eq!(ended, "passed");

    // The card moves on: after review's rollback and QA it waits in confirm-deploy.
    browser.goto(&served.url("/"));
    browser.wait_for(
        "the card in confirm-deploy",
        &column_is("confirm-deploy"),
        Duration::from_secs(60),
    );

    // A forged POST from a logged-in browser without the page's CSRF token is refused.
    let forged = browser.script_async(
        "const done = arguments[arguments.length - 1];\
         fetch('/items/QUICK-1/stop', { method: 'POST',\
           headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'csrf=forged' })\
           .then(r => done(r.status), e => done(String(e)));",
    );
    assert_eq!(
        forged, 403,
        "a POST without the right CSRF token is refused"
    );

    browser.goto(&served.url("/items/QUICK-1"));
    browser.wait_for(
        "the approve button",
        "return document.getElementById('approve-button') ? true : null;",
        Duration::from_secs(10),
    );
    browser.screenshot("item.png");
    browser.click("#approve-button");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let item = orch.item("QUICK-1");
        if item["status"] == "done" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the approved item never finished: {}",
            item["status"]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let item = orch.item("QUICK-1");
    let approved_by_dashboard = item["events"].as_array().expect("events").iter().any(|e| {
        e["kind"] == "approval.granted"
            && e["data"]["by"] == "ada"
            && e["data"]["by_kind"] == "person"
    });
    assert!(
        approved_by_dashboard,
        "the approval came from ada, logged in on the dashboard"
    );
    browser.goto(&served.url("/"));
    browser.wait_for(
        "the card in finished",
        &column_is("finished"),
        Duration::from_secs(10),
    );
    browser.screenshot("board-finished.png");

    // Prod now runs the item's build: the projects page probes it healthy.
    browser.goto(&served.url("/projects"));
    let prod = browser.script(
        "return document.querySelector('tr[data-project=\"quick\"] td:last-child').className;",
    );
    assert_eq!(prod, "health up", "prod answers its health path");
}

/// A script returning true when the card is in `stage`'s column, else null.
fn column_is(stage: &str) -> String {
    format!(
        "const column = (() => {{ {CARD_COLUMN} }})(); return column === '{stage}' ? true : null;"
    )
}
