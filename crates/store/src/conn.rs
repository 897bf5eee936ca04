//! The connection under a [`Store`](crate::Store): one Redis server or a Redis Cluster, behind
//! one type, so the store's logic exists once for both modes (`REDIS_MODE`).
//!
//! - **standalone**: a connection manager (one multiplexed connection, reconnected on its own).
//! - **cluster**: redis-rs's cluster client — one connection per node, commands routed by the
//!   hash slot of their first key, `MOVED`/`ASK` redirects followed, the slot map refreshed when
//!   the topology changes (a failover, a resharding). Created lazily: a service starts while
//!   the cluster is down and connects on its first command.
//!
//! What differs between the modes stays in this file:
//!
//! - [`Conn::each`]: one command per bucket (the relay's sweep, listings). Standalone sends them
//!   as one pipeline; a cluster cannot pipeline keys of several slots, so each goes on its own,
//!   all at once (one round trip of wall time, each routed to its master).
//! - [`Conn::script`]: a Lua script, with `WAIT` in the same pipeline when commits must be
//!   confirmed by replicas (`REDIS_WAIT_REPLICAS`): the pipeline goes to the master of the
//!   script's slot, so `WAIT` counts that master's replicas.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Script, Value};
use tokio::sync::OnceCell;

use crate::settings::RedisMode;
use crate::{RedisSettings, StoreError};

/// A connection to Redis in either mode. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(LazyCluster),
}

/// A cluster connection made on first use (and again after a failed attempt).
#[derive(Clone)]
pub(crate) struct LazyCluster {
    inner: Arc<(redis::cluster::ClusterClient, OnceCell<ClusterConnection>)>,
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        let (client, conn) = &*self.inner;
        conn.get_or_try_init(|| client.get_async_connection())
            .await
            .cloned()
    }
}

/// Replicas that must confirm a write, and how long to wait for them (`REDIS_WAIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Confirm {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Confirm {
    pub(crate) fn from_settings(s: &RedisSettings) -> Option<Self> {
        (s.wait_replicas > 0).then_some(Confirm {
            replicas: s.wait_replicas,
            timeout: s.wait_timeout,
        })
    }
}

fn tls_certificates(
    settings: &RedisSettings,
) -> Result<Option<redis::TlsCertificates>, StoreError> {
    let Some(ca) = &settings.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(ca)
        .map_err(|e| StoreError::Setup(format!("REDIS_TLS_CA_FILE {}: {e}", ca.display())))?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

impl Conn {
    /// Connect lazily: nothing is dialled until the first command.
    pub(crate) fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        // A commit waits up to REDIS_WAIT_TIMEOUT_MS for its replicas: answers may take that long.
        let response_timeout = Duration::from_secs(5) + settings.wait_timeout;
        match settings.mode {
            RedisMode::Standalone => {
                let mut info =
                    redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())?;
                if let Some(password) = &settings.password {
                    let redis = info
                        .redis_settings()
                        .clone()
                        .set_password(password.expose());
                    info = info.set_redis_settings(redis);
                }
                let client = match tls_certificates(settings)? {
                    Some(certs) => redis::Client::build_with_tls(info, certs)
                        .map_err(|e| StoreError::Setup(format!("REDIS_TLS_CA_FILE: {e}")))?,
                    None => redis::Client::open(info)?,
                };
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(response_timeout))
                    .set_max_delay(Duration::from_millis(500))
                    // Fail fast while Redis is down: callers retry with their own backoff
                    // (consumers) or answer 503 (HTTP) instead of hanging for the default ~7 s
                    // of reconnects.
                    .set_number_of_retries(1);
                Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            RedisMode::Cluster => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(settings.urls())
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(response_timeout)
                    // Redirects are followed at once; a node that does not answer (a failover
                    // in progress) is retried a few times, then the caller's own backoff
                    // takes over (consumers retry, HTTP answers 503).
                    .retries(4)
                    .min_retry_wait(50)
                    .max_retry_wait(1000);
                if let Some(password) = &settings.password {
                    builder = builder.password(password.expose());
                }
                if let Some(certs) = tls_certificates(settings)? {
                    builder = builder.certs(certs);
                }
                let client = builder.build()?;
                Ok(Conn::Cluster(LazyCluster {
                    inner: Arc::new((client, OnceCell::new())),
                }))
            }
        }
    }

    /// One command per element of `cmds`, answers in the same order (see the module docs).
    pub(crate) async fn each<T: FromRedisValue>(
        &self,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                let mut c = c.clone();
                Ok(pipe.query_async(&mut c).await?)
            }
            Conn::Cluster(_) => {
                let answers = futures::future::join_all(cmds.iter().map(|cmd| {
                    let mut c = self.clone();
                    async move { cmd.query_async::<T>(&mut c).await }
                }))
                .await;
                Ok(answers.into_iter().collect::<Result<Vec<T>, _>>()?)
            }
        }
    }

    /// Run `call` (an `EVALSHA` of `script`, from [`evalsha`]); with `confirm`, `WAIT` for the
    /// replicas in the same round trip, and fail with [`StoreError::Unconfirmed`] when too few
    /// confirm in time. A script the server does not know yet is loaded, and the call repeated.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        call: Cmd,
        confirm: Option<Confirm>,
    ) -> Result<T, StoreError> {
        let mut c = self.clone();
        let Some(confirm) = confirm else {
            return match call.query_async(&mut c).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script.prepare_invoke().load_async(&mut c).await?;
                    Ok(call.query_async(&mut c).await?)
                }
                other => Ok(other?),
            };
        };
        let mut pipe = redis::pipe();
        pipe.add_command(call)
            .cmd("WAIT")
            .arg(confirm.replicas)
            .arg(confirm.timeout.as_millis() as u64);
        let (answer, acked): (T, i64) = match pipe.query_async(&mut c).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.prepare_invoke().load_async(&mut c).await?;
                pipe.query_async(&mut c).await?
            }
            other => other?,
        };
        if acked < i64::from(confirm.replicas) {
            return Err(StoreError::Unconfirmed {
                wanted: confirm.replicas,
                confirmed: acked.max(0) as u32,
                timeout_ms: confirm.timeout.as_millis() as u64,
            });
        }
        Ok(answer)
    }
}

/// `EVALSHA <script> <keys…>`: append the arguments with `.arg()`, run with [`Conn::script`].
pub(crate) fn evalsha(script: &Script, keys: &[String]) -> Cmd {
    evalsha_sized(script, keys, 0, 0)
}

/// [`evalsha`] with room for `args` more arguments of `bytes` bytes in all: a commit carrying
/// a large batch's messages (megabytes) is written into its buffer once, not regrown and
/// copied as it fills.
pub(crate) fn evalsha_sized(script: &Script, keys: &[String], args: usize, bytes: usize) -> Cmd {
    let key_bytes: usize = keys.iter().map(String::len).sum();
    let mut cmd = Cmd::with_capacity(3 + keys.len() + args, 64 + key_bytes + bytes);
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys);
    cmd
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => {
                Box::pin(async move { c.get().await?.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => {
                Box::pin(
                    async move { c.get().await?.req_packed_commands(cmd, offset, count).await },
                )
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}
