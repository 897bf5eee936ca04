//! Helpers shared by the simulator's tests: command envelopes and the platform's JSON Schemas.

#![allow(dead_code)]

use std::path::PathBuf;

use huleedu_contracts::payloads::{
    BatchServiceAIFeedbackInitiateCommandDataV1, BatchServiceCJAssessmentInitiateCommandDataV1,
    BatchServiceNLPInitiateCommandDataV2, BatchServiceSpellcheckInitiateCommandDataV1,
    EssayProcessingInputRefV1, ENTITY_TYPE_BATCH,
};
use huleedu_contracts::{events, topics, EventEnvelope, PhaseName, Timestamp};
use huleedu_kafka::Inbound;
use serde_json::Value;
use uuid::Uuid;

/// `n` essays `<batch>-e01..` with 32-hex input text ids.
pub fn essays(batch: &str, n: usize) -> Vec<EssayProcessingInputRefV1> {
    (1..=n)
        .map(|i| {
            EssayProcessingInputRefV1::new(
                format!("{batch}-e{i:02}"),
                Uuid::new_v4().simple().to_string(),
            )
        })
        .collect()
}

/// An initiate command for `phase` as BOS would publish it: JSON bytes and its event id.
pub fn command(
    phase: PhaseName,
    batch: Option<&str>,
    correlation_id: Uuid,
    essays: Vec<EssayProcessingInputRefV1>,
) -> (Vec<u8>, Uuid) {
    let topic = topics::initiate_command_topic(phase).expect("phase has a topic");
    let entity_id = batch.map(str::to_owned);
    let entity_type = Some(ENTITY_TYPE_BATCH.to_owned());
    let event_name = events::initiate_command_event_name(phase)
        .unwrap()
        .to_owned();
    macro_rules! envelope {
        ($data:expr) => {{
            let e = EventEnvelope::new(topic, "batch_orchestrator_service", correlation_id, $data);
            (e.to_json_bytes(), e.event_id)
        }};
    }
    match phase {
        PhaseName::Spellcheck => envelope!(BatchServiceSpellcheckInitiateCommandDataV1 {
            event_name,
            entity_id,
            entity_type,
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays,
            language: "en".into(),
        }),
        PhaseName::Nlp => envelope!(BatchServiceNLPInitiateCommandDataV2 {
            event_name,
            entity_id,
            entity_type,
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays,
            language: "en".into(),
            student_prompt_ref: None,
        }),
        PhaseName::CjAssessment => envelope!(BatchServiceCJAssessmentInitiateCommandDataV1 {
            event_name,
            entity_id,
            entity_type,
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays,
            language: "en".into(),
            course_code: "ENG5".into(),
            student_prompt_ref: None,
            class_type: "GUEST".into(),
            assignment_id: None,
        }),
        PhaseName::AiFeedback => envelope!(BatchServiceAIFeedbackInitiateCommandDataV1 {
            event_name,
            entity_id,
            entity_type,
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays,
            language: "en".into(),
            course_code: "ENG5".into(),
            student_prompt_ref: None,
            class_type: "GUEST".into(),
            owner_user_id: "user-1".into(),
        }),
        PhaseName::StudentMatching => panic!("no command for student_matching"),
    }
}

/// A consumed message as the runner would hand it to the worker.
pub fn inbound(topic: &str, key: Option<&str>, payload: Vec<u8>, offset: i64) -> Inbound {
    Inbound {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        key: key.map(|k| k.as_bytes().to_vec()),
        payload,
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

/// The platform's contract fixtures (examples and schemas), kept in the repository under
/// `crates/contracts/tests/platform`.
pub fn contracts_dir() -> PathBuf {
    huleedu_contracts::platform_fixtures_dir()
}

/// `examples/<name>` as bytes.
pub fn example(name: &str) -> Vec<u8> {
    let path = contracts_dir().join("examples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Errors of `instance` against `schemas/<model>.schema.json` (Draft 2020-12, formats checked).
pub fn schema_errors(model: &str, instance: &Value) -> Vec<String> {
    let path = contracts_dir()
        .join("schemas")
        .join(format!("{model}.schema.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {model} does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Asserts that `envelope_bytes` is a valid `EventEnvelope` whose `data` is a valid `model`.
pub fn assert_valid_event(model: &str, envelope_bytes: &[u8]) {
    let value: Value = serde_json::from_slice(envelope_bytes).expect("event is JSON");
    let errors = schema_errors("EventEnvelope", &value);
    assert!(
        errors.is_empty(),
        "envelope invalid: {errors:#?}\n{value:#}"
    );
    let errors = schema_errors(model, &value["data"]);
    assert!(
        errors.is_empty(),
        "data invalid against {model}: {errors:#?}\n{value:#}"
    );
}

/// True for a Content Service storage id: 32 lowercase hex characters.
pub fn is_storage_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The simulator consumes the platform's fixed command topics, so two running at once (in
/// different consumer groups) would both answer every command: every test that runs one,
/// in-process or as a binary, holds this for as long as it runs.
pub static ONE_APP_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails unless the metrics `text` counts exactly one command of `phase` and one outcome of
/// `phase` with `status`.
pub fn assert_counted_once(text: &str, phase: &str, status: &str) {
    for series in [
        format!(r#"commands_received_total{{phase="{phase}"}} 1"#),
        format!(r#"outcomes_published_total{{phase="{phase}",status="{status}"}} 1"#),
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "{series} missing:\n{text}"
        );
    }
}
