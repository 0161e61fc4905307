//! `docs/deployment.md` followed literally, from scratch: the team setup on PostgreSQL with the
//! real `orch` binary, so that the page cannot drift from what orch does.
//!
//! The page marks what is tested with an HTML comment right before a fenced block:
//!
//! - `<!-- tested: deployment -->` before a `toml` block: the block is written as `orch.toml`;
//! - the same before a `sh` block: the block runs to its end in `bash -eu`, in the data directory,
//!   with what the previous blocks exported (as one shell session would);
//! - `<!-- tested: deployment, keeps running -->` before a `sh` block of one command: the command
//!   runs in the background (its own process group) until the test sends SIGTERM;
//! - `<!-- tested: deployment, systemd unit -->` before an `ini` block: one more worker is
//!   started as systemd would from the unit's `[Service]` section (`WorkingDirectory`,
//!   `EnvironmentFile`, `ExecStart`), and stopped with its `KillSignal` within `TimeoutStopSec`.
//!
//! What the test changes, and only that (the page says so too): `ORCH_STORE_URL` is its own
//! database, set in the environment (the page's `db.internal` URL stays in `orch.toml` and is
//! never used, since the environment wins); ports 8500, 8610 and 8611 become free loopback
//! ports; `/srv/orch`, `/etc/orch` and `/usr/local/bin/orch` become the scratch directory and
//! the built binary. The project the page registers (`billing`) is the harness's quick project,
//! standing in for a repository onboarded as `docs/onboarding.md` describes.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{BIN, Orch, assert_clean_history, free_port, git, stop_deployed};
use crate::pg::TestDatabase;

const PAGE: &str = include_str!("../../../../docs/deployment.md");
const MARKER: &str = "<!-- tested: deployment";
/// The project `ORCH_PROJECTS_JSON` registers on the page.
const PROJECT: &str = "billing";
const ITEM: &str = "BILLING-1";
/// How long the filed item may take to get through the whole pipeline.
const ITEM_LIMIT: Duration = Duration::from_secs(120);

/// A block of the page marked for this test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Marked {
    /// `orch.toml`.
    Config(String),
    /// Shell commands run to their end.
    Script(String),
    /// One shell command left running.
    Service(String),
    /// A systemd unit for a worker.
    Unit(String),
}

/// The marked blocks of `page`, in order; an error names the line of a marker that is not
/// followed by a fenced block, or whose kind and fence language do not go together.
fn marked_blocks(page: &str) -> Result<Vec<Marked>, String> {
    let lines: Vec<&str> = page.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        let Some(rest) = line.strip_prefix(MARKER) else {
            continue;
        };
        let at = i;
        let kind = rest
            .strip_suffix("-->")
            .ok_or_else(|| format!("line {at}: the marker must end with `-->` on its line"))?
            .trim()
            .trim_start_matches(',')
            .trim();
        let lang = lines
            .get(i)
            .and_then(|l| l.trim().strip_prefix("```"))
            .ok_or_else(|| format!("line {at}: the marker must be followed by a fenced block"))?
            .trim();
        i += 1;
        let mut text = String::new();
        loop {
            let line = lines
                .get(i)
                .ok_or_else(|| format!("line {at}: the fenced block never ends"))?;
            i += 1;
            if line.trim() == "```" {
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        blocks.push(match (lang, kind) {
            ("toml", "") => Marked::Config(text),
            ("sh", "") => Marked::Script(text),
            ("sh", "keeps running") => Marked::Service(one_command(&text, at)?),
            ("ini", "systemd unit") => Marked::Unit(text),
            _ => {
                return Err(format!(
                    "line {at}: a `{lang}` block marked `{kind}` is not something this test runs"
                ));
            }
        });
    }
    Ok(blocks)
}

/// The one command of a `keeps running` block, its comment dropped.
fn one_command(block: &str, at: usize) -> Result<String, String> {
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match commands.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(format!(
            "line {at}: a block that keeps running holds exactly one command, not {commands:?}"
        )),
    }
}

/// The `[Service]` settings of a systemd unit (later keys win, as in systemd).
fn service_section(unit: &str) -> BTreeMap<String, String> {
    let mut section = "";
    let mut settings = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    settings
}

/// The page's text with the test's few differences applied (see the module doc).
struct Substitutions(Vec<(&'static str, String)>);

impl Substitutions {
    fn apply(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
    }
}

/// Background processes of the test, each in its own process group; SIGKILLed on drop, so a
/// failing test leaves nothing running.
struct Services(Vec<(String, Child)>);

impl Services {
    fn start(&mut self, name: &str, mut command: Command, dir: &Path) {
        let log = |ext: &str| File::create(dir.join(format!("{name}.{ext}"))).expect("log");
        use std::os::unix::process::CommandExt as _;
        let child = command
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.0.push((name.to_owned(), child));
    }

    /// SIGTERM to each group; each must exit 0 within `limit`.
    fn stop(&mut self, limit: Duration) {
        for (_, child) in &self.0 {
            signal_group(child, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        for (name, mut child) in self.0.drain(..) {
            let status = loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    break status;
                }
                if Instant::now() > deadline {
                    signal_group(&child, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait();
                    panic!("{name} did not stop within {limit:?} of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(status.success(), "{name} exits 0 on SIGTERM: {status}");
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            signal_group(child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn signal_group(child: &Child, signal: nix::sys::signal::Signal) {
    // Never 0 or 1: killpg(0) is our own group, kill(-1) is every process.
    if let Ok(pid) = i32::try_from(child.id())
        && pid > 1
    {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Runs a `sh` block to its end in `dir` with exactly `env`; returns what it printed and the
/// environment it ended with (what it exported).
fn run_script(
    script: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> (String, BTreeMap<String, String>) {
    let dump = dir.join(".env-after-block");
    let out = Command::new("bash")
        .args(["-eu", "-c"])
        .arg(format!("{script}\nenv -0 > \"$0\""))
        .arg(&dump)
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the page's block failed ({}):\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read(&dump).expect("the block's environment");
    let env = exported
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), env)
}

/// The first line `name` printed to stdout, waiting for it up to 30 s.
fn first_line(dir: &Path, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default();
        if let Some((line, _)) = out.split_once('\n') {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{name} printed no line in 30 s; stderr:\n{}",
            std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks a worker's start line: its lease owner, and the store it really uses (the test's,
/// from the environment) shown without user or password.
fn assert_worker_start_line(line: &str, store_host: &str) {
    assert!(
        line.starts_with("orch worker: lease owner ")
            && line.contains(&format!("store postgres://{store_host},"))
            && !line.contains("db.internal")
            && !line.contains('@'),
        "a worker's start line names its lease owner and the store from ORCH_STORE_URL, \
         host only: {line}"
    );
}

/// Stops the instances the page's project deployed, whatever happens to the test.
struct Deployed<'a>(&'a Path);

impl Drop for Deployed<'_> {
    fn drop(&mut self) {
        stop_deployed(self.0, PROJECT);
    }
}

#[test]
fn the_page_is_followed_literally() {
    let Some(db) = TestDatabase::create("deployment_doc") else {
        return;
    };
    let blocks = marked_blocks(PAGE).unwrap_or_else(|e| panic!("docs/deployment.md: {e}"));
    // The harness's installation is the data directory; its quick repository becomes `billing`.
    let orch = Orch::new(None);
    let dir = orch.path();
    git(dir, &["clone", "-q", "repo", PROJECT]);
    let _deployed = Deployed(dir);
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin");
    std::os::unix::fs::symlink(BIN, bin_dir.join("orch")).expect("orch on PATH");
    let serve_port = free_port();
    let subs = Substitutions(vec![
        ("0.0.0.0:8500", format!("127.0.0.1:{serve_port}")),
        ("8610", free_port().to_string()),
        ("8611", free_port().to_string()),
        ("/usr/local/bin/orch", BIN.to_owned()),
        ("/srv/orch", dir.display().to_string()),
        ("/etc/orch", dir.join("etc").display().to_string()),
    ]);

    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(key, _)| !key.starts_with("ORCH_"))
        .collect();
    let path = env.get("PATH").cloned().unwrap_or_default();
    env.insert("PATH".into(), format!("{}:{path}", bin_dir.display()));
    env.insert("ORCH_STORE_URL".into(), db.url.clone());
    let store_host = db
        .url
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the test URL has a user and a host")
        .to_owned();

    let mut services = Services(Vec::new());
    let (mut configs, mut scripts, mut service_names, mut units) = (0, 0, Vec::new(), 0);
    let mut printed = String::new();
    for block in &blocks {
        match block {
            Marked::Config(text) => {
                configs += 1;
                std::fs::write(dir.join("orch.toml"), subs.apply(text)).expect("orch.toml");
            }
            Marked::Script(text) => {
                scripts += 1;
                let (out, after) = run_script(&subs.apply(text), dir, &env);
                printed.push_str(&out);
                env = after;
            }
            Marked::Service(command) => {
                let command = subs.apply(command);
                let name = format!("service-{}", service_names.len() + 1);
                let mut bash = Command::new("bash");
                bash.args(["-eu", "-c"])
                    .arg(format!("exec {command}"))
                    .current_dir(dir)
                    .env_clear()
                    .envs(&env);
                services.start(&name, bash, dir);
                service_names.push((name, command));
            }
            Marked::Unit(text) => {
                units += 1;
                let unit = service_section(&subs.apply(text));
                start_as_systemd_would(&unit, &env, &mut services, dir);
            }
        }
    }
    assert_eq!(
        (configs, units),
        (1, 1),
        "the page marks one orch.toml and one systemd unit"
    );
    assert!(scripts >= 2, "the page's marked commands ran: {blocks:#?}");
    assert!(
        printed.contains(ITEM),
        "`orch item add` printed the new item's id: {printed}"
    );

    let mut workers = 0;
    for (name, command) in &service_names {
        let line = first_line(dir, name);
        if command.starts_with("orch worker") {
            workers += 1;
            assert_worker_start_line(&line, &store_host);
        } else if command.starts_with("orch serve") {
            assert_eq!(
                line,
                format!("orch serve: listening on http://127.0.0.1:{serve_port}")
            );
        }
    }
    assert_worker_start_line(&first_line(dir, "systemd-worker"), &store_host);
    assert_eq!(workers, 1, "the page starts a worker: {service_names:?}");
    let (status, _) = crate::serve::http(serve_port, "GET", "/healthz", "");
    assert_eq!(status, 200, "/healthz answers");
    let (status, metrics) = crate::serve::http(serve_port, "GET", "/metrics", "");
    assert!(
        status == 200 && metrics.contains("orch_items"),
        "/metrics answers with orch's metrics: {status} {metrics}"
    );

    let item = drive_to_done(dir, &env);
    assert_clean_history(&item);
    services.stop(Duration::from_secs(30));
}

/// Starts a worker the way systemd starts the unit: in `WorkingDirectory`, with the variables
/// of `EnvironmentFile` (written here with the test's store, as the unit's comment says to), by
/// `ExecStart`. Checks the settings the page relies on for a clean stop.
fn start_as_systemd_would(
    unit: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    services: &mut Services,
    dir: &Path,
) {
    let setting = |key: &str| {
        unit.get(key)
            .unwrap_or_else(|| panic!("the unit's [Service] sets {key}: {unit:?}"))
    };
    assert_eq!(
        setting("KillSignal"),
        "SIGTERM",
        "a worker stops on SIGTERM"
    );
    assert_eq!(setting("Restart"), "on-failure");
    let stop_secs: u64 = setting("TimeoutStopSec").parse().expect("TimeoutStopSec");
    assert!(stop_secs >= 10, "workers get time to stop their agents");
    // What the unit's comment says the file holds: the store URL, and the project list when it
    // comes from the environment.
    let env_file = Path::new(setting("EnvironmentFile"));
    std::fs::create_dir_all(env_file.parent().expect("a directory")).expect("etc");
    let mut lines = String::new();
    for key in ["ORCH_STORE_URL", "ORCH_PROJECTS_JSON"] {
        let value = env.get(key).unwrap_or_else(|| panic!("{key} was exported"));
        lines.push_str(&format!("{key}={value}\n"));
    }
    std::fs::write(env_file, lines).expect("the environment file");
    let mut service_env: BTreeMap<String, String> = std::fs::read_to_string(env_file)
        .expect("the environment file")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // systemd's own: a PATH (git and python3 for the pipeline), HOME.
    for key in ["PATH", "HOME"] {
        if let Some(value) = env.get(key) {
            service_env.insert(key.to_owned(), value.clone());
        }
    }
    let exec: Vec<&str> = setting("ExecStart").split_whitespace().collect();
    let (program, args) = exec.split_first().expect("ExecStart names a program");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(setting("WorkingDirectory"))
        .env_clear()
        .envs(service_env);
    services.start("systemd-worker", command, dir);
}

/// Waits for the page's item to finish, approving it (as a person would) when it waits at
/// confirm-deploy; returns its record.
fn drive_to_done(dir: &Path, env: &BTreeMap<String, String>) -> Value {
    let orch = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .envs(env)
            .output()
            .expect("orch runs")
    };
    let deadline = Instant::now() + ITEM_LIMIT;
    loop {
        let out = orch(&["item", "show", ITEM, "--json"]);
        assert!(
            out.status.success(),
            "orch item show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let item: Value = serde_json::from_slice(&out.stdout).expect("json");
        match item["status"].as_str() {
            Some("done") => return item,
            Some("awaiting-approval") => {
                let _ = orch(&["approve", ITEM, "--by", "deployment-doc-test"]);
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{ITEM} is not done after {ITEM_LIMIT:?}: {item:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn marked_blocks_are_read_in_order_and_bad_markers_are_named() {
    let page = "intro\n<!-- tested: deployment -->\n```toml\n[store]\n```\n\ntext\n\
                ```sh\nnot marked\n```\n<!-- tested: deployment -->\n```sh\na\nb\n```\n\
                <!-- tested: deployment, keeps running -->\n```sh\n# comment\norch worker   # why\n```\n\
                <!-- tested: deployment, systemd unit -->\n```ini\n[Service]\nUser=orch\n```\n";
    assert_eq!(
        marked_blocks(page),
        Ok(vec![
            Marked::Config("[store]\n".into()),
            Marked::Script("a\nb\n".into()),
            Marked::Service("orch worker".into()),
            Marked::Unit("[Service]\nUser=orch\n".into()),
        ])
    );
    for (bad, says) in [
        (
            "<!-- tested: deployment -->\ntext\n",
            "line 1: the marker must be followed",
        ),
        (
            "x\n<!-- tested: deployment -->\n```sh\nrm\n",
            "line 2: the fenced block never ends",
        ),
        (
            "<!-- tested: deployment, keeps running -->\n```sh\na\nb\n```\n",
            "holds exactly one command",
        ),
        (
            "<!-- tested: deployment -->\n```ini\n[Unit]\n```\n",
            "a `ini` block marked `` is not",
        ),
    ] {
        let got = marked_blocks(bad);
        assert!(
            got.as_ref().is_err_and(|e| e.contains(says)),
            "{bad:?}: {got:?}"
        );
    }
    assert_eq!(
        service_section("[Unit]\nA=1\n[Service]\n# X=2\nExecStart=/bin/orch worker\n"),
        BTreeMap::from([("ExecStart".to_owned(), "/bin/orch worker".to_owned())])
    );
}
