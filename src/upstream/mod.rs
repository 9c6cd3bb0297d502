//! The HTTP client to the REST services (docs/CONFIG.md `urls` … `max_concurrency`).
//!
//! A call goes [`UpstreamClient::send`] → [`service::Service::send`]: wait
//! for a `max_concurrency` place, let the [`balance::Balancer`] pick among
//! the instances that may take a call, send, and retry an idempotent call
//! on another instance after a retryable failure, all within the call's
//! timeout. Whether an instance may take a call is decided beside the
//! picking, like pingora's selection/health split:
//!
//! - [`instance`]: one base URL — calls in flight, counters, state logs;
//! - [`breaker`]: passive health, consecutive failures → ejection → trial;
//! - [`health`]: active health, a background check per instance;
//! - [`balance`]: `round_robin` and `least_requests` (power of two choices);
//! - [`failure`]: how a call failed, and what that means for retries,
//!   breakers and the client's error code.

pub mod balance;
pub mod breaker;
pub mod failure;
pub mod health;
pub mod instance;
pub mod json;
pub mod oauth2;
pub mod service;
pub mod transport;

use std::sync::Arc;

use indexmap::IndexMap;
use tokio::time::Instant;

use crate::config::ServiceConfig;
use crate::connector::request::UpstreamRequest;
pub use breaker::CircuitState;
pub use failure::{UpstreamError, UpstreamFailure};
use health::HealthChecks;
pub use health::HealthStatus;
pub use instance::InstanceSnapshot;
use service::Service;
pub use service::ServiceSnapshot;

/// What a call produced: JSON, or a 404 (which the field decides about).
#[derive(Debug, Clone)]
pub enum UpstreamAnswer {
    /// A 2xx answer, with what its `Cache-Control` allows and the headers
    /// of it that go on to the client (`forward_response_headers`).
    Json {
        value: json::Json,
        cache: CacheDirectives,
        forwarded: Forwarded,
    },
    NotFound,
}

/// Answer headers copied to the client's response, in the order received;
/// empty (no allocation) for a service without `forward_response_headers`.
pub type Forwarded = Vec<(http::HeaderName, http::HeaderValue)>;

/// The parts of an upstream's `Cache-Control` the response cache obeys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    pub no_store: bool,
    pub private: bool,
    pub max_age: Option<std::time::Duration>,
}

impl CacheDirectives {
    pub fn parse(headers: &http::HeaderMap) -> CacheDirectives {
        let mut directives = CacheDirectives::default();
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else {
                continue;
            };
            for directive in text.split(',').map(|d| d.trim().to_ascii_lowercase()) {
                match directive.split_once('=') {
                    None if directive == "no-store" || directive == "no-cache" => {
                        directives.no_store = true
                    }
                    None if directive == "private" => directives.private = true,
                    Some(("max-age" | "s-maxage", seconds)) => {
                        if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                            let max_age = std::time::Duration::from_secs(seconds);
                            directives.max_age =
                                Some(directives.max_age.map_or(max_age, |m| m.min(max_age)));
                        }
                    }
                    _ => {}
                }
            }
        }
        directives
    }
}

impl CacheDirectives {
    /// What both allow: for an entry built from several answers.
    pub fn strictest(self, other: CacheDirectives) -> CacheDirectives {
        CacheDirectives {
            no_store: self.no_store || other.no_store,
            private: self.private || other.private,
            max_age: match (self.max_age, other.max_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

impl UpstreamAnswer {
    pub fn json(&self) -> Option<&json::Json> {
        match self {
            UpstreamAnswer::Json { value, .. } => Some(value),
            UpstreamAnswer::NotFound => None,
        }
    }
}

/// Sends upstream requests. Built once per configuration; cheap to share.
/// Dropping it stops its health checks.
pub struct UpstreamClient {
    services: IndexMap<String, Service>,
    health_checks: HealthChecks,
}

impl UpstreamClient {
    pub fn new(services: &IndexMap<String, Arc<ServiceConfig>>) -> Result<Self, reqwest::Error> {
        let services = services
            .iter()
            .map(|(name, config)| Ok((name.clone(), Service::new(config.clone())?)))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(UpstreamClient {
            services,
            health_checks: HealthChecks::default(),
        })
    }

    pub fn service(&self, name: &str) -> Option<&Arc<ServiceConfig>> {
        self.services.get(name).map(|service| &service.config)
    }

    /// Sends `request` to `service` (see [`Service::send`]).
    pub async fn send(
        &self,
        service: &str,
        request: &UpstreamRequest,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let Some(handle) = self.services.get(service) else {
            return Err(UpstreamError {
                service: Arc::from(service),
                failure: UpstreamFailure::Unavailable,
            });
        };
        handle.send(request).await.map_err(|failure| UpstreamError {
            service: handle.name().clone(),
            failure,
        })
    }

    /// Starts the active health checks of every service with `health`
    /// (once; later calls do nothing). Needs a tokio runtime, so `serve`
    /// calls it, not `load`: `check` starts nothing.
    pub fn start_health_checks(&self) {
        self.health_checks
            .start(self.services.values().flat_map(Service::checkers));
    }

    /// Services with no usable instance (every one ejected or failing its
    /// health check), names sorted: `/readyz` answers 503 naming them.
    pub fn unready_services(&self) -> Vec<String> {
        let now = Instant::now();
        let mut names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, service)| !service.is_ready(now))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every service's and instance's state and counters, in config order.
    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        let now = Instant::now();
        self.services
            .values()
            .map(|service| service.snapshot(now))
            .collect()
    }
}
