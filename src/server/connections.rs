//! Accepting connections: how many may be open and how long each may take. The port faces
//! the internet when webhooks are on, so nobody may hold it with connections that send
//! nothing (slow-loris) or trickle a body.
//!
//! - At most `max_connections` are open at once, WebSockets included: a connection holds
//!   its permit until its socket closes, also after an upgrade. At the cap the loop stops
//!   accepting, so new connections wait in the kernel's queue (not refused), and a warning
//!   says so once per episode.
//! - hyper closes a connection that has not sent a whole request head within
//!   `header_timeout`, counted from when it starts waiting: a new connection that sends
//!   nothing and a kept-alive one idle between requests alike.
//! - [`read_body_in_time`] answers `408` to a request whose body does not arrive within
//!   `body_timeout`.
//!
//! At shutdown the loop stops accepting and asks every connection to finish its request
//! and close; it waits for them a bounded time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
}

/// Accept and serve connections with `app` until `shutdown` fires.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: CancellationToken) -> io::Result<()> {
    crate::sandbox::process::raise_open_file_limit(limits.max_connections as u64 + 1024);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_warned: Option<std::time::Instant> = None;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let mut at_cap = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    tracing::warn!(
                        "{} connections are open, the most server.max_connections allows: new ones wait until one closes",
                        limits.max_connections
                    );
                    at_cap = true;
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.map_err(io::Error::other)?,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    wait_after_accept_error(&e, &mut accept_warned).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Deltas are small writes that must leave at once, not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let io = TokioIo::new(Counted { stream: tcp, _permit: permit });
        let connection = http.serve_connection(io, TowerToHyperService::new(app.clone())).with_upgrades();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    // Every permit back means every connection closed (upgraded ones included).
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all)).await;
    Ok(())
}

/// Errors of `accept` are about one connection (it reset before we took it) or about this
/// process (out of file descriptors); in the second case, give others a moment to close,
/// and say so at most every ten seconds.
async fn wait_after_accept_error(error: &io::Error, warned: &mut Option<std::time::Instant>) {
    use io::ErrorKind::*;
    if matches!(error.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return;
    }
    if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
        tracing::warn!("cannot accept a connection: {error}");
        *warned = Some(std::time::Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A TCP stream holding its place under the connection cap until it is dropped.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Read a request's body before anything handles it, within `body_timeout`: a client that
/// trickles its body gets `408` and the connection closes, instead of holding a handler.
/// Bodies over `max_body_bytes` get `413`. Requests without a body pass untouched.
pub async fn read_body_in_time(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
    if !has_body {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limits.max_body_bytes)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(_)) => {
            closing(StatusCode::PAYLOAD_TOO_LARGE, "the body is over server.max_request_bytes, or was cut off")
        }
        Err(_) => closing(StatusCode::REQUEST_TIMEOUT, "the body did not arrive within server.body_timeout_secs"),
    }
}

fn closing(status: StatusCode, message: &str) -> Response {
    let mut response = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
