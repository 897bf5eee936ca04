//! Timestamps in the platform's wire format.
//!
//! The Python platform writes timezone-aware UTC times as ISO-8601 with a `Z` suffix. When the
//! microseconds are non-zero the fraction has exactly six digits (`2025-11-03T09:41:00.001000Z`);
//! when they are zero the fraction is left out (`2025-11-03T09:41:00Z`). [`Timestamp`] reproduces
//! that byte for byte and accepts the looser forms Python/pydantic accept on input.
//!
//! [`NaiveTimestamp`] covers the one field that is written without any offset
//! (`PipelineDeniedV1.denied_at`, see INDEX note 3).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error returned when a string is not an accepted timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp `{input}`: expected ISO-8601 date-time such as 2025-11-03T09:41:00.001000Z"
)]
pub struct ParseTimestampError {
    /// The rejected input.
    pub input: String,
}

/// Drops any sub-microsecond part (Python datetimes have microsecond precision).
fn truncate_to_micros(dt: NaiveDateTime) -> NaiveDateTime {
    let nanos = dt.nanosecond();
    // Leap-second representation (nanos >= 1e9) is kept in the leap range.
    let truncated = nanos - nanos % 1_000;
    dt.with_nanosecond(truncated).unwrap_or(dt)
}

/// Formats a naive time like Python `datetime.isoformat()` (without any offset).
fn format_naive(dt: &NaiveDateTime) -> String {
    with_wire_form(dt, "", str::to_owned)
}

/// `f` of the [`write_naive`] form of `dt` and `suffix`, written on the stack.
fn with_wire_form<R>(dt: &NaiveDateTime, suffix: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; WIRE_MAX];
    let n = write_naive(dt, &mut buf, suffix);
    f(std::str::from_utf8(&buf[..n]).expect("ASCII"))
}

/// The longest wire form written by [`write_naive`]: `YYYY-MM-DDTHH:MM:SS.ffffff` and a suffix.
const WIRE_MAX: usize = 32;

/// Writes the `datetime.isoformat()` form of `dt` and `suffix` (at most one byte) into `buf`,
/// returning the length. Digits are written directly: every timestamp of every state and event
/// goes through here, and chrono's `format` parses its pattern each time (1.6 % of the
/// orchestrator's CPU under load). Years outside 0–9999 and leap seconds, which Python does
/// not write, go through chrono as before.
fn write_naive(dt: &NaiveDateTime, buf: &mut [u8; WIRE_MAX], suffix: &str) -> usize {
    use chrono::Datelike;
    let (year, nanos) = (dt.year(), dt.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        let micros = nanos / 1_000;
        let text = if micros == 0 {
            format!("{}{suffix}", dt.format("%Y-%m-%dT%H:%M:%S"))
        } else {
            format!("{}.{:06}{suffix}", dt.format("%Y-%m-%dT%H:%M:%S"), micros)
        };
        // Not Python's range: never longer than the buffer in practice, but never panic.
        let n = text.len().min(WIRE_MAX);
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        return n;
    }
    fn digits(out: &mut [u8], mut v: u32) {
        for b in out.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    digits(&mut buf[0..4], year as u32);
    buf[4] = b'-';
    digits(&mut buf[5..7], dt.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], dt.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], dt.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], dt.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], dt.second());
    let mut n = 19;
    let micros = nanos / 1_000;
    if micros != 0 {
        buf[19] = b'.';
        digits(&mut buf[20..26], micros);
        n = 26;
    }
    buf[n..n + suffix.len()].copy_from_slice(suffix.as_bytes());
    n + suffix.len()
}

/// Parses an ISO-8601 date-time with or without offset. Inputs with an offset are converted to
/// UTC; inputs without one are taken to be UTC already.
fn parse_any(input: &str) -> Result<NaiveDateTime, ParseTimestampError> {
    let s = input.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(truncate_to_micros(dt.with_timezone(&Utc).naive_utc()));
    }
    // Offsets without a colon (`+0000`) and other forms chrono's RFC 3339 parser rejects.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Ok(truncate_to_micros(dt.with_timezone(&Utc).naive_utc()));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(truncate_to_micros(dt));
        }
    }
    Err(ParseTimestampError {
        input: input.to_owned(),
    })
}

/// A UTC instant with microsecond precision, serialized in the platform's wire format.
///
/// ```
/// use huleedu_contracts::timestamp::Timestamp;
/// let ts: Timestamp = "2025-11-03T11:41:00.001+02:00".parse().unwrap();
/// assert_eq!(ts.to_string(), "2025-11-03T09:41:00.001000Z");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to microseconds (so it survives a wire round trip unchanged).
    pub fn now() -> Self {
        Self::from(Utc::now())
    }

    /// The wire form: `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    pub fn to_wire_string(&self) -> String {
        with_wire_form(&self.0.naive_utc(), "Z", str::to_owned)
    }

    /// `f` of the wire form, written on the stack (no allocation: for log lines).
    pub fn with_wire_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        with_wire_form(&self.0.naive_utc(), "Z", f)
    }

    /// Parses any accepted input form (see [`FromStr`]).
    pub fn parse(input: &str) -> Result<Self, ParseTimestampError> {
        input.parse()
    }
}

impl From<DateTime<Utc>> for Timestamp {
    /// Wraps the instant, dropping anything below a microsecond.
    fn from(dt: DateTime<Utc>) -> Self {
        Timestamp(truncate_to_micros(dt.naive_utc()).and_utc())
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(ts: Timestamp) -> Self {
        ts.0
    }
}

/// In an OpenAPI document: a `date-time` string.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "UTC with a `Z`, six-digit microseconds when not zero (`2025-11-03T09:41:00.001000Z`)",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire_string())
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Accepts `Z`, `+00:00` or any other offset (converted to UTC), and naive times without an
    /// offset (taken as UTC), with or without a fraction.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_any(s).map(|naive| Timestamp(naive.and_utc()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_wire_form(&self.0.naive_utc(), "Z", |s| serializer.serialize_str(s))
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO-8601 date-time string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// A naive (offset-less) UTC time, written the way Python writes `datetime.utcnow()`:
/// `2025-11-03T09:24:58.640102`, no `Z`, fraction omitted when the microseconds are zero.
///
/// Only `PipelineDeniedV1.denied_at` uses this form. Inputs with an offset are accepted and
/// converted to UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NaiveTimestamp(pub NaiveDateTime);

impl NaiveTimestamp {
    /// The current UTC time, truncated to microseconds.
    pub fn now() -> Self {
        NaiveTimestamp(truncate_to_micros(Utc::now().naive_utc()))
    }

    /// The instant this represents, interpreting the naive value as UTC.
    pub fn to_utc(&self) -> Timestamp {
        Timestamp(self.0.and_utc())
    }
}

impl From<Timestamp> for NaiveTimestamp {
    fn from(ts: Timestamp) -> Self {
        NaiveTimestamp(ts.0.naive_utc())
    }
}

impl fmt::Display for NaiveTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_naive(&self.0))
    }
}

impl FromStr for NaiveTimestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_any(s).map(NaiveTimestamp)
    }
}

impl Serialize for NaiveTimestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NaiveTimestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(TimestampVisitor)
            .map(|ts| NaiveTimestamp(ts.0.naive_utc()))
    }
}
