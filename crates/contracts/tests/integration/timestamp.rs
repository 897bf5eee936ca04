//! The wire timestamp format: Python's `isoformat()` of an aware UTC datetime with `Z`.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use huleedu_contracts::timestamp::{NaiveTimestamp, Timestamp};
use proptest::prelude::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, micros)
        .unwrap()
        .and_utc()
}

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("`{s}` should parse: {e}"))
}

#[test]
fn zero_microseconds_have_no_fraction() {
    let t = Timestamp::from(utc(2025, 11, 3, 9, 41, 0, 0));
    assert_eq!(t.to_string(), "2025-11-03T09:41:00Z");
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        "\"2025-11-03T09:41:00Z\""
    );
}

#[test]
fn nonzero_microseconds_have_exactly_six_digits() {
    for (micros, text) in [
        (1_000, "2025-11-03T09:41:00.001000Z"),
        (1, "2025-11-03T09:41:00.000001Z"),
        (17, "2025-11-03T09:41:00.000017Z"),
        (423_086, "2025-11-03T09:41:00.423086Z"),
        (999_999, "2025-11-03T09:41:00.999999Z"),
        (500_000, "2025-11-03T09:41:00.500000Z"),
    ] {
        let t = Timestamp::from(utc(2025, 11, 3, 9, 41, 0, micros));
        assert_eq!(t.to_string(), text);
        assert_eq!(serde_json::to_value(t).unwrap(), text);
    }
}

#[test]
fn sub_microsecond_precision_is_dropped() {
    let nanos = Utc.timestamp_opt(1_762_162_860, 123_456_789).unwrap();
    let t = Timestamp::from(nanos);
    assert_eq!(t.to_string(), "2025-11-03T09:41:00.123456Z");
    assert_eq!(
        ts("2025-11-03T09:41:00.123456789Z").to_string(),
        "2025-11-03T09:41:00.123456Z"
    );
    // `now()` is already at wire precision, so it survives a round trip unchanged.
    let now = Timestamp::now();
    assert_eq!(ts(&now.to_string()), now);
}

#[test]
fn parses_z_and_utc_offset() {
    let expected = Timestamp::from(utc(2025, 11, 3, 9, 41, 0, 1_000));
    assert_eq!(ts("2025-11-03T09:41:00.001000Z"), expected);
    assert_eq!(ts("2025-11-03T09:41:00.001000+00:00"), expected);
    assert_eq!(ts("2025-11-03T09:41:00.001Z"), expected);
    assert_eq!(ts("2025-11-03T09:41:00.001000z"), expected);
}

#[test]
fn converts_other_offsets_to_utc() {
    let expected = Timestamp::from(utc(2025, 11, 3, 9, 41, 0, 1_000));
    assert_eq!(ts("2025-11-03T11:41:00.001000+02:00"), expected);
    assert_eq!(ts("2025-11-03T04:41:00.001-05:00"), expected);
    assert_eq!(ts("2025-11-03T11:41:00.001000+0200"), expected);
    assert_eq!(
        ts("2025-11-03T01:30:00+02:00").to_string(),
        "2025-11-02T23:30:00Z"
    );
}

#[test]
fn naive_input_is_taken_as_utc() {
    for (text, micros) in [
        ("2025-11-03T09:24:58.640102", 640_102),
        ("2025-11-03T09:24:58", 0),
        ("2025-11-03 09:24:58.5", 500_000),
    ] {
        let expected = Timestamp::from(utc(2025, 11, 3, 9, 24, 58, micros));
        assert_eq!(ts(text), expected, "{text}");
    }
}

#[test]
fn parses_without_fraction() {
    let expected = Timestamp::from(utc(2025, 11, 3, 9, 41, 0, 0));
    assert_eq!(ts("2025-11-03T09:41:00Z"), expected);
    assert_eq!(ts("2025-11-03T09:41:00+00:00"), expected);
}

#[test]
fn rejects_non_timestamps() {
    for bad in [
        "",
        "yesterday",
        "2025-11-03",
        "2025-13-03T09:41:00Z",
        "09:41:00Z",
        "2025-11-03T25:00:00Z",
    ] {
        assert!(
            bad.parse::<Timestamp>().is_err(),
            "`{bad}` should be rejected"
        );
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!(bad)).is_err());
    }
    assert!(serde_json::from_value::<Timestamp>(serde_json::json!(1_762_162_860)).is_err());
    let err = "yesterday".parse::<Timestamp>().unwrap_err();
    assert!(err.to_string().contains("yesterday"), "{err}");
}

#[test]
fn deserializes_from_json_string() {
    let t: Timestamp = serde_json::from_str("\"2025-11-03T09:41:00.000017Z\"").unwrap();
    assert_eq!(t, Timestamp::from(utc(2025, 11, 3, 9, 41, 0, 17)));
}

#[test]
fn ordering_follows_time() {
    assert!(ts("2025-11-03T09:41:00Z") < ts("2025-11-03T09:41:00.000001Z"));
    assert!(ts("2025-11-03T11:41:00+02:00") < ts("2025-11-03T09:41:00.5Z"));
}

#[test]
fn naive_timestamp_keeps_the_offsetless_form() {
    let t: NaiveTimestamp = serde_json::from_str("\"2025-11-03T09:24:58.640102\"").unwrap();
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        "\"2025-11-03T09:24:58.640102\""
    );
    let whole: NaiveTimestamp = "2025-11-03T09:30:00".parse().unwrap();
    assert_eq!(whole.to_string(), "2025-11-03T09:30:00");
    let from_aware: NaiveTimestamp = "2025-11-03T11:30:00.000012+02:00".parse().unwrap();
    assert_eq!(from_aware.to_string(), "2025-11-03T09:30:00.000012");
    assert_eq!(
        from_aware.to_utc().to_string(),
        "2025-11-03T09:30:00.000012Z"
    );
}

fn micros_range() -> std::ops::Range<i64> {
    // 0001-01-01 .. 9999-12-31, the range Python's datetime can represent.
    let min = utc(1, 1, 1, 0, 0, 0, 0).timestamp_micros();
    let max = utc(9999, 12, 31, 23, 59, 59, 999_999).timestamp_micros();
    min..max + 1
}

proptest! {
    #[test]
    fn format_parse_format_is_identity(micros in micros_range()) {
        let t = Timestamp::from(DateTime::from_timestamp_micros(micros).unwrap());
        let text = t.to_string();
        let parsed: Timestamp = text.parse().unwrap();
        prop_assert_eq!(parsed, t);
        prop_assert_eq!(parsed.to_string(), text.clone());
        // Shape: no fraction iff zero microseconds, otherwise exactly six digits.
        let sub = micros.rem_euclid(1_000_000);
        if sub == 0 {
            prop_assert_eq!(text.len(), "2025-11-03T09:41:00Z".len());
        } else {
            prop_assert_eq!(text.len(), "2025-11-03T09:41:00.000000Z".len());
            let expected_suffix = format!(".{sub:06}Z");
            prop_assert!(text.ends_with(&expected_suffix));
        }
        // The serde path agrees with Display/FromStr.
        let json = serde_json::to_string(&t).unwrap();
        prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    /// The hand-written digits match chrono's own rendering of the same instant, the form the
    /// earlier releases wrote (and Python's `isoformat()` with `Z`).
    #[test]
    fn the_wire_form_is_chronos_rendering(micros in micros_range()) {
        let t = Timestamp::from(DateTime::from_timestamp_micros(micros).unwrap());
        let sub = micros.rem_euclid(1_000_000);
        let chrono_form = if sub == 0 {
            t.0.format("%Y-%m-%dT%H:%M:%S").to_string()
        } else {
            t.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
        };
        prop_assert_eq!(t.to_string(), format!("{chrono_form}Z"));
        prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{chrono_form}Z\""));
        prop_assert_eq!(NaiveTimestamp::from(t).to_string(), chrono_form);
    }

    #[test]
    fn any_offset_denotes_the_same_instant(micros in micros_range(), offset_minutes in -(14 * 60)..=(14 * 60i32)) {
        let t = Timestamp::from(DateTime::from_timestamp_micros(micros).unwrap());
        let offset = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let local = t.0.with_timezone(&offset);
        // Skip instants whose local rendering falls outside years 1..=9999.
        prop_assume!((1..=9999).contains(&chrono::Datelike::year(&local)));
        let text = local.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string();
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
    }
}

/// Years Python cannot write still format as chrono does (no panic, no truncation).
#[test]
fn years_beyond_python_s_range_format_as_chrono_does() {
    for (y, micros) in [(12345, 7), (-5, 0), (10000, 0)] {
        let t = Timestamp::from(utc(y, 1, 2, 3, 4, 5, micros));
        let form = if micros == 0 {
            t.0.format("%Y-%m-%dT%H:%M:%S").to_string()
        } else {
            t.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
        };
        assert_eq!(t.to_string(), format!("{form}Z"));
    }
}
