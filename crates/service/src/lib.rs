//! Shared service runtime for the HuleEdu pipeline services.
//!
//! Owns what every binary does the same way before and after its real work:
//!
//! - [`settings`]: typed settings from environment variables, declared once as clap arguments
//!   (name, default, range, meaning), validated at start-up with errors that name the variable;
//!   secrets that never print; `--help` and the documentation tables from clap's metadata.
//! - [`run`]: the `main` of every service binary and its exit convention (0, 1, 2).
//! - [`telemetry`]: `tracing` output, readable on a terminal and JSON otherwise (`LOG_FORMAT`;
//!   the JSON line is written by [`jsonlog`]).
//! - [`shutdown`]: SIGTERM / Ctrl-C cancel a root [`CancellationToken`]; a second signal exits
//!   at once.
//! - [`backoff`]: [`backoff::Backoff`], exponential with jitter, for every retry loop.
//!
//! It knows nothing about Kafka, Redis or HTTP; the plumbing crates declare their own variables
//! with the same helpers ([`settings::parse_vars`], [`settings::int_in`], ...).

pub mod backoff;
pub mod jsonlog;
pub mod run;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use run::run;
pub use tokio_util::sync::CancellationToken;
