//! Admission of `POST /v1/views`, before its body is read: a client without the token, a body declared too
//! large or not plain JSON, or a batch the log has no room for costs no body buffering.

use crate::receiver::count_rejected;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use topk_core::http::ApiError;

/// Runs before `POST /v1/views` reads its body, so a client without the token, a body declared too large or
/// not plain JSON, or a batch the log has no room for, costs no body buffering: 401 without the right token,
/// 413 for a `Content-Length` over the limit, 415 for another media type or a content coding, 503 with
/// `Retry-After` while the backlog is over its limit.
pub async fn admit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Err(refused) = authorize(&state, request.headers()) {
        count_rejected("unauthorized");
        return Err(refused);
    }
    if let Some(declared) = declared_over(request.headers(), state.config.max_body_bytes) {
        count_rejected("too_large");
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is declared as {declared} bytes; at most {} are accepted",
                state.config.max_body_bytes
            ),
        )
        .into_response();
        // The body is left unread (and no `100 Continue` sent): the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    if let Err(refused) = plain_json(request.headers()) {
        count_rejected("invalid");
        let mut response = refused.into_response();
        // RFC 9110 15.5.16: a 415 names the content codings that would have been taken.
        response.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        return Ok(response);
    }
    if let Some(entries) = state.backlog.over_limit() {
        count_rejected("backlog");
        return Err(ApiError::busy(
            format!(
                "the workers are behind: {entries} log entries wait to be applied (limit {}); \
                 nothing was stored, try again shortly",
                state.backlog.limit()
            ),
            crate::backpressure::RETRY_AFTER_SECS,
        ));
    }
    Ok(next.run(request).await)
}

/// The `Content-Length` of a request whose declared body is over `limit`. A body without one (chunked) is cut
/// at the limit as it is read instead.
fn declared_over(headers: &HeaderMap, limit: usize) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .filter(|declared| *declared > limit as u64)
}

/// 415 unless the body is declared as JSON (`application/json`, any case, parameters allowed) without a
/// content coding. A missing `Content-Type` is refused too: it is what a page on another origin can send
/// without a CORS preflight (as is `text/plain`), and an open ingest must not be writable by any web page.
/// Compressed bodies are refused rather than decoded: batches are small, and a decoder would have to bound
/// the decoded size as well; refusing is better than reading the compressed bytes as JSON.
fn plain_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (a JSON array of views)",
        ));
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a Content-Encoding (gzip, deflate, ...) is not supported: send the JSON uncompressed",
        ));
    }
    Ok(())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(tokens) = &state.tokens else {
        return Ok(());
    };
    if tokens.accepts(headers.get(header::AUTHORIZATION)) {
        Ok(())
    } else {
        // Never log or echo the presented value, nor a part of it: only which known scheme it names, since a
        // client that sends the bare token (no scheme) would otherwise have its first word logged. One line
        // per interval at most, counting the refusals since the last.
        if let Some(refused) = state.refusals.record(std::time::Instant::now()) {
            tracing::warn!(
                refused,
                authorization_scheme = presented_scheme(headers.get(header::AUTHORIZATION)),
                "writes refused: missing or wrong bearer token ({refused} since the last such line; at most \
                 one line per {} s)",
                state.refusals.interval().as_secs()
            );
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// The scheme of an `Authorization` value, when it is one of the usual words followed by a space; never any
/// other part of the value.
fn presented_scheme(value: Option<&axum::http::HeaderValue>) -> &'static str {
    let Some(value) = value else {
        return "(none)";
    };
    let scheme = value
        .as_bytes()
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    let has_credentials = value.as_bytes().len() > scheme.len();
    ["Bearer", "Basic", "Digest", "Negotiate", "Token", "ApiKey"]
        .into_iter()
        .find(|known| has_credentials && scheme.eq_ignore_ascii_case(known.as_bytes()))
        .unwrap_or("(other)")
}
