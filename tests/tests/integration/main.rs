//! The cross-crate integration tests: Kafka plumbing, Redis store and relay, managed
//! infrastructure (TLS, SASL, ACLs), fuzzing of decoders, handlers and HTTP routes, and the
//! checks that documentation and deployment files agree with the code. The end-to-end
//! scenarios (`e2e/`) and the chaos test (`chaos/`) are binaries of their own.
//!
//! One test binary for the crate (each test binary links the whole dependency tree, librdkafka
//! included, so a cold build pays per binary); the files are its modules. Run one group with a
//! filter on its module path, e.g. `cargo test -p huleedu-it --test integration -- store::`.

mod alerts;
mod deployment;
mod docs;
mod fuzz;
mod http_fuzz;
mod kafka_plumbing;
mod orchestrator_handler;
mod security;
mod store;
