//! The whole App's life cycle against the real broker and Redis: build, ready, shutdown in
//! order, restart on the same group and key prefix without duplicating anything.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use batch_conductor::{App, BcsSettings};
use huleedu_contracts::{topics, BatchStatus, PhaseName};
use huleedu_it::{
    kafka_bootstrap, kafka_settings, redis_url, unique, wait_until, JsonPayload, Seen, TopicReader,
};
use huleedu_kafka::{OutgoingMessage, Producer};
use huleedu_service::settings::ServiceSettings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(60);

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(settings: &BcsSettings) -> Running {
    let app = App::build(settings.clone())
        .await
        .expect("the conductor builds");
    let addr = app.http_addr();
    assert_ne!(addr.port(), 0);
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(stop.clone()));
    let client = reqwest::Client::new();
    wait_until(T, "the conductor to be ready", || {
        let c = client.clone();
        async move {
            matches!(c.get(format!("http://{addr}/readyz")).send().await, Ok(r) if r.status() == 200)
        }
    })
    .await;
    Running { addr, stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(T, self.task)
            .await
            .expect("the conductor stops in time")
            .unwrap()
            .expect("the conductor stops cleanly");
    }
}

fn dlq_essays(seen: &[Seen], batch: &str) -> Vec<String> {
    let mut v: Vec<String> = seen
        .iter()
        .filter(|m| m.key.as_deref() == Some(batch))
        .map(|m| m.json()["data"]["essay_id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conductor_starts_stops_and_restarts_without_duplicates() {
    let settings = BcsSettings::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap()),
        ("KAFKA_CONSUMER_GROUP", unique("bcs-app")),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", unique("bcs-app")),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
    ])
    .unwrap();
    let reader = TopicReader::start(&[topics::FAILED_ESSAYS_DLQ]);
    let producer = Producer::new(&kafka_settings("bcs-app-producer", "unused", 3)).unwrap();
    let batch = unique("app-batch");

    let first = start(&settings).await;
    let health: Value = reqwest::get(format!("http://{}/healthz", first.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready: Value = reqwest::get(format!("http://{}/readyz", first.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["kafka_consumer"], "ok");
    assert_eq!(ready["checks"]["redis"], "ok");

    let e = outcome(
        &batch,
        PhaseName::Spellcheck,
        BatchStatus::CompletedWithFailures,
        &["a", "b"],
    );
    let msg = OutgoingMessage::new(
        topics::ELS_BATCH_PHASE_OUTCOME,
        batch.as_str(),
        e.to_json_bytes(),
    );
    producer.send(&msg).await.unwrap();
    reader
        .wait_for(T, "two failed-essay records", |seen| {
            dlq_essays(seen, &batch).len() >= 2
        })
        .await;
    let addr = first.addr;
    first.stop().await;
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "the HTTP server is stopped"
    );

    // Same group and key prefix: the state is still there, and the same outcome delivered
    // again (as after a crash before the offset commit) changes nothing.
    let second = start(&settings).await;
    let state: Value = reqwest::get(format!(
        "http://{}/internal/v1/batches/{batch}/phases",
        second.addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(state["phases"]["spellcheck"]["status"], "completed");
    producer.send(&msg).await.unwrap();
    let sentinel = outcome(
        &batch,
        PhaseName::Nlp,
        BatchStatus::CompletedWithFailures,
        &["z"],
    );
    producer
        .send(&OutgoingMessage::new(
            topics::ELS_BATCH_PHASE_OUTCOME,
            batch.as_str(),
            sentinel.to_json_bytes(),
        ))
        .await
        .unwrap();
    let seen = reader
        .wait_for(T, "the sentinel's record", |seen| {
            dlq_essays(seen, &batch).contains(&"z".to_owned())
        })
        .await;
    assert_eq!(dlq_essays(&seen, &batch), ["a", "b", "z"]);
    second.stop().await;
}
