//! The smallest HTTP/1.1 server that serves `GET /metrics` on tokio::net: one request per
//! connection, head read with a size and time bound, a few connections at once.
//!
//! A crate (hyper with hyper-util) costs about 21 s of clean build and 280 KiB of binary for
//! this one read-only endpoint; these lines do what Prometheus and curl need.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Largest request head read; longer ones get 431.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request head and take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 8;

/// What to answer a request head with: status line, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// What a request head asks for (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics { head_only: bool },
    Index,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Reads the request line of `head` (`GET /metrics HTTP/1.1`).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => Route::Metrics { head_only },
        "/" => Route::Index,
        _ => Route::NotFound,
    }
}

/// The bytes sent back for `reply`; `head_only` leaves the body out (HEAD).
pub fn response(reply: &Reply, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        reply.status,
        reply.content_type,
        reply.body.len(),
        if reply.status.starts_with("405") {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
    out
}

fn plain(status: &'static str, body: &str) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_string(),
    }
}

/// Binds `addr` (errors are the caller's to report: they name the setting).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `token` is cancelled; `metrics` makes the `/metrics` body and content type.
pub async fn serve<F, Fut>(listener: TcpListener, metrics: F, token: CancellationToken)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (String, &'static str)> + Send,
{
    let metrics = Arc::new(metrics);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = token.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = token.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &*metrics)).await;
            if !matches!(served, Ok(Ok(()))) {
                debug!(peer = %peer, "metrics: client gave up or was too slow");
            }
            drop(permit);
        });
    }
}

async fn answer<F, Fut>(mut stream: TcpStream, metrics: &F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = (String, &'static str)>,
{
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
    };
    let (reply, head_only) = if head.len() > MAX_HEAD {
        (
            plain(
                "431 Request Header Fields Too Large",
                "request head too large\n",
            ),
            false,
        )
    } else if !complete {
        return Ok(());
    } else {
        match route(&head) {
            Route::Metrics { head_only } => {
                let (body, content_type) = metrics().await;
                (
                    Reply {
                        status: "200 OK",
                        content_type,
                        body,
                    },
                    head_only,
                )
            }
            Route::Index => (
                plain("200 OK", "monitor_service: metrics at /metrics\n"),
                false,
            ),
            Route::NotFound => (
                plain("404 Not Found", "not found: metrics are at /metrics\n"),
                false,
            ),
            Route::MethodNotAllowed => (
                plain("405 Method Not Allowed", "only GET and HEAD\n"),
                false,
            ),
            Route::BadRequest => (plain("400 Bad Request", "bad request\n"), false),
        }
    };
    stream.write_all(&response(&reply, head_only)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::Index);
        assert_eq!(route(b"GET /other HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe"), Route::BadRequest);
    }

    #[test]
    fn response_has_length_and_closes() {
        let r = Reply {
            status: "200 OK",
            content_type: "text/plain",
            body: "a 1\n".into(),
        };
        let full = String::from_utf8(response(&r, false)).unwrap();
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"), "{full}");
        assert!(full.contains("Content-Length: 4\r\n"));
        assert!(full.contains("Connection: close\r\n"));
        assert!(full.ends_with("\r\n\r\na 1\n"));
        let head = String::from_utf8(response(&r, true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
        let not_allowed = plain("405 Method Not Allowed", "");
        let t = String::from_utf8(response(&not_allowed, false)).unwrap();
        assert!(t.contains("Allow: GET, HEAD\r\n"));
    }
}
