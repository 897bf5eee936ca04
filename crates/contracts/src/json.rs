//! Writing the JSON of one small, hot object (an essay reference) without serde_json's
//! byte-at-a-time escape scan.
//!
//! serde_json checks every byte of every string it writes — keys included — against its escape
//! table, one byte per step. A command or a recorded result of thousands of essays is mostly
//! such strings: at 8,045 essays that scan was the largest single item of the orchestrator's
//! CPU (14 % of its samples). [`serialize_object`] writes an object's JSON text itself — the
//! keys are constants, a value with no byte that JSON must escape is copied as it is (checked
//! without a branch per byte, see [`is_plain`]), any other value is written by serde_json — and
//! hands the text to serde_json's serializer as a raw value (the `raw_value` feature), so it
//! lands byte for byte where serde_json's own output would have.
//!
//! ```text
//!  object ──► write(&mut buf): "{\"essay_id\":" + value + … + "}"      (this thread's buffer)
//!                                   │
//!                 plain? ── yes ──► '"' value '"'      (one copy, no per-byte branch)
//!                   └─────── no ──► serde_json::to_string(value)   (its escapes, exactly)
//!  buf ──► serializer.serialize_struct(RawValue token) ──► written verbatim by serde_json
//! ```
//!
//! Limits: only serde_json's serializers understand the raw-value token (its `Value` serializer
//! parses the text back, which is correct and slower); a pretty-printing serializer writes the
//! object on one line. Every type that uses it has a test holding its output to serde's.

use std::cell::RefCell;

use serde::ser::{SerializeStruct, Serializer};

/// The struct name (and field name) by which serde_json's serializer recognises a raw value:
/// what `serde_json::value::RawValue`'s own `Serialize` uses. Not a public constant of
/// serde_json; the tests of every user of [`serialize_object`] fail if it ever changes.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Buffers larger than this are not kept for the next object.
const KEEP_BUFFER: usize = 64 * 1024;

thread_local! {
    /// One object's text at a time, reused: no allocation per essay.
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// `true` when serde_json writes `s` between quotes unchanged: no `"`, no `\`, no control
/// character (U+0000–U+001F). serde_json escapes nothing else (not `/`, not U+007F, not
/// non-ASCII).
pub fn is_plain(s: &str) -> bool {
    // No early exit, so the loop is compiled to vector instructions.
    !s.bytes().fold(false, |hit, b| {
        hit | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Append `s` as a JSON string, exactly as serde_json writes it.
pub fn push_str(out: &mut String, s: &str) {
    if is_plain(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
    }
}

/// Serialize the JSON text `write` appends to an empty buffer, as a raw value: `write` must
/// produce exactly what serde_json would write for the value (compact).
pub fn serialize_object<S, F>(serializer: S, write: F) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    F: FnOnce(&mut String),
{
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            write(&mut buf);
            let r = serialize_raw(serializer, &buf);
            if buf.capacity() > KEEP_BUFFER {
                *buf = String::new();
            }
            r
        }
        // Only when a `write` serializes another such object itself: a buffer of its own.
        Err(_) => {
            let mut buf = String::new();
            write(&mut buf);
            serialize_raw(serializer, &buf)
        }
    })
}

fn serialize_raw<S: Serializer>(serializer: S, json: &str) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
    s.serialize_field(RAW_VALUE_TOKEN, json)?;
    s.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Pair<'a>(&'a str, &'a str);

    impl serde::Serialize for Pair<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize_object(serializer, |out| {
                out.push_str("{\"a\":");
                push_str(out, self.0);
                out.push_str(",\"b\":");
                push_str(out, self.1);
                out.push('}');
            })
        }
    }

    fn serde_pair(a: &str, b: &str) -> String {
        #[derive(serde::Serialize)]
        struct P<'a> {
            a: &'a str,
            b: &'a str,
        }
        serde_json::to_string(&P { a, b }).unwrap()
    }

    #[test]
    fn only_what_json_escapes_is_not_plain() {
        for s in ["", "abc", "3f0c2a9e-1d4b", "/", "\u{7f}", "\u{e5}\u{1F600}"] {
            assert!(is_plain(s), "{s:?}");
        }
        for s in ["\"", "\\", "\n", "\u{0}", "\u{1f}", "abc\tdef"] {
            assert!(!is_plain(s), "{s:?}");
        }
    }

    #[test]
    fn a_raw_object_in_a_list_is_what_serde_writes() {
        let pairs = [Pair("e1", "t1"), Pair("e\"2", "t\n2")];
        let ours = serde_json::to_string(&pairs).unwrap();
        let theirs = format!(
            "[{},{}]",
            serde_pair("e1", "t1"),
            serde_pair("e\"2", "t\n2")
        );
        assert_eq!(ours, theirs);
        // serde_json's Value serializer reads the raw text back.
        assert_eq!(
            serde_json::to_value(&pairs).unwrap(),
            serde_json::from_str::<serde_json::Value>(&theirs).unwrap()
        );
    }

    #[test]
    fn a_large_object_does_not_keep_its_buffer() {
        let big = "x".repeat(KEEP_BUFFER * 2);
        assert_eq!(
            serde_json::to_string(&Pair(&big, "t")).unwrap(),
            serde_pair(&big, "t")
        );
        BUFFER.with(|b| assert!(b.borrow().capacity() <= KEEP_BUFFER));
    }

    proptest! {
        #[test]
        fn any_strings_are_written_as_serde_writes_them(a in any::<String>(), b in "[\\x00-\\x7f]{0,40}") {
            prop_assert_eq!(serde_json::to_string(&Pair(&a, &b)).unwrap(), serde_pair(&a, &b));
        }
    }
}
