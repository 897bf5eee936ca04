//! The producer every service uses: each send awaits the broker's acknowledgement.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::context::LogContext;
use crate::{KafkaError, KafkaSettings};

/// One message to publish. The key is the batch id, so a batch's events stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutgoingMessage {
    pub fn new(
        topic: impl Into<String>,
        key: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            payload: payload.into(),
            headers: Vec::new(),
        }
    }
}

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A cheap-to-clone handle to one idempotent producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<LogContext>,
    refusals: std::sync::Arc<crate::context::Refusals>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let context = LogContext::default();
        let refusals = context.refusals.clone();
        let inner = settings
            .producer_config()
            .create_with_context(context)
            .map_err(KafkaError::Client)?;
        Ok(Self { inner, refusals })
    }

    /// Publish and wait for the broker's acknowledgement (`acks=all`).
    pub async fn send(&self, msg: &OutgoingMessage) -> Result<Delivered, KafkaError> {
        self.send_parts(
            &msg.topic,
            Some(msg.key.as_bytes()),
            &msg.payload,
            &msg.headers,
        )
        .await
    }

    /// Like [`Producer::send`], from borrowed parts; `key` may be absent (dead-lettered
    /// messages keep their original key, or lack of one).
    pub async fn send_parts(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(String, Vec<u8>)],
    ) -> Result<Delivered, KafkaError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if !headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            record = record.headers(h);
        }
        match self.inner.send(record, Duration::from_secs(5)).await {
            Ok(d) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((source, _)) => Err(KafkaError::Delivery {
                topic: topic.to_owned(),
                source,
            }),
        }
    }

    /// Can the broker be reached? A metadata request with a time-out (readiness probes).
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let inner = self.inner.clone();
        let refusals = self.refusals.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|e| match refusals.recent(Duration::from_secs(300)) {
                    Some(reason) => format!("the broker refused the connection: {reason}"),
                    None => format!("broker unreachable: {e}"),
                })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Wait until every queued message is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.inner.flush(timeout) {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }

    /// At shutdown: flush (up to `timeout`) and drop this handle, off the async workers (both
    /// block).
    pub async fn close(self, timeout: Duration) {
        let _ = tokio::task::spawn_blocking(move || {
            self.flush(timeout);
            drop(self);
        })
        .await;
    }
}
