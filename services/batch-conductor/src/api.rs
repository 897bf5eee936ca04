//! The HTTP adapter (axum): pipeline resolution for BOS, operator marks, batch inspection,
//! probes, metrics and the OpenAPI document. [`router`] builds the whole router from an
//! [`AppState`], so tests drive it with `tower::ServiceExt::oneshot`, without a socket.
//!
//! | route | what |
//! |---|---|
//! | `POST /internal/v1/pipelines/define` | resolve a pipeline for a batch (read-only), with the causal wait on `after_pipeline_id` |
//! | `POST /internal/v1/phases/complete` | operator mark (bearer token) |
//! | `GET /internal/v1/batches/{batch_id}/phases` | the batch's records with provenance |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /openapi.json` | operations |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use huleedu_contracts::http::redrive::{RedriveRecord, RedriveRequest};
use huleedu_contracts::http::{
    BCSPipelineDefinitionRequestV1, BCSPipelineDefinitionResponseV1, PipelineDefinitionV1,
};
use huleedu_contracts::{decode_json, topics, PhaseName, Timestamp};
use huleedu_http::probes::{healthz, Readiness};
use huleedu_http::{ApiError, HttpLimits, Json};
use huleedu_kafka::ConsumerStatus;
use huleedu_service::settings::Secret;
use huleedu_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::consumer::{describe_store_error, PipelinesSeen, Seen};
use crate::marks::{record_mark, MarkOutcome, OperatorMark};
use crate::metrics::{BcsMetrics, PhaseLabels};
use crate::pipelines::{resolve, Definitions};
use crate::state::{normalize_pipeline_id, BatchPhases, PhaseRecord, RecordSource};

/// When a waiting define request first reads Redis again, for a completion committed by another
/// replica (those this process commits answer it at once: [`PipelinesSeen`]); the interval
/// doubles after each read, up to [`WAIT_POLL_MAX`], so a long wait costs few reads.
const WAIT_POLL: Duration = Duration::from_millis(25);
const WAIT_POLL_MAX: Duration = Duration::from_millis(200);
/// The same while this process's consumer holds every partition of the completion topic: no
/// other replica commits a completion then, so every one reaches the wait through
/// [`PipelinesSeen`] and the reads are only a safety net (a completion announced without its
/// state is read at once; an assignment that changed is seen by the next read).
const SOLE_WAIT_POLL: Duration = Duration::from_millis(500);
const SOLE_WAIT_POLL_MAX: Duration = Duration::from_secs(2);

/// What the HTTP side is configured with.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Pipeline definitions used for resolution and to validate operator phase names.
    pub definitions: Arc<Definitions>,
    /// `OPERATOR_TOKEN`; `None` disables the operator endpoint (503).
    pub operator_token: Option<Secret>,
    /// `RESOLVE_WAIT_MS`.
    pub resolve_wait: Duration,
    /// `STATE_TTL_DAYS`, refreshed by operator marks.
    pub state_ttl: Duration,
}

/// Shared state of the handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    config: ApiConfig,
    registry: huleedu_http::metrics::Metrics,
    metrics: Arc<BcsMetrics>,
    readiness: Readiness,
    pipelines_seen: PipelinesSeen,
    /// Cancelled when the consumer stops (shutdown): nothing will wake a causal wait any more.
    consumer_stopped: CancellationToken,
    /// `None`: `POST /internal/v1/dlq/redrive` answers 503 (tests without a broker).
    redriver: Option<crate::redrive::Redriver>,
    /// The consumer's assignment, for causal waits: while it holds every partition of the
    /// completion topic, no other replica commits completions. `None` (tests without a
    /// consumer): waits poll as if other replicas did.
    consumer: Option<Arc<ConsumerStatus>>,
}

impl AppState {
    /// State with its own metric registry, a readiness check of Redis only, and its own
    /// pipeline notifier. [`crate::App`] shares these with the consumer instead.
    pub fn new(store: Store, config: ApiConfig) -> Self {
        let registry = huleedu_http::metrics::Metrics::new();
        let metrics = BcsMetrics::register(&registry);
        let readiness = Readiness::new().redis(store.clone(), redis_ready);
        Self::from_parts(
            store,
            config,
            registry,
            metrics,
            readiness,
            PipelinesSeen::default(),
        )
    }

    /// State from explicit parts (the app wiring).
    pub fn from_parts(
        store: Store,
        config: ApiConfig,
        registry: huleedu_http::metrics::Metrics,
        metrics: Arc<BcsMetrics>,
        readiness: Readiness,
        pipelines_seen: PipelinesSeen,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                registry,
                metrics,
                readiness,
                pipelines_seen,
                consumer_stopped: CancellationToken::new(),
                redriver: None,
                consumer: None,
            }),
        }
    }

    /// The consumer has stopped (shutdown): causal waits end at once with `conductor_lagging`
    /// (the orchestrator retries, reaching another replica or this one restarted) instead of
    /// holding the HTTP server's graceful stop for up to `RESOLVE_WAIT_MS`.
    /// The operator endpoints' check: the request's bearer token is `OPERATOR_TOKEN` (401
    /// otherwise; 503 while none is configured).
    pub fn require_operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let token = self
            .inner
            .config
            .operator_token
            .as_ref()
            .map(Secret::expose);
        huleedu_http::auth::require_bearer(headers, token)
    }

    /// With re-drives of dead-letter records (before the state is shared).
    pub fn with_redriver(mut self, redriver: crate::redrive::Redriver) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_redriver before the state is shared")
            .redriver = Some(redriver);
        self
    }

    /// The consumer's status, which is told to track the completion topic: while the consumer
    /// holds every partition of it, no other replica commits completions and causal waits read
    /// Redis rarely ([`SOLE_WAIT_POLL`]).
    pub fn with_consumer(mut self, status: Arc<ConsumerStatus>) -> Self {
        status.track_whole(topics::BATCH_PIPELINE_COMPLETED);
        Arc::get_mut(&mut self.inner)
            .expect("with_consumer before the state is shared")
            .consumer = Some(status);
        self
    }

    pub fn consumer_stopped(&self) {
        self.inner.consumer_stopped.cancel();
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<BcsMetrics> {
        &self.inner.metrics
    }

    /// The registry served at `/metrics`.
    pub fn registry(&self) -> &huleedu_http::metrics::Metrics {
        &self.inner.registry
    }

    /// Told of each pipeline completion committed (give it to the consumer's handler).
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    pub fn pipelines_seen(&self) -> &PipelinesSeen {
        &self.inner.pipelines_seen
    }
}

/// Readiness check of Redis ([`Store::ready`]: the master of every bucket answers within a
/// second; a refusal names the setting to fix).
/// A span for one call from the orchestrator, continuing the trace of its W3C `traceparent`
/// header (when spans are exported).
fn traced_span(name: &'static str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("conductor_call", call = name);
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let trace = header(huleedu_contracts::trace::TRACEPARENT).and_then(|tp| {
        huleedu_contracts::trace::TraceContext::parse(
            tp,
            header(huleedu_contracts::trace::TRACESTATE),
        )
    });
    huleedu_service::telemetry::continue_trace(&span, trace.as_ref());
    span
}

pub async fn redis_ready(store: Store) -> Result<(), String> {
    store.ready().await
}

/// The full router, hardened (body limit, time-out, JSON 404/405/413).
pub fn router(state: AppState) -> Router {
    let limits = HttpLimits {
        // The longest legitimate request waits RESOLVE_WAIT_MS for its after_pipeline_id.
        request_timeout: state.inner.config.resolve_wait + Duration::from_secs(30),
        ..HttpLimits::default()
    };
    let routes = Router::new()
        .route("/internal/v1/pipelines/define", post(define))
        .route("/internal/v1/pipelines/{name}", get(pipeline_definition))
        .route("/internal/v1/phases/complete", post(complete_phase))
        .route("/internal/v1/dlq/redrive", post(redrive_record))
        .route("/internal/v1/batches/{batch_id}/phases", get(batch_phases))
        .route("/healthz", get(health))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    huleedu_http::harden(routes, limits)
}

/// The OpenAPI document of the routes above.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

// ---------------------------------------------------------------------------------------------
// Bodies (the define request and response are the contracts crate's own types)
// ---------------------------------------------------------------------------------------------

/// Error body of every non-2xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Short machine-readable error (`conductor_lagging`, `unauthorized`, ...), or the
    /// platform's sentence for the two platform-defined errors.
    pub error: String,
    /// What is wrong, for people.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// `POST /internal/v1/phases/complete` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkRequest {
    /// The batch (1..255 characters).
    pub batch_id: String,
    /// A defined phase.
    pub phase_name: String,
    /// `true` (default) records `completed`; `false` records `failed` (the phase runs again).
    #[serde(default)]
    pub success: Option<bool>,
    /// Why.
    pub reason: Option<String>,
    /// Who.
    pub operator: Option<String>,
}

/// 200 answer of `POST /internal/v1/phases/complete`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkResponse {
    /// `recorded`.
    pub status: String,
    /// The batch.
    pub batch_id: String,
    /// The phase.
    pub phase_name: String,
    /// The record written.
    pub record: PhaseRecord,
}

/// A pipeline whose completion the conductor has processed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessedPipeline {
    /// The pipeline id (correlation id of its request).
    pub pipeline_id: String,
    /// When its `BatchPipelineCompletedV1` was processed.
    #[schema(value_type = String, format = DateTime)]
    pub processed_at: Timestamp,
    /// That event's `event_id`.
    #[schema(value_type = String, format = Uuid)]
    pub event_id: uuid::Uuid,
    /// Its `final_status`.
    pub final_status: String,
    /// Its `completed_phases`.
    pub completed_phases: Vec<String>,
}

/// `GET /internal/v1/batches/{batch_id}/phases` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchPhasesView {
    /// The batch.
    pub batch_id: String,
    /// Record per phase (only phases with a record).
    pub phases: BTreeMap<String, PhaseRecord>,
    /// Pipelines whose completion was processed, oldest first.
    pub processed_pipelines: Vec<ProcessedPipeline>,
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn store_unavailable(e: &StoreError) -> ApiError {
    tracing::error!(error = %describe_store_error(e), "state store request failed");
    ApiError::unavailable(
        "store_unavailable",
        "the conductor's state store is unreachable; retry",
    )
    .with_retry_after(1)
}

async fn load(state: &AppState, batch_id: &str) -> Result<BatchPhases, ApiError> {
    let stored = state
        .inner
        .store
        .load(batch_id)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let phases = BatchPhases::from_fields(&stored.fields);
    if !phases.unreadable.is_empty() {
        tracing::warn!(batch_id, fields = ?phases.unreadable, "ignoring unreadable state fields");
    }
    Ok(phases)
}

/// Decrements the waiting gauge when a waiting request ends (also when it is dropped).
struct Waiting<'a>(&'a BcsMetrics);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.resolve_waiting.dec();
    }
}

/// Wait until `pipeline_id` is processed for the batch or the wait bound passes; returns the
/// state that shows it, or `None` on time-out.
///
/// One read of Redis, then: a completion this process commits for the batch is answered from
/// the state that commit wrote ([`PipelinesSeen`], no second read); a completion committed by
/// another replica is found by reads after [`WAIT_POLL`], then less and less often — after
/// [`SOLE_WAIT_POLL`] while this process consumes the whole completion topic.
async fn wait_for_pipeline(
    state: &AppState,
    batch_id: &str,
    pipeline_id: &str,
    wait: Duration,
) -> Result<Option<BatchPhases>, ApiError> {
    let deadline = Instant::now() + wait;
    let mut waiting: Option<Waiting<'_>> = None;
    // Subscribe before reading, so a commit in between is not missed.
    let mut seen = state.inner.pipelines_seen.subscribe();
    let mut phases = load(state, batch_id).await?;
    let sole = || {
        state
            .inner
            .consumer
            .as_ref()
            .is_some_and(|c| c.holds_every_partition(topics::BATCH_PIPELINE_COMPLETED))
    };
    let mut poll = poll_schedule(sole()).0;
    let mut next_poll = Instant::now() + poll;
    loop {
        if phases.has_pipeline(pipeline_id) {
            return Ok(Some(phases));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if waiting.is_none() {
            state.inner.metrics.resolve_waiting.inc();
            waiting = Some(Waiting(&state.inner.metrics));
        }
        tokio::select! {
            s = seen.recv() => match s {
                Ok(s) if &*s.batch_id != batch_id => continue,
                Ok(Seen { state: Some(fresh), .. }) => {
                    phases = BatchPhases::from_fields(&fresh.fields);
                }
                // Committed but not held by the store, or too many completions to follow:
                // read.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    phases = load(state, batch_id).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            },
            _ = tokio::time::sleep_until(next_poll.min(deadline).into()) => {
                if Instant::now() >= next_poll {
                    phases = load(state, batch_id).await?;
                    // The assignment may have changed meanwhile.
                    let (first, max) = poll_schedule(sole());
                    poll = (poll * 2).clamp(first, max);
                    next_poll = Instant::now() + poll;
                }
            }
            _ = state.inner.consumer_stopped.cancelled() => return Ok(None),
        }
    }
}

/// A causal wait's first re-read and its longest interval between re-reads.
fn poll_schedule(sole_consumer: bool) -> (Duration, Duration) {
    if sole_consumer {
        (SOLE_WAIT_POLL, SOLE_WAIT_POLL_MAX)
    } else {
        (WAIT_POLL, WAIT_POLL_MAX)
    }
}

/// A pipeline's phases (expanded, in dependency order), from the definitions alone: no batch
/// is read. The orchestrator checks a requested pipeline name with it.
#[utoipa::path(
    get,
    path = "/internal/v1/pipelines/{name}",
    tag = "resolution",
    params(("name" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "Known: its phases", body = PipelineDefinitionV1),
        (status = 400, description = "Unknown pipeline: `{\"error\": \"Pipeline resolution failed\", \"detail\": ...}` (as `define` answers it)", body = ErrorBody),
    )
)]
async fn pipeline_definition(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PipelineDefinitionV1>, ApiError> {
    let _span = traced_span("pipeline_definition", &headers).entered();
    let defs = &state.inner.config.definitions;
    match resolve(defs, &name, &Default::default()) {
        Ok(r) => Ok(Json(PipelineDefinitionV1 {
            pipeline: name,
            phases: r.final_pipeline.iter().map(|p| p.to_string()).collect(),
        })),
        Err(e) => Err(ApiError::bad_request(
            "Pipeline resolution failed",
            e.to_string(),
        )),
    }
}

/// Resolve a pipeline for a batch: expand, prune completed phases. Read-only.
#[utoipa::path(
    post,
    path = "/internal/v1/pipelines/define",
    tag = "resolution",
    request_body = BCSPipelineDefinitionRequestV1,
    params(
        ("wait_ms" = Option<u64>, Query, description = "Longest causal wait the caller accepts, in milliseconds (default and most: RESOLVE_WAIT_MS); 0 answers at once"),
    ),
    responses(
        (status = 200, description = "Resolved; `final_pipeline` may be empty", body = BCSPipelineDefinitionResponseV1),
        (status = 400, description = "Unknown pipeline: `{\"error\": \"Pipeline resolution failed\", \"detail\": ...}`", body = ErrorBody),
        (status = 422, description = "Malformed body or `wait_ms` (the detail names the field)", body = ErrorBody),
        (status = 503, description = "`conductor_lagging`: `after_pipeline_id` not processed within the wait (Retry-After: 1); or `store_unavailable`", body = ErrorBody),
    )
)]
async fn define(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let span = traced_span("define", &headers);
    let wait = wait_of(query.as_deref(), state.inner.config.resolve_wait)?;
    let result = define_inner(&state, &body, wait).instrument(span).await;
    state
        .inner
        .metrics
        .resolve_duration
        .observe(started.elapsed().as_secs_f64());
    result.map(|r| Json(r).into_response())
}

/// The causal wait a define call accepts: its `wait_ms` query parameter, at most `most`
/// (`RESOLVE_WAIT_MS`, also the default). Other parameters are ignored.
fn wait_of(query: Option<&str>, most: Duration) -> Result<Duration, ApiError> {
    let Some(query) = query else {
        return Ok(most);
    };
    let mut wait = most;
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if key == "wait_ms" {
            let ms: u64 = value.parse().map_err(|_| {
                ApiError::unprocessable(
                    "invalid_query",
                    format!("wait_ms: expected a whole number of milliseconds, got {value:?}"),
                )
            })?;
            wait = Duration::from_millis(ms).min(most);
        }
    }
    Ok(wait)
}

async fn define_inner(
    state: &AppState,
    body: &[u8],
    wait: Duration,
) -> Result<BCSPipelineDefinitionResponseV1, ApiError> {
    let req: BCSPipelineDefinitionRequestV1 =
        decode_json(body).map_err(|e| ApiError::unprocessable("invalid_body", e.message))?;
    let defs = &state.inner.config.definitions;
    if defs.pipeline(&req.requested_pipeline).is_none() {
        let err = resolve(defs, &req.requested_pipeline, &Default::default()).unwrap_err();
        tracing::info!(batch_id = %req.batch_id, correlation_id = %req.correlation_id,
            requested_pipeline = %req.requested_pipeline, "unknown pipeline requested");
        return Err(ApiError::bad_request(
            "Pipeline resolution failed",
            err.to_string(),
        ));
    }
    let phases = match req.after_pipeline_id.as_deref() {
        None => load(state, &req.batch_id).await?,
        Some(after) => {
            let after = normalize_pipeline_id(after);
            match wait_for_pipeline(state, &req.batch_id, &after, wait).await? {
                Some(phases) => phases,
                None => {
                    let waited = wait.as_millis();
                    if wait >= state.inner.config.resolve_wait {
                        state.inner.metrics.resolve_lagging.inc();
                        tracing::warn!(batch_id = %req.batch_id, correlation_id = %req.correlation_id,
                            after_pipeline_id = %after, waited_ms = waited as u64,
                            "after_pipeline_id not processed in time; answering conductor_lagging");
                    } else {
                        // The caller asked for a shorter wait (the orchestrator's start with
                        // the request): it retries with the full wait.
                        tracing::debug!(batch_id = %req.batch_id, after_pipeline_id = %after,
                            waited_ms = waited as u64, "after_pipeline_id not processed within the caller's wait");
                    }
                    return Err(ApiError::unavailable(
                        "conductor_lagging",
                        format!(
                            "pipeline {after} of batch {} has not been processed by the conductor after {waited} ms; retry later",
                            req.batch_id
                        ),
                    )
                    .with_retry_after(1));
                }
            }
        }
    };
    let resolution = resolve(defs, &req.requested_pipeline, &phases.completed())
        .expect("the pipeline exists: checked above");
    for p in &resolution.pruned {
        state
            .inner
            .metrics
            .phases_pruned
            .get_or_create(&PhaseLabels { phase: p.as_str() })
            .inc();
    }
    let names = |ps: &[PhaseName]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let final_pipeline = names(&resolution.final_pipeline);
    let pruned_phases = names(&resolution.pruned);
    let summary = if pruned_phases.is_empty() {
        format!(
            "Resolved {} phases for {}",
            final_pipeline.len(),
            req.requested_pipeline
        )
    } else if final_pipeline.is_empty() {
        format!(
            "Nothing to run for {}: all {} phases already completed ({})",
            req.requested_pipeline,
            pruned_phases.len(),
            pruned_phases.join(", ")
        )
    } else {
        format!(
            "Resolved {} phases for {}; pruned {} already completed ({})",
            final_pipeline.len(),
            req.requested_pipeline,
            pruned_phases.len(),
            pruned_phases.join(", ")
        )
    };
    tracing::info!(batch_id = %req.batch_id, correlation_id = %req.correlation_id,
        requested_pipeline = %req.requested_pipeline, final_pipeline = ?final_pipeline,
        pruned = ?pruned_phases, "pipeline resolved");
    Ok(BCSPipelineDefinitionResponseV1 {
        batch_id: req.batch_id,
        final_pipeline,
        analysis_summary: Some(summary),
        pruned_phases,
    })
}

fn missing_fields() -> ApiError {
    ApiError::bad_request(
        "Missing required fields: batch_id and phase_name",
        "batch_id and phase_name must be non-empty strings",
    )
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_body", detail.into())
}

/// A required, non-empty string field: missing/null/blank → 400, another type → 422.
fn required_str(body: &serde_json::Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(missing_fields()),
        Some(Value::String(s)) if s.trim().is_empty() => Err(missing_fields()),
        Some(Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err(invalid(format!("{field}: expected a string"))),
    }
}

fn optional_str(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{field}: expected a string or null"))),
    }
}

fn parse_mark(body: &[u8], defs: &Definitions) -> Result<OperatorMark, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("body is not valid JSON: {e}"))
    })?;
    let Value::Object(obj) = value else {
        return Err(invalid("expected a JSON object"));
    };
    let batch_id = required_str(&obj, "batch_id")?;
    let phase_name = required_str(&obj, "phase_name")?;
    if batch_id.chars().count() > 255 {
        return Err(invalid("batch_id: at most 255 characters"));
    }
    let phase = phase_name
        .parse::<PhaseName>()
        .ok()
        .filter(|p| defs.has_phase(*p))
        .ok_or_else(|| {
            let known: Vec<&str> = defs.phases().iter().map(|p| p.as_str()).collect();
            ApiError::unprocessable(
                "unknown_phase",
                format!(
                    "phase_name: unknown phase `{phase_name}`; expected one of {}",
                    known.join(", ")
                ),
            )
        })?;
    let success = match obj.get("success") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("success: expected true or false")),
    };
    Ok(OperatorMark {
        batch_id,
        phase,
        success,
        reason: optional_str(&obj, "reason")?,
        operator: optional_str(&obj, "operator")?,
    })
}

/// Mark a phase completed (or failed) for a batch by hand.
#[utoipa::path(
    post,
    path = "/internal/v1/phases/complete",
    tag = "operators",
    request_body = MarkRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Recorded", body = MarkResponse),
        (status = 400, description = "`Missing required fields: batch_id and phase_name`, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token; nothing recorded", body = ErrorBody),
        (status = 409, description = "`newer_record`: the phase has a record newer than this mark (clock skew); nothing recorded", body = ErrorBody),
        (status = 422, description = "Unknown phase or a field of the wrong type", body = ErrorBody),
        (status = 503, description = "`operator_endpoint_disabled` (no OPERATOR_TOKEN configured) or `store_unavailable`", body = ErrorBody),
    )
)]
async fn complete_phase(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MarkResponse>, ApiError> {
    state.require_operator(&headers)?;
    let mark = parse_mark(&body, &state.inner.config.definitions)?;
    let outcome = record_mark(
        &state.inner.store,
        &mark,
        state.inner.config.state_ttl,
        Timestamp::now(),
    )
    .await
    .map_err(|e| store_unavailable(&e))?;
    match outcome {
        MarkOutcome::Recorded(record) => {
            state
                .inner
                .metrics
                .recorded(RecordSource::Operator, record.status);
            tracing::info!(batch_id = %mark.batch_id, phase = %mark.phase,
                status = record.status.as_str(), operator = ?mark.operator, reason = ?mark.reason,
                "operator mark recorded");
            Ok(Json(MarkResponse {
                status: "recorded".into(),
                batch_id: mark.batch_id,
                phase_name: mark.phase.to_string(),
                record,
            }))
        }
        MarkOutcome::KeptNewer(newer) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "newer_record",
            serde_json::json!({
                "message": "the phase has a record newer than this mark; nothing recorded",
                "record": newer,
            }),
        )),
        MarkOutcome::Contended => Err(ApiError::unavailable(
            "store_busy",
            "the batch's state kept changing; retry",
        )
        .with_retry_after(1)),
    }
}

/// Re-drive a poison dead-letter record: its original bytes go back to the topic they came
/// from, with `redrive.*` headers naming the record and the operator; at most once per record.
#[utoipa::path(
    post,
    path = "/internal/v1/dlq/redrive",
    tag = "operators",
    request_body = RedriveRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Re-driven: where the message landed", body = RedriveRecord),
        (status = 400, description = "The body is not JSON of this shape", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token; nothing done", body = ErrorBody),
        (status = 404, description = "No record at that position (never written, or deleted by retention)", body = ErrorBody),
        (status = 409, description = "`already_redriven`: the record was re-driven before (detail.record says when and by whom)", body = ErrorBody),
        (status = 422, description = "`not_a_poison_dlq`, `bad_position`, `missing_field`, or `payload_omitted` (the record holds no copy of the message)", body = ErrorBody),
        (status = 503, description = "`operator_endpoint_disabled`, `redrive_unavailable`, `store_unavailable`, `broker_unavailable` or `publish_failed`", body = ErrorBody),
    )
)]
async fn redrive_record(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<RedriveRequest>,
) -> Result<Json<RedriveRecord>, ApiError> {
    state.require_operator(&headers)?;
    crate::redrive::check(&req)?;
    let Some(redriver) = &state.inner.redriver else {
        return Err(ApiError::unavailable(
            "redrive_unavailable",
            "this conductor was started without a broker for re-drives",
        ));
    };
    crate::redrive::redrive(&state.inner.store, redriver, &req, Timestamp::now())
        .await
        .map(Json)
}

/// A batch's phase records with provenance and its processed pipelines.
#[utoipa::path(
    get,
    path = "/internal/v1/batches/{batch_id}/phases",
    tag = "inspection",
    params(("batch_id" = String, Path, description = "The batch")),
    responses(
        (status = 200, description = "Records (empty for an unknown batch)", body = BatchPhasesView),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    )
)]
async fn batch_phases(
    State(state): State<AppState>,
    Path(batch_id): Path<String>,
) -> Result<Json<BatchPhasesView>, ApiError> {
    let phases = load(&state, &batch_id).await?;
    let mut processed: Vec<ProcessedPipeline> = phases
        .pipelines
        .into_iter()
        .map(|(id, m)| ProcessedPipeline {
            pipeline_id: id,
            processed_at: m.processed_at,
            event_id: m.event_id,
            final_status: m.final_status.to_string(),
            completed_phases: m.completed_phases.iter().map(|p| p.to_string()).collect(),
        })
        .collect();
    processed
        .sort_by(|a, b| (a.processed_at, &a.pipeline_id).cmp(&(b.processed_at, &b.pipeline_id)));
    Ok(Json(BatchPhasesView {
        batch_id,
        phases: phases
            .phases
            .into_iter()
            .map(|(p, r)| (p.to_string(), r))
            .collect(),
        processed_pipelines: processed,
    }))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
async fn health() -> Response {
    healthz().await.into_response()
}

/// Readiness: the consumer joined its group and Redis answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`{\"ready\": true, \"checks\": {...}}`"),
        (status = 503, description = "`{\"ready\": false, \"checks\": {<check>: <problem>}}`"),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    state.inner.readiness.respond().await
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in OpenMetrics text format", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.inner.registry.respond(&headers)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document of these routes")))]
async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

struct OperatorAuth;

impl Modify for OperatorAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "batch-conductor",
        description = "Batch Conductor Service: batch-level phase completion, pipeline resolution with causal pruning, operator marks."
    ),
    paths(
        define,
        pipeline_definition,
        complete_phase,
        redrive_record,
        batch_phases,
        health,
        readyz,
        metrics,
        openapi
    ),
    components(schemas(
        BCSPipelineDefinitionRequestV1,
        BCSPipelineDefinitionResponseV1,
        PipelineDefinitionV1,
        MarkRequest,
        MarkResponse,
        RedriveRequest,
        RedriveRecord,
        BatchPhasesView,
        ProcessedPipeline,
        PhaseRecord,
        ErrorBody
    )),
    modifiers(&OperatorAuth)
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_define_call_waits_at_most_resolve_wait_ms_and_as_little_as_it_asks() {
        let most = Duration::from_millis(5000);
        assert_eq!(wait_of(None, most).unwrap(), most);
        assert_eq!(wait_of(Some("other=1"), most).unwrap(), most);
        assert_eq!(wait_of(Some("wait_ms=0"), most).unwrap(), Duration::ZERO);
        assert_eq!(
            wait_of(Some("x=y&wait_ms=250"), most).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(wait_of(Some("wait_ms=600000"), most).unwrap(), most);
        assert!(wait_of(Some("wait_ms=-1"), most).is_err());
        assert!(wait_of(Some("wait_ms="), most).is_err());
    }
}
