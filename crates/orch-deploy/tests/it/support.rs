//! A project fixture: a git repo holding the test app, a deploy config pointing at it, two free
//! loopback ports, and a guard that kills every instance the test started, even on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use orch_deploy::{
    Confinement, DeployReport, DeploySpec, Deployer, Env, InstanceRecord, Ports, ProcessDeployer,
    StagingReport,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const APP: &str = include_str!("app.py");

/// Checks used by most tests: the greeting must be served.
pub const GREETING_CHECK: &str = r#"
[[staging.checks]]
id = "greeting"
kind = "http"
path = "/"
body_contains = "Hello"
tries = 2
interval_ms = 20
"#;

pub struct Project {
    pub dir: TempDir,
    pub ports: Ports,
    pub deployer: ProcessDeployer,
}

impl Project {
    /// A repo whose first commit serves `greeting`, with `checks` as its staging checks.
    pub fn new(greeting: &str, checks: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir repo");
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("app.py"), APP).expect("write app");
        std::fs::write(repo.join(".gitignore"), "dist/\n").expect("write .gitignore");
        let ports = free_ports();
        let spec =
            DeploySpec::from_toml(&config_toml(dir.path(), checks)).expect("test config is valid");
        // Builds run sandboxed; the folder counting them is the one they may write outside
        // their work tree.
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir outside");
        let build = orch_process::Sandbox::Bubblewrap(orch_process::Policy {
            read_write: vec![outside],
            limits: orch_process::Limits::AGENT,
            allow_hosts: Some(Vec::new()),
            ..orch_process::Policy::default()
        });
        let root = dir.path().join("deploy");
        let deployer = ProcessDeployer::new(&root, spec, ports)
            .expect("deployer")
            .with_confinement(Confinement {
                build,
                hidden: Some(vec![root]),
            });
        let project = Project {
            dir,
            ports,
            deployer,
        };
        project.commit(greeting, None);
        project
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Commits a version serving `greeting` (and, if given, a built-in health status); returns its SHA.
    pub fn commit(&self, greeting: &str, health_status: Option<u16>) -> String {
        let repo = self.repo();
        std::fs::write(repo.join("greeting.txt"), format!("{greeting}\n")).expect("write greeting");
        let health = repo.join("health_status.txt");
        match health_status {
            Some(status) => std::fs::write(&health, status.to_string()).expect("write health"),
            None => {
                let _ = std::fs::remove_file(&health);
            }
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", greeting]);
        self.head()
    }

    /// Commits a version whose build command fails.
    pub fn commit_broken_build(&self) -> String {
        std::fs::write(self.repo().join("break-build"), "").expect("write break-build");
        git(&self.repo(), &["add", "-A"]);
        git(&self.repo(), &["commit", "-q", "-m", "broken"]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.repo(), &["rev-parse", "HEAD"])
    }

    /// How often the build command ran.
    pub fn builds_run(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("outside/builds-run"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Makes every build serving one of `greetings` fail its health check from now on.
    pub fn fail_health_of(&self, greetings: &[&str]) {
        std::fs::write(self.dir.path().join("fail-health"), greetings.join("\n"))
            .expect("write fail-health");
    }

    pub fn root(&self) -> PathBuf {
        self.deployer.root().to_owned()
    }

    pub async fn stage(&self, sha: &str, tolerance: bool) -> StagingReport {
        self.deployer
            .deploy_staging(&self.repo(), sha, tolerance, &CancellationToken::new())
            .await
    }

    pub async fn promote(&self, sha: &str) -> DeployReport {
        self.deployer.promote(sha, &CancellationToken::new()).await
    }

    /// The body an env answers on `/`, or the reason it does not.
    pub async fn greeting_on(&self, env: Env) -> Result<String, String> {
        get(self.ports.of(env), "/").await
    }

    pub fn current(&self, env: Env) -> Option<InstanceRecord> {
        self.deployer.current(env).expect("readable record")
    }
}

impl Drop for Project {
    /// Kills whatever instance the deployer still has recorded, so no test leaves a process.
    fn drop(&mut self) {
        for env in [Env::Staging, Env::Prod] {
            if let Ok(Some(record)) = self.deployer.current(env)
                && record.is_running()
                && let Ok(raw_pid) = i32::try_from(record.pid)
            {
                let group = nix::unistd::Pid::from_raw(raw_pid);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

fn config_toml(dir: &Path, checks: &str) -> String {
    let counter = dir.join("outside/builds-run");
    let fail_health = dir.join("fail-health");
    format!(
        r#"
[build]
command = "if test -e break-build; then echo compile error >&2; exit 1; fi; mkdir -p dist && cp app.py greeting.txt dist/ && (cp health_status.txt dist/ 2>/dev/null || true) && echo built >> {counter}"
artifact = "dist"
timeout_secs = 30

[run]
command = ["python3", "{{artifact}}/app.py"]
env = {{ PORT = "{{port}}", FAIL_HEALTH_FILE = "{fail_health}" }}

[health]
path = "/healthz"
tries = 25
interval_ms = 40
timeout_ms = 1000

[staging]
infra_allowlist = {allowlist}
{checks}
"#,
        counter = counter.display(),
        fail_health = fail_health.display(),
        allowlist = if checks.contains("\"C9a\"") {
            "[\"C9a\"]"
        } else {
            "[]"
        },
    )
}

/// Two distinct ports that were free a moment ago (both held while choosing, so they differ).
pub fn free_ports() -> Ports {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port();
    Ports {
        staging: port(&a),
        prod: port(&b),
    }
}

pub fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A plain GET with a short timeout, independent of the crate's own client.
pub async fn get(port: u16, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let (head, body) = answer.split_once("\r\n\r\n").ok_or("no header end")?;
        if !head.starts_with("HTTP/1.0 200") {
            return Err(head.lines().next().unwrap_or_default().to_owned());
        }
        Ok(body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}
