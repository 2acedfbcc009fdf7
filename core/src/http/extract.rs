//! The extractors of both services: axum's `Query`, `Path` and `Json`, whose rejections answer with the
//! shared error shape ([`ApiError`], `{"error": ...}`) instead of axum's plain text, so a handler takes them
//! as arguments and uses `?` on whatever it parses from them (axum `examples/customize-extractor-error`).

use super::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A query string deserialized into `T`; a malformed one is a 400 `bad query string: ...`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> Query<T> {
    /// The query of `uri`, as the extractor reads it from a request (for tests of what a handler parses).
    pub fn try_from_uri(uri: &Uri) -> Result<Self, ApiError> {
        let axum::extract::Query(query) = axum::extract::Query::try_from_uri(uri)?;
        Ok(Self(query))
    }
}

/// The route's path parameters deserialized into `T`; a segment that is not valid percent-encoded UTF-8 (or
/// does not deserialize) is a 400 with axum's explanation.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A JSON body deserialized into `T`, and a JSON answer: a body that is not JSON of the expected shape is a
/// 4xx with axum's explanation (its status: 400, 415 or 422).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T> IntoResponse for Json<T>
where
    axum::Json<T>: IntoResponse,
{
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(rejection.status(), format!("bad query string: {rejection}"))
    }
}

impl From<PathRejection> for ApiError {
    /// A 5xx here (a route without the parameters its handler asks for) is a bug: logged, not explained.
    fn from(rejection: PathRejection) -> Self {
        ApiError::foreign(rejection.status(), &rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::foreign(rejection.status(), &rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    /// Each extractor's refusal is the shared JSON shape with the right status, through a real router.
    #[tokio::test]
    async fn rejections_are_json_errors() {
        #[derive(serde::Deserialize)]
        struct Q {
            #[allow(dead_code)]
            n: u8,
        }
        let app = Router::new()
            .route("/q", get(|Query(_): Query<Q>| async { "ok" }))
            .route("/p/{id}", get(|Path(id): Path<String>| async move { id }))
            .route(
                "/j",
                post(|Json(v): Json<Vec<u8>>| async move { Json(v.len()) }),
            );
        for (request, status, starts) in [
            (
                Request::get("/q?n=300"),
                StatusCode::BAD_REQUEST,
                "bad query string: ",
            ),
            (
                Request::get("/p/%ff"),
                StatusCode::BAD_REQUEST,
                "Invalid URL",
            ),
            (
                Request::post("/j"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request",
            ),
        ] {
            let response = app
                .clone()
                .oneshot(request.body(Body::from("[1, 2]")).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), status);
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.starts_with(starts), "{body}");
        }
        let ok = Request::post("/j")
            .header("content-type", "application/json")
            .body(Body::from("[1, 2]"))
            .unwrap();
        let response = app.oneshot(ok).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(&body[..], b"2");
    }
}
