//! The JSON log line (`LOG_FORMAT=json`), written straight into the line buffer.
//!
//! ```text
//! span created ──► JsonFields ──► `"batch_id":"b1","event_id":"…"` kept with the span
//! event        ──► JsonLine   ──► {"timestamp":…,"level":…,"message":…,<fields>,"target":…,
//!                                  "span":{<the current span's kept fragment>,"name":…}}
//! ```
//!
//! The same line as tracing-subscriber's own JSON format with `flatten_event(true)`,
//! `with_current_span(true)` and `with_span_list(false)` (which it replaced), but for the order
//! of a span's fields (as written, not sorted). That format keeps each span's fields as a JSON
//! object in a string, parses it back into a `serde_json::Value` for every line and serializes
//! every field through a map: about a tenth of a loaded service's CPU, with two spans and one
//! line per handled event. Here a span's fields are written once, as a fragment of an object,
//! and copied into each line as they are.

use std::fmt::{self, Write as _};

use huleedu_contracts::timestamp::Timestamp;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats a span's fields as the inside of a JSON object (`"a":1,"b":"x"`), kept with the span.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

/// Formats an event as one JSON object per line, with the current span's fields under `span`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Fields::new(&mut writer, true);
        fields.record(&mut v);
        v.result
    }

    /// Fields recorded after the span was created are appended (a field recorded twice appears
    /// twice; a JSON reader keeps the last).
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut v = Fields::new(&mut current.fields, first);
        fields.record(&mut v);
        v.result
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        Timestamp::now().with_wire_str(|t| writer.write_str(t))?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut v = Fields::new(&mut writer, false);
        event.record(&mut v);
        v.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            if let Some(f) = span.extensions().get::<FormattedFields<JsonFields>>() {
                if !f.fields.is_empty() {
                    writer.write_str(&f.fields)?;
                    writer.write_char(',')?;
                }
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes each field as `"name":value`, separated by commas (a leading one unless `first`).
/// Strings and `Debug` / `Display` values become JSON strings, numbers and booleans JSON values
/// (a non-finite float `null`), as in tracing-subscriber's JSON format.
struct Fields<'a> {
    out: &'a mut dyn fmt::Write,
    first: bool,
    result: fmt::Result,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut dyn fmt::Write, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    /// The separator and the key; false once writing failed.
    fn key(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let sep = if std::mem::take(&mut self.first) {
            ""
        } else {
            ","
        };
        self.result = self
            .out
            .write_str(sep)
            .and_then(|_| string(self.out, name))
            .and_then(|_| self.out.write_char(':'));
        self.result.is_ok()
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            self.result = self.out.write_fmt(value);
        }
    }

    fn quoted(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            self.result = self
                .out
                .write_char('"')
                .and_then(|_| Escaped(self.out).write_fmt(value))
                .and_then(|_| self.out.write_char('"'));
        }
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.raw(field, format_args!("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.quoted(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.quoted(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.quoted(field, format_args!("{value:?}"));
    }
}

/// `s` as a JSON string.
fn string(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if esc.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(esc)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `f` logs through the subscriber `make` builds around a writer, parsed as JSON.
    fn captured<S>(make: impl FnOnce(Buf) -> S, f: impl FnOnce()) -> Vec<serde_json::Value>
    where
        S: Subscriber + Send + Sync + 'static,
    {
        let buf = Buf::default();
        tracing::subscriber::with_default(make(buf.clone()), f);
        parse(&buf)
    }

    /// The lines `f` logs with this module's format.
    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let make = |out: Buf| {
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || out.clone())
                    .fmt_fields(JsonFields)
                    .event_format(JsonLine),
            )
        };
        captured(make, f)
    }

    /// The lines `f` logs with tracing-subscriber's own JSON format as it was configured.
    fn their_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let make = |out: Buf| {
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || out.clone())
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
        };
        captured(make, f)
    }

    fn parse(buf: &Buf) -> Vec<serde_json::Value> {
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    enum Note {
        Queued,
        Finished { pipeline: String, seconds: f64 },
    }

    #[test]
    fn a_line_carries_the_event_fields_and_the_current_span() {
        let got = lines(|| {
            let span = tracing::info_span!("phase_outcome", batch_id = "b\"1", partition = 2u64, event_id = %"e-1");
            span.in_scope(|| {
                let notes = vec![
                    Note::Queued,
                    Note::Finished {
                        pipeline: "nlp".into(),
                        seconds: 0.5,
                    },
                ];
                tracing::info!(
                    ?notes,
                    ok = true,
                    n = -3i64,
                    ratio = 1.5,
                    "phase outcome\thandled"
                );
            });
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        let ts = line["timestamp"].as_str().unwrap();
        assert!(Timestamp::parse(ts).is_ok(), "{ts}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "phase outcome\thandled");
        assert_eq!(
            line["notes"],
            "[Queued, Finished { pipeline: \"nlp\", seconds: 0.5 }]"
        );
        assert_eq!(line["ok"], true);
        assert_eq!(line["n"], -3);
        assert_eq!(line["ratio"], 1.5);
        assert_eq!(line["target"], module_path!());
        assert_eq!(
            line["span"],
            serde_json::json!({"batch_id": "b\"1", "partition": 2, "event_id": "e-1", "name": "phase_outcome"})
        );
        // The same keys, in the same order, as tracing-subscriber's JSON format wrote.
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "timestamp",
                "level",
                "message",
                "notes",
                "ok",
                "n",
                "ratio",
                "target",
                "span"
            ]
        );
    }

    /// What the services log, through both formats: the same lines but for the time.
    fn sample() {
        let notes = vec![Note::Finished {
            pipeline: "a \"b\"\n".into(),
            seconds: 0.25,
        }];
        tracing::warn!(error = %std::io::Error::other("no\tway"), attempt = 3u64, "consumer error; continuing");
        let message = tracing::info_span!("message", topic = %"t.v1", partition = 1i32, offset = 7i64, key = %"b1");
        let _m = message.enter();
        let outcome =
            tracing::info_span!("phase_outcome", batch_id = "b1", phase = %"nlp", ok = true);
        outcome.in_scope(|| tracing::info!(?notes, "phase outcome handled"));
        tracing::debug!(x = 1.5, "only above the filter");
        tracing::error!(r#type = "poison", "in the outer span");
    }

    #[test]
    fn the_lines_equal_tracing_subscribers_json_lines_but_for_the_time() {
        let strip = |mut v: Vec<serde_json::Value>| {
            for l in &mut v {
                l.as_object_mut().unwrap().remove("timestamp").unwrap();
            }
            v
        };
        let (ours, theirs) = (strip(lines(sample)), strip(their_lines(sample)));
        assert_eq!(ours.len(), 4);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_innermost_span_is_the_one_shown_and_no_span_means_no_span_key() {
        let got = lines(|| {
            tracing::warn!(error = %std::io::Error::other("gone"), "outside");
            let outer = tracing::info_span!("message", topic = "t");
            let _o = outer.enter();
            let inner = tracing::info_span!("pipeline_request");
            let _i = inner.enter();
            tracing::info!(value = f64::NAN, "inside");
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["level"], "WARN");
        assert_eq!(got[0]["error"], "gone");
        assert!(got[0].get("span").is_none());
        assert_eq!(
            got[1]["span"],
            serde_json::json!({"name": "pipeline_request"})
        );
        assert_eq!(got[1]["value"], serde_json::Value::Null);
    }

    #[test]
    fn fields_recorded_later_are_added_to_the_span() {
        let got = lines(|| {
            let span = tracing::info_span!("s", a = 1u64, b = tracing::field::Empty);
            span.record("b", "two");
            span.in_scope(|| tracing::info!("x"));
        });
        assert_eq!(
            got[0]["span"],
            serde_json::json!({"a": 1, "b": "two", "name": "s"})
        );
    }

    #[test]
    fn control_characters_and_unicode_survive() {
        let text = "line\nbreak \u{1} \u{1f} é ✓ \\ \"q\" \r";
        let got = lines(|| tracing::info!(text, "{text}"));
        assert_eq!(got[0]["text"], text);
        assert_eq!(got[0]["message"], text);
    }
}
