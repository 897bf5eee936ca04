//! Configuration from environment variables: defaults → environment → validation.
//!
//! [`BcsSettings::from_env`] reads every variable listed by [`settings_docs`] (the source of
//! `--help` and of the README table) and loads the pipeline definitions, so a bad value or a
//! bad `PIPELINES_FILE` stops start-up with a [`ConfigError`] naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use huleedu_kafka::KafkaSettings;
use huleedu_service::settings::{CommonSettings, ConfigError, Env, Secret, SettingDoc};
use huleedu_store::RedisSettings;

use crate::pipelines::Definitions;

/// `client.id` and `dlq.service` of this service.
pub const SERVICE_NAME: &str = "batch-conductor";
/// Default `KAFKA_CONSUMER_GROUP`.
pub const DEFAULT_GROUP: &str = "bcs-event-consumer";
/// Default `REDIS_KEY_PREFIX`.
pub const DEFAULT_KEY_PREFIX: &str = "bcs";
/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:4002";

const DEFAULT_RESOLVE_WAIT_MS: u64 = 5_000;
const DEFAULT_STATE_TTL_DAYS: u64 = 30;
const DEFAULT_DEDUP_TTL_SECS: u64 = 7 * 24 * 3600;

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

impl BcsSettings {
    /// Defaults for a local run, overridden by `env`, validated; loads the pipeline definitions.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let kafka = KafkaSettings::from_env(env, SERVICE_NAME, DEFAULT_GROUP)?;
        let redis = RedisSettings::from_env(env, DEFAULT_KEY_PREFIX)?;
        let common = CommonSettings::from_env(env, DEFAULT_HTTP_ADDR)?;
        let operator_token = env.secret("OPERATOR_TOKEN")?;
        let pipelines_file = env.optional("PIPELINES_FILE").map(PathBuf::from);
        let pipelines = match &pipelines_file {
            None => Definitions::builtin(),
            Some(path) => Definitions::load(path).map_err(|e| {
                ConfigError::new("PIPELINES_FILE", &path.display().to_string(), e.to_string())
            })?,
        };
        let resolve_wait = Duration::from_millis(env.int_in(
            "RESOLVE_WAIT_MS",
            DEFAULT_RESOLVE_WAIT_MS,
            0,
            600_000,
        )?);
        let ttl_days = env.int_in("STATE_TTL_DAYS", DEFAULT_STATE_TTL_DAYS, 1, 3650)?;
        let dedup_ttl = env.secs("DEDUP_TTL_SECS", DEFAULT_DEDUP_TTL_SECS)?;
        Ok(Self {
            kafka,
            redis,
            common,
            operator_token,
            pipelines_file,
            pipelines,
            resolve_wait,
            state_ttl: Duration::from_secs(ttl_days * 24 * 3600),
            dedup_ttl,
        })
    }
}

/// Every environment variable the conductor reads (for `--help` and the docs).
pub fn settings_docs() -> Vec<SettingDoc> {
    let mut docs = KafkaSettings::docs(DEFAULT_GROUP);
    docs.extend(RedisSettings::docs(DEFAULT_KEY_PREFIX));
    docs.extend(CommonSettings::docs(DEFAULT_HTTP_ADDR));
    docs.extend([
        SettingDoc {
            name: "OPERATOR_TOKEN",
            default: "unset: the operator endpoint answers 503 \"operator endpoint disabled\"",
            meaning: "bearer token required by POST /internal/v1/phases/complete; or OPERATOR_TOKEN_FILE: a file holding it",
        },
        SettingDoc {
            name: "PIPELINES_FILE",
            default: "built-in definitions (spellcheck, nlp, cj_assessment, ai_feedback, comprehensive)",
            meaning: "JSON file with phase dependencies and named pipelines, validated at start-up",
        },
        SettingDoc {
            name: "RESOLVE_WAIT_MS",
            default: "5000",
            meaning: "longest a define request waits for its after_pipeline_id before answering 503 (0..600000)",
        },
        SettingDoc {
            name: "STATE_TTL_DAYS",
            default: "30",
            meaning: "days a batch's phase records live after their last change (1..3650)",
        },
        SettingDoc {
            name: "DEDUP_TTL_SECS",
            default: "604800",
            meaning: "seconds a handled event id is remembered, so a redelivery changes nothing",
        },
    ]);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;
    use huleedu_contracts::PhaseName;

    #[test]
    fn defaults_match_the_run_contract() {
        let s = BcsSettings::from_env(&Env::default()).unwrap();
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
        let env = Env::from_pairs([
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("REDIS_KEY_PREFIX", "p"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("OPERATOR_TOKEN", "t0k"),
            ("RESOLVE_WAIT_MS", "250"),
            ("STATE_TTL_DAYS", "2"),
            ("DEDUP_TTL_SECS", "60"),
        ]);
        let s = BcsSettings::from_env(&env).unwrap();
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
            let err = BcsSettings::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
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
        let env = Env::from_pairs([("PIPELINES_FILE", path.display().to_string())]);
        let err = BcsSettings::from_env(&env).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert_eq!(err.variable, "PIPELINES_FILE");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("pipeline `x`"), "{text}");
    }

    #[test]
    fn the_token_never_prints() {
        let s = BcsSettings::from_env(&Env::from_pairs([("OPERATOR_TOKEN", "hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn docs_list_every_variable_read() {
        let names: Vec<&str> = settings_docs().iter().map(|d| d.name).collect();
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
            assert!(names.contains(&var), "{var} missing from settings_docs()");
        }
    }
}
