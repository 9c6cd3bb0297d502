//! From a built upstream request to its answer, across client requests:
//! the response cache (`cache_ttl_s`, `stale_if_error_s`,
//! `stale_while_revalidate_s`, a mutation's `invalidates`), then coalescing
//! of identical in-flight GETs, then the upstream client. Per-operation
//! de-duplication sits before this, in `execute::operation`.
//!
//! Every cached call looks up, stores and stands in through the functions
//! here: a single call in [`Fetcher::fetch`], a batch's per-key entries in
//! `batch::fetch`.

pub mod cache;
pub mod coalesce;
pub mod lifetime;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache::{now_ms, Entry, ResponseCache};
use coalesce::Coalescer;
pub use lifetime::Lifetime;

use crate::batch::shared::BatchGroups;
use crate::config::ServiceConfig;
use crate::connector::errors::Failed;
use crate::connector::request::UpstreamRequest;
use crate::telemetry::metrics;
use crate::upstream::{CacheDirectives, UpstreamAnswer, UpstreamClient, UpstreamError};

/// A field's caching: `cache_ttl_s`, `stale_if_error_s` and
/// `stale_while_revalidate_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub stale_if_error: Duration,
    pub stale_while_revalidate: Duration,
}

/// An answer, whether it is a stale cache entry standing in for a failed
/// call, and how long a client may reuse it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub answer: Arc<UpstreamAnswer>,
    /// A stale entry stood in for a failed call.
    pub stale: bool,
    /// Answered by the cache: no upstream call was made.
    pub from_cache: bool,
    /// What this answer allows the client's `Cache-Control`.
    pub lifetime: Lifetime,
}

pub struct Fetcher {
    pub upstream: Arc<UpstreamClient>,
    cache: Option<ResponseCache>,
    coalescer: Arc<Coalescer>,
    /// Batched calls shared across client requests (`batch_window_ms`),
    /// beside coalescing: both pool the same upstream work of concurrent
    /// clients.
    pub shared_batches: BatchGroups<Result<Fetched, Failed>>,
    /// Keys being refreshed in the background (`stale_while_revalidate_s`):
    /// one refresh per key, however many requests meet the entry.
    refreshing: Mutex<foldhash::HashSet<String>>,
}

impl Fetcher {
    pub fn new(upstream: Arc<UpstreamClient>, cache: Option<ResponseCache>) -> Fetcher {
        Fetcher {
            upstream,
            cache,
            coalescer: Arc::new(Coalescer::default()),
            shared_batches: BatchGroups::default(),
            refreshing: Mutex::default(),
        }
    }

    /// Answers `request` from the cache when `policy` allows and a fresh
    /// entry exists (or one within `stale_while_revalidate_s`, refreshed in
    /// the background); otherwise sends it (coalesced with identical
    /// in-flight GETs), stores a cacheable answer, and falls back to a
    /// stale entry when the call fails.
    pub async fn fetch(
        self: &Arc<Self>,
        service: &Arc<ServiceConfig>,
        request: UpstreamRequest,
        policy: Option<CachePolicy>,
    ) -> Result<Fetched, UpstreamError> {
        let personal = request.personal;
        let cached = match (&self.cache, policy) {
            (Some(_), Some(policy)) => {
                let key = request.identity().fingerprint(&service.name);
                let lookup = self.lookup(&key).await;
                Some((key, lookup, policy))
            }
            _ => None,
        };
        match &cached {
            Some((_, Lookup::Fresh(entry), _)) => {
                metrics::cache("hit");
                return Ok(Fetched {
                    answer: Arc::new(answer_of(entry)),
                    stale: false,
                    from_cache: true,
                    lifetime: Lifetime::of_entry(entry, personal),
                });
            }
            Some((key, Lookup::Revalidate(entry), policy)) => {
                metrics::cache("revalidate");
                self.refresh(service, request, key.clone(), *policy);
                return Ok(Fetched {
                    answer: Arc::new(answer_of(entry)),
                    stale: false,
                    from_cache: true,
                    lifetime: Lifetime::NO_STORE,
                });
            }
            Some(_) => metrics::cache("miss"),
            None => {}
        }
        let result = self.send(service, request).await;
        match (result, cached) {
            (Ok(answer), Some((key, _, policy))) => {
                self.store(key, &answer, policy).await;
                Ok(Fetched {
                    lifetime: Lifetime::of_answer(&answer, policy, personal),
                    answer,
                    stale: false,
                    from_cache: false,
                })
            }
            (Ok(answer), None) => Ok(Fetched {
                answer,
                stale: false,
                from_cache: false,
                lifetime: Lifetime::NO_STORE,
            }),
            (Err(err), Some((_, lookup, _))) => match lookup.stand_in() {
                Some(entry) => {
                    log_stand_in(service, &err);
                    Ok(Fetched {
                        answer: Arc::new(answer_of(&entry)),
                        stale: true,
                        from_cache: true,
                        lifetime: Lifetime::NO_STORE,
                    })
                }
                None => Err(err),
            },
            (Err(err), None) => Err(err),
        }
    }

    /// Sends `request` upstream: coalesced with identical in-flight GETs
    /// when the service allows, and never for a service whose answers
    /// carry headers to the client (one user's `Set-Cookie` must not reach
    /// another).
    pub async fn send(
        &self,
        service: &ServiceConfig,
        request: UpstreamRequest,
    ) -> Result<Arc<UpstreamAnswer>, UpstreamError> {
        if service.coalesce
            && service.forward_response_headers.is_empty()
            && request.is_deduplicable()
        {
            self.coalescer
                .send(&self.upstream, &service.name, request)
                .await
        } else {
            self.upstream
                .send(&service.name, &request)
                .await
                .map(Arc::new)
        }
    }

    /// Refreshes the entry under `key` by one background call, unless one
    /// is already under way; the entry keeps being served meanwhile.
    fn refresh(
        self: &Arc<Self>,
        service: &Arc<ServiceConfig>,
        request: UpstreamRequest,
        key: String,
        policy: CachePolicy,
    ) {
        let first = self
            .refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        if !first {
            return;
        }
        let (fetcher, service) = (self.clone(), service.clone());
        tokio::spawn(async move {
            // Dropped when the refresh ends, however it ends.
            let _refreshing = Refreshing {
                fetcher: &fetcher,
                key: key.clone(),
            };
            match fetcher.send(&service, request).await {
                Ok(answer) => fetcher.store(key, &answer, policy).await,
                Err(err) => {
                    tracing::info!(service = %service.name, failure = ?err.failure, "background refresh of a cache entry failed")
                }
            }
        });
    }

    /// What the cache holds under `key`, judged now.
    pub async fn lookup(&self, key: &str) -> Lookup {
        let Some(cache) = &self.cache else {
            return Lookup::Miss;
        };
        let now = now_ms();
        match cache.get(key).await {
            Some(entry) if entry.is_fresh(now) => Lookup::Fresh(entry),
            Some(entry) if entry.may_revalidate(now) => Lookup::Revalidate(entry),
            Some(entry) => Lookup::Expired { entry, at_ms: now },
            None => Lookup::Miss,
        }
    }

    /// Stores `answer` under `key` as `policy` and the answer allow
    /// (nothing for `Cache-Control: no-store` or `private`, or an answer
    /// carrying headers for the client).
    pub async fn store(&self, key: String, answer: &UpstreamAnswer, policy: CachePolicy) {
        let Some(cache) = &self.cache else {
            return;
        };
        if let Some(entry) = entry_for(answer, policy, now_ms()) {
            cache.put(key, entry).await;
        }
    }

    /// Drops every entry of `url` (a `connector::request::url_fingerprint`),
    /// whatever the headers of the calls that stored them.
    pub async fn invalidate(&self, url: String) {
        if let Some(cache) = &self.cache {
            cache.invalidate(url).await;
        }
    }
}

/// Takes a key off the refreshing set when its refresh ends.
struct Refreshing<'a> {
    fetcher: &'a Fetcher,
    key: String,
}

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.fetcher
            .refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// A cache entry as a lookup found it.
pub enum Lookup {
    /// Served as the answer; no call.
    Fresh(Arc<Entry>),
    /// Past its `cache_ttl_s` but within `stale_while_revalidate_s`: served
    /// at once, and refreshed by one background call.
    Revalidate(Arc<Entry>),
    /// Past its `cache_ttl_s` at `at_ms`: the call is made, and the entry
    /// may stand in if it fails ([`Lookup::stand_in`]).
    Expired {
        entry: Arc<Entry>,
        at_ms: u64,
    },
    Miss,
}

impl Lookup {
    /// docs/CONFIG.md `stale_if_error_s`: the entry that stands in for a
    /// failed call, if it was within that window when looked up.
    pub fn stand_in(self) -> Option<Arc<Entry>> {
        match self {
            Lookup::Expired { entry, at_ms } if entry.is_usable_stale(at_ms) => Some(entry),
            _ => None,
        }
    }
}

/// Says that a stale entry answers a failed call.
pub fn log_stand_in(service: &ServiceConfig, err: &UpstreamError) {
    tracing::info!(service = %service.name, failure = ?err.failure, "serving a stale cache entry for a failed call");
    metrics::cache("stale");
}

fn answer_of(entry: &Entry) -> UpstreamAnswer {
    match &entry.value {
        Some(value) => UpstreamAnswer::Json {
            value: value.clone(),
            cache: CacheDirectives::default(),
            forwarded: Vec::new(),
        },
        None => UpstreamAnswer::NotFound,
    }
}

/// The entry to store for `answer`, or `None` when it must not be cached
/// (`Cache-Control: no-store` or `private`, or headers for the client). A
/// shorter `max-age` wins over `cache_ttl_s`.
fn entry_for(answer: &UpstreamAnswer, policy: CachePolicy, now: u64) -> Option<Entry> {
    let ttl = lifetime::shared_ttl(answer, policy)?;
    let fresh_until_ms = now + ttl.as_millis() as u64;
    Some(Entry {
        value: answer.json().cloned(),
        fresh_until_ms,
        stale_until_ms: fresh_until_ms + policy.stale_if_error.as_millis() as u64,
        revalidate_until_ms: fresh_until_ms + policy.stale_while_revalidate.as_millis() as u64,
        stored_ms: now,
    })
}
