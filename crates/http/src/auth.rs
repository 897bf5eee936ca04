//! Bearer-token authentication for operator endpoints.

use axum::http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Check `Authorization: Bearer <token>` against the configured token in constant time.
///
/// `None` configured → 503 "operator endpoint disabled"; missing or wrong token → 401.
pub fn require_bearer(headers: &HeaderMap, configured: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = configured else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "operator_endpoint_disabled",
            "operator endpoint disabled: set OPERATOR_TOKEN to enable it",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <token> header",
        ));
    };
    if token_matches(given, expected) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid token"))
    }
}

/// Whether `given` is the `expected` token, compared in constant time (`ct_eq` on different
/// lengths is false without an early exit on content).
pub fn token_matches(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, v.parse().unwrap());
        m
    }

    #[test]
    fn accepts_only_the_configured_token() {
        assert!(require_bearer(&h("Bearer s3cret"), Some("s3cret")).is_ok());
        assert_eq!(
            require_bearer(&h("Bearer nope"), Some("s3cret"))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            require_bearer(&h("s3cret"), Some("s3cret"))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            require_bearer(&HeaderMap::new(), Some("s3cret"))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            require_bearer(&h("Bearer s3cret"), None)
                .unwrap_err()
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
