//! Server URLs as orch shows them: with any password replaced by `***`, so that an error message
//! or a log line never carries a secret. And the one URL parameter orch reads itself,
//! `connect_timeout` (seconds, as in libpq), which sqlx does not know.

use std::time::Duration;

/// The URL schemes [`super::PgStore::open`] accepts.
pub(crate) const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

pub(crate) fn is_postgres(url: &str) -> bool {
    SCHEMES.iter().any(|scheme| url.starts_with(scheme))
}

/// `url` with the password of its user info (`user:PASSWORD@host`) and of a `password=` query
/// parameter replaced by `***`.
///
/// Errs on the side of hiding: everything between the first `:` of the user info and the last
/// `@` before the query is masked, so a password holding an unescaped `@` or `/` stays hidden.
pub(crate) fn masked(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + "://".len()) else {
        // Not a URL we can take apart: show what comes before its first `:`, enough to
        // recognise it and short of any password written after a user name.
        return match url.split_once(':') {
            Some((head, _)) => format!("{head}:***"),
            None => url.to_owned(),
        };
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let (before_query, query) = match rest.find('?') {
        Some(q) => rest.split_at(q),
        None => (rest, ""),
    };
    let location = match before_query.rfind('@') {
        Some(at) => {
            let (user_info, host_and_path) = before_query.split_at(at);
            match user_info.find(':') {
                Some(colon) => format!("{}:***{host_and_path}", &user_info[..colon]),
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    format!("{scheme}{location}{}", masked_query(query))
}

/// `?a=1&password=x` becomes `?a=1&password=***`.
fn masked_query(query: &str) -> String {
    let Some(params) = query.strip_prefix('?') else {
        return query.to_owned();
    };
    let masked: Vec<String> = params
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("?{}", masked.join("&"))
}

/// Splits `connect_timeout=SECONDS` off `url`: the URL without it, and the timeout if given.
pub(crate) fn take_connect_timeout(url: &str) -> Result<(String, Option<Duration>), String> {
    let Some((base, params)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut timeout = None;
    let mut kept = Vec::new();
    for param in params.split('&') {
        match param.split_once('=') {
            Some(("connect_timeout", seconds)) => {
                let seconds: u64 = seconds
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        format!(
                            "connect_timeout must be a positive whole number of seconds, not `{seconds}`"
                        )
                    })?;
                timeout = Some(Duration::from_secs(seconds));
            }
            _ => kept.push(param),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, timeout))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{is_postgres, masked, take_connect_timeout};

    #[test]
    fn connect_timeout_is_taken_off_the_url() {
        assert_eq!(
            take_connect_timeout("postgres://h/db?connect_timeout=2&sslmode=disable"),
            Ok((
                "postgres://h/db?sslmode=disable".to_owned(),
                Some(Duration::from_secs(2))
            ))
        );
        assert_eq!(
            take_connect_timeout("postgres://h/db?connect_timeout=9"),
            Ok(("postgres://h/db".to_owned(), Some(Duration::from_secs(9))))
        );
        assert_eq!(
            take_connect_timeout("postgres://h/db"),
            Ok(("postgres://h/db".to_owned(), None))
        );
        for bad in ["0", "-1", "soon", ""] {
            let url = format!("postgres://h/db?connect_timeout={bad}");
            assert!(take_connect_timeout(&url).is_err(), "{url}");
        }
    }

    #[test]
    fn passwords_are_masked_and_the_rest_is_kept() {
        let cases = [
            (
                "postgres://orch:s3cret@db.example:5432/orch",
                "postgres://orch:***@db.example:5432/orch",
            ),
            (
                "postgresql://orch:p@ss/w:rd@127.0.0.1/orch?sslmode=disable",
                "postgresql://orch:***@127.0.0.1/orch?sslmode=disable",
            ),
            (
                "postgres://orch@127.0.0.1:55432/orch?application_name=x&password=s3cret",
                "postgres://orch@127.0.0.1:55432/orch?application_name=x&password=***",
            ),
            ("postgres://127.0.0.1/orch", "postgres://127.0.0.1/orch"),
        ];
        for (url, shown) in cases {
            assert_eq!(masked(url), shown);
        }
    }

    #[test]
    fn text_that_is_not_a_url_is_hidden_after_its_first_colon() {
        assert_eq!(masked("orch:s3cret@somewhere"), "orch:***");
        assert_eq!(masked("/var/lib/orch/orch.db"), "/var/lib/orch/orch.db");
    }

    #[test]
    fn both_schemes_are_postgres() {
        assert!(is_postgres("postgres://h/db"));
        assert!(is_postgres("postgresql://h/db"));
        assert!(!is_postgres("sqlite:///tmp/x.db"));
        assert!(!is_postgres("postgres:h/db"));
    }
}
