//! Redis settings from the environment, and how long the services keep what they store.

use std::path::PathBuf;
use std::time::Duration;

use clap::Command;
use huleedu_service::settings::{
    int_in, parse_vars, readable_file, secret, with_defaults, ConfigError, Secret, VarPair, SECS,
};

/// The Redis variables. `REDIS_KEY_PREFIX` has the service's default ([`with_defaults`]).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// standalone (one Redis, with or without replicas) or cluster (Redis Cluster: REDIS_URL is
    /// a comma-separated list of seed nodes)
    #[arg(long, env = "REDIS_MODE", default_value = "standalone")]
    pub redis_mode: String,
    /// Redis holding state, dedup markers and the outbox: redis://[user:password@]host:port[/db],
    /// rediss:// for TLS (server certificate verified); with REDIS_MODE=cluster, seed nodes
    /// separated by commas, same scheme and credentials for all
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// replicas that must confirm a commit (Redis WAIT) before it counts: the Kafka offset is
    /// stored and the outbox published only then; 0 = the master's answer is enough
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0,
        value_parser = int_in::<u32>(0, 16))]
    pub redis_wait_replicas: u32,
    /// milliseconds a commit waits for REDIS_WAIT_REPLICAS confirmations before it counts as
    /// failed (and is retried)
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000,
        value_parser = int_in::<u64>(1, 60_000))]
    pub redis_wait_timeout_ms: u64,
    /// Redis password when it is not in REDIS_URL; or REDIS_PASSWORD_FILE: a file holding it
    /// [default: (unset: the URL's, if any)]
    #[arg(long, env = "REDIS_PASSWORD")]
    pub redis_password: Option<Secret>,
    #[arg(long, env = "REDIS_PASSWORD_FILE", hide = true)]
    pub redis_password_file: Option<String>,
    /// CA certificate(s) in PEM that sign the rediss:// server's certificate [default: (unset:
    /// the system's trust store)]
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<String>,
    /// prefix of every key, so deployments or test runs can share a Redis
    #[arg(long, env = "REDIS_KEY_PREFIX")]
    pub redis_key_prefix: String,
    /// this replica's stable identity: a restart under the same one takes its outbox leases back
    /// at once; give every live replica its own [default: the host name]
    #[arg(long, env = "REPLICA_ID")]
    pub replica_id: Option<String>,
}

/// How long a service keeps what it stores: `DEDUP_TTL_SECS`, `STATE_TTL_DAYS`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// seconds a handled event id is remembered, so a redelivery changes nothing
    #[arg(long, env = "DEDUP_TTL_SECS", default_value_t = 7 * 24 * 3600,
        value_parser = int_in::<u64>(SECS.0, SECS.1))]
    pub dedup_ttl_secs: u64,
    /// days a batch's state lives after its last change (1..3650)
    #[arg(long, env = "STATE_TTL_DAYS", default_value_t = 30, value_parser = int_in::<u64>(1, 3650))]
    pub state_ttl_days: u64,
}

impl RetentionArgs {
    /// `DEDUP_TTL_SECS`: how long a handled event id is remembered.
    pub fn dedup_ttl(&self) -> Duration {
        Duration::from_secs(self.dedup_ttl_secs)
    }

    /// `STATE_TTL_DAYS`: a batch's state expires this long after its last change.
    pub fn state_ttl(&self) -> Duration {
        Duration::from_secs(self.state_ttl_days * 24 * 3600)
    }
}

/// One Redis server, or a Redis Cluster (`REDIS_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One Redis (its replicas, if any, are not addressed).
    #[default]
    Standalone,
    /// Redis Cluster: keys are spread over the masters by hash slot; the client follows
    /// `MOVED`/`ASK` redirects and the cluster's topology.
    Cluster,
}

impl RedisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// Where Redis is, how to authenticate and which key prefix this deployment uses.
///
/// `Debug` and [`RedisSettings::redacted_url`] never show a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `REDIS_MODE`: one Redis or a Redis Cluster.
    pub mode: RedisMode,
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379` or `rediss://user:password@host:6380/0`; in
    /// cluster mode seed nodes separated by commas ([`RedisSettings::urls`]).
    /// May hold a password: log [`RedisSettings::redacted_url`] instead.
    pub url: String,
    /// `REDIS_WAIT_REPLICAS`: replicas that must confirm a commit (0 = none).
    pub wait_replicas: u32,
    /// `REDIS_WAIT_TIMEOUT_MS`: how long a commit waits for them.
    pub wait_timeout: Duration,
    /// `REDIS_KEY_PREFIX`: lets several deployments or test runs share one Redis.
    pub key_prefix: String,
    /// `REDIS_TLS_CA_FILE`: CA certificate(s) (PEM) to verify a `rediss://` server with,
    /// instead of the system's trust store.
    pub tls_ca_file: Option<PathBuf>,
    /// `REDIS_PASSWORD` or `REDIS_PASSWORD_FILE`: the password, when it is not in the URL.
    pub password: Option<Secret>,
    /// `REPLICA_ID`: this replica's stable identity, the owner of its outbox bucket leases
    /// (default: the host name, which containers and pods keep across a restart).
    pub replica_id: String,
}

/// The machine's host name (a container's or pod's own), if it can be read.
fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("mode", &self.mode)
            .field("url", &self.redacted_url())
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("password", &self.password)
            .field("replica_id", &self.replica_id)
            .finish()
    }
}

/// `url` with its password (if any) replaced by `***`; each of a comma-separated list.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        return url
            .split(',')
            .map(|u| redact_one(u.trim()))
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one(url)
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user-info part ends at the last '@' before the first '/'.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{shown}{}", &rest[at..])
}

impl RedisSettings {
    /// Settings for a Redis at `url` with everything else at its default (tests, tools).
    pub fn local(url: &str, key_prefix: &str) -> Self {
        Self {
            mode: RedisMode::Standalone,
            url: url.to_owned(),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
            key_prefix: key_prefix.to_owned(),
            tls_ca_file: None,
            password: None,
            replica_id: format!("local-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Check the variables and build the settings.
    pub fn from_args(args: &RedisArgs) -> Result<Self, ConfigError> {
        let mode = match args.redis_mode.as_str() {
            "standalone" => RedisMode::Standalone,
            "cluster" => RedisMode::Cluster,
            other => {
                return Err(ConfigError::new(
                    "REDIS_MODE",
                    other,
                    "expected standalone or cluster",
                ))
            }
        };
        let url = args.redis_url.trim().to_owned();
        let shown = redact_url(&url);
        let parts: Vec<&str> = url.split(',').map(str::trim).collect();
        if mode == RedisMode::Standalone && parts.len() > 1 {
            return Err(ConfigError::new(
                "REDIS_URL",
                &shown,
                "several URLs are only for REDIS_MODE=cluster (its seed nodes)",
            ));
        }
        let tls = parts[0].starts_with("rediss://");
        let scheme = parts[0].split("://").next().unwrap_or_default();
        let mut infos = Vec::new();
        for part in &parts {
            let shown_part = redact_url(part);
            let ok_scheme = part.starts_with("redis://")
                || part.starts_with("rediss://")
                || (mode == RedisMode::Standalone && part.starts_with("unix://"));
            if !ok_scheme {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    &shown,
                    match mode {
                        RedisMode::Standalone => format!(
                            "{shown_part}: expected redis://[user:password@]host:port[/db], rediss://... (TLS) or unix://"
                        ),
                        RedisMode::Cluster => format!(
                            "{shown_part}: expected redis://[user:password@]host:port or rediss://... (TLS) for each seed node"
                        ),
                    },
                ));
            }
            if !part.starts_with(&format!("{scheme}://")) {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    &shown,
                    "every seed node must use the same scheme (all redis:// or all rediss://)",
                ));
            }
            match redis::IntoConnectionInfo::into_connection_info(*part) {
                Ok(info) => infos.push(info),
                // The parser's message may quote the URL: keep it out.
                Err(e) => {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        &shown,
                        format!("{shown_part}: not a valid Redis URL ({:?})", e.kind()),
                    ))
                }
            }
        }
        let info = &infos[0];
        if infos.iter().any(|i| {
            i.redis_settings().username() != info.redis_settings().username()
                || i.redis_settings().password() != info.redis_settings().password()
        }) {
            return Err(ConfigError::new(
                "REDIS_URL",
                &shown,
                "every seed node must carry the same user and password (or none: REDIS_PASSWORD)",
            ));
        }
        if mode == RedisMode::Cluster && info.redis_settings().db() != 0 {
            return Err(ConfigError::new(
                "REDIS_URL",
                &shown,
                "Redis Cluster has only database 0: drop the /db part",
            ));
        }
        let password = secret(
            "REDIS_PASSWORD",
            args.redis_password.clone(),
            args.redis_password_file.as_deref(),
        )?;
        if password.is_some() && info.redis_settings().password().is_some() {
            return Err(ConfigError::new(
                "REDIS_PASSWORD",
                "(secret)",
                "REDIS_URL holds a password too: set it in one place",
            ));
        }
        let tls_ca_file = readable_file("REDIS_TLS_CA_FILE", args.redis_tls_ca_file.as_deref())?;
        if let Some(ca) = &tls_ca_file {
            let path = ca.display().to_string();
            if !tls {
                return Err(ConfigError::new(
                    "REDIS_TLS_CA_FILE",
                    &path,
                    "only used with a rediss:// REDIS_URL",
                ));
            }
            let pem = std::fs::read_to_string(ca).unwrap_or_default();
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::new(
                    "REDIS_TLS_CA_FILE",
                    &path,
                    "no PEM certificate in the file",
                ));
            }
        }
        let key_prefix = args.redis_key_prefix.clone();
        if key_prefix.contains(['{', '}', ' ']) {
            return Err(ConfigError::new(
                "REDIS_KEY_PREFIX",
                &key_prefix,
                "must not contain braces or spaces (it becomes part of a hash tag)",
            ));
        }
        let replica_id = args
            .replica_id
            .clone()
            .or_else(host_name)
            .unwrap_or_else(|| format!("replica-{}", uuid::Uuid::new_v4().simple()));
        Ok(Self {
            mode,
            url,
            wait_replicas: args.redis_wait_replicas,
            wait_timeout: Duration::from_millis(args.redis_wait_timeout_ms),
            key_prefix,
            tls_ca_file,
            password,
            replica_id,
        })
    }

    /// The Redis variables on their own, with `default_prefix` as the default of
    /// `REDIS_KEY_PREFIX`.
    pub fn command(default_prefix: &'static str) -> Command {
        with_defaults(
            <RedisArgs as clap::Args>::augment_args(Command::new("redis")),
            &[("REDIS_KEY_PREFIX", default_prefix)],
        )
    }

    /// The settings from explicit `(variable, value)` pairs, as a service reads them (tests).
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = impl VarPair>,
        default_prefix: &'static str,
    ) -> Result<Self, ConfigError> {
        Self::from_args(&parse_vars(&Self::command(default_prefix), pairs)?)
    }

    /// The URL without its password, for logs and messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The URL(s) of `REDIS_URL`: one in standalone mode, the seed nodes in cluster mode.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_pairs(
        pairs: &[(&str, &str)],
        default_prefix: &'static str,
    ) -> Result<RedisSettings, ConfigError> {
        RedisSettings::from_pairs(pairs, default_prefix)
    }

    #[test]
    fn bad_url_and_prefix_name_the_variable() {
        let e = from_pairs(&[("REDIS_URL", "http://x")], "bos").unwrap_err();
        assert_eq!(e.variable, "REDIS_URL");
        let e = from_pairs(&[("REDIS_KEY_PREFIX", "a{b}")], "bos").unwrap_err();
        assert_eq!(e.variable, "REDIS_KEY_PREFIX");
        let ok = from_pairs(&[], "bcs").unwrap();
        assert_eq!(ok.key_prefix, "bcs");
    }

    #[test]
    fn cluster_mode_and_wait_settings_are_checked() {
        let ok = from_pairs(
            &[
                ("REDIS_MODE", "cluster"),
                ("REDIS_URL", "redis://u:pw@h1:7001, redis://u:pw@h2:7002"),
                ("REDIS_WAIT_REPLICAS", "1"),
                ("REDIS_WAIT_TIMEOUT_MS", "250"),
            ],
            "bos",
        )
        .unwrap();
        assert_eq!(ok.mode, RedisMode::Cluster);
        assert_eq!(
            ok.urls().collect::<Vec<_>>(),
            ["redis://u:pw@h1:7001", "redis://u:pw@h2:7002"]
        );
        assert_eq!(
            ok.redacted_url(),
            "redis://u:***@h1:7001,redis://u:***@h2:7002"
        );
        assert_eq!(
            (ok.wait_replicas, ok.wait_timeout),
            (1, Duration::from_millis(250))
        );
        assert!(!format!("{ok:?}").contains("pw@"));

        let default = from_pairs(&[], "bos").unwrap();
        assert_eq!(
            (default.mode, default.wait_replicas),
            (RedisMode::Standalone, 0)
        );

        for (pairs, variable, says) in [
            (
                vec![("REDIS_MODE", "sentinel")],
                "REDIS_MODE",
                "standalone or cluster",
            ),
            (
                vec![("REDIS_URL", "redis://h1:1,redis://h2:2")],
                "REDIS_URL",
                "REDIS_MODE=cluster",
            ),
            (
                vec![
                    ("REDIS_MODE", "cluster"),
                    ("REDIS_URL", "redis://h1:1,rediss://h2:2"),
                ],
                "REDIS_URL",
                "same scheme",
            ),
            (
                vec![
                    ("REDIS_MODE", "cluster"),
                    ("REDIS_URL", "redis://a:x@h1:1,redis://b:x@h2:2"),
                ],
                "REDIS_URL",
                "same user and password",
            ),
            (
                vec![("REDIS_MODE", "cluster"), ("REDIS_URL", "redis://h1:1/3")],
                "REDIS_URL",
                "database 0",
            ),
            (
                vec![
                    ("REDIS_MODE", "cluster"),
                    ("REDIS_URL", "unix:///tmp/r.sock"),
                ],
                "REDIS_URL",
                "each seed node",
            ),
            (
                vec![("REDIS_WAIT_REPLICAS", "17")],
                "REDIS_WAIT_REPLICAS",
                "between",
            ),
            (
                vec![("REDIS_WAIT_TIMEOUT_MS", "0")],
                "REDIS_WAIT_TIMEOUT_MS",
                "between",
            ),
        ] {
            let e = from_pairs(&pairs, "bos").unwrap_err();
            assert_eq!(e.variable, variable, "{pairs:?}: {e}");
            assert!(e.to_string().contains(says), "{pairs:?}: {e}");
            assert!(!e.to_string().contains(":x@"), "{e}");
        }
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("rediss://app:s3cret@127.0.0.1:6380/2"),
            "rediss://app:***@127.0.0.1:6380/2"
        );
        assert_eq!(redact_url("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("redis://app@h:1"), "redis://app@h:1");

        // In errors...
        let e = from_pairs(
            &[("REDIS_URL", "rediss://app:s3cret@127.0.0.1:notaport")],
            "bos",
        )
        .unwrap_err();
        assert_eq!(e.variable, "REDIS_URL");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = from_pairs(&[("REDIS_URL", "https://app:s3cret@h:1")], "bos").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        // ...and in Debug.
        let ok = from_pairs(
            &[
                ("REDIS_URL", "redis://app@127.0.0.1:6379"),
                ("REDIS_PASSWORD", "s3cret"),
            ],
            "bos",
        )
        .unwrap();
        assert!(!format!("{ok:?}").contains("s3cret"));
        assert_eq!(ok.password.unwrap().expose(), "s3cret");
        let ok = from_pairs(
            &[("REDIS_URL", "rediss://app:s3cret@127.0.0.1:6380")],
            "bos",
        )
        .unwrap();
        assert!(!format!("{ok:?}").contains("s3cret"));
    }

    #[test]
    fn tls_and_password_settings_are_checked() {
        let e = from_pairs(
            &[
                ("REDIS_URL", "redis://app:first-secret@h:1"),
                ("REDIS_PASSWORD", "second-secret"),
            ],
            "bos",
        )
        .unwrap_err();
        assert_eq!(e.variable, "REDIS_PASSWORD");
        assert!(
            !e.to_string().contains("first-secret") && !e.to_string().contains("second-secret")
        );

        let dir =
            std::env::temp_dir().join(format!("huleedu-redis-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let ca = ca.to_str().unwrap();
        let e = from_pairs(
            &[("REDIS_URL", "redis://h:1"), ("REDIS_TLS_CA_FILE", ca)],
            "bos",
        )
        .unwrap_err();
        assert_eq!(e.variable, "REDIS_TLS_CA_FILE");
        let e = from_pairs(
            &[
                ("REDIS_URL", "rediss://h:1"),
                ("REDIS_TLS_CA_FILE", not_pem.to_str().unwrap()),
            ],
            "bos",
        )
        .unwrap_err();
        assert_eq!(e.variable, "REDIS_TLS_CA_FILE");
        let ok = from_pairs(
            &[("REDIS_URL", "rediss://h:1"), ("REDIS_TLS_CA_FILE", ca)],
            "bos",
        )
        .unwrap();
        assert_eq!(ok.tls_ca_file.as_deref(), Some(std::path::Path::new(ca)));
    }
}
