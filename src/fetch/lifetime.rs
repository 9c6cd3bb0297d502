//! How long a client may reuse what one call answered: each call's part of
//! the response's `Cache-Control` (docs/CACHING.md).
//!
//! A call counts with what is left of a cache entry that answered it, or
//! with `cache_ttl_s` (the upstream's own smaller `max-age` winning) when it
//! went upstream; it makes the response `private` when it carried who the
//! user is, when the upstream said `private`, or when its answer carries
//! headers for the client. A call without `cache_ttl_s`, an upstream
//! `no-store`, and a stale entry served make the response `no-store`.

use std::time::Duration;

use super::cache::{now_ms, Entry};
use super::CachePolicy;
use crate::upstream::{CacheDirectives, UpstreamAnswer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// `None`: not to be reused (`no-store`).
    pub max_age: Option<Duration>,
    pub private: bool,
}

impl Lifetime {
    pub const NO_STORE: Lifetime = Lifetime {
        max_age: None,
        private: false,
    };

    /// A fresh entry answered the call: what is left of it.
    pub fn of_entry(entry: &Entry, personal: bool) -> Lifetime {
        Lifetime {
            max_age: Some(Duration::from_millis(
                entry.fresh_until_ms.saturating_sub(now_ms()),
            )),
            private: personal,
        }
    }

    /// The call went upstream with `policy` and got `answer`.
    pub fn of_answer(answer: &UpstreamAnswer, policy: CachePolicy, personal: bool) -> Lifetime {
        let (directives, forwarded) = parts(answer);
        if directives.no_store {
            return Lifetime::NO_STORE;
        }
        Lifetime {
            max_age: Some(ttl(directives, policy)),
            private: personal || directives.private || forwarded,
        }
    }
}

/// How long the shared response cache may keep `answer`: `None` when it
/// must not keep it at all (`no-store`, `private`, headers for the client).
pub fn shared_ttl(answer: &UpstreamAnswer, policy: CachePolicy) -> Option<Duration> {
    let (directives, forwarded) = parts(answer);
    if directives.no_store || directives.private || forwarded {
        return None;
    }
    Some(ttl(directives, policy))
}

fn parts(answer: &UpstreamAnswer) -> (CacheDirectives, bool) {
    match answer {
        UpstreamAnswer::Json {
            cache, forwarded, ..
        } => (*cache, !forwarded.is_empty()),
        UpstreamAnswer::NotFound => (CacheDirectives::default(), false),
    }
}

/// `cache_ttl_s`, or the upstream's `max-age` when smaller.
fn ttl(directives: CacheDirectives, policy: CachePolicy) -> Duration {
    match directives.max_age {
        Some(max_age) => max_age.min(policy.ttl),
        None => policy.ttl,
    }
}
