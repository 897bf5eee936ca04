//! The reference worker's integration tests: the binary, the app against the real broker, the
//! HTTP API and the worker's handler.
//!
//! One test binary for the crate (each test binary links the whole dependency tree, librdkafka
//! included, so a cold build pays per binary); the files are its modules. Run one group with a
//! filter on its module path, e.g. `cargo test -p els-simulator --test integration -- broker::`.

mod bin;
mod broker;
mod common;
mod http;
mod worker;
