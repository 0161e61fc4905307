//! What `orch bench --launch` and `--held` share: a real `orch serve` child process on a loopback
//! port, a minimal HTTP/1.1 client for its API and webhooks, the stamp files the benches' agents
//! write when they start, and readings of a process from /proc.
//!
//! It must never leave a process behind: the serve child is stopped (SIGTERM, then SIGKILL) when
//! the bench ends or fails, and it talks to loopback only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::settings::{RemoteEntry, SandboxEntry};

/// The API token and webhook secret of a bench's serve: random per run, never printed.
pub(super) struct Secrets {
    pub api_token: String,
    pub webhook_secret: String,
    pub tracker_token: String,
}

impl Secrets {
    pub fn new() -> Self {
        let nonce = |salt: u64| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{:x}{:x}{salt:x}", nanos, std::process::id())
        };
        Self {
            api_token: nonce(1),
            webhook_secret: nonce(2),
            tracker_token: nonce(3),
        }
    }
}

/// The environment variable the bench project's tracker token is read from.
pub(super) const TRACKER_TOKEN_ENV: &str = "ORCH_BENCH_TRACKER_TOKEN";
/// The repository the bench's webhooks name (`owner/repo` of the Gitea tracker).
pub(super) const TRACKER_OWNER: &str = "bench";
pub(super) const TRACKER_REPO: &str = "launch";

/// A serve bench's scratch directory (removed when the returned guard drops), its path, and the
/// `stamps` folder in it where agents write when they started.
pub(super) fn scratch(prefix: &str) -> anyhow::Result<(tempfile::TempDir, PathBuf, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("cannot create a temp dir")?;
    let root = dir.path().to_path_buf();
    let stamps = root.join("stamps");
    std::fs::create_dir_all(&stamps)?;
    Ok((dir, root, stamps))
}

/// One project `bench` with a one-stage pipeline whose command agent runs `agent` (a shell
/// script; `$1` is the stamps folder), sandbox off (the floor runs the command unconfined too),
/// a Gitea tracker at `tracker_url` when given (so signed Gitea webhooks file items).
pub(super) async fn write_project(
    root: &Path,
    agent: &str,
    stamps: &Path,
    parallel: usize,
    tracker_url: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join(".orch"))?;
    std::fs::write(repo.join(".orch/pipeline.toml"), PIPELINE)?;
    std::fs::create_dir_all(repo.join(".orch/agents"))?;
    for (name, text) in crate::kit::ROLES {
        std::fs::write(repo.join(format!(".orch/agents/{name}.md")), text)?;
    }
    let agents = format!(
        "[default]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", '''{agent}''', \"sh\", \"{}\"]\n",
        stamps.display()
    );
    std::fs::write(repo.join(".orch/agents.toml"), agents)?;
    std::fs::write(
        repo.join(".orch/deploy.toml"),
        include_str!("../../kit/bench/deploy.toml"),
    )?;
    std::fs::write(repo.join("README.md"), "# bench\n")?;
    let git = orch_git::Repo::init(&repo, "main").await?;
    git.commit_all(&repo, "bench: initial").await?;

    let sandbox = SandboxEntry {
        mode: Some("none".into()),
        ..SandboxEntry::default()
    };
    let (staging, prod) = (super::bench::free_port()?, super::bench::free_port()?);
    let mut file = super::bench::bench_config(staging, prod, parallel, Some(sandbox));
    for project in &mut file.projects {
        // One agent stage, no deploy: the probes are never used.
        project.health_tries = None;
        project.health_interval_ms = None;
        project.tracker = tracker_url.map(|url| RemoteEntry {
            kind: "gitea".into(),
            base_url: url.into(),
            workspace: None,
            project: None,
            owner: Some(TRACKER_OWNER.into()),
            repo: Some(TRACKER_REPO.into()),
            token_env: TRACKER_TOKEN_ENV.into(),
            ready_state: None,
            // The webhook is the path measured; the reconciliation poll stays out of the way.
            poll_secs: Some(3600),
            merge_style: None,
            checks: None,
            reviews: None,
        });
    }
    let config = root.join("orch.toml");
    std::fs::write(&config, toml::to_string_pretty(&file)?)?;
    Ok(config)
}

/// One agent stage; the item is done when the agent wrote its artifact.
const PIPELINE: &str = r#"[defaults]
budget = 1
timeout_secs = 1800

[[stages]]
name = "analysis"
kind = "agent"
role = "analyst"
artifact = "01-analysis.md"
verdict = { field = "analysis_status", pass = ["READY"] }
on_pass = "done"
on_fail = { to = "analysis" }
"#;

/// A running `orch serve`, stopped on drop if [`Serve::stop`] was not called.
pub(super) struct Serve {
    child: tokio::process::Child,
    pub port: u16,
    pub pid: u32,
}

impl Serve {
    /// Starts this binary's `orch serve` on a free loopback port and waits until `/healthz`
    /// answers (at most 60 s).
    pub async fn start(config: &Path, log_dir: &Path, secrets: &Secrets) -> anyhow::Result<Self> {
        let port = super::bench::free_port()?;
        let exe = std::env::current_exe().context("cannot find the orch binary")?;
        let child = tokio::process::Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env(crate::env::API_TOKEN, &secrets.api_token)
            .env(crate::env::GITEA_WEBHOOK_SECRET, &secrets.webhook_secret)
            .env(TRACKER_TOKEN_ENV, &secrets.tracker_token)
            // The bench's orch.toml is what is measured: no override from the caller's shell.
            .env_remove(crate::env::STORE_URL)
            .env_remove(crate::env::MAX_PARALLEL)
            .env_remove(crate::env::PROJECTS_JSON)
            .env_remove(crate::env::CRASHPOINT)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log_dir.join("serve.out"))?)
            .stderr(std::fs::File::create(log_dir.join("serve.err"))?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start orch serve")?;
        let pid = child.id().context("orch serve exited at once")?;
        let mut serve = Self { child, port, pid };
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = request(port, "GET", "/healthz", &[], b"").await {
                println!("orch serve: pid {pid}, http://127.0.0.1:{port}");
                return Ok(serve);
            }
            if let Some(status) = serve.child.try_wait()? {
                let err = std::fs::read_to_string(log_dir.join("serve.err")).unwrap_or_default();
                bail!(
                    "orch serve exited ({status}) before answering: {}",
                    err.trim()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("orch serve did not answer /healthz within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM (orch stops its agents' process groups), then SIGKILL after 60 s.
    pub async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await.ok();
                bail!("orch serve did not stop within 60 s of SIGTERM; killed")
            }
        }
    }

    /// `POST /api/v1/items`; returns the new item's id.
    pub async fn create_item(&self, token: &str, title: &str) -> anyhow::Result<String> {
        let body = serde_json::json!({ "project": "bench", "title": title }).to_string();
        let auth = format!("Bearer {token}");
        let (status, answer) = request(
            self.port,
            "POST",
            "/api/v1/items",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await?;
        if status != 201 {
            bail!("POST /api/v1/items answered {status}: {answer}");
        }
        let v: serde_json::Value = serde_json::from_str(&answer)?;
        v.get("id")
            .and_then(|i| i.as_str())
            .map(str::to_owned)
            .with_context(|| format!("POST /api/v1/items answered without an id: {answer}"))
    }

    /// Waits (at most `limit`) until item `id` is finished (done, or anything terminal), so the
    /// next launch does not share the machine with this item's gates and merge.
    pub async fn wait_finished(
        &self,
        token: &str,
        id: &str,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let auth = format!("Bearer {token}");
        let started = Instant::now();
        loop {
            let (status, answer) = request(
                self.port,
                "GET",
                &format!("/api/v1/items/{id}"),
                &[("Authorization", &auth)],
                b"",
            )
            .await?;
            if status != 200 {
                bail!("GET /api/v1/items/{id} answered {status}: {answer}");
            }
            let v: serde_json::Value = serde_json::from_str(&answer)?;
            match v.get("status").and_then(|s| s.as_str()) {
                Some("done" | "blocked" | "cancelled" | "needs-info" | "awaiting-approval") => {
                    return Ok(());
                }
                _ if started.elapsed() > limit => {
                    bail!("{id} did not finish within {} s", limit.as_secs())
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// A Gitea `issues` delivery, signed, saying issue `number` now has the `state/Ready` label.
    pub async fn ready_by_webhook(&self, secret: &str, number: u32) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "action": "label_updated",
            "issue": { "number": number, "title": format!("bench webhook item {number}"),
                       "body": "", "labels": [{ "name": "state/Ready" }] },
            "repository": { "full_name": format!("{TRACKER_OWNER}/{TRACKER_REPO}") },
            "sender": { "login": "bench", "id": 1 },
        })
        .to_string();
        let signature = orch_server::WebhookSource::Gitea
            .sign(secret, body.as_bytes())
            .context("cannot sign the delivery")?;
        let delivery = format!("bench-{}-{number}", std::process::id());
        let (status, answer) = request(
            self.port,
            "POST",
            "/hooks/gitea",
            &[
                ("Content-Type", "application/json"),
                ("X-Gitea-Signature", &signature),
                ("X-Gitea-Delivery", &delivery),
            ],
            body.as_bytes(),
        )
        .await?;
        if status != 202 || !answer.contains("\"created\"") {
            bail!("POST /hooks/gitea answered {status}: {answer}");
        }
        Ok(())
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`); the status and the body.
pub(super) async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:.80}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// A stand-in for the Gitea tracker the bench project names: answers every request with an
/// empty JSON list (no issue is Ready by the poll; what orch tells the tracker is dropped), so
/// the serve under measure talks to loopback only. Runs until the bench process ends.
pub(super) async fn start_tracker_stand_in() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // One read is enough: orch's requests to the tracker are small.
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]")
                    .await;
            });
        }
    });
    Ok(format!("http://127.0.0.1:{port}"))
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME, the clock `date +%s%N` reads).
pub(super) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A stamp an agent wrote when it started: `<ns since epoch> <pid>`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    pub ns: u128,
    pub pid: u32,
}

/// Waits (at most `limit`) for `stamps/<name>` to hold a whole stamp line.
pub(super) async fn wait_stamp(
    stamps: &Path,
    name: &str,
    limit: Duration,
) -> anyhow::Result<Stamp> {
    let path = stamps.join(name);
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(line) = text.strip_suffix('\n')
            && let Some((ns, pid)) = line.split_once(' ')
            && let (Ok(ns), Ok(pid)) = (ns.parse(), pid.parse())
        {
            return Ok(Stamp { ns, pid });
        }
        if started.elapsed() > limit {
            bail!("no agent started for {name} within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// The agent's first act: the stamp `<ns> <pid>` in `$1/$ORCH_ITEM_ID` (what the floor runs too).
pub(super) const STAMP: &str = r#"printf '%s %s\n' "$(date +%s%N)" "$$" > "$1/$ORCH_ITEM_ID""#;

/// The `p`-th percentile (nearest rank) of `values` in milliseconds; `NaN` when empty.
pub(super) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// Resident memory of `pid` (VmRSS, KiB) from /proc; that process only, not its children.
pub(super) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("/proc/{pid}/status has no VmRSS"))
}

/// Open file descriptors of `pid` (entries of /proc/PID/fd); `None` when the folder cannot be
/// listed: orch makes itself non-dumpable, which leaves /proc/PID/fd to root.
pub(super) fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// The pids among `pids` that are still a live process running `marker` (a bench agent):
/// what the bench must not leave behind.
pub(super) fn still_running(pids: &[u32], marker: &str) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A zombie is gone for our purpose: it holds no resources but its table entry.
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
        })
        .collect()
}
