//! Topic provisioning at start-up: create what is missing, leave what exists.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::context::LogContext;
use crate::{KafkaError, KafkaSettings};

/// Create every topic in `topics` that does not exist yet, with the configured partition count
/// and replication factor. Existing topics are left unchanged.
pub async fn provision_topics(settings: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
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
    let results = admin
        .create_topics(new.iter(), &AdminOptions::new())
        .await
        .map_err(KafkaError::Admin)?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
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
