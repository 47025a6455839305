//! A tiny HTTP application for Slipway's tests and examples.
//!
//! It listens on `127.0.0.1:$PORT` (or on the port of a `--port N` argument, like a
//! program that takes its port on the command line) and answers `GET /` with `$APP_VERSION` (or `v1`),
//! `GET /healthz` with 200 (or 500 when `$DEMO_UNHEALTHY` is set, to test failing
//! checks), `GET /env/NAME` with that variable's value (to test what a replica gets),
//! and `GET /pid` with its process id. Every answer closes the connection. On SIGTERM it
//! stops accepting, finishes the requests it is serving, and exits 0.
//!
//! Std and tokio only: it is started hundreds of times by the tests, so it must be small.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let from_args = match args.as_slice() {
        [] => None,
        [flag, port] if flag == "--port" => match port.parse::<u16>() {
            Ok(port) => Some(port),
            Err(_) => {
                eprintln!("slipway-demo-app: --port {port:?} is not a port number");
                return std::process::ExitCode::from(2);
            }
        },
        other => {
            eprintln!("slipway-demo-app: unknown arguments {other:?}; the only one is --port N");
            return std::process::ExitCode::from(2);
        }
    };
    let from_env = std::env::var("PORT").ok().and_then(|p| p.parse().ok());
    let port: u16 = match from_args.or(from_env) {
        Some(port) => port,
        None => {
            eprintln!("slipway-demo-app: set PORT (or --port N) to the port to listen on");
            return std::process::ExitCode::from(2);
        }
    };
    let version = std::env::var("APP_VERSION").unwrap_or_else(|_| "v1".to_string());
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("slipway-demo-app: cannot listen on port {port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("slipway-demo-app {version} listening on 127.0.0.1:{port}");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slipway-demo-app: cannot handle SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tasks.spawn(serve(stream, version.clone()));
                }
            }
            _ = term.recv() => break,
        }
    }
    drop(listener);
    println!(
        "slipway-demo-app: SIGTERM, finishing {} request(s)",
        tasks.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    println!("slipway-demo-app: stopped");
    std::process::ExitCode::SUCCESS
}

async fn serve(mut stream: TcpStream, version: String) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // Read the request head; a client that sends nothing for 10s is dropped.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let (status, body) = match path.as_str() {
        "/" => ("200 OK", version),
        "/healthz" if std::env::var_os("DEMO_UNHEALTHY").is_some() => {
            ("500 Internal Server Error", "unhealthy\n".to_string())
        }
        "/healthz" => ("200 OK", "ok\n".to_string()),
        "/pid" => ("200 OK", std::process::id().to_string()),
        p if p.starts_with("/env/") => match std::env::var(&p[5..]) {
            Ok(v) => ("200 OK", v),
            Err(_) => ("404 Not Found", String::new()),
        },
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
