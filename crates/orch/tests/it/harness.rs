//! A temporary orch installation with a quick project: instant scripted agents, `true` as the
//! test command, and a small Python app as the deployed service.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_orch");

/// Stops a background orch (`serve`, a worker): SIGTERM, up to 15 s to exit, then SIGKILL.
pub fn terminate(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A free loopback port below the kernel's ephemeral range (32768 and up), so that no outgoing
/// connection (a database client, a health probe) can take it between now and its use.
///
/// Each port handed out is reserved until this test process ends, by an exclusive `flock` on
/// `<tmp>/orch-test-ports/<port>.lock`: no other call in this process and no other test process
/// running beside it gets the same port (two projects of one test once drew the same staging port,
/// and the second one's deploys found it "in use by another program").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Mutex, OnceLock};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SEED: OnceLock<u32> = OnceLock::new();
    static HELD: Mutex<Vec<nix::fcntl::Flock<std::fs::File>>> = Mutex::new(Vec::new());
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(7919).wrapping_add(nanos)
    });
    let dir = std::env::temp_dir().join("orch-test-ports");
    std::fs::create_dir_all(&dir).expect("port reservation directory");
    for _ in 0..10_000 {
        let offset = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed) * 97) % 12_000;
        let port = u16::try_from(20_000 + offset).expect("in range");
        let file = std::fs::File::create(dir.join(format!("{port}.lock"))).expect("lock file");
        let Ok(reserved) =
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(reserved);
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

pub struct Orch {
    pub dir: tempfile::TempDir,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The default pipeline with `true` as the test command.
pub fn quick_pipeline() -> String {
    include_str!("../../../orch-core/src/default_pipeline.toml")
        .replace("run = \"cargo test --quiet\"", "run = \"true\"")
}

impl Orch {
    /// A project `quick` whose agents follow the bench scenario, with `agents_toml` overriding
    /// `.orch/agents.toml` when given.
    pub fn new(agents_toml: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let w = |rel: &str, text: &str| {
            let p = repo.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        w(".orch/pipeline.toml", &quick_pipeline());
        for role in [
            "analyst",
            "architect",
            "developer",
            "reviewer",
            "tester",
            "deployer",
        ] {
            let text = std::fs::read_to_string(format!(
                "{}/kit/roles/{role}.md",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("role");
            w(&format!(".orch/agents/{role}.md"), &text);
        }
        w(
            ".orch/agents.toml",
            agents_toml.unwrap_or(include_str!("../../kit/bench/agents.toml")),
        );
        w(
            ".orch/scenario.toml",
            include_str!("../../kit/bench/scenario.toml"),
        );
        w(
            ".orch/deploy.toml",
            include_str!("../../kit/bench/deploy.toml"),
        );
        w("app.py", include_str!("../../kit/bench/app.py"));
        w("CHANGELOG.md", "# Changelog\n");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "initial"]);
        let (staging_port, prod_port) = (free_port(), free_port());
        std::fs::write(
            dir.path().join("orch.toml"),
            format!(
                "[engine]\nmax_parallel = 2\nlease_secs = 5\n\n[[projects]]\nname = \"quick\"\nrepo = \"repo\"\n\
                 staging_port = {staging_port}\nprod_port = {prod_port}\nhealth_tries = 200\nhealth_interval_ms = 20\n"
            ),
        )
        .expect("orch.toml");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(self.dir.path().join("orch.toml"))
            .args(args);
        c.env_remove("ORCH_CRASHPOINT")
            .env_remove("ORCH_CONFIG")
            .env_remove("ORCH_STORE_URL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("orch runs")
    }

    /// Runs and requires exit 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "orch {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn item(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["item", "show", id, "--json"])).expect("json")
    }

    /// Runs, approves what waits, runs again, until the item is done or stops moving.
    pub fn drive_to_end(&self, id: &str) -> Value {
        for _ in 0..6 {
            self.ok(&["run"]);
            let item = self.item(id);
            match item["status"].as_str() {
                Some("awaiting-approval") => {
                    self.ok(&["approve", id, "--by", "tester"]);
                }
                _ => return item,
            }
        }
        self.item(id)
    }
}

impl Drop for Orch {
    fn drop(&mut self) {
        stop_deployed(self.dir.path(), "quick");
    }
}

/// Stops the staging and prod instances that project `project` of the installation in `dir`
/// started (their pids are in `deploy/<project>/<env>/current.json`).
pub fn stop_deployed(dir: &Path, project: &str) {
    for env in ["staging", "prod"] {
        let current = dir.join(format!("deploy/{project}/{env}/current.json"));
        let pid = std::fs::read_to_string(current)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v["pid"].as_i64());
        // Never 0 or 1: killpg(0) is our own group, kill(-1) is every process.
        if let Some(pid) = pid.filter(|p| *p > 1).and_then(|p| i32::try_from(p).ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Makes every agent step of the bench scenario sleep `sleep_ms` first (committed to the
/// project), so that runs are in flight long enough for a test to act during them.
pub fn slow_agents(orch: &Orch, sleep_ms: u64) {
    let path = orch.repo().join(".orch/scenario.toml");
    let scenario = std::fs::read_to_string(&path).expect("scenario");
    let slow: String = scenario
        .lines()
        .map(|line| {
            if line.starts_with("stage = ") {
                format!("{line}\nsleep_ms = {sleep_ms}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_ne!(slow, scenario, "the scenario has steps to slow down");
    std::fs::write(&path, slow).expect("scenario");
    git(&orch.repo(), &["commit", "-qam", "slow agents"]);
}

/// The history checks every end-to-end test makes: events gap-free, each stage passed once per
/// attempt and in pipeline order, one verdict per finished run.
pub fn assert_clean_history(item: &Value) {
    let events = item["events"].as_array().expect("events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_i64(),
            Some(i as i64 + 1),
            "events must be gap-free: {e}"
        );
    }
    let runs = item["runs"].as_array().expect("runs");
    for r in runs {
        let id = r["id"].as_i64();
        let verdicts = events
            .iter()
            .filter(|e| e["kind"] == "gate.verdict" && e["run_id"].as_i64() == id)
            .count();
        let finished = matches!(r["state"].as_str(), Some("passed" | "failed"))
            && r["stage"] != "confirm-deploy";
        assert_eq!(
            verdicts,
            usize::from(finished),
            "run {r} must have exactly {} verdict(s)",
            usize::from(finished)
        );
    }
    for r in runs {
        let id = r["id"].as_i64();
        let passed = events
            .iter()
            .filter(|e| e["kind"] == "stage.passed" && e["run_id"].as_i64() == id)
            .count();
        assert!(passed <= 1, "run {r} passed {passed} times");
    }
}

/// [`passed_stages`] with the re-validations taken out: a deploy-staging pass that a deploy sent
/// back to staging (verdict class `revalidate`: main moved since) is not a repeat of the
/// stage but the promotion queue at work. Asserts that every pass taken out had exactly such a
/// deploy after it, so nothing else can hide behind it.
pub fn passed_stages_without_revalidations(item: &Value) -> Vec<String> {
    let events = item["events"].as_array().expect("events");
    let revalidations = events
        .iter()
        .filter(|e| e["kind"] == "gate.verdict" && e["data"]["class"] == "revalidate")
        .count();
    let mut passed = passed_stages(item);
    let mut removed = 0;
    let mut i = 0;
    while i + 1 < passed.len() {
        if passed[i] == "deploy-staging" && passed[i + 1] == "deploy-staging" {
            passed.remove(i);
            removed += 1;
        } else {
            i += 1;
        }
    }
    assert_eq!(
        removed, revalidations,
        "each repeated deploy-staging pass must follow a deploy that found main moved"
    );
    passed
}

/// The stages whose runs passed, in the order they passed.
pub fn passed_stages(item: &Value) -> Vec<String> {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "stage.passed")
        .filter_map(|e| e["data"]["stage"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn free_ports_are_never_handed_out_twice() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let port = free_port();
        assert!(seen.insert(port), "port {port} was handed out twice");
        assert!((20_000..32_000).contains(&port));
    }
}
