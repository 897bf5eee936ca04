//! Decode errors: the kind tells "not JSON" from "wrong shape", and the message names the field.

use crate::common;

use huleedu_contracts::http::BCSPipelineDefinitionRequestV1;
use huleedu_contracts::payloads::{
    BatchEssaysReady, BatchPipelineCompletedV1, ClientBatchPipelineRequestV1,
    ELSBatchPhaseOutcomeV1,
};
use huleedu_contracts::{
    decode_envelope, decode_json, BatchStatus, DecodeError, DecodeErrorKind, PhaseName,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const OUTCOME: &str = "huleedu.els.batch.phase.outcome.v1--completed_with_failures.json";
const REQUEST: &str = "huleedu.commands.batch.pipeline.v1--assignment-prompt.json";

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn outcome_err(mutate: impl FnOnce(&mut Value)) -> DecodeError {
    let mut value = common::example_value(OUTCOME);
    mutate(&mut value);
    decode_envelope::<ELSBatchPhaseOutcomeV1>(&bytes(&value))
        .expect_err("mutated outcome should be rejected")
}

fn request_result(
    mutate: impl FnOnce(&mut Value),
) -> Result<ClientBatchPipelineRequestV1, DecodeError> {
    let mut value = common::example_value(REQUEST);
    mutate(&mut value);
    decode_envelope::<ClientBatchPipelineRequestV1>(&bytes(&value)).map(|env| env.data)
}

#[track_caller]
fn assert_validation(err: &DecodeError, path: &str) {
    assert_eq!(err.kind, DecodeErrorKind::Validation, "{err}");
    assert!(
        err.message.starts_with(&format!("{path}: ")),
        "message should start with the field path `{path}`: {}",
        err.message
    );
}

#[test]
fn wrong_type_names_the_field() {
    let err = outcome_err(|v| v["data"]["failed_essay_ids"] = json!("e1"));
    assert_validation(&err, "data.failed_essay_ids");
    assert!(err.message.contains("invalid type"), "{}", err.message);

    let err = outcome_err(|v| v["data"]["processed_essays"][1]["text_storage_id"] = json!(42));
    assert_validation(&err, "data.processed_essays[1].text_storage_id");

    let err = outcome_err(|v| v["correlation_id"] = json!("not-a-uuid"));
    assert_validation(&err, "correlation_id");
}

#[test]
fn unknown_enum_value_names_the_field() {
    let err = outcome_err(|v| v["data"]["phase_name"] = json!("foo"));
    assert_validation(&err, "data.phase_name");
    assert!(
        err.message.contains("unknown variant `foo`"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("cj_assessment"),
        "lists the expected values: {}",
        err.message
    );

    let err = outcome_err(|v| v["data"]["phase_status"] = json!("running"));
    assert_validation(&err, "data.phase_status");

    // Enum values are case-sensitive, as in the platform.
    let err = outcome_err(|v| v["data"]["phase_name"] = json!("Spellcheck"));
    assert_validation(&err, "data.phase_name");
}

#[test]
fn every_platform_batch_status_decodes() {
    for status in BatchStatus::ALL {
        let mut value = common::example_value(OUTCOME);
        value["data"]["phase_status"] = json!(status.as_str());
        let env = decode_envelope::<ELSBatchPhaseOutcomeV1>(&bytes(&value)).unwrap();
        assert_eq!(env.data.phase_status, status);
    }
    for phase in PhaseName::ALL {
        let mut value = common::example_value(OUTCOME);
        value["data"]["phase_name"] = json!(phase.as_str());
        let env = decode_envelope::<ELSBatchPhaseOutcomeV1>(&bytes(&value)).unwrap();
        assert_eq!(env.data.phase_name, phase);
    }
}

#[test]
fn missing_required_field_names_the_field() {
    let err = outcome_err(|v| {
        v["data"].as_object_mut().unwrap().remove("batch_id");
    });
    assert_validation(&err, "data.batch_id");
    assert!(err.message.contains("missing"), "{}", err.message);

    let err = outcome_err(|v| {
        v["data"]["processed_essays"][0]
            .as_object_mut()
            .unwrap()
            .remove("essay_id");
    });
    assert_validation(&err, "data.processed_essays[0].essay_id");

    let err = outcome_err(|v| {
        v.as_object_mut().unwrap().remove("data");
    });
    assert_validation(&err, "data");

    let err = outcome_err(|v| {
        v.as_object_mut().unwrap().remove("event_type");
    });
    assert_validation(&err, "event_type");
}

#[test]
fn nested_metadata_errors_name_the_path() {
    let mut value = common::example_value("huleedu.els.batch.essays.ready.v1--regular-sv1.json");
    value["data"]["metadata"]["timestamp"] = json!("yesterday");
    let err = decode_envelope::<BatchEssaysReady>(&bytes(&value)).unwrap_err();
    assert_validation(&err, "data.metadata.timestamp");

    let mut value =
        common::example_value("huleedu.batch.pipeline.completed.v1--completed_successfully.json");
    value["data"]["metadata"]["error_info"] = json!([]);
    let err = decode_envelope::<BatchPipelineCompletedV1>(&bytes(&value)).unwrap_err();
    assert_validation(&err, "data.metadata.error_info");
}

#[test]
fn free_form_object_fields_must_be_objects() {
    let mut value = common::example_value("huleedu.els.batch.essays.ready.v1--regular-sv1.json");
    value["data"]["student_prompt_ref"] = json!("a0b1c2d3");
    let err = decode_envelope::<BatchEssaysReady>(&bytes(&value)).unwrap_err();
    assert_validation(&err, "data.student_prompt_ref");

    let err = request_result(|v| {
        v["data"]["prompt_payload"] = json!({"assignment_id": null, "cms_prompt_ref": [1]});
    })
    .unwrap_err();
    assert_validation(&err, "data.prompt_payload.cms_prompt_ref");
}

#[test]
fn other_schema_versions_are_rejected() {
    for version in [json!(2), json!(0), json!(-1), json!(1.5)] {
        let err = outcome_err(|v| v["schema_version"] = version.clone());
        assert_validation(&err, "schema_version");
    }
    let err = outcome_err(|v| v["schema_version"] = json!("1"));
    assert_validation(&err, "schema_version");
}

#[test]
fn invalid_json_is_a_decode_error() {
    for raw in [
        &b"{\"event_id\": "[..],
        b"",
        b"not json",
        b"{\"a\": 1} trailing",
        b"\xff\xfe{}",
    ] {
        let err = decode_envelope::<ELSBatchPhaseOutcomeV1>(raw).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Decode, "{raw:?}: {err}");
        assert_eq!(err.kind.as_str(), "decode");
        let err = decode_json::<BCSPipelineDefinitionRequestV1>(raw).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Decode, "{raw:?}: {err}");
    }
    // Invalid UTF-8 inside an otherwise well-formed document.
    let mut raw = common::example_bytes(OUTCOME);
    let at = raw.iter().position(|&b| b == b'3').unwrap();
    raw[at] = 0xff;
    let err = decode_envelope::<ELSBatchPhaseOutcomeV1>(&raw).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Decode, "{err}");
    assert!(err.message.contains("UTF-8"), "{}", err.message);
}

#[test]
fn json_that_is_not_an_object_is_a_validation_error() {
    for raw in [&b"[1, 2]"[..], b"42", b"\"text\"", b"null"] {
        let err = decode_envelope::<ELSBatchPhaseOutcomeV1>(raw).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Validation, "{err}");
        assert_eq!(err.kind.as_str(), "validation");
    }
    let err = outcome_err(|v| v["data"] = json!([]));
    assert_validation(&err, "data");
}

#[test]
fn positional_arrays_are_not_read_as_objects() {
    // serde's derive would accept the nine envelope values as an array; pydantic does not.
    let value = common::example_value(OUTCOME);
    let positional: Vec<Value> = value.as_object().unwrap().values().cloned().collect();
    let err = decode_envelope::<ELSBatchPhaseOutcomeV1>(&bytes(&json!(positional))).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Validation, "{err}");
    assert!(
        err.message.contains("expected a JSON object"),
        "{}",
        err.message
    );

    let data = value["data"]
        .as_object()
        .unwrap()
        .values()
        .cloned()
        .collect::<Vec<_>>();
    let err = outcome_err(|v| v["data"] = json!(data));
    assert_validation(&err, "data");

    let err =
        decode_json::<BCSPipelineDefinitionRequestV1>(br#"["b", "spellcheck", "c"]"#).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Validation, "{err}");

    // An untyped payload may be any JSON.
    let mut v = value.clone();
    v["data"] = json!([1, 2]);
    let env = decode_envelope::<Value>(&bytes(&v)).unwrap();
    assert_eq!(env.data, json!([1, 2]));
}

#[test]
fn request_strings_are_trimmed() {
    let data = request_result(|v| {
        v["data"]["batch_id"] = json!("  b-1\t");
        v["data"]["requested_pipeline"] = json!(" cj_assessment\n");
        v["data"]["user_id"] = json!(" u ");
        v["data"]["prompt_payload"]["assignment_id"] = json!(" a-1 ");
    })
    .unwrap();
    assert_eq!(data.batch_id, "b-1");
    assert_eq!(data.requested_pipeline, "cj_assessment");
    assert_eq!(data.user_id, "u");
    assert_eq!(
        data.prompt_payload.unwrap().assignment_id.as_deref(),
        Some("a-1")
    );
}

#[test]
fn request_string_lengths_are_checked_after_trimming() {
    let err = request_result(|v| v["data"]["batch_id"] = json!("   ")).unwrap_err();
    assert_validation(&err, "data.batch_id");
    let err = request_result(|v| v["data"]["batch_id"] = json!("x".repeat(256))).unwrap_err();
    assert_validation(&err, "data.batch_id");
    assert!(request_result(|v| v["data"]["batch_id"] = json!("é".repeat(255))).is_ok());

    let err = request_result(|v| v["data"]["requested_pipeline"] = json!("")).unwrap_err();
    assert_validation(&err, "data.requested_pipeline");
    let err =
        request_result(|v| v["data"]["requested_pipeline"] = json!("p".repeat(101))).unwrap_err();
    assert_validation(&err, "data.requested_pipeline");
    assert!(request_result(|v| v["data"]["requested_pipeline"] = json!("p".repeat(100))).is_ok());

    let err = request_result(|v| v["data"]["user_id"] = json!("")).unwrap_err();
    assert_validation(&err, "data.user_id");
    let err = request_result(|v| v["data"]["retry_reason"] = json!("r".repeat(501))).unwrap_err();
    assert_validation(&err, "data.retry_reason");
    let err = request_result(|v| {
        v["data"]["prompt_payload"]["assignment_id"] = json!("a".repeat(101));
    })
    .unwrap_err();
    assert_validation(&err, "data.prompt_payload.assignment_id");
}

#[test]
fn prompt_payload_needs_exactly_one_reference() {
    let err = request_result(|v| {
        v["data"]["prompt_payload"] = json!({"assignment_id": null, "cms_prompt_ref": null});
    })
    .unwrap_err();
    assert_validation(&err, "data.prompt_payload");
    assert!(err.message.contains("exactly one"), "{}", err.message);

    let err = request_result(|v| {
        v["data"]["prompt_payload"] =
            json!({"assignment_id": "a-1", "cms_prompt_ref": {"references": {}}});
    })
    .unwrap_err();
    assert_validation(&err, "data.prompt_payload");

    // Absent keys count as null; an absent or null payload is fine.
    let err = request_result(|v| v["data"]["prompt_payload"] = json!({})).unwrap_err();
    assert_validation(&err, "data.prompt_payload");
    assert!(request_result(|v| v["data"]["prompt_payload"] = Value::Null).is_ok());
    assert!(request_result(|v| {
        v["data"].as_object_mut().unwrap().remove("prompt_payload");
    })
    .is_ok());
}

#[test]
fn request_defaults_follow_the_platform_model() {
    let data = request_result(|v| {
        let d = v["data"].as_object_mut().unwrap();
        d.remove("is_retry");
        d.remove("retry_reason");
        d.remove("client_correlation_id");
    })
    .unwrap();
    assert!(!data.is_retry);
    assert_eq!(data.retry_reason, None);
    assert_eq!(data.client_correlation_id.get_version_num(), 4);
}

#[test]
fn envelope_defaults_follow_the_platform_schema() {
    // Only event_type, source_service and data are required by the platform schema.
    let mut value = common::example_value(OUTCOME);
    let obj = value.as_object_mut().unwrap();
    for key in [
        "event_id",
        "event_timestamp",
        "schema_version",
        "data_schema_uri",
        "metadata",
    ] {
        obj.remove(key);
    }
    let env = decode_envelope::<ELSBatchPhaseOutcomeV1>(&bytes(&value)).unwrap();
    assert_eq!(env.schema_version, 1);
    assert_eq!(env.metadata, None);
    assert_eq!(env.data_schema_uri, None);
}

#[test]
fn bcs_request_errors_name_the_field_without_data_prefix() {
    let good = common::example_value(
        "http.bcs.pipelines.define.request--cj_assessment-canonical-prompt.json",
    );

    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("batch_id");
    let err = decode_json::<BCSPipelineDefinitionRequestV1>(&bytes(&v)).unwrap_err();
    assert_validation(&err, "batch_id");

    let mut v = good.clone();
    v["correlation_id"] = json!("c".repeat(101));
    let err = decode_json::<BCSPipelineDefinitionRequestV1>(&bytes(&v)).unwrap_err();
    assert_validation(&err, "correlation_id");

    let mut v = good.clone();
    v["batch_metadata"] = json!("flat");
    let err = decode_json::<BCSPipelineDefinitionRequestV1>(&bytes(&v)).unwrap_err();
    assert_validation(&err, "batch_metadata");

    let mut v = good;
    v["batch_id"] = json!("  b-1  ");
    v["after_pipeline_id"] = json!(" p-1 ");
    let request = decode_json::<BCSPipelineDefinitionRequestV1>(&bytes(&v)).unwrap();
    assert_eq!(request.batch_id, "b-1");
    assert_eq!(request.after_pipeline_id.as_deref(), Some("p-1"));
}

#[test]
fn decode_json_rejects_what_decode_envelope_rejects() {
    fn kind_of<T: DeserializeOwned + huleedu_contracts::Validate>(raw: &[u8]) -> DecodeErrorKind {
        match decode_json::<T>(raw) {
            Ok(_) => panic!("{raw:?} should be rejected"),
            Err(e) => e.kind,
        }
    }
    assert_eq!(
        kind_of::<BCSPipelineDefinitionRequestV1>(b"[]"),
        DecodeErrorKind::Validation
    );
    assert_eq!(
        kind_of::<BCSPipelineDefinitionRequestV1>(b"{"),
        DecodeErrorKind::Decode
    );
}

#[test]
fn display_is_lowercase_kind_then_message() {
    let err = outcome_err(|v| v["data"]["phase_name"] = json!("foo"));
    let shown = err.to_string();
    assert!(
        shown.starts_with("validation error: data.phase_name: "),
        "{shown}"
    );
    assert_eq!(DecodeErrorKind::Decode.to_string(), "decode");
}

#[test]
fn phase_name_parsing_names_the_bad_value() {
    assert_eq!(
        "cj_assessment".parse::<PhaseName>().unwrap(),
        PhaseName::CjAssessment
    );
    let err = "cj".parse::<PhaseName>().unwrap_err();
    assert!(err.to_string().contains("`cj`"), "{err}");
    for phase in PhaseName::ALL {
        assert_eq!(phase.as_str().parse::<PhaseName>().unwrap(), phase);
        assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        assert_eq!(phase.to_string(), phase.as_str());
    }
    for status in BatchStatus::ALL {
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        assert_eq!(status.as_str().parse::<BatchStatus>().unwrap(), status);
    }
}
