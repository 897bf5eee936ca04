//! Wire contracts of the HuleEdu pipeline core.
//!
//! This crate owns the JSON shapes exchanged with the existing HuleEdu platform (whose services
//! are Python/pydantic), this project's own dead-letter record and the bodies of its HTTP APIs.
//! It is serde only (plus, with the `openapi` feature, `utoipa` schemas of the HTTP bodies an
//! OpenAPI document describes): no I/O, no async, no Kafka or Redis client. Other crates build
//! and parse every message through it.
//!
//! Wire rules (see the platform's fixtures in `tests/platform/INDEX.md` and `docs/events.md`):
//! nullable fields are written as `null`, never left out; timestamps are UTC with a `Z` and
//! six-digit microseconds (no fraction when zero); enums are lowercase snake case; unknown keys
//! are ignored on input; routing is by topic, never by `event_type`.
//!
//! Modules:
//! - [`envelope`] — [`EventEnvelope`], the outer object of every Kafka message value.
//! - [`decode`] — [`decode_envelope`] / [`decode_json`], [`DecodeError`] (decode vs validation,
//!   messages naming the field path) and the [`Validate`] trait for model rules.
//! - [`payloads`] — the platform's event payloads (`data` objects).
//! - [`json`] — writing a small hot object's JSON text directly (essay references of large
//!   commands), byte for byte what serde_json writes.
//! - [`http`] — BOS → BCS pipeline-definition request and response bodies; [`http::bos`], the
//!   orchestrator's status document and retry request and answer.
//! - [`dlq`] — [`FailedEssayDlqRecordV1`] and the poison-message DLQ header names.
//! - [`topics`] — Kafka topic names and views of them ([`topics::ALL`], [`topics::SYSTEM`],
//!   [`topics::PIPELINE`], [`topics::COMMAND_TOPICS`]), [`topics::dlq_topic`], the phase ↔
//!   command-topic map ([`topics::initiate_command_topic`], [`topics::phase_of_command_topic`]).
//! - [`events`] — dotted event names carried inside payloads (`event` / `event_name`).
//! - [`phase`] — [`PhaseName`].
//! - [`status`] — [`BatchStatus`].
//! - [`timestamp`] — [`Timestamp`] (wire-format UTC time) and [`timestamp::NaiveTimestamp`].
//! - [`source`] — `source_service` values this project writes.

pub mod decode;
pub mod dlq;
pub mod envelope;
pub mod events;
pub mod http;
pub mod json;
pub mod payloads;
pub mod phase;
pub mod source;
pub mod status;
pub mod timestamp;
pub mod topics;
pub mod trace;

/// The root of the checkout the tests run in (tests only). Found at run time, walking up from
/// the working directory (`cargo test` runs each test binary in its package's directory) to the
/// folder holding `crates/contracts/tests/platform`; the path this crate was compiled at is the
/// fallback. Not `env!("CARGO_MANIFEST_DIR")` alone: checkouts that share one `CARGO_TARGET_DIR`
/// (as the scripts and CI do) can be served a test binary built in another checkout, and a path
/// compiled into it points at that checkout's files — or at nothing once it is gone.
#[doc(hidden)]
pub fn checkout_root() -> std::path::PathBuf {
    let is_root = |d: &std::path::Path| {
        d.join("Cargo.toml").is_file() && d.join("crates/contracts/tests/platform").is_dir()
    };
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(root) = cwd.ancestors().find(|d| is_root(d)) {
            return root.to_path_buf();
        }
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The platform's example envelopes and JSON Schemas kept in this source tree for tests
/// (`crates/contracts/tests/platform` under [`checkout_root`], see its README): the golden and
/// schema tests of this crate and of the services read them from here, checked to hold
/// `examples/` and `schemas/`. Only meaningful in a checkout of the repository.
#[doc(hidden)]
pub fn platform_fixtures_dir() -> std::path::PathBuf {
    let dir = checkout_root().join("crates/contracts/tests/platform");
    assert!(
        dir.join("examples").is_dir() && dir.join("schemas").is_dir(),
        "platform contract fixtures not found at {}",
        dir.display()
    );
    dir
}

pub use decode::{decode_envelope, decode_json, DecodeError, DecodeErrorKind, Validate};
pub use dlq::FailedEssayDlqRecordV1;
pub use envelope::EventEnvelope;
pub use phase::PhaseName;
pub use status::BatchStatus;
pub use timestamp::Timestamp;
