//! PostgreSQL restarted while `orch worker` processes are in the middle of runs (issue #8's "bad
//! input"): the workers reconnect and go on, and nothing is lost or done twice.
//!
//! The test owns its server (a [`Cluster`]: restarting the shared test server would break every
//! other PostgreSQL test running beside it). Two workers run items whose agents take a while;
//! the server is restarted once with `-m fast` (sessions ended, clean shutdown) and once with
//! `-m immediate` (every server process killed, crash recovery from the WAL), each time while
//! runs are in flight. Afterwards every item must be done, every stage passed exactly once per
//! item, every history gap-free, and both workers must be the very processes started at the
//! beginning. (Before the store retried and the engine handed such runs back, one run in five
//! here ended with an item BLOCKED: a review whose store call was cut off was recorded FAILED.)
//!
//! A second test makes that case certain, on the shared test server: a trigger ends the review
//! run's session more often than the store retries, and the run must be handed back and run
//! again rather than failed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chaos::{Workers, try_statuses};
use crate::harness::{
    Orch, assert_clean_history, git, passed_stages_without_revalidations, slow_agents,
};
use crate::pg::Cluster;

const ITEMS: usize = 4;
const WORKERS: usize = 2;
/// How long each scripted agent step sleeps: long enough that a restart lands inside runs.
const AGENT_SLEEP_MS: u64 = 1500;
/// The whole test is bounded by this.
const DRIVE_LIMIT: Duration = Duration::from_secs(60);
/// When the first restart may come, and the pause before the next (so the workers are busy
/// again in between). Both restarts land within an item's lifetime (five agent steps of
/// [`AGENT_SLEEP_MS`] plus deploys), however fast the machine is.
const FIRST_RESTART: Duration = Duration::from_secs(2);
const BETWEEN_RESTARTS: Duration = Duration::from_secs(3);

const ALL_STAGES: [&str; 7] = [
    "analysis",
    "architecture",
    "development",
    "review",
    "qa",
    "deploy-staging",
    "deploy",
];

/// Points the installation at the cluster, with leases long enough to outlast a restart.
fn use_cluster(orch: &Orch, cluster: &Cluster) {
    let config = orch.path().join("orch.toml");
    let text = std::fs::read_to_string(&config).expect("orch.toml");
    let text = format!("[store]\nurl = \"{}\"\n\n{text}", cluster.url)
        .replace("lease_secs = 5\n", "lease_secs = 6\n");
    std::fs::write(&config, text).expect("orch.toml");
}

#[test]
fn workers_reconnect_when_postgresql_restarts_mid_run() {
    let Some(cluster) = Cluster::start("pgrestart") else {
        return;
    };
    let orch = Orch::new(None);
    slow_agents(&orch, AGENT_SLEEP_MS);
    use_cluster(&orch, &cluster);
    for n in 1..=ITEMS {
        orch.ok(&["item", "add", "--title", &format!("survives restarts {n}")]);
    }
    let mut workers = Workers::new(&orch);
    for _ in 0..WORKERS {
        workers.start();
    }
    let pids = workers.pids();

    let mut restarts = vec!["immediate", "fast"];
    let mut done_restarts = Vec::new();
    let mut server_starts = BTreeSet::from([cluster.started_at()]);
    let mut next_restart = Instant::now() + FIRST_RESTART;
    let mut last = Default::default();
    let mut refusals = BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < DRIVE_LIMIT {
        // The store is briefly unreachable for the CLI too: look again next round.
        let Ok(now) = try_statuses(&orch) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        last = now;
        if restarts.is_empty() && last.len() == ITEMS && last.values().all(|s| s == "done") {
            break;
        }
        for (id, status) in &last {
            if status == "awaiting-approval" {
                // May race a restart; the next round tries again. The last refusal is kept for
                // the failure message.
                let out = orch.run(&["approve", id, "--by", "driver"]);
                if !out.status.success() {
                    refusals.insert(
                        id.clone(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    );
                }
            }
        }
        let in_flight = last.values().filter(|s| *s == "running").count();
        if in_flight > 0
            && Instant::now() >= next_restart
            && let Some(mode) = restarts.pop()
        {
            eprintln!(
                "pgrestart: restarting PostgreSQL -m {mode} with {in_flight} item(s) running, \
                 {:.1}s in",
                started.elapsed().as_secs_f64()
            );
            cluster.restart(mode);
            assert!(
                server_starts.insert(cluster.started_at()),
                "pg_ctl restart -m {mode} must start a new server"
            );
            done_restarts.push(mode);
            next_restart = Instant::now() + BETWEEN_RESTARTS;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    let exited = workers.exited();
    let still_running = workers.pids();
    workers.stop_all();
    let stderr: String = (1..=WORKERS)
        .map(|n| {
            let err = std::fs::read_to_string(orch.path().join(format!("worker-{n}.err")));
            format!("--- worker {n} stderr:\n{}\n", err.unwrap_or_default())
        })
        .collect();
    eprintln!(
        "pgrestart: {} restart(s), {:.1}s\n{stderr}",
        done_restarts.len(),
        elapsed.as_secs_f64()
    );
    let board = || {
        let mut out = format!("last approval refusals: {refusals:#?}\n");
        out.push_str(&orch.ok(&["item", "list"]));
        if let Some((id, _)) = last.iter().find(|(_, status)| *status != "done") {
            out.push_str(&orch.ok(&["item", "show", id, "--events"]));
        }
        out
    };

    assert_eq!(
        done_restarts,
        ["fast", "immediate"],
        "both restarts must have happened while runs were in flight:\n{}",
        board()
    );
    assert!(
        exited.is_empty(),
        "no worker may die when PostgreSQL restarts: {exited:?}\n{stderr}"
    );
    assert_eq!(
        still_running, pids,
        "the workers at the end are the ones started at the beginning"
    );
    assert!(
        last.len() == ITEMS && last.values().all(|s| s == "done"),
        "every item must be done within {DRIVE_LIMIT:?}:\n{}\n{stderr}\n--- server log:\n{}",
        board(),
        cluster.log()
    );
    for id in last.keys() {
        let item = orch.item(id);
        assert_clean_history(&item);
        assert_eq!(
            passed_stages_without_revalidations(&item),
            ALL_STAGES,
            "{id}: every stage passed exactly once, in order"
        );
        let mut held = BTreeSet::new();
        for e in item["events"].as_array().expect("events") {
            if e["kind"] == "run.claimed" {
                let claim = (e["run_id"].as_i64(), e["data"]["epoch"].as_i64());
                assert!(held.insert(claim), "{id}: {claim:?} claimed twice");
            }
        }
    }
    // main's own history (first parents): one merge per item, none twice. Candidates of earlier
    // stagings, left behind by a re-validation, live on the item's side only.
    let merges = git(
        &orch.repo(),
        &["log", "--merges", "--first-parent", "--format=%s", "main"],
    );
    assert_eq!(
        merges.lines().count(),
        ITEMS,
        "one merge per item, none twice: {merges}"
    );
}

/// Makes the review run's checkpoint write end its own session, six times in all (a sequence
/// counts, since it is not rolled back): more than the store's five attempts, so the first
/// execution of review sees the store unreachable, and the next one goes through.
const KILL_REVIEW_CHECKPOINTS: &str = "
CREATE SEQUENCE test_kills;
CREATE FUNCTION test_kill_own_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('test_kills') <= 6 THEN
    PERFORM pg_terminate_backend(pg_backend_pid());
    PERFORM pg_sleep(5);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_kill_review_checkpoint BEFORE UPDATE OF checkpoint_json ON stage_runs
  FOR EACH ROW WHEN (NEW.stage = 'review') EXECUTE FUNCTION test_kill_own_session();
";

/// A stage whose store calls keep losing their connection beyond the store's own retries is
/// handed back and executed again, not recorded FAILED (which sent the item back to development
/// and, with nothing left to change there, blocked it).
#[test]
fn a_stage_cut_off_from_the_store_is_run_again_not_failed() {
    let Some(db) = crate::pg::TestDatabase::create("store_lost_in_stage") else {
        return;
    };
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let text = std::fs::read_to_string(&config).expect("orch.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{}\"\n\n{text}", db.url)).expect("orch.toml");
    orch.ok(&["item", "add", "--title", "review loses the store"]);
    crate::pg::psql(&db.url, KILL_REVIEW_CHECKPOINTS);

    let item = orch.drive_to_end("QUICK-1");
    let kills = crate::pg::psql(&db.url, "SELECT last_value FROM test_kills");
    assert!(
        kills.parse::<i64>().is_ok_and(|n| n >= 6),
        "the review's sessions were ended six times: {kills}"
    );
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(
        passed_stages_without_revalidations(&item),
        ALL_STAGES,
        "review passed at its first attempt, nothing failed: {item:#}"
    );
    let review_claims: Vec<&Value> = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "run.claimed" && e["data"]["stage"] == "review")
        .collect();
    assert_eq!(
        review_claims.len(),
        2,
        "review was handed back once and claimed again: {review_claims:#?}"
    );
    assert_eq!(review_claims[1]["data"]["reclaimed"], true);
    assert_eq!(review_claims[0]["run_id"], review_claims[1]["run_id"]);
}
