//! The HTTP API through `router(state)` and `oneshot`: no socket, no broker.

use std::sync::Arc;

use crate::common::{assert_counted_once, assert_valid_event, is_storage_id};
use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use els_simulator::metrics::SimMetrics;
use els_simulator::publish::MemoryPublisher;
use els_simulator::{router, AppState, Counts, OverrideStore};
use huleedu_contracts::payloads::BatchEssaysReady;
use huleedu_contracts::{decode_envelope, events, source, topics, BatchStatus, PhaseName};
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

struct Fixture {
    state: AppState,
    sent: MemoryPublisher,
}

fn fixture_with(readiness: Readiness) -> Fixture {
    let sent = MemoryPublisher::new();
    let metrics = Metrics::new();
    let counters = SimMetrics::register(&metrics);
    counters.command_received(PhaseName::Spellcheck);
    counters.outcome_published(PhaseName::Spellcheck, BatchStatus::CompletedSuccessfully);
    let state = AppState {
        counts: Counts::new(),
        overrides: OverrideStore::new(),
        publisher: Arc::new(sent.clone()),
        metrics,
        readiness,
        max_event_bytes: huleedu_contracts::topics::DEFAULT_MAX_EVENT_BYTES,
    };
    Fixture { state, sent }
}

fn fixture() -> Fixture {
    fixture_with(Readiness::new())
}

impl Fixture {
    fn app(&self) -> Router {
        router(self.state.clone())
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        send(self.app(), req).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.post_raw(uri, body.to_string()).await
    }

    async fn post_raw(&self, uri: &str, body: String) -> (StatusCode, Value) {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        send(self.app(), req).await
    }
}

async fn send(app: Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[tokio::test]
async fn counts_are_served_per_batch_and_in_total() {
    let f = fixture();
    let (status, body) = f.get("/v1/counts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"batches": {}}));

    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    f.state.counts.record("b1", PhaseName::Spellcheck, a);
    f.state.counts.record("b1", PhaseName::Spellcheck, a);
    f.state.counts.record("b1", PhaseName::CjAssessment, b);
    f.state.counts.record("b2", PhaseName::Nlp, b);

    let (status, body) = f.get("/v1/counts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"batches": {
            "b1": {
                "spellcheck": {"dispatched": 1, "deliveries": 2},
                "cj_assessment": {"dispatched": 1, "deliveries": 1}
            },
            "b2": {"nlp": {"dispatched": 1, "deliveries": 1}}
        }})
    );
    let (status, body) = f.get("/v1/counts/b1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"batch_id": "b1", "phases": {
            "spellcheck": {"dispatched": 1, "deliveries": 2},
            "cj_assessment": {"dispatched": 1, "deliveries": 1}
        }})
    );
    let (status, body) = f.get("/v1/counts/nobody").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"batch_id": "nobody", "phases": {}}));
}

#[tokio::test]
async fn registering_a_batch_publishes_a_valid_batch_essays_ready() {
    let f = fixture();
    let (status, body) = f
        .post(
            "/v1/batches",
            json!({"batch_id": "demo-1", "essay_count": 3, "fail": {"spellcheck": ["demo-1-e02"]},
                   "silent_phases": ["ai_feedback"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["batch_id"], "demo-1");
    let essays = body["essays"].as_array().unwrap();
    let ids: Vec<&str> = essays
        .iter()
        .map(|e| e["essay_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo-1-e01", "demo-1-e02", "demo-1-e03"]);
    for e in essays {
        assert!(is_storage_id(e["text_storage_id"].as_str().unwrap()), "{e}");
    }

    let sent = f.sent.sent();
    assert_eq!(sent.len(), 1);
    let msg = &sent[0];
    assert_eq!(msg.topic, topics::BATCH_ESSAYS_READY);
    assert_eq!(msg.key, "demo-1");
    assert_valid_event("BatchEssaysReady", &msg.payload);
    let env = decode_envelope::<BatchEssaysReady>(&msg.payload).unwrap();
    assert_eq!(env.event_id.to_string(), body["event_id"].as_str().unwrap());
    assert_eq!(env.event_type, topics::BATCH_ESSAYS_READY);
    assert_eq!(env.source_service, source::ELS_SIMULATOR);
    let data = env.data;
    assert_eq!(data.event, events::BATCH_ESSAYS_READY);
    assert_eq!(data.batch_id, "demo-1");
    assert_eq!(data.course_code, "ENG5");
    assert_eq!(data.course_language, "en");
    assert_eq!(data.class_type, "GUEST");
    assert!(data.student_prompt_ref.is_none());
    assert_eq!(data.metadata.entity_id, "demo-1");
    assert_eq!(data.metadata.entity_type, "batch");
    assert_eq!(
        data.metadata.event.as_deref(),
        Some(events::BATCH_ESSAYS_READY)
    );
    for (ready, answered) in data.ready_essays.iter().zip(essays) {
        assert_eq!(ready.essay_id, answered["essay_id"].as_str().unwrap());
        assert_eq!(
            ready.text_storage_id,
            answered["text_storage_id"].as_str().unwrap()
        );
    }

    let o = f.state.overrides.get("demo-1").expect("overrides stored");
    assert!(o.fail[&PhaseName::Spellcheck].contains("demo-1-e02"));
    assert!(o.silent_phases.contains(&PhaseName::AiFeedback));
}

#[tokio::test]
async fn registration_defaults_and_explicit_essay_ids() {
    let f = fixture();
    let (status, body) = f.post("/v1/batches", json!({"essay_count": 12})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let batch = body["batch_id"].as_str().unwrap();
    assert!(
        Uuid::parse_str(batch).is_ok(),
        "default batch id is a uuid: {batch}"
    );
    assert_eq!(body["essays"].as_array().unwrap().len(), 12);
    assert_eq!(body["essays"][11]["essay_id"], format!("{batch}-e12"));

    let (status, body) = f
        .post(
            "/v1/batches",
            json!({"batch_id": "b-ids", "essay_count": 5, "essay_ids": ["x", "y"],
                   "course_code": "SV1", "course_language": "sv", "class_type": "REGULAR"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["essays"].as_array().unwrap().len(), 2);
    assert_eq!(body["essays"][1]["essay_id"], "y");
    let env = decode_envelope::<BatchEssaysReady>(&f.sent.sent()[1].payload).unwrap();
    assert_eq!(
        (
            env.data.course_code.as_str(),
            env.data.course_language.as_str(),
            env.data.class_type.as_str()
        ),
        ("SV1", "sv", "REGULAR")
    );
    assert_valid_event("BatchEssaysReady", &f.sent.sent()[1].payload);
}

#[tokio::test]
async fn bad_registrations_get_4xx_json_and_publish_nothing() {
    let f = fixture();
    let cases = [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "essay_count"),
        (
            json!({"essay_count": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "essay_count",
        ),
        (
            json!({"essay_count": 10_001}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "essay_count",
        ),
        (
            // Within the count, but its BatchEssaysReady would not fit one message.
            json!({"batch_id": "a-batch-with-a-long-name", "essay_count": 10_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "over the 1047564-byte limit",
        ),
        (
            json!({"essay_count": "3"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "essay_count",
        ),
        (
            json!({"essay_ids": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "essay_ids",
        ),
        (
            json!({"essay_ids": ["a", "a"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`a`",
        ),
        (
            json!({"batch_id": " ", "essay_count": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "batch_id",
        ),
        (
            json!({"essay_count": 1, "course_code": "MATH"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "course_code",
        ),
        (
            json!({"essay_count": 1, "class_type": "guest"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "class_type",
        ),
        (
            json!({"essay_count": 1, "fail": {"spelling": []}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`spelling`",
        ),
        (
            json!({"essay_count": 1, "silent_phases": ["nlp", "grading"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`grading`",
        ),
        (
            json!({"batch_id": "b", "essay_count": 1, "fail": {"nlp": ["b-e07"]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "b-e07",
        ),
        (
            json!({"essay_count": 1, "essays": 2}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "essays",
        ),
    ];
    for (body, want, needle) in cases {
        let (status, answer) = f.post("/v1/batches", body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert!(
            answer["detail"].to_string().contains(needle),
            "{body} -> {answer}"
        );
    }
    let (status, answer) = f
        .post(
            "/v1/batches",
            json!({"essay_count": 1, "fail": {"grading": []}}),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_phase"))
    );

    let (status, answer) = f.post_raw("/v1/batches", "{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "malformed_json");
    assert!(f.sent.sent().is_empty());
    assert!(f.state.overrides.get("b").is_none());
}

#[tokio::test]
async fn an_unpublished_registration_is_a_503() {
    let f = fixture();
    f.sent.fail_next(1);
    let (status, body) = f.post("/v1/batches", json!({"essay_count": 2})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "publish_failed");
}

#[tokio::test]
async fn overrides_replace_what_a_batch_had() {
    let f = fixture();
    let (status, body) = f
        .post(
            "/v1/batches/ext-1/overrides",
            json!({"fail": {"nlp": ["e1", "e2"]}, "silent_phases": ["cj_assessment"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"batch_id": "ext-1", "fail": {"nlp": ["e1", "e2"]}, "silent_phases": ["cj_assessment"]})
    );
    let o = f.state.overrides.get("ext-1").unwrap();
    assert!(o.silent_phases.contains(&PhaseName::CjAssessment));

    let (status, body) = f
        .post(
            "/v1/batches/ext-1/overrides",
            json!({"silent_phases": ["nlp"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let o = f.state.overrides.get("ext-1").unwrap();
    assert!(o.fail.is_empty(), "replace semantics");
    assert_eq!(
        o.silent_phases.iter().copied().collect::<Vec<_>>(),
        [PhaseName::Nlp]
    );

    let (status, body) = f
        .post(
            "/v1/batches/ext-1/overrides",
            json!({"silent_phases": ["nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("`nope`"),
        "{body}"
    );
    assert_eq!(
        f.state.overrides.get("ext-1").unwrap().silent_phases.len(),
        1,
        "a rejected body changes nothing"
    );
}

#[tokio::test]
async fn probes_metrics_and_unknown_routes() {
    let f = fixture();
    let (status, body) = f.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _) = f.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = f.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert_counted_once(text, "spellcheck", "completed_successfully");
    let (status, body) = f.get("/v2/nothing").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    let not_ready = fixture_with(Readiness::new().kafka_consumer(|| false));
    let (status, body) = not_ready.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
}
