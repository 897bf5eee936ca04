//! The console's upstreams: the orchestrator's and the conductor's HTTP APIs, and the broker
//! (dead-letter topics read to their end; pipeline requests published).

use std::time::Duration;

use hulectl::http::segment;
use hulectl::kafka::{ReadAll, TopicSet};
use huleedu_contracts::http::bos::{
    BatchListPage, BatchStatusView, RetryPhaseAccepted, RetryPhaseRequest,
};
use huleedu_contracts::http::redrive::{RedriveRecord, RedriveRequest};
use huleedu_contracts::topics;
use huleedu_kafka::{KafkaSettings, Producer};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

/// How long one call to the orchestrator or the conductor may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the dead-letter topics may take.
const DLQ_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Which upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Orchestrator,
    Conductor,
    Broker,
}

impl Upstream {
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Orchestrator => "the orchestrator",
            Upstream::Conductor => "the conductor",
            Upstream::Broker => "the broker",
        }
    }
}

/// A call that did not give what was asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{} could not be reached: {reason}", .upstream.name())]
    Unreachable { upstream: Upstream, reason: String },
    /// An error answer: its status, `error` and `detail` (the services' JSON error body).
    #[error("{} answered {status}: {error}: {detail}", .upstream.name())]
    Status {
        upstream: Upstream,
        status: u16,
        error: String,
        detail: String,
    },
    #[error("{} answered something unexpected: {reason}", .upstream.name())]
    Unexpected { upstream: Upstream, reason: String },
}

impl CallError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The orchestrator, the conductor and the broker, as the console uses them.
#[derive(Clone)]
pub struct Clients {
    http: reqwest::Client,
    bos: String,
    bcs: String,
    kafka: KafkaSettings,
    producer: Producer,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("bos", &self.bos)
            .field("bcs", &self.bcs)
            .finish_non_exhaustive()
    }
}

/// The text of an error body's `detail` (a string, or an object shown as JSON).
fn detail_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(o) if o.get("message").is_some_and(Value::is_string) => {
            let mut text = o["message"].as_str().unwrap_or_default().to_owned();
            let r = &o.get("record").cloned().unwrap_or(Value::Null);
            let f = |k: &str| r[k].as_str().map(str::to_owned);
            if let (Some(state), Some(at)) = (f("state"), f("at")) {
                // A re-drive's record: when, by whom, how it ended.
                text.push_str(&format!(
                    " — re-driven at {at} by {} ({state}: {})",
                    f("operator").unwrap_or_else(|| "?".into()),
                    f("reason").unwrap_or_default()
                ));
            } else if !r.is_null() {
                text.push_str(&format!(" — {r}"));
            }
            text
        }
        other => other.to_string(),
    }
}

impl Clients {
    pub fn new(bos: &str, bcs: &str, kafka: &KafkaSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .user_agent("pipeline-console")
                .build()?,
            bos: bos.to_owned(),
            bcs: bcs.to_owned(),
            kafka: kafka.clone(),
            producer: Producer::new(kafka)?,
        })
    }

    fn base(&self, upstream: Upstream) -> &str {
        match upstream {
            Upstream::Orchestrator => &self.bos,
            _ => &self.bcs,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        upstream: Upstream,
        req: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let resp = req.send().await.map_err(|e| CallError::Unreachable {
            upstream,
            reason: root_cause(&e),
        })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| CallError::Unreachable {
            upstream,
            reason: root_cause(&e),
        })?;
        if !status.is_success() {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            return Err(CallError::Status {
                upstream,
                status: status.as_u16(),
                error: v["error"].as_str().unwrap_or("error").to_owned(),
                detail: if v.is_null() {
                    body.chars().take(300).collect()
                } else {
                    detail_text(&v["detail"])
                },
            });
        }
        serde_json::from_str(&body).map_err(|e| CallError::Unexpected {
            upstream,
            reason: e.to_string(),
        })
    }

    fn get(&self, upstream: Upstream, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base(upstream)))
    }

    fn post(&self, upstream: Upstream, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base(upstream)))
            .bearer_auth(token)
    }

    /// A page of `GET /v1/batches`.
    pub async fn batches(
        &self,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<BatchListPage, CallError> {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(s) = status {
            query.push(("status", s.to_owned()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let req = self
            .get(Upstream::Orchestrator, "/v1/batches")
            .query(&query);
        self.call(Upstream::Orchestrator, req).await
    }

    /// The orchestrator's status of a batch; `None` when it does not know the batch.
    pub async fn batch_status(&self, batch: &str) -> Result<Option<BatchStatusView>, CallError> {
        let path = format!("/v1/batches/{}/status", segment(batch));
        match self
            .call(
                Upstream::Orchestrator,
                self.get(Upstream::Orchestrator, &path),
            )
            .await
        {
            Err(e) if e.status() == Some(404) => Ok(None),
            r => r.map(Some),
        }
    }

    /// The conductor's phase records of a batch (`GET /internal/v1/batches/{id}/phases`).
    pub async fn phase_records(&self, batch: &str) -> Result<Value, CallError> {
        let path = format!("/internal/v1/batches/{}/phases", segment(batch));
        self.call(Upstream::Conductor, self.get(Upstream::Conductor, &path))
            .await
    }

    /// Mark a phase (`POST /internal/v1/phases/complete`).
    pub async fn mark(&self, token: &str, body: &Value) -> Result<Value, CallError> {
        let req = self
            .post(Upstream::Conductor, "/internal/v1/phases/complete", token)
            .json(body);
        self.call(Upstream::Conductor, req).await
    }

    /// Run a phase again for some essays (`POST /v1/batches/{id}/retry-phase`).
    pub async fn retry(
        &self,
        token: &str,
        batch: &str,
        body: &RetryPhaseRequest,
    ) -> Result<RetryPhaseAccepted, CallError> {
        let path = format!("/v1/batches/{}/retry-phase", segment(batch));
        let req = self.post(Upstream::Orchestrator, &path, token).json(body);
        self.call(Upstream::Orchestrator, req).await
    }

    /// Re-drive a poison record (`POST /internal/v1/dlq/redrive`).
    pub async fn redrive(
        &self,
        token: &str,
        body: &RedriveRequest,
    ) -> Result<RedriveRecord, CallError> {
        let req = self
            .post(Upstream::Conductor, "/internal/v1/dlq/redrive", token)
            .json(body);
        self.call(Upstream::Conductor, req).await
    }

    /// Whether `upstream` answers `/healthz`.
    pub async fn alive(&self, upstream: Upstream) -> Result<(), String> {
        let r = self
            .get(upstream, "/healthz")
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .map_err(|e| root_cause(&e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("/healthz answered {}", r.status()))
        }
    }

    /// Every dead-letter record: the failed-essay DLQ and every `<topic>.DLQ`, read to their
    /// end as of now.
    pub async fn dead_letters(&self) -> Result<ReadAll, CallError> {
        let kafka = self.kafka.clone();
        let set = TopicSet::new(&[topics::FAILED_ESSAYS_DLQ], true);
        tokio::task::spawn_blocking(move || {
            hulectl::kafka::read_to_end(&kafka, &set, DLQ_READ_TIMEOUT)
        })
        .await
        .map_err(|e| CallError::Unexpected {
            upstream: Upstream::Broker,
            reason: e.to_string(),
        })?
        .map_err(|e| CallError::Unreachable {
            upstream: Upstream::Broker,
            reason: format!("{e:#}"),
        })
    }

    /// Publish a pipeline request for `batch` (as a client would); its correlation id.
    pub async fn submit(&self, batch: &str, pipeline: &str, user: &str) -> Result<Uuid, CallError> {
        let correlation = Uuid::new_v4();
        let (_, msg) = hulectl::commands::pipeline_request(batch, pipeline, user, correlation)
            .map_err(|e| CallError::Status {
                upstream: Upstream::Broker,
                status: 422,
                error: "invalid_request".into(),
                detail: e.to_string(),
            })?;
        self.producer
            .send(&msg)
            .await
            .map_err(|e| CallError::Unreachable {
                upstream: Upstream::Broker,
                reason: e.to_string(),
            })?;
        Ok(correlation)
    }
}

/// The innermost cause of an error (e.g. "Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
