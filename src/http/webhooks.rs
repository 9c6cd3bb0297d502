//! `POST /webhooks/NAME` (docs/SUBSCRIPTIONS.md): an event pushed by a
//! service. `202` once its signature is verified and its JSON body handed
//! to the subscriptions of that webhook; `401` for a wrong or missing
//! signature (nothing delivered); `400` for a body that is not JSON; `404`
//! for a webhook not in the config. Not rate limited: the signature is
//! what authenticates it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;

use super::media::ResponseMedia;
use super::outcome::request_error;
use crate::error::ErrorCode;
use crate::gateway::Gateway;
use crate::subscribe::webhook::{signed, SIGNATURE_HEADER};
use crate::telemetry::metrics;
use crate::upstream::json;

pub async fn receive(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let media = ResponseMedia::Json;
    let Some(webhook) = gateway.config.webhooks.get(&name) else {
        return request_error(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest,
            "no such webhook",
            media,
        );
    };
    if request.method() != Method::POST {
        return request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "a webhook takes POST",
            media,
        );
    }
    let (parts, body) = request.into_parts();
    let limit = gateway.config.limits.max_body_bytes;
    let timeout = gateway.config.server.body_read_timeout;
    let raw: Bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(_)) => {
            return request_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes, or could not be read"),
                media,
            )
        }
        Err(_) => {
            return request_error(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BadRequest,
                "the body did not arrive in time",
                media,
            )
        }
    };
    let signature = parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if !signed(&webhook.secret, &raw, signature) {
        metrics::webhook_delivery(&name, "unauthorized");
        tracing::info!(webhook = %name, "webhook refused: wrong or missing signature");
        return request_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "wrong or missing x-conflux-signature",
            media,
        );
    }
    let body = match json::parse(&raw) {
        Ok(body) => body,
        Err(reason) => {
            metrics::webhook_delivery(&name, "bad_request");
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the body is not JSON: {reason}"),
                media,
            );
        }
    };
    gateway.subscriptions.deliver(&name, &raw, body).await;
    metrics::webhook_delivery(&name, "accepted");
    axum::response::IntoResponse::into_response(StatusCode::ACCEPTED)
}
