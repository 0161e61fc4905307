//! The orch demo app: a tiny HTTP service with only the standard library.
//! `GET /` answers the greeting, `GET /healthz` answers `ok`. The port comes from `PORT`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn greeting() -> &'static str {
    "Hello, world!"
}

fn respond(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/" => ("200 OK", format!("{}\n", greeting())),
        "/healthz" => ("200 OK", "ok\n".to_string()),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let listener = match TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap_or(8080))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo-app: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("demo-app: listening on 127.0.0.1:{port}");
    for stream in listener.incoming() {
        if let Ok(mut stream) = stream {
            let _ = respond(&mut stream);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        assert_eq!(super::greeting(), "Hello, world!");
    }
}
