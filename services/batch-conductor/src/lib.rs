//! Batch Conductor Service (BCS).
//!
//! The conductor owns **batch-level phase completion**: for every batch it remembers which
//! phases are completed (or failed), where that knowledge came from, and which pipelines'
//! completions it has processed. From that it answers the orchestrator's resolution requests,
//! pruning phases that already completed, so no phase runs twice for a batch. It also routes
//! every failed essay to the failed-essay DLQ and lets operators mark phases by hand.
//!
//! ## Data flow
//!
//! ```text
//! huleedu.els.batch.phase.outcome.v1 ─┐                      ┌─▶ Redis hash per batch (records, pipelines)
//! huleedu.batch.pipeline.completed.v1 ┴▶ consumer ─▶ state ──┤   + dedup marker (event id)
//!                                        (decode)   (decide) └─▶ outbox ─▶ relay ─▶ huleedu.pipelines.failed_essays.DLQ
//! undecodable / invalid ─▶ <topic>.DLQ (poison, by the consumer runner)
//!
//! BOS ── POST /internal/v1/pipelines/define ─▶ api ─▶ read records ─▶ pipelines::resolve ─▶ final_pipeline, pruned_phases
//! operators ── POST /internal/v1/phases/complete ─▶ api ─▶ state (decide) ─▶ Redis
//! ```
//!
//! ## Layout
//!
//! - [`pipelines`] (pure): phase dependencies and named pipelines, loading and validating
//!   `PIPELINES_FILE`, [`pipelines::resolve`].
//! - [`state`] (pure): phase records, the Redis hash encoding, and the decisions (event or
//!   operator mark + current records → records to write + failed-essay DLQ events).
//! - [`consumer`]: the Kafka handler carrying out those decisions atomically through
//!   `huleedu-store`.
//! - [`api`]: the axum router ([`api::router`]) and the OpenAPI document.
//! - [`metrics`]: every Prometheus metric of the service.
//! - [`settings`]: environment variables ([`settings::BcsArgs`]).
//! - [`app`]: [`App`], wiring and shutdown order.

pub mod api;
pub mod app;
pub mod consumer;
pub mod marks;
pub mod metrics;
pub mod pipelines;
pub mod redrive;
pub mod settings;
pub mod state;

pub use app::App;
pub use settings::{BcsArgs, BcsSettings};
