//! Chaos with several `orch worker` processes on one PostgreSQL store: workers are SIGKILLed at
//! random and replaced while 100 items of 10 projects go through the whole pipeline. Every item must end done,
//! merged once, with a clean history and no run ever held by two workers under one epoch.
//!
//! Needs a PostgreSQL server: `ORCH_TEST_POSTGRES_URL` (see `.ci/install-postgres.sh`); each test
//! creates its own database there with `psql` and drops it afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{Orch, assert_clean_history, free_port, git, stop_deployed};
use crate::pg::TestDatabase;

const PROJECTS: usize = 10;
const ITEMS_PER_PROJECT: usize = 10;
const ITEMS: usize = PROJECTS * ITEMS_PER_PROJECT;
const WORKERS: usize = 3;
/// The whole drive is bounded by this; chaos stops earlier so the end is reached calmly.
const DRIVE_LIMIT: Duration = Duration::from_secs(480);
const CHAOS_LIMIT: Duration = Duration::from_secs(90);
const KILL_EVERY: Duration = Duration::from_millis(1500);

/// The worker processes of a test; every one still running is SIGKILLed and reaped on drop, so a
/// failing test leaves no worker behind.
pub(crate) struct Workers<'a> {
    orch: &'a Orch,
    running: Vec<Child>,
    started: usize,
}

impl<'a> Workers<'a> {
    pub(crate) fn new(orch: &'a Orch) -> Self {
        Self {
            orch,
            running: Vec::new(),
            started: 0,
        }
    }

    pub(crate) fn start(&mut self) {
        self.started += 1;
        let log = |kind: &str| {
            File::create(
                self.orch
                    .path()
                    .join(format!("worker-{}.{kind}", self.started)),
            )
            .expect("worker log")
        };
        let child = self
            .orch
            .command(&["worker", "--poll-secs", "1"])
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .spawn()
            .expect("spawn orch worker");
        self.running.push(child);
    }

    /// The pids of the running workers, in the order they were started.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.running.iter().map(Child::id).collect()
    }

    /// The workers that have exited (with how), by pid.
    pub(crate) fn exited(&mut self) -> Vec<(u32, std::process::ExitStatus)> {
        self.running
            .iter_mut()
            .filter_map(|c| Some((c.id(), c.try_wait().ok().flatten()?)))
            .collect()
    }

    fn kill(&mut self, index: usize) {
        let mut child = self.running.swap_remove(index);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM to every worker, then waits for each to exit (SIGKILL after a generous grace).
    pub(crate) fn stop_all(&mut self) {
        for child in &self.running {
            // A child's pid is never 0 or 1, but the check keeps `kill` away from process groups.
            if let Ok(pid) = i32::try_from(child.id())
                && pid > 1
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for mut child in self.running.drain(..) {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(
                            status.success(),
                            "a worker ended badly on SIGTERM: {status}"
                        );
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("a worker did not stop within 30 s of SIGTERM");
                    }
                }
            }
        }
    }
}

impl Drop for Workers<'_> {
    fn drop(&mut self) {
        for child in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small xorshift generator: which worker dies is random, and the seed is printed so a failing
/// run can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("small")
    }
}

pub(crate) fn statuses(orch: &Orch) -> BTreeMap<String, String> {
    try_statuses(orch).unwrap_or_else(|e| panic!("{e}"))
}

/// Every item's status, or what `orch item list` said when it failed (its store unreachable).
pub(crate) fn try_statuses(orch: &Orch) -> Result<BTreeMap<String, String>, String> {
    let out = orch.run(&["item", "list", "--json"]);
    if !out.status.success() {
        return Err(format!(
            "orch item list --json failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    Ok(list
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_owned(),
                i["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect())
}

/// What a failure message shows: the board, the history of the first unfinished item, and the
/// errors the first workers printed.
fn diagnosis(orch: &Orch, last: &BTreeMap<String, String>) -> String {
    let mut out = orch.ok(&["item", "list"]);
    if let Some((id, _)) = last.iter().find(|(_, status)| *status != "done") {
        out.push_str(&orch.ok(&["item", "show", id, "--events"]));
    }
    for n in 1..=3 {
        let err = std::fs::read_to_string(orch.path().join(format!("worker-{n}.err")));
        out.push_str(&format!(
            "--- worker {n} stderr:\n{}\n",
            err.unwrap_or_default()
        ));
    }
    out
}

/// The projects of the test: `chaos-a`, `chaos-b`, ...
fn project_names() -> Vec<String> {
    (b'a'..)
        .take(PROJECTS)
        .map(|c| format!("chaos-{}", char::from(c)))
        .collect()
}

/// `orch.toml` for the test's projects, each a clone of the harness's quick repository with
/// ports of its own, on the test database. Items of one project share its staging and prod
/// ports: the per-project deploy lock must keep workers on different machines-to-be (processes
/// here) from deploying one project at once.
fn configure(orch: &Orch, db: &TestDatabase) {
    let mut config = format!(
        "[store]\nurl = \"{}\"\n\n[engine]\nmax_parallel = 1\nlease_secs = 3\n",
        db.url
    );
    for name in project_names() {
        git(
            orch.path(),
            &["clone", "-q", "repo", &format!("repo-{name}")],
        );
        config.push_str(&format!(
            "\n[[projects]]\nname = \"{name}\"\nrepo = \"repo-{name}\"\nstaging_port = {}\n\
             prod_port = {}\nhealth_tries = 200\nhealth_interval_ms = 20\n",
            free_port(),
            free_port()
        ));
    }
    std::fs::write(orch.path().join("orch.toml"), config).expect("orch.toml");
}

/// Stops the staging and prod instances of the test's projects, whatever happens to the test.
struct Instances<'a>(&'a Orch);

impl Drop for Instances<'_> {
    fn drop(&mut self) {
        for name in project_names() {
            stop_deployed(self.0.path(), &name);
        }
    }
}

#[test]
fn workers_killed_at_random_still_finish_every_item_once() {
    let Some(db) = TestDatabase::create("worker_chaos") else {
        return;
    };
    let orch = Orch::new(None);
    configure(&orch, &db);
    let _instances = Instances(&orch);
    for n in 1..=ITEMS_PER_PROJECT {
        for name in project_names() {
            orch.ok(&[
                "item",
                "add",
                "--project",
                &name,
                "--title",
                &format!("chaos {n} in {name}"),
            ]);
        }
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("worker chaos: seed {seed}");
    let mut dice = Dice(seed);
    let mut workers = Workers::new(&orch);
    for _ in 0..WORKERS {
        workers.start();
    }

    let started = Instant::now();
    let mut last_kill = Instant::now();
    let mut kills = 0;
    let mut struck_mid_run = false;
    let mut approved = BTreeSet::new();
    let mut last = BTreeMap::new();
    while started.elapsed() < DRIVE_LIMIT {
        last = statuses(&orch);
        if last.len() == ITEMS && last.values().all(|s| s == "done") {
            break;
        }
        for (id, status) in &last {
            // An approval may race a worker's own move of the item; the next round looks again.
            if status == "awaiting-approval"
                && orch
                    .run(&["approve", id, "--by", "driver"])
                    .status
                    .success()
            {
                approved.insert(id.clone());
            }
        }
        if !struck_mid_run && last.values().any(|s| s == "running") {
            // Once an item is running, every worker at once: its run's worker is among them, so
            // a run is cut off mid-way whatever the dice say, and must be re-claimed below.
            for _ in 0..WORKERS {
                workers.kill(0);
            }
            for _ in 0..WORKERS {
                workers.start();
            }
            kills += WORKERS;
            struck_mid_run = true;
            last_kill = Instant::now();
        } else if started.elapsed() < CHAOS_LIMIT && last_kill.elapsed() >= KILL_EVERY {
            workers.kill(dice.below(WORKERS));
            workers.start();
            kills += 1;
            last_kill = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    workers.stop_all();
    eprintln!(
        "worker chaos: {kills} worker(s) killed, {} started, {:.1}s",
        workers.started,
        started.elapsed().as_secs_f64()
    );

    assert!(
        last.values().all(|s| s == "done") && last.len() == ITEMS,
        "every item must be done within {DRIVE_LIMIT:?}:\n{}",
        diagnosis(&orch, &last)
    );
    assert!(kills > 0, "the chaos must have killed at least one worker");
    assert_eq!(
        approved.len(),
        ITEMS,
        "every item waited for, and got, the driver's approval: {approved:?}"
    );
    // The first worker that lived long enough to say it (the strike above may kill a worker
    // before its first line once another one claimed).
    let start_line = (1..=workers.started)
        .map(|n| std::fs::read_to_string(orch.path().join(format!("worker-{n}.out"))))
        .find_map(|log| log.ok().filter(|l| !l.is_empty()))
        .expect("a worker's log with its start line");
    assert!(
        start_line.starts_with("orch worker: lease owner ") && !start_line.contains(&db.name),
        "a worker names its lease owner and the store's host only: {start_line}"
    );
    let mut reclaimed = 0;
    for id in last.keys() {
        let item = orch.item(id);
        assert_clean_history(&item);
        let mut held = BTreeSet::new();
        for e in item["events"].as_array().expect("events") {
            if e["kind"] == "run.claimed" {
                reclaimed += usize::from(e["data"]["reclaimed"] == true);
                let claim = (e["run_id"].as_i64(), e["data"]["epoch"].as_i64());
                assert!(
                    held.insert(claim),
                    "{id}: run {:?} claimed twice under epoch {:?}",
                    claim.0,
                    claim.1
                );
            }
        }
    }
    eprintln!("worker chaos: {reclaimed} run(s) re-claimed after their worker died");
    assert!(
        struck_mid_run && reclaimed > 0,
        "the chaos must have killed a worker in the middle of a run (struck while running: \
         {struck_mid_run}, runs re-claimed: {reclaimed})"
    );
    for name in project_names() {
        // `chaos-a` files `CHAOSA-1` to `CHAOSA-10`, in that order.
        let prefix = name.replace('-', "").to_ascii_uppercase();
        let expected: BTreeSet<String> = (1..=ITEMS_PER_PROJECT)
            .map(|n| format!("Merge {prefix}-{n}: chaos {n} in {name}"))
            .collect();
        let repo = orch.path().join(format!("repo-{name}"));
        // main's own history: candidates left behind by re-validations are on the items' side.
        let merges = git(
            &repo,
            &["log", "--merges", "--first-parent", "--format=%s", "main"],
        );
        let merged: Vec<&str> = merges.lines().collect();
        assert_eq!(
            merged.len(),
            ITEMS_PER_PROJECT,
            "{name}: one merge per item, none twice: {merged:#?}"
        );
        assert_eq!(
            merged
                .iter()
                .map(|m| (*m).to_owned())
                .collect::<BTreeSet<_>>(),
            expected,
            "{name}: exactly its items were merged"
        );
    }
}
