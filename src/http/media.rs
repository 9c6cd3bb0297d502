//! Which media type a client wants (GraphQL over HTTP, docs/HTTP.md).

use std::borrow::Cow;

use axum::http::header::ACCEPT;
use axum::http::HeaderMap;

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    /// `application/graphql-response+json`: request errors get 4xx.
    GraphqlResponseJson,
    /// Legacy `application/json`: request errors are answered 200, as older
    /// clients treat any 4xx as a network failure.
    Json,
}

impl ResponseMedia {
    pub fn content_type(self) -> &'static str {
        match self {
            ResponseMedia::GraphqlResponseJson => {
                "application/graphql-response+json; charset=utf-8"
            }
            ResponseMedia::Json => "application/json; charset=utf-8",
        }
    }

    pub fn negotiate(headers: &HeaderMap) -> ResponseMedia {
        let accept = accept_text(headers);
        let graphql = quality(&accept, GRAPHQL_RESPONSE_JSON);
        let json = quality(&accept, "application/json");
        match graphql {
            Some(q) if q > 0.0 && q >= json.unwrap_or(0.0) => ResponseMedia::GraphqlResponseJson,
            _ => ResponseMedia::Json,
        }
    }
}

/// The request's `Accept` values as one list; borrowed when there is one
/// header (what clients send), so that reading it allocates nothing.
fn accept_text(headers: &HeaderMap) -> Cow<'_, str> {
    let mut values = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(first) = values.next() else {
        return Cow::Borrowed("");
    };
    let Some(second) = values.next() else {
        return Cow::Borrowed(first);
    };
    let mut text = format!("{first},{second}");
    for value in values {
        text.push(',');
        text.push_str(value);
    }
    Cow::Owned(text)
}

/// The q value given to exactly `media` in an Accept header, if listed.
fn quality(accept: &str, media: &str) -> Option<f32> {
    accept.split(',').find_map(|range| {
        let mut parts = range.split(';').map(str::trim);
        let name = parts.next()?;
        if !name.eq_ignore_ascii_case(media) {
            return None;
        }
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        Some(q)
    })
}

/// Whether the client takes incremental delivery: its `Accept` lists
/// `multipart/mixed` (with or without `deferSpec=20220824`, among other
/// types, as Apollo Client sends it), not with `q=0`.
pub fn accepts_multipart(headers: &HeaderMap) -> bool {
    quality(&accept_text(headers), "multipart/mixed").is_some_and(|q| q > 0.0)
}

/// Whether the client asks for GraphQL over SSE: its `Accept` lists
/// `text/event-stream` (docs/SUBSCRIPTIONS.md).
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    quality(&accept_text(headers), "text/event-stream").is_some_and(|q| q > 0.0)
}

/// Whether a browser asks for a page (`text/html` listed).
pub fn wants_html(headers: &HeaderMap) -> bool {
    quality(&accept_text(headers), "text/html").is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn negotiate(accept: &str) -> ResponseMedia {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).expect("valid"));
        ResponseMedia::negotiate(&headers)
    }

    #[test]
    fn graphql_response_json_wins_unless_json_is_preferred() {
        assert_eq!(
            negotiate("application/graphql-response+json"),
            ResponseMedia::GraphqlResponseJson
        );
        assert_eq!(
            negotiate("application/graphql-response+json, application/json;q=0.9"),
            ResponseMedia::GraphqlResponseJson
        );
        assert_eq!(
            negotiate("application/graphql-response+json;q=0.5, application/json"),
            ResponseMedia::Json
        );
        assert_eq!(negotiate("*/*"), ResponseMedia::Json);
        assert_eq!(
            ResponseMedia::negotiate(&HeaderMap::new()),
            ResponseMedia::Json
        );
    }

    fn multipart(accept: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).expect("valid"));
        accepts_multipart(&headers)
    }

    #[test]
    fn multipart_is_taken_when_listed() {
        assert!(multipart(
            "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json;q=0.9"
        ));
        assert!(multipart("application/json, multipart/mixed"));
        assert!(!multipart("multipart/mixed;q=0, application/json"));
        assert!(!multipart("*/*"));
        assert!(!accepts_multipart(&HeaderMap::new()));
    }

    /// Several `Accept` headers read as one list, in their order.
    #[test]
    fn accept_headers_are_read_as_one_list() {
        let mut headers = HeaderMap::new();
        for value in ["text/html", "application/json;q=0.9", "multipart/mixed"] {
            headers.append(ACCEPT, HeaderValue::from_static(value));
        }
        assert_eq!(
            accept_text(&headers),
            "text/html,application/json;q=0.9,multipart/mixed"
        );
        assert!(accepts_multipart(&headers));
        headers.append(
            ACCEPT,
            HeaderValue::from_static("application/graphql-response+json"),
        );
        assert_eq!(
            ResponseMedia::negotiate(&headers),
            ResponseMedia::GraphqlResponseJson
        );
    }
}
