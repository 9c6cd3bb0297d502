//! `[rate_limit]` (docs/CONFIG.md): a token bucket per client key (`ip`, or the
//! JWT `sub` falling back to the ip), `per_second` refill, `burst` size.
//!
//! Backends: `memory` (governor's keyed GCRA limiter, per instance) and
//! `redis` (one atomic Lua script, so every gateway instance shares each
//! bucket). Redis unreachable: requests pass (fail open) and the outage is
//! logged once per interval — a limiter must not take the API down.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::{RateLimitBackend, RateLimitConfig};
use crate::telemetry::throttle::Throttle;

/// How often the in-memory limiter forgets idle clients.
const PRUNE_EVERY: u64 = 10_000;
/// At most one "Redis unreachable" log line per this long.
const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(30);
use crate::redis_connection::TIMEOUT as REDIS_TIMEOUT;

/// Refill and consume `cost` tokens (1 per request, or the predicted
/// upstream calls), atomically, on Redis' clock. Returns
/// `{allowed (0/1), wait_ms}`.
const TOKEN_BUCKET_LUA: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((math.min(cost, burst) - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait}
"#;

pub enum RateLimiter {
    Memory {
        limiter: DefaultKeyedRateLimiter<String>,
        checks: AtomicU64,
        /// How long an empty bucket takes to fill.
        refill: Duration,
    },
    Redis(RedisBuckets),
}

pub struct RedisBuckets {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    /// Tokens per millisecond.
    rate_per_ms: f64,
    burst: u32,
    /// "Redis unreachable" at most once per interval.
    outage_log: Throttle,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Result<RateLimiter, String> {
        match &config.backend {
            RateLimitBackend::Memory => {
                let period = Duration::from_secs_f64(1.0 / config.per_second);
                let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(period)
                    .ok_or("per_second is too large")?
                    .allow_burst(burst);
                Ok(RateLimiter::Memory {
                    limiter: DefaultKeyedRateLimiter::keyed(quota),
                    checks: AtomicU64::new(0),
                    refill: period * burst.get(),
                })
            }
            RateLimitBackend::Redis { url } => {
                let connection = crate::redis_connection::connect(url.as_str())?;
                Ok(RateLimiter::Redis(RedisBuckets {
                    connection,
                    script: redis::Script::new(TOKEN_BUCKET_LUA),
                    rate_per_ms: config.per_second / 1000.0,
                    burst: config.burst.max(1),
                    outage_log: Throttle::new(OUTAGE_LOG_INTERVAL),
                }))
            }
        }
    }

    /// `Ok` when `key` may take `cost` tokens now (`[rate_limit] cost =
    /// "upstream_calls"`: the operation's predicted calls); `Err(wait)`
    /// with how long until it may. A cost over `burst` never fits: the
    /// wait is a full bucket's refill.
    pub async fn check_n(&self, key: &str, cost: u64) -> Result<(), Duration> {
        if cost == 0 {
            return Ok(());
        }
        match self {
            RateLimiter::Memory { limiter, .. } => {
                let n = NonZeroU32::new(u32::try_from(cost).unwrap_or(u32::MAX))
                    .unwrap_or(NonZeroU32::MIN);
                match limiter.check_key_n(&key.to_owned(), n) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(not_until)) => {
                        Err(not_until.wait_time_from(DefaultClock::default().now()))
                    }
                    Err(_) => Err(self.full_refill()),
                }
            }
            RateLimiter::Redis(buckets) => buckets.check_cost(key, cost).await,
        }
    }

    fn full_refill(&self) -> Duration {
        match self {
            RateLimiter::Memory { refill, .. } => *refill,
            RateLimiter::Redis(buckets) => {
                Duration::from_secs_f64(f64::from(buckets.burst) / (buckets.rate_per_ms * 1000.0))
            }
        }
    }

    /// `Ok` when `key` may make a request now; `Err(wait)` with how long
    /// until it may.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        match self {
            RateLimiter::Memory {
                limiter, checks, ..
            } => {
                if checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
                    limiter.retain_recent();
                }
                limiter
                    .check_key(&key.to_owned())
                    .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
            }
            RateLimiter::Redis(buckets) => buckets.check(key).await,
        }
    }
}

impl RedisBuckets {
    async fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_cost(key, 1).await
    }

    async fn check_cost(&self, key: &str, cost: u64) -> Result<(), Duration> {
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(format!("conflux:ratelimit:{key}"));
        invocation.arg(self.rate_per_ms).arg(self.burst).arg(cost);
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<(i64, i64)>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok((1, _))) => Ok(()),
            Ok(Ok((_, wait_ms))) => Err(Duration::from_millis(wait_ms.max(1) as u64)),
            Ok(Err(err)) => {
                self.log_outage(&err.to_string());
                Ok(())
            }
            Err(_) => {
                self.log_outage("no answer in time");
                Ok(())
            }
        }
    }

    fn log_outage(&self, reason: &str) {
        if self.outage_log.ready() {
            tracing::warn!(
                reason,
                "rate limiting: Redis unreachable, letting requests through"
            );
        }
    }
}

/// `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let millis = wait.as_millis() as u64;
    millis.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateKey;

    #[tokio::test]
    async fn the_bucket_allows_a_burst_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            per_second: 0.5,
            burst: 2,
            key: RateKey::Ip,
            backend: RateLimitBackend::Memory,
            cost: crate::config::RateCost::Requests,
        })
        .expect("valid");
        assert!(limiter.check("a").await.is_ok());
        assert!(limiter.check("a").await.is_ok());
        let wait = limiter.check("a").await.expect_err("empty bucket");
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_millis(1500),
            "{wait:?}"
        );
        assert_eq!(retry_after_seconds(wait), 2);
        assert!(limiter.check("b").await.is_ok(), "buckets are per key");
    }
}
