//! Versioned state, the atomic apply step and outbox entries.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::conn::{evalsha, Confirm, Conn};
use crate::keys::{bucket_of, fnv1a, Keys};
use crate::recent::Recent;
use crate::relay::Hands;
use crate::RedisSettings;

/// Redis failed or answered something unexpected. Always transient for a consumer: retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Setup(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    /// Written on the master, but fewer replicas than `REDIS_WAIT_REPLICAS` confirmed it in
    /// time: it may vanish in a failover, so it does not count (the caller retries; a dedup
    /// marker decides whether the retry changes anything).
    #[error("not confirmed by REDIS_WAIT_REPLICAS={wanted} replicas within REDIS_WAIT_TIMEOUT_MS={timeout_ms} ({confirmed} confirmed)")]
    Unconfirmed {
        wanted: u32,
        confirmed: u32,
        timeout_ms: u64,
    },
}

/// Why Redis did not answer a [`Store::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisProblem {
    /// Redis answered but refused this client, or the TLS handshake failed: waiting will not
    /// help, a setting is wrong.
    #[error("{0}")]
    Refused(String),
    /// Redis did not answer (down, restarting, network): it may come back.
    #[error("redis unreachable: {0}")]
    Unreachable(String),
}

impl RedisProblem {
    fn classify(e: &StoreError, url: &str) -> Self {
        let StoreError::Redis(r) = e else {
            return RedisProblem::Unreachable(format!("REDIS_URL {url}: {e}"));
        };
        let text = r.to_string();
        let lower = text.to_ascii_lowercase();
        if r.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(r.code(), Some("WRONGPASS" | "NOAUTH"))
            || lower.contains("wrongpass")
            || lower.contains("noauth")
        {
            RedisProblem::Refused(format!(
                "REDIS_URL {url}: authentication failed: check the user and password of REDIS_URL (or REDIS_PASSWORD) ({text})"
            ))
        } else if lower.contains("certificate")
            || lower.contains("handshake")
            || lower.contains("tls")
        {
            RedisProblem::Refused(format!(
                "REDIS_URL {url}: TLS handshake failed: check REDIS_TLS_CA_FILE and the host of REDIS_URL ({text})"
            ))
        } else {
            RedisProblem::Unreachable(format!("REDIS_URL {url}: {text}"))
        }
    }
}

/// A batch's stored state: the service's fields and their version (0 = nothing stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    /// Field values, shared: a cached copy and the copies made from it after a commit hold the
    /// unchanged fields' text once, so a large field costs nothing until it changes.
    pub fields: HashMap<String, Arc<str>>,
}

/// One bucket of an index ([`Store::index_summary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSummary {
    pub bucket: u16,
    pub count: u64,
    pub lowest: Option<f64>,
    /// The sum of the scores (0 unless asked for).
    pub sum: f64,
}

/// One bucket's outbox ([`Store::outbox_heads`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxHead {
    pub bucket: u16,
    pub entries: u64,
    /// The oldest entry's event time.
    pub oldest: Option<huleedu_contracts::Timestamp>,
}

/// The event time of an outbox entry: its payload's envelope `event_timestamp`.
pub fn entry_time(entry: &str) -> Option<huleedu_contracts::Timestamp> {
    #[derive(Deserialize)]
    struct Stamped {
        event_timestamp: huleedu_contracts::Timestamp,
    }
    let e = OutboxEntry::decode(entry).ok()?;
    serde_json::from_str::<Stamped>(&e.payload)
        .ok()
        .map(|s| s.event_timestamp)
}

/// One message waiting in the outbox. The payload already holds its final `event_id`.
///
/// Stored as a one-line JSON header with the topic and key, a newline, then the payload as it
/// is (`{"t":"<topic>","k":"<key>"}\n<payload>`): the payload — megabytes for a large batch —
/// is neither escaped on the way in nor unescaped on the way out. Entries written before this
/// layout (one JSON object `{"t":…,"k":…,"p":"<escaped payload>"}`, which never holds a raw
/// newline) are still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "k")]
    pub key: String,
    /// The message value (UTF-8 JSON for every event this project emits).
    #[serde(rename = "p")]
    pub payload: String,
}

/// An outbox entry as read back: borrowed from the stored text where it can be.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredEntry<'a> {
    pub topic: Cow<'a, str>,
    pub key: Cow<'a, str>,
    pub payload: Cow<'a, str>,
}

impl OutboxEntry {
    pub fn new(
        topic: impl Into<String>,
        key: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            payload: payload.into(),
        }
    }

    /// The stored text (see the type's docs).
    pub fn encode(&self) -> String {
        #[derive(Serialize)]
        struct Header<'a> {
            t: &'a str,
            k: &'a str,
        }
        let header = serde_json::to_string(&Header {
            t: &self.topic,
            k: &self.key,
        })
        .expect("strings serialize");
        let mut out = String::with_capacity(header.len() + 1 + self.payload.len());
        out.push_str(&header);
        out.push('\n');
        out.push_str(&self.payload);
        out
    }

    /// Read a stored entry (either layout); the error says what is wrong with it.
    pub fn decode(stored: &str) -> Result<StoredEntry<'_>, String> {
        #[derive(Deserialize)]
        struct Header<'a> {
            #[serde(borrow)]
            t: Cow<'a, str>,
            #[serde(borrow)]
            k: Cow<'a, str>,
        }
        match stored.split_once('\n') {
            Some((header, payload)) => {
                let h: Header<'_> = serde_json::from_str(header)
                    .map_err(|e| format!("bad outbox entry header: {e}"))?;
                Ok(StoredEntry {
                    topic: h.t,
                    key: h.k,
                    payload: Cow::Borrowed(payload),
                })
            }
            None => {
                let e: OutboxEntry = serde_json::from_str(stored)
                    .map_err(|e| format!("undecodable outbox entry: {e}"))?;
                Ok(StoredEntry {
                    topic: Cow::Owned(e.topic),
                    key: Cow::Owned(e.key),
                    payload: Cow::Owned(e.payload),
                })
            }
        }
    }
}

/// A change to a per-bucket sorted-set index (for example phase deadlines), committed with the
/// state. The index lives in the batch's bucket: see [`Store::index_members_due`].
#[derive(Debug, Clone, PartialEq)]
pub enum IndexOp {
    /// Add or move `member` (usually the batch id) to `score`.
    Upsert {
        index: String,
        member: String,
        score: f64,
    },
    /// Remove `member`.
    Remove { index: String, member: String },
}

/// Everything one handled event changes, committed at once by [`Store::apply`].
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    /// The batch whose state changes (decides the bucket of every key).
    pub batch_id: String,
    /// The version read before deciding; the commit fails with `Conflict` if it moved.
    pub expected_version: u64,
    /// Dedup id (usually the event id); `None` when the change is not driven by an event.
    pub dedup_id: Option<String>,
    /// How long the dedup marker lives.
    pub dedup_ttl: Duration,
    /// State fields to write. Empty = state unchanged (version not bumped).
    pub set_fields: Vec<(String, String)>,
    /// TTL of the state hash, refreshed on every write; `None` = kept forever.
    pub state_ttl: Option<Duration>,
    /// Index updates.
    pub index_ops: Vec<IndexOp>,
    /// Messages to publish, in order.
    pub outbox: Vec<OutboxEntry>,
}

/// How often [`Store::commit`] decides again after version conflicts before it gives up
/// ([`Committed::Contended`]: the caller retries later, e.g. a consumer's transient failure).
pub const COMMIT_ATTEMPTS: u32 = 16;

/// What a decision wants written: an [`ApplyRequest`] without the parts [`Store::commit`]
/// fills in (batch, expected version, dedup marker).
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// State fields to write. Empty = state unchanged (the dedup marker is still recorded).
    pub set_fields: Vec<(String, String)>,
    /// TTL of the state hash, refreshed on every write; `None` = kept forever.
    pub state_ttl: Option<Duration>,
    /// Index updates.
    pub index_ops: Vec<IndexOp>,
    /// Messages to publish, in order.
    pub outbox: Vec<OutboxEntry>,
}

/// A decision made by [`Store::commit`]'s `decide`, carrying what the caller wants back (`D`).
#[derive(Debug)]
pub enum Decided<D> {
    /// Write this change.
    Write(Change, D),
    /// Nothing to write.
    Nothing(D),
}

/// The answer of [`Store::commit`].
#[derive(Debug)]
pub enum Committed<D> {
    /// The change is committed; the state now has `version`.
    Applied { version: u64, decided: D },
    /// The decision wrote nothing (made on freshly read state).
    Unchanged(D),
    /// The event's dedup marker exists: handled before, nothing changed.
    AlreadyApplied,
    /// The state kept changing under the decision [`COMMIT_ATTEMPTS`] times.
    Contended { current_version: u64 },
}

/// The answer of [`Store::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Committed; the state now has this version.
    Applied { version: u64 },
    /// The dedup marker exists: this event was handled before. Nothing changed.
    AlreadyApplied,
    /// Someone else changed the state since it was read. Nothing changed: read and decide again.
    Conflict { current_version: u64 },
}

const APPLY_LUA: &str = concat!(
    crate::relay::remove_finished_lua!(),
    r#"
-- KEYS[1] state hash, KEYS[2] dedup marker, KEYS[3] outbox list, KEYS[4] outbox lease,
-- KEYS[5] parked list, KEYS[6..] index sets
-- ARGV: expected_version, dedup_ttl_ms, state_ttl_ms, has_dedup, n_fields, n_outbox, n_index,
--       hand-off owner ('' = none), lease ttl ms, held, n_done,
--       field/value pairs..., outbox entries..., index ops (op, score, member)..., done entries...
-- Returns {status, version, handed, intact}.
local nf, no, ni, nd = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[11])
-- First, whatever this commit's decision: remove the entries the relay of this process has
-- finished ('A' published, 'P' to park), while they are at the head, checked one by one.
local done_from = 12 + 2 * nf + no + 3 * ni
local intact = 0
if remove_finished(KEYS[3], KEYS[5], done_from, done_from + nd - 1) then intact = 1 end
local expected = tonumber(ARGV[1])
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return {'already', 0, 0, intact}
end
local current = tonumber(redis.call('HGET', KEYS[1], '_v') or '0')
if current ~= expected then
  return {'conflict', current, 0, intact}
end
local i = 12
local version = current
if nf > 0 then
  version = current + 1
  local args = {'_v', version}
  for _ = 1, nf do
    args[#args + 1] = ARGV[i]
    args[#args + 1] = ARGV[i + 1]
    i = i + 2
  end
  redis.call('HSET', KEYS[1], unpack(args))
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
-- Hand-off: when the outbox holds nothing but the entries this process's relay already has
-- (ARGV[10] of them, at the head) and no other relay holds the lease, the new entries go to
-- that relay straight from this answer: it publishes them without reading them back.
local handed = 0
if no > 0 and ARGV[8] ~= '' and intact == 1 then
  local holder = redis.call('GET', KEYS[4])
  if (holder == false or holder == ARGV[8])
      and redis.call('LLEN', KEYS[3]) == tonumber(ARGV[10]) then
    redis.call('SET', KEYS[4], ARGV[8], 'PX', tonumber(ARGV[9]))
    handed = 1
  end
end
for _ = 1, no do
  redis.call('RPUSH', KEYS[3], ARGV[i])
  i = i + 1
end
for k = 1, ni do
  local op, score, member = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'u' then
    redis.call('ZADD', KEYS[5 + k], score, member)
  else
    redis.call('ZREM', KEYS[5 + k], member)
  end
  i = i + 3
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
end
return {'applied', version, handed, intact}
"#
);

const LOAD_CHECKED_LUA: &str = r#"
-- KEYS[1] state hash, KEYS[2] dedup marker; ARGV[1] '1' when a dedup id is given.
-- Returns {'1'} when the event was applied before, else {'0', field, value, ...}.
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return {'1'}
end
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, '0')
return all
"#;

pub(crate) fn script_names() -> Vec<(String, &'static str)> {
    vec![
        (Script::new(APPLY_LUA).get_hash().to_owned(), "commit"),
        (Script::new(LOAD_CHECKED_LUA).get_hash().to_owned(), "load"),
    ]
}

/// The answer of [`Store::load_checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The dedup marker exists: the event was handled before.
    AlreadyApplied,
    /// The state as stored now.
    State(Versioned),
}

/// Most batch states kept in a process's [`Store`] cache, and their total size; one state may
/// take a quarter of it (a batch of the largest size a message allows keeps its copy).
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 64 << 20;
/// A cached state older than this is not used (read again).
const CACHE_MAX_AGE: Duration = Duration::from_secs(60);
/// Turns shared by the batches of a process's commits (see `Store::turns`).
const COMMIT_TURNS: usize = 256;
/// Most pending members of a watched index kept for [`Store::take_index_feed`].
const FEED_MAX: usize = 10_000;

/// The states this process last read or wrote, with their versions, least recently used out
/// first (bounded by entries and bytes). Only a hint: every commit is checked against the
/// stored version, so a stale entry costs a conflict and a fresh read, never a wrong commit.
struct StateCache(Recent<Arc<Versioned>>);

impl Default for StateCache {
    fn default() -> Self {
        Self(Recent::new(CACHE_ENTRIES, CACHE_BYTES, CACHE_MAX_AGE))
    }
}

fn size_of(v: &Versioned) -> usize {
    v.fields
        .iter()
        .map(|(k, v)| k.len() + v.len() + 48)
        .sum::<usize>()
        + 64
}

impl StateCache {
    fn get(&mut self, batch_id: &str) -> Option<Arc<Versioned>> {
        self.0.get(batch_id).cloned()
    }

    fn remove(&mut self, batch_id: &str) {
        self.0.remove(batch_id);
    }

    fn put(&mut self, batch_id: &str, state: Versioned) {
        if state.version == 0 {
            self.0.remove(batch_id); // nothing stored: nothing to remember
            return;
        }
        let bytes = size_of(&state);
        self.0.put(batch_id, Arc::new(state), bytes);
    }

    /// After a committed apply from `expected` to `version`: the new state, if the base is known.
    fn applied(&mut self, batch_id: &str, expected: u64, version: u64, set: &[(String, String)]) {
        let base = match self.0.peek(batch_id) {
            Some(e) if e.version == expected => Versioned::clone(e),
            // Committed on top of nothing: the new state is exactly what was written.
            None if expected == 0 => Versioned::default(),
            _ => {
                self.remove(batch_id);
                return;
            }
        };
        let mut next = base;
        for (f, v) in set {
            next.fields.insert(f.clone(), Arc::from(v.as_str()));
        }
        next.version = version;
        self.put(batch_id, next);
    }
}

/// In-process feed of members upserted into watched indexes (see [`Store::watch_index`]).
#[derive(Default)]
struct IndexFeed {
    watched: HashMap<String, HashSet<String>>,
}

/// The Redis side of a service: state, dedup, indexes, outbox. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    /// `REDIS_WAIT_REPLICAS`/`REDIS_WAIT_TIMEOUT_MS`, when commits must be confirmed.
    confirm: Option<Confirm>,
    /// `REDIS_URL` without its password, for messages.
    shown_url: Arc<str>,
    /// `REPLICA_ID`: the owner of this replica's outbox leases.
    replica_id: Arc<str>,
    keys: Keys,
    apply_script: Arc<Script>,
    load_checked_script: Arc<Script>,
    outbox_notify: Arc<Notify>,
    /// Buckets this process appended outbox entries to since the relay last looked (bit mask).
    dirty_buckets: Arc<AtomicU32>,
    /// The running relay that commits hand their entries to (`relay` module docs, "Hand-off").
    hands: Arc<Mutex<Option<Arc<Hands>>>>,
    /// [`Store::commit`]s of one batch in this process take turns (batches share
    /// [`COMMIT_TURNS`] turns by hash): they never conflict with each other.
    turns: Arc<Vec<tokio::sync::Mutex<()>>>,
    cache: Arc<Mutex<StateCache>>,
    feed: Arc<Mutex<IndexFeed>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store over a connection manager that connects lazily and reconnects on its own, so a
    /// service starts (and reports not-ready) while Redis is down.
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let conn = Conn::connect(settings)?;
        Ok(Self {
            conn,
            confirm: Confirm::from_settings(settings),
            shown_url: settings.redacted_url().into(),
            replica_id: settings.replica_id.as_str().into(),
            keys: Keys::new(&settings.key_prefix),
            apply_script: Arc::new(Script::new(APPLY_LUA)),
            load_checked_script: Arc::new(Script::new(LOAD_CHECKED_LUA)),
            outbox_notify: Arc::new(Notify::new()),
            dirty_buckets: Arc::new(AtomicU32::new(0)),
            hands: Arc::default(),
            turns: Arc::new((0..COMMIT_TURNS).map(|_| Default::default()).collect()),
            cache: Arc::new(Mutex::new(StateCache::default())),
            feed: Arc::new(Mutex::new(IndexFeed::default())),
        })
    }

    /// This replica's identity (`REPLICA_ID`): the owner of its outbox leases.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The key prefix this store writes under.
    pub fn key_prefix(&self) -> &str {
        self.keys.prefix()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The store's own Redis connection (either mode), for tools and tests that look at keys
    /// directly. Commands are routed by their first key in cluster mode.
    pub fn connection(&self) -> impl redis::aio::ConnectionLike + Clone + Send + Sync + 'static {
        self.conn.clone()
    }

    /// Replicas that must confirm a write (`REDIS_WAIT_REPLICAS`), if any.
    pub(crate) fn confirm(&self) -> Option<Confirm> {
        self.confirm
    }

    /// Woken after every apply that appended to the outbox (the relay waits on it).
    pub(crate) fn outbox_notify(&self) -> Arc<Notify> {
        self.outbox_notify.clone()
    }

    /// The buckets appended to since the last call (bit `b` = bucket `b`), cleared.
    pub(crate) fn take_dirty_buckets(&self) -> u32 {
        self.dirty_buckets.swap(0, Ordering::AcqRel)
    }

    /// Let commits hand their entries to this relay's `hands` until the returned claim is
    /// dropped; `None` (nothing changes) when another relay of this store has them.
    pub(crate) fn claim_hand_off(&self, hands: Arc<Hands>) -> Option<HandOffClaim> {
        let mut slot = self.hands.lock();
        if slot.is_some() {
            return None;
        }
        *slot = Some(hands.clone());
        Some(HandOffClaim {
            slot: self.hands.clone(),
            hands,
        })
    }

    /// The last state of `batch_id` this process read or committed, if it is recent. No I/O.
    /// Only a starting point for a decision that is committed with [`Store::apply`]: the
    /// version check catches a stale entry (another process changed the state meanwhile).
    pub fn cached(&self, batch_id: &str) -> Option<Arc<Versioned>> {
        self.cache.lock().get(batch_id)
    }

    /// Forget the cached state of `batch_id` (its next commit reads it again). For a caller
    /// that knows a large state will not be needed soon: its text need not wait out its age.
    pub fn forget(&self, batch_id: &str) {
        self.cache.lock().remove(batch_id);
    }

    /// From now on, remember the members that commits of this process upsert into `index`
    /// (every bucket), for [`Store::take_index_feed`].
    pub fn watch_index(&self, index: &str) {
        self.feed
            .lock()
            .watched
            .entry(index.to_owned())
            .or_default();
    }

    /// Members upserted into the watched `index` by this process since the last call. A hint
    /// for prompt work; the index itself stays the durable record (bounded: when too many pile
    /// up, the rest wait for a sweep of the index).
    pub fn take_index_feed(&self, index: &str) -> Vec<String> {
        self.feed
            .lock()
            .watched
            .get_mut(index)
            .map(|s| s.drain().collect())
            .unwrap_or_default()
    }

    /// Is Redis reachable? (readiness) One keyed command per bucket (`EXISTS` of its lease), so
    /// on a cluster it asks the master of every slot this service uses — and a command that
    /// finds a slot's master gone makes the client learn the new slot map. (A `PING` goes to
    /// the masters the client knew: after a failover it kept asking the dead one, and the
    /// services stayed not ready for 32 s on the new topology in a chaos run.)
    pub async fn ping(&self) -> Result<(), StoreError> {
        let cmds = (0..crate::BUCKETS)
            .map(|b| redis::Cmd::exists(self.keys.lease(b)))
            .collect();
        let _: Vec<bool> = self.conn.each(cmds).await?;
        Ok(())
    }

    /// [`Store::ping`] within `within`, with the failure explained for an operator: a refusal (wrong
    /// password or user, untrusted certificate) names the setting to fix; anything else is
    /// [`RedisProblem::Unreachable`] (Redis down or slow: it may come back).
    pub async fn check(&self, within: Duration) -> Result<(), RedisProblem> {
        match tokio::time::timeout(within, self.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RedisProblem::classify(&e, &self.shown_url)),
            Err(_) => Err(RedisProblem::Unreachable(format!(
                "REDIS_URL {}: no answer within {} ms",
                self.shown_url,
                within.as_millis()
            ))),
        }
    }

    /// The readiness check: [`Store::check`] within a second (the client's own reconnect
    /// retries would otherwise hold the probe for seconds), failures worded for `/readyz`.
    pub async fn ready(&self) -> Result<(), String> {
        self.check(Duration::from_secs(1))
            .await
            .map_err(|p| p.to_string())
    }

    /// Start-up check: a refusal (wrong credentials, untrusted certificate) is an error that
    /// should stop start-up; Redis merely down is logged, and the service starts not ready.
    pub async fn check_at_start(&self) -> Result<(), RedisProblem> {
        match self.check(Duration::from_secs(5)).await {
            Err(RedisProblem::Unreachable(why)) => {
                tracing::warn!("{why}; starting anyway (not ready until Redis answers)");
                Ok(())
            }
            other => other,
        }
    }

    /// Read a batch's state and version in one round trip.
    pub async fn load(&self, batch_id: &str) -> Result<Versioned, StoreError> {
        let mut c = self.conn.clone();
        let fields: HashMap<String, String> = match c.hgetall(self.keys.state(batch_id)).await {
            Ok(f) => f,
            Err(e) => {
                self.forget(batch_id);
                return Err(e.into());
            }
        };
        self.loaded(batch_id, fields)
    }

    fn loaded(
        &self,
        batch_id: &str,
        mut fields: HashMap<String, String>,
    ) -> Result<Versioned, StoreError> {
        let version = match fields.remove("_v") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                self.forget(batch_id);
                StoreError::Corrupt(format!("version {v:?} of batch {batch_id}"))
            })?,
        };
        let fields = fields.into_iter().map(|(f, v)| (f, v.into())).collect();
        let v = Versioned { version, fields };
        self.cache.lock().put(batch_id, v.clone());
        Ok(v)
    }

    /// Has `dedup_id` been applied for this batch, and if not, its state — in one round trip.
    pub async fn load_checked(
        &self,
        batch_id: &str,
        dedup_id: Option<&str>,
    ) -> Result<Checked, StoreError> {
        let mut call = evalsha(
            &self.load_checked_script,
            &[
                self.keys.state(batch_id),
                self.keys.dedup(batch_id, dedup_id.unwrap_or("-")),
            ],
        );
        call.arg(if dedup_id.is_some() { "1" } else { "0" });
        // With REDIS_WAIT_REPLICAS and a dedup id, the read waits for this process's earlier
        // writes too: a marker it wrote in a commit that was not confirmed (and is now being
        // retried) counts as "handled before" only once a replica has it.
        let confirm = self.confirm.filter(|_| dedup_id.is_some());
        let reply: Vec<String> = match self
            .conn
            .script(&self.load_checked_script, call, confirm)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.forget(batch_id);
                return Err(e);
            }
        };
        let mut it = reply.into_iter();
        match it.next().as_deref() {
            Some("1") => Ok(Checked::AlreadyApplied),
            Some("0") => {
                let mut fields = HashMap::new();
                while let (Some(f), Some(v)) = (it.next(), it.next()) {
                    fields.insert(f, v);
                }
                Ok(Checked::State(self.loaded(batch_id, fields)?))
            }
            other => Err(StoreError::Corrupt(format!(
                "load answered {other:?} for batch {batch_id}"
            ))),
        }
    }

    /// Commit a decision atomically: see [`ApplyRequest`] and [`ApplyOutcome`].
    pub async fn apply(&self, req: &ApplyRequest) -> Result<ApplyOutcome, StoreError> {
        let bucket = bucket_of(&req.batch_id);
        let mut keys = Vec::with_capacity(5 + req.index_ops.len());
        keys.push(self.keys.state(&req.batch_id));
        keys.push(
            self.keys
                .dedup(&req.batch_id, req.dedup_id.as_deref().unwrap_or("-")),
        );
        keys.push(self.keys.outbox(bucket));
        keys.push(self.keys.lease(bucket));
        keys.push(self.keys.parked(bucket));
        for op in &req.index_ops {
            let index = match op {
                IndexOp::Upsert { index, .. } | IndexOp::Remove { index, .. } => index,
            };
            keys.push(self.keys.index(bucket, index));
        }
        let entries: Vec<String> = req.outbox.iter().map(OutboxEntry::encode).collect();
        // With a relay running in this process, a commit with entries takes its turn on the
        // bucket (relay module docs, "Hand-off"): it carries the removal of what the relay has
        // finished and may hand its entries over.
        let hands = if entries.is_empty() {
            None
        } else {
            self.hands.lock().clone()
        };
        let mut hand = match &hands {
            Some(h) => Some(h.bucket(bucket).lock().await),
            None => None,
        };
        let (owner, lease_ttl, held, done) = match (&hands, hand.as_mut()) {
            (Some(h), Some(hand)) => (
                h.owner.as_str(),
                h.lease_ttl.as_millis() as u64,
                hand.held(),
                std::mem::take(&mut hand.done),
            ),
            _ => ("", 0, 0, Vec::new()),
        };
        let field_bytes: usize = req.set_fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        let entry_bytes: usize = entries.iter().map(String::len).sum();
        let done_bytes: usize = done.iter().map(String::len).sum();
        let mut inv = crate::conn::evalsha_sized(
            &self.apply_script,
            &keys,
            11 + 2 * req.set_fields.len() + entries.len() + 3 * req.index_ops.len() + done.len(),
            256 + field_bytes + entry_bytes + done_bytes + 64 * req.index_ops.len(),
        );
        inv.arg(req.expected_version)
            .arg(req.dedup_ttl.as_millis().max(1) as u64)
            .arg(
                req.state_ttl
                    .map(|t| t.as_millis().max(1) as u64)
                    .unwrap_or(0),
            )
            .arg(if req.dedup_id.is_some() { "1" } else { "0" })
            .arg(req.set_fields.len())
            .arg(entries.len())
            .arg(req.index_ops.len())
            .arg(owner)
            .arg(lease_ttl)
            .arg(held)
            .arg(done.len());
        for (f, v) in &req.set_fields {
            inv.arg(f).arg(v);
        }
        for e in &entries {
            inv.arg(e);
        }
        for op in &req.index_ops {
            match op {
                IndexOp::Upsert { member, score, .. } => inv.arg("u").arg(*score).arg(member),
                IndexOp::Remove { member, .. } => inv.arg("r").arg(0).arg(member),
            };
        }
        for d in &done {
            inv.arg(d);
        }
        // With REDIS_WAIT_REPLICAS, the answer counts only once the replicas confirm the
        // script's writes (WAIT in the same round trip); an already-applied answer is confirmed
        // too, so a redelivery of an unconfirmed commit waits for it before it counts.
        let (status, version, handed, intact): (String, u64, u8, u8) = match self
            .conn
            .script(&self.apply_script, inv, self.confirm)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Committed or not: unknown. Read again next time; the relay's removals are
                // content-checked, so they are simply tried again.
                if let Some(hand) = hand.as_mut() {
                    hand.done = done;
                }
                self.forget(&req.batch_id);
                return Err(e);
            }
        };
        if let Some(hand) = hand.as_mut() {
            if intact == 0 {
                hand.lost_track();
            }
        }
        let outcome = match status.as_str() {
            "applied" => ApplyOutcome::Applied { version },
            "already" => ApplyOutcome::AlreadyApplied,
            "conflict" => ApplyOutcome::Conflict {
                current_version: version,
            },
            other => {
                self.forget(&req.batch_id);
                return Err(StoreError::Corrupt(format!("apply answered {other:?}")));
            }
        };
        match outcome {
            ApplyOutcome::Applied { version } => {
                if !req.set_fields.is_empty() {
                    self.cache.lock().applied(
                        &req.batch_id,
                        req.expected_version,
                        version,
                        &req.set_fields,
                    );
                }
                self.feed_index_ops(&req.index_ops);
                if !entries.is_empty() {
                    match (&hands, hand.as_mut()) {
                        (Some(h), Some(hand)) if handed == 1 => {
                            h.hand_over(hand, bucket, entries);
                        }
                        _ => {
                            self.dirty_buckets
                                .fetch_or(1u32 << bucket, Ordering::AcqRel);
                        }
                    }
                    drop(hand);
                    self.outbox_notify.notify_one();
                }
            }
            ApplyOutcome::Conflict { .. } => self.forget(&req.batch_id),
            ApplyOutcome::AlreadyApplied => {}
        }
        Ok(outcome)
    }

    fn feed_index_ops(&self, ops: &[IndexOp]) {
        let mut feed = self.feed.lock();
        if feed.watched.is_empty() {
            return;
        }
        for op in ops {
            if let IndexOp::Upsert { index, member, .. } = op {
                if let Some(pending) = feed.watched.get_mut(index) {
                    if pending.len() < FEED_MAX {
                        pending.insert(member.clone());
                    }
                }
            }
        }
    }

    /// The one commit path of every service: read → decide → apply, deciding again on a
    /// version conflict (at most [`COMMIT_ATTEMPTS`] times).
    ///
    /// `decide` is the service's pure decision: the batch's state in, a [`Decided`] out (a
    /// change to write, or nothing to write). With `dedup` = (event id, marker TTL), an event
    /// whose dedup marker exists is answered [`Committed::AlreadyApplied`] (by the read, without
    /// deciding, or by the apply when a cached copy was decided on), and a written change
    /// records the marker in the same script.
    ///
    /// Round trips: one (the apply) when this process holds the batch's current state (it read
    /// or committed it last, [`Store::cached`]); otherwise one more, reading the state together
    /// with the dedup check. A stale copy only costs a version conflict and a fresh read; a
    /// decision to write nothing is trusted only when made on freshly read state.
    pub async fn commit<D, F>(
        &self,
        batch_id: &str,
        dedup: Option<(&str, Duration)>,
        decide: F,
    ) -> Result<Committed<D>, StoreError>
    where
        F: FnMut(&Versioned) -> Result<Decided<D>, StoreError>,
    {
        self.commit_from(batch_id, dedup, false, decide).await
    }

    /// [`Store::commit`] for an event that usually comes first for its batch (e.g. the batch
    /// becoming known): when this process holds no copy of the state, the first decision is
    /// made on the empty state (version 0) instead of a read — one round trip when the batch
    /// is new. If the state exists after all, the version check answers a conflict and the
    /// commit reads and decides again (one round trip more than [`Store::commit`]); a decision
    /// to write nothing on the guess is never trusted.
    pub async fn commit_likely_new<D, F>(
        &self,
        batch_id: &str,
        dedup: Option<(&str, Duration)>,
        decide: F,
    ) -> Result<Committed<D>, StoreError>
    where
        F: FnMut(&Versioned) -> Result<Decided<D>, StoreError>,
    {
        self.commit_from(batch_id, dedup, true, decide).await
    }

    /// The loop of [`Store::commit`]: the first decision on this process's copy of the state
    /// (or, `likely_new`, on the empty state when there is none), not trusted for "nothing to
    /// write"; then on freshly read state.
    async fn commit_from<D, F>(
        &self,
        batch_id: &str,
        dedup: Option<(&str, Duration)>,
        likely_new: bool,
        mut decide: F,
    ) -> Result<Committed<D>, StoreError>
    where
        F: FnMut(&Versioned) -> Result<Decided<D>, StoreError>,
    {
        // Two commits of one batch in this process (e.g. a consumer's and the scheduler's)
        // would decide on the same copy and one would pay a conflict, a read and a second
        // decision: they take turns instead. Other processes' commits still meet the version
        // check.
        let _turn = self.turns[fnv1a(batch_id) as usize % COMMIT_TURNS]
            .lock()
            .await;
        let mut recent = self.cached(batch_id);
        if likely_new && recent.is_none() {
            recent = Some(Arc::new(Versioned::default()));
        }
        let mut current_version = 0;
        for _ in 0..COMMIT_ATTEMPTS {
            let (current, fresh) = match recent.take() {
                Some(v) => (v, false),
                None => match self.load_checked(batch_id, dedup.map(|d| d.0)).await? {
                    Checked::AlreadyApplied => return Ok(Committed::AlreadyApplied),
                    Checked::State(v) => (Arc::new(v), true),
                },
            };
            match decide(&current)? {
                // Read the state (and the dedup marker) before trusting "nothing to do".
                Decided::Nothing(_) if !fresh => continue,
                Decided::Nothing(d) => return Ok(Committed::Unchanged(d)),
                Decided::Write(change, d) => {
                    let req = ApplyRequest {
                        batch_id: batch_id.to_owned(),
                        expected_version: current.version,
                        dedup_id: dedup.map(|(id, _)| id.to_owned()),
                        dedup_ttl: dedup.map(|(_, ttl)| ttl).unwrap_or_default(),
                        set_fields: change.set_fields,
                        state_ttl: change.state_ttl,
                        index_ops: change.index_ops,
                        outbox: change.outbox,
                    };
                    match self.apply(&req).await? {
                        ApplyOutcome::Applied { version } => {
                            return Ok(Committed::Applied {
                                version,
                                decided: d,
                            })
                        }
                        ApplyOutcome::AlreadyApplied => return Ok(Committed::AlreadyApplied),
                        ApplyOutcome::Conflict { current_version: v } => current_version = v,
                    }
                }
            }
        }
        Ok(Committed::Contended { current_version })
    }

    /// Has this dedup id been applied for this batch?
    pub async fn is_applied(&self, batch_id: &str, dedup_id: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.exists(self.keys.dedup(batch_id, dedup_id)).await?)
    }

    /// Members of `index` (in every bucket) whose score is at most `max_score`, oldest first,
    /// at most `limit` per bucket. Used to find due deadlines after a restart.
    pub async fn index_members_due(
        &self,
        index: &str,
        max_score: f64,
        limit: usize,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let cmds = (0..crate::BUCKETS)
            .map(|b| {
                let mut cmd = redis::cmd("ZRANGE");
                cmd.arg(self.keys.index(b, index))
                    .arg("-inf")
                    .arg(max_score)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .arg("WITHSCORES");
                cmd
            })
            .collect();
        let per_bucket: Vec<Vec<(String, f64)>> = self.conn.each(cmds).await?;
        let mut all: Vec<(String, f64)> = per_bucket.into_iter().flatten().collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(all)
    }

    /// The `limit` members of `index` with the highest scores at most `max_score` (all when
    /// `None`), highest first, from every bucket (at most `limit` read per bucket, one command
    /// per bucket). Members whose score equals `max_score` are all returned beyond `limit`, so
    /// that a caller paging with a (score, member) cursor never loses ties.
    pub async fn index_newest(
        &self,
        index: &str,
        max_score: Option<f64>,
        limit: usize,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let max = max_score.map_or_else(|| "+inf".to_owned(), |m| m.to_string());
        let cmds = (0..crate::BUCKETS)
            .map(|b| {
                let mut cmd = redis::cmd("ZRANGE");
                cmd.arg(self.keys.index(b, index))
                    .arg(&max)
                    .arg("-inf")
                    .arg("BYSCORE")
                    .arg("REV")
                    .arg("WITHSCORES");
                cmd
            })
            .collect::<Vec<_>>();
        // Ties at `max_score` first (unbounded: members changed in the same millisecond), then
        // at most `limit` below it.
        let cmds = match max_score {
            None => cmds
                .into_iter()
                .map(|mut c| {
                    c.arg("LIMIT").arg(0).arg(limit);
                    c
                })
                .collect(),
            Some(m) => (0..crate::BUCKETS)
                .flat_map(|b| {
                    let key = self.keys.index(b, index);
                    let mut ties = redis::cmd("ZRANGE");
                    ties.arg(&key)
                        .arg(m)
                        .arg(m)
                        .arg("BYSCORE")
                        .arg("WITHSCORES");
                    let mut below = redis::cmd("ZRANGE");
                    below
                        .arg(&key)
                        .arg(format!("({m}"))
                        .arg("-inf")
                        .arg("BYSCORE")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .arg("WITHSCORES");
                    [ties, below]
                })
                .collect(),
        };
        let per_cmd: Vec<Vec<(String, f64)>> = self.conn.each(cmds).await?;
        let mut all: Vec<(String, f64)> = per_cmd.into_iter().flatten().collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        Ok(all)
    }

    /// Remove the members of `index` (in every bucket) whose score is below `below`: entries
    /// of states that have expired. Answers how many went.
    pub async fn index_trim(&self, index: &str, below: f64) -> Result<u64, StoreError> {
        let cmds = (0..crate::BUCKETS)
            .map(|b| {
                let mut cmd = redis::cmd("ZREMRANGEBYSCORE");
                cmd.arg(self.keys.index(b, index))
                    .arg("-inf")
                    .arg(format!("({below}"));
                cmd
            })
            .collect();
        let removed: Vec<u64> = self.conn.each(cmds).await?;
        Ok(removed.iter().sum())
    }

    /// Per bucket: how many members `index` has and its lowest score (two commands per bucket,
    /// whatever the index's size); with `sum`, also the sum of its scores (that reads every
    /// member: keep such indexes to the batches that have something waiting).
    pub async fn index_summary(
        &self,
        index: &str,
        sum: bool,
    ) -> Result<Vec<IndexSummary>, StoreError> {
        let key = |b: u16| self.keys.index(b, index);
        let counts: Vec<u64> = self
            .conn
            .each(
                (0..crate::BUCKETS)
                    .map(|b| redis::Cmd::zcard(key(b)))
                    .collect(),
            )
            .await?;
        let last = if sum { -1 } else { 0 };
        let members: Vec<Vec<(String, f64)>> = self
            .conn
            .each(
                (0..crate::BUCKETS)
                    .map(|b| {
                        let mut cmd = redis::cmd("ZRANGE");
                        cmd.arg(key(b)).arg(0).arg(last).arg("WITHSCORES");
                        cmd
                    })
                    .collect(),
            )
            .await?;
        Ok(counts
            .into_iter()
            .zip(members)
            .enumerate()
            .map(|(b, (count, members))| IndexSummary {
                bucket: b as u16,
                count,
                lowest: members.first().map(|(_, s)| *s),
                sum: members.iter().map(|(_, s)| s).sum(),
            })
            .collect())
    }

    /// Per bucket: the entries waiting in its outbox and the oldest one's event time (its
    /// envelope's `event_timestamp`; `None` when the outbox is empty or the head is not an
    /// envelope).
    pub async fn outbox_heads(&self) -> Result<Vec<OutboxHead>, StoreError> {
        let lens: Vec<u64> = self
            .conn
            .each(
                (0..crate::BUCKETS)
                    .map(|b| redis::Cmd::llen(self.keys.outbox(b)))
                    .collect(),
            )
            .await?;
        let heads: Vec<Option<String>> = self
            .conn
            .each(
                (0..crate::BUCKETS)
                    .map(|b| redis::Cmd::lindex(self.keys.outbox(b), 0))
                    .collect(),
            )
            .await?;
        Ok(lens
            .into_iter()
            .zip(heads)
            .enumerate()
            .map(|(b, (entries, head))| OutboxHead {
                bucket: b as u16,
                entries,
                oldest: head.as_deref().and_then(entry_time),
            })
            .collect())
    }

    /// Remove `batch_id` from `index` outside of an apply (a stale entry whose state expired).
    pub async fn index_remove(&self, batch_id: &str, index: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c
            .zrem(self.keys.index(bucket_of(batch_id), index), batch_id)
            .await?;
        Ok(())
    }

    /// Number of entries waiting in all outboxes.
    pub async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.lists_len(|b| self.keys.outbox(b)).await
    }

    /// Outbox entries parked because they can never be published (see [`crate::relay`]).
    pub async fn parked_len(&self) -> Result<u64, StoreError> {
        self.lists_len(|b| self.keys.parked(b)).await
    }

    /// The parked entries (raw JSON), oldest first per bucket.
    pub async fn parked_entries(&self) -> Result<Vec<String>, StoreError> {
        let cmds = (0..crate::BUCKETS)
            .map(|b| redis::Cmd::lrange(self.keys.parked(b), 0, -1))
            .collect();
        let per_bucket: Vec<Vec<String>> = self.conn.each(cmds).await?;
        Ok(per_bucket.into_iter().flatten().collect())
    }

    async fn lists_len(&self, key: impl Fn(u16) -> String) -> Result<u64, StoreError> {
        let cmds = (0..crate::BUCKETS)
            .map(|b| redis::Cmd::llen(key(b)))
            .collect();
        let lens: Vec<u64> = self.conn.each(cmds).await?;
        Ok(lens.iter().sum())
    }
}

/// While held, commits hand their entries to one relay ([`Store::claim_hand_off`]).
pub(crate) struct HandOffClaim {
    slot: Arc<Mutex<Option<Arc<Hands>>>>,
    hands: Arc<Hands>,
}

impl Drop for HandOffClaim {
    fn drop(&mut self) {
        let mut slot = self.slot.lock();
        if slot.as_ref().is_some_and(|h| Arc::ptr_eq(h, &self.hands)) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(version: u64, size: usize) -> Versioned {
        Versioned {
            version,
            fields: HashMap::from([("s".to_owned(), "x".repeat(size).into())]),
        }
    }

    #[test]
    fn an_outbox_entry_keeps_its_payload_unescaped_and_reads_back() {
        let payload = r#"{"event_id":"e1","data":{"text":"a \"quoted\"\nline"}}"#;
        let e = OutboxEntry::new("huleedu.t.v1", "batch \"1\"\n", payload);
        let stored = e.encode();
        assert_eq!(
            stored,
            format!("{{\"t\":\"huleedu.t.v1\",\"k\":\"batch \\\"1\\\"\\n\"}}\n{payload}"),
            "a one-line header, then the payload byte for byte"
        );
        let back = OutboxEntry::decode(&stored).unwrap();
        assert_eq!(back.topic, "huleedu.t.v1");
        assert_eq!(back.key, "batch \"1\"\n");
        assert_eq!(back.payload, payload);
        assert!(matches!(back.payload, Cow::Borrowed(_)), "not copied");
    }

    #[test]
    fn an_outbox_entry_written_before_the_header_layout_still_reads() {
        let old =
            serde_json::to_string(&OutboxEntry::new("t", "k", "{\"event_id\":\"e\"}")).unwrap();
        let back = OutboxEntry::decode(&old).unwrap();
        assert_eq!(
            (&*back.topic, &*back.key, &*back.payload),
            ("t", "k", "{\"event_id\":\"e\"}")
        );
    }

    #[test]
    fn a_broken_outbox_entry_is_refused_with_a_reason() {
        for (stored, why) in [
            ("not an outbox entry", "undecodable outbox entry"),
            ("{\"t\":1}\n{}", "bad outbox entry header"),
        ] {
            let err = OutboxEntry::decode(stored).unwrap_err();
            assert!(err.starts_with(why), "{stored}: {err}");
        }
    }

    #[test]
    fn entry_time_reads_both_layouts() {
        let payload = r#"{"event_id":"e","event_timestamp":"2026-12-02T05:00:00.000001Z"}"#;
        let new = OutboxEntry::new("t", "k", payload).encode();
        let old = serde_json::to_string(&OutboxEntry::new("t", "k", payload)).unwrap();
        let want = huleedu_contracts::Timestamp::parse("2026-12-02T05:00:00.000001Z").unwrap();
        assert_eq!(entry_time(&new), Some(want));
        assert_eq!(entry_time(&old), Some(want));
        assert_eq!(entry_time("garbage"), None);
    }

    #[test]
    fn the_cache_lets_the_least_recently_used_state_go_first() {
        let mut c = StateCache::default();
        for i in 0..CACHE_ENTRIES {
            c.put(&format!("b{i}"), state(1, 10));
        }
        // b0 is used again: b1 is now the least recently used.
        assert!(c.get("b0").is_some());
        c.put("new", state(1, 10));
        assert!(c.get("b0").is_some(), "a state in use stays");
        assert!(c.get("b1").is_none(), "the least recently used one went");
        assert!(c.get("new").is_some());
        assert_eq!(c.0.len(), CACHE_ENTRIES);
    }

    #[test]
    fn states_too_old_to_be_used_leave_as_new_ones_come() {
        let mut c = StateCache::default();
        c.put("old", state(1, CACHE_BYTES / 8));
        c.0.backdate("old", CACHE_MAX_AGE);
        c.put("new", state(1, 10));
        assert!(c.0.peek("old").is_none(), "the expired state was dropped");
        assert!(c.0.weight() < CACHE_BYTES / 8);
        assert!(c.get("new").is_some());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let mut c = StateCache::default();
        let big = CACHE_BYTES / 20;
        for i in 0..40 {
            c.put(&format!("b{i}"), state(1, big));
            assert!(c.0.weight() <= CACHE_BYTES, "{} bytes", c.0.weight());
        }
        assert!(c.get("b39").is_some() && c.get("b0").is_none());
        // Too big to be worth keeping, and nothing stored (version 0): not kept.
        c.put("huge", state(1, CACHE_BYTES / 3));
        c.put("none", state(0, 10));
        assert!(c.get("huge").is_none() && c.get("none").is_none());
    }
}
