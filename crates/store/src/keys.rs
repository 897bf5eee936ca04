//! Key names and the batch → bucket mapping (see the crate docs).

/// Number of hash-tag buckets: one Redis Cluster slot each, so one service's keys spread over at
/// most this many masters, and at most this many relays drain its outbox at once. A bucket's
/// name is part of every key of its batches: changing the count renames every key, which needs
/// every replica stopped, the outboxes empty and a key migration (docs/operations.md,
/// "Redis Cluster").
pub const BUCKETS: u16 = 16;

// Buckets are tracked in `u32` bit masks (dirty buckets of a store, buckets of a relay round).
const _: () = assert!(BUCKETS as u32 <= u32::BITS, "bucket masks are u32");

/// The bucket of a batch: FNV-1a of the batch id, modulo [`BUCKETS`]. Stable across processes
/// and versions (it decides which outbox a batch's events go through).
pub fn bucket_of(batch_id: &str) -> u16 {
    (fnv1a(batch_id) % u32::from(BUCKETS)) as u16
}

/// FNV-1a (32 bits) of `s`.
pub(crate) fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix:bNN}` followed by `:part` for each part, built in one allocation (keys are
    /// named several times per commit; two `format!`s each were 2 % of a loaded service's CPU).
    fn key(&self, bucket: u16, parts: &[&str]) -> String {
        let len = self.prefix.len() + 5 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut k = String::with_capacity(len);
        k.push('{');
        k.push_str(&self.prefix);
        k.push_str(":b");
        // Two digits: BUCKETS <= 32.
        k.push(char::from(b'0' + (bucket / 10) as u8));
        k.push(char::from(b'0' + (bucket % 10) as u8));
        k.push('}');
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    pub(crate) fn state(&self, batch_id: &str) -> String {
        self.key(bucket_of(batch_id), &["state", batch_id])
    }

    pub(crate) fn dedup(&self, batch_id: &str, id: &str) -> String {
        self.key(bucket_of(batch_id), &["dedup", id])
    }

    pub(crate) fn index(&self, bucket: u16, name: &str) -> String {
        self.key(bucket, &[name])
    }

    pub(crate) fn outbox(&self, bucket: u16) -> String {
        self.key(bucket, &["outbox"])
    }

    pub(crate) fn lease(&self, bucket: u16) -> String {
        self.key(bucket, &["outbox", "lease"])
    }

    /// Outbox entries that can never be published (undecodable, or refused by the broker for
    /// good), kept for an operator.
    pub(crate) fn parked(&self, bucket: u16) -> String {
        self.key(bucket, &["outbox", "parked"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_in_range() {
        // Pinned values: changing the hash would re-home live batches.
        assert_eq!(bucket_of(""), (0x811c_9dc5u32 % 16) as u16);
        let b = bucket_of("batch-1");
        assert_eq!(b, bucket_of("batch-1"));
        assert!(b < BUCKETS);
    }

    #[test]
    fn a_batch_keys_share_one_hash_tag() {
        let k = Keys::new("bos");
        let tag = k.key(bucket_of("b-42"), &[]);
        assert!(k.state("b-42").starts_with(&tag));
        assert!(k.dedup("b-42", "e1").starts_with(&tag));
        assert!(k.outbox(bucket_of("b-42")).starts_with(&tag));
    }

    #[test]
    fn key_names_are_pinned() {
        // Live data is found by these names: a change here renames every key.
        let k = Keys::new("bos");
        let b = bucket_of("b-42");
        assert_eq!(k.key(3, &[]), "{bos:b03}");
        assert_eq!(k.key(15, &[]), "{bos:b15}");
        assert_eq!(k.state("b-42"), format!("{{bos:b{b:02}}}:state:b-42"));
        assert_eq!(k.dedup("b-42", "e1"), format!("{{bos:b{b:02}}}:dedup:e1"));
        assert_eq!(k.index(0, "active"), "{bos:b00}:active");
        assert_eq!(k.outbox(7), "{bos:b07}:outbox");
        assert_eq!(k.lease(12), "{bos:b12}:outbox:lease");
        assert_eq!(k.parked(9), "{bos:b09}:outbox:parked");
    }

    #[test]
    fn batches_spread_over_buckets() {
        let used: std::collections::HashSet<u16> =
            (0..200).map(|i| bucket_of(&format!("batch-{i}"))).collect();
        assert_eq!(used.len(), BUCKETS as usize);
    }
}
