//! HTML building blocks: escaping and the page frame. Pages are written with `write!` into a
//! `String`; every value that comes from the store, a file or a request passes through [`esc`].

use std::fmt::{self, Display, Write as _};

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// A value escaped for HTML text and double-quoted attribute values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Esc<'a>(pub(crate) &'a str);

/// Shorthand for [`Esc`].
pub(crate) fn esc(text: &str) -> Esc<'_> {
    Esc(text)
}

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// A finished HTML page with the dashboard's security headers: a content security policy that
/// allows only this server's own scripts and styles (no inline script runs, so injected markup
/// cannot execute), no framing (clickjacking), no MIME sniffing, no caching of pages that hold
/// CSRF tokens.
#[derive(Debug)]
pub(crate) struct Page(pub(crate) String);

pub(crate) const CSP: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'";

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "same-origin"),
            ],
            self.0,
        )
            .into_response()
    }
}

/// The top bar's state: whether someone is logged in, and whether logging in is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Viewer<'a> {
    /// A valid session; the CSRF token for the page's forms.
    Session { csrf: &'a str },
    /// No token is configured: the dashboard is read-only for everyone.
    ReadOnly,
    /// Nobody known (the login page, error pages): offer the login.
    Anonymous,
}

/// Wraps `body` in the page frame: head, stylesheet, navigation.
pub(crate) fn page(title: &str, viewer: Viewer<'_>, body: &str) -> Page {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · orch</title><link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
         <script src=\"/assets/dashboard.js\" defer></script></head><body>\
         <header class=\"top\"><a class=\"brand\" href=\"/\">orch</a>\
         <nav><a href=\"/\">Board</a><a href=\"/projects\">Projects</a>\
         <a href=\"/metrics\">Metrics</a></nav>",
        esc(title)
    );
    match viewer {
        Viewer::Session { csrf } => {
            let _ = write!(
                out,
                "<form class=\"logout\" method=\"post\" action=\"/logout\">{}\
                 <button type=\"submit\">Log out</button></form>",
                csrf_field(csrf)
            );
        }
        Viewer::ReadOnly => {
            out.push_str("<span class=\"hint\">read-only: no API token and no people set</span>")
        }
        Viewer::Anonymous => out.push_str("<a class=\"hint\" href=\"/login\">Log in</a>"),
    }
    let _ = writeln!(out, "</header><main>{body}</main></body></html>");
    Page(out)
}

/// The hidden form field carrying the CSRF token.
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// How long ago `then` was, coarsely: `42s`, `5m`, `3h`, `2d`.
pub(crate) fn age(now_ms: i64, then_ms: i64) -> String {
    let secs = (now_ms - then_ms).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Milliseconds since the Unix epoch, the store's clock unit.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("plain ü text").to_string(), "plain ü text");
    }

    #[test]
    fn ages_are_coarse() {
        assert_eq!(age(61_000, 0), "1m");
        assert_eq!(age(5_000, 0), "5s");
        assert_eq!(age(0, 5_000), "0s");
        assert_eq!(age(3 * 86_400_000, 0), "3d");
    }

    #[test]
    fn the_page_frame_escapes_its_title() {
        let Page(html) = page("<script>", Viewer::ReadOnly, "");
        assert!(html.contains("&lt;script&gt; · orch"));
        assert!(!html.contains("<title><script>"));
    }
}
