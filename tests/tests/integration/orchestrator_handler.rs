//! The orchestrator's consumer handler against the real test Redis, without a conductor or
//! with a stand-in: an unreachable conductor must not hold the consumer (and with it every
//! batch's phase outcomes); the request is accepted and verified when it starts. A request that
//! finds its batch idle is started in its own commit when the conductor answers at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use batch_orchestrator::core::Core;
use batch_orchestrator::handler::BosHandler;
use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::payloads::{
    BatchEssaysReady, ClientBatchPipelineRequestV1, EssayProcessingInputRefV1,
    SystemProcessingMetadata,
};
use huleedu_contracts::topics;
use huleedu_it::unique;
use huleedu_kafka::{Handler, HandlerResult, Inbound};
use huleedu_store::Store;

fn handler() -> BosHandler {
    // Nothing listens on port 9 (discard): every conductor call fails at once.
    handler_with("http://127.0.0.1:9").0
}

fn handler_with(conductor_url: &str) -> (BosHandler, huleedu_http::metrics::Metrics) {
    let metrics = huleedu_http::metrics::Metrics::new();
    let core = Core {
        store: Store::connect(&huleedu_it::redis_settings(&unique("bos-h"))).unwrap(),
        limits: Default::default(),
        dedup_ttl: Duration::from_secs(60),
        state_ttl: Duration::from_secs(60),
        metrics: batch_orchestrator::metrics::BosMetrics::register(&metrics),
        wake_scheduler: Arc::new(tokio::sync::Notify::new()),
        decoded: Default::default(),
    };
    let conductor =
        batch_orchestrator::conductor::Conductor::new(conductor_url, Duration::from_secs(1));
    (BosHandler { core, conductor }, metrics)
}

fn inbound(topic: &str, key: &str, payload: Vec<u8>) -> Inbound {
    Inbound {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        key: Some(key.as_bytes().to_vec()),
        payload,
        timestamp_ms: None,
        headers: vec![],
    }
}

/// The batch's essays are ready (one essay).
async fn ready(h: &BosHandler, batch: &str) {
    let ready = EventEnvelope::new(
        topics::BATCH_ESSAYS_READY,
        "test",
        uuid::Uuid::new_v4(),
        BatchEssaysReady {
            event: "batch.essays.ready".into(),
            batch_id: batch.to_owned(),
            ready_essays: vec![EssayProcessingInputRefV1::new("e1", "t1")],
            metadata: SystemProcessingMetadata::for_batch(batch, None),
            course_code: "ENG5".into(),
            course_language: "en".into(),
            student_prompt_ref: None,
            class_type: "GUEST".into(),
        },
    );
    let msg = inbound(topics::BATCH_ESSAYS_READY, batch, ready.to_json_bytes());
    assert_eq!(h.handle(&msg).await, HandlerResult::Done);
}

/// A client's request for `pipeline` on `batch`.
fn request_event(batch: &str, pipeline: &str) -> Vec<u8> {
    EventEnvelope::new(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        "test",
        uuid::Uuid::new_v4(),
        ClientBatchPipelineRequestV1 {
            batch_id: batch.to_owned(),
            requested_pipeline: pipeline.into(),
            client_correlation_id: uuid::Uuid::new_v4(),
            user_id: "u".into(),
            is_retry: false,
            retry_reason: None,
            prompt_payload: None,
        },
    )
    .to_json_bytes()
}

/// A request for `pipeline` on `batch`, handled.
async fn request(h: &BosHandler, batch: &str, pipeline: &str) {
    let msg = inbound(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        batch,
        request_event(batch, pipeline),
    );
    assert_eq!(h.handle(&msg).await, HandlerResult::Done);
}

/// A conductor stand-in on a free port: knows `nlp` (spellcheck, nlp); `define` answers 200
/// with both phases, or 503 `conductor_lagging` while `lagging` is set, and records each
/// call's query string.
async fn conductor_stand_in() -> (String, Arc<AtomicBool>, Arc<Mutex<Vec<String>>>) {
    use axum::response::IntoResponse;
    let lagging = Arc::new(AtomicBool::new(false));
    let queries: Arc<Mutex<Vec<String>>> = Arc::default();
    let (lag, seen) = (lagging.clone(), queries.clone());
    let app = axum::Router::new()
        .route(
            "/internal/v1/pipelines/{name}",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"pipeline": "nlp", "phases": ["spellcheck", "nlp"]}))
            }),
        )
        .route(
            "/internal/v1/pipelines/define",
            axum::routing::post(
                move |axum::extract::RawQuery(q): axum::extract::RawQuery,
                      body: axum::Json<serde_json::Value>| {
                    let (lag, seen) = (lag.clone(), seen.clone());
                    async move {
                        seen.lock().push(q.unwrap_or_default());
                        if lag.load(Ordering::SeqCst) {
                            return (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                [("retry-after", "1")],
                                axum::Json(serde_json::json!({"error": "conductor_lagging", "detail": "not yet"})),
                            )
                                .into_response();
                        }
                        axum::Json(serde_json::json!({
                            "batch_id": body["batch_id"],
                            "final_pipeline": ["spellcheck", "nlp"],
                            "pruned_phases": [],
                        }))
                        .into_response()
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, lagging, queries)
}

#[tokio::test]
async fn a_request_that_finds_its_batch_idle_is_started_in_its_own_commit() {
    let (url, _, queries) = conductor_stand_in().await;
    let (h, metrics) = handler_with(&url);
    let batch = unique("b");
    ready(&h, &batch).await;
    request(&h, &batch, "nlp").await;
    let (state, _) = h.core.load(&batch).await.unwrap();
    let active = state
        .active
        .as_ref()
        .expect("started by the request's commit");
    assert_eq!(active.request.requested_pipeline, "nlp");
    assert!(state.queue.is_empty() && !state.needs_start());
    assert_eq!(*queries.lock(), ["wait_ms=0"], "asked once, without a wait");
    assert!(
        metrics
            .render()
            .contains("bos_pipelines_started_with_request_total 1"),
        "{}",
        metrics.render()
    );
    // A second request finds the batch busy: queued, the conductor not asked.
    request(&h, &batch, "nlp").await;
    let (state, _) = h.core.load(&batch).await.unwrap();
    assert_eq!(state.queue.len(), 1);
    assert_eq!(queries.lock().len(), 1);
}

#[tokio::test]
async fn a_request_is_only_queued_while_the_conductor_lags() {
    let (url, lagging, queries) = conductor_stand_in().await;
    lagging.store(true, Ordering::SeqCst);
    let (h, metrics) = handler_with(&url);
    let batch = unique("b");
    ready(&h, &batch).await;
    let started = std::time::Instant::now();
    request(&h, &batch, "nlp").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait: {:?}",
        started.elapsed()
    );
    let (state, _) = h.core.load(&batch).await.unwrap();
    assert!(state.active.is_none());
    assert!(state.needs_start(), "left to the scheduler");
    assert_eq!(*queries.lock(), ["wait_ms=0"]);
    assert!(metrics
        .render()
        .contains("bos_pipelines_started_with_request_total 0"));
}

#[tokio::test]
async fn requests_are_accepted_while_the_conductor_is_unreachable() {
    let h = handler();
    let batch = unique("b");
    ready(&h, &batch).await;
    let req = request_event(&batch, "nlp");
    let started = std::time::Instant::now();
    let r = h
        .handle(&inbound(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            &batch,
            req.clone(),
        ))
        .await;
    assert_eq!(
        r,
        HandlerResult::Done,
        "not a transient failure that would hold the partition"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no long wait: {:?}",
        started.elapsed()
    );
    let (state, _) = h.core.load(&batch).await.unwrap();
    assert_eq!(
        state.queue.len(),
        1,
        "queued, to be verified and resolved at start"
    );
    assert!(state.needs_start());
    // A redelivery changes nothing.
    let again = h
        .handle(&inbound(topics::CLIENT_BATCH_PIPELINE_REQUEST, &batch, req))
        .await;
    assert_eq!(again, HandlerResult::Done);
    assert_eq!(h.core.load(&batch).await.unwrap().0.queue.len(), 1);
}
