//! Redis plumbing for the HuleEdu pipeline services: the atomic apply step and the outbox.
//!
//! Every consumed event is handled as *read state → decide (pure) → apply atomically → store
//! the Kafka offset*. This crate owns the two Redis halves of that:
//!
//! - [`Store::load`] reads a batch's versioned state (a Redis hash: the service's fields plus a
//!   version); [`Store::load_checked`] reads it together with an event's dedup marker in one
//!   round trip. The store remembers the states this process last read or committed
//!   ([`Store::cached`], bounded): a decision may start from that copy and skip the read, since
//!   the version check of the commit turns a stale copy into a conflict and a fresh read.
//! - [`Store::apply`] commits, in one Lua script (atomic, one round trip): the dedup check and
//!   marker (with TTL), the version check, the new state fields (TTL refreshed), index updates
//!   (sorted sets, e.g. deadlines), and the outgoing events appended to the outbox. It answers
//!   [`ApplyOutcome::Applied`], [`ApplyOutcome::AlreadyApplied`] or [`ApplyOutcome::Conflict`]
//!   (decide again from fresh state).
//! - [`relay::OutboxRelay`] publishes outbox entries in order, waits for the broker's ack, then
//!   removes exactly the entries it published. Mostly without a read of its own: a commit
//!   whose bucket's outbox holds nothing the relay does not already have hands its entries to
//!   the relay of its process in its answer ("hand-off", see the `relay` module), and carries
//!   the removal of what the relay has finished. Otherwise (entries of another process or an
//!   earlier run, another relay's lease) a pump reads them: one round trip that also removes
//!   what was finished; only the buckets this process appended to, all buckets every sweep.
//!   Event ids are inside the stored payloads, fixed when the event was decided, so a re-send
//!   after a crash carries the same `event_id`. An entry that can never be published is
//!   parked, not retried forever ([`OutboxMetrics`]).
//!
//! ## One Redis or a Redis Cluster
//!
//! `REDIS_MODE=standalone` (one Redis) or `cluster` (Redis Cluster, seed nodes in `REDIS_URL`):
//! the store's logic is the same; only its connection differs (`conn.rs`: commands routed by
//! their first key's slot, one command per bucket where one Redis takes a pipeline). With
//! `REDIS_WAIT_REPLICAS`, the commit script, the state read that can answer "handled before",
//! and the relay's pump carry a `WAIT` in the same round trip: a commit counts, and outbox
//! entries are published, only once that many replicas confirm ([`StoreError::Unconfirmed`]
//! otherwise, a transient failure).
//!
//! ```text
//!  handler ──commit (+ removals)──▶ Store ──EVALSHA (+WAIT)──▶ master of {p:bNN} ──▶ replica(s)
//!                                    │ answer "handed"             │
//!  relay ◀──its entries (hand-off)───┘  ◀──pump (+WAIT): entries───┘  (only when not handed)
//!    └──publish──▶ Kafka
//! ```
//!
//! ## Key layout
//!
//! All keys of one batch share a Redis Cluster hash tag `{<prefix>:bNN}`, where `NN` is one of
//! [`BUCKETS`] buckets chosen by hashing the batch id. Each bucket has its own outbox list, so a
//! transaction never spans two slots and a batch's events stay in one ordered list:
//!
//! | key | type | what |
//! |---|---|---|
//! | `{p:bNN}:state:<batch>` | hash | service fields + `_v` (version) |
//! | `{p:bNN}:dedup:<id>` | string | dedup marker of a handled event (TTL) |
//! | `{p:bNN}:outbox` | list | outgoing messages, oldest first |
//! | `{p:bNN}:outbox:lease` | string | which replica's relay currently drains the bucket (its `REPLICA_ID`) |
//! | `{p:bNN}:outbox:parked` | list | outbox entries that can never be published, for an operator |
//! | `{p:bNN}:<index>` | sorted set | service indexes (e.g. deadlines) |

mod conn;
mod keys;
pub mod metrics;
mod recent;
pub mod relay;
mod settings;
mod store;

pub use keys::{bucket_of, BUCKETS};
pub use recent::Recent;

/// The store's Lua scripts by the SHA1 `EVALSHA` names them with, and what each does (`commit`,
/// `load`, `relay pump`, `lease release`): for tools that attribute Redis commands.
pub fn script_names() -> Vec<(String, &'static str)> {
    let mut all = store::script_names();
    all.extend(relay::script_names());
    all
}
pub use metrics::{sample_every, DlqCounter, OutboxMetrics, StateGauges};
pub use relay::OutboxRelay;
pub use settings::{RedisArgs, RedisMode, RedisSettings, RetentionArgs};
pub use store::{
    entry_time, ApplyOutcome, ApplyRequest, Change, Checked, Committed, Decided, IndexOp,
    IndexSummary, OutboxEntry, OutboxHead, RedisProblem, Store, StoreError, StoredEntry, Versioned,
    COMMIT_ATTEMPTS,
};
