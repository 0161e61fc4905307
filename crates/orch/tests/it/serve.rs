//! `orch serve`: the binary serves HTTP and runs the engine together, and stops cleanly on
//! SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Orch, free_port};

pub(crate) const TOKEN: &str = "serve-test-token";

/// One request per connection; returns the status and the body.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// Waits for the child to exit, up to `limit`; kills it and fails when it does not.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("orch serve did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_runs_items_from_the_api_and_stops_on_sigterm() {
    let orch = Orch::new(None);
    let port = free_port();
    let mut child = orch
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ORCH_API_TOKEN", TOKEN)
        .env_remove("ORCH_PLANE_WEBHOOK_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch serve starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("read banner");
    assert!(
        banner.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{banner:?}"
    );
    let mut rest = String::new();
    for _ in 0..4 {
        stdout.read_line(&mut rest).expect("read banner");
    }
    assert!(rest.contains("bearer token required"), "{rest}");
    assert!(!rest.contains(TOKEN), "the token is never printed: {rest}");
    assert!(
        rest.contains("ORCH_PLANE_WEBHOOK_SECRET is not set"),
        "{rest}"
    );
    // Keep draining the output, so progress lines never fill the pipe and block the server.
    let stdout_rest = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let stderr_text = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });

    assert_eq!(http(port, "GET", "/healthz", ""), (200, "ok".to_owned()));
    let (status, body) = http(port, "POST", "/api/v1/items", r#"{"title": "Served"}"#);
    assert_eq!(status, 201, "{body}");

    // The engine loop inside `serve` picks the item up without `orch run`.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http(port, "GET", "/api/v1/items/QUICK-1", "");
        assert_eq!(status, 200, "{body}");
        let item: Value = serde_json::from_str(&body).expect("json");
        let passed_analysis = item["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["kind"] == "stage.passed" && e["data"]["stage"] == "analysis")
        });
        if passed_analysis {
            break;
        }
        assert!(Instant::now() < deadline, "the item never moved: {item}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let stderr = stderr_text.join().expect("stderr reader");
    let stdout = stdout_rest.join().expect("stdout reader");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(stdout.contains("orch serve: stopped"), "{stdout}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed after the stop"
    );
}

#[test]
fn serve_on_a_busy_port_is_a_usage_error() {
    let orch = Orch::new(None);
    let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let addr = busy.local_addr().expect("addr");
    let out = orch.run(&["serve", "--listen", &addr.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}
