//! The simulator in-process against the real broker (`HULEEDU_TEST_KAFKA`).
//!
//! The simulator consumes the platform's fixed command topics, so two simulators running at
//! once (in different groups) would both answer every command. The tests therefore run one app
//! at a time ([`ONE_APP_AT_A_TIME`], which the binary's SIGTERM test takes too), each in a
//! unique consumer group, with unique batch ids, and look only at messages keyed by their own
//! batches.
//!
//! "Nothing more arrived" is shown without sleeping: a later *sentinel* command for the same
//! batch (so its outcome lands on the same outcome partition, behind anything published
//! earlier) is sent only after the simulator counted the command under test, and its answer is
//! awaited; whatever the command under test produced is then already visible.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{assert_valid_event, command, essays, is_storage_id, ONE_APP_AT_A_TIME};
use els_simulator::{App, AppError, SimSettings};
use huleedu_contracts::payloads::{
    BatchEssaysReady, ELSBatchPhaseOutcomeV1, EssayProcessingInputRefV1,
};
use huleedu_contracts::{
    decode_envelope, dlq, source, topics, BatchStatus, EventEnvelope, PhaseName,
};
use huleedu_it::{kafka_bootstrap, kafka_settings, unique, wait_until, Seen, TopicReader};
use huleedu_kafka::{OutgoingMessage, Producer};
use huleedu_service::settings::ServiceSettings;
use serde_json::{json, Value};
use tokio::sync::MutexGuard;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const T: Duration = Duration::from_secs(60);

struct Running {
    addr: SocketAddr,
    http: reqwest::Client,
    producer: Producer,
    stop: CancellationToken,
    task: JoinHandle<Result<(), AppError>>,
    _turn: MutexGuard<'static, ()>,
}

/// Builds and runs the app with `env` (on top of the test broker, a unique group and port 0),
/// and waits until its consumer has joined the group.
async fn start(env: &[(&str, &str)]) -> Running {
    let turn = ONE_APP_AT_A_TIME.lock().await;
    let group = unique("els-simulator-it");
    let bootstrap = kafka_bootstrap();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_CONSUMER_GROUP", &group),
        ("HTTP_ADDR", "127.0.0.1:0"),
    ];
    pairs.extend_from_slice(env);
    let mut settings = SimSettings::from_pairs(pairs).expect("settings");
    settings.kafka = kafka_settings("els-simulator", &group, 3);
    let producer = Producer::new(&settings.kafka).unwrap();
    let app = App::build(settings).await.expect("app builds");
    let addr = app.http_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(stop.clone()));
    let running = Running {
        addr,
        http: reqwest::Client::new(),
        producer,
        stop,
        task,
        _turn: turn,
    };
    wait_until(T, "the simulator to be ready", || async {
        running
            .http
            .get(running.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    running
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(T, self.task)
            .await
            .expect("the app stops in time")
            .expect("the app task does not panic")
            .expect("the app stops cleanly");
    }

    /// Publishes raw bytes on `topic`, keyed by `key`, and waits for the ack.
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) {
        self.producer
            .send(&OutgoingMessage::new(topic, key, payload))
            .await
            .expect("published");
    }

    /// Publishes a command for `phase` and returns its bytes.
    async fn dispatch(
        &self,
        phase: PhaseName,
        batch: &str,
        correlation: Uuid,
        essays: Vec<EssayProcessingInputRefV1>,
    ) -> Vec<u8> {
        let (bytes, _) = command(phase, Some(batch), correlation, essays);
        let topic = topics::initiate_command_topic(phase).unwrap();
        self.publish(topic, batch, bytes.clone()).await;
        bytes
    }

    async fn get_json(&self, path: &str) -> Value {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("JSON body")
    }

    /// `GET /v1/counts/{batch}` for one phase: (dispatched, deliveries).
    async fn count(&self, batch: &str, phase: PhaseName) -> (u64, u64) {
        let body = self.get_json(&format!("/v1/counts/{batch}")).await;
        assert_eq!(body["batch_id"], batch);
        let c = &body["phases"][phase.as_str()];
        (
            c["dispatched"].as_u64().unwrap_or(0),
            c["deliveries"].as_u64().unwrap_or(0),
        )
    }

    async fn wait_for_deliveries(&self, batch: &str, phase: PhaseName, n: u64) {
        wait_until(
            T,
            &format!("{n} deliveries of {phase} for {batch}"),
            || async { self.count(batch, phase).await.1 >= n },
        )
        .await;
    }
}

/// Outcomes seen for `batch` (by key), in topic order, decoded, with their bytes.
fn outcomes(seen: &[Seen], batch: &str) -> Vec<(EventEnvelope<ELSBatchPhaseOutcomeV1>, Vec<u8>)> {
    seen.iter()
        .filter(|m| m.topic == topics::ELS_BATCH_PHASE_OUTCOME && m.key.as_deref() == Some(batch))
        .map(|m| {
            let env =
                decode_envelope::<ELSBatchPhaseOutcomeV1>(&m.payload).expect("outcome decodes");
            (env, m.payload.clone())
        })
        .collect()
}

fn of_phase(
    all: &[(EventEnvelope<ELSBatchPhaseOutcomeV1>, Vec<u8>)],
    phase: PhaseName,
) -> Vec<(EventEnvelope<ELSBatchPhaseOutcomeV1>, Vec<u8>)> {
    all.iter()
        .filter(|(e, _)| e.data.phase_name == phase)
        .cloned()
        .collect()
}

/// Waits until at least `n` outcomes of `phase` for `batch` were seen; returns them.
async fn wait_outcomes(
    reader: &TopicReader,
    batch: &str,
    phase: PhaseName,
    n: usize,
) -> Vec<(EventEnvelope<ELSBatchPhaseOutcomeV1>, Vec<u8>)> {
    let what = format!("{n} {phase} outcome(s) for {batch}");
    let seen = reader
        .wait_for(T, &what, |seen| {
            of_phase(&outcomes(seen, batch), phase).len() >= n
        })
        .await;
    of_phase(&outcomes(&seen, batch), phase)
}

/// After the command under test was counted: dispatch `sentinel` for the same batch and wait
/// for its outcome. Returns every outcome of `batch` seen by then.
async fn after_sentinel(
    app: &Running,
    reader: &TopicReader,
    batch: &str,
    sentinel: PhaseName,
) -> Vec<(EventEnvelope<ELSBatchPhaseOutcomeV1>, Vec<u8>)> {
    app.dispatch(sentinel, batch, Uuid::new_v4(), essays(batch, 1))
        .await;
    wait_outcomes(reader, batch, sentinel, 1).await;
    outcomes(&reader.seen(), batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_answered_once_with_its_failures_and_counted() {
    let batch = unique("it-sim-batch");
    let fail = format!("spellcheck:{batch}-e03");
    let app = start(&[("SIM_FAIL", &fail)]).await;
    let reader = TopicReader::start(&[topics::ELS_BATCH_PHASE_OUTCOME]);
    let correlation = Uuid::new_v4();
    let input = essays(&batch, 5);
    app.dispatch(PhaseName::Spellcheck, &batch, correlation, input.clone())
        .await;

    let got = wait_outcomes(&reader, &batch, PhaseName::Spellcheck, 1).await;
    let (env, payload) = &got[0];
    assert_valid_event("ELSBatchPhaseOutcomeV1", payload);
    assert_eq!(env.event_type, topics::ELS_BATCH_PHASE_OUTCOME);
    assert_eq!(env.source_service, source::ELS_SIMULATOR);
    assert_eq!(env.correlation_id, correlation);
    let outcome = &env.data;
    assert_eq!(outcome.correlation_id, correlation);
    assert_eq!(outcome.batch_id, batch);
    assert_eq!(outcome.phase_status, BatchStatus::CompletedWithFailures);
    assert_eq!(outcome.failed_essay_ids, [format!("{batch}-e03")]);
    assert_eq!(outcome.processed_essays.len(), 4);
    for e in &outcome.processed_essays {
        let original = input.iter().find(|i| i.essay_id == e.essay_id).unwrap();
        assert_ne!(e.text_storage_id, original.text_storage_id);
        assert!(is_storage_id(&e.text_storage_id));
    }
    assert_eq!(app.count(&batch, PhaseName::Spellcheck).await, (1, 1));

    let all = after_sentinel(&app, &reader, &batch, PhaseName::Nlp).await;
    assert_eq!(
        of_phase(&all, PhaseName::Spellcheck).len(),
        1,
        "exactly one outcome"
    );

    let total = app.get_json("/v1/counts").await;
    assert_eq!(total["batches"][&batch]["spellcheck"]["dispatched"], 1);
    assert_eq!(total["batches"][&batch]["nlp"]["dispatched"], 1);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("commands_received_total{phase=\"spellcheck\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("outcomes_published_total{"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_command_counts_as_one_dispatch() {
    let app = start(&[]).await;
    let reader = TopicReader::start(&[topics::ELS_BATCH_PHASE_OUTCOME]);
    let batch = unique("it-sim-batch");
    let bytes = app
        .dispatch(
            PhaseName::Spellcheck,
            &batch,
            Uuid::new_v4(),
            essays(&batch, 3),
        )
        .await;
    app.publish(topics::SPELLCHECK_INITIATE_COMMAND, &batch, bytes)
        .await;

    app.wait_for_deliveries(&batch, PhaseName::Spellcheck, 2)
        .await;
    assert_eq!(app.count(&batch, PhaseName::Spellcheck).await, (1, 2));
    let all = after_sentinel(&app, &reader, &batch, PhaseName::Nlp).await;
    let spellcheck = of_phase(&all, PhaseName::Spellcheck);
    assert_eq!(spellcheck.len(), 1, "a redelivery is not answered again");
    assert_eq!(
        spellcheck[0].0.data.phase_status,
        BatchStatus::CompletedSuccessfully
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_phases_are_never_answered() {
    let app = start(&[("SIM_SILENT_PHASES", "cj_assessment")]).await;
    let reader = TopicReader::start(&[topics::ELS_BATCH_PHASE_OUTCOME]);

    // Silent for every batch (SIM_SILENT_PHASES).
    let a = unique("it-sim-batch");
    app.dispatch(PhaseName::CjAssessment, &a, Uuid::new_v4(), essays(&a, 2))
        .await;
    app.wait_for_deliveries(&a, PhaseName::CjAssessment, 1)
        .await;
    let all = after_sentinel(&app, &reader, &a, PhaseName::Spellcheck).await;
    assert!(
        of_phase(&all, PhaseName::CjAssessment).is_empty(),
        "cj_assessment answered"
    );
    assert_eq!(app.count(&a, PhaseName::CjAssessment).await, (1, 1));

    // Silent for one batch (overrides over HTTP).
    let b = unique("it-sim-batch");
    let resp = app
        .http
        .post(app.url(&format!("/v1/batches/{b}/overrides")))
        .json(&json!({"silent_phases": ["nlp"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    app.dispatch(PhaseName::Nlp, &b, Uuid::new_v4(), essays(&b, 2))
        .await;
    app.wait_for_deliveries(&b, PhaseName::Nlp, 1).await;
    let all = after_sentinel(&app, &reader, &b, PhaseName::Spellcheck).await;
    assert!(
        of_phase(&all, PhaseName::Nlp).is_empty(),
        "nlp answered for {b}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_outcomes_are_two_identical_messages() {
    let app = start(&[("SIM_DUPLICATE_OUTCOMES", "true")]).await;
    let reader = TopicReader::start(&[topics::ELS_BATCH_PHASE_OUTCOME]);
    let batch = unique("it-sim-batch");
    app.dispatch(
        PhaseName::CjAssessment,
        &batch,
        Uuid::new_v4(),
        essays(&batch, 2),
    )
    .await;
    let got = wait_outcomes(&reader, &batch, PhaseName::CjAssessment, 2).await;
    assert_eq!(got[0].1, got[1].1, "same bytes");
    assert_eq!(got[0].0.event_id, got[1].0.event_id);

    let all = after_sentinel(&app, &reader, &batch, PhaseName::Spellcheck).await;
    assert_eq!(
        of_phase(&all, PhaseName::CjAssessment).len(),
        2,
        "exactly two"
    );
    assert_eq!(app.count(&batch, PhaseName::CjAssessment).await, (1, 1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_batch_is_announced_and_its_failures_apply() {
    let app = start(&[]).await;
    let reader = TopicReader::start(&[topics::BATCH_ESSAYS_READY, topics::ELS_BATCH_PHASE_OUTCOME]);
    let batch = unique("it-sim-batch");
    let resp = app
        .http
        .post(app.url("/v1/batches"))
        .json(&json!({"batch_id": batch, "essay_count": 4,
                      "fail": {"spellcheck": [format!("{batch}-e02")]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();

    let seen = reader
        .wait_for(T, "BatchEssaysReady for the batch", |seen| {
            seen.iter()
                .any(|m| m.topic == topics::BATCH_ESSAYS_READY && m.key.as_deref() == Some(&batch))
        })
        .await;
    let ready: Vec<&Seen> = seen
        .iter()
        .filter(|m| m.topic == topics::BATCH_ESSAYS_READY && m.key.as_deref() == Some(&batch))
        .collect();
    assert_eq!(ready.len(), 1);
    assert_valid_event("BatchEssaysReady", &ready[0].payload);
    let env = decode_envelope::<BatchEssaysReady>(&ready[0].payload).expect("decodes");
    assert_eq!(env.event_id.to_string(), body["event_id"].as_str().unwrap());
    assert_eq!(env.data.batch_id, batch);
    let essays: Vec<EssayProcessingInputRefV1> = env.data.ready_essays.clone();
    assert_eq!(essays.len(), 4);
    for (e, answered) in essays.iter().zip(body["essays"].as_array().unwrap()) {
        assert_eq!(e.essay_id, answered["essay_id"].as_str().unwrap());
        assert_eq!(
            e.text_storage_id,
            answered["text_storage_id"].as_str().unwrap()
        );
    }

    // BOS would now dispatch spellcheck with these essays: the registered failure applies.
    app.dispatch(PhaseName::Spellcheck, &batch, Uuid::new_v4(), essays)
        .await;
    let got = wait_outcomes(&reader, &batch, PhaseName::Spellcheck, 1).await;
    assert_eq!(got[0].0.data.failed_essay_ids, [format!("{batch}-e02")]);
    assert_eq!(got[0].0.data.processed_essays.len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_commands_go_to_the_dlq_and_the_next_command_is_answered() {
    let app = start(&[]).await;
    let dlq_topic = topics::dlq_topic(topics::NLP_INITIATE_COMMAND);
    let reader = TopicReader::start(&[&dlq_topic, topics::ELS_BATCH_PHASE_OUTCOME]);
    let batch = unique("it-sim-batch");
    app.publish(topics::NLP_INITIATE_COMMAND, &batch, b"{not json".to_vec())
        .await;
    app.dispatch(PhaseName::Nlp, &batch, Uuid::new_v4(), essays(&batch, 1))
        .await;

    wait_outcomes(&reader, &batch, PhaseName::Nlp, 1).await;
    let seen = reader
        .wait_for(T, "the poison message in the DLQ", |seen| {
            seen.iter()
                .any(|m| m.topic == dlq_topic && m.key.as_deref() == Some(&batch))
        })
        .await;
    let poison = seen
        .iter()
        .find(|m| m.topic == dlq_topic && m.key.as_deref() == Some(&batch))
        .unwrap();
    assert_eq!(poison.payload, b"{not json");
    assert_eq!(poison.header(dlq::headers::ERROR_KIND), Some("decode"));
    assert_eq!(
        poison.header(dlq::headers::ORIGINAL_TOPIC),
        Some(topics::NLP_INITIATE_COMMAND)
    );
    assert_eq!(
        app.count(&batch, PhaseName::Nlp).await,
        (1, 1),
        "poison is not counted"
    );
    app.stop().await;
}
