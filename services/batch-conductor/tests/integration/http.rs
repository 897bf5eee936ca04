//! The HTTP API through `oneshot` (no socket), over the real test Redis (no broker needed).

use std::time::{Duration, Instant};

use crate::common::*;
use axum::http::StatusCode;
use batch_conductor::api::router;
use huleedu_contracts::BatchStatus::{CompletedWithFailures, FailedCritically};
use huleedu_contracts::{topics, PhaseName};
use huleedu_it::{unique, wait_until};
use huleedu_kafka::{Handler, HandlerResult};
use huleedu_store::{RedisSettings, Store};
use serde_json::{json, Value};

const TOKEN: &str = "op-s3cret";
const DEFINE: &str = "/internal/v1/pipelines/define";
const MARK: &str = "/internal/v1/phases/complete";

fn define_body(batch: &str, pipeline: &str, after: Option<&str>) -> String {
    let mut b = json!({
        "batch_id": batch,
        "requested_pipeline": pipeline,
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(a) = after {
        b["after_pipeline_id"] = json!(a);
    }
    b.to_string()
}

fn assert_define_ok(body: &Value) {
    assert_valid("BCSPipelineDefinitionResponseV1", body);
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_pipeline_name_is_checked_from_the_definitions_alone() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let (status, _, body) = call(&app, get("/internal/v1/pipelines/ai_feedback")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pipeline"], "ai_feedback");
    assert_eq!(
        strings(&body["phases"]),
        ["spellcheck", "nlp", "ai_feedback"]
    );
    // Unknown: the same answer `define` gives, naming the known pipelines.
    let (status, _, body) = call(&app, get("/internal/v1/pipelines/no_such%20thing")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "Pipeline resolution failed");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("no_such thing") && detail.contains("comprehensive"),
        "{detail}"
    );
}

#[tokio::test]
async fn define_expands_the_pipeline_in_dependency_order() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let batch = unique("b");
    let (status, _, body) = call(
        &app,
        post(DEFINE, define_body(&batch, "comprehensive", None), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_define_ok(&body);
    assert_eq!(body["batch_id"], batch);
    assert_eq!(
        strings(&body["final_pipeline"]),
        ["spellcheck", "nlp", "cj_assessment", "ai_feedback"]
    );
    assert_eq!(strings(&body["pruned_phases"]), Vec::<String>::new());
    assert!(body["analysis_summary"]
        .as_str()
        .unwrap()
        .contains("comprehensive"));
}

#[tokio::test]
async fn the_platform_define_examples_are_accepted_and_answers_match_the_schema() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let dir = contracts_dir().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("http.bcs.pipelines.define.request--") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let request: Value = serde_json::from_str(&text).unwrap();
        let (status, _, body) = call(&app, post(DEFINE, text, None)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_define_ok(&body);
        assert_eq!(body["batch_id"], request["batch_id"], "{name}");
        let expected = batch_conductor::pipelines::Definitions::builtin()
            .pipeline(request["requested_pipeline"].as_str().unwrap())
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>();
        assert_eq!(strings(&body["final_pipeline"]), expected, "{name}");
    }
    assert!(
        seen >= 2,
        "expected the platform's define request examples, found {seen}"
    );
}

#[tokio::test]
async fn completed_phases_are_pruned_and_everything_done_gives_an_empty_pipeline() {
    let state = api_state(store(), Some(TOKEN), Duration::from_secs(1));
    let app = router(state.clone());
    let handler = handler_for(&state);
    let batch = unique("b");
    apply_outcome(
        &handler,
        &batch,
        PhaseName::Spellcheck,
        CompletedWithFailures,
        &["x"],
        1,
    )
    .await;

    let (status, _, body) = call(
        &app,
        post(DEFINE, define_body(&batch, "ai_feedback", None), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_define_ok(&body);
    assert_eq!(strings(&body["final_pipeline"]), ["nlp", "ai_feedback"]);
    assert_eq!(strings(&body["pruned_phases"]), ["spellcheck"]);

    let (status, _, _) = call(
        &app,
        post(
            MARK,
            json!({"batch_id": batch, "phase_name": "nlp"}).to_string(),
            Some(TOKEN),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(&app, post(DEFINE, define_body(&batch, "nlp", None), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_define_ok(&body);
    assert_eq!(strings(&body["final_pipeline"]), Vec::<String>::new());
    assert_eq!(strings(&body["pruned_phases"]), ["spellcheck", "nlp"]);

    let metrics = state.registry().render();
    assert!(
        metrics.contains(r#"bcs_phases_pruned_total{phase="spellcheck"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failed_phase_is_not_pruned() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let app = router(state.clone());
    let batch = unique("b");
    apply_outcome(
        &handler_for(&state),
        &batch,
        PhaseName::Spellcheck,
        FailedCritically,
        &[],
        1,
    )
    .await;
    let (_, _, body) = call(&app, post(DEFINE, define_body(&batch, "nlp", None), None)).await;
    assert_eq!(strings(&body["final_pipeline"]), ["spellcheck", "nlp"]);
}

#[tokio::test]
async fn define_is_a_read() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let app = router(state.clone());
    let batch = unique("b");
    let (status, _, _) = call(&app, post(DEFINE, define_body(&batch, "nlp", None), None)).await;
    assert_eq!(status, StatusCode::OK);
    let stored = state.store().load(&batch).await.unwrap();
    assert_eq!(stored.version, 0);
    assert!(stored.fields.is_empty());
    assert_eq!(state.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn an_unknown_pipeline_is_a_400_resolution_failure() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let (status, _, body) = call(
        &app,
        post(DEFINE, define_body("b1", "everything", None), None),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "Pipeline resolution failed");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("everything") && detail.contains("comprehensive"),
        "{detail}"
    );
}

#[tokio::test]
async fn malformed_define_bodies_are_422_naming_the_field() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let cases: [(&str, &str); 6] = [
        (
            r#"{"requested_pipeline":"nlp","correlation_id":"c"}"#,
            "batch_id",
        ),
        (
            r#"{"batch_id":"b","correlation_id":"c"}"#,
            "requested_pipeline",
        ),
        (
            r#"{"batch_id":"b","requested_pipeline":7,"correlation_id":"c"}"#,
            "requested_pipeline",
        ),
        (
            r#"{"batch_id":"  ","requested_pipeline":"nlp","correlation_id":"c"}"#,
            "batch_id",
        ),
        (
            r#"{"batch_id":"b","requested_pipeline":"nlp","correlation_id":"c","batch_metadata":[1]}"#,
            "batch_metadata",
        ),
        ("not json", "JSON"),
    ];
    for (body, field) in cases {
        let (status, _, answer) = call(&app, post(DEFINE, body, None)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid_body");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{body}: {detail}");
    }
}

#[tokio::test]
async fn define_waits_for_after_pipeline_id_and_wakes_when_it_is_processed() {
    let state = api_state(store(), None, Duration::from_secs(20));
    let app = router(state.clone());
    let handler = handler_for(&state);
    let batch = unique("b");
    let done = pipeline_completed(&batch, &[PhaseName::Spellcheck, PhaseName::CjAssessment]);
    // BOS may send the id in any case; it is a UUID.
    let after = done.correlation_id.to_string().to_uppercase();
    let request = tokio::spawn({
        let app = app.clone();
        let body = define_body(&batch, "nlp", Some(&after));
        async move {
            let started = Instant::now();
            let r = call(&app, post(DEFINE, body, None)).await;
            (r, started.elapsed())
        }
    });
    // The request is waiting (the gauge says so) before the completion is processed.
    wait_until(
        Duration::from_secs(10),
        "the define request to wait",
        || {
            let waiting = state.metrics().resolve_waiting.get();
            async move { waiting == 1 }
        },
    )
    .await;
    assert!(!request.is_finished());
    let started = Instant::now();
    let msg = delivered(&done, &batch, 7);
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    let ((status, _, body), _) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("the waiting request answers once the pipeline is processed")
        .unwrap();
    // Woken by the in-process notification, long before the 20 s bound.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_define_ok(&body);
    assert_eq!(strings(&body["final_pipeline"]), ["nlp"]);
    assert_eq!(strings(&body["pruned_phases"]), ["spellcheck"]);
    assert_eq!(state.metrics().resolve_waiting.get(), 0);

    // Already processed: answered at once.
    let (status, _, body) = call(
        &app,
        post(
            DEFINE,
            define_body(&batch, "cj_assessment", Some(&after)),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(strings(&body["final_pipeline"]), Vec::<String>::new());
}

/// A define request for `pipeline` after pipeline `after`, started in the background; returns
/// once the conductor counts it as waiting.
async fn waiting_define(
    state: &batch_conductor::api::AppState,
    app: &axum::Router,
    batch: &str,
    pipeline: &str,
    after: &uuid::Uuid,
) -> tokio::task::JoinHandle<(StatusCode, axum::http::HeaderMap, Value)> {
    let request = tokio::spawn({
        let app = app.clone();
        let body = define_body(batch, pipeline, Some(&after.to_string()));
        async move { call(&app, post(DEFINE, body, None)).await }
    });
    wait_until(
        Duration::from_secs(10),
        "the define request to wait",
        || {
            let waiting = state.metrics().resolve_waiting.get();
            async move { waiting == 1 }
        },
    )
    .await;
    request
}

#[tokio::test]
async fn a_waiting_define_is_answered_from_the_committed_state_without_reading_it_again() {
    let state = api_state(store(), None, Duration::from_secs(3));
    let app = router(state.clone());
    // The completion is committed under another key prefix: a read of this state's Redis
    // never shows it, only the state the commit announces does.
    let elsewhere = api_state(store(), None, Duration::from_secs(1));
    let handler = handler_for(&elsewhere);
    let batch = unique("b");
    let done = pipeline_completed(&batch, &[PhaseName::Spellcheck]);
    let request = waiting_define(&state, &app, &batch, "nlp", &done.correlation_id).await;
    let msg = delivered(&done, &batch, 7);
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    let committed = elsewhere
        .store()
        .cached(&batch)
        .expect("a store holds the state it committed");
    state.pipelines_seen().announce(&batch, Some(committed));
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(strings(&body["final_pipeline"]), ["nlp"]);
    assert_eq!(strings(&body["pruned_phases"]), ["spellcheck"]);
}

#[tokio::test]
async fn define_sees_a_pipeline_recorded_by_another_replica() {
    // No in-process notification: the completion is committed by a handler with its own
    // notifier (another replica); the waiting request finds it by polling Redis.
    let store = store();
    let state = api_state(store.clone(), None, Duration::from_secs(20));
    let other_replica = handler_for(&api_state(store, None, Duration::from_secs(1)));
    let app = router(state.clone());
    let batch = unique("b");
    let done = pipeline_completed(&batch, &[PhaseName::Spellcheck]);
    let request = waiting_define(&state, &app, &batch, "spellcheck", &done.correlation_id).await;
    let msg = delivered(&done, &batch, 1);
    assert_eq!(other_replica.handle(&msg).await, HandlerResult::Done);
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(strings(&body["pruned_phases"]), ["spellcheck"]);
}

#[tokio::test]
async fn define_answers_503_conductor_lagging_after_the_bound() {
    let bound = Duration::from_millis(300);
    let state = api_state(store(), None, bound);
    let app = router(state.clone());
    let started = Instant::now();
    let (status, headers, body) = call(
        &app,
        post(
            DEFINE,
            define_body(&unique("b"), "nlp", Some(&uuid::Uuid::new_v4().to_string())),
            None,
        ),
    )
    .await;
    assert!(
        started.elapsed() >= bound,
        "answered before the bound: {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"], "conductor_lagging");
    assert!(
        body["detail"].as_str().unwrap().contains("300 ms"),
        "{body}"
    );
    assert!(state
        .registry()
        .render()
        .contains("bcs_resolve_lagging_total 1"));
}

#[tokio::test]
async fn a_caller_may_shorten_the_causal_wait_but_not_lengthen_it() {
    // A long bound: only the caller's wait_ms can end these early.
    let state = api_state(store(), None, Duration::from_secs(30));
    let app = router(state.clone());
    let unseen = uuid::Uuid::new_v4().to_string();
    let body = || define_body(&unique("b"), "nlp", Some(&unseen));
    let started = Instant::now();
    let (status, headers, answer) =
        call(&app, post(&format!("{DEFINE}?wait_ms=0"), body(), None)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(answer["error"], "conductor_lagging");
    assert!(
        answer["detail"].as_str().unwrap().contains("after 0 ms"),
        "{answer}"
    );
    // A shortened wait is the caller's choice, not the conductor lagging: not counted.
    assert!(state
        .registry()
        .render()
        .contains("bcs_resolve_lagging_total 0"));
    // Nothing to wait for: answered as usual.
    let (status, _, answer) = call(
        &app,
        post(
            &format!("{DEFINE}?wait_ms=0"),
            define_body(&unique("b"), "nlp", None),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Not a number: 422 naming the parameter.
    let (status, _, answer) =
        call(&app, post(&format!("{DEFINE}?wait_ms=soon"), body(), None)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "invalid_query");
    assert!(
        answer["detail"].as_str().unwrap().contains("wait_ms"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_causal_wait_ends_at_once_when_the_consumer_stops() {
    // A long bound: only the consumer's stop can end this wait early.
    let state = api_state(store(), None, Duration::from_secs(30));
    let app = router(state.clone());
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        call(
            &app,
            post(
                DEFINE,
                define_body(&unique("b"), "nlp", Some(&uuid::Uuid::new_v4().to_string())),
                None,
            ),
        )
        .await
    });
    wait_until(Duration::from_secs(10), "the request to wait", || {
        let text = state.registry().render();
        async move { text.contains("bcs_resolve_waiting 1") }
    })
    .await;
    state.consumer_stopped();
    let (status, headers, body) = waiting.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"], "conductor_lagging");
}

#[tokio::test]
async fn the_operator_endpoint_is_disabled_without_a_token() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let app = router(state.clone());
    let (status, _, body) = call(
        &app,
        post(
            MARK,
            json!({"batch_id": "b1", "phase_name": "spellcheck"}).to_string(),
            Some("anything"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "operator_endpoint_disabled");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("operator endpoint disabled"));
    assert!(state.store().load("b1").await.unwrap().fields.is_empty());
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_records_nothing() {
    let state = api_state(store(), Some(TOKEN), Duration::from_secs(1));
    let app = router(state.clone());
    let body = json!({"batch_id": "b1", "phase_name": "spellcheck"}).to_string();
    for token in [None, Some("wrong"), Some("op-s3cre"), Some("op-s3cretx")] {
        let (status, _, answer) = call(&app, post(MARK, body.clone(), token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(answer["error"], "unauthorized");
    }
    let stored = state.store().load("b1").await.unwrap();
    assert_eq!(stored.version, 0);
    assert!(stored.fields.is_empty());
}

#[tokio::test]
async fn operator_marks_record_completed_or_failed_with_who_and_why() {
    let state = api_state(store(), Some(TOKEN), Duration::from_secs(1));
    let app = router(state.clone());
    let batch = unique("b");
    let (status, _, body) = call(
        &app,
        post(
            MARK,
            json!({"batch_id": batch, "phase_name": "spellcheck", "operator": "alice", "reason": "done by hand"}).to_string(),
            Some(TOKEN),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "recorded");
    assert_eq!(body["batch_id"], batch);
    assert_eq!(body["phase_name"], "spellcheck");
    assert_eq!(body["record"]["status"], "completed");
    assert_eq!(body["record"]["source"], "operator");
    assert_eq!(body["record"]["operator"], "alice");
    assert_eq!(body["record"]["reason"], "done by hand");
    let (_, _, resolved) = call(&app, post(DEFINE, define_body(&batch, "nlp", None), None)).await;
    assert_eq!(strings(&resolved["final_pipeline"]), ["nlp"]);

    // success: false invalidates: the phase runs again.
    let (status, _, body) = call(
        &app,
        post(
            MARK,
            json!({"batch_id": batch, "phase_name": "spellcheck", "success": false, "reason": "bad dictionary"}).to_string(),
            Some(TOKEN),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["record"]["status"], "failed");
    assert_eq!(body["record"]["reason"], "bad dictionary");
    assert!(body["record"]["operator"].is_null());
    let (_, _, resolved) = call(&app, post(DEFINE, define_body(&batch, "nlp", None), None)).await;
    assert_eq!(strings(&resolved["final_pipeline"]), ["spellcheck", "nlp"]);

    let metrics = state.registry().render();
    assert!(
        metrics.contains(r#"bcs_phases_recorded_total{source="operator",status="completed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bcs_phases_recorded_total{source="operator",status="failed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_operator_bodies_are_400_or_422() {
    let state = api_state(store(), Some(TOKEN), Duration::from_secs(1));
    let app = router(state.clone());
    let missing = "Missing required fields: batch_id and phase_name";
    let cases: [(&str, StatusCode, &str); 9] = [
        (
            r#"{"phase_name":"spellcheck"}"#,
            StatusCode::BAD_REQUEST,
            missing,
        ),
        (r#"{"batch_id":"b1"}"#, StatusCode::BAD_REQUEST, missing),
        (
            r#"{"batch_id":"","phase_name":"spellcheck"}"#,
            StatusCode::BAD_REQUEST,
            missing,
        ),
        (
            r#"{"batch_id":"b1","phase_name":null}"#,
            StatusCode::BAD_REQUEST,
            missing,
        ),
        ("{not json", StatusCode::BAD_REQUEST, "malformed_json"),
        (
            r#"{"batch_id":"b1","phase_name":"ocr"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_phase",
        ),
        // Accepted on the wire, but no definition has it.
        (
            r#"{"batch_id":"b1","phase_name":"student_matching"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_phase",
        ),
        (
            r#"{"batch_id":"b1","phase_name":"nlp","success":"yes"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            r#"{"batch_id":5,"phase_name":"nlp"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (body, want_status, want_error) in cases {
        let (status, _, answer) = call(&app, post(MARK, body, Some(TOKEN))).await;
        assert_eq!(status, want_status, "{body}: {answer}");
        assert_eq!(answer["error"], want_error, "{body}: {answer}");
    }
    assert!(state.store().load("b1").await.unwrap().fields.is_empty());
}

#[tokio::test]
async fn the_phases_endpoint_shows_records_with_provenance() {
    let state = api_state(store(), Some(TOKEN), Duration::from_secs(1));
    let app = router(state.clone());
    let handler = handler_for(&state);
    let batch = unique("b");

    let (status, _, body) = call(&app, get(&format!("/internal/v1/batches/{batch}/phases"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"batch_id": batch, "phases": {}, "processed_pipelines": []})
    );

    let (e, _) = apply_outcome(
        &handler,
        &batch,
        PhaseName::Spellcheck,
        CompletedWithFailures,
        &["x1", "x2"],
        3,
    )
    .await;
    let done = pipeline_completed(&batch, &[PhaseName::Spellcheck, PhaseName::CjAssessment]);
    let msg = delivered(&done, &batch, 4);
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    let (status, _, _) = call(
        &app,
        post(
            MARK,
            json!({"batch_id": batch, "phase_name": "nlp", "operator": "bob"}).to_string(),
            Some(TOKEN),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = call(&app, get(&format!("/internal/v1/batches/{batch}/phases"))).await;
    assert_eq!(status, StatusCode::OK);
    let spell = &body["phases"]["spellcheck"];
    assert_eq!(spell["status"], "completed");
    assert_eq!(spell["source"], "event");
    assert_eq!(spell["event_id"], e.event_id.to_string());
    assert_eq!(
        spell["pipeline_correlation_id"],
        e.correlation_id.to_string()
    );
    assert_eq!(spell["processed_count"], 2);
    assert_eq!(spell["failed_count"], 2);
    assert_eq!(spell["at"], e.event_timestamp.to_string());
    let cj = &body["phases"]["cj_assessment"];
    assert_eq!(cj["source"], "pipeline_completed");
    assert_eq!(cj["pipeline_id"], done.correlation_id.to_string());
    assert_eq!(body["phases"]["nlp"]["source"], "operator");
    assert_eq!(body["phases"]["nlp"]["operator"], "bob");
    let pipelines = body["processed_pipelines"].as_array().unwrap();
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0]["pipeline_id"], done.correlation_id.to_string());
    assert_eq!(pipelines[0]["event_id"], done.event_id.to_string());
    assert_eq!(pipelines[0]["final_status"], "completed_successfully");
    assert_eq!(
        strings(&pipelines[0]["completed_phases"]),
        ["spellcheck", "cj_assessment"]
    );
}

#[tokio::test]
async fn metrics_list_every_conductor_metric() {
    let state = api_state(store(), None, Duration::from_secs(1));
    let app = router(state.clone());
    let handler = handler_for(&state);
    let batch = unique("b");
    // The same delivery twice: applied once, then a duplicate.
    let msg = delivered(
        &outcome(&batch, PhaseName::Nlp, CompletedWithFailures, &["x"]),
        &batch,
        1,
    );
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    assert_eq!(handler.handle(&msg).await, HandlerResult::Done);
    call(&app, post(DEFINE, define_body(&batch, "nlp", None), None)).await;

    let resp = call(&app, get("/metrics")).await;
    assert_eq!(resp.0, StatusCode::OK);
    assert!(resp.1["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = resp.2.as_str().unwrap().to_owned();
    // Counters are named without `_total` in their HELP/TYPE lines.
    for name in [
        "bcs_events_consumed",
        "bcs_phases_recorded",
        "bcs_phases_pruned",
        "bcs_failed_essay_dlq_records",
        "bcs_resolve_duration_seconds",
        "bcs_resolve_lagging",
        "bcs_resolve_waiting",
        "bcs_outbox_published",
        "bcs_outbox_errors",
        "bcs_outbox_handed_off",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let topic = topics::ELS_BATCH_PHASE_OUTCOME;
    for line in [
        format!(r#"bcs_events_consumed_total{{topic="{topic}",outcome="applied"}} 1"#),
        format!(r#"bcs_events_consumed_total{{topic="{topic}",outcome="duplicate"}} 1"#),
        r#"bcs_phases_recorded_total{source="event",status="completed"} 1"#.to_owned(),
        "bcs_failed_essay_dlq_records_total 1".to_owned(),
        "bcs_resolve_duration_seconds_count 1".to_owned(),
    ] {
        assert!(
            text.contains(&line),
            "{line} missing from /metrics:\n{text}"
        );
    }
    assert!(!text.contains(&batch), "no batch-id labels");
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let (status, _, doc) = call(&app, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/internal/v1/pipelines/define", "post"),
        ("/internal/v1/pipelines/{name}", "get"),
        ("/internal/v1/phases/complete", "post"),
        ("/internal/v1/batches/{batch_id}/phases", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["operator_token"].is_object());
    assert!(doc["components"]["schemas"]["PhaseRecord"].is_object());
    // The define bodies are described by the contract types themselves.
    let define = &paths["/internal/v1/pipelines/define"]["post"];
    assert_eq!(
        define["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/BCSPipelineDefinitionRequestV1"
    );
    assert_eq!(
        define["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/BCSPipelineDefinitionResponseV1"
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["BCSPipelineDefinitionRequestV1"]["required"],
        json!(["batch_id", "requested_pipeline", "correlation_id"])
    );
    assert_eq!(
        schemas["BCSPipelineDefinitionResponseV1"]["required"],
        json!(["batch_id", "final_pipeline", "pruned_phases"])
    );
}

#[tokio::test]
async fn probes_and_unknown_routes() {
    let app = router(api_state(store(), None, Duration::from_secs(1)));
    let (status, _, body) = call(&app, get("/healthz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _, body) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["redis"], "ok");
    let (status, _, body) = call(&app, get("/nope")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Redis unreachable: not ready, and API calls answer 503 without internals.
    let dead = Store::connect(&RedisSettings::local(
        "redis://127.0.0.1:1",
        &unique("dead"),
    ))
    .unwrap();
    let app = router(api_state(dead, None, Duration::from_secs(1)));
    let (status, _, body) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    let (status, headers, body) =
        call(&app, post(DEFINE, define_body("b1", "nlp", None), None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "store_unavailable");
    assert_eq!(headers["retry-after"], "1");
    assert!(!body.to_string().contains("127.0.0.1"));
}
