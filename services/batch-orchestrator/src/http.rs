//! HTTP: batch status, probes, metrics, OpenAPI.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{ApiError, Json};
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::core::Core;
use crate::model::BatchState;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub core: Core,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "batch-orchestrator", description = "HuleEdu batch orchestrator service (BOS)"),
    paths(batch_status, healthz, readyz, metrics, openapi)
)]
struct ApiDoc;

/// The OpenAPI document of these routes.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/batches/{batch_id}/status", get(batch_status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

/// A batch as the orchestrator sees it: essays, active pipeline, queue, results, history.
#[utoipa::path(get, path = "/v1/batches/{batch_id}/status",
    params(("batch_id" = String, Path, description = "the batch id")),
    responses(
        (status = 200, description = "the batch's state", content_type = "application/json"),
        (status = 404, description = "the orchestrator has never heard of this batch", content_type = "application/json"),
        (status = 500, description = "state could not be read", content_type = "application/json"),
    ))]
async fn batch_status(State(s): State<HttpState>, Path(batch_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (state, version) = s.core.load(&batch_id).await.map_err(|e| ApiError::internal(&e))?;
    if version == 0 {
        return Err(ApiError::not_found(format!("no batch {batch_id:?} is known to the orchestrator")));
    }
    Ok(Json(status_view(&batch_id, &state)))
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

/// Readiness: consumer joined its group, Redis reachable.
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
