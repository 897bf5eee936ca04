//! Traces end to end: the services of a stack export their spans over OTLP/HTTP to a receiver
//! in this test; a client request carrying a W3C `traceparent` yields one trace through every
//! command, outcome and the terminal event — the orchestrator's, the conductor's and the
//! reference worker's spans in it — and every event of the pipeline carries the trace on.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::payloads::ClientBatchPipelineRequestV1;
use huleedu_contracts::topics;
use huleedu_it::{unique, JsonPayload};
use huleedu_kafka::OutgoingMessage;
use parking_lot::Mutex;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::ctx::{Ctx, Submitted, T};

type R = anyhow::Result<()>;

/// The port of this run's OTLP receiver (chosen when the stack's settings are made).
pub static OTLP_PORT: OnceLock<u16> = OnceLock::new();

/// One span as exported.
#[derive(Debug, Clone)]
struct SpanSeen {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

type Spans = Arc<Mutex<Vec<SpanSeen>>>;

/// The spans of an OTLP/HTTP JSON export request.
fn spans_of(body: &Value) -> Vec<SpanSeen> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("?")
            .to_owned();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_ascii_lowercase();
                out.push(SpanSeen {
                    service: service.clone(),
                    name: text("name"),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent: text("parentSpanId"),
                });
            }
        }
    }
    out
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        spans.lock().extend(spans_of(&v));
    }
    "{}"
}

async fn receiver(port: u16) -> anyhow::Result<Spans> {
    let spans: Spans = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the OTLP receiver on {port}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(spans)
}

/// One trace from the client's request to the terminal event.
pub async fn t01_one_trace_through_the_pipeline(c: Arc<Ctx>) -> R {
    let port = *OTLP_PORT.get().context("no OTLP port")?;
    let spans = receiver(port).await?;
    let b = unique("t01");
    c.register(&b, 3, json!({"spellcheck": [format!("{b}-e02")]}), &[])
        .await?;
    let trace_id = Uuid::new_v4().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let correlation_id = Uuid::new_v4();
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "traceparent".into(),
        format!("00-{trace_id}-{client_span}-01").into(),
    );
    let env = EventEnvelope::new(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        "e2e_client",
        correlation_id,
        ClientBatchPipelineRequestV1 {
            batch_id: b.clone(),
            requested_pipeline: "nlp".into(),
            client_correlation_id: correlation_id,
            user_id: "teacher-e2e".into(),
            is_retry: false,
            retry_reason: None,
            prompt_payload: None,
        },
    )
    .with_metadata(metadata);
    c.producer
        .send(&OutgoingMessage::new(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            &b,
            env.to_json_bytes(),
        ))
        .await?;
    let t = c.terminal(Submitted { correlation_id }).await?;
    ensure!(t["final_status"] == "completed_with_failures", "{t}");

    // Every event of the pipeline carries the trace on.
    let carried = |topic: &str| -> anyhow::Result<usize> {
        let seen = c.on(topic, &b);
        for m in &seen {
            let tp = m.json()["metadata"]["traceparent"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            ensure!(
                tp.get(3..35) == Some(trace_id.as_str()),
                "{topic} carries traceparent {tp:?}, not trace {trace_id}"
            );
        }
        Ok(seen.len())
    };
    ensure!(
        carried(topics::SPELLCHECK_INITIATE_COMMAND)? == 1,
        "one spellcheck command"
    );
    ensure!(
        carried(topics::NLP_INITIATE_COMMAND)? == 1,
        "one nlp command"
    );
    ensure!(
        carried(topics::ELS_BATCH_PHASE_OUTCOME)? == 2,
        "two outcomes"
    );
    ensure!(
        carried(topics::BATCH_PIPELINE_COMPLETED)? == 1,
        "one terminal event"
    );
    let dlq = c
        .reader
        .wait_for(T, "the failed essay's DLQ record", |all| {
            all.iter().any(|m| {
                m.topic == topics::FAILED_ESSAYS_DLQ && m.key.as_deref() == Some(b.as_str())
            })
        })
        .await;
    ensure!(!dlq.is_empty());
    carried(topics::FAILED_ESSAYS_DLQ)?;

    // The spans of the trace, from all three services.
    let want: [(&str, &str, usize); 5] = [
        ("batch-orchestrator", "pipeline_request", 1),
        ("batch-orchestrator", "phase_outcome", 2),
        ("batch-conductor", "conductor_call", 2),
        ("batch-conductor", "event", 3),
        ("els-simulator", "command", 2),
    ];
    let start = Instant::now();
    loop {
        let mine: Vec<SpanSeen> = spans
            .lock()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let count = |svc: &str, name: &str| {
            mine.iter()
                .filter(|s| s.service == svc && s.name == name)
                .count()
        };
        let missing: Vec<String> = want
            .iter()
            .filter(|(svc, name, n)| count(svc, name) < *n)
            .map(|(svc, name, n)| format!("{svc}/{name} ({} of {n})", count(svc, name)))
            .collect();
        if missing.is_empty() {
            let request = mine.iter().find(|s| s.name == "pipeline_request").unwrap();
            ensure!(
                request.parent == client_span,
                "the orchestrator's request span is a child of the client's span: {request:?}"
            );
            let ids: std::collections::HashSet<&str> =
                mine.iter().map(|s| s.span_id.as_str()).collect();
            let orphans: Vec<&SpanSeen> = mine
                .iter()
                .filter(|s| s.parent != client_span && !ids.contains(s.parent.as_str()))
                .collect();
            ensure!(
                orphans.is_empty(),
                "every span's parent is in the trace (or is the client's): {orphans:?}"
            );
            return Ok(());
        }
        ensure!(
            start.elapsed() < T,
            "spans of trace {trace_id} missing after {T:?}: {missing:?}; seen: {:?}",
            mine.iter()
                .map(|s| format!("{}/{}", s.service, s.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
