//! JSON bodies of the conductor's re-drive of a dead-letter record
//! (`POST /internal/v1/dlq/redrive`). The service writes them; `hulectl`, the console and the
//! tests read them with the same types.

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// Body of `POST /internal/v1/dlq/redrive` (operators): publish a poison record's original
/// bytes again to the topic it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedriveRequest {
    /// The DLQ topic holding the record (`<topic>.DLQ`).
    pub dlq_topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Who re-drives it (recorded, and sent in the `redrive.operator` header); not blank.
    pub operator: String,
    /// Why (recorded, `redrive.reason`); not blank.
    pub reason: String,
}

/// Whether a re-drive's message has been acknowledged by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RedriveState {
    /// Claimed; the publish was not confirmed (the conductor stopped or the broker failed
    /// while publishing). The record is not re-driven again: look for the message on `topic`.
    Publishing,
    /// The broker acknowledged the message at `partition`/`offset` of `topic`.
    Published,
}

/// The durable record of a record's re-drive: the 200 answer of `POST /internal/v1/dlq/redrive`,
/// and the `detail` of its 409 answer when the record was re-driven before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedriveRecord {
    pub state: RedriveState,
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// The topic the message went back to.
    pub topic: String,
    /// Where it landed, once published.
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub operator: String,
    pub reason: String,
    pub at: Timestamp,
}

impl RedriveRecord {
    /// `<dlq topic> [<p>@<o>] re-driven to <topic> [<p>@<o>] by <operator>` (`?` for a position
    /// not known yet).
    pub fn summary(&self) -> String {
        let at = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        format!(
            "{} [{}@{}] re-driven to {} [{}@{}] by {}",
            self.dlq_topic,
            self.dlq_partition,
            self.dlq_offset,
            self.topic,
            at(self.partition.map(i64::from)),
            at(self.offset),
            self.operator
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_as_one_line() {
        let mut r = RedriveRecord {
            state: RedriveState::Publishing,
            dlq_topic: "t.DLQ".into(),
            dlq_partition: 1,
            dlq_offset: 7,
            topic: "t".into(),
            partition: None,
            offset: None,
            operator: "ann".into(),
            reason: "fixed".into(),
            at: Timestamp::parse("2026-12-02T03:00:00Z").unwrap(),
        };
        assert_eq!(r.summary(), "t.DLQ [1@7] re-driven to t [?@?] by ann");
        (r.partition, r.offset) = (Some(2), Some(40));
        assert_eq!(r.summary(), "t.DLQ [1@7] re-driven to t [2@40] by ann");
    }
}
