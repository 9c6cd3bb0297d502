//! The response cache behind `cache_ttl_s` (docs/CONFIG.md `[cache]`): entries
//! keyed by the whole upstream request as sent, in memory (moka, bounded by
//! `max_entries`) or in Redis (shared by every gateway instance).
//!
//! Keys are `URL:REQUEST` ([`crate::connector::request::RequestIdentity::fingerprint`]):
//! the first part names the service, method and URL alone, so a mutation's
//! `invalidates` drops every entry of a URL whatever the headers (every
//! user's). In memory those entries are removed; in Redis an invalidation
//! mark under the URL part makes every entry stored before it a miss, for
//! every instance, until the longest entry could have expired anyway.
//!
//! Times are wall-clock milliseconds since the epoch, so an entry written
//! by one instance means the same to another. Redis down: the gateway runs
//! without cache, says so once per interval, and picks Redis up again by
//! itself (the connection manager reconnects).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::telemetry::throttle::Throttle;
use crate::upstream::json::Json;

/// At most one "Redis unreachable" log line per this long.
const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(30);
use crate::redis_connection::TIMEOUT as REDIS_TIMEOUT;

/// One cached upstream answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The answer's JSON; `None` for a 404.
    pub value: Option<Json>,
    /// Served as fresh until then.
    pub fresh_until_ms: u64,
    /// Served, when the upstream fails, until then (`stale_if_error_s`).
    pub stale_until_ms: u64,
    /// Served at once while one background call refreshes it, until then
    /// (`stale_while_revalidate_s`).
    #[serde(default)]
    pub revalidate_until_ms: u64,
    /// When it was stored: an invalidation after that drops it.
    #[serde(default)]
    pub stored_ms: u64,
}

impl Entry {
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }

    pub fn is_usable_stale(&self, now_ms: u64) -> bool {
        now_ms < self.stale_until_ms
    }

    pub fn may_revalidate(&self, now_ms: u64) -> bool {
        now_ms < self.revalidate_until_ms
    }

    /// When it can no longer be served in any way.
    pub fn expires_ms(&self) -> u64 {
        self.stale_until_ms.max(self.revalidate_until_ms)
    }
}

/// The part of a cache key naming the service, method and URL.
fn url_part(key: &str) -> &str {
    key.split_once(':').map_or(key, |(url, _)| url)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub enum ResponseCache {
    Memory(moka::future::Cache<String, std::sync::Arc<Entry>>),
    Redis(RedisStore),
}

pub struct RedisStore {
    connection: redis::aio::ConnectionManager,
    /// How long an invalidation mark is kept: the longest any entry can
    /// be served (`cache_ttl_s` plus the longer stale window).
    mark_lifetime: Duration,
    /// "Redis unreachable" at most once per interval.
    outage_log: Throttle,
}

/// Expires a memory entry once it can no longer be served, stale or not.
struct UntilStale;

impl moka::Expiry<String, std::sync::Arc<Entry>> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &std::sync::Arc<Entry>,
        _created: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            entry.expires_ms().saturating_sub(now_ms()),
        ))
    }
}

impl ResponseCache {
    pub fn memory(max_entries: u64) -> ResponseCache {
        ResponseCache::Memory(
            moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilStale)
                .support_invalidation_closures()
                .build(),
        )
    }

    /// `mark_lifetime`: the longest any entry can be served, for how long
    /// an invalidation must be remembered.
    pub fn redis(url: &str, mark_lifetime: Duration) -> Result<ResponseCache, String> {
        let connection = crate::redis_connection::connect(url)?;
        Ok(ResponseCache::Redis(RedisStore {
            connection,
            mark_lifetime,
            outage_log: Throttle::new(OUTAGE_LOG_INTERVAL),
        }))
    }

    pub async fn get(&self, key: &str) -> Option<std::sync::Arc<Entry>> {
        match self {
            ResponseCache::Memory(cache) => cache.get(key).await,
            ResponseCache::Redis(store) => store.get(key).await.map(std::sync::Arc::new),
        }
    }

    pub async fn put(&self, key: String, entry: Entry) {
        match self {
            ResponseCache::Memory(cache) => cache.insert(key, std::sync::Arc::new(entry)).await,
            ResponseCache::Redis(store) => store.put(key, entry).await,
        }
    }

    /// Drops every entry whose key begins with `url` (the URL part of
    /// [`crate::connector::request::RequestIdentity::fingerprint`]), stored
    /// until now.
    pub async fn invalidate(&self, url: String) {
        match self {
            ResponseCache::Memory(cache) => {
                // Cannot fail: the cache is built with invalidation closures.
                let _ = cache.invalidate_entries_if(move |key, _| url_part(key) == url);
            }
            ResponseCache::Redis(store) => store.invalidate(&url).await,
        }
    }
}

impl RedisStore {
    /// The entry and the URL's invalidation mark in one round trip; an
    /// entry stored before the mark is a miss.
    async fn get(&self, key: &str) -> Option<Entry> {
        let mut connection = self.connection.clone();
        let mut get = redis::cmd("MGET");
        get.arg(format!("conflux:cache:{key}"))
            .arg(format!("conflux:invalidated:{}", url_part(key)));
        let command = get.query_async::<(Option<Vec<u8>>, Option<u64>)>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, command).await {
            Ok(Ok((Some(bytes), mark))) => sonic_rs::from_slice::<Entry>(&bytes)
                .ok()
                .filter(|entry| mark.is_none_or(|mark| entry.stored_ms > mark)),
            Ok(Ok((None, _))) => None,
            Ok(Err(err)) => {
                self.log_outage(&err.to_string());
                None
            }
            Err(_) => {
                self.log_outage("no answer in time");
                None
            }
        }
    }

    /// Marks the URL invalidated now, for every instance.
    async fn invalidate(&self, url: &str) {
        let mut connection = self.connection.clone();
        let mut set = redis::cmd("SET");
        set.arg(format!("conflux:invalidated:{url}"))
            .arg(now_ms())
            .arg("PX")
            .arg(self.mark_lifetime.as_millis().max(1) as u64);
        let command = set.query_async::<()>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, command).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => self.log_outage(&err.to_string()),
            Err(_) => self.log_outage("no answer in time"),
        }
    }

    async fn put(&self, key: String, entry: Entry) {
        let ttl_ms = entry.expires_ms().saturating_sub(now_ms());
        if ttl_ms == 0 {
            return;
        }
        let Ok(bytes) = sonic_rs::to_vec(&entry) else {
            return;
        };
        let mut connection = self.connection.clone();
        let mut set = redis::cmd("SET");
        set.arg(format!("conflux:cache:{key}"))
            .arg(bytes)
            .arg("PX")
            .arg(ttl_ms);
        let command = set.query_async::<()>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, command).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => self.log_outage(&err.to_string()),
            Err(_) => self.log_outage("no answer in time"),
        }
    }

    fn log_outage(&self, reason: &str) {
        if self.outage_log.ready() {
            tracing::warn!(
                reason,
                "response cache: Redis unreachable, serving without cache"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::json;

    #[tokio::test]
    async fn memory_entries_are_served_until_stale_time() {
        let cache = ResponseCache::memory(10);
        let now = now_ms();
        let entry = Entry {
            value: Some(json!({"id": 1})),
            fresh_until_ms: now + 60_000,
            stale_until_ms: now + 120_000,
            revalidate_until_ms: 0,
            stored_ms: now,
        };
        cache.put("k".into(), entry.clone()).await;
        let got = cache.get("k").await.expect("cached");
        assert_eq!(*got, entry);
        assert!(got.is_fresh(now));
        assert!(cache.get("other").await.is_none());
    }
}
