//! `/healthz` and `/readyz`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The check names every service uses (the keys of `/readyz`'s `checks`).
pub const KAFKA_CONSUMER: &str = "kafka_consumer";
/// See [`KAFKA_CONSUMER`].
pub const BROKER: &str = "broker";
/// See [`KAFKA_CONSUMER`].
pub const REDIS: &str = "redis";

/// One readiness check: a name and an async test that says what is wrong, if anything.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The readiness checks of a service (Kafka assigned, Redis reachable, ...).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

#[derive(Debug, Serialize)]
struct ReadyBody {
    ready: bool,
    checks: serde_json::Map<String, serde_json::Value>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// A check named `name` (services use the named ones below, so that every service calls
    /// the same thing by the same name).
    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
        self
    }

    /// `kafka_consumer`: the service's consumer has joined its group (`joined`, e.g.
    /// `ConsumerStatus::is_joined`).
    pub fn kafka_consumer(self, joined: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.check(KAFKA_CONSUMER, move || {
            let joined = joined();
            async move {
                if joined {
                    Ok(())
                } else {
                    Err("the consumer has not joined its group yet".to_owned())
                }
            }
        })
    }

    /// `broker`: the broker answers; `ping(client)` says why not (e.g. `Producer::ping`).
    pub fn broker<T, F, Fut>(self, client: T, ping: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.check(BROKER, move || ping(client.clone()))
    }

    /// `redis`: Redis answers; `ping(store)` says why not (e.g. `Store::ready`).
    pub fn redis<T, F, Fut>(self, store: T, ping: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.check(REDIS, move || ping(store.clone()))
    }

    /// Whether every check passes now (the `<service>_ready` gauge).
    pub async fn is_ready(&self) -> bool {
        for (_, check) in &self.checks {
            if check().await.is_err() {
                return false;
            }
        }
        true
    }

    /// Run every check: 200 when all pass, else 503; the body lists each check's state.
    pub async fn respond(&self) -> Response {
        let mut checks = serde_json::Map::new();
        let mut ready = true;
        for (name, check) in &self.checks {
            let v = match check().await {
                Ok(()) => serde_json::Value::from("ok"),
                Err(e) => {
                    ready = false;
                    serde_json::Value::from(e)
                }
            };
            checks.insert((*name).to_owned(), v);
        }
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, axum::Json(ReadyBody { ready, checks })).into_response()
    }
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}
