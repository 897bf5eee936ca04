//! HTTP pieces shared by the HuleEdu pipeline services (axum).
//!
//! - [`ApiError`]: the one error type of every handler; a JSON body that says what is wrong,
//!   never internals in a 5xx body (those are logged once, with the cause).
//! - [`Json`]: a JSON extractor whose rejections are [`ApiError`]s (4xx JSON, naming the field).
//! - [`auth`]: bearer-token check in constant time.
//! - [`metrics`]: a Prometheus registry served at `/metrics`.
//! - [`probes`]: `/healthz` (liveness) and `/readyz` (readiness checks supplied by the service).
//! - [`serve`]: body-size limit, request time-out, JSON 404/405/413/408, graceful shutdown.
//! - [`listener`]: the listener, plain or TLS ([`ServerTls`] from `HTTP_TLS_CERT_FILE` and
//!   `HTTP_TLS_KEY_FILE`), and [`serve_on`].

pub mod auth;
mod error;
pub mod listener;
pub mod metrics;
pub mod probes;
mod serve;

pub use error::{ApiError, Json};
pub use listener::{serve_on, HttpListener, ServerTls, TlsSetupError};
pub use serve::{harden, serve, HttpLimits};
