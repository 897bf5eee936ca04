//! HTTP: batch status, probes, metrics, OpenAPI.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{harden, ApiError, HttpLimits, Json};
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::core::{Committed, Core};
use crate::decide;
use crate::model::{BatchState, PendingRequest, RetrySpec};
use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::topics::initiate_command_topic;
use huleedu_service::settings::Secret;
use serde::Deserialize;
use uuid::Uuid;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub core: Core,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Bearer token of the operator endpoints (`None`: they answer 503).
    pub operator_token: Option<Secret>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "batch-orchestrator",
        description = "HuleEdu batch orchestrator service (BOS)"
    ),
    paths(batch_status, retry_phase, healthz, readyz, metrics, openapi)
)]
struct ApiDoc;

/// The OpenAPI document of these routes.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The full router, hardened (body limit, time-out, JSON 404/405/413).
pub fn router(state: HttpState) -> Router {
    let routes = Router::new()
        .route("/v1/batches/{batch_id}/status", get(batch_status))
        .route("/v1/batches/{batch_id}/retry-phase", post(retry_phase))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    harden(routes, HttpLimits::default())
}

/// A batch as the orchestrator sees it: essays, active pipeline, queue, results, history.
#[utoipa::path(get, path = "/v1/batches/{batch_id}/status",
    params(("batch_id" = String, Path, description = "the batch id")),
    responses(
        (status = 200, description = "the batch's state", content_type = "application/json"),
        (status = 404, description = "the orchestrator has never heard of this batch", content_type = "application/json"),
        (status = 500, description = "state could not be read", content_type = "application/json"),
    ))]
async fn batch_status(
    State(s): State<HttpState>,
    Path(batch_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (state, version) = s
        .core
        .load(&batch_id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if version == 0 {
        return Err(ApiError::not_found(format!(
            "no batch {batch_id:?} is known to the orchestrator"
        )));
    }
    Ok(Json(status_view(&batch_id, &state)))
}

/// Body of `POST /v1/batches/{batch_id}/retry-phase`.
#[derive(Debug, Deserialize)]
pub struct RetryPhaseBody {
    pub phase_name: String,
    /// Essays to run again; default: those that failed the phase's latest run.
    #[serde(default)]
    pub essay_ids: Option<Vec<String>>,
    pub reason: String,
    /// Who asks (recorded with the retry); default `operator`.
    #[serde(default)]
    pub operator: Option<String>,
}

/// Run one phase again for some essays (operators). Queued like any request; ends with its
/// own terminal event whose `requested_pipeline` is the phase.
#[utoipa::path(post, path = "/v1/batches/{batch_id}/retry-phase",
    params(("batch_id" = String, Path, description = "the batch id")),
    request_body(content_type = "application/json", description = "{phase_name, essay_ids?, reason, operator?}"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "retry accepted and queued", content_type = "application/json"),
        (status = 401, description = "missing or wrong bearer token", content_type = "application/json"),
        (status = 404, description = "unknown batch", content_type = "application/json"),
        (status = 422, description = "unknown phase, or nothing to retry", content_type = "application/json"),
        (status = 503, description = "no OPERATOR_TOKEN configured", content_type = "application/json"),
    ))]
async fn retry_phase(
    State(s): State<HttpState>,
    Path(batch_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<RetryPhaseBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    huleedu_http::auth::require_bearer(&headers, s.operator_token.as_ref().map(Secret::expose))?;
    let phase: PhaseName = body.phase_name.trim().parse().map_err(|_| {
        ApiError::unprocessable(
            "unknown_phase",
            format!("unknown phase_name {:?}", body.phase_name),
        )
    })?;
    if initiate_command_topic(phase).is_none() {
        return Err(ApiError::unprocessable(
            "no_worker",
            format!("no worker runs phase {phase}"),
        ));
    }
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "reason: must not be empty",
        ));
    }
    let (state, version) = s
        .core
        .load(&batch_id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if version == 0 || state.batch.is_none() {
        return Err(ApiError::not_found(format!(
            "no ready batch {batch_id:?} is known to the orchestrator"
        )));
    }
    let essay_ids = match body.essay_ids {
        Some(ids) if !ids.is_empty() => ids,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "essay_ids: must not be empty when given",
            ))
        }
        None => {
            let failed = state
                .phase_results
                .get(&phase)
                .map(|r| r.failed.clone())
                .unwrap_or_default();
            if failed.is_empty() {
                return Err(ApiError::unprocessable(
                    "nothing_to_retry",
                    format!("the latest run of {phase} has no failed essays; name essay_ids to run again"),
                ));
            }
            failed
        }
    };
    let operator = body
        .operator
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    let request_id = Uuid::new_v4();
    let correlation_id = Uuid::new_v4();
    tracing::info!(batch_id, %phase, essays = essay_ids.len(), operator, reason, %correlation_id, "essay-level retry requested");
    let request = PendingRequest {
        request_id,
        correlation_id,
        requested_pipeline: phase.to_string(),
        user_id: operator.clone(),
        prompt: None,
        is_retry: true,
        retry_reason: Some(reason.clone()),
        received_at: huleedu_contracts::timestamp::Timestamp::now(),
        park_deadline: None,
        retry: Some(RetrySpec {
            phase,
            essay_ids,
            reason,
            operator,
        }),
    };
    let limits = s.core.limits;
    let committed = s
        .core
        .commit(&batch_id, Some(request_id), |st, now| {
            let mut r = request.clone();
            r.received_at = now;
            decide::on_request(st, &batch_id, r, true, &limits, now)
        })
        .await
        .map_err(|e| ApiError::internal(&e))?;
    debug_assert!(matches!(committed, Committed::Done { .. }));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "accepted",
            "batch_id": batch_id,
            "phase_name": phase,
            "correlation_id": correlation_id,
            "request_id": request_id,
        })),
    ))
}

/// The status document of a batch (pure; tested on its own).
pub fn status_view(batch_id: &str, s: &BatchState) -> Value {
    let active = s.active.as_ref().map(|a| {
        json!({
            "requested_pipeline": a.request.requested_pipeline,
            "correlation_id": a.request.correlation_id,
            "request_id": a.request.request_id,
            "phases": a.phases,
            "pruned_phases": a.pruned,
            "current_phase": a.current_phase(),
            "current_phase_deadline": a.deadline,
            "received_at": a.request.received_at,
            "started_at": a.started_at,
            "runs": a.runs,
            "failed_essay_count": a.failed_essays.len(),
        })
    });
    let pending = |v: &mut dyn Iterator<Item = &crate::model::PendingRequest>| -> Vec<Value> {
        v.map(|r| {
            json!({
                "requested_pipeline": r.requested_pipeline,
                "correlation_id": r.correlation_id,
                "request_id": r.request_id,
                "received_at": r.received_at,
                "gives_up_at": r.park_deadline,
            })
        })
        .collect()
    };
    let results: serde_json::Map<String, Value> = s
        .phase_results
        .iter()
        .map(|(phase, r)| {
            (
                phase.to_string(),
                json!({
                    "status": r.status,
                    "succeeded_count": r.succeeded.len(),
                    "failed_count": r.failed.len(),
                    "failed_essay_ids": r.failed,
                    "pipeline_id": r.pipeline_id,
                    "at": r.at,
                }),
            )
        })
        .collect();
    json!({
        "batch_id": batch_id,
        "known": s.batch.is_some(),
        "essay_count": s.batch.as_ref().map(|b| b.essays.len()),
        "course_code": s.batch.as_ref().map(|b| b.course_code.clone()),
        "active_pipeline": active,
        "queue": pending(&mut s.queue.iter()),
        "parked": pending(&mut s.parked.iter()),
        "phase_results": results,
        "history": s.history,
        "last_pipeline_id": s.last_pipeline_id,
    })
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", content_type = "application/json")))]
async fn healthz() -> impl IntoResponse {
    huleedu_http::probes::healthz().await
}

/// Readiness: consumer joined its group (`kafka_consumer`), broker and Redis reachable.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready", content_type = "application/json"),
    (status = 503, description = "not ready; the body says which check fails", content_type = "application/json")))]
async fn readyz(State(s): State<HttpState>) -> Response {
    s.readiness.respond().await
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "metrics in Prometheus text format", content_type = "application/openmetrics-text")))]
async fn metrics(State(s): State<HttpState>) -> Response {
    Metrics::handler(State(s.metrics)).await.into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
async fn openapi() -> Response {
    axum::Json(openapi_document()).into_response()
}
