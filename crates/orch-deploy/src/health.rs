//! Health probes (contract 7): an instance is healthy only once its probe answers 2xx, tried a
//! number of times at an interval.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::http;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthOutcome {
    pub healthy: bool,
    pub tries_used: u32,
    /// What the last try saw, e.g. "answered 200" or "connect to 127.0.0.1:8511: Connection refused".
    pub last_detail: String,
}

/// GETs `url` up to `tries` times, `interval` apart, until it answers 2xx.
pub async fn probe_health(
    url: &str,
    tries: u32,
    interval: Duration,
    timeout: Duration,
    cancel: &CancellationToken,
) -> HealthOutcome {
    probe_health_while(url, tries, interval, timeout, cancel, || None).await
}

/// Like [`probe_health`], but gives up early when `gone` reports a reason (the instance's process
/// exited): waiting out the remaining tries could not change the outcome.
pub(crate) async fn probe_health_while(
    url: &str,
    tries: u32,
    interval: Duration,
    timeout: Duration,
    cancel: &CancellationToken,
    gone: impl Fn() -> Option<String>,
) -> HealthOutcome {
    let mut last_detail = "not probed".to_owned();
    for try_no in 1..=tries {
        if try_no > 1 {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
        if cancel.is_cancelled() {
            return HealthOutcome {
                healthy: false,
                tries_used: try_no - 1,
                last_detail: format!("cancelled; last: {last_detail}"),
            };
        }
        match http::get(url, timeout).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                return HealthOutcome {
                    healthy: true,
                    tries_used: try_no,
                    last_detail: format!("answered {}", answer.status),
                };
            }
            Ok(answer) => last_detail = format!("answered {}", answer.status),
            Err(reason) => last_detail = reason,
        }
        if let Some(reason) = gone() {
            return HealthOutcome {
                healthy: false,
                tries_used: try_no,
                last_detail: format!("{reason}; last: {last_detail}"),
            };
        }
    }
    HealthOutcome {
        healthy: false,
        tries_used: tries,
        last_detail,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback server that answers every request with `status`.
    async fn answering(status: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/healthz", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    async fn probe(url: &str, tries: u32) -> HealthOutcome {
        let interval = Duration::from_millis(5);
        probe_health(
            url,
            tries,
            interval,
            Duration::from_secs(1),
            &CancellationToken::new(),
        )
        .await
    }

    #[tokio::test]
    async fn healthy_only_on_a_2xx_answer() {
        let ok = probe(&answering(204).await, 3).await;
        assert_eq!(
            ok,
            HealthOutcome {
                healthy: true,
                tries_used: 1,
                last_detail: "answered 204".into()
            }
        );
        let sick = probe(&answering(500).await, 3).await;
        assert_eq!(
            sick,
            HealthOutcome {
                healthy: false,
                tries_used: 3,
                last_detail: "answered 500".into()
            }
        );
    }

    #[tokio::test]
    async fn nothing_listening_uses_every_try_and_says_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let outcome = probe(&format!("http://127.0.0.1:{port}/healthz"), 2).await;
        assert!(!outcome.healthy);
        assert_eq!(outcome.tries_used, 2);
        assert!(
            outcome.last_detail.starts_with("connect to 127.0.0.1"),
            "{}",
            outcome.last_detail
        );
    }

    #[tokio::test]
    async fn a_gone_process_ends_the_probe_early() {
        let url = answering(503).await;
        let cancel = CancellationToken::new();
        let interval = Duration::from_secs(10);
        let outcome =
            probe_health_while(&url, 5, interval, Duration::from_secs(1), &cancel, || {
                Some("the process exited".into())
            })
            .await;
        assert_eq!(outcome.tries_used, 1);
        assert_eq!(
            outcome.last_detail,
            "the process exited; last: answered 503"
        );
    }
}
