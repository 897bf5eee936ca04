//! Kafka settings from the environment and the client configurations built from them.

use std::time::Duration;

use clap::Command;
use huleedu_service::settings::{
    int_in, parse_vars, process_vars, with_defaults, ConfigError, VarPair,
};
use rdkafka::ClientConfig;

use crate::security::{KafkaSecurity, KafkaSecurityArgs};

/// How often the consumer runner gets librdkafka's statistics (its consumer lag per partition).
pub const STATS_INTERVAL_MS: u64 = 10_000;

/// The Kafka variables, as every binary that talks to the broker reads them.
/// `KAFKA_CONSUMER_GROUP` has the service's default ([`with_defaults`]).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// comma-separated host:port list of the Kafka-protocol broker [default: 127.0.0.1:9092 (or
    /// bootstrap.servers of KAFKA_PROPERTIES_FILE)]
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// consumer group id; replicas of one service share it
    #[arg(long, env = "KAFKA_CONSUMER_GROUP")]
    pub kafka_consumer_group: String,
    /// partitions of the topics created at start-up (1..1000)
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3, value_parser = int_in::<i32>(1, 1000))]
    pub topic_partitions: i32,
    /// replication factor of the topics created at start-up
    #[arg(long, env = "TOPIC_REPLICATION_FACTOR", default_value_t = 1, value_parser = int_in::<i32>(1, 16))]
    pub topic_replication_factor: i32,
    /// how long a crashed consumer keeps its partitions before the group rebalances
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = int_in::<u64>(1_000, 300_000))]
    pub kafka_session_timeout_ms: u64,
    /// longest a fetch waits for new data (lower = less latency, more requests)
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 5, value_parser = int_in::<u64>(1, 10_000))]
    pub kafka_fetch_wait_max_ms: u64,
    /// largest message value (bytes) this service accepts or produces; set it to the broker's
    /// `message.max.bytes` (and the topics' `max.message.bytes`). Larger consumed messages are
    /// dead-lettered; events the service would produce larger end their pipeline instead
    #[arg(long, env = "KAFKA_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
        value_parser = int_in::<usize>(MIN_MAX_MESSAGE_BYTES, MAX_MAX_MESSAGE_BYTES))]
    pub kafka_max_message_bytes: usize,
    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

pub use huleedu_contracts::topics::{
    DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_MESSAGE_BYTES, RECORD_OVERHEAD_BYTES,
};
/// Smallest `KAFKA_MAX_MESSAGE_BYTES` (room for a small batch's events and a DLQ copy's headers).
pub const MIN_MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Largest `KAFKA_MAX_MESSAGE_BYTES` (librdkafka's `message.max.bytes` tops out at 1e9; past
/// 64 MiB a single event is the wrong design).
pub const MAX_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Extra room the producers get above `KAFKA_MAX_MESSAGE_BYTES` for dead-letter copies: a
/// poison message is republished whole, with its DLQ headers (up to about 5 KiB) added.
pub const DLQ_HEADROOM_BYTES: usize = 64 * 1024;

/// The broker used when neither `KAFKA_BOOTSTRAP_SERVERS` nor the properties file names one.
const LOCAL_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";

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
    /// `KAFKA_MAX_MESSAGE_BYTES`: largest message value accepted or produced.
    pub max_message_bytes: usize,
    /// `client.id` reported to the broker (the service name).
    pub client_id: String,
    /// TLS, SASL and extra client properties (`KAFKA_SECURITY_PROTOCOL`, ...).
    pub security: KafkaSecurity,
}

impl KafkaSettings {
    /// Check the variables and build the settings of client `client_id`.
    pub fn from_args(args: &KafkaArgs, client_id: &str) -> Result<Self, ConfigError> {
        let security = KafkaSecurity::from_args(args)?;
        // The properties file may name the brokers when the variable does not.
        let bootstrap_servers = match &args.kafka_bootstrap_servers {
            Some(servers) => servers.clone(),
            None => security
                .properties
                .get("bootstrap.servers")
                .unwrap_or(LOCAL_BOOTSTRAP_SERVERS)
                .to_owned(),
        };
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
            consumer_group: args.kafka_consumer_group.clone(),
            topic_partitions: args.topic_partitions,
            replication_factor: args.topic_replication_factor,
            session_timeout: Duration::from_millis(args.kafka_session_timeout_ms),
            fetch_wait_max: Duration::from_millis(args.kafka_fetch_wait_max_ms),
            max_message_bytes: args.kafka_max_message_bytes,
            client_id: client_id.to_owned(),
            security,
        })
    }

    /// The Kafka variables on their own (tools and tests), with `default_group` as the default
    /// of `KAFKA_CONSUMER_GROUP`.
    pub fn command(default_group: &'static str) -> Command {
        with_defaults(
            <KafkaArgs as clap::Args>::augment_args(Command::new("kafka")),
            &[("KAFKA_CONSUMER_GROUP", default_group)],
        )
    }

    /// The settings from explicit `(variable, value)` pairs, as a service reads them.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = impl VarPair>,
        client_id: &str,
        default_group: &'static str,
    ) -> Result<Self, ConfigError> {
        Self::from_args(
            &parse_vars(&Self::command(default_group), pairs)?,
            client_id,
        )
    }

    /// The settings from the process environment (the tools read the services' variables).
    pub fn from_process(client_id: &str, default_group: &'static str) -> Result<Self, ConfigError> {
        Self::from_pairs(process_vars(), client_id, default_group)
    }

    /// Settings for a broker at `bootstrap_servers` with everything else at its default.
    pub fn local(bootstrap_servers: &str, client_id: &str, group: &str) -> Self {
        Self::from_pairs(
            [
                ("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers),
                ("KAFKA_CONSUMER_GROUP", group),
            ],
            client_id,
            "unused",
        )
        .expect("defaults are valid")
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
            .set("message.timeout.ms", "60000")
            // The deployment's size limit, plus room for the headers of dead-letter copies
            // (the services check their own events against the limit before publishing).
            .set(
                "message.max.bytes",
                (self.max_message_bytes + DLQ_HEADROOM_BYTES).to_string(),
            );
        c
    }

    /// The largest value of an event this service produces itself (the limit less
    /// [`RECORD_OVERHEAD_BYTES`]).
    pub fn max_event_bytes(&self) -> usize {
        self.max_message_bytes - RECORD_OVERHEAD_BYTES
    }

    /// Consumer configuration for the at-least-once runner (statistics every
    /// [`STATS_INTERVAL_MS`]: the consumer lag metric).
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
            // A subscribed topic missing from the metadata (created by another service a moment
            // ago) is found within 10 s, not librdkafka's default 5 minutes.
            .set("topic.metadata.refresh.interval.ms", "10000")
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
            .set("partition.assignment.strategy", "range,roundrobin")
            // Statistics (consumer lag per partition, for the lag metric) every 10 s.
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
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
    use huleedu_service::settings::NO_VARS;

    #[test]
    fn defaults_match_the_run_contract() {
        let s = KafkaSettings::from_pairs(NO_VARS, "svc", "grp").unwrap();
        assert_eq!(s.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.consumer_group, "grp");
        assert_eq!(s.topic_partitions, 3);
    }

    #[test]
    fn bad_bootstrap_servers_name_the_variable() {
        let err = KafkaSettings::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", "kafka")], "svc", "grp")
            .unwrap_err();
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
