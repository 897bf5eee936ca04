//! Every event this project emits, built from Rust values (not from the examples), validates
//! against the platform's JSON Schemas (Draft 2020-12, `format` checked for uuid/date-time):
//! the `data` object against its model schema and the whole envelope against
//! `EventEnvelope.schema.json`. The DLQ record (this project's) is checked against the envelope
//! schema only. The BCS define request/response bodies are checked against their schemas.

use crate::common;

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use huleedu_contracts::dlq::FailedEssayDlqRecordV1;
use huleedu_contracts::http::{BCSPipelineDefinitionRequestV1, BCSPipelineDefinitionResponseV1};
use huleedu_contracts::payloads::*;
use huleedu_contracts::{events, source, topics, BatchStatus, EventEnvelope, PhaseName, Timestamp};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

fn validator(model: &str) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&common::schema(model))
        .unwrap_or_else(|e| panic!("schema {model} does not compile: {e}"))
}

fn schema_errors(model: &str, instance: &Value) -> Vec<String> {
    let validator = validator(model);
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(model: &str, instance: &Value) {
    let errors = schema_errors(model, instance);
    assert!(
        errors.is_empty(),
        "instance does not validate against {model}: {errors:#?}\ninstance: {instance:#}"
    );
}

/// Validates the whole envelope against `EventEnvelope` and, when given, `data` against `model`.
fn assert_emitted_valid<T: Serialize>(envelope: &EventEnvelope<T>, model: Option<&str>) {
    let value: Value = serde_json::from_slice(&envelope.to_json_bytes()).expect("JSON");
    assert_valid("EventEnvelope", &value);
    // The envelope always carries all nine keys, nulls included.
    let keys: BTreeSet<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 9, "envelope keys: {keys:?}");
    if let Some(model) = model {
        assert_valid(model, &value["data"]);
    }
}

const BATCH: &str = "3f6c1e2a-9b7d-4c52-8e1f-0a2b4c6d8e10";

fn correlation() -> Uuid {
    Uuid::parse_str("6e1a4c7f-2b9d-4f08-a3c5-d7e9f1a3b5c7").unwrap()
}

fn essays() -> Vec<EssayProcessingInputRefV1> {
    vec![
        EssayProcessingInputRefV1::new(
            "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8",
            "5f7b9d1e3a4c4b6d8e0a8c6d4f2b0e8a",
        ),
        EssayProcessingInputRefV1::new(
            "d2b3c4d5-e6f7-4081-92a3-b4c5d6e7f809",
            "6a8c0e2f4b5d4c7e9f1b9d7e5a3c1f9b",
        ),
    ]
}

fn prompt_ref() -> Value {
    json!({"references": {"student_prompt_text": {"storage_id": "a0b1c2d3e4f5460718293a4b5c6d7e8f", "path": ""}}})
}

fn bos_metadata() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "user_id".into(),
        json!("b5e0c7d2-4a19-4f6e-8c3b-2d1e0f9a8b76"),
    );
    m.insert("org_id".into(), Value::Null);
    m.insert(
        "traceparent".into(),
        json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    m
}

/// A timestamp with zero microseconds (written without a fraction).
fn whole_second() -> Timestamp {
    Timestamp::from(Utc.with_ymd_and_hms(2025, 11, 3, 9, 41, 0).unwrap())
}

#[test]
fn spellcheck_initiate_command_validates() {
    for timestamp in [Timestamp::now(), whole_second()] {
        let data = BatchServiceSpellcheckInitiateCommandDataV1 {
            event_name: events::BATCH_SPELLCHECK_INITIATE_COMMAND.into(),
            entity_id: Some(BATCH.into()),
            entity_type: Some(ENTITY_TYPE_BATCH.into()),
            parent_id: None,
            timestamp,
            essays_to_process: essays(),
            language: "en".into(),
        };
        let env = EventEnvelope::new(
            topics::SPELLCHECK_INITIATE_COMMAND,
            source::BATCH_ORCHESTRATOR,
            correlation(),
            data,
        )
        .with_metadata(bos_metadata());
        assert_emitted_valid(&env, Some("BatchServiceSpellcheckInitiateCommandDataV1"));
    }
}

#[test]
fn nlp_initiate_command_validates() {
    for student_prompt_ref in [Some(prompt_ref()), None] {
        let data = BatchServiceNLPInitiateCommandDataV2 {
            event_name: events::BATCH_NLP_INITIATE_COMMAND_V2.into(),
            entity_id: Some(BATCH.into()),
            entity_type: Some(ENTITY_TYPE_BATCH.into()),
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays(),
            language: "sv".into(),
            student_prompt_ref,
        };
        let env = EventEnvelope::new(
            topics::NLP_INITIATE_COMMAND,
            source::BATCH_ORCHESTRATOR,
            correlation(),
            data,
        );
        assert_emitted_valid(&env, Some("BatchServiceNLPInitiateCommandDataV2"));
    }
}

#[test]
fn cj_assessment_initiate_command_validates() {
    for (prompt, assignment) in [
        (Some(prompt_ref()), Some("sv1-utredande-2025-ht".to_owned())),
        (None, None),
    ] {
        let data = BatchServiceCJAssessmentInitiateCommandDataV1 {
            event_name: events::BATCH_CJ_ASSESSMENT_INITIATE_COMMAND.into(),
            entity_id: Some(BATCH.into()),
            entity_type: Some(ENTITY_TYPE_BATCH.into()),
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays(),
            language: "sv".into(),
            course_code: "SV1".into(),
            student_prompt_ref: prompt,
            class_type: "REGULAR".into(),
            assignment_id: assignment,
        };
        let env = EventEnvelope::new(
            topics::CJ_ASSESSMENT_INITIATE_COMMAND,
            source::BATCH_ORCHESTRATOR,
            correlation(),
            data,
        )
        .with_metadata(bos_metadata());
        assert_emitted_valid(&env, Some("BatchServiceCJAssessmentInitiateCommandDataV1"));
    }
}

#[test]
fn ai_feedback_initiate_command_validates() {
    let data = BatchServiceAIFeedbackInitiateCommandDataV1 {
        event_name: events::BATCH_AI_FEEDBACK_INITIATE_COMMAND.into(),
        entity_id: Some(BATCH.into()),
        entity_type: Some(ENTITY_TYPE_BATCH.into()),
        parent_id: None,
        timestamp: Timestamp::now(),
        essays_to_process: essays(),
        language: "en".into(),
        course_code: "ENG5".into(),
        student_prompt_ref: Some(prompt_ref()),
        class_type: "GUEST".into(),
        owner_user_id: "b5e0c7d2-4a19-4f6e-8c3b-2d1e0f9a8b76".into(),
    };
    let env = EventEnvelope::new(
        topics::AI_FEEDBACK_INITIATE_COMMAND,
        source::BATCH_ORCHESTRATOR,
        correlation(),
        data,
    );
    assert_emitted_valid(&env, Some("BatchServiceAIFeedbackInitiateCommandDataV1"));
}

#[test]
fn batch_pipeline_completed_validates_with_and_without_extras() {
    let mut metadata =
        SystemProcessingMetadata::for_batch(BATCH, Some(events::BATCH_PIPELINE_COMPLETED));
    metadata.started_at = Some(whole_second());
    metadata.completed_at = Some(Timestamp::now());
    let full = BatchPipelineCompletedV1 {
        event: events::BATCH_PIPELINE_COMPLETED.into(),
        batch_id: BATCH.into(),
        completed_phases: vec!["spellcheck".into(), "ai_feedback".into()],
        final_status: BatchStatus::CompletedWithFailures,
        processing_duration_seconds: 12.5,
        successful_essay_count: 1,
        failed_essay_count: 1,
        correlation_id: correlation(),
        metadata,
        requested_pipeline: Some("ai_feedback".into()),
        skipped_phases: vec!["spellcheck".into()],
        failure_reason: Some("essay e1 failed in spellcheck".into()),
    };
    let minimal = BatchPipelineCompletedV1 {
        final_status: BatchStatus::CompletedSuccessfully,
        processing_duration_seconds: 0.0,
        requested_pipeline: None,
        skipped_phases: vec![],
        failure_reason: None,
        metadata: SystemProcessingMetadata::for_batch(BATCH, None),
        ..full.clone()
    };
    for data in [full, minimal] {
        let env = EventEnvelope::new(
            topics::BATCH_PIPELINE_COMPLETED,
            source::BATCH_ORCHESTRATOR,
            correlation(),
            data,
        );
        assert_emitted_valid(&env, Some("BatchPipelineCompletedV1"));
    }
}

#[test]
fn phase_skipped_validates() {
    let data = PhaseSkippedV1 {
        event: events::BATCH_PHASE_SKIPPED.into(),
        batch_id: BATCH.into(),
        phase_name: PhaseName::Spellcheck.to_string(),
        skip_reason: "already_completed".into(),
        storage_id: None,
        correlation_id: correlation(),
        metadata: SystemProcessingMetadata::for_batch(BATCH, Some(events::BATCH_PHASE_SKIPPED)),
    };
    let env = EventEnvelope::new(
        topics::BATCH_PHASE_SKIPPED,
        source::BATCH_ORCHESTRATOR,
        correlation(),
        data,
    );
    assert_emitted_valid(&env, Some("PhaseSkippedV1"));
}

#[test]
fn els_batch_phase_outcome_validates() {
    for (phase_status, processed, failed) in [
        (BatchStatus::CompletedSuccessfully, essays(), vec![]),
        (
            BatchStatus::CompletedWithFailures,
            essays()[..1].to_vec(),
            vec![essays()[1].essay_id.clone()],
        ),
        (
            BatchStatus::FailedCritically,
            vec![],
            essays().into_iter().map(|e| e.essay_id).collect(),
        ),
    ] {
        let data = ELSBatchPhaseOutcomeV1 {
            batch_id: BATCH.into(),
            phase_name: PhaseName::CjAssessment,
            phase_status,
            processed_essays: processed,
            failed_essay_ids: failed,
            correlation_id: correlation(),
        };
        let env = EventEnvelope::new(
            topics::ELS_BATCH_PHASE_OUTCOME,
            source::ELS_SIMULATOR,
            correlation(),
            data,
        );
        assert_emitted_valid(&env, Some("ELSBatchPhaseOutcomeV1"));
    }
}

#[test]
fn batch_essays_ready_validates() {
    let data = BatchEssaysReady {
        event: events::BATCH_ESSAYS_READY.into(),
        batch_id: BATCH.into(),
        ready_essays: essays(),
        metadata: SystemProcessingMetadata::for_batch(BATCH, Some(events::BATCH_ESSAYS_READY)),
        course_code: "ENG5".into(),
        course_language: "en".into(),
        student_prompt_ref: Some(prompt_ref()),
        class_type: "REGULAR".into(),
    };
    let env = EventEnvelope::new(
        topics::BATCH_ESSAYS_READY,
        source::ELS_SIMULATOR,
        correlation(),
        data,
    );
    assert_emitted_valid(&env, Some("BatchEssaysReady"));
}

#[test]
fn batch_content_provisioning_completed_validates() {
    let data = BatchContentProvisioningCompletedV1 {
        event: events::BATCH_CONTENT_PROVISIONING_COMPLETED.into(),
        batch_id: BATCH.into(),
        provisioned_count: 2,
        expected_count: 3,
        course_code: "ENG5".into(),
        user_id: "b5e0c7d2-4a19-4f6e-8c3b-2d1e0f9a8b76".into(),
        essays_for_processing: essays(),
        correlation_id: correlation(),
        timestamp: whole_second(),
    };
    let env = EventEnvelope::new(
        topics::BATCH_CONTENT_PROVISIONING_COMPLETED,
        source::ELS_SIMULATOR,
        correlation(),
        data,
    );
    assert_emitted_valid(&env, Some("BatchContentProvisioningCompletedV1"));
}

#[test]
fn client_batch_pipeline_request_validates() {
    let prompts = [
        None,
        Some(PipelinePromptPayload {
            assignment_id: Some("eng5-argumentative-2025-ht".into()),
            cms_prompt_ref: None,
        }),
        Some(PipelinePromptPayload {
            assignment_id: None,
            cms_prompt_ref: Some(prompt_ref()),
        }),
    ];
    for prompt_payload in prompts {
        let data = ClientBatchPipelineRequestV1 {
            batch_id: BATCH.into(),
            requested_pipeline: "cj_assessment".into(),
            client_correlation_id: correlation(),
            user_id: "b5e0c7d2-4a19-4f6e-8c3b-2d1e0f9a8b76".into(),
            is_retry: prompt_payload.is_none(),
            retry_reason: prompt_payload.is_none().then(|| "retrying".to_owned()),
            prompt_payload,
        };
        let env = EventEnvelope::new(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            "huleedu_cli",
            correlation(),
            data,
        );
        assert_emitted_valid(&env, Some("ClientBatchPipelineRequestV1"));
    }
}

#[test]
fn failed_essay_dlq_record_envelope_validates() {
    let data = FailedEssayDlqRecordV1 {
        batch_id: BATCH.into(),
        essay_id: "e3c4d5e6-f708-4192-a3b4-c5d6e7f8091a".into(),
        phase_name: PhaseName::Spellcheck,
        phase_status: BatchStatus::CompletedWithFailures,
        pipeline_correlation_id: correlation(),
        source_event_id: Uuid::new_v4(),
        source_topic: topics::ELS_BATCH_PHASE_OUTCOME.into(),
        source_partition: 2,
        source_offset: 4711,
        reason: "listed in failed_essay_ids".into(),
        failed_at: Timestamp::now(),
    };
    let env = EventEnvelope::new(
        topics::FAILED_ESSAYS_DLQ,
        source::BATCH_CONDUCTOR,
        correlation(),
        data,
    );
    assert_emitted_valid(&env, None);
    let value = serde_json::to_value(&env).unwrap();
    assert_eq!(value["event_type"], "huleedu.pipelines.failed_essays.DLQ");
    assert_eq!(value["data"]["phase_name"], "spellcheck");
    assert_eq!(value["data"]["phase_status"], "completed_with_failures");
}

#[test]
fn bcs_define_request_and_response_validate() {
    let with_metadata = BCSPipelineDefinitionRequestV1 {
        batch_id: BATCH.into(),
        requested_pipeline: PhaseName::CjAssessment.to_string(),
        correlation_id: correlation().to_string(),
        batch_metadata: Some(json!({"prompt_attached": true, "prompt_source": "canonical"})),
        after_pipeline_id: Some(Uuid::new_v4().to_string()),
    };
    let without_metadata = BCSPipelineDefinitionRequestV1 {
        batch_metadata: None,
        after_pipeline_id: None,
        ..with_metadata.clone()
    };
    for request in [with_metadata, without_metadata] {
        assert_valid(
            "BCSPipelineDefinitionRequestV1",
            &serde_json::to_value(&request).unwrap(),
        );
    }
    for analysis_summary in [Some("Resolved 2 phases for cj_assessment".to_owned()), None] {
        let response = BCSPipelineDefinitionResponseV1 {
            batch_id: BATCH.into(),
            final_pipeline: vec!["cj_assessment".into()],
            analysis_summary,
            pruned_phases: vec!["spellcheck".into()],
        };
        assert_valid(
            "BCSPipelineDefinitionResponseV1",
            &serde_json::to_value(&response).unwrap(),
        );
    }
}

/// The checks above are only meaningful if the validator rejects bad instances, formats included.
#[test]
fn validator_rejects_bad_instances_and_checks_formats() {
    let data = ELSBatchPhaseOutcomeV1 {
        batch_id: BATCH.into(),
        phase_name: PhaseName::Spellcheck,
        phase_status: BatchStatus::CompletedSuccessfully,
        processed_essays: essays(),
        failed_essay_ids: vec![],
        correlation_id: correlation(),
    };
    let good = serde_json::to_value(EventEnvelope::new(
        topics::ELS_BATCH_PHASE_OUTCOME,
        source::ELS_SIMULATOR,
        correlation(),
        data,
    ))
    .unwrap();

    let mut bad_time = good.clone();
    bad_time["event_timestamp"] = json!("2025-11-03 nine o'clock");
    assert!(!schema_errors("EventEnvelope", &bad_time).is_empty());

    let mut bad_uuid = good.clone();
    bad_uuid["correlation_id"] = json!("not-a-uuid");
    assert!(!schema_errors("EventEnvelope", &bad_uuid).is_empty());

    let mut missing = good["data"].clone();
    missing.as_object_mut().unwrap().remove("failed_essay_ids");
    assert!(!schema_errors("ELSBatchPhaseOutcomeV1", &missing).is_empty());

    let mut bad_enum = good["data"].clone();
    bad_enum["phase_status"] = json!("running");
    assert!(!schema_errors("ELSBatchPhaseOutcomeV1", &bad_enum).is_empty());
}

fn schema_enum(model: &str, def: &str) -> BTreeSet<String> {
    common::schema(model)["$defs"][def]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{model} has no $defs.{def}.enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn rust_enums_match_platform_enums() {
    let phases: BTreeSet<String> = PhaseName::ALL
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    assert_eq!(phases, schema_enum("ELSBatchPhaseOutcomeV1", "PhaseName"));
    let statuses: BTreeSet<String> = BatchStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(
        statuses,
        schema_enum("ELSBatchPhaseOutcomeV1", "BatchStatus")
    );
    // The event names this project writes are platform `ProcessingEvent` values.
    let processing_events = schema_enum(
        "BatchServiceSpellcheckInitiateCommandDataV1",
        "ProcessingEvent",
    );
    for name in [
        events::BATCH_ESSAYS_READY,
        events::BATCH_CONTENT_PROVISIONING_COMPLETED,
        events::BATCH_PIPELINE_COMPLETED,
        events::BATCH_PHASE_SKIPPED,
        events::BATCH_SPELLCHECK_INITIATE_COMMAND,
        events::BATCH_NLP_INITIATE_COMMAND_V2,
        events::BATCH_CJ_ASSESSMENT_INITIATE_COMMAND,
        events::BATCH_AI_FEEDBACK_INITIATE_COMMAND,
        events::PIPELINE_DENIED,
        events::ELS_BATCH_PHASE_OUTCOME,
    ] {
        assert!(
            processing_events.contains(name),
            "{name} is not a ProcessingEvent value"
        );
    }
}
