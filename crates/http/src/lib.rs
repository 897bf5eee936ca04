//! HTTP pieces shared by the HuleEdu pipeline services (axum).
//!
//! - [`ApiError`]: the one error type of every handler; a JSON body that says what is wrong,
//!   never internals in a 5xx body (those are logged once, with the cause).
//! - [`Json`]: a JSON extractor whose rejections are [`ApiError`]s (4xx JSON, naming the field).
//! - [`auth`]: bearer-token check in constant time.
//! - [`metrics`]: a Prometheus registry served at `/metrics`.
//! - [`probes`]: `/healthz` (liveness) and `/readyz` (readiness: the checks a service has, under
//!   the same names everywhere: `kafka_consumer`, `broker`, `redis`).
//! - [`harden`]: body-size limit, request time-out, JSON 404/405/413/408; every service's
//!   `router()` applies it, so what tests call is what is served.
//! - [`listener`]: the listener, plain or TLS ([`HttpListener::from_settings`]: `HTTP_ADDR`,
//!   `HTTP_TLS_CERT_FILE`, `HTTP_TLS_KEY_FILE`; bound at start-up), and [`HttpServer`] /
//!   [`serve_on`] (serving until shutdown, in-flight requests finish).

pub mod auth;
mod error;
pub mod listener;
pub mod metrics;
pub mod probes;
mod serve;

pub use error::{ApiError, Json};
pub use listener::{
    serve_on, HttpListener, HttpServer, ListenError, ServeError, ServerTls, TlsSetupError,
};
pub use serve::{harden, HttpLimits};
