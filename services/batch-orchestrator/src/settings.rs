//! The orchestrator's configuration, from environment variables ([`BosArgs`], one clap argument
//! per variable: name, default, range, meaning), checked into [`BosSettings`].

use std::time::Duration;

use huleedu_kafka::{KafkaArgs, KafkaSettings};
use huleedu_service::settings::{
    int_in, readable_file, CommonArgs, CommonSettings, ConfigError, OperatorArgs, Secret,
    ServiceSettings, MILLIS,
};
use huleedu_store::{RedisArgs, RedisSettings, RetentionArgs};

use crate::decide::Limits;

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:5000";
pub const DEFAULT_GROUP: &str = "batch-orchestrator-consumers";
pub const DEFAULT_PREFIX: &str = "bos";

/// Longest phase and pending-batch time-out accepted: a week.
const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;

/// Every variable BOS reads.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "batch-orchestrator",
    about = "runs HuleEdu essay-processing pipelines phase by phase"
)]
pub struct BosArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    /// base URL of the batch conductor (pipeline resolution), http:// or https://
    #[arg(long, env = "BCS_URL", default_value = "http://127.0.0.1:4002")]
    pub bcs_url: String,
    /// CA certificate(s) in PEM trusted for an https:// BCS_URL, besides the system's [default:
    /// (unset: the system's trust store)]
    #[arg(long, env = "BCS_CA_FILE")]
    pub bcs_ca_file: Option<String>,
    /// time-out of one resolution call; failed calls are retried with backoff
    #[arg(long, env = "BCS_TIMEOUT_MS", default_value_t = 15_000,
        value_parser = int_in::<u64>(MILLIS.0, MILLIS.1))]
    pub bcs_timeout_ms: u64,
    /// a phase without an outcome after this long ends its pipeline failed_critically
    /// (phase_timeout)
    #[arg(long, env = "PHASE_TIMEOUT_SECS", default_value_t = Limits::DEFAULT_PHASE_TIMEOUT_SECS,
        value_parser = int_in::<i64>(1, MAX_TIMEOUT_SECS))]
    pub phase_timeout_secs: i64,
    /// a request for a batch that never becomes ready ends failed_critically (batch_not_ready)
    /// after this long
    #[arg(long, env = "PENDING_BATCH_TIMEOUT_SECS",
        default_value_t = Limits::DEFAULT_PENDING_BATCH_TIMEOUT_SECS,
        value_parser = int_in::<i64>(1, MAX_TIMEOUT_SECS))]
    pub pending_batch_timeout_secs: i64,
    /// requests that may wait behind an active pipeline per batch; more end with queue_full
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = Limits::DEFAULT_QUEUE_CAPACITY,
        value_parser = int_in::<usize>(1, 10_000))]
    pub queue_capacity: usize,
    /// finished pipelines kept per batch for the status endpoint
    #[arg(long, env = "HISTORY_LIMIT", default_value_t = Limits::DEFAULT_HISTORY_LIMIT,
        value_parser = int_in::<usize>(1, 10_000))]
    pub history_limit: usize,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

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

impl ServiceSettings for BosSettings {
    type Args = BosArgs;

    const DEFAULTS: &'static [(&'static str, &'static str)] = &[
        ("KAFKA_CONSUMER_GROUP", DEFAULT_GROUP),
        ("REDIS_KEY_PREFIX", DEFAULT_PREFIX),
        ("HTTP_ADDR", DEFAULT_HTTP_ADDR),
    ];

    fn from_args(args: BosArgs) -> Result<Self, ConfigError> {
        let bcs_url = args.bcs_url;
        if !(bcs_url.starts_with("http://") || bcs_url.starts_with("https://"))
            || reqwest::Url::parse(&bcs_url).is_err()
        {
            return Err(ConfigError::new(
                "BCS_URL",
                &bcs_url,
                "expected an http:// or https:// URL",
            ));
        }
        let bcs_ca = match readable_file("BCS_CA_FILE", args.bcs_ca_file.as_deref())? {
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
        let kafka = KafkaSettings::from_args(&args.kafka, "batch-orchestrator")?;
        let limits = Limits {
            phase_timeout: chrono::Duration::seconds(args.phase_timeout_secs),
            pending_batch_timeout: chrono::Duration::seconds(args.pending_batch_timeout_secs),
            queue_capacity: args.queue_capacity,
            history_limit: args.history_limit,
            max_event_bytes: kafka.max_event_bytes(),
        };
        Ok(Self {
            common: CommonSettings::from_args(&args.common)?,
            kafka,
            redis: RedisSettings::from_args(&args.redis)?,
            bcs_url: bcs_url.trim_end_matches('/').to_owned(),
            bcs_ca,
            bcs_timeout: Duration::from_millis(args.bcs_timeout_ms),
            limits,
            dedup_ttl: args.retention.dedup_ttl(),
            state_ttl: args.retention.state_ttl(),
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
    fn defaults_follow_the_run_contract() {
        let s = BosSettings::from_defaults().unwrap();
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
            let err = BosSettings::from_pairs([(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
    }

    #[test]
    fn every_variable_read_is_documented() {
        let vars = BosSettings::variables();
        let names: Vec<_> = vars.iter().map(|d| d.name.as_str()).collect();
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
