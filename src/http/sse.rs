//! GraphQL over Server-Sent Events, "distinct connections" mode
//! (docs/SUBSCRIPTIONS.md): `POST /graphql` with `Accept: text/event-stream`
//! gets one `event: next` per result — one for a query or mutation, one per
//! event for a subscription — then `event: complete`. A comment line every
//! `keepalive_ms` keeps proxies from closing an idle stream.
//!
//! A request refused before anything runs (a bad body, a token, a limit,
//! a document that does not validate) is answered with its HTTP status —
//! as for `application/graphql-response+json` clients — and a GraphQL
//! error body, not a stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;

use super::media::ResponseMedia;
use super::operation;
use super::outcome::{self, request_error};
use super::request::parse_request;
use super::Client;
use crate::auth::Claims;
use crate::error::ErrorCode;
use crate::execute::run::Outcome;
use crate::gateway::Gateway;
use crate::subscribe::Subscriber;

const COMPLETE: &[u8] = b"event: complete\ndata:\n\n";
const KEEPALIVE: &[u8] = b":\n\n";

/// The answer to one GraphQL request over SSE.
pub async fn respond(
    gateway: &Arc<Gateway>,
    client: &Client,
    claims: Option<Claims>,
    json: Value,
) -> Response {
    let media = client.media;
    let request = match parse_request(json) {
        Ok(request) => request,
        Err(message) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                message,
                media,
            )
        }
    };
    let subscriber = Subscriber {
        gateway: gateway.clone(),
        client: client_key(client, claims.as_ref()),
    };
    let mut outcome = operation::run_streamed(
        gateway,
        client,
        claims,
        request,
        false,
        false,
        Some(subscriber),
    )
    .await;
    let keepalive = gateway.config.subscriptions.keepalive;
    if let Some(events) = outcome.events.take() {
        return stream_response(with_keepalive(events.map(next_event), keepalive));
    }
    if outcome.refusal.is_some() {
        // An event-stream client is no legacy client: a document that
        // fails to validate is a 400, as GraphQL over HTTP's own media
        // type answers it.
        return outcome::response(outcome, ResponseMedia::GraphqlResponseJson);
    }
    match body_of(outcome) {
        Some(body) => stream_response(stream::iter([next_event(body)])),
        None => request_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the response could not be written",
            media,
        ),
    }
}

/// `max_per_client`'s key: the token's subject when there is one, else
/// the TCP peer.
pub fn client_key(client: &Client, claims: Option<&Claims>) -> String {
    match claims.and_then(|c| c.get("sub")).and_then(Value::as_str) {
        Some(sub) => format!("sub:{sub}"),
        None => format!("ip:{}", client.ip),
    }
}

fn body_of(outcome: Outcome) -> Option<Vec<u8>> {
    outcome.into_body().ok()
}

/// One result as an SSE event. A JSON text holds no raw newline, so it
/// fits one `data:` line.
fn next_event(payload: Vec<u8>) -> Vec<u8> {
    let mut event = Vec::with_capacity(payload.len() + 20);
    event.extend_from_slice(b"event: next\ndata: ");
    event.extend_from_slice(&payload);
    event.extend_from_slice(b"\n\n");
    event
}

/// `events`, with a comment line whenever `every` passes without one.
fn with_keepalive(
    events: impl Stream<Item = Vec<u8>> + Send + Unpin + 'static,
    every: Duration,
) -> impl Stream<Item = Vec<u8>> + Send + 'static {
    stream::unfold(Some(events), move |events| async move {
        let mut events = events?;
        match tokio::time::timeout(every, events.next()).await {
            Ok(Some(event)) => Some((event, Some(events))),
            Ok(None) => None,
            Err(_) => Some((KEEPALIVE.to_vec(), Some(events))),
        }
    })
}

fn stream_response(events: impl Stream<Item = Vec<u8>> + Send + 'static) -> Response {
    let body = events
        .chain(stream::once(async { COMPLETE.to_vec() }))
        .map(|event| Ok::<_, Infallible>(Bytes::from(event)));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
