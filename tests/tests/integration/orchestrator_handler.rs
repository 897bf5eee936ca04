//! The orchestrator's consumer handler against the real test Redis, without a conductor:
//! an unreachable conductor must not hold the consumer (and with it every batch's phase
//! outcomes); the request is accepted and verified when it starts.

use std::sync::Arc;
use std::time::Duration;

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
    // Nothing listens on port 9 (discard): every conductor call fails at once.
    let conductor =
        batch_orchestrator::conductor::Conductor::new("http://127.0.0.1:9", Duration::from_secs(1));
    BosHandler { core, conductor }
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

#[tokio::test]
async fn requests_are_accepted_while_the_conductor_is_unreachable() {
    let h = handler();
    let batch = unique("b");
    let ready = EventEnvelope::new(
        topics::BATCH_ESSAYS_READY,
        "test",
        uuid::Uuid::new_v4(),
        BatchEssaysReady {
            event: "batch.essays.ready".into(),
            batch_id: batch.clone(),
            ready_essays: vec![EssayProcessingInputRefV1::new("e1", "t1")],
            metadata: SystemProcessingMetadata::for_batch(&batch, None),
            course_code: "ENG5".into(),
            course_language: "en".into(),
            student_prompt_ref: None,
            class_type: "GUEST".into(),
        },
    );
    assert_eq!(
        h.handle(&inbound(
            topics::BATCH_ESSAYS_READY,
            &batch,
            ready.to_json_bytes()
        ))
        .await,
        HandlerResult::Done
    );
    let req = EventEnvelope::new(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        "test",
        uuid::Uuid::new_v4(),
        ClientBatchPipelineRequestV1 {
            batch_id: batch.clone(),
            requested_pipeline: "nlp".into(),
            client_correlation_id: uuid::Uuid::new_v4(),
            user_id: "u".into(),
            is_retry: false,
            retry_reason: None,
            prompt_payload: None,
        },
    );
    let started = std::time::Instant::now();
    let r = h
        .handle(&inbound(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            &batch,
            req.to_json_bytes(),
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
        .handle(&inbound(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            &batch,
            req.to_json_bytes(),
        ))
        .await;
    assert_eq!(again, HandlerResult::Done);
    assert_eq!(h.core.load(&batch).await.unwrap().0.queue.len(), 1);
}
