//! `pipeline-console`: the operator console in the browser.
//!
//! Server-rendered HTML (maud: every value escaped by construction), no JavaScript, no build
//! step besides cargo. It keeps no state of its own: every page is read from the services and
//! the broker when it is asked for, and every action is a call to the service that owns it,
//! with the token the operator typed into the form (sent as a bearer token, never stored, never
//! logged).
//!
//! ```text
//!            browser (same origin only for POST)
//!               │ GET pages                         │ POST /actions/*
//!               ▼                                   ▼
//!        ┌──────────────── pipeline-console ─────────────────┐
//!        │ /batches ──────────▶ BOS GET /v1/batches            │
//!        │ /batches/{id} ─────▶ BOS GET …/status + BCS …/phases│ ──▶ SVG timeline, event log
//!        │ /dead-letters ─────▶ Kafka: *.DLQ read to the end   │
//!        │ mark ──────────────▶ BCS POST /internal/v1/phases/complete   (Bearer)
//!        │ retry ─────────────▶ BOS POST /v1/batches/{id}/retry-phase    (Bearer)
//!        │ re-drive ──────────▶ BCS POST /internal/v1/dlq/redrive        (Bearer)
//!        │ submit ────────────▶ Kafka: ClientBatchPipelineRequestV1  (token checked here)
//!        └─────────────────────────────────────────────────────┘
//! ```
//!
//! - [`settings`]: `HTTP_ADDR` (default `127.0.0.1:8080`), `BOS_URL`, `BCS_URL`, the Kafka
//!   settings, `OPERATOR_TOKEN` (only to let the console publish pipeline requests itself).
//! - [`clients`]: the calls to the orchestrator, the conductor and the broker.
//! - [`pages`] and [`timeline`]: pure rendering (data in, markup out, time passed in).
//! - [`app`]: routes, the same-origin check of actions, security headers, probes, metrics.

pub mod app;
pub mod clients;
pub mod pages;
pub mod settings;
pub mod timeline;

pub use app::{App, AppError};
pub use settings::ConsoleSettings;
