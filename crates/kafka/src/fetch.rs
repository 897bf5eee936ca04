//! [`read_at`]: one message by its position, for tools that act on a single record (the
//! conductor's re-drive of a dead letter).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{Inbound, KafkaError, KafkaSettings};

/// The message at `topic`/`partition`/`offset`, or `None` when the partition does not hold it
/// (before the log start — deleted by retention —, at or past its end, or compacted away).
/// Reads with a consumer of its own that joins no group and commits nothing. Fails when the
/// broker does not answer within `timeout` or does not know the topic or partition.
pub async fn read_at(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<Inbound>, KafkaError> {
    let mut config = settings.base();
    config
        .set("group.id", format!("{}-reader", settings.consumer_group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    let topic = topic.to_owned();
    let read = move || -> Result<Option<Inbound>, KafkaError> {
        let failed = |reason: String| KafkaError::Read {
            topic: topic.clone(),
            partition,
            offset,
            reason,
        };
        let consumer: BaseConsumer = config.create().map_err(KafkaError::Client)?;
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, timeout)
            .map_err(|e| failed(e.to_string()))?;
        if offset < low || offset >= high {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
            .map_err(|e| failed(e.to_string()))?;
        consumer.assign(&tpl).map_err(|e| failed(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() == offset => return Ok(Some(Inbound::from_message(&m))),
                // The offset is gone (compacted): the next message came instead.
                Some(Ok(m)) if m.offset() > offset => return Ok(None),
                Some(Ok(_)) | None => {}
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(None),
                Some(Err(e)) => return Err(failed(e.to_string())),
            }
        }
        Err(failed(format!("no answer within {timeout:?}")))
    };
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
