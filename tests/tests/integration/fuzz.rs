//! Arbitrary bytes and arbitrary JSON never panic the decoders or the services' handlers
//! (issue 6, item 3). Handlers run for real against the test Redis; whatever they make of the
//! input, they must answer with a result: done, transient or permanent.

use std::sync::Arc;
use std::time::Duration;

use huleedu_contracts::decode::decode_envelope;
use huleedu_contracts::payloads::*;
use huleedu_contracts::topics;
use huleedu_it::unique;
use huleedu_kafka::{FailureKind, Handler, HandlerResult, Inbound};
use huleedu_store::Store;
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("spellcheck"),
            Just("nlp"),
            Just("completed_successfully"),
            Just("2026-01-01T00:00:00Z"),
            Just("0199a7c0-0000-4000-8000-000000000005")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,8}".boxed(),
                    prop_oneof![
                        Just("batch_id"),
                        Just("phase_name"),
                        Just("phase_status"),
                        Just("processed_essays"),
                        Just("failed_essay_ids"),
                        Just("correlation_id"),
                        Just("requested_pipeline"),
                        Just("user_id"),
                        Just("essay_id"),
                        Just("text_storage_id"),
                        Just("completed_phases"),
                        Just("ready_essays")
                    ]
                    .prop_map(str::to_owned)
                    .boxed(),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An envelope with valid framing and arbitrary `data`.
fn arb_envelope() -> impl Strategy<Value = Vec<u8>> {
    (arb_json(), any::<u8>()).prop_map(|(data, v)| {
        serde_json::to_vec(&json!({
            "event_id": uuid::Uuid::new_v4(), "event_type": "x", "event_timestamp": "2026-01-01T00:00:00Z",
            "source_service": "fuzz", "schema_version": if v % 5 == 0 { 2 } else { 1 },
            "correlation_id": uuid::Uuid::new_v4(), "data_schema_uri": null, "data": data, "metadata": null,
        }))
        .unwrap()
    })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        arb_envelope(),
    ]
}

macro_rules! decode_all {
    ($bytes:expr, $($t:ty),+) => {{
        $( let _ = decode_envelope::<$t>($bytes); )+
    }};
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(bytes in any_input()) {
        decode_all!(&bytes,
            ClientBatchPipelineRequestV1, BatchEssaysReady, BatchContentProvisioningCompletedV1,
            ELSBatchPhaseOutcomeV1, BatchPipelineCompletedV1, PhaseSkippedV1,
            BatchServiceSpellcheckInitiateCommandDataV1, BatchServiceNLPInitiateCommandDataV2,
            BatchServiceCJAssessmentInitiateCommandDataV1, BatchServiceAIFeedbackInitiateCommandDataV1);
        let _ = huleedu_contracts::decode::decode_json::<huleedu_contracts::http::BCSPipelineDefinitionRequestV1>(&bytes);
    }
}

fn store() -> Store {
    Store::connect(&huleedu_it::redis_settings(&unique("fuzz"))).unwrap()
}

fn bos_handler(rt: &tokio::runtime::Runtime) -> batch_orchestrator::handler::BosHandler {
    let _g = rt.enter();
    let metrics = huleedu_http::metrics::Metrics::new();
    let core = batch_orchestrator::core::Core {
        store: store(),
        limits: Default::default(),
        dedup_ttl: Duration::from_secs(60),
        state_ttl: Duration::from_secs(60),
        metrics: batch_orchestrator::metrics::BosMetrics::register(&metrics),
        wake_scheduler: Arc::new(tokio::sync::Notify::new()),
        decoded: Default::default(),
    };
    // No conductor listens here: a request that decodes is accepted unverified (its pipeline
    // name is checked again when it starts), as when the conductor is down in production.
    let conductor = batch_orchestrator::conductor::Conductor::new(
        "http://127.0.0.1:9",
        Duration::from_millis(200),
    );
    batch_orchestrator::handler::BosHandler { core, conductor }
}

fn bcs_handler(rt: &tokio::runtime::Runtime) -> batch_conductor::consumer::EventHandler {
    let _g = rt.enter();
    let registry = huleedu_http::metrics::Metrics::new();
    let metrics = batch_conductor::metrics::BcsMetrics::register(&registry);
    batch_conductor::consumer::EventHandler::new(
        store(),
        metrics,
        batch_conductor::consumer::PipelinesSeen::default(),
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
}

fn inbound(topic: &str, payload: Vec<u8>) -> Inbound {
    Inbound {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        key: Some(b"fuzz".to_vec()),
        payload,
        timestamp_ms: None,
        headers: vec![],
    }
}

fn check<H: Handler>(
    rt: &tokio::runtime::Runtime,
    h: &H,
    topic: &str,
    bytes: Vec<u8>,
) -> Result<(), TestCaseError> {
    let undecodable = serde_json::from_slice::<Value>(&bytes).is_err();
    let r = rt.block_on(h.handle(&inbound(topic, bytes)));
    if undecodable {
        prop_assert!(
            matches!(
                r,
                HandlerResult::Permanent {
                    kind: FailureKind::Decode,
                    ..
                }
            ),
            "non-JSON is a decode error: {r:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn orchestrator_handler_never_panics(bytes in any_input(), t in 0usize..4) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let h = bos_handler(&rt);
        let topic = batch_orchestrator::handler::CONSUMED[t];
        check(&rt, &h, topic, bytes)?;
    }

    #[test]
    fn conductor_handler_never_panics(bytes in any_input(), t in 0usize..2) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let h = bcs_handler(&rt);
        let topic = [topics::ELS_BATCH_PHASE_OUTCOME, topics::BATCH_PIPELINE_COMPLETED][t];
        check(&rt, &h, topic, bytes)?;
    }
}
