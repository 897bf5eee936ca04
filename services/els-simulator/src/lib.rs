//! `els-simulator`: the reference phase worker, a dev/test tool (not a production component).
//!
//! It plays the Essay Lifecycle Service side of the contract so that the pipeline services run
//! end to end on one machine:
//!
//! ```text
//!  BOS ── initiate commands (4 topics) ──▶ worker ── ELSBatchPhaseOutcomeV1 ──▶ BOS, BCS
//!                                            │ counts, overrides (memory)
//!  tests / people ── HTTP ──▶ api ───────────┘── BatchEssaysReady (demo batches) ──▶ BOS
//! ```
//!
//! Layout:
//! - [`decide`]: the pure core — which essays fail (explicit list, per-batch overrides, seeded
//!   rate), the phase status, new output text ids, the outcome a command gets.
//! - [`worker`]: the Kafka [`huleedu_kafka::Handler`]: decode, count, decide, simulate latency,
//!   publish and await the ack.
//! - [`api`]: the HTTP router (`/v1/counts`, `/v1/batches`, overrides, probes, metrics).
//! - [`state`]: in-memory dispatch counts and per-batch overrides shared by worker and API.
//! - [`publish`]: the [`publish::Publisher`] seam (Kafka producer, or memory in tests).
//! - [`settings`]: configuration from the environment ([`settings::SimArgs`]).
//! - [`metrics`]: `commands_received_total`, `outcomes_published_total`.
//! - [`app`]: wiring; [`App::build`] then [`App::run`].

pub mod api;
pub mod app;
pub mod decide;
pub mod metrics;
pub mod publish;
pub mod settings;
pub mod state;
pub mod worker;

pub use api::{router, AppState};
pub use app::{App, AppError};
pub use settings::{Behaviour, SimArgs, SimSettings};
pub use state::{Counts, OverrideStore, PhaseCount};
