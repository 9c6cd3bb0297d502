//! One instance (base URL) of a service: its load, its breaker, its health
//! check result and its counters. Every state change is logged here, once,
//! with the service and the instance.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use super::breaker::{Admission, CircuitBreaker, CircuitState, Transition};
use super::health::HealthStatus;
use super::transport::Direct;
use crate::config::CircuitBreakerConfig;
use crate::telemetry::metrics::UpstreamCallMetrics;

#[derive(Debug)]
pub struct Instance {
    pub service: Arc<str>,
    /// Base URL without a trailing slash; a call's path is appended.
    pub url: String,
    /// The URL without user name or password, for logs and metrics.
    pub label: String,
    /// `url` parsed once, and its path without the trailing slash: a call's
    /// URL is this with the call's path and query set, which skips parsing
    /// the scheme and host (IDNA included) on every call.
    base: Option<(reqwest::Url, String)>,
    /// Calls here may skip reqwest ([`super::transport::Direct::carries`]).
    pub direct: bool,
    /// A direct instance's scheme and authority, parsed once for
    /// [`Instance::plain_target`].
    origin: Option<(http::uri::Scheme, http::uri::Authority)>,
    /// `conflux_upstream_requests_total` and `…_duration_seconds` here.
    pub call_metrics: UpstreamCallMetrics,
    /// Calls sent and not yet answered; least_requests reads it.
    in_flight: AtomicU64,
    /// `None` without `circuit_breaker`: calls alone never eject.
    breaker: Option<CircuitBreaker>,
    /// A `HealthStatus` as u8, written by the health check task only.
    health: AtomicU8,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    ejections: AtomicU64,
    recoveries: AtomicU64,
    health_failures: AtomicU64,
    health_recoveries: AtomicU64,
}

/// What the metrics (and tests) can read of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSnapshot {
    pub url: String,
    pub in_flight: u64,
    /// Receives calls, or is about to get its trial: not ejected and not
    /// failing its health check (what `/readyz` counts).
    pub usable: bool,
    /// `Closed` when the service has no circuit breaker.
    pub circuit: CircuitState,
    pub health: HealthStatus,
    /// Calls sent to this instance (each retry counts).
    pub calls: u64,
    /// Calls that failed the breaker's way: connect error, timeout, 5xx.
    pub failures: u64,
    /// Times the breaker opened, a failed trial included.
    pub ejections: u64,
    /// Times a trial closed the breaker again.
    pub recoveries: u64,
    /// Times a health check found a usable instance failing.
    pub health_failures: u64,
    /// Times a health check found a failing instance passing again.
    pub health_recoveries: u64,
}

impl Instance {
    pub fn new(service: Arc<str>, url: String, breaker: Option<&CircuitBreakerConfig>) -> Self {
        let parsed = reqwest::Url::parse(&url).ok();
        let direct = parsed.as_ref().is_some_and(Direct::carries);
        let origin = parsed.as_ref().filter(|_| direct).and_then(|base| {
            let origin = base.origin().ascii_serialization();
            let uri: http::Uri = origin.parse().ok()?;
            let parts = uri.into_parts();
            Some((parts.scheme?, parts.authority?))
        });
        Instance {
            label: redact(&url),
            direct,
            origin,
            base: parsed.map(|base| {
                let path = base.path().trim_end_matches('/').to_owned();
                (base, path)
            }),
            call_metrics: UpstreamCallMetrics::default(),
            service,
            url,
            in_flight: AtomicU64::new(0),
            breaker: breaker.map(CircuitBreaker::new),
            health: AtomicU8::new(HealthStatus::Unknown as u8),
            counters: Counters::default(),
        }
    }

    /// The URL of a call to `path_and_query` here (`/users/7?x=1`, as
    /// built by the connector: encoded, starting with `/`); `None` when the
    /// base URL does not parse, and the call should report that.
    pub fn call_url(&self, path_and_query: &str) -> Option<reqwest::Url> {
        let (base, base_path) = self.base.as_ref()?;
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut url = base.clone();
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        Some(url)
    }

    /// The request target of a call to `path_and_query` for the direct
    /// client, built without a WHATWG URL: `Some` when this instance is
    /// direct and the path and query hold only characters such a URL keeps
    /// as they are, and no `.` or `..` segment it would resolve. Building and
    /// then re-reading [`Instance::call_url`]'s URL was the largest part
    /// of a call's own cost on the benchmark (bench/README.md). The text
    /// sent is the same: the base path, then the call's path and query.
    pub fn plain_target(&self, path_and_query: &str) -> Option<http::Uri> {
        if !path_and_query.starts_with('/') || !path_and_query.bytes().all(kept_as_is) {
            return None;
        }
        let path = path_and_query.split('?').next().unwrap_or_default();
        // A dot-segment starts with "/."; most paths have none.
        if path.contains("/.")
            && path
                .split('/')
                .any(|segment| segment == "." || segment == "..")
        {
            return None;
        }
        self.direct_target(path_and_query)
    }

    /// A direct instance's request target for `path_and_query` as written:
    /// its origin, its base path, then the call's text. `None` when this
    /// instance is not direct or the text is not a valid request target.
    fn direct_target(&self, path_and_query: &str) -> Option<http::Uri> {
        let (scheme, authority) = self.origin.as_ref()?;
        let (_, base_path) = self.base.as_ref()?;
        let mut target = String::with_capacity(base_path.len() + path_and_query.len());
        target.push_str(base_path);
        target.push_str(path_and_query);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_maybe_shared(target).ok()?);
        http::Uri::from_parts(parts).ok()
    }

    /// The request target of a call whose path has a `.` or `..` segment
    /// that a value made (encoded `%2E` by the connector): a WHATWG URL
    /// such as [`Instance::call_url`]'s would resolve it and call another
    /// endpoint, so it is sent as written, by the direct client only.
    /// `None` when the call has no such segment; `Some(None)` when it has
    /// one and cannot be sent from here.
    pub fn verbatim_target(&self, path_and_query: &str) -> Option<Option<http::Uri>> {
        let path = path_and_query.split('?').next().unwrap_or_default();
        // Every form looked for holds a `%`; most paths have none.
        if !path.contains('%') {
            return None;
        }
        let dot_segment = path.split('/').any(|segment| {
            ["%2e", "%2e%2e", ".%2e", "%2e."]
                .iter()
                .any(|dots| segment.eq_ignore_ascii_case(dots))
        });
        if !dot_segment {
            return None;
        }
        Some(self.direct_target(path_and_query))
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> HealthStatus {
        HealthStatus::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Whether a new call may go here now (a trial included).
    pub fn accepts_calls(&self, now: Instant) -> bool {
        self.health() != HealthStatus::Failing
            && self.breaker.as_ref().is_none_or(|b| b.accepts_calls(now))
    }

    /// Not ejected and not failing its health check.
    pub fn is_usable(&self, now: Instant) -> bool {
        self.health() != HealthStatus::Failing
            && !self.breaker.as_ref().is_some_and(|b| b.is_ejected(now))
    }

    /// Takes a place for one call, if the breaker lets it through. The
    /// lease counts the call in flight until it is dropped.
    pub fn lease(&self, now: Instant) -> Option<Lease<'_>> {
        let admission = match &self.breaker {
            Some(breaker) => breaker.admit(now)?,
            None => Admission::Normal,
        };
        if admission == Admission::Trial {
            tracing::info!(
                service = %self.service,
                instance = %self.label,
                "trial call to an ejected instance"
            );
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            instance: self,
            admission,
            settled: false,
        })
    }

    /// Applies one health check result.
    pub fn record_health(&self, passed: bool) {
        let new = if passed {
            HealthStatus::Passing
        } else {
            HealthStatus::Failing
        };
        let old = HealthStatus::from_u8(self.health.swap(new as u8, Ordering::Relaxed));
        match (old, new) {
            (HealthStatus::Failing, HealthStatus::Passing) => {
                self.counters
                    .health_recoveries
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    service = %self.service,
                    instance = %self.label,
                    "instance passes its health check again; back in rotation"
                );
            }
            (HealthStatus::Unknown | HealthStatus::Passing, HealthStatus::Failing) => {
                self.counters
                    .health_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    service = %self.service,
                    instance = %self.label,
                    "instance fails its health check; no traffic until it passes"
                );
            }
            _ => {}
        }
    }

    pub fn snapshot(&self, now: Instant) -> InstanceSnapshot {
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        InstanceSnapshot {
            url: self.label.clone(),
            in_flight: self.in_flight(),
            usable: self.is_usable(now),
            circuit: self
                .breaker
                .as_ref()
                .map_or(CircuitState::Closed, CircuitBreaker::circuit_state),
            health: self.health(),
            calls: counter(&self.counters.calls),
            failures: counter(&self.counters.failures),
            ejections: counter(&self.counters.ejections),
            recoveries: counter(&self.counters.recoveries),
            health_failures: counter(&self.counters.health_failures),
            health_recoveries: counter(&self.counters.health_recoveries),
        }
    }

    fn settle(&self, admission: Admission, failed: bool) {
        if failed {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        let Some(breaker) = &self.breaker else {
            return;
        };
        let Some(transition) = breaker.record(admission, failed, Instant::now()) else {
            return;
        };
        match transition {
            Transition::Ejected => {
                self.counters.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    service = %self.service,
                    instance = %self.label,
                    "instance ejected after consecutive failures"
                );
            }
            Transition::TrialFailed => {
                self.counters.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    service = %self.service,
                    instance = %self.label,
                    "trial call failed; instance ejected again"
                );
            }
            Transition::Recovered => {
                self.counters.recoveries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    service = %self.service,
                    instance = %self.label,
                    "trial call succeeded; instance back in rotation"
                );
            }
        }
    }
}

/// One call's hold on an instance: counted in flight while it lives; its
/// outcome reaches the breaker through [`Lease::settle`].
#[derive(Debug)]
pub struct Lease<'a> {
    instance: &'a Instance,
    admission: Admission,
    settled: bool,
}

impl Lease<'_> {
    pub fn instance(&self) -> &Instance {
        self.instance
    }

    /// Records whether the call failed the breaker's way.
    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        self.instance.settle(self.admission, failed);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.instance.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.settled && self.admission == Admission::Trial {
            // The caller gave up (operation timeout, client gone) before
            // the trial answered: let the next call be the trial.
            if let Some(breaker) = &self.instance.breaker {
                breaker.abandon_trial(Instant::now());
            }
        }
    }
}

/// Bytes a WHATWG URL keeps as they are in an `http` URL's path and
/// query: unreserved characters, sub-delimiters but `'` (a query escapes
/// it), `:`, `@`, `/`, `?` and `%`.
fn kept_as_is(byte: u8) -> bool {
    KEPT_AS_IS[usize::from(byte)]
}

/// [`kept_as_is`] as a table: every byte of every plain call's path and
/// query is looked up.
static KEPT_AS_IS: [bool; 256] = {
    const PUNCTUATION: &[u8] = b"-._~!$&()*+,;=:@/?%";
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut i = 0;
    while i < PUNCTUATION.len() {
        table[PUNCTUATION[i] as usize] = true;
        i += 1;
    }
    table
};

/// `scheme://host:port/path` without user name and password.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn instance(breaker: Option<CircuitBreakerConfig>) -> Instance {
        Instance::new(
            Arc::from("users"),
            "http://127.0.0.1:7001".to_owned(),
            breaker.as_ref(),
        )
    }

    #[test]
    fn a_call_url_is_the_url_parsed_from_base_and_path_in_one_string() {
        let bases = [
            "http://127.0.0.1:7001",
            "http://users.internal:8080/api/v2",
            "https://user:secret@example.com/base",
            "http://[::1]:9000/p",
        ];
        let calls = [
            "/users/7",
            "/users/7?fields=a,b&x=%20y",
            "/search?q=caf%C3%A9&tags=a%2Cb",
            "/a%2Fb/c%3Fd",
            "/",
            "/items?",
        ];
        for base in bases {
            let instance = Instance::new(Arc::from("s"), base.to_owned(), None);
            for call in calls {
                let whole = reqwest::Url::parse(&format!("{base}{call}")).expect("url");
                assert_eq!(instance.call_url(call), Some(whole), "{base} + {call}");
            }
        }
        let unparsable = Instance::new(Arc::from("s"), "not a url".to_owned(), None);
        assert_eq!(unparsable.call_url("/x"), None);
    }

    /// A plain target is the text the WHATWG URL would have sent; a path
    /// that URL would change (a `.` segment, a character it escapes) gets
    /// none, and goes by the URL.
    #[test]
    fn a_plain_target_is_the_text_the_call_url_sends() {
        for base in [
            "http://127.0.0.1:7001",
            "http://users.internal:8080/api/v2/",
        ] {
            let instance = Instance::new(Arc::from("s"), base.to_owned(), None);
            if !instance.direct {
                // A proxy in the environment: every call goes by reqwest.
                assert_eq!(instance.plain_target("/users/7"), None);
                continue;
            }
            for call in [
                "/users/7",
                "/users/7?fields=a,b&x=%20y",
                "/search?q=caf%C3%A9&tags=a%2Cb&n=(1)*2;x=@y:z",
                "/a%2Fb/c%3Fd",
                "/",
                "/items?",
                "/v1.2/file.json?sort=-name&a=b?c",
                "/.well-known/x?y=.",
            ] {
                let url = instance.call_url(call).expect("url");
                let target = instance.plain_target(call).expect(call);
                assert_eq!(target.to_string(), url.as_str(), "{base} + {call}");
            }
            for changed in [
                "/a/./b",
                "/a/../b",
                "/a/..",
                "/a b",
                "/a\\b",
                "/q?name=o'brien",
                "/q?x=\"y\"",
                "/{x}",
                "/caf\u{e9}",
                "users/7",
            ] {
                assert_eq!(instance.plain_target(changed), None, "{changed}");
            }
            // An encoded dot-segment is sent as written, as the verbatim
            // target sends it.
            let dots = "/users/%2E%2E/admin";
            let verbatim = instance.verbatim_target(dots).expect("a dot-segment");
            assert_eq!(instance.plain_target(dots), verbatim);
        }
        let https = Instance::new(Arc::from("s"), "https://example.com".to_owned(), None);
        assert_eq!(https.plain_target("/users/7"), None);
    }

    #[test]
    fn a_lease_counts_in_flight_until_dropped() {
        let i = instance(None);
        let now = Instant::now();
        let a = i.lease(now).expect("no breaker: always admitted");
        let b = i.lease(now).expect("no breaker: always admitted");
        assert_eq!(i.in_flight(), 2);
        a.settle(false);
        drop(b);
        assert_eq!(i.in_flight(), 0);
        assert_eq!(i.snapshot(now).calls, 2);
    }

    #[test]
    fn ejection_and_recovery_are_counted_once() {
        let i = instance(Some(CircuitBreakerConfig {
            failures: 2,
            open: Duration::from_millis(0),
        }));
        let now = Instant::now();
        for _ in 0..2 {
            i.lease(now).expect("closed").settle(true);
        }
        let snapshot = i.snapshot(now);
        assert_eq!((snapshot.failures, snapshot.ejections), (2, 1));
        assert_eq!(snapshot.circuit, CircuitState::Open);
        // open_ms 0: the next call is the trial, and only it.
        let later = Instant::now();
        let trial = i.lease(later).expect("the trial");
        assert!(i.lease(later).is_none());
        trial.settle(false);
        let snapshot = i.snapshot(later);
        assert_eq!((snapshot.recoveries, snapshot.ejections), (1, 1));
        assert_eq!(snapshot.circuit, CircuitState::Closed);
    }

    #[test]
    fn a_dropped_trial_frees_the_next_trial() {
        let i = instance(Some(CircuitBreakerConfig {
            failures: 1,
            open: Duration::from_millis(0),
        }));
        i.lease(Instant::now()).expect("closed").settle(true);
        let now = Instant::now();
        drop(i.lease(now).expect("the trial"));
        assert!(i.lease(Instant::now()).is_some());
    }

    #[test]
    fn a_failing_health_check_takes_the_instance_out() {
        let i = instance(None);
        let now = Instant::now();
        assert!(i.is_usable(now), "usable before its first check");
        i.record_health(true);
        assert!(i.accepts_calls(now));
        i.record_health(false);
        i.record_health(false);
        assert!(!i.accepts_calls(now));
        assert!(!i.is_usable(now));
        i.record_health(true);
        assert!(i.is_usable(now));
        let snapshot = i.snapshot(now);
        assert_eq!(
            (snapshot.health_failures, snapshot.health_recoveries),
            (1, 1)
        );
    }

    #[test]
    fn credentials_stay_out_of_the_label() {
        assert_eq!(
            redact("http://user:secret@127.0.0.1:7001/api"),
            "http://127.0.0.1:7001/api"
        );
        assert_eq!(redact("http://127.0.0.1:7001"), "http://127.0.0.1:7001");
    }
}
