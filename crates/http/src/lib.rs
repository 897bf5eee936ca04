//! HTTP pieces shared by the HuleEdu pipeline services (axum).
//!
//! - [`ApiError`]: the one error type of every handler; a JSON body that says what is wrong,
//!   never internals in a 5xx body (those are logged once, with the cause).
//! - [`Json`]: a JSON extractor whose rejections are [`ApiError`]s (4xx JSON, naming the field).
//! - [`auth`]: bearer-token check in constant time.
//! - [`metrics`]: a Prometheus registry served at `/metrics`.
//! - [`probes`]: `/healthz` (liveness) and `/readyz` (readiness checks supplied by the service).
//! - [`serve`]: body-size limit, request time-out, JSON 404/405/413/408, graceful shutdown.

pub mod auth;
mod error;
pub mod metrics;
pub mod probes;
mod serve;

pub use error::{ApiError, Json};
pub use serve::{harden, serve, HttpLimits};
