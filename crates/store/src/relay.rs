//! The outbox relay: publishes what [`Store::apply`](crate::Store::apply) appended.
//!
//! For each bucket with pending entries: take the bucket's lease (so two replicas do not both
//! drain it), read up to [`BATCH`] entries oldest first, publish them all (the idempotent
//! producer keeps their order per partition), wait for every acknowledgement, then remove
//! exactly the acknowledged prefix — checked entry by entry, so a lost lease can cause a
//! re-send (same `event_id`, dropped by consumers) but never a loss.
//!
//! Round trips: removing the acknowledged prefix is folded into the *next* script on the same
//! bucket — a commit of this process (below) or the relay's next read (one script: remove what
//! was acknowledged, renew the lease, read what follows) — so a drain costs at most one round
//! trip. Entries acknowledged last in a burst are removed by the next sweep (within
//! [`SWEEP_IDLE`]) or by the drain at shutdown; a crash before that re-sends them (same
//! `event_id`s, dropped by consumers).
//!
//! **Hand-off** (no read at all): while a relay runs, the commits of its process tell the commit
//! script how many entries at the head of the bucket's outbox this relay already holds (handed
//! to it or read, not yet removed), and carry the removal of the entries it has finished. When
//! the outbox holds nothing else and no other relay holds the lease, the script takes the lease
//! and answers "handed": the commit gives its entries to the relay, which publishes them
//! without reading them back, and their removal rides on the next script that touches the
//! bucket (a commit or a pump). Otherwise (another process's entries, an unknown earlier
//! commit, another relay's lease) the entries wait for a pump as before. A commit with outbox
//! entries and the relay's pump of the same bucket take turns (one lock per bucket in the
//! process), so what the relay holds is exactly known when a script runs: nothing is read
//! twice, and entries are published in outbox order. When a removal finds the head not as the
//! relay believed (another relay took the bucket over), the relay forgets what it holds and
//! reads the bucket from its head again: re-sends, never a loss.
//!
//! The relay wakes when this process appends to the outbox and then drains just the buckets
//! this process appended to, and sweeps all buckets (entries left by a crashed or other replica,
//! and the acknowledged tail of a burst) every [`SWEEP_IDLE`] — every [`SWEEP_BUSY`] while its
//! pumps meet entries it was not handed or another relay's lease (other replicas at work).
//! Buckets are drained side by side (each in order). On shutdown it keeps draining until the
//! outbox is empty or the drain deadline passes.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use huleedu_kafka::Producer;
use huleedu_service::backoff::Backoff;
use redis::Script;
use tokio_util::sync::CancellationToken;

use crate::{OutboxEntry, Store, StoreError, BUCKETS};

/// How a finished entry is named to the script that removes it: `A` (published) or `P` (to
/// park), its length, `:`, and its first [`TOKEN_PREFIX`] bytes — which hold its header and its
/// envelope's `event_id`, unique per entry — instead of the whole entry (megabytes for a large
/// batch's command, sent back to Redis only to be compared).
pub(crate) fn done_token(kind: char, entry: &str) -> String {
    let bytes = entry.as_bytes();
    let mut end = bytes.len().min(TOKEN_PREFIX);
    while !entry.is_char_boundary(end) {
        end -= 1;
    }
    format!("{kind}{}:{}", bytes.len(), &entry[..end])
}

/// Bytes of an entry a [`done_token`] carries.
const TOKEN_PREFIX: usize = 256;

/// Most entries published per bucket per round.
pub const BATCH: usize = 256;

/// How often a relay sweeps every bucket (one `LLEN` per bucket, and a pump for each bucket
/// that holds entries) while it works alone: its own process's entries do not wait for a sweep
/// (they are handed over or drained when committed), so a sweep only finds the acknowledged
/// tail of a burst (removed late is harmless) or a crashed replica's entries (which wait for
/// its [`LEASE_TTL`] anyway). At 250 ms, sweeps were about a third of a Redis round trip per
/// transition in the benchmark.
pub const SWEEP_IDLE: Duration = Duration::from_secs(1);

/// How often a relay sweeps while its last pump met entries it was not handed or a bucket
/// leased by another relay: other replicas commit to buckets this relay holds (their entries
/// wait for its pump) or hold buckets this process commits to, and a sweep is what moves
/// entries between them.
pub const SWEEP_BUSY: Duration = Duration::from_millis(250);

/// The first retry after a failed round (then doubling up to 2 s).
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// How long a relay's lease on a bucket lasts unless renewed (by its reads and by the commits
/// that hand it entries).
const LEASE_TTL: Duration = Duration::from_secs(10);

/// Lua shared by the commit script and the pump: `remove_finished(outbox, parked, from, to)`
/// removes the entries named by `ARGV[from..=to]` ([`done_token`]s, oldest first) from the head
/// of `outbox` while they are there, checked one by one, moving the 'P' ones to `parked`; true
/// when every one was at the head.
macro_rules! remove_finished_lua {
    () => {
        r#"
local function remove_finished(outbox, parked, from, to)
  for j = from, to do
    local token = ARGV[j]
    local colon = string.find(token, ':', 2, true)
    local prefix = string.sub(token, colon + 1)
    local head = redis.call('LINDEX', outbox, 0)
    if head == false or string.len(head) ~= tonumber(string.sub(token, 2, colon - 1))
        or string.sub(head, 1, string.len(prefix)) ~= prefix then
      return false
    end
    redis.call('LPOP', outbox)
    if string.sub(token, 1, 1) == 'P' then
      redis.call('RPUSH', parked, head)
    end
  end
  return true
end
"#
    };
}
pub(crate) use remove_finished_lua;

const PUMP_LUA: &str = concat!(
    remove_finished_lua!(),
    r#"
-- KEYS[1] lease, KEYS[2] outbox, KEYS[3] parked; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] most
-- entries, ARGV[4] entries this relay holds at the head after the removals (not to be read
-- again), ARGV[5..] the entries this relay finished, oldest first, as done tokens: 'A'
-- (published and acknowledged) or 'P' (can never be published: park it), length, ':', prefix.
-- nil when another relay holds the lease (nothing changed). Otherwise: remove those entries
-- while they are at the head (checked one by one), parking the 'P' ones, take or renew the
-- lease, and answer {intact, entries...}: the entries after the held ones; intact '0' when a
-- removal did not find its entry at the head, and then the entries from the head.
local holder = redis.call('GET', KEYS[1])
if holder ~= false and holder ~= ARGV[1] then
  return false
end
local intact = '0'
if remove_finished(KEYS[2], KEYS[3], 5, #ARGV) then intact = '1' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
local from = 0
if intact == '1' then from = tonumber(ARGV[4]) end
local out = redis.call('LRANGE', KEYS[2], from, from + tonumber(ARGV[3]) - 1)
table.insert(out, 1, intact)
return out
"#
);

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

/// What one relay holds of each bucket's outbox, shared with the commits of its process while
/// it runs (see "Hand-off" in the module docs).
pub(crate) struct Hands {
    /// The relay's lease owner.
    pub(crate) owner: String,
    pub(crate) lease_ttl: Duration,
    buckets: Vec<tokio::sync::Mutex<Hand>>,
    /// Buckets given entries by a commit since the relay last looked (bit mask).
    handed: AtomicU32,
    /// Entries handed off by commits (a counter for the relay's observer).
    handed_off: AtomicU64,
}

/// One bucket's part of [`Hands`]: the entries at the head of its outbox this relay holds, in
/// outbox order — queued, being published, then finished and waiting for their removal.
#[derive(Debug, Default)]
pub(crate) struct Hand {
    /// Given to the relay (handed off by a commit or read by a pump), not yet being published.
    queue: VecDeque<String>,
    /// Being published.
    in_flight: usize,
    /// Finished ([`done_token`]s: 'A' published, 'P' to park), oldest first: removed from
    /// the head of the outbox by the next script on the bucket.
    pub(crate) done: Vec<String>,
    /// Bumped when the relay forgets what it holds: the results of publishes started before
    /// are not recorded.
    epoch: u64,
}

impl Hand {
    /// Entries at the head of the outbox held by the relay and not finished (they stay there
    /// after the finished ones are removed).
    pub(crate) fn held(&self) -> usize {
        self.queue.len() + self.in_flight
    }

    /// The outbox's head is not what the relay believed (another relay took the bucket over):
    /// forget everything; the next pump reads the bucket from its head.
    pub(crate) fn lost_track(&mut self) {
        self.queue.clear();
        self.in_flight = 0;
        self.done.clear();
        self.epoch += 1;
    }
}

impl Hands {
    fn new(owner: String, lease_ttl: Duration) -> Self {
        Self {
            owner,
            lease_ttl,
            buckets: (0..BUCKETS).map(|_| Default::default()).collect(),
            handed: AtomicU32::new(0),
            handed_off: AtomicU64::new(0),
        }
    }

    pub(crate) fn bucket(&self, bucket: u16) -> &tokio::sync::Mutex<Hand> {
        &self.buckets[bucket as usize]
    }

    /// A commit's entries, handed to the relay (called with the bucket's lock held).
    pub(crate) fn hand_over(&self, hand: &mut Hand, bucket: u16, entries: Vec<String>) {
        self.handed_off
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        hand.queue.extend(entries);
        self.handed.fetch_or(1 << bucket, Ordering::AcqRel);
    }
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
    /// Entries a commit handed straight to the relay (published without being read back).
    fn on_handed_off(&self, _entries: u64) {}
}

/// Records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRelayObserver;
impl RelayObserver for NoRelayObserver {}

/// Publishes outbox entries, in order, at least once each.
pub struct OutboxRelay<O = NoRelayObserver> {
    store: Store,
    producer: Producer,
    /// Sweep intervals: alone, and with other relays at work ([`SWEEP_IDLE`], [`SWEEP_BUSY`]).
    sweep_idle: Duration,
    sweep_busy: Duration,
    /// A pump met entries this relay was not handed, or another relay's lease, since the
    /// relay last looked.
    crowded: AtomicBool,
    drain_timeout: Duration,
    pump: Arc<Script>,
    release: Arc<Script>,
    /// What this relay holds of each bucket (shared with the store's commits while it runs),
    /// with the relay's lease owner and lease time-to-live.
    hands: Arc<Hands>,
    observer: O,
}

impl<O> std::fmt::Debug for OutboxRelay<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("owner", &self.hands.owner)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay<NoRelayObserver> {
    pub fn new(store: Store, producer: Producer) -> Self {
        let owner = store.replica_id().to_owned();
        Self {
            store,
            producer,
            hands: Arc::new(Hands::new(owner, LEASE_TTL)),
            sweep_idle: SWEEP_IDLE,
            sweep_busy: SWEEP_BUSY,
            crowded: AtomicBool::new(false),
            drain_timeout: Duration::from_secs(10),
            pump: Arc::new(Script::new(PUMP_LUA)),
            release: Arc::new(Script::new(RELEASE_LUA)),
            observer: NoRelayObserver,
        }
    }
}

impl<O: RelayObserver> OutboxRelay<O> {
    pub fn with_observer<O2: RelayObserver>(self, observer: O2) -> OutboxRelay<O2> {
        OutboxRelay {
            store: self.store,
            producer: self.producer,
            sweep_idle: self.sweep_idle,
            sweep_busy: self.sweep_busy,
            crowded: self.crowded,
            drain_timeout: self.drain_timeout,
            pump: self.pump,
            release: self.release,
            hands: self.hands,
            observer,
        }
    }

    /// The owner of this relay's leases. Default: the store's [`Store::replica_id`]
    /// (`REPLICA_ID`), so a restart under the same identity takes its buckets back at once.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.hands = Arc::new(Hands::new(owner.into(), self.hands.lease_ttl));
        self
    }

    /// Sweep for entries this process was not told about every `every`, whatever the sweeps
    /// find (default: [`SWEEP_IDLE`], [`SWEEP_BUSY`] while other relays are at work).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.sweep_idle = every;
        self.sweep_busy = every;
        self
    }

    /// Relay until `shutdown` is cancelled, then drain what is left (bounded).
    pub async fn run(self, shutdown: CancellationToken) {
        // The commits of this process hand their entries to this relay while it runs (the
        // first relay of a store; the claim ends when this future ends or is dropped).
        let _claim = self.store.claim_hand_off(self.hands.clone());
        let notify = self.store.outbox_notify();
        let mut failures = 0u32;
        // The first pass is a full sweep (entries left by an earlier run).
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            let result = if failures > 0 || now >= next_sweep {
                next_sweep = now + self.sweep_idle;
                // The sweep covers whatever was appended up to now.
                self.store.take_dirty_buckets();
                self.round().await
            } else {
                let handed = self.hands.handed.swap(0, Ordering::AcqRel);
                self.round_buckets(self.store.take_dirty_buckets(), handed)
                    .await
            };
            if self.crowded.swap(false, Ordering::Relaxed) {
                next_sweep = next_sweep.min(now + self.sweep_busy);
            }
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
                Backoff::new(RETRY_FIRST, Duration::from_secs(2)).delay(failures)
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
        let handed = self.hands.handed.swap(0, Ordering::AcqRel);
        self.round_buckets(mask, handed).await
    }

    /// Read and publish the buckets of `read` (bit `b` = bucket `b`), and publish what commits
    /// handed over in those of `handed`, side by side, each until it is empty; returns how
    /// many entries were published (the first error, if any).
    async fn round_buckets(&self, read: u32, handed: u32) -> Result<usize, StoreError> {
        let n = self.hands.handed_off.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.observer.on_handed_off(n);
        }
        let drains = (0..BUCKETS)
            .filter(|b| (read | handed) & (1 << b) != 0)
            .map(|b| self.drain_bucket_fully(b, read & (1 << b) != 0));
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

    /// Publish what this relay holds of `bucket`; with `read`, read the bucket (up to
    /// [`BATCH`] entries at a time) and publish that too, until it is empty.
    async fn drain_bucket_fully(&self, bucket: u16, mut read: bool) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            if read {
                read = self.pump(bucket).await? == BATCH;
            }
            let (finished, failed) = self.publish_held(bucket).await;
            total += finished;
            if !read || failed {
                return Ok(total);
            }
        }
    }

    /// One round trip: remove what this relay has finished, take or renew the lease, read up
    /// to [`BATCH`] entries after the ones it holds; returns how many were read. With
    /// REDIS_WAIT_REPLICAS, nothing is published before the replicas confirm it (WAIT in the
    /// same round trip: the script's own write comes after every entry it reads, so their
    /// confirmation covers the entries).
    async fn pump(&self, bucket: u16) -> Result<usize, StoreError> {
        let keys = self.store.keys();
        // Commits of this bucket wait meanwhile: what the relay holds stays exact.
        let mut hand = self.hands.bucket(bucket).lock().await;
        let done = std::mem::take(&mut hand.done);
        let mut inv = crate::conn::evalsha(
            &self.pump,
            &[keys.lease(bucket), keys.outbox(bucket), keys.parked(bucket)],
        );
        inv.arg(&self.hands.owner)
            .arg(self.hands.lease_ttl.as_millis() as u64)
            .arg(BATCH)
            .arg(hand.held());
        for r in &done {
            inv.arg(r);
        }
        let answer: Option<Vec<String>> = match self
            .store
            .conn()
            .script(&self.pump, inv, self.store.confirm())
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Removed or not: unknown. Try again next time (the removal is content-checked).
                hand.done = done;
                return Err(e);
            }
        };
        let Some(mut answer) = answer else {
            // Another replica drains this bucket (and re-sends what it finds: same event ids).
            hand.done = done;
            self.crowded.store(true, Ordering::Relaxed);
            return Ok(0);
        };
        let intact = !answer.is_empty() && answer.remove(0) == "1";
        if !intact {
            // Read from the head: what this relay held is in `answer` again.
            hand.lost_track();
        }
        let read = answer.len();
        if read > 0 {
            // Entries no commit of this process handed over: another replica's, or its own
            // while another relay held the bucket.
            self.crowded.store(true, Ordering::Relaxed);
        }
        hand.queue.extend(answer);
        Ok(read)
    }

    /// Publish every entry queued for `bucket`, in order; returns (entries finished, whether
    /// one failed for now — it and those after it are queued again, in order).
    async fn publish_held(&self, bucket: u16) -> (usize, bool) {
        let (raw, epoch) = {
            let mut hand = self.hands.bucket(bucket).lock().await;
            let raw: Vec<String> = hand.queue.drain(..).collect();
            hand.in_flight += raw.len();
            (raw, hand.epoch)
        };
        if raw.is_empty() {
            return (0, false);
        }
        // Enqueue everything first, then await the acks in order.
        let sends: Vec<_> = raw
            .iter()
            .map(|r| {
                let entry = OutboxEntry::decode(r);
                let producer = self.producer.clone();
                async move {
                    match entry {
                        Ok(e) => match producer
                            .send_parts(&e.topic, Some(e.key.as_bytes()), e.payload.as_bytes(), &[])
                            .await
                        {
                            Ok(_) => Sent::Published(e.topic.into_owned()),
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
                        Err(why) => Sent::Park(why),
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
                    finished.push(done_token('A', entry));
                }
                Sent::Park(why) if first_error.is_none() => {
                    tracing::error!(bucket, reason = %why,
                        "outbox entry can never be published: parked (see docs/operations.md)");
                    self.observer.on_parked();
                    finished.push(done_token('P', entry));
                }
                Sent::Retry(why) => {
                    first_error.get_or_insert(why);
                }
                // Published or parkable after a failure: done again next round, in order.
                Sent::Published(_) | Sent::Park(_) => {}
            }
        }
        let n = finished.len();
        {
            let mut hand = self.hands.bucket(bucket).lock().await;
            if hand.epoch == epoch {
                hand.in_flight -= raw.len();
                // Removed (and parked) by the next script on this bucket (a commit or a pump).
                hand.done.extend(finished);
                for entry in raw.into_iter().skip(n).rev() {
                    hand.queue.push_front(entry);
                }
            }
        }
        if let Some(e) = &first_error {
            tracing::warn!(bucket, error = %e, published, "outbox publish failed; will retry");
            self.observer.on_error();
        }
        (n, first_error.is_some())
    }

    async fn release(&self, bucket: u16) -> Result<(), StoreError> {
        let mut call = crate::conn::evalsha(&self.release, &[self.store.keys().lease(bucket)]);
        call.arg(&self.hands.owner);
        let _: i64 = self.store.conn().script(&self.release, call, None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_token_names_an_entry_by_length_and_prefix() {
        assert_eq!(done_token('A', "short entry"), "A11:short entry");
        let long = format!(
            "{{\"t\":\"x\"}}\n{{\"event_id\":\"e\",\"d\":\"{}\"}}",
            "y".repeat(5000)
        );
        let token = done_token('P', &long);
        assert_eq!(token, format!("P{}:{}", long.len(), &long[..TOKEN_PREFIX]));
        // A multi-byte character across the cut: the prefix ends before it.
        let s = format!("{}é{}", "a".repeat(TOKEN_PREFIX - 1), "b".repeat(10));
        assert_eq!(
            done_token('A', &s),
            format!("A{}:{}", s.len(), "a".repeat(TOKEN_PREFIX - 1))
        );
    }
}
