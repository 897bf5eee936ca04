//! Configuration from environment variables: [`BcsArgs`] declares every variable the conductor
//! reads (one clap argument each: name, default, range, meaning; the source of `--help` and of
//! the documentation tables), and [`BcsSettings`] checks them and loads the pipeline
//! definitions, so a bad value or a bad `PIPELINES_FILE` stops start-up with a [`ConfigError`]
//! naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use huleedu_kafka::{KafkaArgs, KafkaSettings};
use huleedu_service::settings::{
    int_in, CommonArgs, CommonSettings, ConfigError, OperatorArgs, Secret, ServiceSettings,
};
use huleedu_store::{RedisArgs, RedisSettings, RetentionArgs};

use crate::pipelines::Definitions;

/// `client.id` and `dlq.service` of this service.
pub const SERVICE_NAME: &str = "batch-conductor";
/// Default `KAFKA_CONSUMER_GROUP`.
pub const DEFAULT_GROUP: &str = "bcs-event-consumer";
/// Default `REDIS_KEY_PREFIX`.
pub const DEFAULT_KEY_PREFIX: &str = "bcs";
/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:4002";

/// Every variable the conductor reads.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "batch-conductor",
    about = "Batch Conductor Service: records batch-level phase completion from events, \
             resolves pipelines with causal pruning, routes failed essays to the DLQ, offers \
             operator marks"
)]
pub struct BcsArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
    /// JSON file with phase dependencies and named pipelines, validated at start-up [default:
    /// built-in definitions (spellcheck, nlp, cj_assessment, ai_feedback, comprehensive)]
    #[arg(long, env = "PIPELINES_FILE")]
    pub pipelines_file: Option<PathBuf>,
    /// longest a define request waits for its after_pipeline_id before answering 503
    /// (0..600000)
    #[arg(long, env = "RESOLVE_WAIT_MS", default_value_t = 5_000,
        value_parser = int_in::<u64>(0, 600_000))]
    pub resolve_wait_ms: u64,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// Everything the conductor is configured with.
#[derive(Debug, Clone)]
pub struct BcsSettings {
    /// Broker, consumer group, topic partitions (`KAFKA_*`, `TOPIC_*`).
    pub kafka: KafkaSettings,
    /// `REDIS_URL`, `REDIS_KEY_PREFIX`.
    pub redis: RedisSettings,
    /// `HTTP_ADDR`, `LOG_FORMAT`.
    pub common: CommonSettings,
    /// `OPERATOR_TOKEN`: bearer token of the operator endpoint; `None` disables it (503).
    pub operator_token: Option<Secret>,
    /// `PIPELINES_FILE`, when set.
    pub pipelines_file: Option<PathBuf>,
    /// The loaded and validated definitions (from the file or built in).
    pub pipelines: Definitions,
    /// `RESOLVE_WAIT_MS`: longest a define request waits for its `after_pipeline_id`.
    pub resolve_wait: Duration,
    /// `STATE_TTL_DAYS`: lifetime of a batch's phase records, refreshed on every write.
    pub state_ttl: Duration,
    /// `DEDUP_TTL_SECS`: how long a handled event id is remembered.
    pub dedup_ttl: Duration,
}

impl ServiceSettings for BcsSettings {
    type Args = BcsArgs;

    const DEFAULTS: &'static [(&'static str, &'static str)] = &[
        ("KAFKA_CONSUMER_GROUP", DEFAULT_GROUP),
        ("REDIS_KEY_PREFIX", DEFAULT_KEY_PREFIX),
        ("HTTP_ADDR", DEFAULT_HTTP_ADDR),
    ];

    /// Checks the variables and loads the pipeline definitions.
    fn from_args(args: BcsArgs) -> Result<Self, ConfigError> {
        let kafka = KafkaSettings::from_args(&args.kafka, SERVICE_NAME)?;
        let redis = RedisSettings::from_args(&args.redis)?;
        let common = CommonSettings::from_args(&args.common)?;
        let operator_token = args.operator.token()?;
        let pipelines = match &args.pipelines_file {
            None => Definitions::builtin(),
            Some(path) => Definitions::load(path).map_err(|e| {
                ConfigError::new("PIPELINES_FILE", &path.display().to_string(), e.to_string())
            })?,
        };
        Ok(Self {
            kafka,
            redis,
            common,
            operator_token,
            pipelines_file: args.pipelines_file,
            pipelines,
            resolve_wait: Duration::from_millis(args.resolve_wait_ms),
            state_ttl: args.retention.state_ttl(),
            dedup_ttl: args.retention.dedup_ttl(),
        })
    }

    fn common(&self) -> &CommonSettings {
        &self.common
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huleedu_contracts::PhaseName;

    #[test]
    fn defaults_match_the_run_contract() {
        let s = BcsSettings::from_defaults().unwrap();
        assert_eq!(s.kafka.consumer_group, "bcs-event-consumer");
        assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.redis.key_prefix, "bcs");
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(s.common.http_addr.to_string(), "0.0.0.0:4002");
        assert!(s.operator_token.is_none());
        assert!(s.pipelines_file.is_none());
        assert_eq!(s.resolve_wait, Duration::from_millis(5000));
        assert_eq!(s.state_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(s.dedup_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(
            s.pipelines.pipeline("comprehensive").unwrap(),
            &[
                PhaseName::Spellcheck,
                PhaseName::Nlp,
                PhaseName::CjAssessment,
                PhaseName::AiFeedback
            ]
        );
    }

    #[test]
    fn overrides_are_read() {
        let s = BcsSettings::from_pairs([
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("REDIS_KEY_PREFIX", "p"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("OPERATOR_TOKEN", "t0k"),
            ("RESOLVE_WAIT_MS", "250"),
            ("STATE_TTL_DAYS", "2"),
            ("DEDUP_TTL_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(s.kafka.consumer_group, "g");
        assert_eq!(s.redis.key_prefix, "p");
        assert_eq!(s.common.http_addr.port(), 0);
        assert_eq!(s.operator_token.unwrap().expose(), "t0k");
        assert_eq!(s.resolve_wait, Duration::from_millis(250));
        assert_eq!(s.state_ttl, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(s.dedup_ttl, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("RESOLVE_WAIT_MS", "soon"),
            ("RESOLVE_WAIT_MS", "-1"),
            ("STATE_TTL_DAYS", "0"),
            ("DEDUP_TTL_SECS", "x"),
            ("HTTP_ADDR", "localhost"),
            ("REDIS_URL", "http://x"),
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka"),
            ("LOG_FORMAT", "xml"),
            ("PIPELINES_FILE", "/nonexistent/bcs-pipelines.json"),
        ] {
            let err = BcsSettings::from_pairs([(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
    }

    #[test]
    fn a_bad_pipelines_file_is_refused_naming_file_and_entry() {
        let path = std::env::temp_dir().join(format!("bcs-bad-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            r#"{"phases":[{"name":"spellcheck"}],"pipelines":[{"name":"x","phases":[]}]}"#,
        )
        .unwrap();
        let err =
            BcsSettings::from_pairs([("PIPELINES_FILE", &path.display().to_string())]).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert_eq!(err.variable, "PIPELINES_FILE");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("pipeline `x`"), "{text}");
    }

    #[test]
    fn the_token_never_prints() {
        let s = BcsSettings::from_pairs([("OPERATOR_TOKEN", "hunter2")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn docs_list_every_variable_read() {
        let vars = BcsSettings::variables();
        let names: Vec<&str> = vars.iter().map(|d| d.name.as_str()).collect();
        for var in [
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_CONSUMER_GROUP",
            "TOPIC_PARTITIONS",
            "REDIS_URL",
            "REDIS_KEY_PREFIX",
            "HTTP_ADDR",
            "LOG_FORMAT",
            "OPERATOR_TOKEN",
            "PIPELINES_FILE",
            "RESOLVE_WAIT_MS",
            "STATE_TTL_DAYS",
            "DEDUP_TTL_SECS",
        ] {
            assert!(
                names.contains(&var),
                "{var} missing from BcsSettings::variables()"
            );
        }
    }
}
