//! Helpers shared by the conductor's tests: platform contracts, stores, events, HTTP calls.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use batch_conductor::api::{ApiConfig, AppState};
use batch_conductor::consumer::EventHandler;
use batch_conductor::pipelines::Definitions;
use huleedu_contracts::payloads::{
    BatchPipelineCompletedV1, ELSBatchPhaseOutcomeV1, EssayProcessingInputRefV1,
    SystemProcessingMetadata,
};
use huleedu_contracts::{source, topics, BatchStatus, EventEnvelope, PhaseName};
use huleedu_kafka::{Handler, HandlerResult, Inbound};
use huleedu_service::settings::Secret;
use huleedu_store::Store;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

/// The platform's contract fixtures (examples and schemas), kept in the repository under
/// `crates/contracts/tests/platform`.
pub fn contracts_dir() -> PathBuf {
    huleedu_contracts::platform_fixtures_dir()
}

/// A compiled platform schema (`schemas/<model>.schema.json`), formats checked.
pub fn validator(model: &str) -> jsonschema::Validator {
    let path = contracts_dir().join(format!("schemas/{model}.schema.json"));
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {model} does not compile: {e}"))
}

/// Panics with every error when `instance` does not validate against `model`.
pub fn assert_valid(model: &str, instance: &Value) {
    let v = validator(model);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "instance does not validate against {model}: {errors:#?}\n{instance:#}"
    );
}

/// A store on the test Redis with a unique key prefix.
pub fn store() -> Store {
    Store::connect(&huleedu_it::redis_settings(&huleedu_it::unique("bcs-test"))).unwrap()
}

/// HTTP state over `store` with the built-in definitions.
pub fn api_state(store: Store, token: Option<&str>, resolve_wait: Duration) -> AppState {
    AppState::new(
        store,
        ApiConfig {
            definitions: Arc::new(Definitions::builtin()),
            operator_token: token.map(Secret::new),
            resolve_wait,
            state_ttl: Duration::from_secs(3600),
        },
    )
}

/// The consumer's handler sharing the state's store, metrics and pipeline notifier.
pub fn handler_for(state: &AppState) -> EventHandler {
    EventHandler::new(
        state.store().clone(),
        state.metrics().clone(),
        state.pipelines_seen().clone(),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    )
}

/// A phase outcome envelope.
pub fn outcome(
    batch_id: &str,
    phase: PhaseName,
    status: BatchStatus,
    failed: &[&str],
) -> EventEnvelope<ELSBatchPhaseOutcomeV1> {
    let corr = Uuid::new_v4();
    EventEnvelope::new(
        topics::ELS_BATCH_PHASE_OUTCOME,
        "essay-lifecycle-service",
        corr,
        ELSBatchPhaseOutcomeV1 {
            batch_id: batch_id.into(),
            phase_name: phase,
            phase_status: status,
            processed_essays: vec![
                EssayProcessingInputRefV1::new("ok-1", "0123456789abcdef0123456789abcdef"),
                EssayProcessingInputRefV1::new("ok-2", "fedcba9876543210fedcba9876543210"),
            ],
            failed_essay_ids: failed.iter().map(|s| s.to_string()).collect(),
            correlation_id: corr,
        },
    )
}

/// A pipeline-completed envelope; the pipeline id is its correlation id.
pub fn pipeline_completed(
    batch_id: &str,
    phases: &[PhaseName],
) -> EventEnvelope<BatchPipelineCompletedV1> {
    let corr = Uuid::new_v4();
    EventEnvelope::new(
        topics::BATCH_PIPELINE_COMPLETED,
        source::BATCH_ORCHESTRATOR,
        corr,
        BatchPipelineCompletedV1 {
            event: "batch.pipeline.completed".into(),
            batch_id: batch_id.into(),
            completed_phases: phases.iter().map(|p| p.to_string()).collect(),
            final_status: BatchStatus::CompletedSuccessfully,
            processing_duration_seconds: 3.0,
            successful_essay_count: 2,
            failed_essay_count: 0,
            correlation_id: corr,
            metadata: SystemProcessingMetadata::for_batch(
                batch_id,
                Some("batch.pipeline.completed"),
            ),
            requested_pipeline: None,
            skipped_phases: vec![],
            failure_reason: None,
        },
    )
}

/// A consumed message as the runner hands it to the handler.
/// `event` as the consumer hands it over: on its topic (`event_type`), keyed by `batch`, at
/// `offset` of partition 0.
pub fn delivered<T: serde::Serialize>(
    event: &EventEnvelope<T>,
    batch: &str,
    offset: i64,
) -> Inbound {
    inbound(&event.event_type, batch, event.to_json_bytes(), offset)
}

/// Hands `handler` a phase outcome of `batch` (delivered at `offset`) and expects it handled;
/// returns the outcome and its delivery.
pub async fn apply_outcome(
    handler: &EventHandler,
    batch: &str,
    phase: PhaseName,
    status: BatchStatus,
    failed: &[&str],
    offset: i64,
) -> (EventEnvelope<ELSBatchPhaseOutcomeV1>, Inbound) {
    let e = outcome(batch, phase, status, failed);
    let msg = delivered(&e, batch, offset);
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    (e, msg)
}

pub fn inbound(topic: &str, key: &str, payload: Vec<u8>, offset: i64) -> Inbound {
    Inbound {
        topic: topic.into(),
        partition: 0,
        offset,
        key: Some(key.as_bytes().to_vec()),
        payload,
        timestamp_ms: None,
        headers: vec![],
    }
}

/// One request through the router without a socket: status, headers, JSON body (or the text
/// as a JSON string when it is not JSON).
pub async fn call(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

/// `POST uri` with a JSON (or raw) body and optional bearer token.
pub fn post(uri: &str, body: impl Into<String>, token: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.into())).unwrap()
}

/// `GET uri`.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}
