//! A throw-away PostgreSQL server with `ssl = on`, for the TLS tests: certificates made with the
//! `openssl` CLI (a test CA, a server certificate for `IP:127.0.0.1` only, and an unrelated CA),
//! a cluster made with `initdb` in a temporary directory, started with `pg_ctl` on a free
//! loopback port. Its `pg_hba.conf` admits TCP connections over TLS only (`hostssl`), so a
//! connection that works is a TLS one; the test's own checks go over the Unix socket.
//!
//! Never touches the shared test server (`.ci/install-postgres.sh`, port 55432).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct TlsCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl TlsCluster {
    /// `None` (skipped and counted, or a failure where every dependency is required) when
    /// PostgreSQL or `openssl` is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            crate::skip::skip(&format!(
                "{test}: initdb and pg_ctl are not installed (.ci/install-postgres.sh installs them)"
            ));
            return None;
        };
        if Command::new("openssl").arg("version").output().is_err() {
            crate::skip::skip(&format!("{test}: the openssl CLI is not installed"));
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("certs dir");
        make_certificates(&certs);
        if is_root() {
            // The server refuses to run as root: the cluster and its key belong to `postgres`.
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path()));
        }
        let port = free_port();
        let cluster = Self { dir, bin, port };
        run(cluster
            .as_owner("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
            ]));
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
        std::fs::write(cluster.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        cluster.start_server(true);
        Some(cluster)
    }

    /// A URL for the `postgres` database at `host` with these extra query parameters.
    pub fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?connect_timeout=10&{params}",
            self.port
        )
    }

    /// The test CA that signed the server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    /// A CA that signed nothing the server holds.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("certs/other-ca.pem")
    }

    /// Restarts the server with TLS on or off.
    pub fn restart(&self, ssl: bool) {
        self.pg_ctl(&["-m", "fast", "stop"]);
        self.start_server(ssl);
    }

    /// Runs one query over the Unix socket (never through TLS), returning its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn start_server(&self, ssl: bool) {
        let certs = self.dir.path().join("certs");
        let ssl = if ssl {
            format!(
                "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certs.join("server.pem").display(),
                certs.join("server.key").display()
            )
        } else {
            "-c ssl=off".to_owned()
        };
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=50 {ssl}",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&["-o", &options, "start"]);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60"])
            .args(args));
    }

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

impl Drop for TlsCluster {
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

/// Two CAs and a server certificate from the first, valid for `IP:127.0.0.1` only (so
/// `localhost` does not match it), P-256 keys.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    for (name, cn) in [("ca", "orch test CA"), ("other-ca", "orch unrelated CA")] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
        ]);
    }
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    // The server refuses a key file others can read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod server.key");
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, or where Debian puts them.
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
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
