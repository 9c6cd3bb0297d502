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
}

/// What a request's `Accept` headers ask for, read in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// `application/graphql-response+json` when listed (q > 0) at a q no
    /// lower than `application/json`'s; else `application/json`.
    pub media: ResponseMedia,
    /// `multipart/mixed` listed, with or without `deferSpec=20220824` (as
    /// Apollo Client sends it), not with `q=0`: incremental delivery.
    pub multipart: bool,
    /// `text/event-stream` listed: GraphQL over SSE (docs/SUBSCRIPTIONS.md).
    pub event_stream: bool,
    /// `text/html` listed: a browser asks for a page.
    pub html: bool,
}

impl Accepted {
    pub fn read(headers: &HeaderMap) -> Accepted {
        const NAMES: [&str; 5] = [
            GRAPHQL_RESPONSE_JSON,
            "application/json",
            "multipart/mixed",
            "text/event-stream",
            "text/html",
        ];
        // Each type's q where it is first listed.
        let mut quality: [Option<f32>; 5] = [None; 5];
        for range in accept_text(headers).split(',') {
            let mut parts = range.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let Some(i) = NAMES.iter().position(|n| name.eq_ignore_ascii_case(n)) else {
                continue;
            };
            if quality[i].is_none() {
                quality[i] = Some(
                    parts
                        .filter_map(|p| p.strip_prefix("q="))
                        .find_map(|q| q.parse::<f32>().ok())
                        .unwrap_or(1.0),
                );
            }
        }
        let listed = |q: Option<f32>| q.is_some_and(|q| q > 0.0);
        let [graphql, json, multipart, event_stream, html] = quality;
        let media = match graphql {
            Some(q) if q > 0.0 && q >= json.unwrap_or(0.0) => ResponseMedia::GraphqlResponseJson,
            _ => ResponseMedia::Json,
        };
        Accepted {
            media,
            multipart: listed(multipart),
            event_stream: listed(event_stream),
            html: listed(html),
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn negotiate(accept: &str) -> ResponseMedia {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).expect("valid"));
        Accepted::read(&headers).media
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
        assert_eq!(Accepted::read(&HeaderMap::new()).media, ResponseMedia::Json);
    }

    fn multipart(accept: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).expect("valid"));
        Accepted::read(&headers).multipart
    }

    #[test]
    fn multipart_is_taken_when_listed() {
        assert!(multipart(
            "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json;q=0.9"
        ));
        assert!(multipart("application/json, multipart/mixed"));
        assert!(!multipart("multipart/mixed;q=0, application/json"));
        assert!(!multipart("*/*"));
        assert!(!Accepted::read(&HeaderMap::new()).multipart);
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
        assert!(Accepted::read(&headers).multipart);
        headers.append(
            ACCEPT,
            HeaderValue::from_static("application/graphql-response+json"),
        );
        assert_eq!(
            Accepted::read(&headers).media,
            ResponseMedia::GraphqlResponseJson
        );
    }

    #[test]
    fn event_stream_and_html_are_read_in_the_same_pass() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html;q=0, text/event-stream, application/json"),
        );
        let accepted = Accepted::read(&headers);
        assert!(accepted.event_stream);
        assert!(!accepted.html, "q=0 refuses");
        assert!(!accepted.multipart);
        assert_eq!(accepted.media, ResponseMedia::Json);
        headers.insert(ACCEPT, HeaderValue::from_static("TEXT/HTML, text/html;q=0"));
        assert!(Accepted::read(&headers).html, "the first listing counts");
    }
}
