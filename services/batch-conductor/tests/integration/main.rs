//! The conductor's integration tests: the binary's command line, the handler and the HTTP API
//! over the real test Redis, and the whole App's life cycle against the real broker.
//!
//! One test binary for the crate (each test binary links the whole dependency tree, librdkafka
//! included, so a cold build pays per binary); the files are its modules. Run one group with a
//! filter on its module path, e.g. `cargo test -p batch-conductor --test integration -- http::`.
//!
//! `tests/kafka.rs` stays a binary of its own: it runs one conductor for all its tests for the
//! life of the process, and a second conductor (the life-cycle tests of `app`) consuming the
//! same fixed topics at the same time would process the other's outcomes too.

mod app;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod handler;
mod http;
