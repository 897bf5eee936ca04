//! A Prometheus registry shared by a service's components and served at `/metrics`.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
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

    /// Handler for `GET /metrics` (see [`Metrics::respond`]).
    pub async fn handler(metrics: axum::extract::State<Metrics>, headers: HeaderMap) -> Response {
        metrics.respond(&headers)
    }

    /// The answer to `GET /metrics`: OpenMetrics text (what Prometheus asks for), or the classic
    /// Prometheus text format (0.0.4) when the request's `Accept` asks for `text/plain` and not
    /// for OpenMetrics (older scrapers, `promtool check metrics`).
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/plain") && !accept.contains("application/openmetrics-text") {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                prometheus_text(&self.render()),
            )
                .into_response()
        } else {
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                self.render(),
            )
                .into_response()
        }
    }
}

/// OpenMetrics text as the classic Prometheus text format (0.0.4): a counter family's `# HELP`
/// and `# TYPE` lines name its `_total` samples, `unknown` is `untyped`, and the `# UNIT` and
/// `# EOF` lines go. Samples are the same in both.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                out.push_str(&format!("{prefix}{name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_reads_as_the_classic_text_format() {
        let om = "# HELP x_events Events.\n# TYPE x_events counter\nx_events_total{t=\"a\"} 2\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# HELP x_d Duration.\n# TYPE x_d histogram\n# UNIT x_d seconds\nx_d_bucket{le=\"+Inf\"} 1\nx_d_sum 0.5\nx_d_count 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP x_events_total Events.\n# TYPE x_events_total counter\nx_events_total{t=\"a\"} 2\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# HELP x_d Duration.\n# TYPE x_d histogram\nx_d_bucket{le=\"+Inf\"} 1\nx_d_sum 0.5\nx_d_count 1\n"
        );
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        let m = Metrics::new();
        let kind = |accept: &str| {
            let mut h = HeaderMap::new();
            if !accept.is_empty() {
                h.insert(header::ACCEPT, accept.parse().unwrap());
            }
            m.respond(&h).headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert!(kind("").starts_with("application/openmetrics-text"));
        assert!(
            kind("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
                .starts_with("application/openmetrics-text")
        );
        assert!(kind("text/plain; version=0.0.4").starts_with("text/plain; version=0.0.4"));
    }
}
