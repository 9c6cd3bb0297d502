//! One GraphQL operation over HTTP: hands it to the engine
//! (`execute::run`), then writes the request's log line and metrics.

use std::time::Instant;

use axum::response::Response;

use super::media::ResponseMedia;
use super::outcome::status_of;
use super::Client;
use crate::auth::Claims;
use crate::execute::code_of;
use crate::execute::run::{self, Caller, GraphqlRequest, Outcome, Report};
use crate::gateway::Gateway;
use crate::telemetry::{metrics, otlp};
use tracing::Instrument;

/// Runs one operation and logs it: one line per GraphQL request (request
/// id, operation, client, subject, duration, status, upstream calls, codes).
/// The outcome is answered by [`respond`] or, in a batch,
/// `outcome::batch_response`. `incremental`: the answer may come in parts
/// (`@defer`); the line is then written when the first part is ready.
pub async fn run(
    gateway: &Gateway,
    client: &Client,
    claims: Option<Claims>,
    request: GraphqlRequest,
    is_get: bool,
    incremental: bool,
) -> Outcome {
    run_streamed(gateway, client, claims, request, is_get, incremental, None).await
}

/// [`run`] over a transport that streams (SSE, graphql-ws): a
/// subscription may start, for `subscriber`.
pub async fn run_streamed(
    gateway: &Gateway,
    client: &Client,
    claims: Option<Claims>,
    request: GraphqlRequest,
    is_get: bool,
    incremental: bool,
    subscriber: Option<crate::subscribe::Subscriber>,
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
    let caller = Caller {
        headers: &client.headers,
        trace: &client.trace,
        debug: client.debug,
        claims,
        over_get: is_get,
        incremental,
        explain: client.explain,
        rate_key: client.rate_key.clone(),
        subscriber,
    };
    let outcome = run::run(gateway, caller, request, &mut report)
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
        ..
    } = report;
    let duration = started.elapsed();
    let codes: Vec<&str> = outcome.errors.iter().filter_map(code_of).collect();
    let result = outcome.result();
    gateway.request_metrics.record(
        operation_name.as_deref(),
        operation_chosen,
        result,
        duration,
    );
    tracing::info!(
        target: "conflux::request",
        request_id = client.trace.request_id.to_str().unwrap_or("-"),
        trace_id = client.trace.trace_id(),
        // The same name the metrics give an unnamed operation.
        operation = operation_name.as_deref().unwrap_or(if operation_chosen {
            metrics::ANONYMOUS_OPERATION
        } else {
            metrics::UNKNOWN_OPERATION
        }),
        kind,
        client_ip = %client.ip,
        subject = subject.as_deref().unwrap_or("-"),
        duration_ms = duration.as_secs_f64() * 1000.0,
        status = status_of(outcome.refusal, client.media).as_u16(),
        result,
        upstream_calls,
        error_codes = %codes.join(","),
        "graphql request"
    );
    outcome
}

/// The HTTP response for one operation's outcome.
pub fn respond(outcome: Outcome, media: ResponseMedia) -> Response {
    super::outcome::response(outcome, media)
}
