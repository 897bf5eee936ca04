//! Re-drive of a poison dead-letter record (`POST /internal/v1/dlq/redrive`, operators): the
//! record's original bytes and key go back to the topic they came from, at most once per record.
//!
//! ```text
//! request ──▶ SET <prefix>:redrive:<dlq topic>:<partition>:<offset> NX  (state publishing)
//!               │ taken already ──▶ 409 with the stored record (when, by whom)
//!               ▼
//!            read the record at its position (Kafka) ──▶ publish to the original topic
//!               │                                          with redrive.* headers
//!               ▼
//!            SET … (state published, where it landed) ──▶ 200 with the record
//! ```
//!
//! The claim comes first, so two operators (or a retried request) cannot both publish; a
//! publish that fails releases the claim, and a conductor that stops between the publish and the
//! update leaves the claim `publishing`: never re-driven twice, and the record says to look on
//! the topic. Claims never expire (a re-drive is rare; each is a few hundred bytes).

use std::time::Duration;

use huleedu_contracts::dlq::{headers, redrive_message_headers, redrive_target};
use huleedu_contracts::http::redrive::{RedriveRecord, RedriveRequest, RedriveState};
use huleedu_contracts::Timestamp;
use huleedu_http::ApiError;
use huleedu_kafka::{KafkaSettings, Producer};
use huleedu_store::Store;
use redis::AsyncCommands;

/// How long reading the record may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a re-drive needs besides the store: the broker to read the record from and publish to.
#[derive(Clone)]
pub struct Redriver {
    pub kafka: KafkaSettings,
    pub producer: Producer,
}

impl std::fmt::Debug for Redriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redriver").finish_non_exhaustive()
    }
}

/// The request, checked before anything is read: a poison DLQ, a position, an operator and a
/// reason.
pub fn check(req: &RedriveRequest) -> Result<String, ApiError> {
    let Some(target) = redrive_target(&req.dlq_topic, &[]) else {
        return Err(ApiError::unprocessable(
            "not_a_poison_dlq",
            format!(
                "{:?} is not a poison-message DLQ topic (<topic>.DLQ); failed essays are re-run with the orchestrator's retry-phase",
                req.dlq_topic
            ),
        ));
    };
    if req.partition < 0 || req.offset < 0 {
        return Err(ApiError::unprocessable(
            "bad_position",
            "partition and offset must not be negative",
        ));
    }
    for (name, v) in [("operator", &req.operator), ("reason", &req.reason)] {
        if v.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "missing_field",
                format!("{name} must not be blank"),
            ));
        }
    }
    Ok(target)
}

fn claim_key(store: &Store, req: &RedriveRequest) -> String {
    format!(
        "{}:redrive:{}:{}:{}",
        store.key_prefix(),
        req.dlq_topic,
        req.partition,
        req.offset
    )
}

fn store_failed(e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "re-drive: redis command failed");
    ApiError::unavailable("store_unavailable", "the state store did not answer; retry")
        .with_retry_after(1)
}

fn already(existing: &str) -> ApiError {
    let detail = serde_json::from_str::<serde_json::Value>(existing)
        .unwrap_or_else(|_| serde_json::Value::String(existing.to_owned()));
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "already_redriven",
        serde_json::json!({
            "message": "this record was re-driven before; it is re-driven at most once",
            "record": detail,
        }),
    )
}

/// Re-drive the record `req` names (see the module docs). `req` has passed [`check`].
pub async fn redrive(
    store: &Store,
    r: &Redriver,
    req: &RedriveRequest,
    now: Timestamp,
) -> Result<RedriveRecord, ApiError> {
    let key = claim_key(store, req);
    let mut conn = store.connection();
    if let Some(existing) = conn
        .get::<_, Option<String>>(&key)
        .await
        .map_err(|e| store_failed(&e))?
    {
        return Err(already(&existing));
    }
    let record = huleedu_kafka::read_at(
        &r.kafka,
        &req.dlq_topic,
        req.partition,
        req.offset,
        READ_TIMEOUT,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "re-drive: reading the record failed");
        ApiError::unavailable("broker_unavailable", e.to_string()).with_retry_after(1)
    })?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "{} partition {} holds no record at offset {} (never written, or deleted by retention)",
            req.dlq_topic, req.partition, req.offset
        ))
    })?;
    if let Some((_, size)) = record
        .headers
        .iter()
        .find(|(k, _)| k == headers::PAYLOAD_OMITTED)
    {
        return Err(ApiError::unprocessable(
            "payload_omitted",
            format!(
                "the record holds no copy of the message ({} bytes did not fit the DLQ topic); publish it from its original position ({} / {} / {})",
                String::from_utf8_lossy(size),
                header(&record.headers, headers::ORIGINAL_TOPIC),
                header(&record.headers, headers::ORIGINAL_PARTITION),
                header(&record.headers, headers::ORIGINAL_OFFSET),
            ),
        ));
    }
    let topic = redrive_target(&req.dlq_topic, &record.headers).expect("checked");
    let mut claim = RedriveRecord {
        state: RedriveState::Publishing,
        dlq_topic: req.dlq_topic.clone(),
        dlq_partition: req.partition,
        dlq_offset: req.offset,
        topic: topic.clone(),
        partition: None,
        offset: None,
        operator: req.operator.trim().to_owned(),
        reason: req.reason.trim().to_owned(),
        at: now,
    };
    let claimed: bool = redis::cmd("SET")
        .arg(&key)
        .arg(serde_json::to_string(&claim).expect("serializable"))
        .arg("NX")
        .query_async::<Option<String>>(&mut conn)
        .await
        .map_err(|e| store_failed(&e))?
        .is_some();
    if !claimed {
        let existing: Option<String> = conn.get(&key).await.map_err(|e| store_failed(&e))?;
        return Err(already(existing.as_deref().unwrap_or("{}")));
    }
    let hdrs = redrive_message_headers(
        &record.headers,
        &req.dlq_topic,
        req.partition,
        req.offset,
        &claim.operator,
        &claim.reason,
        now,
    );
    match r
        .producer
        .send_parts(&topic, record.key.as_deref(), &record.payload, &hdrs)
        .await
    {
        Ok(d) => {
            claim.state = RedriveState::Published;
            claim.partition = Some(d.partition);
            claim.offset = Some(d.offset);
            // The message is out: the record says so, or stays `publishing` if this fails.
            let updated: Result<(), _> = conn
                .set(&key, serde_json::to_string(&claim).expect("serializable"))
                .await;
            if let Err(e) = updated {
                tracing::warn!(error = %e, key, "re-drive published; its record stays 'publishing'");
            }
            tracing::info!(dlq_topic = %req.dlq_topic, dlq_partition = req.partition,
                dlq_offset = req.offset, topic = %topic, partition = d.partition, offset = d.offset,
                operator = %claim.operator, reason = %claim.reason, "dead-letter record re-driven");
            Ok(claim)
        }
        Err(e) => {
            let released: Result<(), _> = conn.del(&key).await;
            if let Err(d) = released {
                tracing::warn!(error = %d, key, "re-drive failed and its claim could not be released");
            }
            tracing::warn!(error = %e, topic = %topic, "re-drive: publishing failed");
            Err(ApiError::unavailable(
                "publish_failed",
                format!("publishing to {topic} failed: {e}"),
            )
            .with_retry_after(1))
        }
    }
}

fn header(hs: &[(String, Vec<u8>)], name: &str) -> String {
    hs.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(topic: &str, operator: &str, reason: &str) -> RedriveRequest {
        RedriveRequest {
            dlq_topic: topic.into(),
            partition: 0,
            offset: 4,
            operator: operator.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn only_a_poison_dlq_record_with_an_operator_and_a_reason_is_redriven() {
        assert_eq!(
            check(&req("huleedu.x.v1.DLQ", "ann", "fixed")).unwrap(),
            "huleedu.x.v1"
        );
        for (r, error) in [
            (req("huleedu.x.v1", "ann", "fixed"), "not_a_poison_dlq"),
            (
                req(huleedu_contracts::topics::FAILED_ESSAYS_DLQ, "ann", "fixed"),
                "not_a_poison_dlq",
            ),
            (req("huleedu.x.v1.DLQ", " ", "fixed"), "missing_field"),
            (req("huleedu.x.v1.DLQ", "ann", ""), "missing_field"),
            (
                RedriveRequest {
                    offset: -1,
                    ..req("huleedu.x.v1.DLQ", "ann", "fixed")
                },
                "bad_position",
            ),
        ] {
            assert_eq!(check(&r).unwrap_err().error, error, "{r:?}");
        }
    }
}
