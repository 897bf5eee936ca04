//! HTTP: batch status, probes, metrics, OpenAPI.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use huleedu_contracts::http::bos::{
    ActivePipelineView, BatchStatusView, PhaseResultView, QueuedRequestView, RetryPhaseAccepted,
    RetryPhaseRequest,
};
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{harden, ApiError, HttpLimits, Json};
use utoipa::OpenApi;

use crate::core::{Committed, Core};
use crate::decide;
use crate::model::{BatchState, PendingRequest, RetrySpec};
use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::topics::initiate_command_topic;
use huleedu_service::settings::Secret;
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
    paths(batch_status, retry_phase, healthz, readyz, metrics, openapi),
    components(schemas(BatchStatusView, RetryPhaseRequest, RetryPhaseAccepted))
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
        (status = 200, description = "the batch's state", body = BatchStatusView),
        (status = 404, description = "the orchestrator has never heard of this batch", content_type = "application/json"),
        (status = 500, description = "state could not be read", content_type = "application/json"),
    ))]
async fn batch_status(
    State(s): State<HttpState>,
    Path(batch_id): Path<String>,
) -> Result<Json<BatchStatusView>, ApiError> {
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

/// Run one phase again for some essays (operators). Queued like any request; ends with its
/// own terminal event whose `requested_pipeline` is the phase.
#[utoipa::path(post, path = "/v1/batches/{batch_id}/retry-phase",
    params(("batch_id" = String, Path, description = "the batch id")),
    request_body = RetryPhaseRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "retry accepted and queued", body = RetryPhaseAccepted),
        (status = 401, description = "missing or wrong bearer token", content_type = "application/json"),
        (status = 404, description = "unknown batch", content_type = "application/json"),
        (status = 422, description = "unknown phase, or nothing to retry", content_type = "application/json"),
        (status = 503, description = "no OPERATOR_TOKEN configured", content_type = "application/json"),
    ))]
async fn retry_phase(
    State(s): State<HttpState>,
    Path(batch_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<RetryPhaseRequest>,
) -> Result<(StatusCode, Json<RetryPhaseAccepted>), ApiError> {
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
    let essay_ids = match decide::retry_essays(&state, phase, body.essay_ids) {
        Ok(ids) => ids,
        Err(decide::RetryRefused::EmptyEssayIds) => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "essay_ids: must not be empty when given",
            ))
        }
        Err(decide::RetryRefused::NothingToRetry) => {
            return Err(ApiError::unprocessable(
                "nothing_to_retry",
                format!(
                    "the latest run of {phase} has no failed essays; name essay_ids to run again"
                ),
            ))
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
        Json(RetryPhaseAccepted::new(
            &batch_id,
            phase,
            correlation_id,
            request_id,
        )),
    ))
}

/// The status document of a batch (pure; tested on its own).
pub fn status_view(batch_id: &str, s: &BatchState) -> BatchStatusView {
    let waiting = |r: &PendingRequest| QueuedRequestView {
        requested_pipeline: r.requested_pipeline.clone(),
        correlation_id: r.correlation_id,
        request_id: r.request_id,
        received_at: r.received_at,
        gives_up_at: r.park_deadline,
    };
    BatchStatusView {
        batch_id: batch_id.to_owned(),
        known: s.batch.is_some(),
        essay_count: s.batch.as_ref().map(|b| b.essays.len()),
        course_code: s.batch.as_ref().map(|b| b.course_code.clone()),
        active_pipeline: s.active.as_ref().map(|a| ActivePipelineView {
            requested_pipeline: a.request.requested_pipeline.clone(),
            correlation_id: a.request.correlation_id,
            request_id: a.request.request_id,
            phases: a.phases.clone(),
            pruned_phases: a.pruned.clone(),
            current_phase: a.current_phase(),
            current_phase_deadline: a.deadline,
            received_at: a.request.received_at,
            started_at: a.started_at,
            runs: a.runs.clone(),
            failed_essay_count: a.failed_essays.len(),
        }),
        queue: s.queue.iter().map(waiting).collect(),
        parked: s.parked.iter().map(waiting).collect(),
        phase_results: s
            .phase_results
            .iter()
            .map(|(phase, r)| {
                let result = PhaseResultView {
                    status: r.status,
                    succeeded_count: r.succeeded.len(),
                    failed_count: r.failed.len(),
                    failed_essay_ids: r.failed.clone(),
                    pipeline_id: r.pipeline_id,
                    at: r.at,
                };
                (*phase, result)
            })
            .collect(),
        history: s.history.iter().cloned().collect(),
        last_pipeline_id: s.last_pipeline_id,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ActivePipeline, BatchInfo, EssayRef, PhaseResult, PhaseRun, PipelineSummary, RunStatus,
    };
    use huleedu_contracts::{BatchStatus, Timestamp};
    use std::sync::Arc;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn pending(n: u8, pipeline: &str, gives_up_at: Option<Timestamp>) -> PendingRequest {
        PendingRequest {
            request_id: id(n),
            correlation_id: id(n + 1),
            requested_pipeline: pipeline.to_owned(),
            user_id: "ann".to_owned(),
            prompt: None,
            is_retry: false,
            retry_reason: None,
            received_at: ts("2026-11-29T12:00:06Z"),
            park_deadline: gives_up_at,
            retry: None,
        }
    }

    fn run(phase: PhaseName, finished: bool) -> PhaseRun {
        PhaseRun {
            phase,
            command_id: id(9),
            essays_in: 3,
            essays_out: finished.then_some(2),
            failed: finished.then_some(1),
            status: finished.then_some(RunStatus::CompletedWithFailures),
            started_at: ts("2026-11-29T12:00:01.5Z"),
            finished_at: finished.then(|| ts("2026-11-29T12:00:02Z")),
        }
    }

    /// A batch with every part of the document filled in: essays, an active pipeline, a queued
    /// and a parked request, a phase result and a finished pipeline.
    fn busy_batch() -> BatchState {
        let essay = |n: u8| EssayRef {
            essay_id: format!("e{n}"),
            text_storage_id: format!("t{n}"),
        };
        let mut s = BatchState {
            batch: Some(Arc::new(BatchInfo {
                essays: vec![essay(1), essay(2), essay(3)],
                course_code: "ENG5".to_owned(),
                language: "en".to_owned(),
                class_type: "GUEST".to_owned(),
                student_prompt_ref: None,
                user_id: None,
                source: "batch.essays.ready".to_owned(),
                updated_at: ts("2026-11-29T12:00:00Z"),
            })),
            ..BatchState::default()
        };
        s.phase_results.insert(
            PhaseName::Spellcheck,
            Arc::new(PhaseResult {
                status: RunStatus::CompletedWithFailures,
                succeeded: vec![essay(1), essay(2)],
                failed: vec!["e3".to_owned()],
                pipeline_id: id(20),
                at: ts("2026-11-29T12:00:02Z"),
            }),
        );
        s.phase_results.insert(
            PhaseName::CjAssessment,
            Arc::new(PhaseResult {
                status: RunStatus::CompletedSuccessfully,
                succeeded: vec![essay(1), essay(2)],
                failed: vec![],
                pipeline_id: id(20),
                at: ts("2026-11-29T12:00:03Z"),
            }),
        );
        s.active = Some(ActivePipeline {
            request: pending(30, "nlp", None),
            started_at: ts("2026-11-29T12:00:07Z"),
            phases: vec![PhaseName::Nlp],
            pruned: vec![PhaseName::Spellcheck],
            current: 0,
            deadline: ts("2026-11-29T12:30:07Z"),
            runs: vec![run(PhaseName::Nlp, false)],
            failed_essays: Arc::new(["e3".to_owned()].into()),
        });
        s.queue.push_back(pending(40, "ai_feedback", None));
        s.parked.push(pending(
            50,
            "cj_assessment",
            Some(ts("2026-11-29T13:00:00Z")),
        ));
        s.history.push_back(PipelineSummary {
            pipeline_id: id(20),
            request_id: id(21),
            requested_pipeline: "spellcheck".to_owned(),
            final_status: BatchStatus::CompletedWithFailures,
            completed_phases: vec![PhaseName::Spellcheck],
            skipped_phases: vec![],
            successful_essay_count: 2,
            failed_essay_count: 1,
            processing_duration_seconds: 1.25,
            failure_reason: None,
            received_at: ts("2026-11-29T12:00:00.75Z"),
            finished_at: ts("2026-11-29T12:00:02Z"),
            runs: vec![run(PhaseName::Spellcheck, true)],
            terminal_event_id: id(22),
        });
        s.last_pipeline_id = Some(id(20));
        s
    }

    #[test]
    fn openapi_document_describes_the_bodies_with_their_contract_types() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let schema_of =
            |v: &serde_json::Value| v["content"]["application/json"]["schema"]["$ref"].clone();
        let status = &doc["paths"]["/v1/batches/{batch_id}/status"]["get"];
        assert_eq!(
            schema_of(&status["responses"]["200"]),
            "#/components/schemas/BatchStatusView"
        );
        let retry = &doc["paths"]["/v1/batches/{batch_id}/retry-phase"]["post"];
        assert_eq!(
            schema_of(&retry["requestBody"]),
            "#/components/schemas/RetryPhaseRequest"
        );
        assert_eq!(
            schema_of(&retry["responses"]["202"]),
            "#/components/schemas/RetryPhaseAccepted"
        );
        for name in [
            "BatchStatusView",
            "PipelineSummary",
            "PhaseRun",
            "Timestamp",
            "PhaseName",
        ] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    /// hulectl, the tests and operators read this document: its field names, their order and
    /// its nulls stay as they are (`testdata/status.json`).
    #[test]
    fn status_document_is_exactly_the_published_shape() {
        let json = serde_json::to_string_pretty(&status_view("b1", &busy_batch())).unwrap();
        assert_eq!(
            json,
            include_str!("../testdata/status.json").trim_end(),
            "\n{json}"
        );
    }
}
