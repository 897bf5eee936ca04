//! The conductor against the real broker and Redis: one [`App`] per test binary, run in-process
//! on its own runtime, talked to over Kafka and HTTP.
//!
//! Topic names are fixed, so tests cannot have their own topics. One App serves every test of
//! this file (a second conductor in another consumer group would also process the other
//! tests' outcomes and emit their failed-essay records a second time). Each test uses its own
//! batch ids and filters what it reads by them; the App has its own consumer group and Redis
//! key prefix.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use batch_conductor::{App, BcsSettings};
use common::*;
use huleedu_contracts::dlq::{headers, FailedEssayDlqRecordV1};
use huleedu_contracts::payloads::BatchPipelineCompletedV1;
use huleedu_contracts::topics::{self, dlq_topic};
use huleedu_contracts::{decode_envelope, BatchStatus, EventEnvelope, PhaseName};
use huleedu_it::{
    kafka_bootstrap, kafka_settings, redis_url, unique, wait_until, JsonPayload, Seen, TopicReader,
};
use huleedu_kafka::{OutgoingMessage, Producer};
use huleedu_service::settings::ServiceSettings;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "it-operator-token";
const RESOLVE_WAIT_MS: u64 = 3000;

struct Shared {
    addr: SocketAddr,
    group: String,
}

/// The App of this test binary, started once on its own thread and runtime (each test has its
/// own runtime, which ends with the test).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let group = unique("bcs-it");
        let settings = BcsSettings::from_pairs([
            ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap()),
            ("KAFKA_CONSUMER_GROUP", group.clone()),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
            ("REDIS_URL", redis_url()),
            ("REDIS_KEY_PREFIX", unique("bcs-it")),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("OPERATOR_TOKEN", TOKEN.into()),
            ("RESOLVE_WAIT_MS", RESOLVE_WAIT_MS.to_string()),
        ])
        .expect("test settings are valid");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = App::build(settings).await.expect("the conductor builds");
                tx.send(app.http_addr()).expect("test is waiting");
                // Runs until the test process exits.
                app.run(CancellationToken::new())
                    .await
                    .expect("the conductor runs");
            });
        });
        let addr = rx.recv_timeout(T).expect("the conductor was built in time");
        Shared { addr, group }
    })
}

fn url(path: &str) -> String {
    format!("http://{}{path}", shared().addr)
}

/// The shared App, once its consumer has joined the group.
async fn ready() -> &'static Shared {
    let s = tokio::task::spawn_blocking(shared).await.unwrap();
    let client = reqwest::Client::new();
    wait_until(T, "the conductor to be ready", || {
        let c = client.clone();
        async move { matches!(c.get(url("/readyz")).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    s
}

fn producer() -> Producer {
    Producer::new(&kafka_settings("bcs-it-producer", "unused", 3)).unwrap()
}

async fn publish(p: &Producer, topic: &str, key: &str, payload: Vec<u8>) -> (i32, i64) {
    let d = p
        .send(&OutgoingMessage::new(topic, key, payload))
        .await
        .unwrap();
    (d.partition, d.offset)
}

/// Publishes a `BatchPipelineCompletedV1`, keyed by its batch as BOS keys it.
async fn publish_completed(
    p: &Producer,
    batch: &str,
    done: &EventEnvelope<BatchPipelineCompletedV1>,
) {
    let topic = topics::BATCH_PIPELINE_COMPLETED;
    publish(p, topic, batch, done.to_json_bytes()).await;
}

async fn get_json(path: &str) -> Value {
    reqwest::get(url(path)).await.unwrap().json().await.unwrap()
}

async fn metrics_text() -> String {
    reqwest::get(url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Wait until the conductor shows `pred` for the batch's phases.
async fn wait_phases(batch: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/internal/v1/batches/{batch}/phases");
    let start = Instant::now();
    loop {
        let v = get_json(&path).await;
        if pred(&v) {
            return v;
        }
        assert!(
            start.elapsed() < T,
            "timed out waiting for {what}; last state: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dlq_records_of(seen: &[Seen], batch: &str) -> Vec<Value> {
    seen.iter()
        .filter(|m| m.topic == topics::FAILED_ESSAYS_DLQ && m.key.as_deref() == Some(batch))
        .map(Seen::json)
        .collect()
}

#[tokio::test]
async fn a_partial_failure_gives_completed_and_exactly_n_dlq_records_even_when_redelivered() {
    ready().await;
    let reader = TopicReader::start(&[topics::FAILED_ESSAYS_DLQ]);
    let p = producer();
    let batch = unique("it-batch");
    let e = outcome(
        &batch,
        PhaseName::Spellcheck,
        BatchStatus::CompletedWithFailures,
        &["f1", "f2", "f3"],
    );
    let bytes = e.to_json_bytes();
    let (partition, offset) =
        publish(&p, topics::ELS_BATCH_PHASE_OUTCOME, &batch, bytes.clone()).await;
    // The same outcome again (same event_id), then a sentinel on the same partition (same
    // key): once the sentinel's record is out, the duplicate has been handled before it.
    publish(&p, topics::ELS_BATCH_PHASE_OUTCOME, &batch, bytes).await;
    let sentinel = outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::FailedCritically,
        &["sentinel"],
    );
    publish(
        &p,
        topics::ELS_BATCH_PHASE_OUTCOME,
        &batch,
        sentinel.to_json_bytes(),
    )
    .await;

    let seen = reader
        .wait_for(T, "the sentinel's failed-essay record", |seen| {
            dlq_records_of(seen, &batch)
                .iter()
                .any(|r| r["data"]["essay_id"] == "sentinel")
        })
        .await;
    let records = dlq_records_of(&seen, &batch);
    let mut essays: Vec<&str> = records
        .iter()
        .map(|r| r["data"]["essay_id"].as_str().unwrap())
        .collect();
    essays.sort();
    assert_eq!(essays, ["f1", "f2", "f3", "sentinel"], "{records:#?}");

    for r in &records {
        assert_valid("EventEnvelope", r);
        let env = decode_envelope::<FailedEssayDlqRecordV1>(r.to_string().as_bytes()).unwrap();
        assert_eq!(env.event_type, topics::FAILED_ESSAYS_DLQ);
        assert_eq!(env.source_service, "batch_conductor_service");
        assert_eq!(env.data.batch_id, batch);
        if env.data.essay_id != "sentinel" {
            assert_eq!(env.correlation_id, e.correlation_id);
            assert_eq!(env.data.phase_name, PhaseName::Spellcheck);
            assert_eq!(env.data.phase_status, BatchStatus::CompletedWithFailures);
            assert_eq!(env.data.source_event_id, e.event_id);
            assert_eq!(env.data.pipeline_correlation_id, e.data.correlation_id);
            assert_eq!(env.data.source_topic, topics::ELS_BATCH_PHASE_OUTCOME);
            assert_eq!(
                (env.data.source_partition, env.data.source_offset),
                (partition, offset)
            );
            assert!(
                env.data.reason.contains("spellcheck"),
                "{}",
                env.data.reason
            );
        }
    }

    let state = wait_phases(&batch, "both phases recorded", |v| {
        v["phases"]["nlp"].is_object()
    })
    .await;
    assert_eq!(state["phases"]["spellcheck"]["status"], "completed");
    assert_eq!(state["phases"]["spellcheck"]["source"], "event");
    assert_eq!(state["phases"]["spellcheck"]["failed_count"], 3);
    assert_eq!(state["phases"]["nlp"]["status"], "failed");
    let text = metrics_text().await;
    let dup = format!(
        r#"bcs_events_consumed_total{{topic="{}",outcome="duplicate"}} "#,
        topics::ELS_BATCH_PHASE_OUTCOME
    );
    let dup_count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&dup))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no duplicate counter in:\n{text}"));
    assert!(dup_count >= 1, "{text}");
}

#[tokio::test]
async fn define_waits_for_the_pipeline_completion_and_answers_503_when_it_never_comes() {
    ready().await;
    let p = producer();
    let client = reqwest::Client::new();
    let batch = unique("it-batch");
    let done = pipeline_completed(&batch, &[PhaseName::Spellcheck, PhaseName::CjAssessment]);
    let body = json!({
        "batch_id": batch,
        "requested_pipeline": "nlp",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "after_pipeline_id": done.correlation_id.to_string(),
    });
    let request = tokio::spawn({
        let c = client.clone();
        let body = body.clone();
        async move {
            c.post(url("/internal/v1/pipelines/define"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    });
    // Only this test waits on an after_pipeline_id in this binary: the gauge shows ours.
    wait_until(T, "the define request to be waiting", || async {
        metrics_text()
            .await
            .lines()
            .any(|l| l == "bcs_resolve_waiting 1")
    })
    .await;
    assert!(!request.is_finished());
    publish_completed(&p, &batch, &done).await;
    let resp = request.await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_valid("BCSPipelineDefinitionResponseV1", &answer);
    assert_eq!(answer["final_pipeline"], json!(["nlp"]));
    assert_eq!(answer["pruned_phases"], json!(["spellcheck"]));
    let state = get_json(&format!("/internal/v1/batches/{batch}/phases")).await;
    assert_eq!(
        state["phases"]["cj_assessment"]["source"],
        "pipeline_completed"
    );
    assert_eq!(
        state["processed_pipelines"][0]["pipeline_id"],
        done.correlation_id.to_string()
    );

    // A pipeline id that is never processed: 503 after the bound, with Retry-After.
    let mut never = body.clone();
    never["after_pipeline_id"] = json!(uuid::Uuid::new_v4().to_string());
    let started = Instant::now();
    let resp = client
        .post(url("/internal/v1/pipelines/define"))
        .json(&never)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"], "conductor_lagging");
    assert!(
        waited >= Duration::from_millis(RESOLVE_WAIT_MS),
        "{waited:?}"
    );
    assert!(
        waited < Duration::from_millis(RESOLVE_WAIT_MS) + Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test]
async fn poison_messages_go_to_the_topic_dlq_with_headers_and_the_partition_moves_on() {
    let shared = ready().await;
    let outcome_dlq = dlq_topic(topics::ELS_BATCH_PHASE_OUTCOME);
    let completed_dlq = dlq_topic(topics::BATCH_PIPELINE_COMPLETED);
    let reader = TopicReader::start(&[outcome_dlq.as_str(), completed_dlq.as_str()]);
    let p = producer();
    let batch = unique("it-batch");

    let not_json = b"{this is not json".to_vec();
    let mut missing = serde_json::to_value(outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::CompletedSuccessfully,
        &[],
    ))
    .unwrap();
    missing["data"]
        .as_object_mut()
        .unwrap()
        .remove("phase_status");
    let mut unknown_phase = serde_json::to_value(outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::CompletedSuccessfully,
        &[],
    ))
    .unwrap();
    unknown_phase["data"]["phase_name"] = json!("ocr");
    let mut bad_completed =
        serde_json::to_value(pipeline_completed(&batch, &[PhaseName::Spellcheck])).unwrap();
    bad_completed["data"]
        .as_object_mut()
        .unwrap()
        .remove("batch_id");

    let poison = [
        (
            topics::ELS_BATCH_PHASE_OUTCOME,
            not_json,
            "decode",
            "not valid JSON",
        ),
        (
            topics::ELS_BATCH_PHASE_OUTCOME,
            missing.to_string().into_bytes(),
            "validation",
            "data.phase_status",
        ),
        (
            topics::ELS_BATCH_PHASE_OUTCOME,
            unknown_phase.to_string().into_bytes(),
            "validation",
            "data.phase_name",
        ),
        (
            topics::BATCH_PIPELINE_COMPLETED,
            bad_completed.to_string().into_bytes(),
            "validation",
            "data.batch_id",
        ),
    ];
    let mut sent = Vec::new();
    for (topic, bytes, _, _) in &poison {
        sent.push(publish(&p, topic, &batch, bytes.clone()).await);
    }
    // The next valid events on the same partitions.
    // A different phase than the pipeline completion below records: the two topics are not
    // ordered against each other, and the older of two updates of one phase changes nothing.
    let good = outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::CompletedSuccessfully,
        &[],
    );
    publish(
        &p,
        topics::ELS_BATCH_PHASE_OUTCOME,
        &batch,
        good.to_json_bytes(),
    )
    .await;
    let done = pipeline_completed(&batch, &[PhaseName::Spellcheck]);
    publish_completed(&p, &batch, &done).await;

    wait_phases(&batch, "the valid events after the poison", |v| {
        v["phases"]["nlp"]["event_id"] == good.event_id.to_string()
            && v["processed_pipelines"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    })
    .await;

    let mine = |m: &Seen| {
        m.key.as_deref() == Some(batch.as_str())
            && m.header(headers::CONSUMER_GROUP) == Some(shared.group.as_str())
    };
    let seen = reader
        .wait_for(T, "four poison records", |seen| {
            seen.iter().filter(|m| mine(m)).count() >= 4
        })
        .await;
    let dead: Vec<&Seen> = seen.iter().filter(|m| mine(m)).collect();
    assert_eq!(dead.len(), 4, "{dead:#?}");
    for ((topic, bytes, kind, field), (partition, offset)) in poison.iter().zip(&sent) {
        let m = dead
            .iter()
            .find(|m| m.payload == *bytes)
            .unwrap_or_else(|| panic!("no DLQ copy of the {kind} poison message"));
        assert_eq!(m.topic, dlq_topic(topic));
        assert_eq!(m.header(headers::ORIGINAL_TOPIC), Some(*topic));
        assert_eq!(
            m.header(headers::ORIGINAL_PARTITION),
            Some(partition.to_string().as_str())
        );
        assert_eq!(
            m.header(headers::ORIGINAL_OFFSET),
            Some(offset.to_string().as_str())
        );
        assert_eq!(m.header(headers::ERROR_KIND), Some(*kind));
        assert_eq!(m.header(headers::SERVICE), Some("batch-conductor"));
        let message = m.header(headers::ERROR_MESSAGE).unwrap();
        assert!(message.contains(field), "{kind}: {message}");
        assert!(m.header(headers::FAILED_AT).is_some_and(|t| !t.is_empty()));
        assert!(m.header(headers::ORIGINAL_TIMESTAMP).is_some());
    }
    let text = metrics_text().await;
    assert!(text.contains(&format!(
        r#"bcs_events_consumed_total{{topic="{}",outcome="dead_lettered"}}"#,
        topics::ELS_BATCH_PHASE_OUTCOME
    )));
}

#[tokio::test]
async fn an_operator_mark_with_a_bad_token_records_nothing_and_a_good_one_prunes() {
    ready().await;
    let client = reqwest::Client::new();
    let batch = unique("it-batch");
    let mark = json!({"batch_id": batch, "phase_name": "spellcheck", "operator": "it"});
    for auth in [None, Some("Bearer nope")] {
        let mut req = client.post(url("/internal/v1/phases/complete")).json(&mark);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    let state = get_json(&format!("/internal/v1/batches/{batch}/phases")).await;
    assert_eq!(state["phases"], json!({}));

    let resp = client
        .post(url("/internal/v1/phases/complete"))
        .bearer_auth(TOKEN)
        .json(&mark)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .post(url("/internal/v1/pipelines/define"))
        .json(&json!({"batch_id": batch, "requested_pipeline": "nlp", "correlation_id": "c-1"}))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["final_pipeline"], json!(["nlp"]));
    assert_eq!(answer["pruned_phases"], json!(["spellcheck"]));
}
