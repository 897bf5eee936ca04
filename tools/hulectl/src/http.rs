//! The services' HTTP APIs: orchestrator (BOS), conductor (BCS) and the reference worker
//! (els-simulator). Errors say which service, what it answered (its JSON `error` and `detail`)
//! and, where it helps, what to do.

use anyhow::Context as _;
use std::fmt;
use std::time::Duration;

use huleedu_service::settings::{args_from_pairs, process_vars, OperatorArgs};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::cli::Global;

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Orchestrator,
    Conductor,
    Simulator,
}

impl Service {
    /// `the orchestrator`, ...
    pub fn name(self) -> &'static str {
        match self {
            Service::Orchestrator => "the orchestrator",
            Service::Conductor => "the conductor",
            Service::Simulator => "the simulator",
        }
    }

    /// The option that sets its URL.
    pub fn option(self) -> &'static str {
        match self {
            Service::Orchestrator => "--bos-url or BOS_URL",
            Service::Conductor => "--bcs-url or BCS_URL",
            Service::Simulator => "--sim-url or SIM_URL",
        }
    }
}

/// The operator token, from `OPERATOR_TOKEN` (or the file `OPERATOR_TOKEN_FILE` names) only.
/// Never printed.
#[derive(Clone)]
pub struct OperatorToken(String);

impl fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorToken(<redacted>)")
    }
}

impl OperatorToken {
    /// The name of the environment variable.
    pub const VAR: &'static str = "OPERATOR_TOKEN";

    /// From a raw value (`None` or blank: an error that says what to set).
    pub fn from_value(value: Option<String>) -> anyhow::Result<Self> {
        match value.map(|v| v.trim().to_owned()) {
            Some(v) if !v.is_empty() => Ok(OperatorToken(v)),
            _ => anyhow::bail!(
                "{} is not set: export the operator token the services were started with \
                 (it is read from the environment only, never from a flag)",
                Self::VAR
            ),
        }
    }

    /// From the environment: `OPERATOR_TOKEN`, or the file named by `OPERATOR_TOKEN_FILE`.
    pub fn from_env() -> anyhow::Result<Self> {
        let args: OperatorArgs = args_from_pairs(process_vars())?;
        Self::from_value(args.token()?.map(|s| s.expose().to_owned()))
    }
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No answer (connection refused, time-out, ...).
    Unreachable {
        service: Service,
        url: String,
        reason: String,
    },
    /// A non-2xx answer.
    Status {
        service: Service,
        status: u16,
        /// The server's `error` and `detail`, or the raw body.
        message: String,
        /// What to do about it, when there is something obvious.
        hint: Option<String>,
    },
    /// A 2xx answer that is not JSON.
    BadAnswer { service: Service, reason: String },
    /// A 2xx answer in JSON that is not the document this tool expects (another version of
    /// the service?).
    UnexpectedAnswer { service: Service, reason: String },
}

impl HttpError {
    /// The HTTP status, for answers.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Unreachable {
                service,
                url,
                reason,
            } => write!(
                f,
                "cannot reach {} at {url} ({reason}); is it running? (set {})",
                service.name(),
                service.option()
            ),
            HttpError::Status {
                service,
                status,
                message,
                hint,
            } => {
                write!(f, "{} answered {status}", service.name())?;
                if let Some(reason) = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    write!(f, " {reason}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if let Some(hint) = hint {
                    write!(f, "\n  hint: {hint}")?;
                }
                Ok(())
            }
            HttpError::BadAnswer { service, reason } => {
                write!(
                    f,
                    "{} sent an answer that is not JSON: {reason}",
                    service.name()
                )
            }
            HttpError::UnexpectedAnswer { service, reason } => {
                write!(
                    f,
                    "{} sent an answer hulectl does not understand ({reason}); are both of the \
                     same version?",
                    service.name()
                )
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// The message of an error body: `error: detail` from `{"error", "detail"}`, else the body
/// itself (shortened).
pub fn error_message(body: &str) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v.get("error").is_some() || v.get("detail").is_some() => {
            let parts: Vec<String> = ["error", "detail"]
                .iter()
                .filter_map(|k| v.get(*k).map(text))
                .filter(|s| !s.is_empty())
                .collect();
            parts.join(": ")
        }
        _ => {
            let t = body.trim();
            if t.chars().count() > 300 {
                format!("{}…", t.chars().take(300).collect::<String>())
            } else {
                t.to_owned()
            }
        }
    }
}

/// What to do about an error answer of an authenticated (operator) call.
pub fn operator_hint(service: Service, status: u16, body: &str) -> Option<String> {
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    match (status, code.as_str()) {
        (409, "already_redriven") => {
            let record = serde_json::from_str::<Value>(body).ok()?["detail"]["record"].clone();
            let f = |k: &str| {
                record.get(k).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            Some(format!(
                "it was re-driven at {} by {} ({}: {}); a record is re-driven at most once",
                f("at").unwrap_or_else(|| "?".into()),
                f("operator").unwrap_or_else(|| "?".into()),
                f("state").unwrap_or_else(|| "?".into()),
                f("reason").unwrap_or_default(),
            ))
        }
        (401, _) => Some(format!(
            "check {}: it must equal the OPERATOR_TOKEN {} was started with",
            OperatorToken::VAR,
            service.name()
        )),
        (503, "operator_endpoint_disabled") => Some(format!(
            "{} has no OPERATOR_TOKEN configured; restart it with one to enable operator calls",
            service.name()
        )),
        (503, _) => Some("the service is temporarily unavailable; retry shortly".to_owned()),
        _ => None,
    }
}

/// The innermost cause of an error (e.g. "Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A client for the three services.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    pub bos: String,
    pub bcs: String,
    pub sim: String,
}

impl Api {
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("hulectl/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &global.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("--ca-file {}: cannot read it", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-file {}: not PEM certificates", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "--ca-file {}: no PEM certificate in it",
                path.display()
            );
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build()?;
        Ok(Api {
            http,
            bos: global.bos_url.clone(),
            bcs: global.bcs_url.clone(),
            sim: global.sim_url.clone(),
        })
    }

    /// The full URL of `path` on `service`.
    pub fn url(&self, service: Service, path: &str) -> String {
        let base = match service {
            Service::Orchestrator => &self.bos,
            Service::Conductor => &self.bcs,
            Service::Simulator => &self.sim,
        };
        format!("{base}{path}")
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        service: Service,
        url: String,
        req: reqwest::RequestBuilder,
        authenticated: bool,
    ) -> Result<T, HttpError> {
        let resp = req.send().await.map_err(|e| HttpError::Unreachable {
            service,
            url: url.clone(),
            reason: root_cause(&e),
        })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| HttpError::Unreachable {
            service,
            url: url.clone(),
            reason: root_cause(&e),
        })?;
        if !status.is_success() {
            return Err(HttpError::Status {
                service,
                status: status.as_u16(),
                message: error_message(&body),
                hint: if authenticated {
                    operator_hint(service, status.as_u16(), &body)
                } else {
                    None
                },
            });
        }
        serde_json::from_str(&body).map_err(|e| {
            let reason = e.to_string();
            if e.is_data() {
                HttpError::UnexpectedAnswer { service, reason }
            } else {
                HttpError::BadAnswer { service, reason }
            }
        })
    }

    /// `GET` a JSON document: its contract type, or [`Value`] to read it leniently.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
    ) -> Result<T, HttpError> {
        let url = self.url(service, path);
        let req = self.http.get(&url);
        self.answer(service, url, req, false).await
    }

    /// `POST` a JSON body, with the operator token when given; the answer as `T` (see
    /// [`Api::get`]).
    pub async fn post<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        body: &impl Serialize,
        token: Option<&OperatorToken>,
    ) -> Result<T, HttpError> {
        let url = self.url(service, path);
        let mut req = self.http.post(&url).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(&t.0);
        }
        self.answer(service, url, req, token.is_some()).await
    }

    /// Whether `GET /readyz` answers 200.
    pub async fn ready(&self, service: Service) -> Result<bool, HttpError> {
        let url = self.url(service, "/readyz");
        match self.http.get(&url).send().await {
            Ok(r) => Ok(r.status().is_success()),
            Err(e) => Err(HttpError::Unreachable {
                service,
                url,
                reason: root_cause(&e),
            }),
        }
    }
}

/// A path segment, percent-encoded (batch ids may hold any character).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(r#"{"error":"unauthorized","detail":"invalid token"}"#),
            "unauthorized: invalid token"
        );
        assert_eq!(
            error_message(r#"{"error":"newer_record","detail":{"message":"m"}}"#),
            r#"newer_record: {"message":"m"}"#
        );
        assert_eq!(error_message("  Bad Gateway \n"), "Bad Gateway");
        assert_eq!(error_message(&"x".repeat(400)).chars().count(), 301);
    }

    #[test]
    fn status_errors_read_well() {
        let body = r#"{"error":"unauthorized","detail":"invalid token"}"#;
        let e = HttpError::Status {
            service: Service::Conductor,
            status: 401,
            message: error_message(body),
            hint: operator_hint(Service::Conductor, 401, body),
        };
        assert_eq!(
            e.to_string(),
            "the conductor answered 401 Unauthorized: unauthorized: invalid token\n  \
             hint: check OPERATOR_TOKEN: it must equal the OPERATOR_TOKEN the conductor was started with"
        );
        let body = r#"{"error":"operator_endpoint_disabled","detail":"operator endpoint disabled: set OPERATOR_TOKEN to enable it"}"#;
        assert!(operator_hint(Service::Orchestrator, 503, body)
            .unwrap()
            .contains("the orchestrator has no OPERATOR_TOKEN configured"));
        assert_eq!(operator_hint(Service::Conductor, 422, "{}"), None);
        let body = r#"{"error":"already_redriven","detail":{"message":"m","record":{"state":"published","operator":"ann","reason":"fixed","at":"2026-12-02T03:00:00Z"}}}"#;
        assert_eq!(
            operator_hint(Service::Conductor, 409, body).unwrap(),
            "it was re-driven at 2026-12-02T03:00:00Z by ann (published: fixed); a record is re-driven at most once"
        );
    }

    #[test]
    fn unreachable_names_the_option() {
        let e = HttpError::Unreachable {
            service: Service::Orchestrator,
            url: "http://127.0.0.1:5000/v1/batches/b/status".into(),
            reason: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the orchestrator at http://127.0.0.1:5000/v1/batches/b/status \
             (Connection refused (os error 111)); is it running? (set --bos-url or BOS_URL)"
        );
    }

    #[test]
    fn answers_that_cannot_be_read_say_why() {
        let e = HttpError::UnexpectedAnswer {
            service: Service::Orchestrator,
            reason: "missing field `known` at line 1 column 17".into(),
        };
        assert_eq!(
            e.to_string(),
            "the orchestrator sent an answer hulectl does not understand (missing field `known` \
             at line 1 column 17); are both of the same version?"
        );
    }

    #[test]
    fn token_is_never_shown() {
        let t = OperatorToken::from_value(Some("s3cret".into())).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        let err = OperatorToken::from_value(Some("  ".into())).unwrap_err();
        assert!(err.to_string().starts_with("OPERATOR_TOKEN is not set"));
        assert!(OperatorToken::from_value(None).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("demo-1_a.b~"), "demo-1_a.b~");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
