//! Generated input for every route of both services' OpenAPI documents finds no 5xx
//! (issue 6, item 4): random path parameters, methods, bodies (arbitrary bytes and arbitrary
//! JSON, also of the documented shape), with and without the operator token. The routers run
//! without a socket (`oneshot`) over the real test Redis. The only 5xx allowed is the
//! documented 503 of the causal wait (`conductor_lagging`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request};
use axum::Router;
use huleedu_http::probes::Readiness;
use huleedu_it::unique;
use huleedu_service::settings::Secret;
use huleedu_store::Store;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

fn store() -> Store {
    Store::connect(&huleedu_it::redis_settings(&unique("httpfuzz"))).unwrap()
}

fn bos_router() -> (Router, Vec<(String, String)>) {
    let metrics = huleedu_http::metrics::Metrics::new();
    let store = store();
    let core = batch_orchestrator::core::Core {
        store: store.clone(),
        limits: Default::default(),
        dedup_ttl: Duration::from_secs(60),
        state_ttl: Duration::from_secs(60),
        metrics: batch_orchestrator::metrics::BosMetrics::register(&metrics),
        wake_scheduler: Arc::new(tokio::sync::Notify::new()),
        decoded: Default::default(),
    };
    let state = batch_orchestrator::http::HttpState {
        core,
        metrics,
        readiness: Readiness::new(),
        operator_token: Some(Secret::new(TOKEN)),
    };
    // Hardened by the service itself, as it is served.
    let router = batch_orchestrator::http::router(state);
    (
        router,
        routes(&batch_orchestrator::http::openapi_document()),
    )
}

fn bcs_router() -> (Router, Vec<(String, String)>) {
    let config = batch_conductor::api::ApiConfig {
        definitions: Arc::new(batch_conductor::pipelines::Definitions::builtin()),
        operator_token: Some(Secret::new(TOKEN)),
        resolve_wait: Duration::from_millis(50),
        state_ttl: Duration::from_secs(60),
    };
    let router = batch_conductor::api::router(batch_conductor::api::AppState::new(store(), config));
    (router, routes(&batch_conductor::api::openapi_document()))
}

/// (method, path template) of every operation in an OpenAPI document.
fn routes(doc: &utoipa::openapi::OpenApi) -> Vec<(String, String)> {
    let v = serde_json::to_value(doc).unwrap();
    let mut out = Vec::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(out.len() >= 5, "the document lists the routes: {out:?}");
    out
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,12}".boxed(),
        ".{0,24}".boxed(),
        Just("spellcheck".to_owned()).boxed(),
        Just("0199a7c0-0000-4000-8000-000000000005".to_owned()).boxed(),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        arb_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(arb_text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies of the documented shapes with arbitrary values, plus arbitrary JSON and bytes.
fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (arb_text(), arb_text(), arb_json(), any::<bool>(), arb_json()).prop_map(|(a, b, x, flag, y)| {
        let v = match a.len() % 4 {
            0 => json!({"batch_id": a, "requested_pipeline": b, "correlation_id": x, "after_pipeline_id": y}),
            1 => json!({"batch_id": a, "phase_name": b, "success": flag, "reason": x, "operator": y}),
            2 => json!({"phase_name": b, "essay_ids": x, "reason": a}),
            _ => json!({"batch_id": a, "requested_pipeline": "nlp", "correlation_id": "c"}),
        };
        serde_json::to_vec(&v).unwrap()
    });
    prop_oneof![
        shaped,
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..256),
        Just(Vec::new()),
    ]
}

fn arb_method() -> impl Strategy<Value = Option<Method>> {
    prop_oneof![
        4 => Just(None), // the documented method
        1 => Just(Some(Method::GET)),
        1 => Just(Some(Method::POST)),
        1 => Just(Some(Method::DELETE)),
    ]
}

fn request(method: Method, path: &str, body: Vec<u8>, auth: u8, json_ct: bool) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if json_ct {
        b = b.header("content-type", "application/json");
    }
    match auth % 3 {
        0 => b = b.header("authorization", format!("Bearer {TOKEN}")),
        1 => b = b.header("authorization", "Bearer nope"),
        _ => {}
    }
    b.body(Body::from(body)).unwrap()
}

fn fill(template: &str, param: &str) -> String {
    let enc: String = param
        .bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    let enc = if enc.is_empty() { "x".to_owned() } else { enc };
    template.replace("{batch_id}", &enc)
}

/// One generated call.
struct Call {
    idx: usize,
    method: Option<Method>,
    param: String,
    body: Vec<u8>,
    auth: u8,
    json_ct: bool,
}

fn run(router: &Router, routes: &[(String, String)], call: Call) -> Result<(), TestCaseError> {
    let Call {
        idx,
        method,
        param,
        body,
        auth,
        json_ct,
    } = call;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (m, template) = &routes[idx % routes.len()];
    let method = method.unwrap_or_else(|| m.parse().unwrap());
    let path = fill(template, &param);
    let resp = rt
        .block_on(
            router
                .clone()
                .oneshot(request(method.clone(), &path, body, auth, json_ct)),
        )
        .unwrap();
    let status = resp.status();
    let bytes = rt.block_on(to_bytes(resp.into_body(), 1 << 20)).unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_client_error() {
        prop_assert!(
            body.get("error").is_some(),
            "{method} {path}: {status} without a JSON error body: {bytes:?}"
        );
    }
    let allowed_503 = status.as_u16() == 503 && body["error"] == "conductor_lagging";
    prop_assert!(
        !status.is_server_error() || allowed_503,
        "{method} {path} answered {status}: {body}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn orchestrator_routes_answer_no_5xx(idx in 0usize..64, method in arb_method(), param in arb_text(), body in arb_body(), auth in any::<u8>(), json_ct in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (router, routes) = { let _g = rt.enter(); bos_router() };
        drop(rt);
        run(&router, &routes, Call { idx, method, param, body, auth, json_ct })?;
    }

    #[test]
    fn conductor_routes_answer_no_5xx(idx in 0usize..64, method in arb_method(), param in arb_text(), body in arb_body(), auth in any::<u8>(), json_ct in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (router, routes) = { let _g = rt.enter(); bcs_router() };
        drop(rt);
        run(&router, &routes, Call { idx, method, param, body, auth, json_ct })?;
    }
}
