//! Request metrics of a service: a histogram of durations by route and a counter by route and status
//! (`topk_api_*` or `topk_ingest_*`, [`crate::metrics::CATALOG`]). The route is the matched pattern, so ids in
//! paths cannot multiply the series; anything unrouted counts as "unmatched"; a request dropped unanswered
//! (timed out, or its client gone) has status "dropped". Requests refused before routing (too many in flight,
//! an oversized head) are counted by `serve.rs` in `topk_http_requests_refused_total`.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use std::time::Instant;

/// Which service's metric names a router records under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Api,
    Ingest,
}

impl Service {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Service::Api => (
                "topk_api_request_duration_seconds",
                "topk_api_requests_total",
            ),
            Service::Ingest => (
                "topk_ingest_request_duration_seconds",
                "topk_ingest_requests_total",
            ),
        }
    }
}

/// Wraps every route of `app` (its fallback included) in the request metrics of `service`.
pub fn with_request_metrics<S>(app: Router<S>, service: Service) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    app.layer(axum::middleware::from_fn_with_state(service, record))
}

async fn record(State(service): State<Service>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let mut recorded = Recorded {
        service,
        route,
        started: Instant::now(),
        status: None,
    };
    let response = next.run(request).await;
    recorded.status = Some(response.status().as_str().to_owned());
    response
}

/// One request's metrics, recorded when it is dropped: after the answer, or when the request's future is
/// dropped unanswered (the request timeout, a client that went away), so the slowest requests count too.
struct Recorded {
    service: Service,
    route: String,
    started: Instant,
    /// The answer's status; None when the request was dropped before one.
    status: Option<String>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let (duration, total) = self.service.names();
        let route = std::mem::take(&mut self.route);
        let status = self.status.take().unwrap_or_else(|| "dropped".to_owned());
        metrics::histogram!(duration, "route" => route.clone())
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(total, "route" => route, "status" => status).increment(1);
    }
}
