//! TLS to PostgreSQL: what a connection asks for, read the way libpq reads it, and checked
//! before connecting.
//!
//! The mode comes from the URL's `sslmode` (libpq's names: `disable`, `allow`, `prefer`,
//! `require`, `verify-ca`, `verify-full`), else from `PGSSLMODE`, else `prefer`; the CA file from
//! the URL's `sslrootcert`, else `PGSSLROOTCERT`. As in libpq, `require` with a CA file verifies
//! the chain (`verify-ca`).
//!
//! This module must never let a typo weaken a connection: an unknown mode (in the URL or in
//! `PGSSLMODE`, which sqlx alone would ignore) is an error naming the accepted ones, and a CA
//! file that is missing or holds no certificate is an error naming the path, before any byte is
//! sent to the server.

use std::path::{Path, PathBuf};

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The names `sslmode` accepts, weakest first.
pub(crate) const MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The URL parameters that name the mode and the CA file (libpq's, and sqlx's aliases).
const MODE_KEYS: [&str; 2] = ["sslmode", "ssl-mode"];
const ROOT_CERT_KEYS: [&str; 3] = ["sslrootcert", "ssl-root-cert", "ssl-ca"];

/// What TLS a connection uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    /// The mode's name, as in [`MODES`] (after `require` + CA file became `verify-ca`).
    pub mode: &'static str,
    /// The CA file the server's certificate must chain to (added to the public web roots orch
    /// trusts everywhere); `None` trusts those roots alone.
    pub root_cert: Option<PathBuf>,
}

impl Tls {
    /// Reads the mode and CA file from `url`, then from the environment through `env` (a
    /// parameter so tests need not change the process environment).
    pub(crate) fn from_url(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let params = query_params(url);
        let find = |keys: &[&str]| {
            params
                .iter()
                .rev()
                .find(|(k, _)| keys.contains(&k.as_str()))
                .map(|(_, v)| v.clone())
        };
        let (mode, source) = match find(&MODE_KEYS) {
            Some(mode) => (mode, "the URL's sslmode"),
            None => match env("PGSSLMODE") {
                Some(mode) => (mode, "PGSSLMODE"),
                None => ("prefer".to_owned(), "the default"),
            },
        };
        let mut mode = MODES.iter().copied().find(|m| *m == mode).ok_or_else(|| {
            format!(
                "{source} is `{mode}`, not one of {} (libpq's names)",
                MODES.join(", ")
            )
        })?;
        let root_cert = find(&ROOT_CERT_KEYS)
            .or_else(|| env("PGSSLROOTCERT"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(path) = &root_cert {
            check_root_cert(path)?;
            if mode == "require" {
                mode = "verify-ca";
            }
        }
        Ok(Self { mode, root_cert })
    }

    /// `options` with this mode and CA file set (overriding what sqlx read itself).
    pub(crate) fn apply(&self, options: PgConnectOptions) -> PgConnectOptions {
        let mode = match self.mode {
            "disable" => PgSslMode::Disable,
            "allow" => PgSslMode::Allow,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            _ => PgSslMode::VerifyFull,
        };
        let options = options.ssl_mode(mode);
        match &self.root_cert {
            Some(path) => options.ssl_root_cert(path),
            None => options,
        }
    }

    /// Whether the server's certificate is checked at all (`verify-ca`, `verify-full`).
    pub(crate) fn verifies(&self) -> bool {
        self.mode.starts_with("verify-")
    }

    /// The reason shown when connecting failed in the TLS handshake or its negotiation.
    pub(crate) fn explain(&self, error: &str) -> String {
        let trust = match &self.root_cert {
            Some(path) => format!("the CA file {}", path.display()),
            None => "the public web roots (no sslrootcert given)".to_owned(),
        };
        let hint = if error.contains("does not support TLS") {
            "the server does not offer TLS (ssl = off); turn it on, or lower sslmode knowingly"
                .to_owned()
        } else if self.mode == "verify-full" {
            format!(
                "the server's certificate did not verify against {trust}, or does not name the \
                 host of the URL"
            )
        } else {
            format!("the server's certificate did not verify against {trust}")
        };
        format!("TLS (sslmode={}) failed: {error}; {hint}", self.mode)
    }
}

/// Whether connecting failed in TLS: the negotiation (sqlx's `Tls`) or the handshake (rustls'
/// error inside an I/O error), as opposed to a refused socket or a login.
pub(crate) fn is_tls_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

/// Whether a connection to `options`' host stays on this machine (a Unix socket or loopback),
/// where an unverified connection is no risk worth a warning.
pub(crate) fn is_local(options: &PgConnectOptions) -> bool {
    if options.get_socket().is_some() {
        return true;
    }
    let host = options.get_host();
    host == "localhost"
        || host.starts_with('/')
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A CA file must exist and hold at least one PEM certificate.
fn check_root_cert(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| {
        format!(
            "the CA file (sslrootcert) {} cannot be read: {e}",
            path.display()
        )
    })?;
    if !text
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!(
            "the CA file (sslrootcert) {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(())
}

/// The URL's query parameters, percent-decoded (`+` is kept: libpq does not read it as a blank).
fn query_params(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decoded(k), percent_decoded(v)))
        .collect()
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn ca_file() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(
            file.path(),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        file
    }

    #[test]
    fn the_url_wins_over_the_environment_and_prefer_is_the_default() {
        let env = |k: &str| (k == "PGSSLMODE").then(|| "disable".to_owned());
        let tls = Tls::from_url("postgres://h/db?sslmode=verify-full", env).expect("valid");
        assert_eq!(tls.mode, "verify-full");
        assert_eq!(
            Tls::from_url("postgres://h/db", env).expect("valid").mode,
            "disable"
        );
        let tls = Tls::from_url("postgres://h/db", no_env).expect("valid");
        assert_eq!((tls.mode, tls.verifies()), ("prefer", false));
    }

    #[test]
    fn an_unknown_mode_is_refused_naming_where_it_came_from() {
        let err =
            Tls::from_url("postgres://h/db?sslmode=verify_full", no_env).expect_err("refused");
        assert!(err.contains("the URL's sslmode is `verify_full`"), "{err}");
        assert!(err.contains("verify-ca, verify-full"), "{err}");
        // sqlx alone reads an unknown PGSSLMODE as `prefer`: a typo would silently weaken TLS.
        let env = |k: &str| (k == "PGSSLMODE").then(|| "verify-fulll".to_owned());
        let err = Tls::from_url("postgres://h/db", env).expect_err("refused");
        assert!(err.contains("PGSSLMODE is `verify-fulll`"), "{err}");
    }

    #[test]
    fn a_ca_file_must_exist_and_hold_a_certificate() {
        let err = Tls::from_url(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            no_env,
        )
        .expect_err("refused");
        assert!(err.contains("/nonexistent/ca.pem cannot be read"), "{err}");
        let empty = tempfile::NamedTempFile::new().expect("temp file");
        let url = format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            empty.path().display()
        );
        let err = Tls::from_url(&url, no_env).expect_err("refused");
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn require_with_a_ca_file_verifies_the_chain_as_in_libpq() {
        let ca = ca_file();
        let url = format!(
            "postgres://h/db?sslmode=require&ssl-root-cert={}",
            ca.path().display()
        );
        let tls = Tls::from_url(&url, no_env).expect("valid");
        assert_eq!(tls.mode, "verify-ca");
        assert_eq!(tls.root_cert.as_deref(), Some(ca.path()));
        // From the environment too.
        let path = ca.path().display().to_string();
        let env = move |k: &str| (k == "PGSSLROOTCERT").then(|| path.clone());
        let tls = Tls::from_url("postgres://h/db?sslmode=require", env).expect("valid");
        assert_eq!(tls.mode, "verify-ca");
    }

    #[test]
    fn parameters_are_percent_decoded() {
        assert_eq!(
            query_params("postgres://h/db?sslrootcert=%2Fetc%2Fca%20x.pem&a"),
            [("sslrootcert".to_owned(), "/etc/ca x.pem".to_owned())]
        );
        assert_eq!(percent_decoded("100%"), "100%");
    }

    #[test]
    fn loopback_and_sockets_are_local() {
        use std::str::FromStr;
        for (url, local) in [
            ("postgres://127.0.0.1/db", true),
            ("postgres://localhost/db", true),
            ("postgres://[::1]/db", true),
            ("postgres://%2Fvar%2Frun%2Fpostgresql/db", true),
            ("postgres://db.internal/db", false),
            ("postgres://10.0.0.5/db", false),
        ] {
            let options = PgConnectOptions::from_str(url).expect("parses");
            assert_eq!(is_local(&options), local, "{url}");
        }
    }
}
