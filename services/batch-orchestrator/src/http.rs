//! HTTP: batch status, probes, metrics, OpenAPI.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use huleedu_contracts::http::bos::{
    ActivePipelineView, BatchActivity, BatchListItem, BatchListPage, BatchStatusView,
    PhaseResultView, QueuedRequestView, RetryPhaseAccepted, RetryPhaseRequest,
};
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{harden, ApiError, HttpLimits, Json};
use utoipa::OpenApi;

use crate::core::{Committed, Core, BATCHES};
use crate::decide;
use crate::model::{BatchState, PendingRequest, RetrySpec};
use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::status::BatchStatus;
use huleedu_contracts::timestamp::Timestamp;
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
    paths(
        list_batches,
        batch_status,
        retry_phase,
        healthz,
        readyz,
        metrics,
        openapi
    ),
    components(schemas(BatchListPage, BatchStatusView, RetryPhaseRequest, RetryPhaseAccepted))
)]
struct ApiDoc;

/// The OpenAPI document of these routes.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The full router, hardened (body limit, time-out, JSON 404/405/413).
pub fn router(state: HttpState) -> Router {
    let routes = Router::new()
        .route("/v1/batches", get(list_batches))
        .route("/v1/batches/{batch_id}/status", get(batch_status))
        .route("/v1/batches/{batch_id}/retry-phase", post(retry_phase))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    harden(routes, HttpLimits::default())
}

/// Batches per page of `GET /v1/batches` unless `limit` says otherwise, and the most.
const LIST_DEFAULT: usize = 20;
const LIST_MAX: usize = 200;
/// With a `status` filter, how many batches one page looks at (at most) to fill itself; the
/// cursor then continues after the last one looked at.
const LIST_SCAN: usize = 1000;

/// Recent and active batches, most recently changed first, a page at a time.
#[utoipa::path(get, path = "/v1/batches",
    params(
        ("status" = Option<String>, Query, description = "only batches in this state: active, waiting, idle, completed_successfully, completed_with_failures, failed_critically"),
        ("limit" = Option<usize>, Query, description = "batches per page, 1 to 200 (default 20)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of batches", body = BatchListPage),
        (status = 400, description = "bad status, limit or cursor", content_type = "application/json"),
        (status = 500, description = "state could not be read", content_type = "application/json"),
    ))]
async fn list_batches(
    State(s): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<BatchListPage>, ApiError> {
    let q =
        ListQuery::parse(&query).map_err(|(error, detail)| ApiError::bad_request(error, detail))?;
    let mut items = Vec::new();
    let mut looked_at = 0;
    let mut after = q.cursor.clone();
    let mut more = true;
    while items.len() < q.limit && looked_at < LIST_SCAN && more {
        let want = (q.limit - items.len()).max(16);
        let candidates = s
            .core
            .store
            .index_newest(BATCHES, after.as_ref().map(|c| c.0), want)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let candidates: Vec<(String, f64)> = candidates
            .into_iter()
            .filter(|(b, score)| after.as_ref().is_none_or(|c| c.precedes(b, *score)))
            .collect();
        more = candidates.len() >= want;
        for (batch_id, score) in candidates.into_iter().take(want) {
            looked_at += 1;
            after = Some(Cursor(score, batch_id.clone()));
            let (state, version) = s
                .core
                .load(&batch_id)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            if version == 0 {
                // The state expired: the entry goes (the scheduler also trims old ones).
                let _ = s.core.store.index_remove(&batch_id, BATCHES).await;
                continue;
            }
            let item = list_item(&batch_id, score, &state);
            if q.status.is_none_or(|st| st == item.status) {
                items.push(item);
                if items.len() == q.limit {
                    break;
                }
            }
        }
    }
    let next_cursor = if items.len() == q.limit || (more && looked_at >= LIST_SCAN) {
        after.map(|c| c.to_string())
    } else {
        None
    };
    Ok(Json(BatchListPage {
        batches: items,
        next_cursor,
    }))
}

/// The query of `GET /v1/batches`, checked.
#[derive(Debug, PartialEq)]
struct ListQuery {
    status: Option<BatchActivity>,
    limit: usize,
    cursor: Option<Cursor>,
}

impl ListQuery {
    fn parse(q: &HashMap<String, String>) -> Result<Self, (&'static str, String)> {
        if let Some(unknown) = q
            .keys()
            .find(|k| !["status", "limit", "cursor"].contains(&k.as_str()))
        {
            return Err((
                "unknown_parameter",
                format!("unknown query parameter {unknown:?} (status, limit, cursor)"),
            ));
        }
        let status = match q.get("status").map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(BatchActivity::parse(s).ok_or_else(|| {
                let all: Vec<&str> = BatchActivity::ALL.iter().map(|a| a.as_str()).collect();
                (
                    "bad_status",
                    format!("unknown status {s:?} (one of {})", all.join(", ")),
                )
            })?),
        };
        let limit = match q.get("limit") {
            None => LIST_DEFAULT,
            Some(l) => match l.trim().parse::<usize>() {
                Ok(n) if (1..=LIST_MAX).contains(&n) => n,
                _ => {
                    return Err((
                        "bad_limit",
                        format!("limit must be a whole number from 1 to {LIST_MAX}, not {l:?}"),
                    ))
                }
            },
        };
        let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(Cursor::parse(c).ok_or_else(|| {
                (
                    "bad_cursor",
                    format!("cursor {c:?} is not a next_cursor of this endpoint"),
                )
            })?),
        };
        Ok(Self {
            status,
            limit,
            cursor,
        })
    }
}

/// Where a page of `GET /v1/batches` ends: the last batch's index score and id
/// (`<score>:<batch id>` on the wire). Batches come in (score, id) order, highest first.
#[derive(Debug, Clone, PartialEq)]
struct Cursor(f64, String);

impl Cursor {
    fn parse(s: &str) -> Option<Self> {
        let (score, batch) = s.split_once(':')?;
        let score: i64 = score.parse().ok()?;
        (!batch.is_empty()).then(|| Cursor(score as f64, batch.to_owned()))
    }

    /// Whether (`score`, `batch_id`) comes after this cursor.
    fn precedes(&self, batch_id: &str, score: f64) -> bool {
        score < self.0 || (score == self.0 && batch_id < self.1.as_str())
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0 as i64, self.1)
    }
}

/// A batch's line in `GET /v1/batches`.
pub fn list_item(batch_id: &str, score: f64, s: &BatchState) -> BatchListItem {
    let last = s.history.back();
    let status = if s.active.is_some() || !s.queue.is_empty() {
        BatchActivity::Active
    } else if s.batch.is_none() {
        BatchActivity::Waiting
    } else {
        match last.map(|l| l.final_status) {
            None => BatchActivity::Idle,
            Some(BatchStatus::CompletedSuccessfully) => BatchActivity::CompletedSuccessfully,
            Some(BatchStatus::CompletedWithFailures) => BatchActivity::CompletedWithFailures,
            Some(_) => BatchActivity::FailedCritically,
        }
    };
    let updated_at = chrono::DateTime::from_timestamp_millis(score as i64)
        .map(Timestamp::from)
        .unwrap_or_else(Timestamp::now);
    BatchListItem {
        batch_id: batch_id.to_owned(),
        status,
        updated_at,
        known: s.batch.is_some(),
        essay_count: s.batch.as_ref().map(|b| b.essays.len()),
        active_pipeline: s
            .active
            .as_ref()
            .map(|a| a.request.requested_pipeline.clone()),
        current_phase: s.active.as_ref().map(|a| a.current_phase()),
        queue_length: s.queue.len(),
        parked: s.parked.len(),
        last_pipeline: last.map(|l| l.requested_pipeline.clone()),
        last_final_status: last.map(|l| l.final_status),
        last_finished_at: last.map(|l| l.finished_at),
    }
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
        // An operator's retry starts a trace of its own when spans are exported.
        trace: huleedu_service::telemetry::outgoing(&tracing::Span::current(), None),
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
async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    s.metrics.respond(&headers)
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
            trace: None,
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
                succeeded: vec![essay(1), essay(2)].into(),
                failed: vec!["e3".to_owned()],
                pipeline_id: id(20),
                at: ts("2026-11-29T12:00:02Z"),
            }),
        );
        s.phase_results.insert(
            PhaseName::CjAssessment,
            Arc::new(PhaseResult {
                status: RunStatus::CompletedSuccessfully,
                succeeded: vec![essay(1), essay(2)].into(),
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

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_query_defaults_and_checks_every_parameter() {
        let q = ListQuery::parse(&query(&[])).unwrap();
        assert_eq!((q.status, q.limit, q.cursor), (None, LIST_DEFAULT, None));
        let q = ListQuery::parse(&query(&[
            ("status", "active"),
            ("limit", "5"),
            ("cursor", "1764590400000:batch:with:colons"),
        ]))
        .unwrap();
        assert_eq!(q.status, Some(BatchActivity::Active));
        assert_eq!(q.limit, 5);
        assert_eq!(
            q.cursor,
            Some(Cursor(1_764_590_400_000.0, "batch:with:colons".into()))
        );
        for (bad, error) in [
            (("status", "running"), "bad_status"),
            (("limit", "0"), "bad_limit"),
            (("limit", "201"), "bad_limit"),
            (("limit", "ten"), "bad_limit"),
            (("cursor", "nonsense"), "bad_cursor"),
            (("cursor", "12:"), "bad_cursor"),
            (("page", "2"), "unknown_parameter"),
        ] {
            let (e, detail) = ListQuery::parse(&query(&[bad])).unwrap_err();
            assert_eq!(e, error, "{bad:?}: {detail}");
            assert!(detail.contains(bad.1) || detail.contains(bad.0), "{detail}");
        }
    }

    #[test]
    fn a_cursor_round_trips_and_orders_by_score_then_id() {
        let c = Cursor(1000.0, "b5".into());
        assert_eq!(Cursor::parse(&c.to_string()), Some(c.clone()));
        assert!(c.precedes("b9", 999.0), "older comes after");
        assert!(
            c.precedes("b4", 1000.0),
            "same time, smaller id comes after"
        );
        assert!(
            !c.precedes("b5", 1000.0),
            "the cursor's own batch is not repeated"
        );
        assert!(!c.precedes("b6", 1000.0));
        assert!(!c.precedes("b1", 1001.0), "newer came before");
    }

    #[test]
    fn a_list_item_says_where_the_batch_stands() {
        let busy = list_item("b1", 1_764_590_400_000.0, &busy_batch());
        assert_eq!(busy.status, BatchActivity::Active);
        assert_eq!(busy.active_pipeline.as_deref(), Some("nlp"));
        assert_eq!(busy.current_phase, Some(PhaseName::Nlp));
        assert_eq!((busy.queue_length, busy.parked), (1, 1));
        assert_eq!(busy.essay_count, Some(3));
        assert_eq!(busy.last_pipeline.as_deref(), Some("spellcheck"));
        assert_eq!(
            busy.last_final_status,
            Some(BatchStatus::CompletedWithFailures)
        );
        assert_eq!(busy.updated_at.to_wire_string(), "2025-12-01T12:00:00Z");

        let mut done = busy_batch();
        done.active = None;
        done.queue.clear();
        assert_eq!(
            list_item("b1", 0.0, &done).status,
            BatchActivity::CompletedWithFailures
        );
        done.history.clear();
        assert_eq!(list_item("b1", 0.0, &done).status, BatchActivity::Idle);
        done.batch = None;
        assert_eq!(list_item("b1", 0.0, &done).status, BatchActivity::Waiting);
    }
}
