//! [`ApiError`] and the [`Json`] extractor.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error answered to an HTTP client: status, a short machine-readable `error`, a `detail`
/// for people, and optional extra headers (e.g. `Retry-After`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: serde_json::Value,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        error: impl Into<String>,
        detail: impl Into<serde_json::Value>,
    ) -> Self {
        Self {
            status,
            error: error.into(),
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(error: impl Into<String>, detail: impl Into<serde_json::Value>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail)
    }

    pub fn unprocessable(error: impl Into<String>, detail: impl Into<serde_json::Value>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error, detail)
    }

    pub fn not_found(detail: impl Into<serde_json::Value>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unauthorized(detail: impl Into<serde_json::Value>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn unavailable(error: impl Into<String>, detail: impl Into<serde_json::Value>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, error, detail)
    }

    /// A failure on our side. The cause is logged here, once; the client sees only that it
    /// failed and that it may retry.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request could not be completed; it is safe to retry",
        )
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: &'a serde_json::Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.error,
            detail: &self.detail,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `axum::Json`, but a malformed body is an [`ApiError`]: 400 for unreadable JSON or a wrong
/// content type, 422 for JSON of the wrong shape (the message names the field), 413 too large.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let detail = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => ApiError::unprocessable("invalid_body", detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed_json", detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body exceeds the size limit",
        ),
        other => ApiError::new(other.status(), "bad_request", detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn errors_are_json_with_retry_after() {
        let resp = ApiError::unavailable("conductor_lagging", "wait")
            .with_retry_after(1)
            .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let body = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "conductor_lagging");
        assert_eq!(v["detail"], "wait");
    }

    #[tokio::test]
    async fn internal_errors_hide_the_cause() {
        let resp = ApiError::internal(&"redis at 10.0.0.3 refused").into_response();
        let body = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("10.0.0.3"));
    }
}
