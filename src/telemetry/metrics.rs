//! Prometheus metrics (docs/OPERATIONS.md "Metrics", `[telemetry].metrics`), through
//! the `metrics` facade and its Prometheus exporter. Until the recorder is
//! installed every call here is a no-op, so metrics cost nothing when off.
//!
//! Label cardinality is bounded. The `operation` label is a name the
//! document gives the operation that was chosen — never a client's
//! `operationName` that matched nothing (a 100 KB unknown name per request
//! took `/metrics` from 4.6 KB to 34 MB in 20 requests) — cut to
//! [`MAX_OPERATION_NAME_BYTES`]; names beyond the first
//! [`MAX_OPERATION_NAMES`] seen are reported as `other`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::upstream::{CircuitState, UpstreamClient};

/// Distinct operation names kept as label values.
pub const MAX_OPERATION_NAMES: usize = 100;

/// Longest operation name kept in a label, in bytes; a longer one is cut.
pub const MAX_OPERATION_NAME_BYTES: usize = 64;

/// The label of a request whose operation was never chosen: refused before
/// (a parse error, `[limits]`, a persisted-query refusal), or whose
/// `operationName` the document does not have.
pub const UNKNOWN_OPERATION: &str = "unknown";

/// The name of an operation the document gives no name, in the metrics
/// and in the request's log line alike.
pub const ANONYMOUS_OPERATION: &str = "anonymous";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static OPERATIONS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();

/// Installs the process-wide recorder (once); `None` if another recorder
/// was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("conflux_batch_keys".into()), BATCH_BUCKETS));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    describe();
                    keep_up(handle.clone(), UPKEEP_EVERY);
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The `# HELP` line of every series (docs/OPERATIONS.md "Metrics"), so a
/// scrape explains itself; the exporter writes it above each series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "conflux_requests_total",
        "GraphQL operations answered, by operation name and outcome (ok, partial, refused)"
    );
    describe_histogram!(
        "conflux_request_duration_seconds",
        Unit::Seconds,
        "Time from the start of a GraphQL operation to its response"
    );
    describe_gauge!(
        "conflux_requests_in_flight",
        "/graphql requests being answered now"
    );
    describe_counter!(
        "conflux_upstream_requests_total",
        "Calls to services (cache hits excluded), by service, instance and status class"
    );
    describe_histogram!(
        "conflux_upstream_duration_seconds",
        Unit::Seconds,
        "Duration of calls to services, by service, instance and status class"
    );
    describe_histogram!("conflux_batch_keys", "Keys sent in one batched call");
    describe_counter!(
        "conflux_cache_lookups_total",
        "Response cache lookups, by result (hit, miss, stale, revalidate)"
    );
    describe_counter!(
        "conflux_rate_limited_total",
        "Requests refused with 429 by [rate_limit]"
    );
    describe_counter!(
        "conflux_config_reloads_total",
        "Configuration reloads, by outcome (success, failure)"
    );
    describe_gauge!(
        "conflux_upstream_in_flight",
        "Calls in flight to each service"
    );
    describe_gauge!(
        "conflux_upstream_waiting",
        "Calls waiting for a max_concurrency place, per service"
    );
    describe_gauge!(
        "conflux_upstream_circuit_state",
        "Circuit breaker per instance: 0 closed, 1 half-open, 2 open"
    );
    describe_gauge!(
        "conflux_upstream_instance_usable",
        "1 when the instance gets traffic (not ejected, passing its health check)"
    );
    describe_gauge!(
        "conflux_upstream_instance_calls",
        "Calls to the instance since the configuration was loaded"
    );
    describe_gauge!(
        "conflux_upstream_instance_failures",
        "Failed calls to the instance since the configuration was loaded"
    );
    describe_gauge!(
        "conflux_upstream_instance_ejections",
        "Times the circuit breaker ejected the instance since the configuration was loaded"
    );
    describe_gauge!(
        "conflux_upstream_instance_recoveries",
        "Times the instance came back after an ejection since the configuration was loaded"
    );
}

/// Folds the recorder's histogram samples into their buckets every `every`,
/// on a thread of its own. The exporter keeps each sample until then (or
/// until a scrape renders them): with nothing scraping `/metrics`, each
/// query of ten calls left about 80 bytes behind (heaptrack), 3 MiB per
/// 40,000 queries, without end.
fn keep_up(handle: PrometheusHandle, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            handle.run_upkeep();
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot start the metrics upkeep thread; histograms grow until scraped");
    }
}

/// The text exposition, with per-instance state read at scrape time.
pub fn render(upstream: &UpstreamClient) -> String {
    let Some(handle) = install() else {
        return String::new();
    };
    for service in upstream.snapshot() {
        gauge!("conflux_upstream_in_flight", "service" => service.name.clone())
            .set(service.in_flight as f64);
        gauge!("conflux_upstream_waiting", "service" => service.name.clone())
            .set(service.waiting as f64);
        for instance in service.instances {
            let labels = [
                ("service", service.name.clone()),
                ("instance", instance.url.clone()),
            ];
            let circuit = match instance.circuit {
                CircuitState::Closed => 0.0,
                CircuitState::HalfOpen => 1.0,
                CircuitState::Open => 2.0,
            };
            gauge!("conflux_upstream_circuit_state", &labels).set(circuit);
            gauge!("conflux_upstream_instance_usable", &labels).set(if instance.usable {
                1.0
            } else {
                0.0
            });
            gauge!("conflux_upstream_instance_calls", &labels).set(instance.calls as f64);
            gauge!("conflux_upstream_instance_failures", &labels).set(instance.failures as f64);
            gauge!("conflux_upstream_instance_ejections", &labels).set(instance.ejections as f64);
            gauge!("conflux_upstream_instance_recoveries", &labels).set(instance.recoveries as f64);
        }
    }
    handle.render()
}

/// The label value for the name of the operation that was chosen (`None`:
/// an anonymous one): bounded in length and in number.
fn operation_label(name: Option<&str>) -> String {
    let Some(name) = name else {
        return ANONYMOUS_OPERATION.to_owned();
    };
    let name = truncate(name, MAX_OPERATION_NAME_BYTES);
    let mut seen = OPERATIONS
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        return name.to_owned();
    }
    "other".to_owned()
}

/// `text`'s first `max` bytes at most, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Each operation label's request counter and duration histogram, by
/// outcome, kept by the gateway and found again by the label: `counter!`
/// with labels allocates and hashes its key and searches the registry at
/// each call, about 1.7k instructions per request for the two. As bounded
/// as the labels are.
#[derive(Default)]
pub struct RequestMetrics {
    handles: Mutex<RequestHandles>,
}

type RequestHandles = foldhash::HashMap<String, Vec<(&'static str, Counter, Histogram)>>;

impl RequestMetrics {
    /// Counts one GraphQL request in `conflux_requests_total` and
    /// `conflux_request_duration_seconds`. `operation`: the chosen
    /// operation's name (`None`: anonymous); `chosen` false: no operation
    /// was chosen (labelled `unknown`).
    pub fn record(
        &self,
        operation: Option<&str>,
        chosen: bool,
        outcome: &'static str,
        duration: Duration,
    ) {
        let key = match (chosen, operation) {
            (false, _) => UNKNOWN_OPERATION,
            (true, None) => ANONYMOUS_OPERATION,
            (true, Some(name)) => truncate(name, MAX_OPERATION_NAME_BYTES),
        };
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        let known = handles
            .get(key)
            .and_then(|by_outcome| by_outcome.iter().find(|(o, ..)| *o == outcome));
        if let Some((_, calls, durations)) = known {
            calls.increment(1);
            durations.record(duration.as_secs_f64());
            return;
        }
        let label = if chosen {
            operation_label(operation)
        } else {
            UNKNOWN_OPERATION.to_owned()
        };
        let labels = [
            ("operation", label.clone()),
            ("outcome", outcome.to_owned()),
        ];
        let calls = counter!("conflux_requests_total", &labels);
        let durations = histogram!("conflux_request_duration_seconds", &labels);
        calls.increment(1);
        durations.record(duration.as_secs_f64());
        // A name past the bound is labelled `other`: kept only under its own
        // label, such names are never remembered one by one.
        if label == key {
            handles
                .entry(label)
                .or_default()
                .push((outcome, calls, durations));
        }
    }
}

/// Counts one `/graphql` request in `conflux_requests_in_flight` until
/// dropped — also when the client goes away and the request's future is
/// dropped before it finishes.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        gauge!("conflux_requests_in_flight").increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("conflux_requests_in_flight").decrement(1.0);
    }
}

/// One attempt of an upstream call to one instance (`none` when no
/// instance could be called).
pub fn upstream_call(
    service: &str,
    instance: &str,
    status_class: &'static str,
    duration: Duration,
) {
    let labels = [
        ("service", service.to_owned()),
        ("instance", instance.to_owned()),
        ("status", status_class.to_owned()),
    ];
    counter!("conflux_upstream_requests_total", &labels).increment(1);
    histogram!("conflux_upstream_duration_seconds", &labels).record(duration.as_secs_f64());
}

/// The status classes an upstream call is counted under (`status` label).
const STATUS_CLASSES: [&str; 7] = [
    "2xx",
    "4xx",
    "5xx",
    "other",
    "timeout",
    "unavailable",
    "bad_response",
];

/// One instance's upstream call metrics, a counter and a histogram per
/// status class, registered at the first call of each class. Its labels
/// never change, so a call records straight into the handles instead of
/// building three label strings and looking the series up by them (about
/// a dozen allocations per call, on every call).
#[derive(Default)]
pub struct UpstreamCallMetrics {
    by_status: [OnceLock<(Counter, Histogram)>; STATUS_CLASSES.len()],
}

impl std::fmt::Debug for UpstreamCallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamCallMetrics")
    }
}

impl UpstreamCallMetrics {
    /// As [`upstream_call`]. Registered lazily, not when the instance is
    /// built: the recorder is installed after the gateway is.
    pub fn record(
        &self,
        service: &str,
        instance: &str,
        status_class: &'static str,
        duration: Duration,
    ) {
        let Some(index) = STATUS_CLASSES.iter().position(|s| *s == status_class) else {
            return upstream_call(service, instance, status_class, duration);
        };
        let (calls, durations) = self.by_status[index].get_or_init(|| {
            let labels = [
                ("service", service.to_owned()),
                ("instance", instance.to_owned()),
                ("status", status_class.to_owned()),
            ];
            (
                counter!("conflux_upstream_requests_total", &labels),
                histogram!("conflux_upstream_duration_seconds", &labels),
            )
        });
        calls.increment(1);
        durations.record(duration.as_secs_f64());
    }
}

pub fn batch_keys(keys: usize) {
    histogram!("conflux_batch_keys").record(keys as f64);
}

pub fn cache(result: &'static str) {
    counter!("conflux_cache_lookups_total", "result" => result).increment(1);
}

/// A mapping problem met writing `field` (`Type.field`; bounded by the
/// schema): `missing` or `wrong_type` (docs/PLAN.md).
pub fn mapping_problem(field: &str, problem: &'static str) {
    counter!("conflux_mapping_problems_total", "field" => field.to_owned(), "problem" => problem)
        .increment(1);
}

pub fn rate_limited() {
    counter!("conflux_rate_limited_total").increment(1);
}

pub fn reload(outcome: &'static str) {
    counter!("conflux_config_reloads_total", "outcome" => outcome).increment(1);
}

/// Subscriptions open on this instance (docs/SUBSCRIPTIONS.md).
pub fn subscriptions_open(delta: f64) {
    gauge!("conflux_subscriptions_open").increment(delta);
}

/// Pollers running: one per distinct upstream request polled.
pub fn pollers(delta: f64) {
    gauge!("conflux_subscription_pollers").increment(delta);
}

/// One `POST /webhooks/NAME`: `accepted`, `unauthorized`, `bad_request`.
/// `name` is a configured webhook's (an unknown one is answered 404 and
/// not counted), so the label's values are bounded by the config.
pub fn webhook_delivery(name: &str, result: &'static str) {
    counter!("conflux_webhook_deliveries_total", "webhook" => name.to_owned(), "result" => result)
        .increment(1);
}

/// Events delivered to subscribers.
pub fn subscription_events(count: u64) {
    counter!("conflux_subscription_events_total").increment(count);
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("Short", 64), "Short");
        assert_eq!(truncate(&"a".repeat(100), 64).len(), 64);
        assert_eq!(truncate("aé", 2), "a");
    }
}
