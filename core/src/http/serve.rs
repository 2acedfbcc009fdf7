//! Serving a router with limits against slow, hostile or simply too many clients.
//!
//! `axum::serve` exposes none of hyper's connection settings, so a client could send its headers one byte a
//! minute and hold a connection (and its buffers) forever. This accept loop drives hyper's HTTP/1 connection
//! directly, with:
//! - a header read timeout, which also closes idle keep-alive connections;
//! - a limit on the head's size and on the number of headers: 431 with a JSON body above them, from the
//!   request guard; hyper itself refuses heads over [`HARD_LIMIT_FACTOR`] times the limits, so even a
//!   refused head is never buffered without bound. hyper answers those (and a request line or header it
//!   cannot parse, 400) before any service runs, with a bare head (`content-length: 0`,
//!   `connection: close`): hyper 1 has no hook for that answer (`on_error` of its HTTP/1 server role builds
//!   it), so these are the only errors without a JSON body;
//! - a bound on open connections (further clients wait in the kernel's listen queue);
//! - a write timeout: a client that stops reading its responses is cut off once a write has waited the request
//!   timeout, so it cannot keep one of those connections, or shutdown, forever;
//! - a whole-request timeout (408 and the connection closed) and a bound on requests in flight (503 with
//!   `Retry-After` above it, before the body is read), as one middleware. `/healthz` and `/metrics` are
//!   outside that bound ([`UNBOUNDED_ROUTES`]): a liveness probe refused for load would have its process
//!   restarted (every replica at once, when all are loaded), and a refused scrape would hide the overload.
//!
//! With the body limit each service sets, memory is bounded by connections × (head + body) limits.

use crate::config::HttpConfig;
use crate::http::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

/// Seconds a client is told to wait (`Retry-After`) when the service is too busy to take its request.
pub const BUSY_RETRY_AFTER_SECS: u32 = 1;

/// Routes answered whatever the number of requests in flight: they read no body and wait on no dependency,
/// so they cannot pile up (the connection limit still bounds them).
pub const UNBOUNDED_ROUTES: &[&str] = &["/healthz", "/metrics"];

/// hyper's own limits on a request head are this many times the configured ones: between the two, the guard
/// answers 431 with a JSON body saying which limit was passed.
pub const HARD_LIMIT_FACTOR: u32 = 2;

struct Guard {
    in_flight: Arc<Semaphore>,
    request_timeout: Duration,
    max_headers: usize,
    max_header_bytes: usize,
}

/// Wraps `app` in the per-request limits of `limits`: requests in flight and the whole-request timeout.
pub fn with_request_limits(app: Router, limits: &HttpConfig) -> Router {
    let guard = Arc::new(Guard {
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
        request_timeout: limits.request_timeout(),
        max_headers: limits.max_headers as usize,
        max_header_bytes: limits.max_header_bytes as usize,
    });
    app.layer(axum::middleware::from_fn_with_state(guard, guard_request))
}

/// 431 when `req`'s head passes a configured limit (its size counted as sent: request line, and each header
/// as `name: value` and a line break).
fn check_head(guard: &Guard, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    if headers.len() > guard.max_headers {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request has {} headers; at most {} are accepted",
                headers.len(),
                guard.max_headers
            ),
        ));
    }
    let line =
        req.method().as_str().len() + req.uri().to_string().len() + " HTTP/1.1\r\n".len() + 1;
    let size = line
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if size > guard.max_header_bytes {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request line and headers take about {size} bytes; at most {} are accepted",
                guard.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// Counts a request the guard answered itself, in `topk_http_requests_refused_total{reason}`.
fn count_refused(reason: &'static str) {
    metrics::counter!("topk_http_requests_refused_total", "reason" => reason).increment(1);
}

async fn guard_request(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Err(too_large) = check_head(&guard, &req) {
        count_refused("head_too_large");
        let mut response = too_large.into_response();
        // The body was not read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    // try_acquire, not acquire: a queue of waiting requests would hold their connections and bodies, which is
    // the unbounded memory this limit exists to prevent.
    let _permit = if UNBOUNDED_ROUTES.contains(&req.uri().path()) {
        None
    } else if let Ok(permit) = guard.in_flight.clone().try_acquire_owned() {
        Some(permit)
    } else {
        count_refused("busy");
        return ApiError::busy(
            "the service is handling too many requests, try again shortly",
            BUSY_RETRY_AFTER_SECS,
        )
        .into_response();
    };
    match tokio::time::timeout(guard.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            count_refused("timeout");
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request took longer than {} ms (body sent too slowly?)",
                    guard.request_timeout.as_millis()
                ),
            )
            .into_response();
            // The body may be half read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// Binds `addr`, the value of the setting `setting`: the error names both, so an address already in use (or
/// not this machine's) points at the setting to change.
pub async fn bind(setting: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {setting}={addr}: {e}"))
}

/// Serves `app` on `listener` with the limits of `limits` until `stop` is cancelled, then stops accepting and
/// waits for the open connections to finish their request in hand, for at most the request timeout.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = with_request_limits(app, limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout())
        .max_headers((limits.max_headers * HARD_LIMIT_FACTOR) as usize)
        .max_header_size((limits.max_header_bytes * HARD_LIMIT_FACTOR) as usize);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections as usize));
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: wait for some to close instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Reads need no timeout here: hyper's header timeout covers a request's head and idle time, and the
        // request timeout its body.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.request_timeout()));
        let conn = http.serve_connection(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts, resets and malformed requests: the client's problem, not worth a warning.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // A request in hand ends within the request timeout; a response still being written then is dropped.
    let drain = limits.request_timeout();
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            after_ms = drain.as_millis() as u64,
            "connections still open at shutdown were dropped"
        );
    }
    Ok(())
}
