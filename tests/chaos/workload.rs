//! The load the scenarios put on a stack: demo batches registered with the simulator, pipeline
//! requests published as a client would, terminal events awaited through the observer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::payloads::ClientBatchPipelineRequestV1;
use huleedu_contracts::topics;
use huleedu_it::observer::Observer;
use huleedu_it::unique;
use huleedu_kafka::{KafkaSettings, OutgoingMessage, Producer};
use serde_json::{json, Value};
use uuid::Uuid;

/// The sequential pipelines every batch runs (acceptance scenario 3).
pub const PIPELINES: [&str; 3] = ["cj_assessment", "nlp", "ai_feedback"];

/// Essays per batch.
pub const ESSAYS: usize = 10;

/// How a batch submits its pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The next request after the previous one's terminal event (causal pruning at work).
    Sequential,
    /// All three requests at once (the orchestrator queues them).
    Queued,
}

/// A request that got its terminal event, and how long that took from its submission (for
/// queued requests: from the submission of the batch's first request).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub took: Duration,
    /// When its terminal event was seen.
    pub done_at: Instant,
}

/// Publishes requests and registers batches.
#[derive(Clone)]
pub struct Client {
    producer: Producer,
    http: reqwest::Client,
    sim: String,
    pub observer: Arc<Observer>,
}

impl Client {
    pub fn new(kafka: &str, sim: &str, observer: Arc<Observer>) -> anyhow::Result<Self> {
        let settings = KafkaSettings::local(kafka, "chaos-client", &unique("chaos-client"));
        Ok(Self {
            producer: Producer::new(&settings)?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            sim: sim.to_owned(),
            observer,
        })
    }

    /// Register a batch of [`ESSAYS`] essays with the simulator, with per-phase failing essays
    /// (1-based essay numbers).
    pub async fn register(&self, batch: &str, fail: &[(&str, &[usize])]) -> anyhow::Result<()> {
        let mut f = serde_json::Map::new();
        for (phase, idx) in fail {
            let ids: Vec<String> = idx.iter().map(|i| essay_id(batch, *i)).collect();
            f.insert((*phase).to_owned(), json!(ids));
        }
        let r = self
            .http
            .post(format!("{}/v1/batches", self.sim))
            .json(&json!({"batch_id": batch, "essay_count": ESSAYS, "fail": Value::Object(f)}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 201,
            "register {batch}: {}",
            r.status()
        );
        Ok(())
    }

    /// Publish a `ClientBatchPipelineRequestV1`. A failed publish is retried with the same
    /// bytes (same `event_id`): the orchestrator drops a copy that did arrive.
    pub async fn request(&self, batch: &str, pipeline: &str) -> anyhow::Result<Uuid> {
        let correlation_id = Uuid::new_v4();
        let env = EventEnvelope::new(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            "chaos_client",
            correlation_id,
            ClientBatchPipelineRequestV1 {
                batch_id: batch.to_owned(),
                requested_pipeline: pipeline.to_owned(),
                client_correlation_id: correlation_id,
                user_id: "teacher-chaos".to_owned(),
                is_retry: false,
                retry_reason: None,
                prompt_payload: None,
            },
        );
        let msg = OutgoingMessage::new(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            batch,
            env.to_json_bytes(),
        );
        let mut attempt = 0;
        loop {
            match self.producer.send(&msg).await {
                Ok(_) => return Ok(correlation_id),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, "request publish failed; re-sending the same bytes");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e).context("publishing a request"),
            }
        }
    }

    /// Wait until the terminal event of `correlation_id` has been observed.
    pub async fn terminal(&self, correlation_id: Uuid, deadline: Instant) -> anyhow::Result<()> {
        let corr = correlation_id.to_string();
        loop {
            if self.observer.terminals_for(&corr) > 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no terminal event for request {corr} before the deadline");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run the three pipelines of a batch; the requests as submitted (also when one failed to
    /// finish in time: the error names it).
    pub async fn run_batch(
        &self,
        batch: &str,
        mode: Mode,
        deadline: Instant,
    ) -> (Vec<Submitted>, anyhow::Result<()>) {
        let mut out = Vec::new();
        let r: anyhow::Result<()> = async {
            match mode {
                Mode::Sequential => {
                    for p in PIPELINES {
                        let start = Instant::now();
                        let c = self.request(batch, p).await?;
                        self.terminal(c, deadline)
                            .await
                            .with_context(|| format!("{p} of {batch}"))?;
                        out.push(Submitted {
                            took: start.elapsed(),
                            done_at: Instant::now(),
                        });
                    }
                }
                Mode::Queued => {
                    let start = Instant::now();
                    let mut ids = Vec::new();
                    for p in PIPELINES {
                        ids.push((p, self.request(batch, p).await?));
                    }
                    for (p, c) in ids {
                        self.terminal(c, deadline)
                            .await
                            .with_context(|| format!("{p} of {batch} (queued)"))?;
                        out.push(Submitted {
                            took: start.elapsed(),
                            done_at: Instant::now(),
                        });
                    }
                }
            }
            Ok(())
        }
        .await;
        (out, r)
    }
}

/// The simulator's id of essay `i` (1-based) of a batch.
pub fn essay_id(batch: &str, i: usize) -> String {
    format!("{batch}-e{i:02}")
}

/// Failing essays for batch number `i`: a mix of clean batches and batches with failures in
/// spellcheck, nlp, cj_assessment and ai_feedback (never all essays: no critical failures).
pub fn failures(i: usize) -> Vec<(&'static str, &'static [usize])> {
    let mut f: Vec<(&'static str, &'static [usize])> = Vec::new();
    if i.is_multiple_of(3) {
        f.push(("spellcheck", &[3, 7]));
    }
    if i % 4 == 1 {
        f.push(("nlp", &[5]));
    }
    if i % 5 == 2 {
        f.push(("cj_assessment", &[2]));
        f.push(("ai_feedback", &[9]));
    }
    f
}

/// Check the simulator's own count: every (batch, phase) dispatched by one command id.
pub async fn simulator_counts(sim: &str, batches: &[String]) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    for b in batches {
        let v: Value = http
            .get(format!("{sim}/v1/counts/{b}"))
            .send()
            .await?
            .json()
            .await?;
        for p in ["spellcheck", "cj_assessment", "nlp", "ai_feedback"] {
            let n = v["phases"][p]["dispatched"].as_u64().unwrap_or(0);
            if n != 1 {
                problems.push(format!("simulator: {p} of {b} dispatched {n} times"));
            }
        }
    }
    Ok(problems)
}
