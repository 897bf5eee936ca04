//! Topic provisioning at start-up: create what is missing, leave what exists.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::context::LogContext;
use crate::settings::DLQ_HEADROOM_BYTES;
use crate::{KafkaError, KafkaSettings};

/// How long start-up waits for the broker before giving up.
pub const STARTUP_WAIT: Duration = Duration::from_secs(120);

/// Create every topic in `topics` that does not exist yet, with the configured partition count
/// and replication factor, and `max.message.bytes` = `KAFKA_MAX_MESSAGE_BYTES` (DLQ topics 64
/// KiB more, for the headers of a dead-letter copy); then wait until the broker lists every one
/// of them with its partitions. Existing topics are left unchanged. While the broker cannot be
/// reached this retries with backoff for up to [`STARTUP_WAIT`]; a refused topic (invalid name
/// or partition count) fails at once.
pub async fn provision_topics(
    settings: &KafkaSettings,
    topics: &[impl AsRef<str> + Sync],
) -> Result<(), KafkaError> {
    provision_topics_within(settings, topics, STARTUP_WAIT).await
}

/// [`provision_topics`] with an explicit time budget.
pub async fn provision_topics_within(
    settings: &KafkaSettings,
    topics: &[impl AsRef<str> + Sync],
    budget: Duration,
) -> Result<(), KafkaError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match try_provision(settings, topics).await {
            Ok(()) => return Ok(()),
            Err(
                e @ (KafkaError::CreateTopic { .. }
                | KafkaError::Client(_)
                | KafkaError::Refused { .. }),
            ) => return Err(e),
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

/// A client for metadata requests. No group.id: as a consumer it polls the client's main queue,
/// where log and error events go.
fn metadata_client(settings: &KafkaSettings) -> Result<BaseConsumer<LogContext>, KafkaError> {
    settings
        .admin_config()
        .create_with_context(LogContext::default())
        .map_err(KafkaError::Client)
}

/// Ask the broker for metadata with a client whose events are polled, so that a refusal
/// (authentication, TLS) is seen — the admin client's own error and log events are never
/// polled by rdkafka. `Ok` when the broker answered, [`KafkaError::Refused`] when it refused
/// this client (naming the settings to check), [`KafkaError::Admin`] when it did not answer
/// (down, starting). Blocking: call it off the async workers.
pub fn check_broker_blocking(
    settings: &KafkaSettings,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let probe = metadata_client(settings)?;
    let answered = probe.fetch_metadata(None, timeout);
    // Serve the log and error events queued meanwhile (they carry the refusal).
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let _ = probe.poll(Duration::from_millis(50));
    }
    match (
        answered,
        probe.context().recent_refusal(Duration::from_secs(60)),
    ) {
        (Ok(_), _) => Ok(()),
        (Err(_), Some(reason)) => Err(KafkaError::Refused {
            reason,
            hint: settings.security.hint(),
        }),
        (Err(e), None) => Err(KafkaError::Admin(e)),
    }
}

/// How long the broker check before provisioning may take.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

async fn preflight(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || check_broker_blocking(&settings, PREFLIGHT_TIMEOUT))
        .await
        .map_err(|e| KafkaError::CreateTopic {
            topic: String::new(),
            reason: format!("the broker check panicked: {e}"),
        })?
}

async fn try_provision(
    settings: &KafkaSettings,
    topics: &[impl AsRef<str> + Sync],
) -> Result<(), KafkaError> {
    preflight(settings).await?;
    let admin: AdminClient<LogContext> = settings
        .admin_config()
        .create_with_context(LogContext::default())
        .map_err(KafkaError::Client)?;
    // The deployment's size limit on the topics it creates; DLQ topics take a dead-letter
    // copy of a message at the limit with its headers.
    let event_limit = settings.max_message_bytes.to_string();
    let dlq_limit = (settings.max_message_bytes + DLQ_HEADROOM_BYTES).to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let limit = if t.as_ref().ends_with(huleedu_contracts::topics::DLQ_SUFFIX) {
                &dlq_limit
            } else {
                &event_limit
            };
            NewTopic::new(
                t.as_ref(),
                settings.topic_partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
            .set("max.message.bytes", limit)
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
    // A topic just created may not be in the broker's metadata yet. A consumer that subscribes
    // then is not assigned its partitions until its next metadata refresh, minutes later: wait
    // until every topic is listed with its partitions.
    let settings = settings.clone();
    let names: Vec<String> = topics.iter().map(|t| t.as_ref().to_owned()).collect();
    tokio::task::spawn_blocking(move || wait_until_listed(&settings, &names, METADATA_WAIT))
        .await
        .map_err(|e| KafkaError::CreateTopic {
            topic: String::new(),
            reason: format!("the metadata wait panicked: {e}"),
        })?
}

/// Longest wait for created topics to appear in the broker's metadata.
const METADATA_WAIT: Duration = Duration::from_secs(30);

/// Wait until the broker lists each of `topics` with at least one partition: one metadata
/// request for all of them per try. Blocking.
fn wait_until_listed(
    settings: &KafkaSettings,
    topics: &[String],
    within: Duration,
) -> Result<(), KafkaError> {
    let client = metadata_client(settings)?;
    let until = Instant::now() + within;
    loop {
        let missing = match client.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(md) => topics.iter().find(|name| {
                !md.topics().iter().any(|t| {
                    t.name() == name.as_str() && t.error().is_none() && !t.partitions().is_empty()
                })
            }),
            Err(_) => topics.first(),
        };
        let Some(topic) = missing else {
            return Ok(());
        };
        if Instant::now() > until {
            return Err(KafkaError::CreateTopic {
                topic: topic.clone(),
                reason: format!("not in the broker's metadata {within:?} after creation"),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The topics a consumer of `topics` needs: each topic and its `<topic>.DLQ`.
pub fn with_dlq_topics(topics: &[&str]) -> Vec<String> {
    topics
        .iter()
        .flat_map(|t| [t.to_string(), huleedu_contracts::topics::dlq_topic(t)])
        .collect()
}
