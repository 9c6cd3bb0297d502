//! From a built upstream request to its answer, across client requests:
//! the response cache (`cache_ttl_s`, `stale_if_error_s`), then coalescing
//! of identical in-flight GETs, then the upstream client. Per-operation
//! de-duplication sits before this, in `execute::operation`.

pub mod cache;
pub mod coalesce;

use std::sync::Arc;
use std::time::Duration;

use cache::{now_ms, Entry, ResponseCache};
use coalesce::Coalescer;

use crate::config::ServiceConfig;
use crate::connector::request::UpstreamRequest;
use crate::telemetry::metrics;
use crate::upstream::{CacheDirectives, UpstreamAnswer, UpstreamClient, UpstreamError};

/// A field's caching: `cache_ttl_s` and `stale_if_error_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub stale_if_error: Duration,
}

/// An answer, and whether it is a stale cache entry standing in for a
/// failed call.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub answer: Arc<UpstreamAnswer>,
    /// A stale entry stood in for a failed call.
    pub stale: bool,
    /// Answered by the cache: no upstream call was made.
    pub from_cache: bool,
}

pub struct Fetcher {
    pub upstream: Arc<UpstreamClient>,
    cache: Option<ResponseCache>,
    coalescer: Arc<Coalescer>,
}

impl Fetcher {
    pub fn new(upstream: Arc<UpstreamClient>, cache: Option<ResponseCache>) -> Fetcher {
        Fetcher {
            upstream,
            cache,
            coalescer: Arc::new(Coalescer::default()),
        }
    }

    /// Answers `request` from the cache when `policy` allows and a fresh
    /// entry exists; otherwise sends it (coalesced with identical in-flight
    /// GETs), stores a cacheable answer, and falls back to a stale entry
    /// when the call fails.
    pub async fn fetch(
        &self,
        service: &ServiceConfig,
        request: UpstreamRequest,
        policy: Option<CachePolicy>,
    ) -> Result<Fetched, UpstreamError> {
        let cached = match (&self.cache, policy) {
            (Some(cache), Some(_)) => {
                let key = request.identity().fingerprint(&service.name);
                let entry = cache.get(&key).await;
                Some((cache, key, entry))
            }
            _ => None,
        };
        let now = now_ms();
        if let Some((_, _, Some(entry))) = &cached {
            if entry.is_fresh(now) {
                metrics::cache("hit");
                return Ok(Fetched {
                    answer: Arc::new(answer_of(entry)),
                    stale: false,
                    from_cache: true,
                });
            }
        }
        if cached.is_some() {
            metrics::cache("miss");
        }
        let result = if service.coalesce && request.is_deduplicable() {
            self.coalescer
                .send(&self.upstream, &service.name, request)
                .await
        } else {
            self.upstream
                .send(&service.name, &request)
                .await
                .map(Arc::new)
        };
        match (result, cached, policy) {
            (Ok(answer), Some((cache, key, _)), Some(policy)) => {
                if let Some(entry) = entry_for(&answer, policy, now) {
                    cache.put(key, entry).await;
                }
                Ok(Fetched {
                    answer,
                    stale: false,
                    from_cache: false,
                })
            }
            (Ok(answer), _, _) => Ok(Fetched {
                answer,
                stale: false,
                from_cache: false,
            }),
            (Err(err), Some((_, _, Some(entry))), _) if entry.is_usable_stale(now) => {
                tracing::info!(service = %service.name, failure = ?err.failure, "serving a stale cache entry for a failed call");
                metrics::cache("stale");
                Ok(Fetched {
                    answer: Arc::new(answer_of(&entry)),
                    stale: true,
                    from_cache: true,
                })
            }
            (Err(err), _, _) => Err(err),
        }
    }
}

impl Fetcher {
    /// The cache entry under `key`, fresh or not (per-key batch entries).
    pub async fn lookup(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.as_ref()?.get(key).await
    }

    /// Stores `value` under `key` as `policy` and `directives` allow.
    pub async fn store(
        &self,
        key: String,
        value: crate::upstream::json::Json,
        directives: CacheDirectives,
        policy: CachePolicy,
    ) {
        let Some(cache) = &self.cache else {
            return;
        };
        let answer = UpstreamAnswer::Json {
            value,
            cache: directives,
        };
        if let Some(entry) = entry_for(&answer, policy, now_ms()) {
            cache.put(key, entry).await;
        }
    }
}

fn answer_of(entry: &Entry) -> UpstreamAnswer {
    match &entry.value {
        Some(value) => UpstreamAnswer::Json {
            value: value.clone(),
            cache: CacheDirectives::default(),
        },
        None => UpstreamAnswer::NotFound,
    }
}

/// The entry to store for `answer`, or `None` when it must not be cached
/// (`Cache-Control: no-store` or `private`). A shorter `max-age` wins over
/// `cache_ttl_s`.
fn entry_for(answer: &UpstreamAnswer, policy: CachePolicy, now: u64) -> Option<Entry> {
    let directives = match answer {
        UpstreamAnswer::Json { cache, .. } => *cache,
        UpstreamAnswer::NotFound => CacheDirectives::default(),
    };
    if directives.no_store || directives.private {
        return None;
    }
    let ttl = match directives.max_age {
        Some(max_age) => max_age.min(policy.ttl),
        None => policy.ttl,
    };
    let fresh_until_ms = now + ttl.as_millis() as u64;
    Some(Entry {
        value: answer.json().cloned(),
        fresh_until_ms,
        stale_until_ms: fresh_until_ms + policy.stale_if_error.as_millis() as u64,
    })
}
