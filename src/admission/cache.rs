//! A cache bounded by (estimated) bytes, for entries keyed by a client's
//! text: parsed documents and plans, keyed by the query text (up to
//! `max_body_bytes`).
//!
//! The key moka holds is a 64-bit hash of that text, never the text
//! itself: moka leaves a removed entry in its hash table as a tombstone
//! that keeps the key until the table is rehashed, which happens only past
//! about 26 tombstones in each of its 64 segments. Keyed by the text, a
//! cache of a few entries held every evicted 0.9 MB document (+171 MiB
//! after 200 of them). The text is kept in the value (dropped on removal)
//! and compared on every hit, so two texts with the same hash never share
//! an entry: the later one only replaces the earlier.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::quality::RandomState;

/// What an entry costs beyond its key and value (moka's own node, the
/// `Arc`s): counted for every entry, so that a flood of tiny entries is
/// bounded too.
pub const ENTRY_BYTES: usize = 256;

pub struct ByteBoundedCache<K, V> {
    entries: moka::sync::Cache<u64, Arc<(K, V)>>,
    /// Seeded per process: a client cannot aim texts at one hash.
    hasher: RandomState,
}

impl<K, V> ByteBoundedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `max_bytes`, each entry counted `weigh(key,
    /// value)` plus [`ENTRY_BYTES`] (0: nothing is kept).
    pub fn new(max_bytes: u64, weigh: fn(&K, &V) -> usize) -> Self {
        ByteBoundedCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |_, entry: &Arc<(K, V)>| {
                    let bytes = ENTRY_BYTES.saturating_add(weigh(&entry.0, &entry.1));
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .build(),
            hasher: RandomState::default(),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entry = self.entries.get(&self.hasher.hash_one(key))?;
        (entry.0 == *key).then(|| entry.1.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let hash = self.hasher.hash_one(&key);
        self.entries.insert(hash, Arc::new((key, value)));
    }
}
