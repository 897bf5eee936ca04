//! Unknown keys are ignored at every level (pydantic `extra="ignore"`, INDEX note 9).

use crate::common;

use huleedu_contracts::http::{BCSPipelineDefinitionRequestV1, BCSPipelineDefinitionResponseV1};
use huleedu_contracts::payloads::{
    BatchEssaysReady, BatchPipelineCompletedV1, ClientBatchPipelineRequestV1,
    ELSBatchPhaseOutcomeV1, PipelineDeniedV1,
};
use huleedu_contracts::{decode_envelope, decode_json, Validate};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn add_unknown(object: &mut Value) {
    let obj = object.as_object_mut().expect("object");
    obj.insert(
        "x_future_field".into(),
        json!({"nested": [1, 2, {"deep": null}]}),
    );
    obj.insert("another_unknown".into(), json!("value"));
}

/// Decodes the example as is and with unknown keys added at the given JSON pointers; both must
/// give the same typed value.
fn check_envelope<T>(example: &str, pointers: &[&str])
where
    T: DeserializeOwned + Validate + Serialize + PartialEq + std::fmt::Debug,
{
    let original = common::example_value(example);
    let mut extended = original.clone();
    for pointer in pointers {
        add_unknown(
            extended
                .pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{example}: no {pointer}")),
        );
    }
    let plain = decode_envelope::<T>(&serde_json::to_vec(&original).unwrap()).unwrap();
    let with_extras = decode_envelope::<T>(&serde_json::to_vec(&extended).unwrap())
        .unwrap_or_else(|e| panic!("{example}: unknown keys must be ignored: {e}"));
    assert_eq!(plain, with_extras, "{example}");
    // Unknown keys are dropped on re-encoding, like pydantic does.
    assert!(!String::from_utf8(with_extras.to_json_bytes())
        .unwrap()
        .contains("x_future_field"));
}

#[test]
fn envelope_and_data_level_unknown_keys_are_ignored() {
    check_envelope::<ELSBatchPhaseOutcomeV1>(
        "huleedu.els.batch.phase.outcome.v1--completed_with_failures.json",
        &["", "/data", "/data/processed_essays/0"],
    );
    check_envelope::<BatchEssaysReady>(
        "huleedu.els.batch.essays.ready.v1--regular-sv1.json",
        &["", "/data", "/data/metadata", "/data/ready_essays/1"],
    );
    check_envelope::<ClientBatchPipelineRequestV1>(
        "huleedu.commands.batch.pipeline.v1--assignment-prompt.json",
        &["", "/data", "/data/prompt_payload"],
    );
    check_envelope::<BatchPipelineCompletedV1>(
        "huleedu.batch.pipeline.completed.v1--completed_successfully.json",
        &["", "/data", "/data/metadata"],
    );
    // BOS passes a `correlation_id` the model does not have (INDEX note 9).
    check_envelope::<PipelineDeniedV1>(
        "huleedu.pipeline.denied.v1--insufficient_credits.json",
        &["", "/data"],
    );
}

#[test]
fn free_form_objects_keep_unknown_keys() {
    let mut value = common::example_value(
        "huleedu.batch.content.provisioning.completed.v1--guest-all-provisioned.json",
    );
    value["metadata"] = json!({"traceparent": "00-abc-def-01", "custom": {"k": [1]}});
    let env = decode_envelope::<huleedu_contracts::payloads::BatchContentProvisioningCompletedV1>(
        &serde_json::to_vec(&value).unwrap(),
    )
    .unwrap();
    let metadata = env.metadata.expect("metadata");
    assert_eq!(metadata["custom"], json!({"k": [1]}));
}

#[test]
fn http_body_unknown_keys_are_ignored() {
    let mut request =
        common::example_value("http.bcs.pipelines.define.request--spellcheck-no-metadata.json");
    let plain =
        decode_json::<BCSPipelineDefinitionRequestV1>(&serde_json::to_vec(&request).unwrap())
            .unwrap();
    add_unknown(&mut request);
    let extended =
        decode_json::<BCSPipelineDefinitionRequestV1>(&serde_json::to_vec(&request).unwrap())
            .unwrap();
    assert_eq!(plain, extended);

    let mut response =
        common::example_value("http.bcs.pipelines.define.response--cj_assessment.json");
    add_unknown(&mut response);
    decode_json::<BCSPipelineDefinitionResponseV1>(&serde_json::to_vec(&response).unwrap())
        .unwrap();
}

#[test]
fn any_event_type_is_accepted() {
    for event_type in [
        "huleedu.els.batch.phase.outcome.v1",
        "els.batch.phase.outcome",
        "",
        "whatever",
    ] {
        let mut value =
            common::example_value("huleedu.els.batch.phase.outcome.v1--failed_critically.json");
        value["event_type"] = json!(event_type);
        let env = decode_envelope::<ELSBatchPhaseOutcomeV1>(&serde_json::to_vec(&value).unwrap())
            .unwrap();
        assert_eq!(env.event_type, event_type);
    }
}
