//! The hostile-agent suite at the process level: one scripted attacker per escape, each run in
//! the bubblewrap sandbox (it must be contained) and once unconfined (it must succeed there, so
//! that each test is seen able to fail: the protection is what stops it).
//!
//! An attacker prints `ESCAPED <what>` when its attack worked.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use orch_process::{ExitOutcome, Finished, Limits, Policy, Sandbox, Spec};
use tokio_util::sync::CancellationToken;

use crate::Recorder;

/// A data directory as orch lays it out: `orch.toml`, `orch.db`, a project repository and two
/// items' work trees. The attacker works in item A's.
struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::write(root.join("orch.toml"), "secret = \"toml-secret\"\n").expect("toml");
        std::fs::write(root.join("orch.db"), "db-secret").expect("db");
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        std::fs::write(repo.join("README.md"), "main repository\n").expect("readme");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "initial"]);
        for item in ["A", "B"] {
            let wt = root.join("worktrees/p").join(item);
            git(
                &repo,
                &[
                    "worktree",
                    "add",
                    "-q",
                    "-b",
                    &format!("orch/{item}"),
                    &wt.display().to_string(),
                ],
            );
        }
        Self { _dir: dir, root }
    }

    fn worktree(&self) -> PathBuf {
        self.root.join("worktrees/p/A")
    }

    async fn run(&self, script: &str, sandbox: Sandbox) -> (Finished, String) {
        let spec = Spec {
            timeout: Duration::from_secs(20),
            kill_grace: Duration::from_millis(300),
            ..Spec::new("bash", self.worktree())
        }
        .args(["-c", script])
        .sandbox(sandbox);
        let mut recorder = Recorder::default();
        let finished = orch_process::run(&spec, &CancellationToken::new(), &mut recorder).await;
        let text = recorder
            .lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        (finished, text)
    }
}

fn confined_policy() -> Policy {
    Policy {
        limits: Limits {
            memory_mib: Some(256),
            processes: Some(256),
            file_mib: Some(64),
        },
        ..Policy::default()
    }
}

/// The sandbox's two implementations: every attack of this suite runs against each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Bubblewrap,
    Docker,
}

impl Runtime {
    fn sandbox(self, policy: Policy) -> Sandbox {
        match self {
            Runtime::Bubblewrap => Sandbox::Bubblewrap(policy),
            Runtime::Docker => Sandbox::Docker(policy),
        }
    }

    fn confined(self) -> Sandbox {
        self.sandbox(confined_policy())
    }

    /// Whether this runtime can run here: bubblewrap is a prerequisite of the suite; docker is
    /// skipped without a daemon, except where every dependency is required ([`crate::skip`]).
    fn here(self) -> bool {
        self == Runtime::Bubblewrap || crate::docker_here()
    }
}

/// One `#[tokio::test]` per runtime for each named attack: `bubblewrap::NAME`, `docker::NAME`.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod bubblewrap {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Runtime::Bubblewrap).await
                }
            )*
        }
        mod docker {
            $(
                #[tokio::test]
                async fn $name() {
                    if super::Runtime::Docker.here() {
                        super::$name(super::Runtime::Docker).await
                    }
                }
            )*
        }
    };
}

on_both_runtimes!(
    reading_orchs_environment_is_contained,
    orchs_processes_are_invisible,
    orchs_config_database_and_other_trees_are_absent,
    writing_outside_the_work_tree_is_refused,
    writing_into_the_data_directory_stays_inside,
    a_symlink_out_of_the_work_tree_leads_nowhere,
    a_loopback_port_of_the_host_is_unreachable,
    a_dns_query_reaches_no_resolver,
    there_is_no_network_interface_but_loopback,
    the_agent_is_not_root_and_cannot_make_devices_or_namespaces,
    filling_memory_hits_the_limit,
    no_process_outlives_the_run,
    pid_1s_environment_is_not_orchs,
    the_work_tree_git_home_and_tmp_work_inside,
    a_sandbox_that_cannot_be_set_up_never_runs_the_program_unconfined,
    a_file_past_the_limit_kills_the_writer_and_names_the_limit,
    a_fork_bomb_meets_the_process_limit,
    an_opted_out_run_says_so_in_its_log,
    egress_reaches_allowed_hosts_only_and_records_every_refusal,
);

/// Runs `script` confined (no `ESCAPED` may appear, and the attacker must have run to its end:
/// it prints `DONE`) and unconfined (an `ESCAPED` must appear).
async fn assert_contained(rt: Runtime, script: &str) {
    let m = Machine::new();
    assert_contained_on(rt, &m, script).await;
}

async fn assert_contained_on(rt: Runtime, m: &Machine, script: &str) {
    let script = format!("{script}\necho DONE");
    let (finished, out) = m.run(&script, rt.confined()).await;
    assert!(
        out.contains("DONE"),
        "the attacker did not run: {finished:?}\n{out}"
    );
    assert!(!out.contains("ESCAPED"), "escaped the sandbox:\n{out}");
    let (_, out) = m.run(&script, Sandbox::OptedOut).await;
    assert!(
        out.contains("ESCAPED"),
        "the attack does not work even unconfined, so this test proves nothing:\n{out}"
    );
}

async fn reading_orchs_environment_is_contained(rt: Runtime) {
    // The test process stands for orch: cargo gave it CARGO_PKG_NAME.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    assert_contained(
        rt,
        "for f in /proc/[0-9]*/environ; do \
           grep -qa CARGO_PKG_NAME \"$f\" 2>/dev/null && echo \"ESCAPED $f\"; done",
    )
    .await;
}

async fn orchs_processes_are_invisible(rt: Runtime) {
    let me = std::process::id();
    assert_contained(
        rt,
        &format!(
            "[ -e /proc/{me} ] && echo ESCAPED sees orch; \
         kill -0 {me} 2>/dev/null && echo ESCAPED signals orch; \
         cat /proc/{me}/maps >/dev/null 2>&1 && echo ESCAPED reads orch memory map"
        ),
    )
    .await;
}

async fn orchs_config_database_and_other_trees_are_absent(rt: Runtime) {
    let m = Machine::new();
    let r = m.root.display();
    assert_contained_on(
        rt,
        &m,
        &format!(
            "for f in {r}/orch.toml {r}/orch.db {r}/worktrees/p/B/README.md {r}/repo/README.md \
               {r}/repo/.git/worktrees/B/HEAD; do \
               cat \"$f\" >/dev/null 2>&1 && echo \"ESCAPED read $f\"; done"
        ),
    )
    .await;
}

async fn writing_outside_the_work_tree_is_refused(rt: Runtime) {
    let m = Machine::new();
    let r = m.root.display();
    assert_contained_on(
        rt,
        &m,
        &format!(
            "echo x > {r}/repo/.git/hooks/pre-commit 2>/dev/null && echo ESCAPED hook; \
             echo x > {r}/repo/.git/worktrees/A/commondir 2>/dev/null && echo ESCAPED commondir; \
             echo x > /usr/planted-by-agent 2>/dev/null && echo ESCAPED usr && rm -f /usr/planted-by-agent"
        ),
    )
    .await;
}

async fn writing_into_the_data_directory_stays_inside(rt: Runtime) {
    // The sandbox may see an empty folder where the data directory's path passes (bwrap makes
    // the folders its mounts need), but nothing written there reaches the host.
    let m = Machine::new();
    let planted = m.root.join("planted");
    let script = format!("echo x > {} 2>/dev/null; echo DONE", planted.display());
    let (_, out) = m.run(&script, rt.confined()).await;
    assert!(out.contains("DONE"), "{out}");
    assert!(!planted.exists(), "the write reached the host");
    let (_, _) = m.run(&script, Sandbox::OptedOut).await;
    assert!(planted.exists(), "unconfined, it does");
}

async fn a_symlink_out_of_the_work_tree_leads_nowhere(rt: Runtime) {
    let m = Machine::new();
    let r = m.root.display();
    assert_contained_on(
        rt,
        &m,
        &format!(
            "ln -sf {r}/orch.toml link; cat link 2>/dev/null | grep -q toml-secret && echo ESCAPED"
        ),
    )
    .await;
}

async fn a_loopback_port_of_the_host_is_unreachable(rt: Runtime) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    assert_contained(rt, &format!(
        "timeout 3 bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo ESCAPED tcp"
    ))
    .await;
}

async fn a_dns_query_reaches_no_resolver(rt: Runtime) {
    // A resolver on the host's loopback: the sandbox must not reach it (nor any other).
    let resolver = UdpSocket::bind("127.0.0.1:0").expect("udp");
    resolver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let port = resolver.local_addr().expect("addr").port();
    let m = Machine::new();
    let query = format!("printf 'query' > /dev/udp/127.0.0.1/{port} 2>/dev/null; echo sent");
    let (_, out) = m.run(&query, rt.confined()).await;
    assert!(out.contains("sent"), "{out}");
    let mut buf = [0u8; 64];
    assert!(
        resolver.recv(&mut buf).is_err(),
        "a datagram left the sandbox"
    );
    let (_, _) = m.run(&query, Sandbox::OptedOut).await;
    assert!(resolver.recv(&mut buf).is_ok(), "unconfined, it arrives");
}

async fn there_is_no_network_interface_but_loopback(rt: Runtime) {
    // /proc/net/dev: two header lines and one line per interface.
    assert_contained(
        rt,
        "[ \"$(wc -l < /proc/net/dev)\" -gt 3 ] && echo ESCAPED has a route out",
    )
    .await;
}

async fn the_agent_is_not_root_and_cannot_make_devices_or_namespaces(rt: Runtime) {
    assert_contained(
        rt,
        "[ \"$(id -u)\" = 0 ] && echo ESCAPED root; \
         mknod dev-null-copy c 1 3 2>/dev/null && echo ESCAPED device node; \
         unshare -U true 2>/dev/null && echo ESCAPED new user namespace",
    )
    .await;
}

async fn filling_memory_hits_the_limit(rt: Runtime) {
    let m = Machine::new();
    let script = "python3 -c 'b = bytearray(768 << 20); print(\"ESCAPED allocated\")' 2>&1";
    let (finished, out) = m.run(script, rt.confined()).await;
    assert!(out.contains("MemoryError"), "{out}");
    assert!(
        finished
            .tail
            .contains("memory limit of 256 MiB per process"),
        "the limit is named: {}",
        finished.tail
    );
    assert!(!out.contains("ESCAPED"), "{out}");
    let (_, out) = m.run(script, Sandbox::OptedOut).await;
    assert!(out.contains("ESCAPED"), "{out}");
}

/// Whether a process whose command line holds `marker` runs on the host.
fn running(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let mut cmdline = Vec::new();
        if std::fs::File::open(entry.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut cmdline))
            .is_ok()
            && String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
        {
            pids.push(pid);
        }
    }
    pids
}

async fn no_process_outlives_the_run(rt: Runtime) {
    let m = Machine::new();
    // A daemon in its own session: it leaves the process group orch kills.
    let seconds = 3000 + std::process::id() % 1000;
    let marker = format!("sleep {seconds}");
    // The shell waits until the daemon is in its own session (it writes the file after
    // setsid): a run that ended first would kill it with the group, unconfined too.
    let script = format!(
        "rm -f daemon.pid; setsid -f sh -c 'echo $$ > daemon.pid; exec {marker}' \
         </dev/null >/dev/null 2>&1; until [ -s daemon.pid ]; do sleep 0.05; done; echo started"
    );
    let (_, out) = m.run(&script, rt.confined()).await;
    assert!(out.contains("started"), "{out}");
    assert!(
        crate::eventually(|| running(&marker).is_empty()),
        "the daemon survived"
    );
    let (_, _) = m.run(&script, Sandbox::OptedOut).await;
    let survivors = running(&marker);
    for pid in &survivors {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    assert!(!survivors.is_empty(), "unconfined, the daemon survives");
}

async fn pid_1s_environment_is_not_orchs(rt: Runtime) {
    // bwrap (or docker's init) is pid 1 inside: its environment must not be orch's.
    let m = Machine::new();
    let (_, out) = m
        .run("tr '\\0' '\\n' < /proc/1/environ; echo DONE", rt.confined())
        .await;
    assert!(out.contains("DONE"), "{out}");
    let names: Vec<&str> = out
        .lines()
        .filter(|l| l.contains('='))
        .filter_map(|l| l.split('=').next())
        .collect();
    match rt {
        // bwrap is started with PATH only.
        Runtime::Bubblewrap => assert_eq!(names, ["PATH"], "{out}"),
        // docker's pid 1 (the shell that starts the program) has the container's environment:
        // nothing but what the child itself was given.
        Runtime::Docker => {
            let (_, own) = m.run("env; echo DONE", rt.confined()).await;
            let childs: Vec<&str> = own
                .lines()
                .filter(|l| l.contains('='))
                .filter_map(|l| l.split('=').next())
                .collect();
            let more: Vec<&&str> = names.iter().filter(|n| !childs.contains(n)).collect();
            assert!(
                more.is_empty(),
                "pid 1 has {more:?} beyond the child's own:\n{out}"
            );
            assert!(!names.contains(&"CARGO_PKG_NAME"), "{out}");
            assert!(names.contains(&"PATH"), "{out}");
        }
    }
}

async fn the_work_tree_git_home_and_tmp_work_inside(rt: Runtime) {
    use std::os::unix::fs::MetadataExt;
    let m = Machine::new();
    // Not root inside: uid 1000, except in docker under a non-root orch, which runs the
    // container as orch's own uid (the files it writes stay orch's).
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let uid = if rt == Runtime::Docker && me != 0 {
        me
    } else {
        1000
    };
    let (finished, out) = m
        .run(
            &format!(
                "set -e; echo work > file.txt; git status --porcelain; echo h > \"$HOME/h\"; \
                 echo t > /tmp/t; [ \"$(id -u)\" = {uid} ]; echo OK"
            ),
            rt.confined(),
        )
        .await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0), "{out}");
    assert!(out.contains("?? file.txt"), "{out}");
    assert!(out.contains("OK"), "{out}");
    assert!(m.worktree().join("file.txt").exists());
}

async fn a_sandbox_that_cannot_be_set_up_never_runs_the_program_unconfined(rt: Runtime) {
    use std::os::unix::ffi::OsStrExt;
    let m = Machine::new();
    // A folder whose name is not UTF-8 cannot be passed to bwrap (or docker) faithfully.
    let odd = std::ffi::OsStr::from_bytes(b"/tmp/not-utf8-\xff");
    let sandbox = rt.sandbox(Policy {
        read_only: vec![PathBuf::from(odd)],
        ..Policy::default()
    });
    let (finished, out) = m.run("echo ran > ran.txt; echo RAN", sandbox).await;
    assert!(
        matches!(&finished.outcome, ExitOutcome::FailedToStart(m) if m.contains("not UTF-8")),
        "{finished:?}"
    );
    assert!(!out.contains("RAN") && !m.worktree().join("ran.txt").exists());
}

async fn a_file_past_the_limit_kills_the_writer_and_names_the_limit(rt: Runtime) {
    let m = Machine::new();
    let script = "head -c 100000000 /dev/zero > big.bin && echo ESCAPED wrote it all";
    let (finished, out) = m.run(script, rt.confined()).await;
    assert!(!out.contains("ESCAPED"), "{out}");
    let written = std::fs::metadata(m.worktree().join("big.bin")).map(|m| m.len());
    assert_eq!(written.ok(), Some(64 << 20), "stopped at the limit");
    // bash reports its child's SIGXFSZ; a program killed by it directly is reported by bwrap
    // as the exit code 128 + 25.
    let (direct, _) = m
        .run("exec head -c 100000000 /dev/zero > big2.bin", rt.confined())
        .await;
    assert_eq!(direct.outcome, ExitOutcome::Exited(153), "{direct:?}");
    assert!(direct.tail.contains("file size limit"), "{}", direct.tail);
    assert!(
        finished.tail.contains("file size limit"),
        "{}",
        finished.tail
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether a pids cgroup hierarchy is writable here (v2 with the pids controller, or v1).
fn pids_cgroup_writable() -> bool {
    let v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|m| {
            std::fs::read_to_string(format!("{m}/cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|n| n == "pids"))
        });
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").is_file();
    let writable = |dir: &str| {
        let probe = format!("{dir}/orch-test-probe-{}", std::process::id());
        let ok = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        ok
    };
    (v2 && (writable("/sys/fs/cgroup") || writable("/sys/fs/cgroup/unified")))
        || (v1 && writable("/sys/fs/cgroup/pids"))
}

async fn a_fork_bomb_meets_the_process_limit(rt: Runtime) {
    let m = Machine::new();
    let sandbox = rt.sandbox(Policy {
        limits: Limits {
            processes: Some(40),
            ..Limits::default()
        },
        ..Policy::default()
    });
    // Bounded, so that it cannot hurt the machine where the kernel does not enforce the limit.
    // The bomb runs in a subshell: a non-interactive shell that cannot fork exits, so only the
    // subshell dies at the limit. The count uses no fork (a glob into the positional
    // parameters): at the limit, a command substitution could not start.
    // bubblewrap applies RLIMIT_NPROC (and, as root, a pids cgroup); docker its container's
    // pids cgroup (`--pids-limit`), at /sys/fs/cgroup/pids/ (v1) or /sys/fs/cgroup/ (v2).
    let script = "grep 'Max processes' /proc/self/limits; \
                  for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do \
                    [ -r $f ] && echo \"pids.max: $(cat $f)\"; done; \
                  (for i in $(seq 1 120); do sleep 3 & done) 2>/dev/null; \
                  set -- /proc/[0-9]*; echo \"alive: $#\"; true";
    let (_, out) = m.run(script, sandbox).await;
    // The limit is applied inside in every case.
    let applied = match rt {
        Runtime::Bubblewrap => out
            .lines()
            .any(|l| l.starts_with("Max processes") && l.contains(" 40 ")),
        Runtime::Docker => out.lines().any(|l| l == "pids.max: 40"),
    };
    assert!(applied, "{out}");
    let alive: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("alive: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    if rt == Runtime::Bubblewrap && is_root() && !pids_cgroup_writable() {
        // As root, the sandbox's processes are root's on the host, and the kernel does not
        // count them against RLIMIT_NPROC; without a writable pids cgroup nothing else limits
        // them (docs/security.md: run orch as its own user).
        eprintln!("root without a pids cgroup: {alive} processes ran");
    } else {
        // Not root: RLIMIT_NPROC. Root: the run's pids cgroup, removed after the run.
        let mine = format!("run-{}-", std::process::id());
        for parent in [
            "/sys/fs/cgroup/orch-sandbox",
            "/sys/fs/cgroup/unified/orch-sandbox",
            "/sys/fs/cgroup/pids/orch-sandbox",
        ] {
            let left: Vec<_> = std::fs::read_dir(parent)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&mine))
                .collect();
            assert!(left.is_empty(), "run cgroups left in {parent}: {left:?}");
        }
        assert!(
            alive <= 40,
            "{alive} processes ran under a limit of 40:\n{out}"
        );
    }
}

async fn an_opted_out_run_says_so_in_its_log(rt: Runtime) {
    let m = Machine::new();
    let log = m.root.join("logs/run.log");
    let spec = Spec::new("true", m.worktree())
        .log(&log)
        .sandbox(Sandbox::OptedOut);
    let finished = orch_process::run(&spec, &CancellationToken::new(), &mut ()).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.starts_with(orch_process::UNCONFINED_WARNING), "{text}");
    // A confined run's log has no such line.
    let confined_log = m.root.join("logs/confined.log");
    let spec = Spec::new("true", m.worktree())
        .log(&confined_log)
        .sandbox(rt.confined());
    orch_process::run(&spec, &CancellationToken::new(), &mut ()).await;
    let text = std::fs::read_to_string(&confined_log).unwrap_or_default();
    assert!(!text.contains("NOT sandboxed"), "{text}");
}

async fn egress_reaches_allowed_hosts_only_and_records_every_refusal(rt: Runtime) {
    // An allowed "host": a server on another loopback address (127.0.0.1 is the bridge's and
    // bypasses the proxy).
    let server = TcpListener::bind("127.0.0.2:0").expect("listen");
    let port = server.local_addr().expect("addr").port();
    // It answers every connection: the direct one below must be stopped by the sandbox, not by
    // a server that stopped listening.
    std::thread::spawn(move || {
        while let Ok((mut socket, _)) = server.accept() {
            use std::io::Write;
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf);
            let _ = socket.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nallowed-ok",
            );
        }
    });
    let m = Machine::new();
    let log = m.root.join("logs/egress.log");
    let sandbox = rt.sandbox(Policy {
        allow_hosts: Some(vec!["127.0.0.2".to_owned()]),
        ..Policy::default()
    });
    let script = format!(
        "echo \"allowed: $(curl -s -m 5 http://127.0.0.2:{port}/)\"; \
         echo \"refused: $(curl -s -m 5 -o /dev/null -w '%{{http_code}}' https://example.com/)\"; \
         echo \"direct: $(curl -s -m 3 --noproxy '*' http://127.0.0.2:{port}/ || echo none)\""
    );
    let spec = Spec {
        timeout: Duration::from_secs(30),
        ..Spec::new("bash", m.worktree())
    }
    .args(["-c", script.as_str()])
    .log(&log)
    .sandbox(sandbox);
    let mut recorder = Recorder::default();
    let refused_before = orch_process::egress_refusals();
    let finished = orch_process::run(&spec, &CancellationToken::new(), &mut recorder).await;
    let out = recorder.stdout().join("\n");
    assert_eq!(finished.outcome, ExitOutcome::Exited(0), "{out}");
    assert!(orch_process::egress_refusals() > refused_before, "counted");
    assert!(out.contains("allowed: allowed-ok"), "{out}");
    assert!(
        out.contains("refused: 000") || out.contains("refused: 403"),
        "{out}"
    );
    assert!(
        out.contains("direct: none"),
        "no way around the proxy: {out}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("orch: egress refused: CONNECT example.com:443"),
        "{text}"
    );
    // The observer hears of the refusal once, after the run, with where it tried to go.
    let example = orch_process::Destination {
        host: "example.com".to_owned(),
        port: 443,
    };
    assert_eq!(
        recorder.refused,
        [orch_process::EgressRefusals {
            destinations: vec![(example, 1)],
            unlisted: 0,
        }]
    );
    // Unconfined, the direct connection reaches the server: the check above can fail.
    let (_, out) = m.run(&script, Sandbox::OptedOut).await;
    assert!(out.contains("direct: allowed-ok"), "{out}");
}

#[tokio::test]
async fn the_cgroup_of_a_gone_orch_is_swept_by_the_next_run() {
    if !(is_root() && pids_cgroup_writable()) {
        return;
    }
    let parent = [
        "/sys/fs/cgroup/orch-sandbox",
        "/sys/fs/cgroup/unified/orch-sandbox",
        "/sys/fs/cgroup/pids/orch-sandbox",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.is_dir());
    // The first run creates the parent when it is missing.
    let m = Machine::new();
    let limited = || {
        Sandbox::Bubblewrap(Policy {
            limits: Limits {
                processes: Some(64),
                ..Limits::default()
            },
            ..Policy::default()
        })
    };
    let (finished, _) = m.run("true", limited()).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    let parent = parent
        .or_else(|| {
            [
                "/sys/fs/cgroup/orch-sandbox",
                "/sys/fs/cgroup/pids/orch-sandbox",
            ]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| p.is_dir())
        })
        .expect("the runs' parent cgroup");
    // A pid that cannot be alive (above the kernel's pid_max).
    let stale = parent.join("run-99999999-0");
    std::fs::create_dir(&stale).expect("a stale run cgroup");
    let (finished, _) = m.run("true", limited()).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    assert!(!stale.exists(), "{} was swept", stale.display());
}

#[tokio::test]
async fn a_run_that_cannot_enter_its_cgroup_does_not_start() {
    let m = Machine::new();
    let sandbox = Sandbox::Bubblewrap(Policy {
        cgroup_procs: Some(m.root.join("no-such-cgroup/cgroup.procs")),
        ..Policy::default()
    });
    let (finished, out) = m.run("echo started", sandbox).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(125), "{out}");
    assert!(!out.contains("started"), "{out}");
    assert!(
        finished.tail.contains("cannot enter the sandbox's cgroup"),
        "{}",
        finished.tail
    );
}
