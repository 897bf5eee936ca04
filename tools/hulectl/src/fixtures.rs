//! Test fixtures: wire messages and service documents shaped like the real ones.

use huleedu_contracts::http::bos::BatchStatusView;
use huleedu_contracts::topics;
use serde_json::{json, Value};

/// The correlation id of fixture envelopes.
pub const CORR: &str = "22222222-2222-4222-8222-222222222222";
/// A pipeline correlation id for failed-essay records.
pub const PIPELINE: &str = "33333333-3333-4333-8333-333333333333";

/// An envelope around `data`, timestamped 2026-11-29 12:00:01.25 UTC.
pub fn env(topic: &str, corr: &str, data: Value) -> Vec<u8> {
    json!({
        "event_id": "11111111-1111-4111-8111-111111111111",
        "event_type": topic,
        "event_timestamp": "2026-11-29T12:00:01.250000Z",
        "source_service": "test",
        "schema_version": 1,
        "correlation_id": corr,
        "data_schema_uri": null,
        "data": data,
        "metadata": null
    })
    .to_string()
    .into_bytes()
}

fn essays(batch: &str, n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            json!({"essay_id": format!("{batch}-e{i:02}"), "text_storage_id": format!("{i:032x}"),
                "spellcheck_metrics": null})
        })
        .collect()
}

fn metadata(batch: &str) -> Value {
    json!({"entity_id": batch, "entity_type": "batch", "parent_id": null,
        "timestamp": "2026-11-29T12:00:01Z", "processing_stage": null, "started_at": null,
        "completed_at": null, "event": null, "error_info": {}})
}

pub fn request(batch: &str, pipeline: &str) -> Vec<u8> {
    env(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        CORR,
        json!({"batch_id": batch, "requested_pipeline": pipeline, "client_correlation_id": CORR,
            "user_id": "ann", "is_retry": false, "retry_reason": null, "prompt_payload": null}),
    )
}

pub fn ready(batch: &str, n: usize) -> Vec<u8> {
    env(
        topics::BATCH_ESSAYS_READY,
        CORR,
        json!({"event": "batch.essays.ready", "batch_id": batch, "ready_essays": essays(batch, n),
            "metadata": metadata(batch), "course_code": "ENG5", "course_language": "en",
            "student_prompt_ref": null, "class_type": "GUEST"}),
    )
}

pub fn command(batch: &str, n: usize) -> Vec<u8> {
    env(
        topics::SPELLCHECK_INITIATE_COMMAND,
        CORR,
        json!({"event_name": "batch.spellcheck.initiate.command", "entity_id": batch,
            "entity_type": "batch", "parent_id": null, "timestamp": "2026-11-29T12:00:01Z",
            "essays_to_process": essays(batch, n), "language": "en"}),
    )
}

pub fn outcome(batch: &str, phase: &str, ok: usize, failed: &[&str]) -> Vec<u8> {
    let status = match (ok, failed.len()) {
        (_, 0) => "completed_successfully",
        (0, _) => "failed_critically",
        _ => "completed_with_failures",
    };
    env(
        topics::ELS_BATCH_PHASE_OUTCOME,
        CORR,
        json!({"batch_id": batch, "phase_name": phase, "phase_status": status,
            "processed_essays": essays(batch, ok), "failed_essay_ids": failed, "correlation_id": CORR}),
    )
}

pub fn skipped(batch: &str, phase: &str) -> Vec<u8> {
    env(
        topics::BATCH_PHASE_SKIPPED,
        CORR,
        json!({"event": "batch.phase.skipped", "batch_id": batch, "phase_name": phase,
            "skip_reason": "already_completed", "storage_id": null, "correlation_id": CORR,
            "metadata": metadata(batch)}),
    )
}

/// A terminal event; `reason` is its `failure_reason`.
#[allow(clippy::too_many_arguments)]
pub fn completed(
    batch: &str,
    pipeline: &str,
    status: &str,
    ran: &[&str],
    skipped: &[&str],
    ok: i64,
    failed: i64,
    secs: f64,
    reason: Option<&str>,
) -> Vec<u8> {
    env(
        topics::BATCH_PIPELINE_COMPLETED,
        CORR,
        json!({"event": "batch.pipeline.completed", "batch_id": batch, "completed_phases": ran,
            "final_status": status, "processing_duration_seconds": secs,
            "successful_essay_count": ok, "failed_essay_count": failed, "correlation_id": CORR,
            "metadata": metadata(batch), "requested_pipeline": pipeline, "skipped_phases": skipped,
            "failure_reason": reason}),
    )
}

/// A failed-essay record; its `event_id` is derived from batch and essay (so records of
/// different essays are distinct events, and the same essay's record is the same event).
pub fn failed_essay(batch: &str, essay: &str, pipeline: &str) -> Vec<u8> {
    let h = format!("{batch}/{essay}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        h >> 32,
        h & 0xffff_ffff_ffff
    );
    let mut v: Value =
        serde_json::from_slice(&failed_essay_record(batch, essay, pipeline)).unwrap();
    v["event_id"] = json!(id);
    v.to_string().into_bytes()
}

fn failed_essay_record(batch: &str, essay: &str, pipeline: &str) -> Vec<u8> {
    env(
        topics::FAILED_ESSAYS_DLQ,
        pipeline,
        json!({"batch_id": batch, "essay_id": essay, "phase_name": "spellcheck",
            "phase_status": "completed_with_failures", "pipeline_correlation_id": pipeline,
            "source_event_id": "44444444-4444-4444-8444-444444444444",
            "source_topic": topics::ELS_BATCH_PHASE_OUTCOME, "source_partition": 1,
            "source_offset": 7, "reason": "listed in failed_essay_ids",
            "failed_at": "2026-11-29T12:00:02.000000Z"}),
    )
}

fn run(
    phase: &str,
    essays_in: u64,
    out: u64,
    failed: u64,
    status: &str,
    start: &str,
    end: &str,
) -> Value {
    json!({"phase": phase, "command_id": "66666666-6666-4666-8666-666666666666",
        "essays_in": essays_in, "essays_out": out, "failed": failed, "status": status,
        "started_at": start, "finished_at": end})
}

/// Pipeline ids of the BOS status fixture.
pub const CJ_PIPELINE: &str = "aaaaaaaa-0000-4000-8000-000000000001";
pub const NLP_PIPELINE: &str = "bbbbbbbb-0000-4000-8000-000000000002";

/// `GET /v1/batches/b1/status` after cj_assessment and nlp, with ai_feedback running and a
/// spellcheck retry queued (written as the wire JSON, read as the contract type).
pub fn bos_status() -> BatchStatusView {
    let doc = json!({
        "batch_id": "b1", "known": true, "essay_count": 20, "course_code": "ENG5",
        "active_pipeline": {
            "requested_pipeline": "ai_feedback", "correlation_id": "cccccccc-0000-4000-8000-000000000003",
            "request_id": "dddddddd-0000-4000-8000-000000000004", "phases": ["ai_feedback"],
            "pruned_phases": ["spellcheck", "nlp"], "current_phase": "ai_feedback",
            "current_phase_deadline": "2026-11-29T12:30:05.000000Z",
            "received_at": "2026-11-29T12:00:05.000000Z", "started_at": "2026-11-29T12:00:05.100000Z",
            "runs": [{"phase": "ai_feedback", "command_id": "66666666-6666-4666-8666-666666666666",
                "essays_in": 17, "essays_out": null, "failed": null, "status": null,
                "started_at": "2026-11-29T12:00:05.100000Z", "finished_at": null}],
            "failed_essay_count": 0},
        "queue": [{"requested_pipeline": "spellcheck", "correlation_id": "eeeeeeee-0000-4000-8000-000000000005",
            "request_id": "ffffffff-0000-4000-8000-000000000006", "received_at": "2026-11-29T12:00:06.000000Z",
            "gives_up_at": null}],
        "parked": [],
        "phase_results": {
            "spellcheck": {"status": "completed_with_failures", "succeeded_count": 17, "failed_count": 3,
                "failed_essay_ids": ["b1-e04", "b1-e11", "b1-e17"], "pipeline_id": CJ_PIPELINE,
                "at": "2026-11-29T12:00:02.000000Z"},
            "cj_assessment": {"status": "completed_successfully", "succeeded_count": 17, "failed_count": 0,
                "failed_essay_ids": [], "pipeline_id": CJ_PIPELINE, "at": "2026-11-29T12:00:03.000000Z"},
            "nlp": {"status": "completed_successfully", "succeeded_count": 17, "failed_count": 0,
                "failed_essay_ids": [], "pipeline_id": NLP_PIPELINE, "at": "2026-11-29T12:00:04.500000Z"}
        },
        "history": [
            {"pipeline_id": CJ_PIPELINE, "request_id": "12121212-0000-4000-8000-000000000007",
             "requested_pipeline": "cj_assessment", "final_status": "completed_with_failures",
             "completed_phases": ["spellcheck", "cj_assessment"], "skipped_phases": [],
             "successful_essay_count": 17, "failed_essay_count": 3, "processing_duration_seconds": 2.31,
             "failure_reason": null, "received_at": "2026-11-29T12:00:00.700000Z",
             "finished_at": "2026-11-29T12:00:03.010000Z",
             "runs": [run("spellcheck", 20, 17, 3, "completed_with_failures", "2026-11-29T12:00:01.000000Z", "2026-11-29T12:00:02.000000Z"),
                      run("cj_assessment", 17, 17, 0, "completed_successfully", "2026-11-29T12:00:02.000000Z", "2026-11-29T12:00:03.000000Z")],
             "terminal_event_id": "13131313-0000-4000-8000-000000000008"},
            {"pipeline_id": NLP_PIPELINE, "request_id": "14141414-0000-4000-8000-000000000009",
             "requested_pipeline": "nlp", "final_status": "completed_successfully",
             "completed_phases": ["nlp"], "skipped_phases": ["spellcheck"],
             "successful_essay_count": 17, "failed_essay_count": 0, "processing_duration_seconds": 1.2,
             "failure_reason": null, "received_at": "2026-11-29T12:00:03.300000Z",
             "finished_at": "2026-11-29T12:00:04.500000Z",
             "runs": [run("nlp", 17, 17, 0, "completed_successfully", "2026-11-29T12:00:03.500000Z", "2026-11-29T12:00:04.500000Z")],
             "terminal_event_id": "15151515-0000-4000-8000-000000000010"}
        ],
        "last_pipeline_id": NLP_PIPELINE
    });
    serde_json::from_value(doc).expect("the fixture is a status document")
}

/// `GET /internal/v1/batches/b1/phases`: spellcheck and cj from events, nlp marked by an
/// operator.
pub fn bcs_phases() -> Value {
    let rec = |status: &str,
               source: &str,
               at: &str,
               ok: Option<u64>,
               failed: Option<u64>,
               op: Option<&str>,
               why: Option<&str>| {
        json!({"status": status, "source": source, "pipeline_correlation_id": null, "pipeline_id": null,
            "event_id": null, "processed_count": ok, "failed_count": failed, "at": at,
            "operator": op, "reason": why})
    };
    json!({
        "batch_id": "b1",
        "phases": {
            "cj_assessment": rec("completed", "pipeline_completed", "2026-11-29T12:00:03.010000Z", None, None, None, None),
            "nlp": rec("completed", "operator", "2026-11-29T12:10:00.000000Z", None, None, Some("ann"), Some("ran offline")),
            "spellcheck": rec("completed", "event", "2026-11-29T12:00:02.000000Z", Some(17), Some(3), None, None)
        },
        "processed_pipelines": [
            {"pipeline_id": CJ_PIPELINE, "processed_at": "2026-11-29T12:00:03.020000Z",
             "event_id": "13131313-0000-4000-8000-000000000008", "final_status": "completed_with_failures",
             "completed_phases": ["spellcheck", "cj_assessment"]}
        ]
    })
}
