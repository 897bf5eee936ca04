//! Where outgoing events go: the Kafka [`Producer`] in the service, a [`MemoryPublisher`] in
//! component tests that need no broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use huleedu_kafka::{OutgoingMessage, Producer};
use parking_lot::Mutex;

/// A publish that was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("publish to {topic} failed")]
pub struct PublishError {
    /// The topic the message was for.
    pub topic: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Publishes one message and resolves once the broker acknowledged it.
pub trait Publisher: Send + Sync + 'static {
    fn publish<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<(), PublishError>>;
}

impl Publisher for Producer {
    fn publish<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            self.send(msg).await.map(|_| ()).map_err(|e| PublishError {
                topic: msg.topic.clone(),
                source: Box::new(e),
            })
        })
    }
}

/// Keeps published messages in memory (for tests without a broker). Can be told to fail the
/// next few publishes, to exercise retries.
#[derive(Debug, Clone, Default)]
pub struct MemoryPublisher {
    sent: Arc<Mutex<Vec<OutgoingMessage>>>,
    failures_left: Arc<AtomicUsize>,
}

impl MemoryPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message published so far, in order.
    pub fn sent(&self) -> Vec<OutgoingMessage> {
        self.sent.lock().clone()
    }

    /// The next `n` publishes fail.
    pub fn fail_next(&self, n: usize) {
        self.failures_left.store(n, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected publish failure")]
struct InjectedFailure;

impl Publisher for MemoryPublisher {
    fn publish<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<(), PublishError>> {
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let result = if failing {
            Err(PublishError {
                topic: msg.topic.clone(),
                source: Box::new(InjectedFailure),
            })
        } else {
            self.sent.lock().push(msg.clone());
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}
