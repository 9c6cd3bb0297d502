//! Subscriptions fed by REST (docs/SUBSCRIPTIONS.md): `Subscription`
//! fields polled (`poller`) or pushed by webhooks (`webhook`, across
//! instances through `broker`), within `[subscriptions]` limits
//! (`limits`). Each event resolves the selection below the subscription
//! field like a query, on the one engine (`execute::planned::execute_event`);
//! the transports (`http/sse.rs`, `http/ws.rs`) only frame the payloads.
//!
//! The [`Hub`] outlives reloads (the new gateway takes the old one's), so
//! a webhook reaches every subscription, whichever configuration started
//! it; a reload that removes a subscription's field ends it.

pub mod broker;
pub mod limits;
pub mod poller;
pub mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::ServerError;
use http::HeaderMap;
use tokio::sync::{broadcast, Notify};

use crate::auth::Claims;
use crate::config::SubscriptionsConfig;
use crate::error::ErrorCode;
use crate::execute::calls::{Args, FieldAnswer, FieldScope};
use crate::execute::operation::{OperationState, RequestContext};
use crate::execute::planned::{self, OperationPlan};
use crate::execute::stream::{self, PayloadSender, Payloads};
use crate::execute::with_code;
use crate::gateway::Gateway;
use crate::schema::binding::{BoundSource, EventSource};
use crate::telemetry::metrics;
use crate::telemetry::trace::RequestTrace;
use webhook::Delivery;

/// Deliveries a slow subscription may fall behind by.
const DELIVERIES_BUFFERED: usize = 256;

/// Every subscription of this process, across reloads.
pub struct Hub {
    counts: Arc<limits::Counts>,
    pub pollers: Arc<poller::Pollers>,
    deliveries: broadcast::Sender<Arc<Delivery>>,
    /// Started with the first webhook delivery or subscription.
    broker: OnceLock<Option<Arc<broker::Broker>>>,
    broker_url: Option<String>,
    active: Mutex<HashMap<u64, Active>>,
    next_id: AtomicU64,
    /// Shutting down: every subscription completes, new ones are refused.
    closed: AtomicBool,
}

/// An open subscription, as the hub ends it.
struct Active {
    /// `Type.field` of its subscription field.
    field: String,
    end: Arc<Notify>,
}

/// Who subscribes, as the transport knows them.
pub struct Subscriber {
    /// The gateway the subscription runs on (its plans, schema, clients).
    pub gateway: Arc<Gateway>,
    /// `sub:…` for a verified token, else `ip:…`: `max_per_client`'s key.
    pub client: String,
}

/// Why a subscription did not start.
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

impl Hub {
    pub fn new(config: &SubscriptionsConfig) -> Hub {
        let (deliveries, _) = broadcast::channel(DELIVERIES_BUFFERED);
        Hub {
            counts: Arc::default(),
            pollers: Arc::default(),
            deliveries,
            broker: OnceLock::new(),
            broker_url: config.redis_broker.clone(),
            active: Mutex::default(),
            next_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Subscriptions open now.
    pub fn open(&self) -> u32 {
        self.counts.total()
    }

    /// The Redis broker, started on first use (inside the runtime).
    fn broker(&self) -> Option<&Arc<broker::Broker>> {
        self.broker
            .get_or_init(|| {
                let url = self.broker_url.as_deref()?;
                match broker::Broker::new(url) {
                    Ok(broker) => {
                        let broker = Arc::new(broker);
                        broker.listen(self.deliveries.clone());
                        Some(broker)
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "cannot start the subscriptions broker");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// A verified webhook delivery: to this instance's subscriptions, and
    /// through the broker to every other instance's.
    pub async fn deliver(&self, webhook: &str, raw: &[u8], body: crate::upstream::json::Json) {
        let _ = self.deliveries.send(Arc::new(Delivery {
            webhook: webhook.to_owned(),
            body,
        }));
        if let Some(broker) = self.broker() {
            broker.publish(webhook, raw).await;
        }
    }

    /// Ends every subscription (`complete`) and refuses new ones: shutdown.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for active in self.lock_active().values() {
            active.end.notify_one();
        }
    }

    /// Ends the subscriptions whose field `kept` says is gone: a reload
    /// removed it (or made it something a subscription cannot follow).
    pub fn retire(&self, kept: impl Fn(&str) -> bool) {
        for active in self.lock_active().values() {
            if !kept(&active.field) {
                active.end.notify_one();
            }
        }
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a subscription's events are resolved with: the request's plan,
/// arguments, identity.
pub struct Operation {
    pub plan: Arc<OperationPlan>,
    pub args: Vec<Option<Args>>,
    pub headers: HeaderMap,
    pub claims: Option<Claims>,
}

/// Starts a subscription: its limits, its event source, and the task that
/// resolves each event and sends it as one payload. The payloads end when
/// the subscription does (the transport then sends `complete`).
pub async fn start(operation: Operation, subscriber: Subscriber) -> Result<Payloads, Refused> {
    let gateway = subscriber.gateway.clone();
    let hub = gateway.subscriptions.clone();
    let refused = |code, message: String| Refused { code, message };
    if hub.closed.load(Ordering::SeqCst) {
        return Err(refused(
            ErrorCode::SubscriptionsNotSupported,
            "the gateway is shutting down".to_owned(),
        ));
    }
    let event_fields: Vec<_> = operation
        .plan
        .root
        .fields
        .iter()
        .filter_map(|field| match &field.kind {
            planned::FieldKind::Field { binding, .. }
                if matches!(binding.source, BoundSource::Event(_)) =>
            {
                Some((field.id, binding.clone()))
            }
            _ => None,
        })
        .collect();
    let [(field_id, binding)] = event_fields.as_slice() else {
        return Err(refused(
            ErrorCode::GraphqlValidationFailed,
            "a subscription selects exactly one subscription field".to_owned(),
        ));
    };
    let (field_id, binding) = (*field_id, binding.clone());
    let limits = &gateway.config.subscriptions;
    let slot = hub
        .counts
        .take(&subscriber.client, limits.max_per_client, limits.max_total)
        .map_err(|full| refused(ErrorCode::TooManySubscriptions, full.message()))?;
    let BoundSource::Event(source) = &binding.source else {
        unreachable!("filtered above");
    };
    let events = match source {
        EventSource::Poll { call, every, emit } => {
            let poll = poller::PollRequest {
                binding: binding.clone(),
                args: operation.args[field_id].clone(),
                headers: operation.headers.clone(),
                claims: operation.claims.clone(),
                fetcher: gateway.fetcher.clone(),
                propagate_trace: gateway.config.telemetry.propagate_trace_context,
                timeout: gateway.config.limits.request_timeout,
            };
            match hub.pollers.join(call, *every, *emit, poll).await {
                Ok(events) => Events::Poll(events),
                Err(only) => Events::Once(Some(only)),
            }
        }
        EventSource::Webhook { .. } => {
            hub.broker();
            Events::Webhook(hub.deliveries.subscribe())
        }
    };
    let (sender, payloads) = stream::channel();
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let end = Arc::new(Notify::new());
    hub.lock_active().insert(
        id,
        Active {
            field: binding.name.clone(),
            end: end.clone(),
        },
    );
    let expires = expiry(operation.claims.as_deref(), &gateway);
    tokio::spawn(async move {
        let session = Session {
            gateway: &gateway,
            operation: &operation,
            field_id,
            sender: &sender,
        };
        session.run(events, end, expires).await;
        gateway.subscriptions.lock_active().remove(&id);
        drop(slot);
    });
    Ok(payloads)
}

/// When a token's `exp` (plus `leeway_s`, as verification allows) passes.
fn expiry(claims: Option<&serde_json::Value>, gateway: &Gateway) -> Option<tokio::time::Instant> {
    let exp = claims?.get("exp")?.as_u64()?;
    let leeway = gateway
        .config
        .auth
        .as_ref()
        .map_or(Duration::ZERO, |a| a.leeway);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let left = Duration::from_secs(exp)
        .saturating_add(leeway)
        .saturating_sub(now);
    Some(tokio::time::Instant::now() + left)
}

/// Where a subscription's events come from.
enum Events {
    Poll(poller::PollEvents),
    Webhook(broadcast::Receiver<Arc<Delivery>>),
    /// A field with nothing to poll: one answer, then nothing more.
    Once(Option<Arc<FieldAnswer>>),
}

/// One subscription's task: each event resolved and sent, until the
/// client goes, the token expires, or the hub ends it.
struct Session<'a> {
    gateway: &'a Arc<Gateway>,
    operation: &'a Operation,
    field_id: usize,
    sender: &'a PayloadSender,
}

impl Session<'_> {
    async fn run(
        &self,
        mut events: Events,
        end: Arc<Notify>,
        expires: Option<tokio::time::Instant>,
    ) {
        let expired = async {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        if let Events::Poll(poll) = &mut events {
            if let Some(first) = poll.first.take() {
                if !self.send(first).await {
                    return;
                }
            }
        }
        loop {
            let next = tokio::select! {
                next = self.next(&mut events) => next,
                () = &mut expired => {
                    let error = with_code(
                        ServerError::new("the token expired: the subscription ended", None),
                        ErrorCode::Unauthenticated,
                    );
                    let body = serde_json::json!({ "errors": [error] });
                    let _ = self.sender.send(body.to_string().into_bytes()).await;
                    return;
                }
                () = end.notified() => return,
                () = self.sender.gone() => return,
            };
            let Some(answer) = next else { return };
            if !self.send(answer).await {
                return;
            }
        }
    }

    /// The next event for this subscription; `None` when none can come.
    async fn next(&self, events: &mut Events) -> Option<Arc<FieldAnswer>> {
        match events {
            Events::Once(answer) => match answer.take() {
                Some(answer) => Some(answer),
                None => std::future::pending().await,
            },
            Events::Poll(poll) => loop {
                match poll.events.recv().await {
                    Ok(answer) => return Some(answer),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
            Events::Webhook(deliveries) => loop {
                let delivery = match deliveries.recv().await {
                    Ok(delivery) => delivery,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a subscription fell behind its webhook deliveries");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                if self.wants(&delivery) {
                    return Some(webhook::answer(&delivery.body));
                }
            },
        }
    }

    /// The delivery is of this subscription's webhook and passes its filter.
    fn wants(&self, delivery: &Delivery) -> bool {
        let Some((binding, EventSource::Webhook { name, filter })) = self.event_source() else {
            return false;
        };
        if *name != delivery.webhook {
            return false;
        }
        let state = self.state();
        let args = self.operation.args[self.field_id].as_ref();
        let scope = FieldScope::new(binding, &state, args, None);
        webhook::matches(filter, &delivery.body, &scope)
    }

    fn event_source(&self) -> Option<(&crate::schema::FieldBinding, &EventSource)> {
        self.operation
            .plan
            .root
            .fields
            .iter()
            .find_map(|field| match &field.kind {
                planned::FieldKind::Field { binding, .. } if field.id == self.field_id => {
                    match &binding.source {
                        BoundSource::Event(source) => Some((&**binding, source)),
                        _ => None,
                    }
                }
                _ => None,
            })
    }

    fn state(&self) -> OperationState {
        OperationState::new(
            self.gateway.fetcher.clone(),
            RequestContext {
                headers: self.operation.headers.clone(),
                claims: self.operation.claims.clone(),
                deadline: tokio::time::Instant::now() + self.gateway.config.limits.request_timeout,
                trace: RequestTrace::from_headers(&HeaderMap::new()),
                propagate_trace: self.gateway.config.telemetry.propagate_trace_context,
                debug: false,
            },
        )
    }

    /// Resolves one event's selection and sends it; `false` when the
    /// client has gone.
    async fn send(&self, answer: Arc<FieldAnswer>) -> bool {
        let state = self.state();
        let executed = planned::execute_event(
            &self.operation.plan,
            &state,
            self.operation.args.clone(),
            self.field_id,
            answer,
        )
        .await;
        let mut body = executed.begun_body;
        if !executed.errors.is_empty() {
            body.extend_from_slice(b",\"errors\":");
            if serde_json::to_writer(&mut body, &executed.errors).is_err() {
                return false;
            }
        }
        body.push(b'}');
        metrics::subscription_events(1);
        self.sender.send(body).await
    }
}
