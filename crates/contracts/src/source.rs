//! `source_service` values this project writes into the envelopes it emits.
//!
//! Other producers spell theirs differently (`batch-orchestrator-service`); never route on it.

/// The Batch Orchestrator Service.
pub const BATCH_ORCHESTRATOR: &str = "batch_orchestrator_service";
/// The Batch Conductor Service.
pub const BATCH_CONDUCTOR: &str = "batch_conductor_service";
/// The Essay Lifecycle Service simulator used in tests and demos.
pub const ELS_SIMULATOR: &str = "els_simulator";
