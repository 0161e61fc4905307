//! The soak window: a promotion that answered its health probe is watched a while longer before
//! it counts, because many breakages (a leak, a crash on the first real request, a bad migration
//! that fails a minute in) show only after start-up. One failed probe during the window fails the
//! promotion; the caller restores what it can.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::SoakSpec;
use crate::error::DeployError;
use crate::http;

/// Probes `url` every `soak.interval` until `soak.duration` has passed. `gone` reports why the
/// instance can no longer be the one answering (its process exited), which fails the soak too.
/// Returns how many probes passed.
pub(crate) async fn soak(
    url: &str,
    soak: SoakSpec,
    probe_timeout: Duration,
    cancel: &CancellationToken,
    gone: impl Fn() -> Option<String>,
) -> Result<u32, DeployError> {
    let started = Instant::now();
    let failed = |detail: String| DeployError::SoakFailed {
        after_secs: started.elapsed().as_secs(),
        soak_secs: soak.duration.as_secs(),
        detail,
    };
    let mut probes = 0;
    while started.elapsed() < soak.duration {
        let rest = soak.duration.saturating_sub(started.elapsed());
        tokio::select! {
            () = cancel.cancelled() => return Err(DeployError::Cancelled),
            () = tokio::time::sleep(soak.interval.min(rest)) => {}
        }
        match http::get(url, probe_timeout).await {
            Ok(answer) if (200..300).contains(&answer.status) => probes += 1,
            Ok(answer) => return Err(failed(format!("GET {url} answered {}", answer.status))),
            Err(reason) => return Err(failed(format!("GET {url}: {reason}"))),
        }
        if let Some(reason) = gone() {
            return Err(failed(reason));
        }
    }
    Ok(probes)
}

/// The log line of a soak that passed.
pub(crate) fn passed_line(soak: SoakSpec, probes: u32) -> String {
    format!(
        "prod stayed healthy through its {}s soak window ({probes} probes, {}ms apart)",
        soak.duration.as_secs(),
        soak.interval.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback server that answers 200 to its first `healthy` requests, then 503.
    async fn sickening(healthy: u32) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/healthz", listener.local_addr().expect("addr"));
        let served = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let n = served.fetch_add(1, Ordering::SeqCst);
                let status = if n < healthy { 200 } else { 503 };
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    fn window(ms: u64, every_ms: u64) -> SoakSpec {
        SoakSpec {
            duration: Duration::from_millis(ms),
            interval: Duration::from_millis(every_ms),
        }
    }

    #[tokio::test]
    async fn a_healthy_instance_passes_after_probing_through_the_window() {
        let url = sickening(u32::MAX).await;
        let started = Instant::now();
        let probes = soak(
            &url,
            window(300, 50),
            Duration::from_secs(1),
            &CancellationToken::new(),
            || None,
        )
        .await
        .expect("healthy all along");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(probes >= 4, "probed {probes} times");
    }

    #[tokio::test]
    async fn one_failed_probe_fails_the_soak_with_what_it_saw() {
        let url = sickening(2).await;
        let error = soak(
            &url,
            window(5_000, 20),
            Duration::from_secs(1),
            &CancellationToken::new(),
            || None,
        )
        .await
        .expect_err("the third probe answers 503");
        let text = error.to_string();
        assert!(text.contains("answered 503"), "{text}");
        assert!(text.contains("5s soak window"), "{text}");
        assert!(error.caused_by_change());
    }

    #[tokio::test]
    async fn a_gone_process_fails_the_soak_even_if_something_answers() {
        let url = sickening(u32::MAX).await;
        let error = soak(
            &url,
            window(5_000, 20),
            Duration::from_secs(1),
            &CancellationToken::new(),
            || Some("the process exited".into()),
        )
        .await
        .expect_err("the instance is gone");
        assert!(error.to_string().contains("the process exited"), "{error}");
    }
}
