//! Kafka plumbing for the HuleEdu pipeline services, over rdkafka (bundled librdkafka).
//!
//! Services never build a raw `ClientConfig`; they go through this crate:
//!
//! - [`settings`]: [`KafkaSettings`] from the environment ([`KafkaArgs`], the variables as clap
//!   arguments), and the client configurations derived from it (every non-default librdkafka setting has its reason next to it).
//! - [`security`]: [`KafkaSecurity`] — TLS, SASL (PLAIN, SCRAM) and a Java-style client
//!   properties file, checked at start-up; secrets never logged.
//! - [`context`]: librdkafka's logs and errors routed to `tracing`; rebalance callbacks that
//!   commit stored offsets before partitions are revoked.
//! - [`producer`]: [`Producer`] — `acks=all`, idempotence, `murmur2_random`, key = batch id,
//!   each send awaits the broker's acknowledgement.
//! - [`admin`]: [`provision_topics`] creates missing topics at start-up.
//! - [`fetch`]: [`read_at`] reads one message by topic, partition and offset (re-drives).
//! - [`consumer`]: [`ConsumerRunner`], the at-least-once loop: a [`Handler`] answers
//!   *done*, *transient* (retry with backoff, partition does not advance) or *permanent*
//!   (original bytes to `<topic>.DLQ` with the poison headers); offsets are stored only after
//!   the handler's effects are committed and committed on revoke and at shutdown. A consumed
//!   message is copied into an owned [`Inbound`] (and, for tools and tests that show messages,
//!   a [`TextMessage`]) in one place: [`Inbound::from_message`].
//!
//! Data flow: broker → `ConsumerRunner` → `Handler` (service code: decode, decide, commit to
//! Redis) → offset stored → auto-commit. Outgoing events leave through [`Producer`], usually via
//! the outbox relay of `huleedu-store`.

pub mod admin;
pub mod consumer;
pub mod context;
pub mod fetch;
pub mod producer;
pub mod security;
pub mod settings;

pub use admin::provision_topics;
pub use consumer::{
    ConsumerRunner, ConsumerStatus, FailureKind, Handler, HandlerResult, Inbound, TextMessage,
};
pub use fetch::read_at;
pub use producer::{OutgoingMessage, Producer};
pub use security::{KafkaSecurity, KafkaSecurityArgs, SaslMechanism, SecurityProtocol};
pub use settings::{KafkaArgs, KafkaSettings};

/// Errors of the Kafka plumbing, with the context needed to act on them.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client could not be created")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("could not subscribe to {topics:?}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the broker refused the connection: {reason} (check {hint})")]
    Refused { reason: String, hint: String },
    #[error("could not create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("could not read {topic}/{partition} at offset {offset}: {reason}")]
    Read {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("admin request failed")]
    Admin(#[source] rdkafka::error::KafkaError),
    #[error("delivery to {topic} failed")]
    Delivery {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl KafkaError {
    /// A delivery refused because the message is larger than the producer's
    /// `message.max.bytes` or the topic's `max.message.bytes`.
    pub fn is_too_large(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as C;
        matches!(self, KafkaError::Delivery { source, .. }
            if matches!(source.rdkafka_error_code(), Some(C::MessageSizeTooLarge | C::InvalidMessageSize)))
    }

    /// A delivery the broker refuses for reasons no retry changes (the message is too large,
    /// invalid, or aimed at an invalid topic name). Everything else may succeed later.
    pub fn is_refused_for_good(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as C;
        let KafkaError::Delivery { source, .. } = self else {
            return false;
        };
        matches!(
            source.rdkafka_error_code(),
            Some(
                C::MessageSizeTooLarge
                    | C::InvalidMessageSize
                    | C::InvalidMessage
                    | C::InvalidTopic
                    | C::InvalidRecord
            )
        )
    }
}
