//! The outbox relay: publishes what [`Store::apply`](crate::Store::apply) appended.
//!
//! For each bucket with pending entries: take the bucket's lease (so two replicas do not both
//! drain it), read up to [`BATCH`] entries oldest first, publish them all (the idempotent
//! producer keeps their order per partition), wait for every acknowledgement, then remove
//! exactly the acknowledged prefix — checked entry by entry, so a lost lease can cause a
//! re-send (same `event_id`, dropped by consumers) but never a loss.
//!
//! Round trips: removing the acknowledged prefix is folded into the *next* read of the same
//! bucket (one script: remove what was acknowledged, renew the lease, read what follows), so a
//! drain costs one round trip. Entries acknowledged last in a burst are removed by the next
//! sweep (within `poll_interval`) or by the drain at shutdown; a crash before that re-sends
//! them (same `event_id`s, dropped by consumers).
//!
//! The relay wakes when this process appends to the outbox and then drains just the buckets
//! this process appended to; every `poll_interval` it sweeps all buckets (entries left by a
//! crashed or other replica). Buckets are drained side by side (each in order). On shutdown it
//! keeps draining until the outbox is empty or the drain deadline passes.
//!
//! Failures: a transient one (broker down, time-out) stops the bucket at that entry, to be
//! retried in order. An entry that can never be published — undecodable, or refused by the
//! broker for good (too large, invalid topic or record) — is **parked**: moved to the bucket's
//! `…:outbox:parked` list in the same script that removes it from the outbox, logged as an error
//! and counted ([`RelayObserver::on_parked`]), so it cannot block the batches behind it.
//!
//! Leases belong to the relay's owner, the replica's identity (`REPLICA_ID`): a replica that
//! restarts under the same identity takes its buckets back at once instead of waiting for its
//! predecessor's leases to expire. Two live replicas with the same identity would both drain
//! the same buckets: entries are then published twice (same `event_id`s, dropped by consumers),
//! never lost; give each replica its own identity.

use std::sync::Arc;
use std::time::Duration;

use huleedu_kafka::Producer;
use huleedu_service::backoff::Backoff;
use parking_lot::Mutex;
use redis::Script;
use tokio_util::sync::CancellationToken;

use crate::keys::Keys;
use crate::{OutboxEntry, Store, StoreError, BUCKETS};

/// Most entries published per bucket per round.
pub const BATCH: usize = 256;

const PUMP_LUA: &str = r#"
-- KEYS[1] lease, KEYS[2] outbox, KEYS[3] parked; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] most
-- entries, ARGV[4..] the entries this relay finished last time, oldest first, each prefixed
-- with 'A' (published and acknowledged) or 'P' (can never be published: park it).
-- nil when another relay holds the lease (nothing changed). Otherwise: remove those entries
-- while they are at the head (checked one by one), parking the 'P' ones, take or renew the
-- lease, and answer the oldest entries now in the outbox.
local holder = redis.call('GET', KEYS[1])
if holder ~= false and holder ~= ARGV[1] then
  return false
end
for i = 4, #ARGV do
  local entry = string.sub(ARGV[i], 2)
  if redis.call('LINDEX', KEYS[2], 0) ~= entry then break end
  redis.call('LPOP', KEYS[2])
  if string.sub(ARGV[i], 1, 1) == 'P' then
    redis.call('RPUSH', KEYS[3], entry)
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
"#;

/// Give up a lease only if this relay still holds it.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

pub(crate) fn script_names() -> Vec<(String, &'static str)> {
    vec![
        (Script::new(PUMP_LUA).get_hash().to_owned(), "relay pump"),
        (
            Script::new(RELEASE_LUA).get_hash().to_owned(),
            "lease release",
        ),
    ]
}

/// What became of one outbox entry.
enum Sent {
    Published(String),
    /// Can never be published (the reason).
    Park(String),
    /// Failed for now (the reason): retried, in order.
    Retry(String),
}

/// Counters the relay reports (metrics).
pub trait RelayObserver: Send + Sync + 'static {
    fn on_published(&self, _topic: &str) {}
    fn on_error(&self) {}
    /// An entry was parked: it can never be published (see the module documentation).
    fn on_parked(&self) {}
}

/// Records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRelayObserver;
impl RelayObserver for NoRelayObserver {}

/// Publishes outbox entries, in order, at least once each.
pub struct OutboxRelay<O = NoRelayObserver> {
    store: Store,
    producer: Producer,
    owner: String,
    poll_interval: Duration,
    lease_ttl: Duration,
    drain_timeout: Duration,
    pump: Arc<Script>,
    release: Arc<Script>,
    /// Per bucket: entries finished ('A' acknowledged, 'P' to park, then the raw entry), to be
    /// removed by the next pump.
    acked: Arc<Vec<Mutex<Vec<String>>>>,
    observer: O,
}

impl<O> std::fmt::Debug for OutboxRelay<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay<NoRelayObserver> {
    pub fn new(store: Store, producer: Producer) -> Self {
        let owner = store.replica_id().to_owned();
        Self {
            store,
            producer,
            owner,
            poll_interval: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            pump: Arc::new(Script::new(PUMP_LUA)),
            release: Arc::new(Script::new(RELEASE_LUA)),
            acked: Arc::new((0..BUCKETS).map(|_| Mutex::default()).collect()),
            observer: NoRelayObserver,
        }
    }
}

impl<O: RelayObserver> OutboxRelay<O> {
    pub fn with_observer<O2: RelayObserver>(self, observer: O2) -> OutboxRelay<O2> {
        OutboxRelay {
            store: self.store,
            producer: self.producer,
            owner: self.owner,
            poll_interval: self.poll_interval,
            lease_ttl: self.lease_ttl,
            drain_timeout: self.drain_timeout,
            pump: self.pump,
            release: self.release,
            acked: self.acked,
            observer,
        }
    }

    /// The owner of this relay's leases. Default: the store's [`Store::replica_id`]
    /// (`REPLICA_ID`), so a restart under the same identity takes its buckets back at once.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// How often to sweep for entries this process was not told about.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Relay until `shutdown` is cancelled, then drain what is left (bounded).
    pub async fn run(self, shutdown: CancellationToken) {
        let notify = self.store.outbox_notify();
        let mut failures = 0u32;
        // The first pass is a full sweep (entries left by an earlier run).
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            let result = if failures > 0 || now >= next_sweep {
                next_sweep = now + self.poll_interval;
                // The sweep covers whatever was appended up to now.
                self.store.take_dirty_buckets();
                self.round().await
            } else {
                self.round_buckets(self.store.take_dirty_buckets()).await
            };
            match result {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    self.observer.on_error();
                    tracing::warn!(error = %e, failures, "outbox relay round failed; retrying");
                }
            }
            let pause = if failures == 0 {
                next_sweep.saturating_duration_since(tokio::time::Instant::now())
            } else {
                Backoff::new(self.poll_interval, Duration::from_secs(2)).delay(failures)
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = notify.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.drain().await;
    }

    /// Publish until the outbox is empty or the drain deadline passes (shutdown).
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        loop {
            match self.store.outbox_len().await {
                Ok(0) => {
                    tracing::info!("outbox drained");
                    break;
                }
                Ok(n) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        pending = n,
                        "outbox not drained before shutdown; the next start publishes the rest"
                    );
                    break;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(error = %e, "outbox state unknown at shutdown; the next start publishes the rest");
                    break;
                }
                _ => {}
            }
            if let Ok(0) = self.round().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for b in 0..BUCKETS {
            let _ = self.release(b).await;
        }
    }

    /// One pass over every bucket; returns how many entries were published.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let keys = self.store.keys();
        let cmds = (0..BUCKETS)
            .map(|b| redis::Cmd::llen(keys.outbox(b)))
            .collect();
        let lens: Vec<u64> = self.store.conn().each(cmds).await?;
        let mask = lens
            .iter()
            .enumerate()
            .filter(|(_, len)| **len > 0)
            .fold(0u32, |m, (b, _)| m | (1 << b));
        self.round_buckets(mask).await
    }

    /// Drain the buckets of `mask` (bit `b` = bucket `b`) side by side, each until it is
    /// empty; returns how many entries were published (the first error, if any).
    async fn round_buckets(&self, mask: u32) -> Result<usize, StoreError> {
        let drains = (0..BUCKETS)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| self.drain_bucket_fully(b));
        let mut total = 0;
        let mut first_error = None;
        for r in futures::future::join_all(drains).await {
            match r {
                Ok(n) => total += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    async fn drain_bucket_fully(&self, bucket: u16) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (published, read) = self.drain_bucket(self.store.keys(), bucket).await?;
            total += published;
            if read < BATCH || published < read {
                return Ok(total);
            }
        }
    }

    /// Publish up to [`BATCH`] entries of one bucket; returns (published, read).
    async fn drain_bucket(&self, keys: &Keys, bucket: u16) -> Result<(usize, usize), StoreError> {
        let done = self.take_acked(bucket);
        // One round trip: remove what the last drain had acknowledged, take or renew the
        // lease, read the oldest entries. With REDIS_WAIT_REPLICAS, nothing is published
        // before the replicas confirm it (WAIT in the same round trip: the script's own write
        // comes after every entry it reads, so their confirmation covers the entries).
        let mut inv = crate::conn::evalsha(
            &self.pump,
            &[keys.lease(bucket), keys.outbox(bucket), keys.parked(bucket)],
        );
        inv.arg(&self.owner)
            .arg(self.lease_ttl.as_millis() as u64)
            .arg(BATCH);
        for r in &done {
            inv.arg(r);
        }
        let raw: Option<Vec<String>> = match self
            .store
            .conn()
            .script(&self.pump, inv, self.store.confirm())
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Removed or not: unknown. Try again next time (the removal is content-checked).
                self.set_acked(bucket, done);
                return Err(e);
            }
        };
        let Some(raw) = raw else {
            // Another replica drains this bucket (and re-sends what it finds: same event ids).
            return Ok((0, 0));
        };
        if raw.is_empty() {
            return Ok((0, 0));
        }
        // Enqueue everything first, then await the acks in order.
        let sends: Vec<_> = raw
            .iter()
            .map(|r| {
                let entry: Result<OutboxEntry, _> = serde_json::from_str(r);
                let producer = self.producer.clone();
                async move {
                    match entry {
                        Ok(e) => match producer
                            .send_parts(&e.topic, Some(e.key.as_bytes()), e.payload.as_bytes(), &[])
                            .await
                        {
                            Ok(_) => Sent::Published(e.topic),
                            Err(err) if err.is_refused_for_good() => Sent::Park(format!(
                                "the broker refuses it for good ({err}: {}); topic {}, key {}",
                                std::error::Error::source(&err)
                                    .map(ToString::to_string)
                                    .unwrap_or_default(),
                                e.topic,
                                e.key
                            )),
                            Err(err) => Sent::Retry(err.to_string()),
                        },
                        Err(err) => Sent::Park(format!("undecodable outbox entry: {err}")),
                    }
                }
            })
            .collect();
        // join_all polls in order, so the messages are enqueued in outbox order.
        let results = futures::future::join_all(sends).await;
        // The finished prefix: published or parked, up to the first entry to retry.
        let mut finished = Vec::new();
        let mut published = 0;
        let mut first_error = None;
        for (r, entry) in results.into_iter().zip(&raw) {
            match r {
                Sent::Published(topic) if first_error.is_none() => {
                    self.observer.on_published(&topic);
                    published += 1;
                    finished.push(format!("A{entry}"));
                }
                Sent::Park(why) if first_error.is_none() => {
                    tracing::error!(bucket, reason = %why,
                        "outbox entry can never be published: parked (see docs/operations.md)");
                    self.observer.on_parked();
                    finished.push(format!("P{entry}"));
                }
                Sent::Retry(why) => {
                    first_error.get_or_insert(why);
                }
                // Published or parkable after a failure: done again next round, in order.
                Sent::Published(_) | Sent::Park(_) => {}
            }
        }
        let done = finished.len();
        // Removed (and parked) by the next pump of this bucket (the next drain or sweep).
        self.set_acked(bucket, finished);
        if let Some(e) = first_error {
            tracing::warn!(bucket, error = %e, published, "outbox publish failed; will retry");
            self.observer.on_error();
        }
        Ok((done, raw.len()))
    }

    fn take_acked(&self, bucket: u16) -> Vec<String> {
        std::mem::take(&mut *self.acked[bucket as usize].lock())
    }

    fn set_acked(&self, bucket: u16, entries: Vec<String>) {
        *self.acked[bucket as usize].lock() = entries;
    }

    async fn release(&self, bucket: u16) -> Result<(), StoreError> {
        let mut call = crate::conn::evalsha(&self.release, &[self.store.keys().lease(bucket)]);
        call.arg(&self.owner);
        let _: i64 = self.store.conn().script(&self.release, call, None).await?;
        Ok(())
    }
}
