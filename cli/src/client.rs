//! Requests and what goes wrong with them, worded for a person: an error answer as `<status>: <the server's
//! message>`, a connection error naming the URL and whether it was refused or timed out.

use crate::args::{ApiSettings, HttpArgs};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// A request that did not end in a success answer.
#[derive(Debug)]
pub enum RequestError {
    /// The server answered with an error status.
    Status {
        status: StatusCode,
        /// The server's `error` message, or the start of a body that was not `{"error": ...}`.
        message: String,
        /// `Retry-After` in seconds, when the answer had one.
        retry_after: Option<u64>,
        /// The `idempotencyKey` of a 503 for a batch that may be partly stored.
        idempotency_key: Option<String>,
    },
    /// No answer: the connection was refused, timed out or broke.
    Transport { url: Url, why: String },
}

impl RequestError {
    /// Worth sending again (under the same Idempotency-Key): the server or a proxy in front of it was
    /// unavailable or timed the request out, or there was no answer at all (the request may or may not have
    /// been stored).
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::Status { status, .. } => matches!(
                *status,
                StatusCode::REQUEST_TIMEOUT
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            RequestError::Transport { .. } => true,
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Status {
                status, message, ..
            } => write!(f, "{status}: {message}"),
            RequestError::Transport { url, why } => write!(f, "{url}: {why}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// A success answer: its headers and its body, kept as text so `--json` can print it as it came.
pub struct Answer {
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as `T`; a body of another shape is an error naming the URL (a server of another version, or
    /// something else on that port).
    pub fn parse<T: for<'de> Deserialize<'de>>(&self, url: &Url) -> anyhow::Result<T> {
        serde_json::from_str(&self.body).map_err(|e| {
            anyhow::anyhow!(
                "{url}: the answer is not what topk's API sends ({e}): {}",
                excerpt(&self.body)
            )
        })
    }
}

/// An HTTP client with the command's timeout on every request.
pub fn http(args: &HttpArgs) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(args.timeout())
        .connect_timeout(args.timeout())
        .user_agent(concat!("topk-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("--ca-file {}: cannot be read: {e}", path.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!("--ca-file {}: not a PEM certificate: {e}", path.display())
        })?;
        builder = builder.add_root_certificate(ca);
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up HTTP: {e}"))
}

/// `url` under `base`: `base`'s own path (a proxy's prefix) kept, then each segment percent-encoded.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base URLs are http://, which have a path")
        .pop_if_empty()
        .extend(segments);
    url
}

/// `GET url` from the API, with the command's timeout and CA file.
pub async fn get(api: &ApiSettings, url: &Url) -> anyhow::Result<Answer> {
    let http = http(&api.http)?;
    Ok(send(http.get(url.clone()), url).await?)
}

/// Sends `request` and reads the whole answer; an error status becomes [`RequestError::Status`].
pub async fn send(request: reqwest::RequestBuilder, url: &Url) -> Result<Answer, RequestError> {
    let transport = |e: reqwest::Error| RequestError::Transport {
        url: url.clone(),
        why: transport_why(&e),
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(transport)?;
    if status.is_success() {
        return Ok(Answer { headers, body });
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ErrorBody {
        error: String,
        idempotency_key: Option<String>,
    }
    let (message, idempotency_key) = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(e) => (e.error, e.idempotency_key),
        // Not one of ours (a proxy's page, say): its start, or nothing for an empty body.
        Err(_) => (excerpt(&body), None),
    };
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Err(RequestError::Status {
        status,
        message,
        retry_after,
        idempotency_key,
    })
}

/// Why a request got no answer, in a few words: refused, timed out, or the innermost cause.
fn transport_why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out (no answer within --timeout-ms)".into();
    }
    let mut innermost: &dyn std::error::Error = e;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "connection refused (is the service running there?)".into()
                }
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                _ => {}
            }
        }
        innermost = s;
        source = s.source();
    }
    if e.is_connect() {
        format!("could not connect ({innermost})")
    } else {
        format!("no answer ({innermost})")
    }
}

/// The start of a body, on one line, for an error message.
fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None if one_line.is_empty() => "(no message)".into(),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path_and_encode_segments() {
        let base = Url::parse("http://h:1").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "videos", "a/b c"]).as_str(),
            "http://h:1/v1/videos/a%2Fb%20c"
        );
        let proxied = Url::parse("http://h/topk/").unwrap();
        assert_eq!(
            endpoint(&proxied, &["v1", "topk"]).as_str(),
            "http://h/topk/v1/topk"
        );
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("<h1>Bad\n gateway</h1>\n"), "<h1>Bad gateway</h1>");
        assert_eq!(excerpt(""), "(no message)");
        assert_eq!(excerpt(&"x".repeat(500)).len(), 203);
    }
}
