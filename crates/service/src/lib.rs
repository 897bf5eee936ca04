//! Shared service runtime for the HuleEdu pipeline services.
//!
//! Owns what every binary does the same way before and after its real work:
//!
//! - [`settings`]: typed settings read from environment variables, validated at start-up with
//!   errors that name the variable; secrets that never print; `--help` text from one table.
//! - [`telemetry`]: `tracing` output, readable on a terminal and JSON otherwise (`LOG_FORMAT`).
//! - [`shutdown`]: SIGTERM / Ctrl-C cancel a root [`CancellationToken`]; a second signal exits
//!   at once.
//! - [`backoff`]: [`backoff::Backoff`], exponential with jitter, for every retry loop.
//!
//! It knows nothing about Kafka, Redis or HTTP; the plumbing crates build their own settings on
//! top of [`settings::Env`].

pub mod backoff;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use tokio_util::sync::CancellationToken;
