//! Topic provisioning at start-up: create what is missing, leave what exists.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::context::LogContext;
use crate::{KafkaError, KafkaSettings};

/// How long start-up waits for the broker before giving up.
pub const STARTUP_WAIT: Duration = Duration::from_secs(120);

/// Create every topic in `topics` that does not exist yet, with the configured partition count
/// and replication factor. Existing topics are left unchanged. While the broker cannot be
/// reached this retries with backoff for up to [`STARTUP_WAIT`]; a refused topic (invalid name
/// or partition count) fails at once.
pub async fn provision_topics(settings: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
    provision_topics_within(settings, topics, STARTUP_WAIT).await
}

/// [`provision_topics`] with an explicit time budget.
pub async fn provision_topics_within(
    settings: &KafkaSettings,
    topics: &[&str],
    budget: Duration,
) -> Result<(), KafkaError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match try_provision(settings, topics).await {
            Ok(()) => return Ok(()),
            Err(e @ KafkaError::CreateTopic { .. }) | Err(e @ KafkaError::Client(_)) => {
                return Err(e)
            }
            Err(e) if start.elapsed() + delay > budget => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                    bootstrap = %settings.bootstrap_servers, "broker not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn try_provision(settings: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<LogContext> = settings
        .admin_config()
        .create_with_context(LogContext)
        .map_err(KafkaError::Client)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                settings.topic_partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(new.iter(), &opts).await;
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            tokio::task::spawn_blocking(move || drop(admin));
            return Err(KafkaError::Admin(e));
        }
    };
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((
                topic,
                code @ (RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::TopicAuthorizationFailed),
            )) => {
                tokio::task::spawn_blocking(move || drop(admin));
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
            Err((topic, code)) => {
                // Broker not ready (no controller yet, timeouts): retried by the caller.
                tokio::task::spawn_blocking(move || drop(admin));
                return Err(KafkaError::Admin(rdkafka::error::KafkaError::AdminOp(code)))
                    .inspect_err(|_| tracing::debug!(topic, "topic creation will be retried"));
            }
        }
    }
    if !created.is_empty() {
        tracing::info!(topics = ?created, partitions = settings.topic_partitions, "created topics");
    }
    // Dropping an admin client joins its threads; keep that off the async workers.
    tokio::task::spawn_blocking(move || drop(admin));
    Ok(())
}

/// The topics a consumer of `topics` needs: each topic and its `<topic>.DLQ`.
pub fn with_dlq_topics(topics: &[&str]) -> Vec<String> {
    topics
        .iter()
        .flat_map(|t| [t.to_string(), huleedu_contracts::topics::dlq_topic(t)])
        .collect()
}
