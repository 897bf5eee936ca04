//! The orchestrator's configuration, from environment variables.

use std::time::Duration;

use huleedu_kafka::KafkaSettings;
use huleedu_service::settings::{CommonSettings, ConfigError, Env, Secret, SettingDoc};
use huleedu_store::RedisSettings;

use crate::decide::Limits;

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:5000";
pub const DEFAULT_GROUP: &str = "batch-orchestrator-consumers";
pub const DEFAULT_PREFIX: &str = "bos";

/// Everything BOS reads at start-up.
#[derive(Debug, Clone)]
pub struct BosSettings {
    pub common: CommonSettings,
    pub kafka: KafkaSettings,
    pub redis: RedisSettings,
    /// `BCS_URL`: base URL of the conductor.
    pub bcs_url: String,
    /// `BCS_CA_FILE`: CA certificate(s) (PEM) trusted for an `https://` conductor, besides the
    /// system's trust store.
    pub bcs_ca: Vec<reqwest::Certificate>,
    /// `BCS_TIMEOUT_MS`: time-out of one resolution call (the conductor may wait up to its
    /// `RESOLVE_WAIT_MS` for causal consistency, so keep this above that).
    pub bcs_timeout: Duration,
    pub limits: Limits,
    /// `DEDUP_TTL_SECS`: how long a handled event id is remembered.
    pub dedup_ttl: Duration,
    /// `STATE_TTL_DAYS`: batch state expires this long after its last change.
    pub state_ttl: Duration,
    /// `OPERATOR_TOKEN`: bearer token of the operator endpoints; disabled when unset.
    pub operator_token: Option<Secret>,
}

impl BosSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bcs_url = env.string("BCS_URL", "http://127.0.0.1:4002");
        if !(bcs_url.starts_with("http://") || bcs_url.starts_with("https://"))
            || reqwest::Url::parse(&bcs_url).is_err()
        {
            return Err(ConfigError::new(
                "BCS_URL",
                &bcs_url,
                "expected an http:// or https:// URL",
            ));
        }
        let bcs_ca = match env.file("BCS_CA_FILE")? {
            None => Vec::new(),
            Some(path) => {
                let shown = path.display().to_string();
                if !bcs_url.starts_with("https://") {
                    return Err(ConfigError::new(
                        "BCS_CA_FILE",
                        &shown,
                        "only used with an https:// BCS_URL",
                    ));
                }
                let pem = std::fs::read(&path).map_err(|e| {
                    ConfigError::new("BCS_CA_FILE", &shown, format!("cannot read the file: {e}"))
                })?;
                match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => certs,
                    Ok(_) => {
                        return Err(ConfigError::new(
                            "BCS_CA_FILE",
                            &shown,
                            "no PEM certificate in the file",
                        ))
                    }
                    Err(e) => {
                        return Err(ConfigError::new(
                            "BCS_CA_FILE",
                            &shown,
                            format!("not PEM certificates: {e}"),
                        ))
                    }
                }
            }
        };
        let limits = Limits {
            phase_timeout: chrono::Duration::seconds(env.int_in(
                "PHASE_TIMEOUT_SECS",
                1800i64,
                1,
                7 * 24 * 3600,
            )?),
            pending_batch_timeout: chrono::Duration::seconds(env.int_in(
                "PENDING_BATCH_TIMEOUT_SECS",
                600i64,
                1,
                7 * 24 * 3600,
            )?),
            queue_capacity: env.int_in("QUEUE_CAPACITY", 16usize, 1, 10_000)?,
            history_limit: env.int_in("HISTORY_LIMIT", 50usize, 1, 10_000)?,
        };
        Ok(Self {
            common: CommonSettings::from_env(env, DEFAULT_HTTP_ADDR)?,
            kafka: KafkaSettings::from_env(env, "batch-orchestrator", DEFAULT_GROUP)?,
            redis: RedisSettings::from_env(env, DEFAULT_PREFIX)?,
            bcs_url: bcs_url.trim_end_matches('/').to_owned(),
            bcs_ca,
            bcs_timeout: env.millis("BCS_TIMEOUT_MS", 15_000)?,
            limits,
            dedup_ttl: env.secs("DEDUP_TTL_SECS", 7 * 24 * 3600)?,
            state_ttl: Duration::from_secs(
                24 * 3600 * env.int_in("STATE_TTL_DAYS", 30u64, 1, 3650)?,
            ),
            operator_token: env.secret("OPERATOR_TOKEN")?,
        })
    }
}

/// Every variable BOS reads (for `--help` and the configuration docs).
pub fn settings_docs() -> Vec<SettingDoc> {
    let mut docs = Vec::new();
    docs.extend(KafkaSettings::docs(DEFAULT_GROUP));
    docs.extend(RedisSettings::docs(DEFAULT_PREFIX));
    docs.extend(CommonSettings::docs(DEFAULT_HTTP_ADDR));
    docs.extend([
        SettingDoc { name: "BCS_URL", default: "http://127.0.0.1:4002", meaning: "base URL of the batch conductor (pipeline resolution), http:// or https://" },
        SettingDoc { name: "BCS_CA_FILE", default: "(unset: the system's trust store)", meaning: "CA certificate(s) in PEM trusted for an https:// BCS_URL, besides the system's" },
        SettingDoc { name: "BCS_TIMEOUT_MS", default: "15000", meaning: "time-out of one resolution call; failed calls are retried with backoff" },
        SettingDoc { name: "PHASE_TIMEOUT_SECS", default: "1800", meaning: "a phase without an outcome after this long ends its pipeline failed_critically (phase_timeout)" },
        SettingDoc { name: "PENDING_BATCH_TIMEOUT_SECS", default: "600", meaning: "a request for a batch that never becomes ready ends failed_critically (batch_not_ready) after this long" },
        SettingDoc { name: "QUEUE_CAPACITY", default: "16", meaning: "requests that may wait behind an active pipeline per batch; more end with queue_full" },
        SettingDoc { name: "HISTORY_LIMIT", default: "50", meaning: "finished pipelines kept per batch for the status endpoint" },
        SettingDoc { name: "DEDUP_TTL_SECS", default: "604800", meaning: "how long handled event ids are remembered for de-duplication" },
        SettingDoc { name: "STATE_TTL_DAYS", default: "30", meaning: "batch state expires this many days after its last change" },
        SettingDoc { name: "OPERATOR_TOKEN", default: "(unset: operator endpoints answer 503)", meaning: "bearer token for the operator endpoints; or OPERATOR_TOKEN_FILE: a file holding it" },
    ]);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_run_contract() {
        let s = BosSettings::from_env(&Env::default()).unwrap();
        assert_eq!(s.common.http_addr.port(), 5000);
        assert_eq!(s.kafka.consumer_group, DEFAULT_GROUP);
        assert_eq!(s.redis.key_prefix, "bos");
        assert_eq!(s.bcs_url, "http://127.0.0.1:4002");
        assert_eq!(s.limits.phase_timeout.num_seconds(), 1800);
        assert_eq!(s.limits.pending_batch_timeout.num_seconds(), 600);
        assert_eq!(s.limits.queue_capacity, 16);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("BCS_URL", "bcs:4002"),
            ("PHASE_TIMEOUT_SECS", "0"),
            ("PENDING_BATCH_TIMEOUT_SECS", "ten"),
            ("QUEUE_CAPACITY", "-1"),
            ("HTTP_ADDR", "nowhere"),
        ] {
            let err = BosSettings::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
    }

    #[test]
    fn every_variable_read_is_documented() {
        let names: Vec<_> = settings_docs().iter().map(|d| d.name).collect();
        for v in [
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "REDIS_KEY_PREFIX",
            "HTTP_ADDR",
            "KAFKA_CONSUMER_GROUP",
            "TOPIC_PARTITIONS",
            "BCS_URL",
            "PHASE_TIMEOUT_SECS",
            "PENDING_BATCH_TIMEOUT_SECS",
            "LOG_FORMAT",
        ] {
            assert!(names.contains(&v), "{v} missing from docs");
        }
    }
}
