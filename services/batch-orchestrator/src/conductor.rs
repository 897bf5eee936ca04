//! Client of the conductor's resolution endpoint (`POST /internal/v1/pipelines/define`).

use huleedu_contracts::trace::{TraceContext, TRACEPARENT, TRACESTATE};
use huleedu_store::Recent;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huleedu_contracts::http::{
    BCSPipelineDefinitionRequestV1, BCSPipelineDefinitionResponseV1, PipelineDefinitionV1,
};
use huleedu_contracts::phase::PhaseName;
use uuid::Uuid;

use crate::decide::Resolution;

/// Why a resolution did not come back. All of these are retried; none drops a request.
#[derive(Debug, thiserror::Error)]
pub enum ConductorError {
    #[error("conductor lagging behind pipeline {after}; retry after {retry_after:?}")]
    Lagging { after: Uuid, retry_after: Duration },
    #[error("conductor unreachable or failing: {0}")]
    Unavailable(String),
}

/// An error with its causes ("error sending request: ...: invalid peer certificate:
/// UnknownIssuer"): the outermost message alone does not say what to fix.
/// Phase names as the conductor sent them; an unknown one means the two services disagree.
fn phases(v: &[String]) -> Result<Vec<PhaseName>, ConductorError> {
    v.iter()
        .map(|p| {
            p.parse().map_err(|_| {
                ConductorError::Unavailable(format!("conductor named an unknown phase {p:?}"))
            })
        })
        .collect()
}

/// `s` as one URL path segment (percent-encoded but for unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Time-out of the quick pipeline-name check made when a request arrives.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`Conductor::resolve_now`] leaves the conductor alone after it failed to answer
/// (the scheduler's resolutions go on meanwhile).
const NOW_PAUSE: Duration = Duration::from_secs(10);

/// How long a pipeline name the conductor answered as known is taken as known without asking
/// again. The conductor loads its definitions at start-up, so a name changes only with a
/// redeploy of the conductor; a name dropped by one is still rejected at the start, which
/// resolves every request with the conductor anyway.
pub const KNOWN_NAME_TTL: Duration = Duration::from_secs(30);
/// Most pipeline names remembered (a deployment defines a handful).
const KNOWN_NAMES: usize = 64;

/// HTTP client of the conductor.
#[derive(Debug, Clone)]
pub struct Conductor {
    http: reqwest::Client,
    /// Parsed once: parsing the URL was 1.7 % of the loaded orchestrator's CPU.
    define_url: reqwest::Url,
    /// `define_url` asking for no causal wait (`?wait_ms=0`).
    define_now_url: reqwest::Url,
    /// `…/internal/v1/pipelines`: `/{name}` answers whether a pipeline is known.
    pipelines_url: String,
    /// Names the conductor answered as known, with their phases and when it answered: a
    /// request for one of them is not checked again for [`KNOWN_NAME_TTL`] (two thirds of the
    /// HTTP calls per pipeline were name checks, one per request).
    known: Arc<Mutex<Recent<Vec<PhaseName>>>>,
    /// Until when [`Conductor::resolve_now`] does not ask (after the conductor failed to answer).
    now_paused_until: Arc<Mutex<Option<Instant>>>,
}

impl Conductor {
    /// A client of the conductor at `base_url` (`http://` or `https://`). For `https://`, the
    /// conductor's certificate is verified against the system's trust store plus `extra_roots`
    /// (`BCS_CA_FILE`). Panics if `base_url` is not a URL (the settings check `BCS_URL`).
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        Self::with_roots(base_url, timeout, &[])
    }

    /// [`Conductor::new`] trusting `extra_roots` too.
    pub fn with_roots(
        base_url: &str,
        timeout: Duration,
        extra_roots: &[reqwest::Certificate],
    ) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2));
        for root in extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let http = builder.build().expect("HTTP client");
        let base = base_url.trim_end_matches('/');
        let define_url = reqwest::Url::parse(&format!("{base}/internal/v1/pipelines/define"))
            .expect("BCS_URL is a URL (checked with the settings at start-up)");
        let mut define_now_url = define_url.clone();
        define_now_url.set_query(Some("wait_ms=0"));
        Self {
            http,
            define_url,
            define_now_url,
            pipelines_url: format!("{base}/internal/v1/pipelines"),
            // One unit of weight per name: bounded by the count.
            known: Arc::new(Mutex::new(Recent::new(
                KNOWN_NAMES,
                KNOWN_NAMES,
                KNOWN_NAME_TTL,
            ))),
            now_paused_until: Arc::default(),
        }
    }

    /// The phases of `pipeline` if the conductor answered it as known within [`KNOWN_NAME_TTL`].
    fn known_name(&self, pipeline: &str) -> Option<Vec<PhaseName>> {
        self.known.lock().get(pipeline).cloned()
    }

    /// Is `pipeline` known? `GET /internal/v1/pipelines/{name}` with a short time-out: the
    /// conductor answers from its definitions without reading the batch. `Resolved` carries the
    /// pipeline's phases (nothing pruned: no batch was looked at). A name answered as known
    /// within [`KNOWN_NAME_TTL`] by an earlier check is answered without a call; an
    /// unknown name is asked every time.
    pub async fn check_pipeline(
        &self,
        pipeline: &str,
        trace: Option<&TraceContext>,
    ) -> Result<Resolution, ConductorError> {
        if let Some(run) = self.known_name(pipeline) {
            return Ok(Resolution::Resolved {
                run,
                pruned: Vec::new(),
            });
        }
        let url = format!("{}/{}", self.pipelines_url, encode_segment(pipeline));
        let req = traced(self.http.get(&url).timeout(CHECK_TIMEOUT), trace);
        match ask::<PipelineDefinitionV1>(req).await? {
            Answer::Known(r) => {
                let run = phases(&r.phases)?;
                self.known.lock().put(pipeline, run.clone(), 1);
                Ok(Resolution::Resolved {
                    run,
                    pruned: Vec::new(),
                })
            }
            Answer::Unknown(detail) => Ok(Resolution::Unknown { detail }),
            Answer::Other(resp) => Err(answered(&resp)),
        }
    }

    /// Expand and prune `pipeline` for `batch_id`. With `after`, the conductor answers only once
    /// it has processed that pipeline's completion (causal pruning), waiting for it up to its
    /// `RESOLVE_WAIT_MS`.
    pub async fn resolve(
        &self,
        batch_id: &str,
        pipeline: &str,
        correlation_id: Uuid,
        after: Option<Uuid>,
        trace: Option<&TraceContext>,
    ) -> Result<Resolution, ConductorError> {
        self.define(batch_id, pipeline, correlation_id, after, trace, false)
            .await
    }

    /// [`Conductor::resolve`] without the causal wait (`?wait_ms=0`) and with the short
    /// time-out of a name check: for a caller that holds a consumer while it asks (the start
    /// of a request that finds its batch idle). `Lagging` if the conductor has not processed
    /// `after` yet.
    pub async fn resolve_now(
        &self,
        batch_id: &str,
        pipeline: &str,
        correlation_id: Uuid,
        after: Option<Uuid>,
        trace: Option<&TraceContext>,
    ) -> Result<Resolution, ConductorError> {
        let paused = *self.now_paused_until.lock();
        if paused.is_some_and(|until| Instant::now() < until) {
            return Err(ConductorError::Unavailable(
                "asking at once is paused after a failure".into(),
            ));
        }
        let r = self
            .define(batch_id, pipeline, correlation_id, after, trace, true)
            .await;
        if let Err(ConductorError::Unavailable(_)) = &r {
            // Each try would hold the caller's consumer up to CHECK_TIMEOUT.
            *self.now_paused_until.lock() = Some(Instant::now() + NOW_PAUSE);
        }
        r
    }

    async fn define(
        &self,
        batch_id: &str,
        pipeline: &str,
        correlation_id: Uuid,
        after: Option<Uuid>,
        trace: Option<&TraceContext>,
        now: bool,
    ) -> Result<Resolution, ConductorError> {
        let body = BCSPipelineDefinitionRequestV1 {
            batch_id: batch_id.to_owned(),
            requested_pipeline: pipeline.to_owned(),
            correlation_id: correlation_id.to_string(),
            batch_metadata: None,
            after_pipeline_id: after.map(|a| a.to_string()),
        };
        let req = if now {
            self.http
                .post(self.define_now_url.clone())
                .timeout(CHECK_TIMEOUT)
        } else {
            self.http.post(self.define_url.clone())
        };
        let req = traced(req.json(&body), trace);
        match ask::<BCSPipelineDefinitionResponseV1>(req).await? {
            Answer::Known(r) => Ok(Resolution::Resolved {
                run: phases(&r.final_pipeline)?,
                pruned: phases(&r.pruned_phases)?,
            }),
            Answer::Unknown(detail) => Ok(Resolution::Unknown { detail }),
            Answer::Other(resp) => match after {
                Some(after) if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_secs(1));
                    Err(ConductorError::Lagging { after, retry_after })
                }
                _ => Err(answered(&resp)),
            },
        }
    }
}

/// The request with the W3C `traceparent` (and `tracestate`) headers of `trace`, if any.
fn traced(req: reqwest::RequestBuilder, trace: Option<&TraceContext>) -> reqwest::RequestBuilder {
    let Some(t) = trace else { return req };
    let req = req.header(TRACEPARENT, &t.traceparent);
    match &t.tracestate {
        Some(s) => req.header(TRACESTATE, s),
        None => req,
    }
}

/// What the conductor answered a question about a pipeline.
enum Answer<T> {
    /// 200, with its body.
    Known(T),
    /// 400: the pipeline is unknown (the body, for the terminal event's reason).
    Unknown(String),
    /// Anything else.
    Other(reqwest::Response),
}

async fn ask<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<Answer<T>, ConductorError> {
    let resp = req
        .send()
        .await
        .map_err(|e| ConductorError::Unavailable(with_causes(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return resp
            .json()
            .await
            .map(Answer::Known)
            .map_err(|e| ConductorError::Unavailable(format!("unreadable answer: {e}")));
    }
    if status == reqwest::StatusCode::BAD_REQUEST {
        return Ok(Answer::Unknown(resp.text().await.unwrap_or_default()));
    }
    Ok(Answer::Other(resp))
}

fn answered(resp: &reqwest::Response) -> ConductorError {
    ConductorError::Unavailable(format!("conductor answered {}", resp.status()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A conductor stand-in on a free port that knows `nlp` and counts the name checks it
    /// answers.
    async fn stand_in() -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/internal/v1/pipelines/{name}",
            axum::routing::get(
                move |axum::extract::Path(name): axum::extract::Path<String>| {
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        if name == "nlp" {
                            let body = PipelineDefinitionV1 {
                                pipeline: name,
                                phases: vec!["spellcheck".into(), "nlp".into()],
                            };
                            (axum::http::StatusCode::OK, axum::Json(body)).into_response()
                        } else {
                            (axum::http::StatusCode::BAD_REQUEST, "unknown pipeline")
                                .into_response()
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    #[tokio::test]
    async fn a_known_name_is_asked_once_an_unknown_one_every_time() {
        let (url, calls) = stand_in().await;
        let c = Conductor::new(&url, Duration::from_secs(5));
        for _ in 0..3 {
            let r = c.check_pipeline("nlp", None).await.unwrap();
            assert_eq!(
                r,
                Resolution::Resolved {
                    run: vec![PhaseName::Spellcheck, PhaseName::Nlp],
                    pruned: vec![],
                }
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "nlp asked once");
        for _ in 0..2 {
            let r = c.check_pipeline("bogus", None).await.unwrap();
            assert!(matches!(r, Resolution::Unknown { .. }), "{r:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "bogus asked each time");
        // Clones share what they learned (the handler and the scheduler hold clones).
        c.clone().check_pipeline("nlp", None).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_known_name_is_forgotten_after_its_ttl_and_the_table_stays_bounded() {
        let c = Conductor::new("http://127.0.0.1:9", Duration::from_secs(1));
        let remember = |name: &str, phases: Vec<PhaseName>| c.known.lock().put(name, phases, 1);
        remember("nlp", vec![PhaseName::Nlp]);
        assert_eq!(c.known_name("nlp"), Some(vec![PhaseName::Nlp]));
        c.known
            .lock()
            .backdate("nlp", KNOWN_NAME_TTL - Duration::from_millis(100));
        assert_eq!(c.known_name("nlp"), Some(vec![PhaseName::Nlp]));
        c.known.lock().backdate("nlp", Duration::from_millis(100));
        assert_eq!(c.known_name("nlp"), None);
        for i in 0..2 * KNOWN_NAMES {
            remember(&format!("p{i}"), vec![]);
        }
        assert_eq!(c.known.lock().len(), KNOWN_NAMES);
        // Once the old names have expired, a new one takes their place.
        for i in KNOWN_NAMES..2 * KNOWN_NAMES {
            c.known.lock().backdate(&format!("p{i}"), KNOWN_NAME_TTL);
        }
        remember("late", vec![]);
        assert_eq!(c.known_name("late"), Some(vec![]));
        assert_eq!(c.known.lock().len(), 1);
    }
}
