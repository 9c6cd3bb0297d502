//! `/graphql`: GraphQL over HTTP — POST (single or batched), GET (queries
//! only), GraphiQL for browsers — with the statuses and codes of docs/HTTP.md and docs/ERRORS.md.
//! Authentication and the rate limit come first; each operation then runs
//! through `operation::run`.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use serde_json::Value;

use super::graphiql;
use super::media::{Accepted, ResponseMedia};
use super::operation;
use super::outcome::{batch_response, request_error, too_large};
use super::request::{from_query_params, parse_request};
use super::Client;
use crate::admission::rate_limit::retry_after_seconds;
use crate::auth::{AuthError, Claims};
use crate::config::RateKey;
use crate::error::ErrorCode;
use crate::execute::cache_control::NO_STORE;
use crate::gateway::Gateway;
use crate::telemetry::metrics;
use crate::telemetry::trace::{RequestTrace, X_REQUEST_ID};

pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let trace = RequestTrace::from_headers(&parts.headers);
    let request_id = trace.request_id.clone();
    let accepted = Accepted::read(&parts.headers);
    let mut client = Client {
        media: accepted.media,
        incremental: accepted.multipart,
        // The TCP peer; absent only when the app runs without a socket.
        ip: super::Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ),
        debug: gateway.config.server.debug
            && parts.headers.get("conflux-debug").is_some_and(|v| v == "1"),
        explain: gateway.config.server.debug
            && parts
                .headers
                .get("conflux-explain")
                .is_some_and(|v| v == "1"),
        rate_key: None,
        trace,
        headers: parts.headers,
    };
    let _in_flight = metrics::InFlight::start();
    let mut response = match parts.method {
        _ if has_two_authorizations(&client.headers) => request_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "more than one Authorization header",
            client.media,
        ),
        Method::POST => match admit(&gateway, &mut client).await {
            Ok(claims) => post(&gateway, &client, claims, body, accepted.event_stream).await,
            Err(refused) => refused,
        },
        Method::GET if super::ws::is_upgrade(&client.headers) => {
            super::ws::upgrade(gateway.clone(), client, parts.extensions).await
        }
        Method::GET => get(&gateway, &parts.uri, &mut client, accepted.html).await,
        // Preflights are answered by the CORS layer when CORS is on.
        Method::OPTIONS => (
            StatusCode::NO_CONTENT,
            [(ALLOW, HeaderValue::from_static("GET, POST, OPTIONS"))],
        )
            .into_response(),
        method => request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("method {method} is not allowed on /graphql; use GET or POST"),
            client.media,
        ),
    };
    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID, request_id);
    // docs/CACHING.md: an answer that says nothing else is not reused.
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, NO_STORE);
    }
    response
}

/// Two tokens make "the" token ambiguous: one would be verified and the
/// other could travel on to a service (docs/CONFIG.md, `[auth]`), so such
/// a request is refused before anything runs, `[auth]` or not.
fn has_two_authorizations(headers: &HeaderMap) -> bool {
    headers.get_all(AUTHORIZATION).iter().nth(1).is_some()
}

/// Authentication, then the rate limit: what an HTTP request passes before
/// its body is even read.
pub(super) async fn admit(
    gateway: &Gateway,
    client: &mut Client,
) -> Result<Option<Claims>, Response> {
    let media = client.media;
    let claims = authenticate(gateway, &client.headers, media).await?;
    if gateway.auth.is_some() && claims.is_none() {
        // With `[auth]`, an `Authorization` the gateway did not verify
        // (another scheme than Bearer) goes no further: `forward_headers`
        // and `{headers.authorization}` only ever see a verified token.
        client.headers.remove(AUTHORIZATION);
    }
    if let Some(limiter) = &gateway.admission.rate_limiter {
        let subject = claims
            .as_ref()
            .filter(|_| gateway.admission.rate_key == RateKey::Subject)
            .and_then(|c| c.get("sub"))
            .and_then(Value::as_str);
        let key = match subject {
            Some(sub) => format!("sub:{sub}"),
            None => format!("ip:{}", client.ip),
        };
        let per_call = gateway
            .config
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.cost == crate::config::RateCost::UpstreamCalls);
        if per_call {
            // Charged once each operation is planned (`execute::run`).
            client.rate_key = Some(key);
        } else if let Err(wait) = limiter.check(&key).await {
            metrics::rate_limited();
            let seconds = retry_after_seconds(wait);
            let mut response = request_error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!("too many requests; retry in {seconds} s"),
                media,
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            return Err(response);
        }
    }
    Ok(claims)
}

/// Verifies the request's token before anything runs (docs/HTTP.md, docs/CONFIG.md `[auth]`):
/// an invalid token, or a missing one when required, is 401.
pub(super) async fn authenticate(
    gateway: &Gateway,
    headers: &HeaderMap,
    media: ResponseMedia,
) -> Result<Option<Claims>, Response> {
    let Some(auth) = &gateway.auth else {
        return Ok(None);
    };
    match auth.authenticate(headers).await {
        Ok(claims) => Ok(claims),
        Err(err) => {
            let (message, challenge) = match &err {
                AuthError::Missing => ("a bearer token is required", "Bearer"),
                AuthError::Invalid(reason) => {
                    tracing::info!(%reason, "token rejected");
                    (
                        "the bearer token is invalid",
                        "Bearer error=\"invalid_token\"",
                    )
                }
            };
            let mut response = request_error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                message,
                media,
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            Err(response)
        }
    }
}

async fn post(
    gateway: &Arc<Gateway>,
    client: &Client,
    claims: Option<Claims>,
    body: Body,
    event_stream: bool,
) -> Response {
    let media = client.media;
    let headers = &client.headers;
    let limit = gateway.config.limits.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large(limit, media);
    }
    // A body that stalls part-way must not hold the request (and its
    // connection) forever: `[server].body_read_timeout_ms`.
    let timeout = gateway.config.server.body_read_timeout;
    let bytes: Bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) if err.source().is_some_and(|e| e.is::<LengthLimitError>()) => {
            return too_large(limit, media)
        }
        // The body could not be read to its end: the client closed it
        // short of its `Content-Length`, or its chunked encoding broke.
        Ok(Err(err)) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the request body could not be read to its end: {err}"),
                media,
            )
        }
        Err(_elapsed) => {
            return request_error(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BadRequest,
                format!(
                    "the request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
                media,
            )
        }
    };
    let json: Value = match serde_json::from_slice(&bytes) {
        Ok(json) => json,
        Err(err) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the body is not valid JSON: {err}"),
                media,
            )
        }
    };
    if event_stream {
        return super::sse::respond(gateway, client, claims, json).await;
    }
    match json {
        Value::Array(items) => {
            let max = gateway.config.limits.max_batch;
            if items.is_empty() {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    "the batch is empty",
                    media,
                );
            }
            if items.len() > max {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BatchTooLarge,
                    format!(
                        "the batch has {} operations; at most {max} are allowed",
                        items.len()
                    ),
                    media,
                );
            }
            let claims = &claims;
            let operations = items.into_iter().map(|item| async move {
                match parse_request(item) {
                    // A batch answers one JSON array: no operation in it
                    // is delivered in parts.
                    Ok(request) => {
                        operation::run(gateway, client, claims.clone(), request, false, false).await
                    }
                    Err(message) => {
                        crate::execute::run::Outcome::request_error(ErrorCode::BadRequest, message)
                    }
                }
            });
            let outcomes = futures::future::join_all(operations).await;
            batch_response(&outcomes, media)
        }
        single => match parse_request(single) {
            Ok(request) => operation::respond(
                operation::run(gateway, client, claims, request, false, client.incremental).await,
                media,
            ),
            Err(message) => request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                message,
                media,
            ),
        },
    }
}

async fn get(gateway: &Gateway, uri: &Uri, client: &mut Client, html: bool) -> Response {
    let media = client.media;
    let params: HashMap<String, String> = match Query::try_from_uri(uri) {
        Ok(Query(params)) => params,
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "malformed query string",
                media,
            )
        }
    };
    if !params.contains_key("query") && gateway.config.server.graphiql && html {
        return graphiql::page();
    }
    let claims = match admit(gateway, client).await {
        Ok(claims) => claims,
        Err(refused) => return refused,
    };
    match from_query_params(&params) {
        Ok(request) => operation::respond(
            operation::run(gateway, client, claims, request, true, client.incremental).await,
            media,
        ),
        Err(message) => request_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            message,
            media,
        ),
    }
}
