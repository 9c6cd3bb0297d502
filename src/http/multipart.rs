//! Incremental delivery over HTTP (docs/DEFER.md): the payloads of one
//! response as the parts of a `multipart/mixed` body, each sent as soon as
//! the engine produces it (a chunk in HTTP/1.1, a DATA frame in HTTP/2).
//!
//! The framing Apollo Client, Apollo Router and graphql-helix use: every
//! part begins with the delimiter and its own `content-type`, the body ends
//! with the closing delimiter.
//!
//! ```text
//! \r\n---\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{"data":…,"hasNext":true}
//! \r\n---\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{"incremental":[…],"hasNext":false}
//! \r\n-----\r\n
//! ```

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};

use crate::execute::stream::Payloads;

pub const CONTENT_TYPE_VALUE: &str = "multipart/mixed; boundary=\"-\"; deferSpec=20220824";

/// What precedes each part's JSON: the delimiter (`--` and the boundary
/// `-`) and the part's headers.
const PART_START: &[u8] = b"\r\n---\r\ncontent-type: application/json; charset=utf-8\r\n\r\n";

/// The closing delimiter.
const END: &[u8] = b"\r\n-----\r\n";

/// The response: `first`, then every payload of `rest` as it comes. Never
/// cached (docs/CACHING.md).
pub fn response(first: Vec<u8>, rest: Payloads) -> Response {
    let parts = stream::once(async { first })
        .chain(rest)
        .map(|payload| {
            let mut part = Vec::with_capacity(PART_START.len() + payload.len());
            part.extend_from_slice(PART_START);
            part.extend_from_slice(&payload);
            Ok::<_, Infallible>(Bytes::from(part))
        })
        .chain(stream::once(async { Ok(Bytes::from_static(END)) }));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_VALUE)),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}
