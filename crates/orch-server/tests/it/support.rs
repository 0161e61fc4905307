//! A temporary project with an engine, the server on a loopback port, and an HTTP client small
//! enough to read: one request per connection, `Connection: close`, read to the end.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use orch_core::ProjectId;
use orch_engine::{Engine, Project, ProjectSettings, Settings, Silent};
use orch_server::{AppState, WebhookSource};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-api-token";
pub const PLANE_SECRET: &str = "plane-secret";
pub const GITEA_SECRET: &str = "gitea-secret";
pub const GITHUB_SECRET: &str = "github-secret";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repository with the default pipeline, the kit's role prompts and scripted agents.
fn write_project(repo: &Path) {
    let files: [(&str, &str); 11] = [
        (
            ".orch/pipeline.toml",
            include_str!("../../../orch-core/src/default_pipeline.toml"),
        ),
        (
            ".orch/agents/analyst.md",
            include_str!("../../../orch/kit/roles/analyst.md"),
        ),
        (
            ".orch/agents/architect.md",
            include_str!("../../../orch/kit/roles/architect.md"),
        ),
        (
            ".orch/agents/developer.md",
            include_str!("../../../orch/kit/roles/developer.md"),
        ),
        (
            ".orch/agents/reviewer.md",
            include_str!("../../../orch/kit/roles/reviewer.md"),
        ),
        (
            ".orch/agents/tester.md",
            include_str!("../../../orch/kit/roles/tester.md"),
        ),
        (
            ".orch/agents/deployer.md",
            include_str!("../../../orch/kit/roles/deployer.md"),
        ),
        (
            ".orch/agents.toml",
            include_str!("../../../orch/kit/bench/agents.toml"),
        ),
        (
            ".orch/scenario.toml",
            include_str!("../../../orch/kit/bench/scenario.toml"),
        ),
        (
            ".orch/deploy.toml",
            include_str!("../../../orch/kit/bench/deploy.toml"),
        ),
        ("app.py", include_str!("../../../orch/kit/bench/app.py")),
    ];
    for (rel, text) in files {
        let path = repo.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "initial"]);
}

/// What a test project has besides its repository.
#[derive(Default)]
pub struct ProjectExtras {
    pub remotes: orch_engine::Remotes,
    pub approvers: Vec<String>,
    pub notify: Vec<orch_engine::notify::NotifyTarget>,
    /// The sandbox its agents run under (none: the default of `Project::load`).
    pub sandbox: Option<orch_process::Sandbox>,
}

/// An engine over a SQLite file in `dir` serving the project `quick` (its repository in
/// `dir/repo`), registered in the store.
pub async fn project_engine(
    dir: &Path,
    extras: ProjectExtras,
    settings: Settings,
    reporter: Arc<dyn orch_engine::Reporter>,
) -> Arc<Engine> {
    let repo = dir.join("repo");
    write_project(&repo);
    let store = orch_store::open_store(&format!("sqlite://{}", dir.join("orch.db").display()))
        .await
        .expect("store opens");
    let project = Project::load(ProjectSettings {
        id: ProjectId::parse("quick").expect("project id"),
        repo,
        data_dir: dir.to_path_buf(),
        // Never bound: these tests run no deploy.
        staging_port: 18511,
        prod_port: 18510,
        health_override: None,
        approvers: extras.approvers,
        approval_ttl: None,
        reapprove_on_reintegration: false,
        remotes: extras.remotes,
        notify: extras.notify,
    })
    .expect("project loads");
    let project = match extras.sandbox {
        Some(sandbox) => project.with_sandbox(sandbox).expect("the sandbox applies"),
        None => project,
    };
    let engine = Arc::new(Engine::new(store, vec![project], settings, reporter));
    engine.register_projects().await.expect("register");
    engine
}

/// The server under test; dropping it shuts the server down.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with every secret configured.
    pub async fn start() -> Self {
        Self::start_with(|state| {
            state
                .with_api_token(TOKEN)
                .with_webhook_secret(WebhookSource::Plane, PLANE_SECRET)
                .with_webhook_secret(WebhookSource::Gitea, GITEA_SECRET)
                .with_webhook_secret(WebhookSource::Github, GITHUB_SECRET)
        })
        .await
    }

    pub async fn start_with(configure: impl FnOnce(AppState) -> AppState) -> Self {
        Self::start_with_remotes(Default::default(), configure).await
    }

    /// A server whose project has `remotes` (a tracker, a forge).
    pub async fn start_with_remotes(
        remotes: orch_engine::Remotes,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        Self::start_full(remotes, &[], configure).await
    }

    /// A server whose project has `remotes` and lets only `approvers` approve (none: anyone).
    pub async fn start_full(
        remotes: orch_engine::Remotes,
        approvers: &[&str],
        configure: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        Self::start_project(remotes, approvers, None, configure).await
    }

    /// A server with every secret configured whose project runs its agents under `sandbox`.
    pub async fn start_sandboxed(sandbox: orch_process::Sandbox) -> Self {
        Self::start_project(Default::default(), &[], Some(sandbox), |state| {
            state.with_api_token(TOKEN)
        })
        .await
    }

    async fn start_project(
        remotes: orch_engine::Remotes,
        approvers: &[&str],
        sandbox: Option<orch_process::Sandbox>,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = project_engine(
            dir.path(),
            ProjectExtras {
                remotes,
                approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
                sandbox,
                ..ProjectExtras::default()
            },
            Settings::new("test:1:0".into()),
            Arc::new(Silent),
        )
        .await;
        let state = configure(AppState::new(engine));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(orch_server::serve(
            listener,
            state.clone(),
            shutdown.clone().cancelled_owned(),
        ));
        Self {
            addr,
            state,
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    /// orch's data directory (logs, worktrees) of this server.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    pub async fn send(&self, request: Request<'_>) -> Response {
        request.send(self.addr).await
    }

    /// Stops the server and waits for it: `serve` must return Ok.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("serve returns Ok");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Brings `item` (just filed) to its approval stage, waiting for a person, as if every stage
/// before it had passed and deploy-staging had validated build `sha`: the store is written the
/// way the engine writes it, with the core's own decisions, and no agent or deploy runs.
pub async fn await_approval(engine: &Engine, item: &orch_core::ItemId, sha: &str) {
    use orch_core::gate::{GateVerdict, VerdictClass};
    use orch_core::pipeline::StageKind;
    use orch_core::transition::{self, Effect, ItemStatus, Outcome};
    use orch_store::{FinishRun, NewRun, RunState};

    let store = engine.store();
    let current = store.get_item(item).await.expect("get").expect("item");
    let project = engine.project(&current.project).expect("project");
    let mut progress = current.progress;
    while progress.status != ItemStatus::AwaitingApproval {
        let run = store
            .claim_next_run("test", 60_000)
            .await
            .expect("claim")
            .expect("a queued run");
        assert_eq!(&run.item, item, "only this item has queued runs");
        let pass = GateVerdict {
            class: VerdictClass::Pass,
            value: None,
            failures: Vec::new(),
        };
        let decision = transition::decide(
            &project.pipeline,
            &progress,
            Outcome::Verdict {
                verdict: pass,
                fingerprint: String::new(),
                overrun: None,
            },
        )
        .expect("decide");
        let next_run = decision.effects.iter().find_map(|e| match e {
            Effect::StartRun {
                stage,
                attempt,
                feedback,
            } => {
                let waits = project
                    .pipeline
                    .stage(stage)
                    .is_some_and(|s| s.kind == StageKind::Approval);
                Some(NewRun {
                    stage: stage.clone(),
                    attempt: *attempt,
                    state: if waits {
                        RunState::Waiting
                    } else {
                        RunState::Queued
                    },
                    feedback: feedback.clone(),
                })
            }
            _ => None,
        });
        store
            .finish_run(
                run.fence(),
                FinishRun {
                    state: RunState::Passed,
                    verdict: serde_json::json!({ "class": "pass", "sha": sha, "digest": "sha256:test" }),
                    usage: None,
                    progress: decision.progress.clone(),
                    blocked_reason: None,
                    next_run,
                    events: Vec::new(),
                },
            )
            .await
            .expect("finish");
        progress = decision.progress;
    }
}

/// One HTTP request.
pub struct Request<'a> {
    method: &'a str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl<'a> Request<'a> {
    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }

    fn new(method: &'a str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn token(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("Content-Type", "application/json")
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    async fn send(self, addr: SocketAddr) -> Response {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            self.path,
            self.body.len()
        );
        // The address as the host, unless the test names another (a rebinding attack does).
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        // Written concurrently with the read: a server that refuses a large body answers
        // before reading it, and closes.
        let body = self.body;
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(head.as_bytes()).await;
            let _ = writer.write_all(&body).await;
            writer
        });
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // A reset after the answer arrived (the unread body of a refused request).
                Err(_) if !raw.is_empty() => break,
                Err(e) => panic!("reading the response: {e}"),
            }
        }
        drop(writing.await);
        Response::parse(&raw)
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("a full response head");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        assert!(
            !headers
                .iter()
                .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
            "this client reads only sized bodies"
        );
        Self {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {:?}", self.body))
            .to_owned()
    }
}

/// OpenMetrics text parsed into `name{labels}` → value. Fails the test unless every family has
/// `# HELP` and `# TYPE`, every sample belongs to the family announced before it with a suffix
/// its type allows (`_total` for a counter; `_bucket`, `_count`, `_sum` for a histogram; none for
/// a gauge), no series appears twice, every value is a number, and `# EOF` ends the text.
pub fn parse_openmetrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    let mut family: Option<(String, String)> = None;
    let mut helped: Option<String> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            assert!(lines.peek().is_none(), "text after # EOF:\n{text}");
            return samples;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped = rest.split(' ').next().map(str::to_owned);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("`# TYPE name kind`");
            assert_eq!(helped.as_deref(), Some(name), "{name} has no # HELP line");
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (name, kind) = family.as_ref().expect("a sample before any # TYPE");
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}"));
        let sample_name = series.split('{').next().expect("a name");
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            "gauge" => &[""],
            other => panic!("unexpected type {other}"),
        };
        assert!(
            suffixes.iter().any(|s| sample_name == format!("{name}{s}")),
            "{line:?} is not a {kind} sample of {name}"
        );
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    panic!("no # EOF at the end:\n{text}");
}
