//! Answers: one operation's outcome, and the JSON response with the status
//! and media type GraphQL over HTTP asks for (SPEC §2).

use async_graphql::ServerError;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::media::ResponseMedia;
use crate::error::ErrorCode;
use crate::execute::with_code;

/// What one operation produced, and how HTTP should answer it alone.
pub struct Outcome {
    pub status: StatusCode,
    /// `None` for a request error: the operation never ran, so the response
    /// has no `data` entry (GraphQL over HTTP).
    pub data: Option<async_graphql::Value>,
    pub errors: Vec<ServerError>,
    /// A document that failed to parse or validate, or was refused by
    /// `[limits]`: answered 200 to legacy `application/json` clients.
    pub document_error: bool,
    /// `extensions.conflux`: paths served stale, the call waterfall.
    pub extensions: Option<Value>,
}

impl Outcome {
    pub fn request_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            status: StatusCode::BAD_REQUEST,
            data: None,
            errors: vec![with_code(ServerError::new(message, None), code)],
            document_error: false,
            extensions: None,
        }
    }

    pub fn document_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            document_error: true,
            ..Outcome::request_error(code, message)
        }
    }

    pub fn body(&self) -> ResponseBody<'_> {
        ResponseBody {
            data: self.data.as_ref(),
            errors: &self.errors,
            extensions: self.extensions.as_ref(),
        }
    }

    pub fn into_response(self, media: ResponseMedia) -> Response {
        let status = match (self.document_error, media) {
            (true, ResponseMedia::Json) => StatusCode::OK,
            _ => self.status,
        };
        json_response(status, &self.body(), media)
    }
}

#[derive(Serialize)]
pub struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<&'a Value>,
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
    Outcome {
        status,
        ..Outcome::request_error(code, message)
    }
    .into_response(media)
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T, media: ResponseMedia) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(CONTENT_TYPE, media.content_type())], bytes).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot serialize a GraphQL response");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
