//! `hulectl mark`, `retry` and `status` against stand-ins of the services' HTTP APIs (axum on
//! 127.0.0.1, port 0), shaped like the real endpoints: what is sent (token, body), how answers
//! and errors are shown, and that the token never appears in the output.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hulectl");
const TOKEN: &str = "good-token-7f3a";
const RETRY_CORRELATION: &str = "55555555-5555-4555-8555-555555555555";

/// What the stand-in received: path, Authorization header, body.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized", "detail": "invalid token"})),
    )
}

fn remember(seen: &Seen, path: String, headers: &HeaderMap, body: &Value) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock().unwrap().push((path, auth, body.clone()));
}

async fn mark(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    remember(
        &seen,
        "/internal/v1/phases/complete".into(),
        &headers,
        &body,
    );
    if !authorized(&headers) {
        return unauthorized();
    }
    let status = if body["success"] == json!(false) {
        "failed"
    } else {
        "completed"
    };
    (
        StatusCode::OK,
        Json(
            json!({"status": "recorded", "batch_id": body["batch_id"], "phase_name": body["phase_name"],
            "record": {"status": status, "source": "operator", "pipeline_correlation_id": null,
                "pipeline_id": null, "event_id": null, "processed_count": null, "failed_count": null,
                "at": "2026-11-29T12:05:00.000000Z", "operator": body["operator"], "reason": body["reason"]}}),
        ),
    )
}

async fn retry(
    State(seen): State<Seen>,
    Path(batch): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    remember(
        &seen,
        format!("/v1/batches/{batch}/retry-phase"),
        &headers,
        &body,
    );
    if !authorized(&headers) {
        return unauthorized();
    }
    (
        StatusCode::ACCEPTED,
        Json(
            json!({"status": "accepted", "batch_id": batch, "phase_name": body["phase_name"],
            "correlation_id": RETRY_CORRELATION, "request_id": "66666666-6666-4666-8666-666666666666"}),
        ),
    )
}

async fn bos_status(Path(batch): Path<String>) -> (StatusCode, Json<Value>) {
    if batch == "unknown" {
        return (
            StatusCode::NOT_FOUND,
            Json(
                json!({"error": "not_found", "detail": "no batch \"unknown\" is known to the orchestrator"}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({"batch_id": batch, "known": true, "essay_count": 3, "course_code": "ENG5",
            "active_pipeline": null, "queue": [], "parked": [],
            "phase_results": {"spellcheck": {"status": "completed_with_failures", "succeeded_count": 2,
                "failed_count": 1, "failed_essay_ids": ["e2"], "pipeline_id": RETRY_CORRELATION,
                "at": "2026-11-29T12:00:02.000000Z"}},
            "history": [], "last_pipeline_id": null}),
        ),
    )
}

async fn bcs_phases(Path(batch): Path<String>) -> Json<Value> {
    Json(json!({"batch_id": batch,
        "phases": {"spellcheck": {"status": "completed", "source": "operator", "pipeline_correlation_id": null,
            "pipeline_id": null, "event_id": null, "processed_count": null, "failed_count": null,
            "at": "2026-11-29T12:05:00.000000Z", "operator": "ann", "reason": "checked by hand"}},
        "processed_pipelines": []}))
}

/// Starts the stand-in and returns its base URL and what it saw.
async fn serve() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/internal/v1/phases/complete", post(mark))
        .route("/internal/v1/batches/{batch}/phases", get(bcs_phases))
        .route("/v1/batches/{batch}/retry-phase", post(retry))
        .route("/v1/batches/{batch}/status", get(bos_status))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn hulectl(url: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    hulectl_at(url, url, token, args).await
}

async fn hulectl_at(
    bos: &str,
    bcs: &str,
    token: Option<&str>,
    args: &[&str],
) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(["--bos-url", bos, "--bcs-url", bcs, "--sim-url", bcs])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("OPERATOR_TOKEN")
        .env_remove("USER");
    if let Some(t) = token {
        c.env("OPERATOR_TOKEN", t);
    }
    let out = c.output().await.expect("hulectl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn mark_sends_the_token_and_shows_the_record() {
    let (url, seen) = serve().await;
    let (code, out, err) = hulectl(
        &url,
        Some(TOKEN),
        &[
            "mark",
            "--batch",
            "b1",
            "--phase",
            "nlp",
            "--not-complete",
            "--reason",
            "bad model",
            "--operator",
            "ops",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "recorded: nlp of batch b1 is now failed (source operator)\n  at         2026-11-29 12:05:00\n  \
         operator   ops\n  reason     bad model\n  the phase will run again the next time a pipeline needs it\n"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (path, auth, body) = &seen[0];
    assert_eq!(path, "/internal/v1/phases/complete");
    assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(
        body,
        &json!({"batch_id": "b1", "phase_name": "nlp", "success": false, "reason": "bad model", "operator": "ops"})
    );
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
}

#[tokio::test]
async fn a_refused_token_is_a_clear_error_without_the_token() {
    let (url, _) = serve().await;
    let wrong = "wrong-token-value-9d1c";
    let (code, out, err) = hulectl(
        &url,
        Some(wrong),
        &[
            "mark",
            "--batch",
            "b1",
            "--phase",
            "spellcheck",
            "--reason",
            "r",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: the conductor answered 401 Unauthorized: unauthorized: invalid token\n  hint: check OPERATOR_TOKEN"),
        "{err}"
    );
    assert!(!err.contains(wrong));
}

#[tokio::test]
async fn no_token_no_request() {
    let (url, seen) = serve().await;
    for args in [
        &["mark", "--batch", "b1", "--phase", "nlp", "--reason", "r"][..],
        &["retry", "--batch", "b1", "--phase", "nlp", "--reason", "r"][..],
    ] {
        let (code, _, err) = hulectl(&url, None, args).await;
        assert_eq!(code, 1);
        assert!(err.contains("OPERATOR_TOKEN is not set"), "{err}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn retry_posts_the_contract_body_and_says_how_to_follow() {
    let (url, seen) = serve().await;
    let (code, out, err) = hulectl(
        &url,
        Some(TOKEN),
        &[
            "retry",
            "--batch",
            "b1",
            "--phase",
            "spellcheck",
            "--reason",
            "texts fixed",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "retry of spellcheck for batch b1 accepted (the essays that failed its latest run)\n\
             correlation id: {RETRY_CORRELATION}\n\
             follow it:      hulectl watch --batch b1 --correlation {RETRY_CORRELATION}\n"
        )
    );
    let (code, _, err) = hulectl(
        &url,
        Some(TOKEN),
        &[
            "retry",
            "--batch",
            "b1",
            "--phase",
            "spellcheck",
            "--essay",
            "b1-e04",
            "--essay",
            "b1-e11",
            "--reason",
            "r",
            "--operator",
            "ann",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "/v1/batches/b1/retry-phase");
    assert_eq!(
        seen[0].2,
        json!({"phase_name": "spellcheck", "reason": "texts fixed"})
    );
    assert_eq!(
        seen[1].2,
        json!({"phase_name": "spellcheck", "reason": "r", "essay_ids": ["b1-e04", "b1-e11"], "operator": "ann"})
    );
}

#[tokio::test]
async fn status_shows_both_views() {
    let (url, _) = serve().await;
    let (code, out, err) = hulectl(&url, None, &["status", "--batch", "b1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  spellcheck  completed_with_failures   2   1       completed          operator  2026-11-29 12:05:00"),
        "{out}"
    );
    assert!(out.contains("  essays           3 (ENG5)"), "{out}");
    assert!(out.contains("by ann, \"checked by hand\""), "{out}");

    // The orchestrator does not know the batch, the conductor has a record: still an answer.
    let (code, out, _) = hulectl(&url, None, &["status", "--batch", "unknown", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["orchestrator"], Value::Null);
    assert_eq!(v["conductor"]["phases"]["spellcheck"]["source"], "operator");
}

#[tokio::test]
async fn status_fails_when_a_service_is_down() {
    let (url, _) = serve().await;
    let (code, out, _) = hulectl_at(
        "http://127.0.0.1:1",
        &url,
        None,
        &["status", "--batch", "b1"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "could not read its status: cannot reach the orchestrator at http://127.0.0.1:1/"
        ),
        "{out}"
    );
    assert!(
        out.contains("operator"),
        "the conductor's view is still shown: {out}"
    );
}
