//! The read side of a running orch: `/metrics` after real runs, the read commands with spend,
//! and the dashboard driven by a real headless Chromium through chromedriver.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Orch, free_port, git};

mod browser;

/// Scripted agents that report tokens, narrate, and make the reviewer ask for changes once;
/// `slow_ms` is how long development's first attempt takes (the browser test watches it).
fn scenario(slow_ms: u64) -> String {
    let step = |stage: &str, attempt: Option<u32>, extra: &str, files: &str| {
        let attempt = attempt
            .map(|a| format!("attempt = {a}\n"))
            .unwrap_or_default();
        format!("[[steps]]\nstage = \"{stage}\"\n{attempt}{extra}files = [{files}]\n\n")
    };
    let artifact = |name: &str, field: &str, value: &str| {
        format!(
            "{{ path = \"docs/work-items/{{item}}/{name}\", content = \"---\\n{field}: {value}\\n---\\n# {name}\\n\" }}"
        )
    };
    [
        step(
            "analysis",
            None,
            "say = [\"reading the request\"]\ntokens = [1000, 200]\n",
            &artifact("01-analysis.md", "analysis_status", "READY"),
        ),
        step(
            "architecture",
            None,
            "tokens = [500, 100]\n",
            &artifact("02-design.md", "design_status", "READY"),
        ),
        step(
            "development",
            Some(1),
            &format!(
                "say = [\"dev line one\", \"dev line two\"]\nsleep_ms = {slow_ms}\ntokens = [300, 30]\n"
            ),
            &format!(
                "{{ path = \"changes/{{item}}.txt\", content = \"change\\n\" }}, {}",
                artifact("03-dev-notes.md", "dev_status", "DONE")
            ),
        ),
        step(
            "development",
            None,
            "tokens = [300, 30]\n",
            &format!(
                "{{ path = \"CHANGELOG.md\", content = \"# Changelog\\n\\n- {{item}}\\n\" }}, {}",
                artifact("03-dev-notes.md", "dev_status", "DONE")
            ),
        ),
        step(
            "review",
            Some(1),
            "",
            &artifact("04-review.md", "review_verdict", "REQUEST_CHANGES"),
        ),
        step(
            "review",
            None,
            "",
            &artifact("04-review.md", "review_verdict", "APPROVE"),
        ),
        step(
            "qa",
            None,
            "",
            &artifact("05-test-report.md", "qa_status", "PASS"),
        ),
    ]
    .concat()
}

/// An installation whose agents follow [`scenario`].
fn installation(slow_ms: u64) -> Orch {
    let orch = Orch::new(None);
    std::fs::write(orch.repo().join(".orch/scenario.toml"), scenario(slow_ms)).expect("scenario");
    git(&orch.repo(), &["commit", "-qam", "dashboard scenario"]);
    orch
}

/// `orch serve` running in the background; SIGTERM and a wait when dropped.
struct Served {
    child: Child,
    port: u16,
    output: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    fn start(orch: &Orch, token: Option<&str>) -> Self {
        let port = free_port();
        let mut command = orch.command(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
        match token {
            Some(t) => command.env("ORCH_API_TOKEN", t),
            None => command.env_remove("ORCH_API_TOKEN"),
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("orch serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("banner");
        assert!(banner.contains("listening"), "{banner}");
        // Drained, so progress lines never fill the pipe and block the server.
        let output = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Self {
            child,
            port,
            output: Some(output),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.request("GET", path, &[], "");
        (status, body)
    }

    /// One request per connection: the status, the head and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(stream, "{head}\r\n{body}").expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, head.to_owned(), body.to_owned())
    }

    /// Logs in with `token` like the login form does; the session cookie (`name=value`).
    fn login(&self, token: &str) -> String {
        let origin = format!("http://127.0.0.1:{}", self.port);
        let (status, head, body) = self.request(
            "POST",
            "/login",
            &[
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &format!("token={token}"),
        );
        assert_eq!(status, 303, "{head}\n{body}");
        head.lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        crate::harness::terminate(&mut self.child);
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

/// Prometheus text parsed into `name{labels}` → value; every sample line must parse, and every
/// family must be announced by `# TYPE` before its samples.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut typed: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split_whitespace().next().expect("a name").to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}"));
        let name = series.split('{').next().expect("a name");
        assert!(
            typed.iter().any(|t| name == t
                || name
                    .strip_prefix(t.as_str())
                    .is_some_and(|s| { ["_total", "_bucket", "_sum", "_count"].contains(&s) })),
            "{name} has no # TYPE line before it"
        );
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

#[test]
fn metrics_after_a_run_count_items_durations_gate_failures_spend_and_reaps() {
    let orch = installation(0);
    orch.ok(&["item", "add", "--title", "Metered"]);
    // orch dies (SIGKILL) after the first gates; the next `orch run` reaps that run and takes it
    // over, then runs until the item waits for approval, with one review rollback on the way.
    let crashed = orch
        .command(&["run"])
        .env("ORCH_CRASHPOINT", "after-gates")
        .output()
        .expect("runs");
    assert!(!crashed.status.success(), "orch must die at the crashpoint");
    orch.ok(&["run"]);
    // The operator lets the read-only dashboard show artifacts, logs and diffs.
    let config = orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    toml.push_str("\n[server]\npublic_content = true\n");
    std::fs::write(&config, toml).expect("orch.toml");
    let served = Served::start(&orch, None);
    let (status, text) = served.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let m = parse_metrics(&text);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(
        get(r#"orch_items{project="quick",stage="confirm-deploy",status="awaiting-approval"}"#),
        1.0
    );
    assert_eq!(
        get(r#"orch_stage_run_duration_seconds_count{project="quick",stage="development"}"#),
        2.0
    );
    assert_eq!(
        get(
            r#"orch_stage_run_duration_seconds_bucket{le="+Inf",project="quick",stage="development"}"#
        ),
        2.0
    );
    // Review's first verdict: REQUEST_CHANGES, and the first development wrote no CHANGELOG.
    for gate in ["verdict", "doc-gate"] {
        let series =
            format!(r#"orch_gate_failures_total{{project="quick",stage="review",gate="{gate}"}}"#);
        assert_eq!(get(&series), 1.0);
    }
    // Analysis ran twice (the crash lost its first finish), but only one run is recorded.
    assert_eq!(
        get(r#"orch_agent_tokens_total{project="quick",stage="analysis"}"#),
        1200.0
    );
    assert_eq!(
        get(r#"orch_agent_tokens_total{project="quick",stage="development"}"#),
        660.0
    );
    assert_eq!(
        get(r#"orch_agent_runs_total{project="quick",stage="development",cost_known="true"}"#),
        2.0
    );
    assert_eq!(get(r#"orch_lease_reaps_total{project="quick"}"#), 1.0);
    assert_eq!(
        get(r#"orch_webhook_deliveries_total{source="github",result="accepted"}"#),
        0.0
    );

    // Without a token the pages are public and read-only, and with `public_content` the item page
    // shows the timeline with the rollback's reasons, per-run spend, the artifacts' frontmatter
    // and the branch's diff.
    let (status, page) = served.get("/items/QUICK-1");
    assert_eq!(status, 200, "{page}");
    for expected in [
        "failed gates: doc-gate, verdict",
        "review_verdict is REQUEST_CHANGES",
        "1200 tokens, $0.00",
        "<tr><th>review_verdict</th><td>APPROVE</td></tr>",
        "+++ b/changes/QUICK-1.txt",
        "data-stream=\"/items/QUICK-1/log/stream\"",
    ] {
        assert!(
            page.contains(expected),
            "no {expected:?} in the item page:\n{page}"
        );
    }
    assert!(!page.contains("approve-button"), "no forms without a token");
}

#[test]
fn spend_of_agents_that_report_none_by_design_reads_as_a_dash_everywhere() {
    // The bench scenario gives no figures: every run is the scripted agent's, spending nothing.
    let orch = Orch::new(None);
    orch.ok(&["item", "add", "--title", "Silent"]);
    orch.ok(&["run"]);
    let status = orch.ok(&["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("QUICK-1"))
        .unwrap_or_else(|| panic!("no QUICK-1 row:\n{status}"));
    assert!(row.contains('—'), "{row}");
    assert!(
        !status.contains("unknown") && !status.contains("(+?)"),
        "{status}"
    );
    let show = orch.ok(&["item", "show", "QUICK-1"]);
    let total = show
        .lines()
        .find(|l| l.trim_start().starts_with("total"))
        .unwrap_or_else(|| panic!("no total line:\n{show}"));
    assert!(total.contains('—'), "{show}");
    assert!(
        !show.contains("unknown") && !show.contains("(+?)"),
        "{show}"
    );
    let item = orch.item("QUICK-1");
    assert_eq!(item["spend"]["total"]["described"], "—", "{item:#}");
    assert_eq!(
        item["spend"]["total"]["runs_not_reporting"],
        item["spend"]["total"]["runs"]
    );

    let served = Served::start(&orch, None);
    for path in ["/", "/items/QUICK-1"] {
        let (code, page) = served.get(path);
        assert_eq!(code, 200, "{page}");
        assert!(page.contains('—'), "no dash on {path}:\n{page}");
        assert!(
            !page.contains("cost unknown") && !page.contains("(+?)"),
            "{path}:\n{page}"
        );
    }
}

#[test]
fn read_commands_show_spend_and_speak_json() {
    let orch = installation(0);
    orch.ok(&["item", "add", "--title", "Counted"]);
    orch.ok(&["run"]);

    let status = orch.ok(&["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("QUICK-1"))
        .unwrap_or_else(|| panic!("no QUICK-1 row:\n{status}"));
    assert!(row.contains("awaiting-approval"), "{row}");
    // The scripted steps without figures report none by design: no `(+?)` for them.
    assert!(row.contains("2460 tokens, $0.00"), "{row}");
    assert!(!row.contains("(+?)"), "{row}");
    let project = status
        .lines()
        .find(|l| l.starts_with("quick "))
        .unwrap_or_else(|| panic!("no project row:\n{status}"));
    assert!(project.contains("2460 tokens, $0.00"), "{project}");
    let status: serde_json::Value =
        serde_json::from_str(&orch.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["open_items"][0]["spend"]["tokens"], 2460);
    assert_eq!(status["project_spend"]["quick"]["tokens"], 2460);

    let show = orch.ok(&["item", "show", "QUICK-1"]);
    let spend = show
        .split("spend:")
        .nth(1)
        .unwrap_or_else(|| panic!("{show}"));
    let line = |stage: &str| {
        spend
            .lines()
            .find(|l| l.split_whitespace().next() == Some(stage))
            .unwrap_or_else(|| panic!("no {stage} line in {spend}"))
            .to_owned()
    };
    assert!(line("development").contains("660 tokens"), "{spend}");
    assert!(line("analysis").contains("1200 tokens"), "{spend}");
    assert!(line("total").contains("2460 tokens"), "{spend}");
    let item = orch.item("QUICK-1");
    assert_eq!(item["spend"]["total"]["tokens"], 2460);
    assert_eq!(item["spend"]["by_stage"]["development"]["runs"], 2);

    let logs: serde_json::Value =
        serde_json::from_str(&orch.ok(&["logs", "QUICK-1", "--stage", "development", "--json"]))
            .expect("json");
    let logs = logs.as_array().expect("a list");
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0]["run"]["attempt"], 1);
    assert!(
        logs[0]["log"]
            .as_str()
            .is_some_and(|l| l.contains("dev line two")),
        "{logs:?}"
    );
}

#[test]
fn a_question_is_answered_with_the_dashboard_retry_form() {
    let orch = installation(0);
    // The analyst asks a question on its first attempt.
    let question = "[[steps]]\nstage = \"analysis\"\nattempt = 1\n\
        files = [{ path = \"docs/work-items/{item}/01-analysis.md\", \
        content = \"---\\nanalysis_status: NEEDS_INFO\\n---\\nWhich port?\\n\" }]\n\n";
    std::fs::write(
        orch.repo().join(".orch/scenario.toml"),
        format!("{question}{}", scenario(0)),
    )
    .expect("scenario");
    git(&orch.repo(), &["commit", "-qam", "a question first"]);
    orch.ok(&["item", "add", "--title", "Ask first"]);
    orch.ok(&["run"]);
    assert_eq!(orch.item("QUICK-1")["status"], "needs-info");

    let served = Served::start(&orch, Some("retry-token"));
    let cookie = served.login("retry-token");
    let (status, _, page) = served.request("GET", "/items/QUICK-1", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("id=\"retry-button\""),
        "a needs-info item offers retry"
    );
    assert!(!page.contains("id=\"approve-button\""));
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = page[at..].split('"').next().expect("token");

    let origin = format!("http://127.0.0.1:{}", served.port);
    let (status, head, body) = served.request(
        "POST",
        "/items/QUICK-1/retry",
        &[
            ("Origin", &origin),
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}&answer=use+port+8080"),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    // The server's engine loop takes the item on: analysis passes on its second attempt.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let item = orch.item("QUICK-1");
        let retried = item["events"].as_array().expect("events").iter().any(|e| {
            e["kind"] == "item.retried" && e["data"].to_string().contains("use port 8080")
        });
        if retried && item["stage"] != "analysis" {
            break;
        }
        assert!(Instant::now() < deadline, "the retry did not take: {item}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_demo_serves_the_dashboard_and_keeps_it_up_until_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let (staging, prod, dashboard) = (free_port(), free_port(), free_port());
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(["demo", "--yes", "--keep-running", "--dir"])
        .arg(&demo)
        .args([
            "--staging-port",
            &staging.to_string(),
            "--prod-port",
            &prod.to_string(),
            "--dashboard",
            &format!("127.0.0.1:{dashboard}"),
        ])
        .env_remove("ORCH_API_TOKEN")
        .env_remove("ORCH_CRASHPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch demo starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !seen.contains("Ctrl-C stops it") {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read") == 0 {
            break;
        }
        seen.push_str(&line);
        assert!(
            Instant::now() < deadline,
            "the demo did not finish:\n{seen}"
        );
    }
    let url = format!("http://127.0.0.1:{dashboard}/");
    assert!(seen.contains(&format!("Dashboard: {url}")), "{seen}");
    let announced = seen.find("Dashboard: ").expect("announced");
    let filed = seen.find("Filed DEMO-1").expect("filed");
    let first_stage = seen.find("analysis#1").expect("a stage line");
    assert!(
        filed < announced && announced < first_stage,
        "the URL comes at the start:\n{seen}"
    );
    assert!(seen.contains("with DEMO-1 done"), "{seen}");

    // After the demo the dashboard still answers, read-only (no token), with DEMO-1 finished.
    let mut stream = TcpStream::connect(("127.0.0.1", dashboard)).expect("still serving");
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{dashboard}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("read");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let finished = page
        .split("data-stage=\"finished\"")
        .nth(1)
        .expect("a finished column");
    assert!(finished.contains("data-item=\"DEMO-1\""), "{page}");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Staging and prod were left running on purpose; this test stops them.
    for env in ["staging", "prod"] {
        let current = demo.join(format!("deploy/demo/{env}/current.json"));
        let pid = std::fs::read_to_string(current)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_i64())
            .filter(|p| *p > 1)
            .and_then(|p| i32::try_from(p).ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", dashboard)).is_err(),
        "the dashboard stopped with the demo"
    );
}
