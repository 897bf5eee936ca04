//! Configuration from environment variables: [`ConsoleArgs`] declares every variable the
//! console reads (the source of `--help` and of the documentation tables); [`ConsoleSettings`]
//! is made from them. A bad value stops start-up with a message naming the variable.

use huleedu_kafka::{KafkaArgs, KafkaSettings};
use huleedu_service::settings::{
    CommonArgs, CommonSettings, ConfigError, OperatorArgs, Secret, ServiceSettings,
};

/// `client.id` of the console's Kafka clients.
pub const SERVICE_NAME: &str = "pipeline-console";
/// Default `HTTP_ADDR`: this host only (the console acts on the operator's behalf).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// Every variable the console reads.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "pipeline-console",
    about = "operator console in the browser: batches, pipeline timelines, dead letters, and the \
             operator actions"
)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub own: OwnArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// The console's own variables.
#[derive(Debug, Clone, clap::Args)]
pub struct OwnArgs {
    /// base URL of the orchestrator (batches, status, retries)
    #[arg(long, env = "BOS_URL", default_value = "http://127.0.0.1:5000")]
    pub bos_url: String,
    /// base URL of the conductor (phase records, marks, re-drives)
    #[arg(long, env = "BCS_URL", default_value = "http://127.0.0.1:4002")]
    pub bcs_url: String,
}

/// Everything the console is configured with.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Broker (`KAFKA_*`): dead letters are read from it, pipeline requests published to it.
    pub kafka: KafkaSettings,
    /// `HTTP_ADDR`, `LOG_FORMAT`, `HTTP_TLS_*`.
    pub common: CommonSettings,
    /// `BOS_URL`, without a trailing slash.
    pub bos_url: String,
    /// `BCS_URL`, without a trailing slash.
    pub bcs_url: String,
    /// `OPERATOR_TOKEN`: what the console checks the typed token against before it publishes a
    /// pipeline request itself (`None`: that action is disabled). Marks, retries and re-drives
    /// are checked by the orchestrator and the conductor.
    pub operator_token: Option<Secret>,
}

fn base_url(name: &str, raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    let ok = reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::new(
            name,
            raw,
            "expected an http:// or https:// base URL, e.g. http://127.0.0.1:5000",
        ))
    }
}

impl ServiceSettings for ConsoleSettings {
    type Args = ConsoleArgs;

    const DEFAULTS: &'static [(&'static str, &'static str)] = &[
        ("KAFKA_CONSUMER_GROUP", "pipeline-console"),
        ("HTTP_ADDR", DEFAULT_HTTP_ADDR),
    ];

    fn from_args(args: ConsoleArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            kafka: KafkaSettings::from_args(&args.kafka, SERVICE_NAME)?,
            common: CommonSettings::from_args(&args.common)?,
            bos_url: base_url("BOS_URL", &args.own.bos_url)?,
            bcs_url: base_url("BCS_URL", &args.own.bcs_url)?,
            operator_token: args.operator.token()?,
        })
    }

    fn common(&self) -> &CommonSettings {
        &self.common
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_this_host_only() {
        let s =
            ConsoleSettings::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")]).unwrap();
        assert_eq!(s.common.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(s.bos_url, "http://127.0.0.1:5000");
        assert_eq!(s.bcs_url, "http://127.0.0.1:4002");
        assert!(s.operator_token.is_none());
    }

    #[test]
    fn a_bad_url_names_the_variable() {
        let e = ConsoleSettings::from_pairs([("BOS_URL", "localhost:5000")]).unwrap_err();
        assert!(e.to_string().contains("BOS_URL"), "{e}");
        let s = ConsoleSettings::from_pairs([("BCS_URL", "https://bcs.internal:4002/")]).unwrap();
        assert_eq!(s.bcs_url, "https://bcs.internal:4002");
    }
}
