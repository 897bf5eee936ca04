//! The console's HTTP server: pages (GET), actions (POST, same-origin only, each with the
//! operator's typed token), probes and metrics. [`App::build`] then [`App::run`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use hulectl::event::{decode, is_poison_topic, Body, PoisonRecord};
use huleedu_contracts::http::bos::RetryPhaseRequest;
use huleedu_contracts::http::redrive::RedriveRequest;
use huleedu_contracts::{PhaseName, Timestamp};
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::{self, Readiness};
use huleedu_http::{HttpListener, HttpServer, ListenError, ServeError};
use huleedu_service::settings::Secret;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::clients::{CallError, Clients, Upstream};
use crate::pages::{self, PoisonRow};
use crate::settings::ConsoleSettings;

/// The style sheet (no other static file).
const CSS: &str = include_str!("../static/console.css");
/// Batches per page of the batch list.
const PAGE: usize = 50;

/// Why the console could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("could not set up the clients: {0}")]
    Clients(String),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: &'static str,
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ConsoleState {
    clients: Clients,
    /// Checks the typed token before the console publishes a pipeline request itself.
    operator_token: Option<Secret>,
    metrics: Metrics,
    actions: Family<ActionLabels, Counter>,
    readiness: Readiness,
}

impl ConsoleState {
    pub fn new(settings: &ConsoleSettings) -> anyhow::Result<Self> {
        let clients = Clients::new(&settings.bos_url, &settings.bcs_url, &settings.kafka)?;
        let metrics = Metrics::new();
        let actions = Family::<ActionLabels, Counter>::default();
        metrics.register(|r| {
            r.register(
                "console_actions",
                "Operator actions taken through the console, by action and outcome (done, refused: the service or the console said no, failed: a service could not be reached)",
                actions.clone(),
            );
        });
        let (bos, bcs) = (clients.clone(), clients.clone());
        let readiness = Readiness::new()
            .check("orchestrator", move || {
                let c = bos.clone();
                async move { c.alive(Upstream::Orchestrator).await }
            })
            .check("conductor", move || {
                let c = bcs.clone();
                async move { c.alive(Upstream::Conductor).await }
            });
        Ok(Self {
            clients,
            operator_token: settings.operator_token.clone(),
            metrics,
            actions,
            readiness,
        })
    }

    fn count(&self, action: &'static str, r: &Result<String, CallError>) {
        let outcome = match r {
            Ok(_) => "done",
            Err(CallError::Status { .. }) => "refused",
            Err(_) => "failed",
        };
        self.actions
            .get_or_create(&ActionLabels { action, outcome })
            .inc();
    }
}

/// The router: pages, actions, probes, metrics; same-origin check on every POST, security
/// headers on every answer, a body limit and a time-out.
pub fn router(state: ConsoleState) -> Router {
    let actions = Router::new()
        .route("/actions/submit", post(submit))
        .route("/actions/mark", post(mark))
        .route("/actions/retry", post(retry))
        .route("/actions/redrive", post(redrive))
        .layer(middleware::from_fn(same_origin_only));
    Router::new()
        .route("/", get(|| async { Redirect::to("/batches") }))
        .route("/batches", get(batches))
        .route("/batches/{batch_id}", get(batch))
        .route("/dead-letters", get(dead_letters))
        .route(
            "/submit",
            get(|| async { Html(pages::submit_page().into_string()) }),
        )
        .route("/static/console.css", get(css))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(actions)
        .fallback(|| async {
            page(
                StatusCode::NOT_FOUND,
                pages::outcome("Not found", Err("No such page.".into()), "/batches"),
            )
        })
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(middleware::from_fn(security_headers))
}

fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// Every answer: no framing, no sniffing, nothing loaded from elsewhere, forms post here only,
/// no referrer to other sites, not cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// Whether a POST comes from the console's own pages: its `Origin` (or, without one, its
/// `Referer`) names the host the request was sent to. Browsers send `Origin` with every
/// cross-site POST and a page cannot forge it, so a form on another site cannot act here.
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text(header::HOST) else {
        return false;
    };
    let ours = |origin: &str| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest == host)
    };
    match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) => ours(origin),
        (None, Some(referer)) => {
            let origin: String = referer.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
            ours(&origin)
        }
        (None, None) => false,
    }
}

async fn same_origin_only(req: Request, next: Next) -> Response {
    if is_same_origin(req.headers()) {
        return next.run(req).await;
    }
    tracing::warn!("console action refused: not from the console's own origin");
    page(
        StatusCode::FORBIDDEN,
        pages::outcome(
            "Refused",
            Err("Actions are accepted only from the console's own pages (Origin check).".into()),
            "/batches",
        ),
    )
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn readyz(State(s): State<ConsoleState>) -> Response {
    s.readiness.respond().await
}

async fn metrics(State(s): State<ConsoleState>, headers: HeaderMap) -> Response {
    s.metrics.respond(&headers)
}

fn nonblank(q: &HashMap<String, String>, key: &str) -> Option<String> {
    q.get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn batches(
    State(s): State<ConsoleState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let status = nonblank(&q, "status");
    let cursor = nonblank(&q, "cursor");
    let page_data = s
        .clients
        .batches(status.as_deref(), cursor.as_deref(), PAGE)
        .await
        .map_err(|e| e.to_string());
    let code = if page_data.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    page(
        code,
        pages::batches(page_data.as_ref().map_err(Clone::clone), status.as_deref()),
    )
}

async fn batch(State(s): State<ConsoleState>, Path(batch_id): Path<String>) -> Response {
    let (bos, bcs) = tokio::join!(
        s.clients.batch_status(&batch_id),
        s.clients.phase_records(&batch_id)
    );
    let bos = bos.map_err(|e| e.to_string());
    let bcs = bcs.map_err(|e| e.to_string());
    let code = match &bos {
        Ok(Some(_)) => StatusCode::OK,
        Ok(None) => StatusCode::NOT_FOUND,
        Err(_) => StatusCode::BAD_GATEWAY,
    };
    let markup = pages::batch(
        &batch_id,
        bos.as_ref().map(Option::as_ref).map_err(Clone::clone),
        bcs.as_ref().map_err(Clone::clone),
        Timestamp::now(),
    );
    page(code, markup)
}

async fn dead_letters(
    State(s): State<ConsoleState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let batch = nonblank(&q, "batch");
    let topic = nonblank(&q, "topic");
    let read = match s.clients.dead_letters().await {
        Ok(r) => r,
        Err(e) => {
            return page(
                StatusCode::BAD_GATEWAY,
                pages::dead_letters(Err(e.to_string()), &[], batch.as_deref(), topic.as_deref()),
            )
        }
    };
    let mut poison = Vec::new();
    let mut essays = Vec::new();
    for r in &read.records {
        if topic.as_deref().is_some_and(|t| t != r.topic) {
            continue;
        }
        let e = decode(r);
        if batch.as_deref().is_some_and(|b| !e.is_for_batch(b)) {
            continue;
        }
        if is_poison_topic(&r.topic) {
            poison.push(PoisonRow {
                record: PoisonRecord::from_record(r),
                headers: r.headers.clone(),
            });
        } else if let Body::FailedEssay(f) = e.body {
            if !essays
                .iter()
                .any(|x: &huleedu_contracts::FailedEssayDlqRecordV1| {
                    x.essay_id == f.essay_id
                        && x.source_event_id == f.source_event_id
                        && x.phase_name == f.phase_name
                })
            {
                essays.push(f);
            }
        }
    }
    poison.sort_by(|a, b| b.record.failed_at.cmp(&a.record.failed_at));
    essays.sort_by_key(|e| std::cmp::Reverse(e.failed_at));
    let mut topics: Vec<String> = read.topics.clone();
    topics.sort();
    page(
        StatusCode::OK,
        pages::dead_letters(
            Ok((&poison, &essays)),
            &topics,
            batch.as_deref(),
            topic.as_deref(),
        ),
    )
}

/// A checked action form: the fields it needs, the operator and the token.
struct ActionForm {
    fields: HashMap<String, String>,
    operator: String,
    token: String,
}

impl std::fmt::Debug for ActionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionForm")
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

impl ActionForm {
    /// The form, or what is missing.
    fn check(form: HashMap<String, String>, required: &[&str]) -> Result<Self, String> {
        let missing: Vec<&str> = required
            .iter()
            .chain(["operator", "token"].iter())
            .filter(|k| nonblank(&form, k).is_none())
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(format!("Missing: {}.", missing.join(", ")));
        }
        Ok(Self {
            operator: nonblank(&form, "operator").unwrap_or_default(),
            token: form.get("token").cloned().unwrap_or_default(),
            fields: form,
        })
    }

    fn get(&self, key: &str) -> String {
        nonblank(&self.fields, key).unwrap_or_default()
    }
}

fn phase_of(raw: &str) -> Result<PhaseName, String> {
    raw.parse().map_err(|_| format!("Unknown phase {raw:?}."))
}

/// A form the console could not act on (400), saying why.
fn bad_form(title: &str, why: String, back: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        pages::outcome(title, Err(why), back),
    )
}

/// The page an action's result is shown on (a refusal keeps the service's status).
fn finish(
    s: &ConsoleState,
    label: &'static str,
    title: &str,
    r: Result<String, CallError>,
    back: &str,
) -> Response {
    s.count(label, &r);
    let code = match &r {
        Ok(_) => StatusCode::OK,
        Err(CallError::Status { status, .. }) => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        Err(_) => StatusCode::BAD_GATEWAY,
    };
    page(
        code,
        pages::outcome(title, r.map_err(|e| e.to_string()), back),
    )
}

async fn submit(
    State(s): State<ConsoleState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let back = nonblank(&form, "batch").map_or("/submit".to_owned(), |b| pages::batch_href(&b));
    let f = match ActionForm::check(form, &["batch", "pipeline"]) {
        Ok(f) => f,
        Err(why) => return bad_form("Submit a pipeline", why, &back),
    };
    let allowed = match &s.operator_token {
        None => Err(
            "Submitting is disabled: the console was started without an OPERATOR_TOKEN.".to_owned(),
        ),
        Some(t) if huleedu_http::auth::token_matches(&f.token, t.expose()) => Ok(()),
        Some(_) => Err("Refused: the token is not the operator token.".to_owned()),
    };
    if let Err(why) = allowed {
        s.count(
            "submit",
            &Err(CallError::Status {
                upstream: Upstream::Broker,
                status: 401,
                error: String::new(),
                detail: String::new(),
            }),
        );
        return page(
            StatusCode::UNAUTHORIZED,
            pages::outcome("Submit a pipeline", Err(why), &back),
        );
    }
    let (batch, pipeline) = (f.get("batch"), f.get("pipeline"));
    let r = s
        .clients
        .submit(&batch, &pipeline, &f.operator)
        .await
        .map(|c| {
            format!(
                "Pipeline {pipeline} requested for batch {batch} by {} (correlation id {c}).",
                f.operator
            )
        });
    tracing::info!(batch_id = %batch, pipeline = %pipeline, operator = %f.operator, ok = r.is_ok(), "console: pipeline submitted");
    finish(&s, "submit", "Submit a pipeline", r, &back)
}

async fn mark(
    State(s): State<ConsoleState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let back = nonblank(&form, "batch").map_or("/batches".to_owned(), |b| pages::batch_href(&b));
    let f = match ActionForm::check(form, &["batch", "phase", "mark", "reason"]) {
        Ok(f) => f,
        Err(why) => return bad_form("Mark a phase", why, &back),
    };
    let phase = match phase_of(&f.get("phase")) {
        Ok(p) => p,
        Err(why) => return bad_form("Mark a phase", why, &back),
    };
    let complete = f.get("mark") != "invalidate";
    let body = json!({"batch_id": f.get("batch"), "phase_name": phase.as_str(), "success": complete,
                      "reason": f.get("reason"), "operator": f.operator});
    let r = s.clients.mark(&f.token, &body).await.map(|_| {
        format!(
            "{phase} of batch {} recorded {} by {}.",
            f.get("batch"),
            if complete {
                "completed"
            } else {
                "not completed (it runs again when a pipeline needs it)"
            },
            f.operator
        )
    });
    tracing::info!(batch_id = %f.get("batch"), phase = %phase, complete, operator = %f.operator, ok = r.is_ok(), "console: mark");
    finish(&s, "mark", "Mark a phase", r, &back)
}

async fn retry(
    State(s): State<ConsoleState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let back = nonblank(&form, "batch").map_or("/batches".to_owned(), |b| pages::batch_href(&b));
    let f = match ActionForm::check(form, &["batch", "phase", "reason"]) {
        Ok(f) => f,
        Err(why) => return bad_form("Retry a phase", why, &back),
    };
    let phase = match phase_of(&f.get("phase")) {
        Ok(p) => p,
        Err(why) => return bad_form("Retry a phase", why, &back),
    };
    let essays: Vec<String> = f
        .get("essays")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let body = RetryPhaseRequest {
        phase_name: phase.as_str().to_owned(),
        reason: f.get("reason"),
        essay_ids: (!essays.is_empty()).then_some(essays),
        operator: Some(f.operator.clone()),
    };
    let batch = f.get("batch");
    let r = s.clients.retry(&f.token, &batch, &body).await.map(|a| {
        format!(
            "Retry of {phase} queued for batch {batch} by {} (correlation id {}).",
            f.operator, a.correlation_id
        )
    });
    tracing::info!(batch_id = %batch, phase = %phase, operator = %f.operator, ok = r.is_ok(), "console: retry");
    finish(&s, "retry", "Retry a phase", r, &back)
}

async fn redrive(
    State(s): State<ConsoleState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let back = "/dead-letters";
    let f = match ActionForm::check(form, &["dlq_topic", "partition", "offset", "reason"]) {
        Ok(f) => f,
        Err(why) => return bad_form("Re-drive", why, back),
    };
    let (Ok(partition), Ok(offset)) = (
        f.get("partition").parse::<i32>(),
        f.get("offset").parse::<i64>(),
    ) else {
        return page(
            StatusCode::BAD_REQUEST,
            pages::outcome(
                "Re-drive",
                Err("partition and offset must be whole numbers.".into()),
                back,
            ),
        );
    };
    let body = RedriveRequest {
        dlq_topic: f.get("dlq_topic"),
        partition,
        offset,
        operator: f.operator.clone(),
        reason: f.get("reason"),
    };
    let r = s
        .clients
        .redrive(&f.token, &body)
        .await
        .map(|d| format!("{}.", d.summary()));
    tracing::info!(dlq_topic = %body.dlq_topic, partition, offset, operator = %f.operator, ok = r.is_ok(), "console: re-drive");
    finish(&s, "redrive", "Re-drive", r, back)
}

/// A built console: clients created, the HTTP port bound.
#[derive(Debug)]
pub struct App {
    listener: HttpListener,
    http_addr: SocketAddr,
    state: ConsoleState,
}

impl App {
    /// Creates the clients and binds `HTTP_ADDR` (port 0 picks a free port).
    pub async fn build(settings: ConsoleSettings) -> Result<Self, AppError> {
        let state =
            ConsoleState::new(&settings).map_err(|e| AppError::Clients(format!("{e:#}")))?;
        let listener = HttpListener::from_settings(&settings.common).await?;
        let http_addr = listener.local_addr().map_err(|source| ListenError::Bind {
            addr: settings.common.http_addr,
            source,
        })?;
        tracing::info!(http_addr = %http_addr, bos = %settings.bos_url, bcs = %settings.bcs_url,
            kafka = %settings.kafka.security.describe(), submit_enabled = settings.operator_token.is_some(),
            "pipeline console built");
        Ok(Self {
            listener,
            http_addr,
            state,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serve until `shutdown` is cancelled, then finish in-flight requests.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let mut http = HttpServer::start(self.listener, router(self.state));
        tracing::info!(http_addr = %self.http_addr, "pipeline console running");
        http.serve_until(&shutdown).await;
        http.stop().await?;
        tracing::info!("pipeline console stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_posts_from_the_console_itself_are_accepted() {
        assert!(is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(is_same_origin(&headers(&[
            ("host", "console.internal"),
            ("origin", "https://console.internal")
        ])));
        assert!(is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://127.0.0.1:8080/batches/b1")
        ])));
        for bad in [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080.evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("referer", "http://evil.example/127.0.0.1:8080"),
            ]),
            headers(&[("host", "127.0.0.1:8080")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
        ] {
            assert!(!is_same_origin(&bad), "{bad:?}");
        }
    }

    #[test]
    fn the_action_form_does_not_print_its_token() {
        let form: HashMap<String, String> = [("operator", "ann"), ("token", "s3cret")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let f = ActionForm::check(form, &[]).unwrap();
        assert!(!format!("{f:?}").contains("s3cret"));
    }
}
