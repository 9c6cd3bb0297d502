//! Polling mappings (`poll_ms`, `emit`): one poller per distinct upstream
//! request, however many subscriptions want it.
//!
//! The registry is keyed like the response cache (`fetch/`): the field and
//! the request as sent — method, URL, body and every header, so a
//! forwarded `authorization`, a claims header or a `{claims.…}` value makes
//! a poller of its own and one user's answers never reach another. A
//! poller runs while some subscription holds its [`Poller`] handle; the
//! last one dropped stops it, its upstream call in flight cancelled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::auth::Claims;
use crate::config::Emit;
use crate::connector::request;
use crate::execute::calls::{self, Args, FieldAnswer, FieldScope};
use crate::execute::operation::{OperationState, RequestContext};
use crate::fetch::Fetcher;
use crate::schema::binding::BoundCall;
use crate::schema::FieldBinding;
use crate::telemetry::metrics;
use crate::telemetry::trace::RequestTrace;

/// Events a slow subscriber may fall behind by before it skips to the
/// newest (each event is the field's whole value: older ones are moot).
const EVENTS_BUFFERED: usize = 16;

/// The running pollers, by key.
#[derive(Default)]
pub struct Pollers {
    running: Mutex<HashMap<String, Weak<Poller>>>,
}

/// What a poller shares with its subscribers.
struct Shared {
    /// The last answer sent: a subscriber joining a running poller gets it
    /// as its first event. Written under this lock together with the send,
    /// so a joiner neither misses an answer nor gets one twice.
    latest: Mutex<Option<Arc<FieldAnswer>>>,
    events: broadcast::Sender<Arc<FieldAnswer>>,
}

/// A subscription's hold on a running poller.
pub struct Poller {
    key: String,
    shared: Arc<Shared>,
    task: AbortHandle,
    registry: Arc<Pollers>,
}

/// What one poll needs, owned by the poller's task: the first
/// subscriber's arguments and identity (every subscriber of the same key
/// sends the very same request).
pub struct PollRequest {
    pub binding: Arc<FieldBinding>,
    pub args: Option<Args>,
    pub headers: HeaderMap,
    pub claims: Option<Claims>,
    pub fetcher: Arc<Fetcher>,
    pub propagate_trace: bool,
    /// Bounds each poll (`[limits].request_timeout_ms`).
    pub timeout: Duration,
}

/// The events of one subscription: the current answer first when it
/// joined a running poller, then each new one.
pub struct PollEvents {
    pub first: Option<Arc<FieldAnswer>>,
    pub events: broadcast::Receiver<Arc<FieldAnswer>>,
    /// Keeps the poller running.
    pub _poller: Arc<Poller>,
}

impl Pollers {
    /// Joins the poller for `request`'s call, starting it when none runs.
    /// `None` when the call names no URL (a path placeholder without a
    /// value): such a field has no request to poll.
    pub async fn join(
        self: &Arc<Self>,
        call: &BoundCall,
        every: Duration,
        emit: Emit,
        poll: PollRequest,
    ) -> Result<PollEvents, Arc<FieldAnswer>> {
        let key = {
            let state = poll.state();
            let scope = FieldScope::new(&poll.binding, &state, poll.args.as_ref(), None);
            match request::build(
                &call.spec,
                &call.service,
                &scope,
                &scope.client(),
                call.timeout,
            ) {
                Ok(built) => format!(
                    "{}\n{}\n{}",
                    poll.binding.name,
                    every.as_millis(),
                    built.identity().fingerprint(&call.service.name)
                ),
                // What the field comes to without a call (null, or the
                // error a non-null field gets): its one event.
                Err(_) => return Err(Arc::new(calls::call_answer(call, &scope, &state).await)),
            }
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(poller) = running.get(&key).and_then(Weak::upgrade) {
            return Ok(poller.events());
        }
        let (events, _) = broadcast::channel(EVENTS_BUFFERED);
        let shared = Arc::new(Shared {
            latest: Mutex::new(None),
            events,
        });
        let task = tokio::spawn(run(shared.clone(), poll, every, emit)).abort_handle();
        let poller = Arc::new(Poller {
            key: key.clone(),
            shared,
            task,
            registry: self.clone(),
        });
        metrics::pollers(1.0);
        running.insert(key, Arc::downgrade(&poller));
        Ok(poller.events())
    }

    /// Pollers running now.
    pub fn count(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| p.strong_count() > 0)
            .count()
    }
}

impl Poller {
    fn events(self: Arc<Self>) -> PollEvents {
        let latest = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner());
        let events = self.shared.events.subscribe();
        let first = latest.clone();
        drop(latest);
        PollEvents {
            first,
            events,
            _poller: self,
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
        metrics::pollers(-1.0);
        let mut running = self
            .registry
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A new poller for the same key may have started since this one's
        // last subscriber left: only a dead entry is removed.
        if running
            .get(&self.key)
            .is_some_and(|entry| entry.strong_count() == 0)
        {
            running.remove(&self.key);
        }
    }
}

impl PollRequest {
    /// A fresh operation state for one poll: its own deadline, its own
    /// request id, no de-duplication with the poll before.
    fn state(&self) -> OperationState {
        OperationState::new(
            self.fetcher.clone(),
            RequestContext {
                headers: self.headers.clone(),
                claims: self.claims.clone(),
                deadline: tokio::time::Instant::now() + self.timeout,
                trace: RequestTrace::from_headers(&HeaderMap::new()),
                propagate_trace: self.propagate_trace,
                debug: false,
            },
        )
    }
}

/// Polls every `every` (the first poll at once) until aborted; sends the
/// answers `emit` asks for.
async fn run(shared: Arc<Shared>, poll: PollRequest, every: Duration, emit: Emit) {
    let crate::schema::binding::BoundSource::Event(crate::schema::binding::EventSource::Poll {
        call,
        ..
    }) = &poll.binding.source
    else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    // A slow upstream delays the next poll rather than making polls pile up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Fingerprint> = None;
    loop {
        ticks.tick().await;
        let state = poll.state();
        let scope = FieldScope::new(&poll.binding, &state, poll.args.as_ref(), None);
        let answer =
            match tokio::time::timeout_at(state.deadline, calls::call_answer(call, &scope, &state))
                .await
            {
                Ok(answer) => calls::shaped(answer, &scope),
                Err(_) => FieldAnswer::Failed(calls::timed_out()),
            };
        let print = Fingerprint::of(&answer);
        let repeated = last.as_ref() == Some(&print);
        // docs/SUBSCRIPTIONS.md: an error counts as an answer, and the same
        // error twice in a row is sent once, whatever `emit` says.
        let send = match emit {
            Emit::Changes => !repeated,
            Emit::Every => !(repeated && matches!(answer, FieldAnswer::Failed(_))),
        };
        last = Some(print);
        if send {
            let answer = Arc::new(answer);
            let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
            *latest = Some(answer.clone());
            // No receiver: every subscriber is between events; the next
            // joiner reads `latest`.
            let _ = shared.events.send(answer);
        }
    }
}

/// What change detection compares: the selected JSON's text, or the
/// error's code and message.
#[derive(PartialEq, Eq)]
enum Fingerprint {
    Value(String),
    Null,
    Failed(&'static str, String),
}

impl Fingerprint {
    fn of(answer: &FieldAnswer) -> Fingerprint {
        match answer {
            FieldAnswer::Value { held, .. } => Fingerprint::Value(
                held.single()
                    .map(|value| sonic_rs::to_string(value).unwrap_or_default())
                    .unwrap_or_default(),
            ),
            FieldAnswer::Null => Fingerprint::Null,
            FieldAnswer::Failed(err) => Fingerprint::Failed(err.code.as_str(), err.message.clone()),
        }
    }
}
