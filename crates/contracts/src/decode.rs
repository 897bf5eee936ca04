//! Decoding wire bytes into typed values, with errors that name the offending field.
//!
//! Two kinds of failure are told apart, because they are handled differently downstream (both
//! end in the poison DLQ, with `dlq.error.kind` set from [`DecodeErrorKind::as_str`]):
//!
//! * [`DecodeErrorKind::Decode`]: the bytes are not UTF-8 or not JSON at all.
//! * [`DecodeErrorKind::Validation`]: valid JSON of the wrong shape: wrong type, unknown enum
//!   value, missing required field, `schema_version` other than 1, a string outside its length
//!   bounds, or a rule of the model's [`Validate`] impl. The message starts with the field path,
//!   e.g. `data.phase_name: unknown variant `foo`, expected one of ...`.
//!
//! Unknown keys are ignored everywhere (pydantic's `extra="ignore"`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::{EventEnvelope, SCHEMA_VERSION};

/// What went wrong while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// Not UTF-8, or not JSON.
    Decode,
    /// Valid JSON, but not a valid instance of the expected model.
    Validation,
}

impl DecodeErrorKind {
    /// `"decode"` or `"validation"` (the `dlq.error.kind` header value).
    pub const fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Decode => "decode",
            DecodeErrorKind::Validation => "validation",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoding failure: its kind and a human-readable message naming the field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct DecodeError {
    /// Decode (not JSON) or validation (wrong shape).
    pub kind: DecodeErrorKind,
    /// What is wrong, starting with the field path when there is one.
    pub message: String,
}

impl DecodeError {
    /// A [`DecodeErrorKind::Decode`] error.
    pub fn decode(message: impl Into<String>) -> Self {
        DecodeError {
            kind: DecodeErrorKind::Decode,
            message: message.into(),
        }
    }

    /// A [`DecodeErrorKind::Validation`] error.
    pub fn validation(message: impl Into<String>) -> Self {
        DecodeError {
            kind: DecodeErrorKind::Validation,
            message: message.into(),
        }
    }
}

/// Rules a model has beyond its serde shape (pydantic field constraints and validators).
///
/// An `Err` message must start with the field path relative to the model, followed by `: `
/// (e.g. `"prompt_payload: exactly one of ..."`); [`decode_envelope`] prefixes it with `data.`.
pub trait Validate {
    /// Whether the model is a JSON object. True for every struct of this crate; the decoders
    /// then reject any other top-level JSON (serde's derived structs would otherwise read a JSON
    /// array positionally, which pydantic does not).
    const IS_OBJECT: bool = true;

    /// Checks the model; the default accepts everything.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Validate for Value {
    const IS_OBJECT: bool = false;
}
impl Validate for serde_json::Map<String, Value> {}

/// Checks a string's length in characters (Python `len`), naming the field on failure.
pub(crate) fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let len = value.chars().count();
    if len < min || len > max {
        Err(format!(
            "{field}: string length must be between {min} and {max} characters, got {len}"
        ))
    } else {
        Ok(())
    }
}

/// Like [`check_len`] for an optional string (`None` is always fine).
pub(crate) fn check_opt_len(
    field: &str,
    value: Option<&str>,
    min: usize,
    max: usize,
) -> Result<(), String> {
    value.map_or(Ok(()), |v| check_len(field, v, min, max))
}

/// Checks that a free-form field typed as an object in the platform model is an object (or
/// absent/null).
pub(crate) fn check_opt_object(field: &str, value: Option<&Value>) -> Result<(), String> {
    match value {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(format!(
            "{field}: invalid type: {}, expected a JSON object or null",
            json_type_name(other)
        )),
    }
}

/// `"an array"`, `"a string"`, ... for error messages.
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses bytes as JSON without interpreting them (decode-level failures only).
fn parse_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DecodeError::decode(format!("message is not valid UTF-8: {e}")))?;
    serde_json::from_str(text)
        .map_err(|e| DecodeError::decode(format!("message is not valid JSON: {e}")))
}

/// serde's derived structs also accept JSON arrays (positionally); pydantic does not. Reject
/// anything but an object where an object model is expected.
fn expect_object(path: &str, value: &Value) -> Result<(), DecodeError> {
    if value.is_object() {
        return Ok(());
    }
    let what = json_type_name(value);
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    Err(DecodeError::validation(format!(
        "{prefix}invalid type: {what}, expected a JSON object"
    )))
}

/// Joins a parent path and a child key (`"."` is serde_path_to_error's empty path).
fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// Formats a typed-deserialization error so that it starts with the full field path.
fn describe(err: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = err.path().to_string();
    let inner = err.inner().to_string();
    // serde reports a missing field at the parent object; name the field itself instead.
    if let Some(rest) = inner.strip_prefix("missing field `") {
        if let Some(field) = rest.strip_suffix('`') {
            return format!("{}: missing required field", join_path(&path, field));
        }
    }
    if path.is_empty() || path == "." {
        inner
    } else {
        format!("{path}: {inner}")
    }
}

/// Deserializes a parsed JSON value into `T`, tracking the field path for errors.
fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| DecodeError::validation(describe(e)))
}

/// Decodes a Kafka message value: an [`EventEnvelope`] whose `data` is a `T`.
///
/// `event_type` and `source_service` are accepted whatever they hold (route on the topic);
/// `schema_version` must be 1 when present. After serde, `T`'s [`Validate`] rules run and their
/// message is prefixed with `data.`.
pub fn decode_envelope<T: DeserializeOwned + Validate>(
    bytes: &[u8],
) -> Result<EventEnvelope<T>, DecodeError> {
    match decode_valid_envelope(bytes) {
        Some(envelope) => Ok(envelope),
        None => decode_envelope_checked(bytes),
    }
}

/// [`decode_envelope`] through a [`Value`]: every check in order, each failure with its path.
fn decode_envelope_checked<T: DeserializeOwned + Validate>(
    bytes: &[u8],
) -> Result<EventEnvelope<T>, DecodeError> {
    let value = parse_json(bytes)?;
    expect_object("", &value)?;
    if let Some(data) = value.get("data") {
        if T::IS_OBJECT {
            expect_object("data", data)?;
        }
    }
    // Reject other schema versions before looking at `data`, whose shape may differ in them.
    if let Some(version) = value.get("schema_version") {
        if version.is_number() && version.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
            return Err(DecodeError::validation(format!(
                "schema_version: unsupported schema version {version}, expected {SCHEMA_VERSION}"
            )));
        }
    }
    let envelope: EventEnvelope<T> = from_value(value)?;
    envelope
        .data
        .validate()
        .map_err(|m| DecodeError::validation(format!("data.{m}")))?;
    Ok(envelope)
}

/// The fast path of [`decode_envelope`]: straight into `T` in one pass, without building a
/// [`Value`](serde_json::Value) tree first (for a batch of thousands of essays that tree is most
/// of the decoding cost) and without scanning `data` twice. It makes the same checks — UTF-8, an
/// object, `schema_version` 1, `data` an object ([`ObjectOnly`]), `T`'s rules — and answers
/// `None` when any fails, so that the slower path says exactly what is wrong, with the field's
/// path.
fn decode_valid_envelope<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Option<EventEnvelope<T>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let envelope: EventEnvelope<T> = if T::IS_OBJECT {
        let e: EventEnvelope<ObjectOnly<T>> = serde_json::from_str(text).ok()?;
        EventEnvelope {
            event_id: e.event_id,
            event_type: e.event_type,
            event_timestamp: e.event_timestamp,
            source_service: e.source_service,
            schema_version: e.schema_version,
            correlation_id: e.correlation_id,
            data_schema_uri: e.data_schema_uri,
            data: e.data.0,
            metadata: e.metadata,
        }
    } else {
        serde_json::from_str(text).ok()?
    };
    if envelope.schema_version != SCHEMA_VERSION {
        return None;
    }
    envelope.data.validate().ok()?;
    Some(envelope)
}

/// A `T` read only from a JSON object: serde's derived structs would also read a JSON array
/// positionally, which the platform's models (pydantic) refuse.
struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Object(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

/// Decodes a plain JSON body (an HTTP request or response) into `T` and runs its [`Validate`]
/// rules. Field paths in messages are relative to the body.
pub fn decode_json<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value = parse_json(bytes)?;
    if T::IS_OBJECT {
        expect_object("", &value)?;
    }
    let decoded: T = from_value(value)?;
    decoded.validate().map_err(DecodeError::validation)?;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path answers only what the checked path answers the same way; the decoder's
    /// answer is always the checked path's.
    #[test]
    fn the_fast_path_agrees_with_the_checked_path() {
        use crate::payloads::{ClientBatchPipelineRequestV1, ELSBatchPhaseOutcomeV1};
        let outcome = r#"{"event_id":"9b2c8a8e-3f0c-4a55-8d0d-0d6e7a2c9f11","event_type":"x",
            "event_timestamp":"2026-01-01T00:00:00Z","source_service":"els","schema_version":1,
            "correlation_id":"1b2c8a8e-3f0c-4a55-8d0d-0d6e7a2c9f12","data_schema_uri":null,
            "data":{"batch_id":"b1","phase_name":"spellcheck","phase_status":"completed_successfully",
              "processed_essays":[{"essay_id":"e1","text_storage_id":"t1","spellcheck_metrics":null}],
              "failed_essay_ids":["e2"],"correlation_id":"1b2c8a8e-3f0c-4a55-8d0d-0d6e7a2c9f12"},
            "metadata":{"a":1},"extra":"ignored"}"#;
        let mut cases: Vec<Vec<u8>> = vec![
            outcome.as_bytes().to_vec(),
            // Not an object; data not an object; another schema version; a wrong type.
            format!("[{outcome}]").into_bytes(),
            outcome
                .replace(r#""data":{"batch_id":"b1","#, r#""data":["b1","#)
                .replace(r#"12"},"#, r#"12"],"#)
                .into_bytes(),
            outcome
                .replace(r#""schema_version":1"#, r#""schema_version":2"#)
                .into_bytes(),
            outcome
                .replace(r#""schema_version":1"#, r#""schema_version":1.0"#)
                .into_bytes(),
            outcome
                .replace(r#""batch_id":"b1""#, r#""batch_id":7"#)
                .into_bytes(),
            // A duplicate key (the checked path keeps the last), no schema_version at all.
            outcome
                .replace(
                    r#""source_service":"els""#,
                    r#""source_service":"a","source_service":"els""#,
                )
                .into_bytes(),
            outcome.replace(r#""schema_version":1,"#, "").into_bytes(),
        ];
        // Invalid UTF-8 inside a field nobody reads.
        let mut bad = outcome.as_bytes().to_vec();
        let at = outcome.find("ignored").unwrap();
        bad[at] = 0xff;
        cases.push(bad);
        for (i, bytes) in cases.iter().enumerate() {
            let checked = decode_envelope_checked::<ELSBatchPhaseOutcomeV1>(bytes);
            // Declined (None): a failure, or what only the checked path reads (a duplicate key).
            if let Some(fast) = decode_valid_envelope::<ELSBatchPhaseOutcomeV1>(bytes) {
                assert_eq!(checked.as_ref().ok(), Some(&fast), "case {i}");
            }
            assert_eq!(
                decode_envelope::<ELSBatchPhaseOutcomeV1>(bytes).map_err(|e| e.to_string()),
                checked.map_err(|e| e.to_string()),
                "case {i}"
            );
        }
        // The valid outcome takes the fast path; a failing rule sends a request to the checked one.
        assert!(decode_valid_envelope::<ELSBatchPhaseOutcomeV1>(cases[0].as_slice()).is_some());
        // `data` as an array that serde's derived struct would read positionally: declined by
        // the fast path too, refused by the decoder.
        let positional = outcome.replace(
            &outcome[outcome.find(r#""data":"#).unwrap()..outcome.find(r#"12"},"#).unwrap() + 4],
            r#""data":["b1","spellcheck","completed_successfully",[],[],"1b2c8a8e-3f0c-4a55-8d0d-0d6e7a2c9f12"]"#,
        );
        assert!(
            serde_json::from_str::<EventEnvelope<ELSBatchPhaseOutcomeV1>>(&positional).is_ok(),
            "serde alone reads it"
        );
        assert!(decode_valid_envelope::<ELSBatchPhaseOutcomeV1>(positional.as_bytes()).is_none());
        let e = decode_envelope::<ELSBatchPhaseOutcomeV1>(positional.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("data"), "{e}");
        let request = outcome.replace(
            r#""data":{"batch_id":"b1","phase_name":"spellcheck","#,
            r#""data":{"batch_id":"","requested_pipeline":"nlp","user_id":"u","client_correlation_id":"1b2c8a8e-3f0c-4a55-8d0d-0d6e7a2c9f12","phase_name":"spellcheck","#,
        );
        assert!(
            decode_valid_envelope::<ClientBatchPipelineRequestV1>(request.as_bytes()).is_none()
        );
        let e = decode_envelope::<ClientBatchPipelineRequestV1>(request.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("data.batch_id"), "{e}");
    }

    #[test]
    fn kind_strings() {
        assert_eq!(DecodeErrorKind::Decode.as_str(), "decode");
        assert_eq!(DecodeErrorKind::Validation.to_string(), "validation");
        assert_eq!(
            DecodeError::decode("x").to_string(),
            "decode error: x".to_owned()
        );
    }

    #[test]
    fn check_len_counts_characters() {
        assert!(check_len("f", "åäö", 1, 3).is_ok());
        let err = check_len("f", "", 1, 3).unwrap_err();
        assert!(err.starts_with("f: "), "{err}");
    }
}
