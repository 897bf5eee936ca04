//! Logging with `tracing`: readable on a terminal, JSON lines in containers; and traces: spans
//! exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C trace context carried
//! from what a service consumes to what it produces ([`continue_trace`], [`outgoing`]).

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use huleedu_contracts::trace::TraceContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line, with span fields (batch id, correlation id, ...).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("expected pretty or json".to_owned()),
        }
    }
}

impl LogFormat {
    /// The default of `LOG_FORMAT`: pretty on a terminal, JSON otherwise.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Pretty
        } else {
            Self::Json
        }
    }
}

/// Where spans go: nowhere (the default), or an OTLP/HTTP collector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceExport {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL (spans go to `<it>/v1/traces`).
    pub endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME` (default: the binary's name).
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`: JSON instead of protobuf.
    pub json: bool,
}

/// Whether spans are exported (an OpenTelemetry layer is installed).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Flushes the exported spans when dropped (keep it until the service has stopped).
#[must_use = "spans are flushed when this is dropped"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("flushing the exported spans failed: {e}");
            }
        }
    }
}

/// Install the global subscriber. Filter from `RUST_LOG` (default `info`, librdkafka's own
/// chatter at `warn`). With an OTLP endpoint, spans are also exported (batched, in the
/// background) and W3C trace context is propagated; without one nothing is exported and the
/// trace helpers below only carry the incoming context on. Safe to call twice (the second
/// call does nothing).
pub fn init(format: LogFormat, export: &TraceExport) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let (otel, provider) = match &export.endpoint {
        None => (None, None),
        Some(endpoint) => match exporter(endpoint, export.json) {
            Ok(exporter) => {
                use opentelemetry::trace::TracerProvider as _;
                let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(export.service_name.clone())
                            .build(),
                    )
                    .build();
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                let tracer = provider.tracer("huleedu");
                EXPORTING.store(true, Ordering::Relaxed);
                (
                    Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                    Some(provider),
                )
            }
            Err(e) => {
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint:?}: no span exporter ({e}); spans are not exported");
                (None, None)
            }
        },
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = match format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .fmt_fields(crate::jsonlog::JsonFields)
                    .event_format(crate::jsonlog::JsonLine),
            )
            .try_init(),
    };
    Telemetry { provider }
}

fn exporter(
    endpoint: &str,
    json: bool,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    // The exporter's blocking HTTP client is built (on a thread of its own) and used by the
    // batch processor's background thread, off the async runtime.
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(if json {
            opentelemetry_otlp::Protocol::HttpJson
        } else {
            opentelemetry_otlp::Protocol::HttpBinary
        })
        .with_endpoint(url)
        .build()
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

struct Carrier<'a>(&'a mut std::collections::HashMap<String, String>);

impl opentelemetry::propagation::Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Source<'a>(&'a TraceContext);

impl opentelemetry::propagation::Extractor for Source<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            huleedu_contracts::trace::TRACEPARENT => Some(&self.0.traceparent),
            huleedu_contracts::trace::TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![
            huleedu_contracts::trace::TRACEPARENT,
            huleedu_contracts::trace::TRACESTATE,
        ]
    }
}

/// Make `span` part of the trace `incoming` names (when spans are exported; otherwise nothing to
/// do).
pub fn continue_trace(span: &tracing::Span, incoming: Option<&TraceContext>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if let (true, Some(t)) = (exporting(), incoming) {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Source(t)));
        let _ = span.set_parent(cx);
    }
}

/// The trace context to write into what `span` causes: the span's own when spans are exported,
/// otherwise `incoming` as it came (so the trace still continues through this service).
pub fn outgoing(span: &tracing::Span, incoming: Option<&TraceContext>) -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if exporting() {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            let mut out = std::collections::HashMap::new();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut Carrier(&mut out))
            });
            if let Some(t) = out
                .get(huleedu_contracts::trace::TRACEPARENT)
                .and_then(|tp| {
                    TraceContext::parse(
                        tp,
                        out.get(huleedu_contracts::trace::TRACESTATE)
                            .map(String::as_str),
                    )
                })
            {
                return Some(t);
            }
        }
    }
    incoming.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_the_incoming_context_is_carried_on_unchanged() {
        assert!(!exporting());
        let incoming = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("k=v"),
        );
        let span = tracing::info_span!("x");
        continue_trace(&span, incoming.as_ref());
        assert_eq!(outgoing(&span, incoming.as_ref()), incoming);
        assert_eq!(outgoing(&span, None), None);
    }
}
