//! Sending one outgoing notification: an HTTP POST of a body orch already rendered, to a
//! receiver's URL, with orch's headers and, when a secret is configured, an HMAC-SHA256
//! signature over the raw body (`X-Orch-Signature-256: sha256=<hex>`, GitHub's convention,
//! which orch also checks on incoming webhooks; see [`crate::signature`]).
//!
//! It decides nothing about what to send, when, or how often to try: the engine does.
//!
//! Never: show the secret, or the URL's path and query (Slack's incoming-webhook URLs are
//! themselves the credential), in `Debug`, `Display`, an error or a log line; follow a redirect
//! (the body and its signature go to the configured URL only).

use std::fmt;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use thiserror::Error;

use crate::Token;
use crate::signature::sign_hex;

/// The header naming what happened (`blocked`, `deployed`...).
pub const EVENT_HEADER: &str = "x-orch-event";
/// The header carrying the delivery id, the same on every retry of one notification, so a
/// receiver can drop a duplicate.
pub const DELIVERY_HEADER: &str = "x-orch-delivery";
/// The header carrying `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "x-orch-signature-256";

/// A receiver's URL: `http` or `https`, shown only as its scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiverUrl(reqwest::Url);

impl ReceiverUrl {
    /// Parses an `http://` or `https://` URL with a host. The error never repeats the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| format!("not a URL ({e}); write it as https://host/path"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err("must be an http:// or https:// URL with a host".to_owned());
        }
        Ok(Self(parsed))
    }

    /// `https://hooks.slack.com/…`: enough to tell receivers apart, nothing that grants access.
    pub fn redacted(&self) -> String {
        let host = self.0.host_str().unwrap_or("?");
        match self.0.port() {
            Some(port) => format!("{}://{host}:{port}/…", self.0.scheme()),
            None => format!("{}://{host}/…", self.0.scheme()),
        }
    }
}

impl fmt::Debug for ReceiverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceiverUrl({})", self.redacted())
    }
}

impl fmt::Display for ReceiverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Why one attempt failed. Never holds the URL's path or the secret.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// The receiver answered, but not with 2xx (a 3xx counts: redirects are not followed).
    #[error("{receiver} answered HTTP {status}")]
    Status { receiver: String, status: u16 },
    /// Nothing usable came back: refused, reset, timed out, TLS failed.
    #[error("{receiver} is unreachable: {detail}")]
    Unreachable { receiver: String, detail: String },
}

/// One notification to send.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The delivery id ([`DELIVERY_HEADER`]).
    pub id: &'a str,
    /// What happened ([`EVENT_HEADER`]).
    pub event: &'a str,
    /// The JSON body, sent as is and signed as is.
    pub body: &'a [u8],
}

/// Where notifications of one configured receiver go.
#[derive(Clone)]
pub struct Receiver {
    url: ReceiverUrl,
    secret: Option<Token>,
    http: reqwest::Client,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("url", &self.url)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl Receiver {
    /// A receiver at `url`; with a `secret`, every body is signed. Each attempt is bounded by
    /// `timeout`.
    pub fn new(url: ReceiverUrl, secret: Option<Token>, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {}", e.without_url()))?;
        Ok(Self { url, secret, http })
    }

    pub fn url(&self) -> &ReceiverUrl {
        &self.url
    }

    /// The headers of `outgoing` besides the content type: event, delivery id and signature.
    pub fn headers(&self, outgoing: &Outgoing<'_>) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (EVENT_HEADER, outgoing.event.to_owned()),
            (DELIVERY_HEADER, outgoing.id.to_owned()),
        ];
        if let Some(secret) = &self.secret {
            let hex = sign_hex(secret.expose().as_bytes(), outgoing.body);
            headers.push((SIGNATURE_HEADER, format!("sha256={hex}")));
        }
        headers
    }

    /// POSTs `outgoing` once. 2xx is delivered; anything else is a [`DeliveryError`].
    pub async fn deliver(&self, outgoing: &Outgoing<'_>) -> Result<(), DeliveryError> {
        let receiver = self.url.redacted();
        let mut request = self
            .http
            .post(self.url.0.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(outgoing.body.to_vec());
        for (name, value) in self.headers(outgoing) {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| DeliveryError::Unreachable {
                receiver: receiver.clone(),
                detail: if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    e.without_url().to_string()
                },
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status {
                receiver,
                status: status.as_u16(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_path_or_query() {
        let url = ReceiverUrl::parse("https://hooks.slack.com/services/T0/B0/SeCrEt?token=abc")
            .expect("url");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("SeCrEt") && !shown.contains("abc"),
                "{shown}"
            );
            assert!(shown.contains("https://hooks.slack.com/"), "{shown}");
        }
        let with_port = ReceiverUrl::parse("http://127.0.0.1:9/x").expect("url");
        assert_eq!(with_port.redacted(), "http://127.0.0.1:9/…");
    }

    #[test]
    fn only_http_urls_with_a_host_are_receivers() {
        for bad in [
            "",
            "hooks.slack.com/services/SECRET",
            "file:///etc/SECRET",
            "ftp://h/SECRET",
            "https://",
        ] {
            let err = ReceiverUrl::parse(bad).expect_err(bad);
            assert!(!err.contains("SECRET"), "the error repeats the URL: {err}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let url = ReceiverUrl::parse("https://example.com/hook").expect("url");
        let secret = Token::new("s3cret-value");
        let receiver = Receiver::new(url, secret, Duration::from_secs(1)).expect("receiver");
        let shown = format!("{receiver:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("signed: true"), "{shown}");
    }
}
