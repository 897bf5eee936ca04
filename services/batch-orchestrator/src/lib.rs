//! Batch orchestrator service (BOS): runs essay-processing pipelines, one phase at a time.
//!
//! Data flow: a `ClientBatchPipelineRequestV1` is de-duplicated and queued on the batch
//! ([`handler`]); the [`scheduler`] asks the conductor to resolve the queue head (expand and
//! prune completed phases, waiting for the conductor to have seen the last terminal event) and
//! starts it: `PhaseSkippedV1` per pruned phase and the first initiate command. Each
//! `ELSBatchPhaseOutcomeV1` matching the running phase moves the pipeline on with the essays
//! that succeeded; the last one (or a critical failure, or a time-out) publishes exactly one
//! `BatchPipelineCompletedV1` and lets the next queued request start.
//!
//! Layout:
//! - [`model`]: the batch state kept in Redis; [`decide`]: the pure decisions on it;
//!   [`essays`]: which essays a phase gets; [`events`]: the events BOS emits.
//! - [`core`]: load → decide → atomic commit (state, dedup marker, outbox, indexes).
//! - [`handler`]: consumed topics; [`scheduler`]: starts and deadlines from durable indexes;
//!   [`conductor`]: the BCS client; [`http`]: status, probes, metrics, OpenAPI.
//! - [`settings`], [`metrics`], [`app`] (wiring and shutdown order).

pub mod app;
pub mod conductor;
pub mod core;
pub mod decide;
pub mod essays;
pub mod events;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod model;
pub mod scheduler;
pub mod settings;

pub use app::App;
pub use settings::BosSettings;
