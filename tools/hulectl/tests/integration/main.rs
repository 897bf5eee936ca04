//! `hulectl`'s integration tests: against the real broker, against stand-ins of the services'
//! HTTP APIs, and the demo end to end on a whole local system.
//!
//! One test binary for the crate (each test binary links the whole dependency tree, librdkafka
//! included, so a cold build pays per binary); the files are its modules. Run one group with a
//! filter on its module path, e.g. `cargo test -p hulectl --test integration -- http::`.

mod broker;
mod demo;
mod http;
