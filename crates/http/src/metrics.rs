//! A Prometheus registry shared by a service's components and served at `/metrics`.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// The service's metric registry. Metrics are registered once at start-up.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register metrics (called by the service's metrics module at start-up).
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        self.register_with(f)
    }

    /// Like [`Metrics::register`], returning what `f` returns (e.g. the registered handles).
    pub fn register_with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock())
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry.lock()).expect("writing to a String cannot fail");
        out
    }

    /// Handler for `GET /metrics`.
    pub async fn handler(metrics: axum::extract::State<Metrics>) -> impl IntoResponse {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.render(),
        )
    }
}
