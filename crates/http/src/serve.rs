//! The hardening of a service's router: limits, time-outs, JSON fallbacks.

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::ApiError;

/// Request limits applied to every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Wrap a router with the body limit (413), a request time-out (408), and JSON bodies for
/// unknown routes (404) and any plain-text error the framework produces.
pub fn harden(router: Router, limits: HttpLimits) -> Router {
    // The last layer added is the outermost: `json_errors` sees the time-out's 408 and the
    // body limit's 413 too.
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(middleware::from_fn(json_errors))
}

/// Replace non-JSON error bodies (405, 408, 413 from layers) with JSON ones.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (error, detail) = match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "method not allowed on this route")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                ("payload_too_large", "request body exceeds the size limit")
            }
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            s if s.is_server_error() => ("internal_error", "the request could not be completed"),
            _ => ("bad_request", "the request was not understood"),
        };
        let mut out = ApiError::new(status, error, detail).into_response();
        if let Some(v) = resp.headers().get(axum::http::header::RETRY_AFTER) {
            out.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v.clone());
        }
        return out;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::routing::post;
    use tower::ServiceExt;

    fn app() -> Router {
        harden(
            Router::new().route("/echo", post(|body: String| async move { body })),
            HttpLimits {
                max_body_bytes: 16,
                request_timeout: Duration::from_secs(5),
            },
        )
    }

    async fn json_of(resp: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn oversized_bodies_get_413_json() {
        let req = Request::post("/echo")
            .body(Body::from(vec![b'x'; 100]))
            .unwrap();
        let resp = app().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json_of(resp).await["error"], "payload_too_large");
    }

    #[tokio::test]
    async fn slow_requests_time_out_with_408_json() {
        let app = harden(
            Router::new().route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            ),
            HttpLimits {
                max_body_bytes: 16,
                request_timeout: Duration::from_millis(50),
            },
        );
        let resp = app
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(json_of(resp).await["error"], "request_timeout");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_get_json() {
        let resp = app()
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_of(resp).await["error"], "not_found");
        let resp = app()
            .oneshot(Request::get("/echo").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(json_of(resp).await["error"], "method_not_allowed");
    }
}
