//! One GraphQL operation through the gateway: persisted query lookup, the
//! cached parse, operation selection, `[limits]`, then execution with its
//! per-operation state; and the request's log line and metrics.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::ServerError;
use axum::http::StatusCode;
use serde_json::json;

use super::outcome::Outcome;
use super::request::GraphqlRequest;
use super::Client;
use crate::admission::documents::{DocumentError, MAX_NESTING};
use crate::admission::limits;
use crate::auth::Claims;
use crate::error::ErrorCode;
use crate::execute::operation::{OperationState, RequestContext};
use crate::execute::{code_of, planned, with_code};
use crate::gateway::Gateway;
use crate::telemetry::{metrics, otlp};
use tracing::Instrument;

/// Runs one operation and logs it: one line per GraphQL request (request
/// id, operation, client, subject, duration, status, upstream calls, codes).
pub async fn run(
    gateway: &Gateway,
    client: &Client,
    claims: Option<Claims>,
    request: GraphqlRequest,
    is_get: bool,
) -> Outcome {
    let started = Instant::now();
    let subject = claims
        .as_ref()
        .and_then(|c| c.get("sub"))
        .and_then(|s| s.as_str())
        .map(str::to_owned);
    let mut report = Report::default();
    // A span per operation, only when spans are exported (OTLP).
    let span = if otlp::enabled() {
        let span = tracing::info_span!(
            "graphql.operation",
            otel.name = tracing::field::Empty,
            otel.kind = "server",
            request_id = client.trace.request_id.to_str().unwrap_or("-"),
        );
        otlp::continue_trace(&span, &client.headers);
        span
    } else {
        tracing::Span::none()
    };
    let outcome = execute(gateway, client, claims, request, is_get, &mut report)
        .instrument(span.clone())
        .await;
    span.record(
        "otel.name",
        report.operation_name.as_deref().unwrap_or("graphql"),
    );
    let Report {
        kind,
        upstream_calls,
        operation_name,
        operation_chosen,
    } = report;
    let duration = started.elapsed();
    let codes: Vec<&str> = outcome.errors.iter().filter_map(code_of).collect();
    let result = if outcome.data.is_none() {
        "refused"
    } else if outcome.errors.is_empty() {
        "ok"
    } else {
        "partial"
    };
    let label = if operation_chosen {
        metrics::operation_label(operation_name.as_deref())
    } else {
        metrics::UNKNOWN_OPERATION.to_owned()
    };
    metrics::request(&label, result, duration);
    tracing::info!(
        target: "conflux::request",
        request_id = client.trace.request_id.to_str().unwrap_or("-"),
        trace_id = client.trace.trace_id(),
        operation = operation_name.as_deref().unwrap_or("-"),
        kind,
        client_ip = %client.ip,
        subject = subject.as_deref().unwrap_or("-"),
        duration_ms = duration.as_secs_f64() * 1000.0,
        status = outcome.status.as_u16(),
        result,
        upstream_calls,
        error_codes = %codes.join(","),
        "graphql request"
    );
    outcome
}

/// What the log line needs from the execution.
struct Report {
    /// `query`, `mutation`, or `-` when the operation never got that far.
    kind: &'static str,
    upstream_calls: usize,
    /// The operation's name: `operationName`, else the name the document
    /// gives its only operation (as Apollo Router names it).
    operation_name: Option<String>,
    /// The document has the operation `operation_name` names (or its only
    /// one): only then is the name a metric label, so that a client cannot
    /// make up label values.
    operation_chosen: bool,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            kind: "-",
            upstream_calls: 0,
            operation_name: None,
            operation_chosen: false,
        }
    }
}

async fn execute(
    gateway: &Gateway,
    client: &Client,
    claims: Option<Claims>,
    request: GraphqlRequest,
    is_get: bool,
    report: &mut Report,
) -> Outcome {
    let admission = &gateway.admission;
    let query = match admission
        .persisted
        .resolve(request.query, request.extensions.as_ref())
    {
        Ok(query) => query,
        Err(refusal) => {
            return Outcome {
                status: if refusal.bad_request {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                },
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
    if is_get && operation_type != OperationType::Query {
        return Outcome {
            status: StatusCode::METHOD_NOT_ALLOWED,
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
            headers: client.headers.clone(),
            claims,
            deadline: tokio::time::Instant::now() + timeout,
            trace: client.trace.clone(),
            propagate_trace: gateway.config.telemetry.propagate_trace_context,
            debug: client.debug,
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
        )
        .await;
    let plan = match plan {
        Ok(plan) => plan,
        Err(errors) => {
            return Outcome {
                status: StatusCode::BAD_REQUEST,
                data: None,
                errors: (*errors).clone(),
                document_error: true,
                extensions: None,
            }
        }
    };
    let executed =
        planned::execute(&plan, &state, &operation.node, &variables, &gateway.schema).await;
    report.upstream_calls = state.stats.upstream_calls();
    Outcome {
        status: StatusCode::OK,
        data: Some(executed.begun_body),
        errors: executed.errors,
        document_error: false,
        extensions: conflux_extensions(&state),
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
    }
    (!conflux.is_empty()).then(|| json!({ "conflux": conflux }))
}
