//! Answers: one operation's outcome as a JSON response with the status and
//! media type GraphQL over HTTP asks for (docs/HTTP.md).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::media::ResponseMedia;
use crate::error::ErrorCode;
use crate::execute::cache_control::NO_STORE;
use crate::execute::run::{Outcome, Refusal};
use crate::upstream::Forwarded;

/// The status an outcome is answered with.
pub fn status_of(refusal: Option<Refusal>, media: ResponseMedia) -> StatusCode {
    match refusal {
        None | Some(Refusal::Answered) => StatusCode::OK,
        Some(Refusal::Request) => StatusCode::BAD_REQUEST,
        // Legacy clients treat any 4xx as a network failure.
        Some(Refusal::Document) if media == ResponseMedia::Json => StatusCode::OK,
        Some(Refusal::Document) => StatusCode::BAD_REQUEST,
        Some(Refusal::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
        Some(Refusal::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
        Some(Refusal::TooMany) => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// One operation's response — one body, or the parts of an incrementally
/// delivered one — with its `Cache-Control` (`no-store` for anything but a
/// 200) and the upstream headers it forwards.
pub fn response(mut outcome: Outcome, media: ResponseMedia) -> Response {
    let status = status_of(outcome.refusal, media);
    let cache_control = match status {
        StatusCode::OK => outcome.cache_control.clone(),
        _ => NO_STORE,
    };
    let forwarded = std::mem::take(&mut outcome.forwarded);
    let retry_after = match outcome.refusal {
        Some(Refusal::RateLimited(seconds)) => Some(seconds),
        _ => None,
    };
    let rest = outcome.rest.take();
    let mut response = match (outcome.into_body(), rest) {
        (Ok(body), None) => bytes_response(status, body, media),
        (Ok(first), Some(rest)) => super::multipart::response(first, rest),
        (Err(err), _) => return serialization_failed(err),
    };
    let headers = response.headers_mut();
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, cache_control);
    }
    forward(headers, forwarded);
    if let Some(seconds) = retry_after {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(seconds),
        );
    }
    response
}

/// Adds the upstream headers an answer forwards: `set-cookie` each, any
/// other the last value (the operations already kept only that one).
fn forward(headers: &mut HeaderMap, forwarded: Forwarded) {
    for (name, value) in forwarded {
        if name == SET_COOKIE {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}

/// The response to a batched POST: one response object per operation.
pub fn batch_response(outcomes: &[Outcome], media: ResponseMedia) -> Response {
    let mut body = vec![b'['];
    for (index, outcome) in outcomes.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        if let Err(err) = outcome.write_body(&mut body) {
            return serialization_failed(err);
        }
    }
    body.push(b']');
    // docs/CACHING.md: a batch's answer is never reused.
    let mut response = bytes_response(StatusCode::OK, body, media);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, NO_STORE);
    for outcome in outcomes {
        forward(headers, outcome.forwarded.clone());
    }
    response
}

pub fn too_large(limit: usize, media: ResponseMedia) -> Response {
    request_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the body is larger than {limit} bytes"),
        media,
    )
}

/// A response for a problem with the HTTP request itself.
pub fn request_error(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
    media: ResponseMedia,
) -> Response {
    match Outcome::request_error(code, message).into_body() {
        Ok(body) => bytes_response(status, body, media),
        Err(err) => serialization_failed(err),
    }
}

fn bytes_response(status: StatusCode, body: Vec<u8>, media: ResponseMedia) -> Response {
    (status, [(CONTENT_TYPE, media.content_type())], body).into_response()
}

fn serialization_failed(err: serde_json::Error) -> Response {
    tracing::error!(error = %err, "cannot serialize a GraphQL response");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
