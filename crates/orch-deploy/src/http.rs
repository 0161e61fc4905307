//! A minimal HTTP/1.1 GET for probing instances on loopback.
//!
//! Health probes and staging checks only ever talk to an instance orch started on this machine,
//! so this client refuses every host that is not a loopback address: a typo in a URL can never
//! send a request elsewhere. It sends `Connection: close`, reads the whole answer (bounded) and
//! understands `Content-Length` and chunked bodies, which is all a probe needs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Answers larger than this are cut off: a probe reads status lines and short bodies.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

/// `http://<loopback host>:<port><path>`, split into where to connect and what to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoopbackUrl {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

impl LoopbackUrl {
    pub fn parse(url: &str) -> Result<LoopbackUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}` has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{url}` has an invalid port"))?;
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            bracketed if bracketed.starts_with('[') => bracketed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("`{url}` has an invalid host"))?,
            literal => literal
                .parse()
                .map_err(|_| format!("`{url}` must use a loopback IP or localhost"))?,
        };
        if !ip.is_loopback() {
            return Err(format!(
                "`{url}` is not a loopback address; orch only probes instances on this machine"
            ));
        }
        Ok(LoopbackUrl {
            addr: SocketAddr::new(ip, port),
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// GETs `url` within `timeout` (connect, send and read together). `Err` means nothing was
/// measured: the reason is for the log.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<Answer, String> {
    let target = LoopbackUrl::parse(url)?;
    match tokio::time::timeout(timeout, exchange(&target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn exchange(target: &LoopbackUrl) -> Result<Answer, String> {
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", target.addr))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: orch-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send the request: {e}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read the answer: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        // Stop as soon as a length-delimited answer is complete, in case the server keeps the
        // connection open despite `Connection: close`.
        if parse_answer(&raw, false).is_ok_and(|complete| complete.is_some()) {
            break;
        }
    }
    parse_answer(&raw, true)?
        .ok_or_else(|| "the connection closed before the answer was complete".to_owned())
}

/// `Ok(None)` while more bytes are needed; `at_eof` says the server closed, which ends a body of
/// unknown length.
fn parse_answer(raw: &[u8], at_eof: bool) -> Result<Option<Answer>, String> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status(status_line)?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length `{value}`"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    let body = &raw[head_end + 4..];
    let body = if chunked {
        match dechunk(body)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(length) = content_length {
        if body.len() < length {
            return Ok(None);
        }
        body[..length].to_vec()
    } else if at_eof {
        // No length given: the body runs to the close.
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

fn parse_status(line: &str) -> Result<u16, String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "not an HTTP answer: `{}`",
            line.chars().take(60).collect::<String>()
        ));
    }
    code.parse()
        .map_err(|_| format!("bad status line `{line}`"))
}

/// Decodes a chunked body; `Ok(None)` while the final zero-size chunk has not arrived.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size `{size_hex}`"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        let ok = LoopbackUrl::parse("http://127.0.0.1:8511/healthz").expect("loopback");
        assert_eq!(
            (ok.addr.port(), ok.path.as_str(), ok.host.as_str()),
            (8511, "/healthz", "127.0.0.1:8511")
        );
        assert_eq!(
            LoopbackUrl::parse("http://localhost:80").map(|u| u.path),
            Ok("/".to_owned())
        );
        assert!(LoopbackUrl::parse("http://[::1]:9000/x").is_ok());
        for refused in [
            "http://10.0.0.5:80/",
            "http://example.com:80/",
            "https://127.0.0.1:1/",
            "http://127.0.0.1/",
        ] {
            assert!(
                LoopbackUrl::parse(refused).is_err(),
                "{refused} must be refused"
            );
        }
    }

    fn answer(status: u16, body: &str) -> Option<Answer> {
        Some(Answer {
            status,
            body: body.to_owned(),
        })
    }

    #[test]
    fn parses_answers_by_length_chunks_or_close() {
        let cases: [(&[u8], bool, Option<Answer>); 7] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHello", false, answer(200, "Hello")),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nHel", false, None),
            (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", false, answer(500, "abcde")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", false, None),
            (b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nnope", false, None),
            (b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nnope", true, answer(404, "nope")),
            (b"HTTP/1.1 204 No Content\r\n", true, None),
        ];
        for (raw, at_eof, expected) in cases {
            assert_eq!(
                parse_answer(raw, at_eof),
                Ok(expected),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n", true).is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_unmeasured_not_an_answer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let err = get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(1))
            .await
            .expect_err("refused");
        assert!(err.contains("connect to 127.0.0.1"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let err = get(&url, Duration::from_millis(100))
            .await
            .expect_err("silent");
        assert_eq!(err, "no answer within 100 ms");
    }
}
