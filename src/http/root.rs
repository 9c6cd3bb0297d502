//! `GET /` (docs/HTTP.md): someone who opens the gateway's address finds
//! where the API is instead of an empty 404 — a small page with a link to
//! GraphiQL for a browser, a JSON object naming the paths for anything else.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Conflux</title></head>\n<body style=\"font-family: system-ui, sans-serif; margin: 3rem\">\n<h1>Conflux</h1>\n<p>The GraphQL endpoint is <a href=\"/graphql\"><code>/graphql</code></a>: open it in a browser for GraphiQL, or POST queries to it.</p>\n<p>Health: <a href=\"/healthz\"><code>/healthz</code></a>, <a href=\"/readyz\"><code>/readyz</code></a>.</p>\n</body></html>\n";

const JSON: &str = "{\"graphql\":\"/graphql\",\"health\":\"/healthz\",\"ready\":\"/readyz\"}\n";

pub async fn index(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let (media, body) = if wants_html {
        ("text/html; charset=utf-8", PAGE)
    } else {
        ("application/json", JSON)
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        body,
    )
        .into_response()
}
