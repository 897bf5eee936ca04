//! What every scenario uses: publish requests, read every topic, query the HTTP views.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::ensure;
use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::http::bos::BatchStatusView;
use huleedu_contracts::payloads::ClientBatchPipelineRequestV1;
use huleedu_contracts::topics;
use huleedu_it::stack::{Stack, OPERATOR_TOKEN};
use huleedu_it::{unique, JsonPayload, Seen, TopicReader};
use huleedu_kafka::{KafkaSettings, OutgoingMessage, Producer};
use serde_json::{json, Value};
use uuid::Uuid;

pub const T: Duration = Duration::from_secs(60);

pub struct Ctx {
    pub kafka: String,
    pub bos: String,
    pub bcs: String,
    pub sim: String,
    /// The operator console (empty when the stack runs none).
    pub console: String,
    /// The reference worker's process id (to stop and continue it).
    pub sim_pid: Option<u32>,
    pub http: reqwest::Client,
    pub producer: Producer,
    pub reader: TopicReader,
}

/// A request as submitted.
#[derive(Debug, Clone, Copy)]
pub struct Submitted {
    pub correlation_id: Uuid,
}

impl Ctx {
    pub async fn new(stack: &Stack) -> Self {
        let settings = KafkaSettings::local(&stack.kafka, "e2e", &unique("e2e"));
        Self {
            kafka: stack.kafka.clone(),
            bos: stack.bos_url.clone(),
            bcs: stack.bcs_url.clone(),
            sim: stack.sim_url.clone(),
            console: stack.console_url.clone(),
            sim_pid: stack.pid(huleedu_it::stack::SIM),
            http: huleedu_it::http_client(),
            producer: Producer::new(&settings).expect("producer"),
            reader: TopicReader::start_on(&stack.kafka, &topics::SYSTEM),
        }
    }

    /// Register a batch with the simulator (it publishes `BatchEssaysReady`).
    pub async fn register(
        &self,
        batch: &str,
        essays: usize,
        fail: Value,
        silent: &[&str],
    ) -> anyhow::Result<Vec<Value>> {
        let r = self
            .http
            .post(format!("{}/v1/batches", self.sim))
            .json(&json!({"batch_id": batch, "essay_count": essays, "fail": fail, "silent_phases": silent}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        ensure!(status.as_u16() == 201, "register answered {status}: {body}");
        Ok(body["essays"].as_array().cloned().unwrap_or_default())
    }

    /// Replace the simulator's failure/silence overrides of a batch.
    pub async fn overrides(&self, batch: &str, fail: Value, silent: &[&str]) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/batches/{batch}/overrides", self.sim))
            .json(&json!({"fail": fail, "silent_phases": silent}))
            .send()
            .await?;
        ensure!(r.status().is_success(), "overrides answered {}", r.status());
        Ok(())
    }

    /// Publish a `ClientBatchPipelineRequestV1`.
    pub async fn request(&self, batch: &str, pipeline: &str) -> anyhow::Result<Submitted> {
        let correlation_id = Uuid::new_v4();
        let env = EventEnvelope::new(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            "e2e_client",
            correlation_id,
            ClientBatchPipelineRequestV1 {
                batch_id: batch.to_owned(),
                requested_pipeline: pipeline.to_owned(),
                client_correlation_id: correlation_id,
                user_id: "teacher-e2e".to_owned(),
                is_retry: false,
                retry_reason: None,
                prompt_payload: None,
            },
        );
        self.producer
            .send(&OutgoingMessage::new(
                topics::CLIENT_BATCH_PIPELINE_REQUEST,
                batch,
                env.to_json_bytes(),
            ))
            .await?;
        Ok(Submitted { correlation_id })
    }

    /// Publish raw bytes on a topic (duplicates, poison).
    pub async fn publish_raw(
        &self,
        topic: &str,
        key: &str,
        payload: Vec<u8>,
    ) -> anyhow::Result<huleedu_kafka::producer::Delivered> {
        Ok(self
            .producer
            .send(&OutgoingMessage::new(topic, key, payload))
            .await?)
    }

    /// Wait until the orchestrators' consumer group has committed past `delivered` on `topic`:
    /// they have handled that message (and committed its effects, if any).
    pub async fn bos_handled(
        &self,
        topic: &str,
        delivered: huleedu_kafka::producer::Delivered,
    ) -> anyhow::Result<()> {
        let part = (topic.to_owned(), delivered.partition);
        let start = std::time::Instant::now();
        loop {
            let committed = huleedu_it::committed_offsets(
                &self.kafka,
                huleedu_it::stack::BOS_GROUP,
                vec![part.clone()],
            )
            .await?;
            if committed.get(&part).copied().unwrap_or(0) > delivered.offset {
                return Ok(());
            }
            ensure!(
                start.elapsed() < T,
                "the orchestrators did not commit past {topic}[{}]@{} within {T:?}",
                delivered.partition,
                delivered.offset
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fail as soon as a message of `topic` for `batch` appears within `window` (a check that
    /// something does *not* happen needs a window).
    pub async fn none_within(
        &self,
        topic: &str,
        batch: &str,
        window: Duration,
        what: &str,
    ) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < window {
            ensure!(self.on(topic, batch).is_empty(), "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(self.on(topic, batch).is_empty(), "{what}");
        Ok(())
    }

    /// Wait (deadline [`T`]) until at least `n` messages of `topic` keyed `batch` were seen,
    /// and return those messages.
    pub async fn wait_count(&self, topic: &str, batch: &str, n: usize, what: &str) -> Vec<Seen> {
        let of = |m: &Seen| m.topic == topic && m.key.as_deref() == Some(batch);
        self.reader
            .wait_for(T, what, |all| all.iter().filter(|m| of(m)).count() >= n)
            .await
            .into_iter()
            .filter(of)
            .collect()
    }

    /// Messages of `topic` whose key is `batch`.
    pub fn on(&self, topic: &str, batch: &str) -> Vec<Seen> {
        self.reader
            .on(topic)
            .into_iter()
            .filter(|m| m.key.as_deref() == Some(batch))
            .collect()
    }

    /// Wait for the terminal event of a request and return its `data`; checks there is exactly
    /// one (distinct `event_id`). Returns once the reader has also seen everything published
    /// before it on every topic (each topic is read on its own), so a scenario may assert on
    /// the commands, skips and outcomes of the request with [`Ctx::on`].
    pub async fn terminal(&self, s: Submitted) -> anyhow::Result<Value> {
        let corr = s.correlation_id.to_string();
        let seen = self
            .reader
            .wait_for(T, &format!("terminal event of {corr}"), |all| {
                all.iter().any(|m| {
                    m.topic == topics::BATCH_PIPELINE_COMPLETED
                        && m.json()["correlation_id"] == corr.as_str()
                })
            })
            .await;
        let mine: Vec<Value> = seen
            .iter()
            .filter(|m| m.topic == topics::BATCH_PIPELINE_COMPLETED)
            .map(Seen::json)
            .filter(|v| v["correlation_id"] == corr.as_str())
            .collect();
        self.reader.caught_up(T).await?;
        let ids: BTreeSet<String> = mine.iter().map(|v| v["event_id"].to_string()).collect();
        ensure!(
            ids.len() == 1,
            "exactly one terminal event for {corr}, saw {}",
            ids.len()
        );
        Ok(mine[0]["data"].clone())
    }

    /// How often the simulator was dispatched each phase of `batch` (distinct command ids).
    pub async fn counts(&self, batch: &str) -> anyhow::Result<Value> {
        let v: Value = self
            .http
            .get(format!("{}/v1/counts/{batch}", self.sim))
            .send()
            .await?
            .json()
            .await?;
        let mut out = serde_json::Map::new();
        if let Some(phases) = v["phases"].as_object() {
            for (p, c) in phases {
                out.insert(p.clone(), c["dispatched"].clone());
            }
        }
        Ok(Value::Object(out))
    }

    pub async fn bcs_phases(&self, batch: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}/internal/v1/batches/{batch}/phases", self.bcs))
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "BCS phases answered {}",
            r.status()
        );
        Ok(r.json().await?)
    }

    /// The orchestrator's status of `batch`: the HTTP status, and the document when 2xx.
    pub async fn bos_status(&self, batch: &str) -> anyhow::Result<(u16, Option<BatchStatusView>)> {
        let r = self
            .http
            .get(format!("{}/v1/batches/{batch}/status", self.bos))
            .send()
            .await?;
        let code = r.status().as_u16();
        let doc = if r.status().is_success() {
            Some(r.json().await?)
        } else {
            None
        };
        Ok((code, doc))
    }

    /// Operator mark on the conductor; `token` None sends no Authorization header.
    pub async fn mark(
        &self,
        batch: &str,
        phase: &str,
        success: bool,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("{}/internal/v1/phases/complete", self.bcs))
            .json(&json!({"batch_id": batch, "phase_name": phase, "success": success, "reason": "e2e", "operator": "e2e-operator"}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let code = r.status().as_u16();
        Ok((code, r.json().await.unwrap_or(Value::Null)))
    }

    pub fn token(&self) -> &'static str {
        OPERATOR_TOKEN
    }
}

/// The phases in a terminal event's list field.
pub fn list(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Essay ids of a command's `essays_to_process` with their text ids.
pub fn essays_of(cmd: &Seen) -> Vec<(String, String)> {
    cmd.json()["data"]["essays_to_process"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["essay_id"].as_str().unwrap_or_default().to_owned(),
                        e["text_storage_id"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
