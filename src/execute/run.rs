//! One GraphQL request through the engine: persisted query lookup, the
//! cached parse, choosing the operation, `[limits]`, variable coercion, the
//! plan, execution, and the response object — `data`, `errors`,
//! `extensions` — written as one body (or, for an operation that defers
//! fragments, as the first of several: [`Outcome::rest`]). The HTTP layer
//! only maps an [`Outcome`] to a status and a media type.

use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::ServerError;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::cache_control::NO_STORE;
use super::operation::{OperationState, RequestContext};
use super::stream::{self, Payloads};
use super::{planned, with_code};
use crate::admission::documents::{DocumentError, MAX_NESTING};
use crate::admission::limits;
use crate::auth::Claims;
use crate::error::ErrorCode;
use crate::gateway::Gateway;
use crate::telemetry::trace::RequestTrace;
use crate::upstream::Forwarded;

/// One GraphQL request as the client sent it.
pub struct GraphqlRequest {
    /// Absent for an APQ hash-only request.
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Option<Value>,
    pub extensions: Option<Value>,
}

/// Who sent the request, as far as execution needs to know.
pub struct Caller<'a> {
    /// For `forward_headers` and `{headers.…}`.
    pub headers: &'a HeaderMap,
    /// Request id and trace context, sent upstream.
    pub trace: &'a RequestTrace,
    /// Answer the call waterfall (`conflux-debug: 1` with `[server].debug`).
    pub debug: bool,
    /// The verified token's claims.
    pub claims: Option<Claims>,
    /// Sent with GET: only queries may run.
    pub over_get: bool,
    /// Takes incremental delivery (`Accept: multipart/mixed`): `@defer`
    /// defers.
    pub incremental: bool,
    /// Answer the plan instead of running it (`conflux-explain: 1` with
    /// `[server].debug`, and `conflux explain`; docs/PLAN.md).
    pub explain: bool,
    /// `[rate_limit] cost = "upstream_calls"`: the client's bucket, from
    /// which the operation's predicted calls are taken once it is planned.
    pub rate_key: Option<String>,
    /// A streaming transport (SSE, graphql-ws) that can carry a
    /// subscription's events; `None` over plain HTTP, where a subscription
    /// is refused (`SUBSCRIPTIONS_NOT_SUPPORTED`).
    pub subscriber: Option<crate::subscribe::Subscriber>,
}

/// Why an operation did not run; the HTTP layer turns it into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself is wrong (400).
    Request,
    /// The document failed to parse or validate, or `[limits]` refused it:
    /// 400, or 200 for legacy `application/json` clients.
    Document,
    /// A mutation over GET (405).
    MethodNotAllowed,
    /// Answered with an error a client acts on, with 200 (APQ's
    /// `PersistedQueryNotFound`).
    Answered,
    /// The predicted calls are more than the client's bucket holds (429,
    /// `Retry-After` these seconds).
    RateLimited(u64),
    /// Over a limit (`TOO_MANY_SUBSCRIPTIONS`): 429.
    TooMany,
}

/// What one operation produced.
pub struct Outcome {
    /// `None`: the operation ran.
    pub refusal: Option<Refusal>,
    /// The response body begun by the engine — `{"data":` and the JSON of
    /// `data` (`planned::Executed`) — to which the rest is appended. `None`
    /// when the operation never ran: the response has no `data` entry
    /// (GraphQL over HTTP).
    data: Option<Vec<u8>>,
    pub errors: Vec<ServerError>,
    /// `extensions.conflux`: paths served stale, the call waterfall.
    extensions: Option<Value>,
    /// The answer's `Cache-Control` when it is answered alone with a 200
    /// (the HTTP layer sends `no-store` for anything else).
    pub cache_control: HeaderValue,
    /// Upstream answer headers for the client (`forward_response_headers`).
    pub forwarded: Forwarded,
    /// Incremental delivery: whether parts follow this one (`hasNext`).
    has_next: Option<bool>,
    /// Incremental delivery: the parts after this one, as the engine
    /// produces them.
    pub rest: Option<Payloads>,
    /// A subscription: one response object per event, until it ends
    /// (docs/SUBSCRIPTIONS.md). The outcome has no body of its own.
    pub events: Option<Payloads>,
}

impl Outcome {
    /// A request refused before anything ran.
    pub fn request_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            refusal: Some(Refusal::Request),
            data: None,
            errors: vec![with_code(ServerError::new(message, None), code)],
            extensions: None,
            cache_control: NO_STORE,
            forwarded: Forwarded::new(),
            has_next: None,
            rest: None,
            events: None,
        }
    }

    pub fn document_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            refusal: Some(Refusal::Document),
            ..Outcome::request_error(code, message)
        }
    }

    /// `ok`, `partial` (field errors) or `refused` (nothing ran).
    pub fn result(&self) -> &'static str {
        if self.events.is_some() {
            "subscribed"
        } else if self.data.is_none() {
            "refused"
        } else if self.errors.is_empty() {
            "ok"
        } else {
            "partial"
        }
    }

    /// Appends the response object's JSON to `out`: `data`, `errors`,
    /// `extensions`, each only when present. Written by hand because the
    /// engine's `data` is JSON text already.
    pub fn write_body(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match &self.data {
            Some(begun) => out.extend_from_slice(begun),
            None => out.push(b'{'),
        }
        self.write_body_end(out, self.data.is_some())
    }

    /// Appends what follows `data` in the response object: `errors` and
    /// `extensions` when present, and the closing brace.
    fn write_body_end(&self, out: &mut Vec<u8>, after_data: bool) -> serde_json::Result<()> {
        let mut first = !after_data;
        let mut key = |out: &mut Vec<u8>, name: &[u8]| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(name);
        };
        if !self.errors.is_empty() {
            key(out, b"\"errors\":");
            serde_json::to_writer(&mut *out, &self.errors)?;
        }
        if let Some(extensions) = &self.extensions {
            key(out, b"\"extensions\":");
            serde_json::to_writer(&mut *out, extensions)?;
        }
        if let Some(has_next) = self.has_next {
            key(out, b"\"hasNext\":");
            out.extend_from_slice(if has_next { b"true" } else { b"false" });
        }
        out.push(b'}');
        Ok(())
    }

    /// The response object's JSON. The engine's `data` is most of the
    /// body: it is finished in its buffer, not copied.
    pub fn into_body(mut self) -> serde_json::Result<Vec<u8>> {
        match self.data.take() {
            Some(mut body) => self.write_body_end(&mut body, true).map(|()| body),
            None => {
                let mut body = Vec::new();
                self.write_body(&mut body).map(|()| body)
            }
        }
    }
}

/// What the log line needs from the execution.
pub struct Report {
    /// `query`, `mutation`, or `-` when the operation never got that far.
    pub kind: &'static str,
    pub upstream_calls: usize,
    /// The operation's name: `operationName`, else the name the document
    /// gives its only operation (as Apollo Router names it).
    pub operation_name: Option<String>,
    /// The document has the operation `operation_name` names (or its only
    /// one): only then is the name a metric label, so that a client cannot
    /// make up label values.
    pub operation_chosen: bool,
    /// The calls the plan predicted (docs/PLAN.md), once it was planned.
    pub predicted_calls: Option<u64>,
    /// The whole prediction, when the request asked to explain it.
    pub prediction: Option<planned::Prediction>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            kind: "-",
            upstream_calls: 0,
            operation_name: None,
            operation_chosen: false,
            predicted_calls: None,
            prediction: None,
        }
    }
}

/// Runs one GraphQL request: everything between the HTTP layer and the
/// engine, and the response object written as one body. `report` gets what
/// the request's log line and metrics say of it.
///
/// The rare paths' futures — a subscription's start, the Redis rate limit,
/// incremental delivery — are boxed: an async function's future is as large
/// as its largest await, and this one is moved several times per request
/// (bench/README.md "Instructions per query").
pub async fn run(
    gateway: &Gateway,
    caller: Caller<'_>,
    request: GraphqlRequest,
    report: &mut Report,
) -> Outcome {
    let Caller {
        headers,
        trace,
        debug,
        claims,
        over_get,
        incremental,
        explain,
        rate_key,
        subscriber,
    } = caller;
    let admission = &gateway.admission;
    let query = match admission
        .persisted
        .resolve(request.query, request.extensions.as_ref())
        .await
    {
        Ok(query) => query,
        Err(refusal) => {
            return Outcome {
                refusal: Some(if refusal.bad_request {
                    Refusal::Request
                } else {
                    Refusal::Answered
                }),
                ..Outcome::request_error(refusal.code, refusal.message)
            }
        }
    };
    let document = match admission.documents.parse(&query) {
        Ok(document) => document,
        Err(DocumentError::TooDeep) => {
            return Outcome::document_error(
                ErrorCode::QueryTooDeep,
                format!("the document nests brackets deeper than {MAX_NESTING} levels"),
            )
        }
        Err(DocumentError::Refused(refusal)) => {
            return Outcome::document_error(refusal.code, refusal.message)
        }
        Err(DocumentError::Syntax(err)) => {
            let message = format!(
                "syntax error: {}",
                crate::schema::sdl::syntax_message(&err.to_string())
            );
            let mut error = ServerError::new(message, None);
            error.locations = err.positions().collect();
            return Outcome {
                errors: vec![with_code(error, ErrorCode::GraphqlParseFailed)],
                ..Outcome::document_error(ErrorCode::GraphqlParseFailed, "")
            };
        }
    };
    report.operation_name = request.operation_name.clone();
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), None) => Some(op),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            report.operation_name = ops.keys().next().map(|name| name.to_string());
            ops.values().next()
        }
        (DocumentOperations::Multiple(_), None) => {
            return Outcome::document_error(
                ErrorCode::GraphqlValidationFailed,
                "the document has several operations: give `operationName`",
            )
        }
    };
    report.operation_chosen = operation.is_some();
    let Some(operation) = operation else {
        return Outcome::document_error(
            ErrorCode::GraphqlValidationFailed,
            format!(
                "the document has no operation named `{}`",
                request.operation_name.as_deref().unwrap_or_default()
            ),
        );
    };
    if let Err(refusal) = limits::check(
        &document,
        &operation.node,
        request.variables.as_ref(),
        &gateway.config.limits,
        gateway.config.server.introspection,
    ) {
        return Outcome::document_error(refusal.code, refusal.message);
    }
    let operation_type = operation.node.ty;
    // A subscription over GET is refused below, as over any plain HTTP
    // request (`SUBSCRIPTIONS_NOT_SUPPORTED`).
    if over_get && operation_type == OperationType::Mutation {
        return Outcome {
            refusal: Some(Refusal::MethodNotAllowed),
            ..Outcome::request_error(
                ErrorCode::MethodNotAllowed,
                "only queries may be sent with GET; use POST",
            )
        };
    }

    report.kind = match operation_type {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    let timeout = gateway.config.limits.request_timeout;
    let state = Arc::new(OperationState::new(
        gateway.fetcher.clone(),
        RequestContext {
            headers: headers.clone(),
            claims,
            deadline: tokio::time::Instant::now() + timeout,
            trace: trace.clone(),
            propagate_trace: gateway.config.telemetry.propagate_trace_context,
            debug,
        },
    ));
    let variables = match gateway
        .plans
        .coerce_variables(&operation.node, request.variables)
    {
        Ok(variables) => variables,
        Err(message) => {
            return Outcome::document_error(ErrorCode::GraphqlValidationFailed, message)
        }
    };
    let plan = gateway
        .plans
        .plan(
            &gateway.schema,
            &gateway.bindings,
            &query,
            request.operation_name.as_deref(),
            &document,
            &operation.node,
            &variables,
            incremental,
        )
        .await;
    let plan = match plan {
        Ok(plan) => plan,
        Err(errors) => {
            return Outcome {
                refusal: Some(Refusal::Document),
                errors: (*errors).clone(),
                ..Outcome::request_error(ErrorCode::GraphqlValidationFailed, "")
            }
        }
    };
    if operation_type == OperationType::Subscription {
        let Some(subscriber) = subscriber else {
            return Outcome::request_error(
                ErrorCode::SubscriptionsNotSupported,
                "subscriptions need a streaming transport: POST with `Accept: text/event-stream`, or a graphql-transport-ws WebSocket",
            );
        };
        let args = planned::arguments(&plan, &operation.node, &variables);
        let operation = crate::subscribe::Operation {
            plan,
            args,
            headers: headers.clone(),
            claims: state.claims.clone(),
        };
        return match Box::pin(crate::subscribe::start(operation, subscriber)).await {
            Ok(events) => Outcome {
                refusal: None,
                events: Some(events),
                ..Outcome::request_error(ErrorCode::Internal, "")
            }
            .without_errors(),
            Err(refused) => Outcome {
                refusal: Some(match refused.code {
                    ErrorCode::TooManySubscriptions => Refusal::TooMany,
                    _ => Refusal::Request,
                }),
                ..Outcome::request_error(refused.code, refused.message)
            },
        };
    }
    // docs/PLAN.md: the calls the plan can make, predicted before any is.
    let args = planned::arguments(&plan, &operation.node, &variables);
    let limits = &gateway.config.limits;
    if explain {
        let prediction = planned::predict(&plan, &args, limits.assumed_list_length);
        let extensions = json!({ "conflux": { "plan": &prediction } });
        report.prediction = Some(prediction);
        return Outcome {
            refusal: None,
            data: Some(b"{\"data\":null".to_vec()),
            errors: Vec::new(),
            extensions: Some(extensions),
            ..Outcome::request_error(ErrorCode::Internal, "")
        };
    }
    let predicted = planned::predicted_calls(&plan, &args, limits.assumed_list_length);
    report.predicted_calls = Some(predicted);
    if predicted > limits.max_upstream_calls {
        return Outcome::request_error(
            ErrorCode::TooManyUpstreamCalls,
            format!(
                "the operation could make {predicted} upstream calls, more than \
                 [limits].max_upstream_calls ({}); ask for fewer items (`first`/`limit`) \
                 or fewer fields",
                limits.max_upstream_calls
            ),
        );
    }
    if let (Some(key), Some(limiter)) = (&rate_key, &admission.rate_limiter) {
        if let Err(wait) = Box::pin(limiter.check_n(key, predicted)).await {
            crate::telemetry::metrics::rate_limited();
            let seconds = crate::admission::rate_limit::retry_after_seconds(wait);
            return Outcome {
                refusal: Some(Refusal::RateLimited(seconds)),
                ..Outcome::request_error(
                    ErrorCode::RateLimited,
                    format!(
                        "the operation's {predicted} predicted upstream calls are more than \
                         your rate limit allows now; retry in {seconds} s"
                    ),
                )
            };
        }
    }
    state.stats.set_budget(limits.max_upstream_calls);
    let (executed, rest) = if plan.defers {
        Box::pin(deliver_incrementally(
            gateway,
            plan,
            state.clone(),
            args,
            variables,
        ))
        .await
    } else {
        let executed = planned::execute(&plan, &state, args, &variables, &gateway.schema).await;
        (executed, None)
    };
    report.upstream_calls = state.stats.upstream_calls();
    // docs/CACHING.md: only a query answered without errors may be reused.
    // Parts delivered incrementally are never reused either.
    let cache_control =
        if operation_type == OperationType::Query && executed.errors.is_empty() && rest.is_none() {
            state.cache_control()
        } else {
            NO_STORE
        };
    Outcome {
        refusal: None,
        data: Some(executed.begun_body),
        errors: executed.errors,
        extensions: conflux_extensions(&state),
        cache_control,
        forwarded: state.take_forwarded(),
        has_next: executed.has_next,
        rest,
        events: None,
    }
}

impl Outcome {
    fn without_errors(mut self) -> Outcome {
        self.errors.clear();
        self
    }
}

/// Runs an operation that defers fragments in a task of its own, which
/// outlives this request's handler: the first part is returned when ready,
/// the others stream from the task. A client that goes away (nobody reads
/// the parts any more) ends the task, dropping its calls still in flight.
async fn deliver_incrementally(
    gateway: &Gateway,
    plan: Arc<planned::OperationPlan>,
    state: Arc<OperationState>,
    args: Vec<Option<super::calls::Args>>,
    variables: async_graphql::Variables,
) -> (planned::Executed, Option<Payloads>) {
    let (first, first_part) = tokio::sync::oneshot::channel();
    let (later, rest) = stream::channel();
    let executor = gateway.schema.clone();
    tokio::spawn(async move {
        let run =
            planned::execute_incremental(&plan, &state, args, &variables, &executor, first, &later);
        tokio::select! {
            () = run => {}
            () = later.gone() => {}
        }
    });
    match first_part.await {
        Ok(executed) => (executed, Some(rest)),
        // The task ended before its first part: it panicked.
        Err(_) => (
            planned::Executed {
                begun_body: b"{\"data\":null".to_vec(),
                errors: vec![with_code(
                    ServerError::new("the operation failed", None),
                    ErrorCode::Internal,
                )],
                has_next: None,
            },
            None,
        ),
    }
}

/// `extensions.conflux`: paths served stale, and the call waterfall when
/// asked for.
fn conflux_extensions(state: &OperationState) -> Option<serde_json::Value> {
    let mut conflux = serde_json::Map::new();
    let stale = state.take_stale_paths();
    if !stale.is_empty() {
        conflux.insert("stale".to_owned(), json!(stale));
    }
    if let Some(calls) = state.stats.records() {
        conflux.insert("calls".to_owned(), json!(calls));
        let problems = state.stats.take_problems();
        if !problems.is_empty() {
            conflux.insert("problems".to_owned(), json!(problems));
        }
    }
    (!conflux.is_empty()).then(|| json!({ "conflux": conflux }))
}
