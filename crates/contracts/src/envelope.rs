//! The platform's `EventEnvelope`: the outer object of every Kafka message value.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::timestamp::Timestamp;

/// The only envelope schema version in use.
pub const SCHEMA_VERSION: u32 = 1;

fn default_schema_version() -> u32 {
    SCHEMA_VERSION
}

/// An event envelope with payload `T`.
///
/// Serialization writes the nine keys in the platform's order, nulls included. On input only
/// `event_type`, `source_service` and `data` are required, as in the platform schema; the others
/// get the platform's defaults (new uuid4 ids, the current time, version 1, nulls). Unknown keys
/// are ignored. `event_type` is kept as given: it is usually the topic, but BOS writes the bare
/// dotted event name for `BatchPipelineCompletedV1` (INDEX note 7). Route on the topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<T> {
    /// Unique id of this event (lowercase hyphenated on the wire).
    #[serde(default = "Uuid::new_v4")]
    pub event_id: Uuid,
    /// The topic name (or, from some platform producers, the dotted event name).
    pub event_type: String,
    /// When the event was created (`...Z`, microseconds).
    #[serde(default = "Timestamp::now")]
    pub event_timestamp: Timestamp,
    /// Producing service; spellings vary between producers.
    pub source_service: String,
    /// Always 1; other values are rejected by [`crate::decode::decode_envelope`].
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// Propagated from the client request through commands, outcomes and terminal events.
    #[serde(default = "Uuid::new_v4")]
    pub correlation_id: Uuid,
    /// Always `null` in practice.
    #[serde(default)]
    pub data_schema_uri: Option<String>,
    /// The payload.
    pub data: T,
    /// Free-form metadata (`traceparent`, `user_id`, `org_id`, ...) or `null`.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

impl<T> EventEnvelope<T> {
    /// A new envelope: fresh uuid4 `event_id`, `event_timestamp` now, `schema_version` 1,
    /// `data_schema_uri` and `metadata` null.
    pub fn new(
        event_type: impl Into<String>,
        source_service: impl Into<String>,
        correlation_id: Uuid,
        data: T,
    ) -> Self {
        EventEnvelope {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            event_timestamp: Timestamp::now(),
            source_service: source_service.into(),
            schema_version: SCHEMA_VERSION,
            correlation_id,
            data_schema_uri: None,
            data,
            metadata: None,
        }
    }

    /// Sets the `metadata` object (builder style).
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

impl<T: Serialize> EventEnvelope<T> {
    /// Compact JSON bytes for the Kafka message value.
    ///
    /// # Panics
    ///
    /// Never for this crate's payload types (plain structs with string map keys); a
    /// user-supplied `T` whose `Serialize` impl fails would panic.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json_bytes_sized(128)
    }

    /// [`Self::to_json_bytes`] into a buffer of `capacity` bytes to start with: an event about
    /// to be megabytes (a large batch's command) is written once instead of regrown and
    /// copied as it fills.
    pub fn to_json_bytes_sized(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut out, self).expect("event envelope serializes to JSON");
        out
    }
}
