//! Answers: one operation's outcome, and the JSON response with the status
//! and media type GraphQL over HTTP asks for (README "HTTP surface").

use async_graphql::ServerError;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::media::ResponseMedia;
use crate::error::ErrorCode;
use crate::execute::with_code;

/// What one operation produced, and how HTTP should answer it alone.
pub struct Outcome {
    pub status: StatusCode,
    /// The response body begun by the engine — `{"data":` and the JSON of
    /// `data` (`planned::Executed`) — to which the rest is appended. `None`
    /// for a request error: the operation never ran, so the response has
    /// no `data` entry (GraphQL over HTTP).
    pub data: Option<Vec<u8>>,
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

    /// Appends the response object's JSON to `out`: `data`, `errors`,
    /// `extensions`, each only when present. Written by hand because the
    /// engine's `data` is JSON text already.
    pub fn write_body(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match &self.data {
            Some(begun) => out.extend_from_slice(begun),
            None => out.push(b'{'),
        }
        self.write_body_end(out)
    }

    /// Appends what follows `data` in the response object: `errors` and
    /// `extensions` when present, and the closing brace.
    fn write_body_end(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut first = self.data.is_none();
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
        out.push(b'}');
        Ok(())
    }

    pub fn into_response(mut self, media: ResponseMedia) -> Response {
        let status = match (self.document_error, media) {
            (true, ResponseMedia::Json) => StatusCode::OK,
            _ => self.status,
        };
        // The engine's `data` is most of the body: the body is
        // finished in its buffer, not copied.
        let written = match &mut self.data {
            Some(begun) => {
                let mut body = std::mem::take(begun);
                self.write_body_end(&mut body).map(|()| body)
            }
            _ => {
                let mut body = Vec::new();
                self.write_body(&mut body).map(|()| body)
            }
        };
        match written {
            Ok(body) => bytes_response(status, body, media),
            Err(err) => serialization_failed(err),
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
    bytes_response(StatusCode::OK, body, media)
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

fn bytes_response(status: StatusCode, body: Vec<u8>, media: ResponseMedia) -> Response {
    (status, [(CONTENT_TYPE, media.content_type())], body).into_response()
}

fn serialization_failed(err: serde_json::Error) -> Response {
    tracing::error!(error = %err, "cannot serialize a GraphQL response");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
