//! The outbox relay: publishes what [`Store::apply`](crate::Store::apply) appended.
//!
//! For each bucket with pending entries: take the bucket's lease (so two replicas do not both
//! drain it), read up to [`BATCH`] entries oldest first, publish them all (the idempotent
//! producer keeps their order per partition), wait for every acknowledgement, then remove
//! exactly the acknowledged prefix — checked entry by entry, so a lost lease can cause a
//! re-send (same `event_id`, dropped by consumers) but never a loss.
//!
//! The relay wakes when this process appends to the outbox and then drains just the buckets
//! this process appended to; every `poll_interval` it sweeps all buckets (entries left by a
//! crashed or other replica). Buckets are drained side by side (each in order). On shutdown it
//! keeps draining until the outbox is empty or the drain deadline passes.

use std::sync::Arc;
use std::time::Duration;

use huleedu_kafka::Producer;
use redis::Script;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::keys::Keys;
use crate::{OutboxEntry, Store, StoreError, BUCKETS};

/// Most entries published per bucket per round.
pub const BATCH: usize = 256;

const LEASE_RANGE_LUA: &str = r#"
-- KEYS[1] lease, KEYS[2] outbox; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] most entries.
-- Take or renew the lease, then answer the oldest entries; nil when another relay holds it.
local holder = redis.call('GET', KEYS[1])
if holder ~= false and holder ~= ARGV[1] then
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
"#;

const POP_LUA: &str = r#"
-- KEYS[1] outbox; ARGV = the published entries, oldest first. Pop them while they match.
local n = 0
for i = 1, #ARGV do
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[i] then break end
  redis.call('LPOP', KEYS[1])
  n = n + 1
end
return n
"#;

/// Counters the relay reports (metrics).
pub trait RelayObserver: Send + Sync + 'static {
    fn on_published(&self, _topic: &str) {}
    fn on_error(&self) {}
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
    lease: Arc<Script>,
    pop: Arc<Script>,
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
        Self {
            store,
            producer,
            owner: Uuid::new_v4().to_string(),
            poll_interval: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            lease: Arc::new(Script::new(LEASE_RANGE_LUA)),
            pop: Arc::new(Script::new(POP_LUA)),
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
            lease: self.lease,
            pop: self.pop,
            observer,
        }
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
                (self.poll_interval * failures.min(8)).min(Duration::from_secs(2))
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
        let mut pipe = redis::pipe();
        for b in 0..BUCKETS {
            pipe.llen(keys.outbox(b));
        }
        let mut conn = self.store.conn();
        let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
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
        let mut conn = self.store.conn();
        // One round trip: take or renew the lease and read the oldest entries.
        let raw: Option<Vec<String>> = self
            .lease
            .key(keys.lease(bucket))
            .key(keys.outbox(bucket))
            .arg(&self.owner)
            .arg(self.lease_ttl.as_millis() as u64)
            .arg(BATCH)
            .invoke_async(&mut conn)
            .await?;
        let Some(raw) = raw else {
            return Ok((0, 0)); // another replica drains this bucket
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
                        Ok(e) => producer
                            .send_parts(&e.topic, Some(e.key.as_bytes()), e.payload.as_bytes(), &[])
                            .await
                            .map(|_| e.topic)
                            .map_err(|err| err.to_string()),
                        Err(err) => Err(format!("undecodable outbox entry: {err}")),
                    }
                }
            })
            .collect();
        // join_all polls in order, so the messages are enqueued in outbox order.
        let results = futures::future::join_all(sends).await;
        let mut acked = 0;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(topic) if first_error.is_none() => {
                    self.observer.on_published(&topic);
                    acked += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if acked > 0 {
            let mut inv = self.pop.prepare_invoke();
            inv.key(keys.outbox(bucket));
            for r in &raw[..acked] {
                inv.arg(r);
            }
            let popped: usize = inv.invoke_async(&mut conn).await?;
            if popped < acked {
                tracing::debug!(
                    bucket,
                    popped,
                    acked,
                    "another relay removed part of the batch"
                );
            }
        }
        if let Some(e) = first_error {
            tracing::warn!(bucket, error = %e, published = acked, "outbox publish failed; will retry");
            self.observer.on_error();
        }
        Ok((acked, raw.len()))
    }

    async fn release(&self, bucket: u16) -> Result<(), StoreError> {
        let key = self.store.keys().lease(bucket);
        let mut conn = self.store.conn();
        let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        if holder.as_deref() == Some(self.owner.as_str()) {
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
        }
        Ok(())
    }
}
