//! The contracts crate against the platform's fixtures (`tests/platform`): golden round trips,
//! JSON Schemas, decode errors, timestamps and unknown keys.
//!
//! One test binary for the crate (each test binary links the whole dependency tree, librdkafka
//! included, so a cold build pays per binary); the files are its modules. Run one group with a
//! filter on its module path, e.g. `cargo test -p huleedu-contracts --test integration -- golden::`.

mod common;
mod errors;
mod golden;
mod schema;
mod timestamp;
mod unknown_keys;
