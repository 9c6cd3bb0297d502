//! One service at run time: its instances, how one is picked, how many
//! calls may be in flight, and the call itself — wait for a place, pick an
//! instance, send, retry elsewhere — all within the call's time budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::balance::Balancer;
use super::failure::UpstreamFailure;
use super::health::Checker;
use super::instance::{Instance, InstanceSnapshot, Lease};
use super::transport::{same_origin, url_of, via_reqwest, Direct, Outgoing, Reply, SendError};
use super::UpstreamAnswer;
use crate::config::{FollowRedirects, ServiceConfig};
use crate::connector::request::UpstreamRequest;
use crate::telemetry::metrics;
use tracing::Instrument;

/// Redirects followed for one attempt, as many as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per instance.
const POOL_MAX_IDLE: usize = 256;

/// The longest a connect may take, whatever the budget.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest connect timeout a service gets from sharing its budget.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// With less time than this left, a retry could only time out — and would
/// count as a failure against an instance that did nothing wrong.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(10);

pub struct Service {
    pub config: Arc<ServiceConfig>,
    name: Arc<str>,
    /// One client per service: its pool keeps connections per instance
    /// (per host and port), and its connect timeout is this service's.
    http: reqwest::Client,
    /// The same for plain `http://` instances, without reqwest's layers;
    /// `None` when no instance is one.
    direct: Option<Direct>,
    instances: Vec<Arc<Instance>>,
    balancer: Balancer,
    /// `max_concurrency`: a permit per call in flight (retries included).
    /// Tokio's semaphore is fair, so waiting calls go in arrival order.
    limit: Semaphore,
    /// Calls waiting for a permit.
    waiting: AtomicU64,
    /// `oauth2`: the Bearer token every call carries.
    tokens: Option<super::oauth2::Tokens>,
}

/// What the metrics (and tests) can read of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSnapshot {
    pub name: String,
    /// Calls holding a `max_concurrency` permit.
    pub in_flight: u64,
    /// Calls waiting for one.
    pub waiting: u64,
    /// At least one instance is usable (what `/readyz` asks).
    pub ready: bool,
    pub instances: Vec<InstanceSnapshot>,
}

impl Service {
    pub fn new(config: Arc<ServiceConfig>) -> Result<Self, reqwest::Error> {
        let connect_timeout = connect_timeout(config.timeout, config.retries);
        let http = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .tcp_nodelay(true)
            // Redirects are followed in `follow`, by `follow_redirects`.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout);
        let http = crate::tls::client::configure(http, config.tls.as_ref()).build()?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        let instances: Vec<Arc<Instance>> = config
            .urls
            .iter()
            .map(|url| {
                Arc::new(Instance::new(
                    name.clone(),
                    url.clone(),
                    config.circuit_breaker.as_ref(),
                ))
            })
            .collect();
        let direct = instances
            .iter()
            .any(|i| i.direct)
            .then(|| Direct::new(connect_timeout, POOL_IDLE_TIMEOUT, POOL_MAX_IDLE));
        Ok(Service {
            balancer: Balancer::new(config.load_balancing),
            limit: Semaphore::new(config.max_concurrency.max(1) as usize),
            waiting: AtomicU64::new(0),
            tokens: config
                .oauth2
                .clone()
                .map(|oauth2| super::oauth2::Tokens::new(oauth2, http.clone())),
            name,
            http,
            direct,
            instances,
            config,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Sends `request`: waits for a `max_concurrency` place, picks an
    /// instance, and retries an idempotent call on another instance after
    /// a retryable failure — never past `request.timeout`, the whole
    /// budget, waiting included.
    pub async fn send(&self, request: &UpstreamRequest) -> Result<UpstreamAnswer, UpstreamFailure> {
        let Some(tokens) = &self.tokens else {
            return self.send_as_is(request).await;
        };
        // docs/SHAPING.md "OAuth2 to services": the token goes on every
        // call; a 401 renews it once and sends the call once more.
        let deadline = Instant::now() + request.timeout;
        let bearer = tokens.bearer(deadline).await?;
        let with_token = |header: http::HeaderValue| {
            let mut request = request.clone();
            request.headers.insert(http::header::AUTHORIZATION, header);
            request
        };
        let result = self.send_as_is(&with_token(bearer.header)).await;
        if !matches!(result, Err(UpstreamFailure::Status(401, _))) {
            return result;
        }
        tracing::debug!(service = %self.name, "service answered 401; renewing its oauth2 token");
        let renewed = tokens.renew(bearer.generation, deadline).await?;
        self.send_as_is(&with_token(renewed.header)).await
    }

    async fn send_as_is(
        &self,
        request: &UpstreamRequest,
    ) -> Result<UpstreamAnswer, UpstreamFailure> {
        let deadline = Instant::now() + request.timeout;
        // Fail fast: when no instance may be called, neither waiting for a
        // place nor the network can help.
        if !self.accepts_calls(Instant::now()) {
            tracing::debug!(service = %self.name, path = %request.template, "no usable instance; failing fast");
            metrics::upstream_call(
                &self.name,
                "none",
                UpstreamFailure::Unavailable.status_class(),
                Duration::ZERO,
            );
            return Err(UpstreamFailure::Unavailable);
        }
        let _permit = self.acquire(deadline).await?;
        let mut retries_left = if matches!(request.method, Method::GET | Method::HEAD) {
            self.config.retries
        } else {
            0
        };
        let mut tried = Vec::new();
        let mut last_failure = None;
        loop {
            let Some((index, lease)) = self.lease(&tried, Instant::now()) else {
                // Everything got ejected meanwhile (perhaps by this very
                // call): the last real failure says more than "unavailable".
                return Err(last_failure.unwrap_or(UpstreamFailure::Unavailable));
            };
            tried.push(index);
            let started = Instant::now();
            let result = self.attempt(lease.instance(), request, deadline).await;
            self.account(
                lease.instance(),
                request,
                &result,
                started.elapsed(),
                tried.len() - 1,
            );
            lease.settle(
                result
                    .as_ref()
                    .is_err_and(UpstreamFailure::is_instance_failure),
            );
            let failure = match result {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            let time_left = deadline.saturating_duration_since(Instant::now());
            if retries_left == 0 || !failure.is_retryable() || time_left < MIN_RETRY_BUDGET {
                return Err(failure);
            }
            retries_left -= 1;
            tracing::debug!(service = %self.name, ?failure, "retrying upstream call");
            last_failure = Some(failure);
        }
    }

    /// One attempt's metrics and debug line: service, instance, method,
    /// path template (never the filled URL), status, duration, retries.
    fn account(
        &self,
        instance: &Instance,
        request: &UpstreamRequest,
        result: &Result<UpstreamAnswer, UpstreamFailure>,
        duration: Duration,
        retries: usize,
    ) {
        let status = match result {
            Ok(UpstreamAnswer::NotFound) => "4xx",
            Ok(UpstreamAnswer::Json { .. }) => "2xx",
            Err(failure) => failure.status_class(),
        };
        instance
            .call_metrics
            .record(&self.name, &instance.label, status, duration);
        tracing::debug!(
            service = %self.name,
            instance = %instance.label,
            method = %request.method,
            path = %request.template,
            status,
            duration_ms = duration.as_secs_f64() * 1000.0,
            retries,
            request_id = request.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-"),
            "upstream call"
        );
    }

    /// Whether any instance may take a call now.
    fn accepts_calls(&self, now: Instant) -> bool {
        self.instances.iter().any(|i| i.accepts_calls(now))
    }

    /// Not every instance ejected or failing its health check.
    pub fn is_ready(&self, now: Instant) -> bool {
        self.instances.iter().any(|i| i.is_usable(now))
    }

    /// A `max_concurrency` place, waited for until `deadline` at most.
    async fn acquire(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, UpstreamFailure> {
        if let Ok(permit) = self.limit.try_acquire() {
            return Ok(permit);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Decrement(&self.waiting);
        match tokio::time::timeout_at(deadline, self.limit.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed.
            Ok(Err(_closed)) => Err(UpstreamFailure::Unavailable),
            Err(_elapsed) => {
                tracing::debug!(
                    service = %self.name,
                    "timed out waiting for a max_concurrency place"
                );
                Err(UpstreamFailure::Timeout)
            }
        }
    }

    /// Picks an instance this call has not tried yet when there is one,
    /// else any, and takes a lease on it. Another call may take the last
    /// trial between the pick and the lease: then pick again without it.
    fn lease(&self, tried: &[usize], now: Instant) -> Option<(usize, Lease<'_>)> {
        let count = self.instances.len();
        let load = |i: usize| self.instances[i].in_flight();
        let mut refused: Vec<usize> = Vec::new();
        loop {
            let open = |i: usize| !refused.contains(&i) && self.instances[i].accepts_calls(now);
            let index = self
                .balancer
                .pick(count, |i| open(i) && !tried.contains(&i), load)
                .or_else(|| self.balancer.pick(count, open, load))?;
            match self.instances[index].lease(now) {
                Some(lease) => return Some((index, lease)),
                None => refused.push(index),
            }
        }
    }

    async fn attempt(
        &self,
        instance: &Instance,
        request: &UpstreamRequest,
        deadline: Instant,
    ) -> Result<UpstreamAnswer, UpstreamFailure> {
        // With OTLP export on, each attempt is a span, and the upstream's
        // `traceparent` names it as the parent.
        let otlp = crate::telemetry::otlp::enabled();
        let span = if otlp {
            tracing::info_span!(
                "upstream.call",
                otel.name = %format!("{} {}", request.method, request.template),
                otel.kind = "client",
                service = %self.name,
                instance = %instance.label,
            )
        } else {
            tracing::Span::none()
        };
        let headers = || {
            let mut headers = request.headers.clone();
            if otlp {
                crate::telemetry::otlp::inject(&span, &mut headers);
            }
            headers
        };
        // A plain call to a direct instance needs no WHATWG URL; any other
        // gets one, and the verbatim target when a value made a dot-segment.
        let (url, verbatim) = match instance.plain_target(&request.path_and_query) {
            Some(target) => (None, Some(target)),
            None => {
                let Some(url) = instance.call_url(&request.path_and_query) else {
                    // Config validation parses every URL; this is a safeguard.
                    tracing::warn!(service = %self.name, instance = %instance.label, "the instance URL does not parse");
                    return Err(UpstreamFailure::Unavailable);
                };
                let verbatim = match instance.verbatim_target(&request.path_and_query) {
                    None => None,
                    Some(Some(target)) => Some(target),
                    Some(None) => {
                        tracing::warn!(service = %self.name, instance = %instance.label, "a value makes a dot-segment in the path; call not sent");
                        return Err(UpstreamFailure::UnsafePath);
                    }
                };
                (Some(url), verbatim)
            }
        };
        // Without OTLP the span is none: wrapping the call in it would only
        // move its (large) future once more, on every call. The call is
        // written in each branch rather than bound to a local before them,
        // which could give it a second slot in this future to move from.
        let reply = if otlp {
            self.follow(instance, request, url, verbatim, headers(), deadline)
                .instrument(span.clone())
                .await
        } else {
            self.follow(instance, request, url, verbatim, headers(), deadline)
                .await
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(SendError::TooLarge) => {
                tracing::warn!(
                    service = %self.name,
                    instance = %instance.label,
                    max_response_bytes = self.config.max_response_bytes,
                    "upstream answer over max_response_bytes; connection dropped"
                );
                return Err(UpstreamFailure::TooLarge);
            }
            Err(SendError::TimedOut) => {
                tracing::debug!(service = %self.name, instance = %instance.label, "upstream call timed out");
                return Err(UpstreamFailure::Timeout);
            }
            Err(SendError::Failed(error)) => {
                // Logged here with every cause; the client only sees the code.
                tracing::warn!(service = %self.name, instance = %instance.label, error, "upstream call failed");
                return Err(UpstreamFailure::Unavailable);
            }
        };
        if reply.status == StatusCode::NOT_FOUND && reply.error_headers.is_none() {
            return Ok(UpstreamAnswer::NotFound);
        }
        if let Some(headers) = reply.error_headers {
            // docs/SHAPING.md: the call's `errors` templates read it.
            let body = reply.body.and_then(|body| super::json::parse(&body).ok());
            let answer = super::failure::ErrorAnswer { headers, body };
            return Err(UpstreamFailure::Status(
                reply.status.as_u16(),
                Some(Arc::new(answer)),
            ));
        }
        let (Some(body), true) = (reply.body, reply.status.is_success()) else {
            tracing::debug!(
                service = %self.name,
                instance = %instance.label,
                status = reply.status.as_u16(),
                "upstream answered an error status"
            );
            return Err(UpstreamFailure::Status(reply.status.as_u16(), None));
        };
        let (cache, forwarded) = (reply.cache, reply.forwarded);
        if body.is_empty() {
            return Ok(UpstreamAnswer::Json {
                value: super::json::Json::new(),
                cache,
                forwarded,
            });
        }
        super::json::parse(&body)
            .map(|value| UpstreamAnswer::Json {
                value,
                cache,
                forwarded,
            })
            .map_err(|err| {
                tracing::warn!(service = %self.name, error = %err, "upstream body is not JSON");
                UpstreamFailure::BadResponse
            })
    }

    /// One health checker per instance, when the service has `health`.
    /// Sends one attempt and takes the redirects it meets as
    /// `follow_redirects` allows: each hop through the transport that can
    /// carry its URL, at most [`MAX_REDIRECTS`] of them. A redirect not
    /// taken is the answer (a 3xx: `UPSTREAM_ERROR`).
    async fn follow(
        &self,
        instance: &Instance,
        request: &UpstreamRequest,
        first: Option<reqwest::Url>,
        verbatim: Option<http::Uri>,
        headers: http::HeaderMap,
        deadline: Instant,
    ) -> Result<Reply, SendError> {
        // The first hop's URL, when the call has one; a plain direct call
        // has only its target (`verbatim`), read as a URL once a redirect
        // needs it.
        let mut first = first;
        // Where the call goes now: the first hop until a redirect is taken
        // (the common case allocates no second URL).
        let mut redirected: Option<reqwest::Url> = None;
        let mut method = request.method.clone();
        let mut body = request.body.as_ref();
        let mut headers = headers;
        // Once a hop leaves the first origin, the gateway's headers stay
        // behind for good, even if a later hop comes back.
        let mut foreign = false;
        let mut hops = 0;
        loop {
            let url = redirected.as_ref().or(first.as_ref());
            let direct = match (&self.direct, url) {
                (Some(direct), _) if hops == 0 && instance.direct => Some(direct),
                (Some(direct), Some(url)) if hops > 0 && Direct::carries(url) => Some(direct),
                _ => None,
            };
            let call = Outgoing {
                method: &method,
                url,
                verbatim: verbatim.as_ref().filter(|_| hops == 0),
                // Moved, not cloned: a redirect builds its own from the
                // request's.
                headers: std::mem::take(&mut headers),
                body,
                deadline,
                max_body: self.config.max_response_bytes,
                forward: &self.config.forward_response_headers,
                error_body: request.error_body,
            };
            let reply = match direct {
                Some(direct) => direct.send(call).await?,
                None => via_reqwest(&self.http, call).await?,
            };
            let Some(redirect) = &reply.redirect else {
                return Ok(reply);
            };
            if first.is_none() {
                first = verbatim.as_ref().and_then(url_of);
            }
            let Some(first) = first.as_ref() else {
                return Ok(reply);
            };
            let allowed = match self.config.follow_redirects {
                FollowRedirects::None => false,
                FollowRedirects::SameOrigin => same_origin(&redirect.url, first),
                FollowRedirects::Any => true,
            };
            if !allowed || hops == MAX_REDIRECTS {
                tracing::warn!(
                    service = %self.name,
                    instance = %instance.label,
                    status = reply.status.as_u16(),
                    follow_redirects = ?self.config.follow_redirects,
                    hops,
                    "upstream redirect not followed"
                );
                return Ok(reply);
            }
            foreign |= !same_origin(&redirect.url, first);
            body = body.filter(|_| redirect.keep_body);
            let from = redirected.as_ref().unwrap_or(first);
            headers = redirect.headers(from, request.headers.clone(), body.is_some(), foreign);
            method = redirect.method.clone();
            redirected = Some(redirect.url.clone());
            hops += 1;
        }
    }

    pub fn checkers(&self) -> Vec<Checker> {
        let Some(health) = &self.config.health else {
            return Vec::new();
        };
        self.instances
            .iter()
            .map(|instance| {
                Checker::new(
                    instance.clone(),
                    self.http.clone(),
                    health.clone(),
                    &self.config.headers,
                )
            })
            .collect()
    }

    pub fn snapshot(&self, now: Instant) -> ServiceSnapshot {
        let max = self.config.max_concurrency.max(1) as usize;
        ServiceSnapshot {
            name: self.name.to_string(),
            in_flight: max.saturating_sub(self.limit.available_permits()) as u64,
            waiting: self.waiting.load(Ordering::Relaxed),
            ready: self.is_ready(now),
            instances: self.instances.iter().map(|i| i.snapshot(now)).collect(),
        }
    }
}

/// A connect may use at most its share of the budget, `timeout` divided
/// by the attempts (`retries + 1`), within 100 ms..5 s: an instance that
/// never answers a SYN then leaves time to retry on another one.
fn connect_timeout(timeout: Duration, retries: u32) -> Duration {
    let share = timeout / retries.saturating_add(1);
    share.clamp(MIN_CONNECT_TIMEOUT, MAX_CONNECT_TIMEOUT)
}

/// Takes one off a counter when dropped, so a cancelled wait is not
/// counted forever.
struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_gets_its_attempt_share_of_the_budget() {
        let ms = Duration::from_millis;
        assert_eq!(connect_timeout(ms(5000), 1), ms(2500));
        assert_eq!(connect_timeout(ms(3000), 0), ms(3000));
        assert_eq!(connect_timeout(ms(60_000), 1), MAX_CONNECT_TIMEOUT);
        assert_eq!(connect_timeout(ms(500), 9), MIN_CONNECT_TIMEOUT);
        assert_eq!(connect_timeout(ms(500), u32::MAX), MIN_CONNECT_TIMEOUT);
    }
}
