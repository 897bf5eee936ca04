//! The HTTP API: dispatch counts, demo-batch registration, per-batch overrides, probes and
//! metrics. [`router`] builds the whole (hardened) router from an [`AppState`], so handlers are
//! tested with `oneshot` and no socket.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use huleedu_contracts::payloads::{
    BatchEssaysReady, EssayProcessingInputRefV1, SystemProcessingMetadata,
};
use huleedu_contracts::{events, source, topics, EventEnvelope, PhaseName};
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::{self, Readiness};
use huleedu_http::{harden, ApiError, HttpLimits, Json};
use huleedu_kafka::OutgoingMessage;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::decide::{generated_essay_ids, original_text_id, parse_phase, BatchOverrides};
use crate::publish::Publisher;
use crate::state::{Counts, OverrideStore, PhaseCount};

/// Most essays a demo batch may have (a `BatchEssaysReady` must also fit one message: about
/// 7,600 generated essays at the default `KAFKA_MAX_MESSAGE_BYTES`).
pub const MAX_ESSAYS: usize = 10_000;
/// The platform's `CourseCode` values.
pub const COURSE_CODES: [&str; 6] = ["ENG5", "ENG6", "ENG7", "SV1", "SV2", "SV3"];
const LANGUAGES: [&str; 2] = ["en", "sv"];
const CLASS_TYPES: [&str; 2] = ["GUEST", "REGULAR"];

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Dispatch counts (written by the worker).
    pub counts: Counts,
    /// Per-batch overrides (read by the worker).
    pub overrides: OverrideStore,
    /// Publishes `BatchEssaysReady` for registered demo batches.
    pub publisher: Arc<dyn Publisher>,
    /// Served at `/metrics`.
    pub metrics: Metrics,
    /// Served at `/readyz`.
    pub readiness: Readiness,
    /// Largest event published (`KAFKA_MAX_MESSAGE_BYTES` less the record overhead): a batch
    /// whose `BatchEssaysReady` would be larger is refused.
    pub max_event_bytes: usize,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

/// Every route, with the shared limits, time-outs and JSON error bodies.
pub fn router(state: AppState) -> Router {
    let readiness = state.readiness.clone();
    let metrics = state.metrics.clone();
    let routes = Router::new()
        .route("/v1/counts", get(all_counts))
        .route("/v1/counts/{batch_id}", get(batch_counts))
        .route("/v1/batches", post(register_batch))
        .route("/v1/batches/{batch_id}/overrides", post(set_overrides))
        .route("/healthz", get(probes::healthz))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.respond().await }
            }),
        )
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let metrics = metrics.clone();
                async move { metrics.respond(&headers) }
            }),
        )
        .with_state(state);
    harden(routes, HttpLimits::default())
}

fn phases_json(phases: BTreeMap<PhaseName, PhaseCount>) -> Map<String, Value> {
    phases
        .into_iter()
        .map(|(phase, count)| (phase.as_str().to_owned(), json!(count)))
        .collect()
}

/// `GET /v1/counts`: `{"batches": {"<batch>": {"<phase>": {"dispatched", "deliveries"}}}}`.
async fn all_counts(State(state): State<AppState>) -> Json<Value> {
    let batches: Map<String, Value> = state
        .counts
        .all()
        .into_iter()
        .map(|(batch, phases)| (batch, Value::Object(phases_json(phases))))
        .collect();
    Json(json!({ "batches": batches }))
}

/// `GET /v1/counts/{batch_id}`: `{"batch_id", "phases": {...}}`, empty phases when unknown.
async fn batch_counts(State(state): State<AppState>, Path(batch_id): Path<String>) -> Json<Value> {
    let phases = phases_json(state.counts.batch(&batch_id));
    Json(json!({ "batch_id": batch_id, "phases": phases }))
}

/// Body of `POST /v1/batches`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBatch {
    #[serde(default)]
    batch_id: Option<String>,
    #[serde(default)]
    essay_count: Option<i64>,
    #[serde(default)]
    essay_ids: Option<Vec<String>>,
    #[serde(default)]
    course_code: Option<String>,
    #[serde(default)]
    course_language: Option<String>,
    #[serde(default)]
    class_type: Option<String>,
    #[serde(default)]
    fail: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    silent_phases: Option<Vec<String>>,
}

/// Body of `POST /v1/batches/{batch_id}/overrides`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesBody {
    #[serde(default)]
    fail: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    silent_phases: Option<Vec<String>>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_body", detail.into())
}

fn unknown_phase(field: &str, message: String) -> ApiError {
    ApiError::unprocessable("unknown_phase", format!("{field}: {message}"))
}

/// Checks the phase names of `fail` / `silent_phases`.
fn parse_overrides(
    fail: Option<BTreeMap<String, Vec<String>>>,
    silent_phases: Option<Vec<String>>,
) -> Result<BatchOverrides, ApiError> {
    let mut out = BatchOverrides::default();
    for (name, essays) in fail.unwrap_or_default() {
        let phase = parse_phase(&name).map_err(|m| unknown_phase("fail", m))?;
        out.fail.entry(phase).or_default().extend(essays);
    }
    for name in silent_phases.unwrap_or_default() {
        let phase = parse_phase(&name).map_err(|m| unknown_phase("silent_phases", m))?;
        out.silent_phases.insert(phase);
    }
    Ok(out)
}

fn overrides_json(o: &BatchOverrides) -> Value {
    let fail: Map<String, Value> = o
        .fail
        .iter()
        .map(|(phase, ids)| (phase.as_str().to_owned(), json!(ids)))
        .collect();
    let silent: Vec<&str> = o.silent_phases.iter().map(|p| p.as_str()).collect();
    json!({ "fail": fail, "silent_phases": silent })
}

fn one_of(
    field: &str,
    value: Option<String>,
    default: &str,
    allowed: &[&str],
) -> Result<String, ApiError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(invalid(format!(
            "{field}: `{value}` is not one of {}",
            allowed.join(", ")
        )))
    }
}

/// A validated demo batch.
#[derive(Debug)]
struct DemoBatch {
    batch_id: String,
    essay_ids: Vec<String>,
    course_code: String,
    course_language: String,
    class_type: String,
    overrides: BatchOverrides,
}

fn validate(body: RegisterBatch) -> Result<DemoBatch, ApiError> {
    let batch_id = match body.batch_id.map(|b| b.trim().to_owned()) {
        None => Uuid::new_v4().to_string(),
        Some(b) if b.is_empty() || b.chars().count() > 255 => {
            return Err(invalid("batch_id: must be 1 to 255 characters"))
        }
        Some(b) => b,
    };
    let essay_ids = match (body.essay_ids, body.essay_count) {
        (Some(ids), _) => {
            if ids.is_empty() || ids.len() > MAX_ESSAYS {
                return Err(invalid(format!(
                    "essay_ids: must hold 1 to {MAX_ESSAYS} ids, got {}",
                    ids.len()
                )));
            }
            let mut seen = BTreeSet::new();
            for id in &ids {
                if id.trim().is_empty() {
                    return Err(invalid("essay_ids: an essay id is empty"));
                }
                if !seen.insert(id.as_str()) {
                    return Err(invalid(format!("essay_ids: `{id}` appears twice")));
                }
            }
            ids
        }
        (None, Some(n)) if (1..=MAX_ESSAYS as i64).contains(&n) => {
            generated_essay_ids(&batch_id, n as usize)
        }
        (None, Some(n)) => {
            return Err(invalid(format!(
                "essay_count: must be between 1 and {MAX_ESSAYS}, got {n}"
            )))
        }
        (None, None) => return Err(invalid("essay_count: required unless essay_ids is given")),
    };
    let course_code = one_of("course_code", body.course_code, "ENG5", &COURSE_CODES)?;
    let course_language = one_of("course_language", body.course_language, "en", &LANGUAGES)?;
    let class_type = one_of("class_type", body.class_type, "GUEST", &CLASS_TYPES)?;
    let overrides = parse_overrides(body.fail, body.silent_phases)?;
    for (phase, ids) in &overrides.fail {
        if let Some(stranger) = ids.iter().find(|id| !essay_ids.contains(id)) {
            return Err(invalid(format!(
                "fail.{phase}: `{stranger}` is not an essay of this batch"
            )));
        }
    }
    Ok(DemoBatch {
        batch_id,
        essay_ids,
        course_code,
        course_language,
        class_type,
        overrides,
    })
}

/// `POST /v1/batches`: registers a demo batch and publishes its `BatchEssaysReady`.
async fn register_batch(
    State(state): State<AppState>,
    Json(body): Json<RegisterBatch>,
) -> Result<Response, ApiError> {
    let batch = validate(body)?;
    let ready_essays: Vec<EssayProcessingInputRefV1> = batch
        .essay_ids
        .iter()
        .map(|id| EssayProcessingInputRefV1::new(id.clone(), original_text_id(&batch.batch_id, id)))
        .collect();
    // Overrides first: the commands this batch leads to must already see them.
    state.overrides.set(&batch.batch_id, batch.overrides);
    let data = BatchEssaysReady {
        event: events::BATCH_ESSAYS_READY.to_owned(),
        batch_id: batch.batch_id.clone(),
        ready_essays: ready_essays.clone(),
        metadata: SystemProcessingMetadata::for_batch(
            batch.batch_id.clone(),
            Some(events::BATCH_ESSAYS_READY),
        ),
        course_code: batch.course_code,
        course_language: batch.course_language,
        student_prompt_ref: None,
        class_type: batch.class_type,
    };
    let envelope = EventEnvelope::new(
        topics::BATCH_ESSAYS_READY,
        source::ELS_SIMULATOR,
        Uuid::new_v4(),
        data,
    );
    let message = OutgoingMessage::new(
        topics::BATCH_ESSAYS_READY,
        batch.batch_id.clone(),
        envelope.to_json_bytes(),
    );
    if message.payload.len() > state.max_event_bytes {
        return Err(ApiError::unprocessable(
            "batch_too_large",
            format!(
                "BatchEssaysReady for {} essays would be {} bytes, over the {}-byte limit \
                 (KAFKA_MAX_MESSAGE_BYTES less the record overhead); register fewer essays",
                ready_essays.len(),
                message.payload.len(),
                state.max_event_bytes
            ),
        ));
    }
    if let Err(e) = state.publisher.publish(&message).await {
        tracing::error!(error = %e, cause = ?std::error::Error::source(&e),
            batch_id = %batch.batch_id, "BatchEssaysReady not published");
        return Err(ApiError::unavailable(
            "publish_failed",
            "BatchEssaysReady could not be published; it is safe to retry",
        ));
    }
    tracing::info!(batch_id = %batch.batch_id, essays = ready_essays.len(),
        event_id = %envelope.event_id, "demo batch registered");
    let essays: Vec<Value> = ready_essays
        .iter()
        .map(|e| json!({"essay_id": e.essay_id, "text_storage_id": e.text_storage_id}))
        .collect();
    let body = json!({
        "batch_id": batch.batch_id,
        "essays": essays,
        "event_id": envelope.event_id,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /v1/batches/{batch_id}/overrides`: replaces the batch's failures and silent phases.
async fn set_overrides(
    State(state): State<AppState>,
    Path(batch_id): Path<String>,
    Json(body): Json<OverridesBody>,
) -> Result<Json<Value>, ApiError> {
    let overrides = parse_overrides(body.fail, body.silent_phases)?;
    let mut out = overrides_json(&overrides);
    state.overrides.set(&batch_id, overrides);
    tracing::info!(batch_id = %batch_id, overrides = %out, "batch overrides set");
    out["batch_id"] = json!(batch_id);
    Ok(Json(out))
}
