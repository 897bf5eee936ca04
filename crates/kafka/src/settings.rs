//! Kafka settings from the environment and the client configurations built from them.

use std::time::Duration;

use huleedu_service::settings::{ConfigError, Env, SettingDoc};
use rdkafka::ClientConfig;

use crate::security::KafkaSecurity;

/// Where the broker is and how this service uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap_servers: String,
    /// `KAFKA_CONSUMER_GROUP`.
    pub consumer_group: String,
    /// `TOPIC_PARTITIONS`: partitions of topics this service creates.
    pub topic_partitions: i32,
    /// `TOPIC_REPLICATION_FACTOR`: replication of topics this service creates.
    pub replication_factor: i32,
    /// `KAFKA_SESSION_TIMEOUT_MS`: how long a dead consumer keeps its partitions.
    pub session_timeout: Duration,
    /// `KAFKA_FETCH_WAIT_MAX_MS`: longest a fetch waits for data (latency vs. requests).
    pub fetch_wait_max: Duration,
    /// `client.id` reported to the broker (the service name).
    pub client_id: String,
    /// TLS, SASL and extra client properties (`KAFKA_SECURITY_PROTOCOL`, ...).
    pub security: KafkaSecurity,
}

impl KafkaSettings {
    /// Defaults for local runs, overridden by the environment, validated.
    pub fn from_env(env: &Env, client_id: &str, default_group: &str) -> Result<Self, ConfigError> {
        let security = KafkaSecurity::from_env(env)?;
        // The properties file may name the brokers when the variable does not.
        let bootstrap_servers = env.string(
            "KAFKA_BOOTSTRAP_SERVERS",
            security
                .properties
                .get("bootstrap.servers")
                .unwrap_or("127.0.0.1:9092"),
        );
        if bootstrap_servers.split(',').any(|s| {
            s.trim()
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return Err(ConfigError::new(
                "KAFKA_BOOTSTRAP_SERVERS",
                &bootstrap_servers,
                "expected comma-separated host:port pairs",
            ));
        }
        Ok(Self {
            bootstrap_servers,
            consumer_group: env.string("KAFKA_CONSUMER_GROUP", default_group),
            topic_partitions: env.int_in("TOPIC_PARTITIONS", 3, 1, 1000)?,
            replication_factor: env.int_in("TOPIC_REPLICATION_FACTOR", 1, 1, 16)?,
            session_timeout: Duration::from_millis(env.int_in(
                "KAFKA_SESSION_TIMEOUT_MS",
                10_000,
                1_000,
                300_000,
            )?),
            fetch_wait_max: Duration::from_millis(env.int_in(
                "KAFKA_FETCH_WAIT_MAX_MS",
                5,
                1,
                10_000,
            )?),
            client_id: client_id.to_owned(),
            security,
        })
    }

    /// Settings for a broker at `bootstrap_servers` with everything else at its default.
    pub fn local(bootstrap_servers: &str, client_id: &str, group: &str) -> Self {
        let env = Env::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)]);
        Self::from_env(&env, client_id, group).expect("defaults are valid")
    }

    /// Table rows for `--help` and the docs.
    pub fn docs(default_group: &'static str) -> Vec<SettingDoc> {
        vec![
            SettingDoc {
                name: "KAFKA_BOOTSTRAP_SERVERS",
                default: "127.0.0.1:9092 (or bootstrap.servers of KAFKA_PROPERTIES_FILE)",
                meaning: "comma-separated host:port list of the Kafka-protocol broker",
            },
            SettingDoc {
                name: "KAFKA_CONSUMER_GROUP",
                default: default_group,
                meaning: "consumer group id; replicas of one service share it",
            },
            SettingDoc {
                name: "TOPIC_PARTITIONS",
                default: "3",
                meaning: "partitions of the topics created at start-up (1..1000)",
            },
            SettingDoc {
                name: "TOPIC_REPLICATION_FACTOR",
                default: "1",
                meaning: "replication factor of the topics created at start-up",
            },
            SettingDoc {
                name: "KAFKA_SESSION_TIMEOUT_MS",
                default: "10000",
                meaning:
                    "how long a crashed consumer keeps its partitions before the group rebalances",
            },
            SettingDoc {
                name: "KAFKA_FETCH_WAIT_MAX_MS",
                default: "5",
                meaning: "longest a fetch waits for new data (lower = less latency, more requests)",
            },
        ]
        .into_iter()
        .chain(KafkaSecurity::docs())
        .collect()
    }

    /// What every client shares: the broker, the client id, security (TLS, SASL, the
    /// properties file).
    pub fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        self.security.apply(&mut c);
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // Prefer IPv4: "localhost" may resolve to ::1 where the broker does not listen.
            .set("broker.address.family", "v4");
        c
    }

    /// Producer configuration: no loss, no reordering, same partitions as Java/Python clients.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        // Wait for every in-sync replica: an acknowledged event survives a broker loss.
        c.set("acks", "all")
            // Retries cannot duplicate or reorder messages within a partition.
            .set("enable.idempotence", "true")
            // Same key → same partition number as the platform's Java/Python producers.
            .set("partitioner", "murmur2_random")
            // Small batching window: latency matters more than batch size here.
            .set("linger.ms", "1")
            // Keep retrying through a broker restart; the outbox relay retries beyond this.
            .set("message.timeout.ms", "60000");
        c
    }

    /// Consumer configuration for the at-least-once runner.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", &self.consumer_group)
            // Commit in the background what the runner stored...
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // ...and store only after the handler's effects are committed.
            .set("enable.auto.offset.store", "false")
            // A new group reads what was published before it started.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Low latency per hop; see KAFKA_FETCH_WAIT_MAX_MS.
            .set(
                "fetch.wait.max.ms",
                self.fetch_wait_max.as_millis().to_string(),
            )
            // How soon a killed replica's partitions move to a live one.
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 4).max(250).to_string(),
            )
            // A handler retrying a transient failure (Redis down) keeps the partition for up to
            // this long before the group moves it elsewhere; redelivery is safe either way.
            .set("max.poll.interval.ms", "300000")
            // Eager rebalancing: every partition is revoked before any is assigned. The
            // runner's per-partition lanes rely on that (a revoke callback commits, marks every
            // lane's fetched messages stale, and the assignment that follows starts from the
            // committed offsets); with cooperative-sticky a partition could stay assigned
            // across a rebalance without the revoke that resets its lane. Pinned, so a changed
            // librdkafka default cannot switch protocols underneath.
            .set("partition.assignment.strategy", "range,roundrobin");
        c
    }

    /// Admin client configuration (topic provisioning).
    pub fn admin_config(&self) -> ClientConfig {
        self.base()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_run_contract() {
        let s = KafkaSettings::from_env(&Env::default(), "svc", "grp").unwrap();
        assert_eq!(s.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.consumer_group, "grp");
        assert_eq!(s.topic_partitions, 3);
    }

    #[test]
    fn bad_bootstrap_servers_name_the_variable() {
        let env = Env::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", "kafka")]);
        let err = KafkaSettings::from_env(&env, "svc", "grp").unwrap_err();
        assert_eq!(err.variable, "KAFKA_BOOTSTRAP_SERVERS");
    }

    #[test]
    fn producer_is_safe_and_platform_compatible() {
        let s = KafkaSettings::local("127.0.0.1:1", "svc", "grp");
        let c = s.producer_config();
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
    }

    #[test]
    fn consumer_stores_offsets_by_hand() {
        let c = KafkaSettings::local("127.0.0.1:1", "svc", "grp").consumer_config();
        assert_eq!(
            c.get("partition.assignment.strategy"),
            Some("range,roundrobin")
        );
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.auto.commit"), Some("true"));
        assert_eq!(c.get("group.id"), Some("grp"));
    }
}
