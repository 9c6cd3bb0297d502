//! State that lives for one GraphQL operation: the client's headers, and
//! the calls already made, so identical GETs are sent once (docs/CONFIG.md).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::PathSegment;
use http::HeaderMap;
use tokio::time::Instant;

use super::cache_control::CacheControl;
use crate::auth::Claims;
use crate::batch::Batches;
use crate::config::ServiceConfig;
use crate::connector::request::{RequestIdentity, UpstreamRequest};
use crate::fetch::Lifetime;
use crate::fetch::{CachePolicy, Fetched, Fetcher};
use crate::telemetry::metrics;
use crate::telemetry::trace::RequestTrace;
use crate::upstream::{Forwarded, UpstreamAnswer, UpstreamError};
use http::HeaderValue;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub type CallResult = Result<Fetched, UpstreamError>;
/// A GET's answer, once its first caller has it. The first caller sends
/// the call itself, in its own future (nothing boxed); a later identical
/// call waits for the answer, and would send it again only if the first
/// caller were dropped before the answer came (the whole operation is
/// dropped at once, so it is not).
type CallCell = Arc<tokio::sync::OnceCell<CallResult>>;

pub struct OperationState {
    pub fetcher: Arc<Fetcher>,
    /// The client request's headers, for `forward_headers` and `{headers.…}`.
    pub client_headers: HeaderMap,
    /// The verified token's claims; `None` for an anonymous request.
    pub claims: Option<Claims>,
    /// When `[limits].request_timeout_ms` runs out for this operation.
    pub deadline: Instant,
    /// Request id and trace context, sent with every upstream call.
    pub trace: RequestTrace,
    pub propagate_trace: bool,
    /// Upstream calls made, for the log line, and the waterfall when asked.
    pub stats: Arc<CallStats>,
    /// Every GET of this operation by (service, request): a later identical
    /// call awaits the first one's answer instead of calling again.
    calls: Mutex<foldhash::HashMap<(String, Arc<RequestIdentity>), CallCell>>,
    /// Keys of batched fields, collected across the operation.
    pub batches: Batches,
    /// Paths served from stale cache entries (`extensions.conflux.stale`).
    stale_paths: Mutex<Vec<Vec<PathSegment>>>,
    /// What the calls allow the answer's `Cache-Control`.
    cache_control: Mutex<CacheControl>,
    /// `forward_response_headers` of the calls made, in the order they
    /// finished: `set-cookie` appended, any other the last call's value.
    forwarded: Mutex<Forwarded>,
}

/// What the HTTP layer knows about the client request.
pub struct RequestContext {
    pub headers: HeaderMap,
    pub claims: Option<Claims>,
    pub deadline: Instant,
    pub trace: RequestTrace,
    pub propagate_trace: bool,
    /// Record the call waterfall (`conflux-debug: 1` with `[server].debug`).
    pub debug: bool,
}

/// How a call shows up in logs and the waterfall.
#[derive(Debug, Clone)]
pub struct CallLabel {
    /// The path template as written, never the filled URL.
    pub path: Arc<str>,
    /// Keys in the call, for a batch.
    pub batch_size: Option<usize>,
    /// The field's path in the document (`user.orders`), when recorded.
    pub field: Option<Arc<str>>,
}

/// One upstream call, as the debug waterfall shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    /// The field that made the call (the first one, for a call several
    /// fields share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<Arc<str>>,
    pub service: String,
    pub method: String,
    pub path: Arc<str>,
    /// Milliseconds from the operation's start, to the microsecond.
    pub start_ms: f64,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    pub cache_hit: bool,
    pub status: String,
}

/// `problem` of a [`MappingProblem`]: the value the mapping reads is not
/// in the upstream answer.
pub const MISSING: &str = "missing";
/// `problem` of a [`MappingProblem`]: the value does not fit the field's type.
pub const WRONG_TYPE: &str = "wrong_type";

/// Mapping problems listed per response, at most (all are counted in
/// `/metrics`).
pub const MAX_PROBLEMS: usize = 100;

/// A mapping problem met writing the response (docs/PLAN.md), as the
/// debug waterfall lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MappingProblem {
    /// `Type.field`.
    pub field: String,
    /// Where in the response.
    pub path: Vec<PathSegment>,
    pub problem: &'static str,
    pub detail: String,
}

pub struct CallStats {
    started: Instant,
    calls: AtomicUsize,
    /// Calls sent or looked up in the cache so far, against `budget`.
    attempted: AtomicU64,
    /// `[limits].max_upstream_calls` (docs/PLAN.md): the call past it is
    /// not made. Checked before the cache is, so a cache hit counts too.
    budget: AtomicU64,
    records: Option<Mutex<Vec<CallRecord>>>,
    /// Mapping problems met, when recording.
    problems: Mutex<Vec<MappingProblem>>,
}

impl CallStats {
    fn new(debug: bool) -> Self {
        CallStats {
            started: Instant::now(),
            calls: AtomicUsize::new(0),
            attempted: AtomicU64::new(0),
            budget: AtomicU64::new(u64::MAX),
            records: debug.then(|| Mutex::new(Vec::new())),
            problems: Mutex::new(Vec::new()),
        }
    }

    /// Bounds the calls the operation may still make.
    pub fn set_budget(&self, max: u64) {
        self.budget.store(max, Ordering::Relaxed);
    }

    /// Takes one call from the budget; `Err(max)` when none is left.
    fn take_one(&self) -> Result<(), u64> {
        let max = self.budget.load(Ordering::Relaxed);
        if self.attempted.fetch_add(1, Ordering::Relaxed) < max {
            Ok(())
        } else {
            Err(max)
        }
    }

    /// Calls that went upstream (cache hits and joined calls not counted).
    pub fn upstream_calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whether the waterfall is recorded.
    pub fn recording(&self) -> bool {
        self.records.is_some()
    }

    /// The mapping problems met, in the order met.
    pub fn take_problems(&self) -> Vec<MappingProblem> {
        std::mem::take(&mut *lock(&self.problems))
    }

    /// The waterfall, when recording.
    pub fn records(&self) -> Option<Vec<CallRecord>> {
        let records = self.records.as_ref()?;
        let mut records = records.lock().unwrap_or_else(|e| e.into_inner()).clone();
        records.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        Some(records)
    }
}

/// `duration` in milliseconds, rounded to the microsecond: the waterfall
/// shows `7.844`, not `7.843852999999999`.
fn whole_microseconds(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// Sends one call through the fetcher, and accounts for it: the
/// operation's call count, the batch size metric and the waterfall record.
async fn measured(
    fetcher: Arc<Fetcher>,
    service: Arc<ServiceConfig>,
    request: UpstreamRequest,
    policy: Option<CachePolicy>,
    label: CallLabel,
    stats: Arc<CallStats>,
) -> CallResult {
    let method = request.method.clone();
    let started = Instant::now();
    if let Err(max) = stats.take_one() {
        return Err(UpstreamError {
            service: Arc::from(service.name.as_str()),
            failure: crate::upstream::UpstreamFailure::OverBudget(max),
        });
    }
    let result = fetcher.fetch(&service, request, policy).await;
    let duration = started.elapsed();
    let cache_hit = matches!(&result, Ok(fetched) if fetched.from_cache);
    let status = match &result {
        Ok(fetched) if fetched.stale => "stale",
        Ok(fetched) if matches!(*fetched.answer, UpstreamAnswer::NotFound) => "4xx",
        Ok(_) => "2xx",
        Err(err) => err.failure.status_class(),
    };
    // Metrics and the per-attempt log line come from `upstream`, which
    // knows the instance and the retries; here the operation's own count.
    if !cache_hit {
        stats.calls.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(size) = label.batch_size {
        metrics::batch_keys(size);
    }
    if let Some(records) = &stats.records {
        let record = CallRecord {
            field: label.field,
            service: service.name.clone(),
            method: method.to_string(),
            path: label.path,
            start_ms: whole_microseconds(started.duration_since(stats.started)),
            duration_ms: whole_microseconds(duration),
            batch_size: label.batch_size,
            cache_hit,
            status: status.to_owned(),
        };
        records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }
    result
}

impl OperationState {
    pub fn new(fetcher: Arc<Fetcher>, request: RequestContext) -> Self {
        OperationState {
            fetcher,
            client_headers: request.headers,
            claims: request.claims,
            deadline: request.deadline,
            trace: request.trace,
            propagate_trace: request.propagate_trace,
            stats: Arc::new(CallStats::new(request.debug)),
            calls: Mutex::default(),
            batches: Batches::default(),
            stale_paths: Mutex::new(Vec::new()),
            cache_control: Mutex::default(),
            forwarded: Mutex::default(),
        }
    }

    /// Sends `request` (through the cache and coalescing), or joins the
    /// identical GET this operation already made. Every distinct call is
    /// counted, measured and logged once.
    pub async fn fetch(
        &self,
        service: &Arc<ServiceConfig>,
        request: UpstreamRequest,
        policy: Option<CachePolicy>,
        label: CallLabel,
    ) -> CallResult {
        let send = |request| async {
            let (fetcher, stats) = (self.fetcher.clone(), self.stats.clone());
            let result = measured(fetcher, service.clone(), request, policy, label, stats).await;
            if let Ok(fetched) = &result {
                if let UpstreamAnswer::Json { forwarded, .. } = &*fetched.answer {
                    self.forward(forwarded);
                }
            }
            result
        };
        if !request.is_deduplicable() {
            return send(request).await;
        }
        let cell = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .entry((service.name.clone(), request.identity()))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| send(request)).await.clone()
    }

    /// Counts one call's answer toward the response's `Cache-Control`.
    pub fn note_lifetime(&self, lifetime: Lifetime) {
        lock(&self.cache_control).add(lifetime);
    }

    /// The `Cache-Control` the calls made so far allow.
    pub fn cache_control(&self) -> HeaderValue {
        lock(&self.cache_control).header()
    }

    /// Keeps a call's answer headers for the client's response.
    fn forward(&self, headers: &Forwarded) {
        if headers.is_empty() {
            return;
        }
        let mut kept = lock(&self.forwarded);
        for (name, value) in headers {
            if name != http::header::SET_COOKIE {
                kept.retain(|(kept, _)| kept != name);
            }
            kept.push((name.clone(), value.clone()));
        }
    }

    /// The answer headers to send to the client.
    pub fn take_forwarded(&self) -> Forwarded {
        std::mem::take(&mut *lock(&self.forwarded))
    }

    /// Keeps a mapping problem for the waterfall: the first
    /// [`MAX_PROBLEMS`], so a list of a million items each missing a key
    /// does not keep a million entries.
    pub fn note_problem(&self, problem: MappingProblem) {
        let mut problems = lock(&self.stats.problems);
        if problems.len() < MAX_PROBLEMS {
            problems.push(problem);
        }
    }

    /// Records that the field at `path` was served from a stale cache entry.
    pub fn mark_stale(&self, path: Vec<PathSegment>) {
        self.stale_paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }

    pub fn take_stale_paths(&self) -> Vec<Vec<PathSegment>> {
        std::mem::take(&mut *self.stale_paths.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
