//! W3C trace context (`traceparent`, `tracestate`) as the platform carries it in an envelope's
//! `metadata`: read from what a service consumes, written into what it produces, so a request's
//! trace continues through every command, outcome and terminal event.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `metadata` key of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The `metadata` key of the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// A valid W3C trace context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

fn hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// The context, if `traceparent` is valid (version 00, non-zero ids, lowercase hex).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let [version, trace_id, span_id, flags] = parts[..] else {
            return None;
        };
        let valid = version == "00"
            && hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && hex(span_id, 16)
            && span_id.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        valid.then(|| Self {
            traceparent: traceparent.trim().to_owned(),
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_owned),
        })
    }

    /// The context in an envelope's `metadata`, if it carries a valid one.
    pub fn from_metadata(metadata: Option<&Map<String, Value>>) -> Option<Self> {
        let m = metadata?;
        Self::parse(
            m.get(TRACEPARENT)?.as_str()?,
            m.get(TRACESTATE).and_then(Value::as_str),
        )
    }

    /// Write the context into `metadata` (replacing any there).
    pub fn write_to(&self, metadata: &mut Map<String, Value>) {
        metadata.insert(TRACEPARENT.to_owned(), self.traceparent.clone().into());
        match &self.tracestate {
            Some(s) => {
                metadata.insert(TRACESTATE.to_owned(), s.clone().into());
            }
            None => {
                metadata.remove(TRACESTATE);
            }
        }
    }

    /// The 32-hex trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_contexts_are_read_and_written_back() {
        let m = json!({"traceparent": TP, "tracestate": "congo=t61rcWkgMzE", "other": 1});
        let t = TraceContext::from_metadata(m.as_object()).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut out = Map::new();
        t.write_to(&mut out);
        assert_eq!(
            Value::Object(out),
            json!({"traceparent": TP, "tracestate": "congo=t61rcWkgMzE"})
        );
    }

    #[test]
    fn invalid_contexts_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
        assert_eq!(
            TraceContext::from_metadata(json!({"traceparent": 7}).as_object()),
            None
        );
        assert_eq!(TraceContext::from_metadata(None), None);
    }
}
