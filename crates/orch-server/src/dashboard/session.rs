//! Dashboard sessions and CSRF tokens, signed with HMAC-SHA256.
//!
//! Logging in means presenting a token once, in a form: a person's own, or the global API token
//! (automation). The server then sets a cookie
//! `orch_session=<expiry>.<nonce>.<who>.<mac>` (HttpOnly, SameSite=Strict, Path=/, and Secure
//! when the dashboard is reached over TLS) whose `who` is the hex of `person:NAME` or
//! `service:NAME`, and whose `mac` is an HMAC over the rest under a key drawn at random when the
//! process started. The cookie never holds a token: stealing one gives a session until it
//! expires, the person is revoked or the server restarts, never the token.
//!
//! Every POST carries a CSRF token in a hidden field: the HMAC of the session value under the
//! same key (the "HMAC-based synchronizer token" of the OWASP CSRF cheat sheet), so it needs no
//! server-side storage and differs per session. POSTs must also carry an `Origin` header naming
//! this server (see [`same_origin`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use orch_engine::Actor;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub(crate) const COOKIE: &str = "orch_session";

/// How long a session lasts.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

type HmacSha256 = Hmac<Sha256>;

/// The key sessions and CSRF tokens are derived under. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// A session value that verified: the cookie's content, which the CSRF token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session(String);

impl SessionKey {
    /// A key of 32 random bytes, for this server state only.
    pub(crate) fn random() -> Self {
        let mut key = [0u8; 32];
        // getrandom fails only on systems orch does not run on; a key that is all zeroes would
        // make sessions forgeable, so the process must not go on without one.
        if let Err(e) = getrandom::getrandom(&mut key) {
            panic!("no randomness for the dashboard session key: {e}");
        }
        Self(key)
    }

    /// A new session of `actor` expiring [`SESSION_LIFETIME`] after `now`.
    pub(crate) fn issue(&self, now: SystemTime, actor: &Actor) -> Session {
        let mut nonce = [0u8; 16];
        if let Err(e) = getrandom::getrandom(&mut nonce) {
            tracing::warn!("no randomness for a session nonce: {e}");
        }
        let expiry = unix_secs(now + SESSION_LIFETIME);
        let who = match actor {
            Actor::Person(name) => format!("person:{name}"),
            Actor::Service(name) => format!("service:{name}"),
            Actor::TrackerAccount { account, .. } => format!("tracker:{account}"),
        };
        let payload = format!("{expiry}.{}.{}", hex::encode(nonce), hex::encode(who));
        let mac = self.sign(b"session", payload.as_bytes());
        Session(format!("{payload}.{mac}"))
    }

    /// The session in `cookie_value` if its MAC holds and it has not expired at `now`.
    pub(crate) fn verify(&self, cookie_value: &str, now: SystemTime) -> Option<Session> {
        let (payload, mac) = cookie_value.rsplit_once('.')?;
        let (expiry, _rest) = payload.split_once('.')?;
        let expected = self.sign(b"session", payload.as_bytes());
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let expiry: u64 = expiry.parse().ok()?;
        (expiry > unix_secs(now)).then(|| Session(cookie_value.to_owned()))
    }

    /// The CSRF token of `session`.
    pub(crate) fn csrf_token(&self, session: &Session) -> String {
        self.sign(b"csrf", session.0.as_bytes())
    }

    /// Whether `presented` is the CSRF token of `session`, compared in constant time.
    pub(crate) fn csrf_holds(&self, session: &Session, presented: &str) -> bool {
        let expected = self.csrf_token(session);
        bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }

    fn sign(&self, purpose: &[u8], data: &[u8]) -> String {
        let mut mac = mac_over(&self.0);
        mac.update(purpose);
        mac.update(b"\0");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl Session {
    /// The `Set-Cookie` value that stores this session in the browser; `secure` when the
    /// dashboard is reached over TLS, so the browser never sends it in clear.
    pub(crate) fn set_cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.0,
            SESSION_LIFETIME.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }

    /// Who the session is of (verified sessions only are ever built).
    pub(crate) fn actor(&self) -> Option<Actor> {
        let mut parts = self.0.split('.');
        let who = parts.nth(2)?;
        let who = String::from_utf8(hex::decode(who).ok()?).ok()?;
        let (kind, name) = who.split_once(':')?;
        match kind {
            "person" => Some(Actor::Person(name.to_owned())),
            "service" => Some(Actor::Service(name.to_owned())),
            _ => None,
        }
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session cookie's value among the request's cookies.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether a POST comes from a page of this server: its `Origin` must be present and name the
/// host the request was sent to. A missing `Origin` is refused: every browser that runs the
/// dashboard sends it on POST, and a client that does not send it has no use for these forms
/// (scripts use the JSON API with the bearer token).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority == Some(host)
}

fn mac_over(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of every length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key() -> SessionKey {
        SessionKey::random()
    }

    fn ada() -> Actor {
        Actor::Person("ada".into())
    }

    #[test]
    fn an_issued_session_verifies_until_it_expires() {
        let key = key();
        let now = SystemTime::now();
        let session = key.issue(now, &ada());
        assert_eq!(key.verify(&session.0, now), Some(session.clone()));
        let later = now + SESSION_LIFETIME + Duration::from_secs(1);
        assert_eq!(key.verify(&session.0, later), None);
    }

    #[test]
    fn a_tampered_or_foreign_session_is_refused() {
        let key = key();
        let now = SystemTime::now();
        let session = key.issue(now, &ada());
        // A later expiry with the old MAC.
        let (expiry, rest) = session.0.split_once('.').expect("expiry");
        let bumped = format!("{}.{rest}", expiry.parse::<u64>().expect("n") + 1000);
        assert_eq!(key.verify(&bumped, now), None);
        // Another process (another random key).
        assert_eq!(SessionKey::random().verify(&session.0, now), None);
        // Another person's name under the same MAC.
        let forged = session
            .0
            .replace(&hex::encode("person:ada"), &hex::encode("person:eve"));
        assert_eq!(key.verify(&forged, now), None);
        assert_eq!(session.actor(), Some(ada()));
        assert_eq!(key.verify("garbage", now), None);
        assert_eq!(key.verify("", now), None);
    }

    #[test]
    fn the_cookie_is_secure_over_tls() {
        let session = key().issue(SystemTime::now(), &ada());
        let plain = session.set_cookie(false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(session.set_cookie(true).ends_with("; Secure"));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let key = key();
        let now = SystemTime::now();
        let (a, b) = (key.issue(now, &ada()), key.issue(now, &ada()));
        let token = key.csrf_token(&a);
        assert!(key.csrf_holds(&a, &token));
        assert!(!key.csrf_holds(&b, &token));
        assert!(!key.csrf_holds(&a, ""));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; orch_session=v.x.y; b=2"),
        );
        assert_eq!(cookie_value(&headers), Some("v.x.y"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
    }

    #[test]
    fn only_posts_from_this_origin_pass() {
        let headers = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8500"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            h
        };
        assert!(same_origin(&headers(Some("http://127.0.0.1:8500"))));
        assert!(!same_origin(&headers(Some("http://evil.example"))));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:8501"))));
        assert!(!same_origin(&headers(Some("null"))));
        assert!(!same_origin(&headers(None)));
    }
}
