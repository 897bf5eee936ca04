//! The consumer's handler against the real test Redis (no broker): what each event commits.

use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use batch_conductor::api::router;
use batch_conductor::state::BatchPhases;
use huleedu_contracts::BatchStatus::CompletedWithFailures;
use huleedu_contracts::{topics, BatchStatus, PhaseName, Timestamp};
use huleedu_it::unique;
use huleedu_kafka::{FailureKind, Handler, HandlerResult};
use huleedu_store::{RedisSettings, Store};
use serde_json::json;

fn permanent(result: HandlerResult) -> (FailureKind, String) {
    match result {
        HandlerResult::Permanent { kind, message } => (kind, message),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

async fn phases(store: &Store, batch: &str) -> BatchPhases {
    BatchPhases::from_fields(&store.load(batch).await.unwrap().fields)
}

#[tokio::test]
async fn a_partial_failure_records_completed_and_three_dlq_records_once() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let handler = handler_for(&state);
    let batch = unique("b");
    let (e, msg) = apply_outcome(
        &handler,
        &batch,
        PhaseName::Spellcheck,
        CompletedWithFailures,
        &["f1", "f2", "f3"],
        10,
    )
    .await;
    let p = phases(state.store(), &batch).await;
    let r = &p.phases[&PhaseName::Spellcheck];
    assert_eq!(r.status.as_str(), "completed");
    assert_eq!(r.failed_count, Some(3));
    assert_eq!(state.store().outbox_len().await.unwrap(), 3);
    assert!(state
        .store()
        .is_applied(&batch, &e.event_id.to_string())
        .await
        .unwrap());
    // Redelivered: nothing changes, no more DLQ records.
    let version = state.store().load(&batch).await.unwrap().version;
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    assert_eq!(state.store().outbox_len().await.unwrap(), 3);
    assert_eq!(state.store().load(&batch).await.unwrap().version, version);
}

#[tokio::test]
async fn an_older_outcome_changes_nothing_but_its_dlq_records_are_emitted() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let handler = handler_for(&state);
    let batch = unique("b");
    let newer = outcome(&batch, PhaseName::Nlp, BatchStatus::FailedCritically, &[]);
    let mut older = outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::CompletedWithFailures,
        &["a", "b"],
    );
    older.event_timestamp = Timestamp::from(newer.event_timestamp.0 - chrono_minutes(5));
    let m1 = delivered(&newer, &batch, 1);
    let m2 = delivered(&older, &batch, 2);
    assert_eq!(handler.handle(&m1).await, HandlerResult::Done);
    assert_eq!(handler.handle(&m2).await, HandlerResult::Done);
    let p = phases(state.store(), &batch).await;
    assert_eq!(p.phases[&PhaseName::Nlp].event_id, Some(newer.event_id));
    assert_eq!(p.phases[&PhaseName::Nlp].status.as_str(), "failed");
    assert_eq!(state.store().outbox_len().await.unwrap(), 2);
    assert_eq!(handler.handle(&m2).await, HandlerResult::Done);
    assert_eq!(state.store().outbox_len().await.unwrap(), 2);
}

fn chrono_minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

#[tokio::test]
async fn a_late_pipeline_completed_cannot_undo_a_newer_operator_mark() {
    let state = api_state(store(), Some("t"), Duration::from_secs(1));
    let app = router(state.clone());
    let handler = handler_for(&state);
    let batch = unique("b");
    // The pipeline completed an hour ago, but its event is processed after the operator
    // invalidated spellcheck.
    let mut done = pipeline_completed(&batch, &[PhaseName::Spellcheck, PhaseName::Nlp]);
    done.event_timestamp = Timestamp::from(Timestamp::now().0 - chrono_minutes(60));
    let (status, _, _) = call(
        &app,
        post(
            "/internal/v1/phases/complete",
            json!({"batch_id": batch, "phase_name": "spellcheck", "success": false}).to_string(),
            Some("t"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let msg = delivered(&done, &batch, 1);
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    let p = phases(state.store(), &batch).await;
    assert_eq!(p.phases[&PhaseName::Spellcheck].source.as_str(), "operator");
    assert_eq!(p.phases[&PhaseName::Spellcheck].status.as_str(), "failed");
    assert_eq!(
        p.phases[&PhaseName::Nlp].source.as_str(),
        "pipeline_completed"
    );
    assert!(p.has_pipeline(&done.correlation_id.to_string()));
}

#[tokio::test]
async fn undecodable_and_invalid_events_are_permanent_naming_the_field() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let handler = handler_for(&state);
    let batch = unique("b");
    let topic = topics::ELS_BATCH_PHASE_OUTCOME;

    let (kind, _) = permanent(
        handler
            .handle(&inbound(topic, &batch, b"{not json".to_vec(), 1))
            .await,
    );
    assert_eq!(kind, FailureKind::Decode);

    let mut v = serde_json::to_value(outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::CompletedSuccessfully,
        &[],
    ))
    .unwrap();
    v["data"].as_object_mut().unwrap().remove("phase_name");
    let (kind, message) = permanent(
        handler
            .handle(&inbound(topic, &batch, v.to_string().into_bytes(), 2))
            .await,
    );
    assert_eq!(kind, FailureKind::Validation);
    assert!(message.starts_with("data.phase_name"), "{message}");

    v["data"]["phase_name"] = json!("ocr");
    let (kind, message) = permanent(
        handler
            .handle(&inbound(topic, &batch, v.to_string().into_bytes(), 3))
            .await,
    );
    assert_eq!(kind, FailureKind::Validation);
    assert!(message.starts_with("data.phase_name"), "{message}");

    v["data"]["phase_name"] = json!("nlp");
    v["data"]["phase_status"] = json!("cancelled");
    let (kind, message) = permanent(
        handler
            .handle(&inbound(topic, &batch, v.to_string().into_bytes(), 4))
            .await,
    );
    assert_eq!(kind, FailureKind::Validation);
    assert!(message.starts_with("data.phase_status"), "{message}");

    let mut done =
        serde_json::to_value(pipeline_completed(&batch, &[PhaseName::Spellcheck])).unwrap();
    done["data"]["completed_phases"] = json!(["spellcheck", "ocr"]);
    let (kind, message) = permanent(
        handler
            .handle(&inbound(
                topics::BATCH_PIPELINE_COMPLETED,
                &batch,
                done.to_string().into_bytes(),
                5,
            ))
            .await,
    );
    assert_eq!(kind, FailureKind::Validation);
    assert!(message.starts_with("data.completed_phases[1]"), "{message}");

    let (kind, _) = permanent(
        handler
            .handle(&inbound("some.other.topic", &batch, b"{}".to_vec(), 6))
            .await,
    );
    assert_eq!(kind, FailureKind::Handler);

    // Nothing was recorded for any of them.
    assert!(state.store().load(&batch).await.unwrap().fields.is_empty());
    assert_eq!(state.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn redis_failures_are_transient() {
    let dead = Store::connect(&RedisSettings::local(
        "redis://127.0.0.1:1",
        &unique("dead"),
    ))
    .unwrap();
    let handler = handler_for(&api_state(dead, None, Duration::from_secs(1)));
    let e = outcome(
        "b1",
        PhaseName::Nlp,
        BatchStatus::CompletedSuccessfully,
        &[],
    );
    let result = handler
        .handle(&inbound(
            topics::ELS_BATCH_PHASE_OUTCOME,
            "b1",
            e.to_json_bytes(),
            1,
        ))
        .await;
    assert!(matches!(result, HandlerResult::Transient(_)), "{result:?}");
}
