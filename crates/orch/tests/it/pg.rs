//! PostgreSQL for the end-to-end tests, two ways:
//!
//! - [`TestDatabase`]: a database of its own on the shared test server named by
//!   `ORCH_TEST_POSTGRES_URL` (started by `.ci/install-postgres.sh`);
//! - [`Cluster`]: a whole throw-away server of the test's own (`initdb` into a temporary
//!   directory, `pg_ctl` on a free loopback port), for a test that restarts PostgreSQL and must
//!   not disturb the shared server other tests are using.
//!
//! Without PostgreSQL a test is skipped and counted (`test-support/skip.rs`); under `.ci/run` or
//! `CI=true` it fails, since those runs must run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::harness::free_port;

pub const URL_VAR: &str = "ORCH_TEST_POSTGRES_URL";

/// Skips the test for `why` (counted), or fails it where every dependency is required
/// (`.ci/run`, `CI=true`: they must run every PostgreSQL test).
fn skip_outside_ci(test: &str, why: &str) {
    crate::skip::skip(&format!(
        "{test}: {why}; install and start PostgreSQL with .ci/install-postgres.sh (and eval its \
         last line)"
    ));
}

/// A database of its own on the test server, dropped when the test ends (even on panic).
pub struct TestDatabase {
    server_url: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// `None` (after saying so) when no server is configured, outside CI.
    pub fn create(test: &str) -> Option<Self> {
        let server_url = match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                skip_outside_ci(test, &format!("{URL_VAR} is not set"));
                return None;
            }
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("orch_test_{test}_{}_{nanos}", std::process::id());
        psql(&server_url, &format!("CREATE DATABASE \"{name}\""));
        let url = with_database(&server_url, &name);
        Some(Self {
            server_url,
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the test's own panic.
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d", &self.server_url, "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs one SQL statement with `psql`, which must succeed; returns what it printed (unaligned,
/// tuples only).
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs (it is installed with PostgreSQL)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `url` naming database `name` instead of its own (test URLs: no `/` in the user info).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

/// A PostgreSQL server of the test's own on `127.0.0.1:<free port>`, trust authentication, with
/// a database `orch`. Stopped (`-m immediate`) and deleted on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub url: String,
}

impl Cluster {
    /// `None` (after saying so) when `initdb` and `pg_ctl` are not installed, outside CI.
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            skip_outside_ci(test, "initdb and pg_ctl are not installed");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            // The server refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path()));
        }
        let port = free_port();
        let cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/orch"),
            dir,
            bin,
        };
        // No fsync: the cluster is for one test; a restart (even `-m immediate`) still recovers
        // from the WAL, which is what the test is about.
        run(cluster
            .as_owner("initdb")
            .args(["-D"])
            .arg(cluster.data())
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
            ]));
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=100",
            cluster.dir.path().display()
        );
        cluster.pg_ctl(&["-o", &options, "start"]);
        psql(
            &cluster.url.replace("/orch", "/postgres"),
            "CREATE DATABASE orch",
        );
        Some(cluster)
    }

    /// `pg_ctl restart -m <mode>` (`fast`: sessions are ended and the server shut down cleanly;
    /// `immediate`: every process is killed at once and the restart recovers from the WAL), waiting
    /// until the server accepts connections again.
    pub fn restart(&self, mode: &str) {
        self.pg_ctl(&["-m", mode, "restart"]);
    }

    /// When the running server started (changes with every restart).
    pub fn started_at(&self) -> String {
        psql(&self.url, "SELECT pg_postmaster_start_time()")
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let log = self.dir.path().join("server.log");
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(log)
            .args(["-w", "-t", "60"])
            .args(args));
    }

    /// A command for one of the server's programs, run as `postgres` when we are root.
    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, or where Debian puts them (as
/// `.ci/install-postgres.sh` looks).
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
        // Resolve links: the real directory also holds the server itself.
        let initdb = std::fs::canonicalize(dir.join("initdb")).ok()?;
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop()
}

/// Whether this test process runs as root (the owner of `/proc/self` is our effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn run(command: &mut Command) {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
