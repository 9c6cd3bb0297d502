//! A GraphQL-over-SSE client for the subscription tests: `POST /graphql`
//! with `Accept: text/event-stream`, read event by event, each stamped
//! with when it arrived. Dropping the stream closes the connection (the
//! client leaves).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One SSE event (comments kept apart: they are the keepalive).
#[derive(Debug, Clone)]
pub struct Event {
    /// When it arrived.
    #[allow(dead_code)]
    pub at: Instant,
    /// `next` or `complete`.
    pub name: String,
    pub data: Value,
}

pub struct SseStream {
    pub status: u16,
    pub content_type: String,
    response: Option<reqwest::Response>,
    buffer: String,
    /// Comment lines seen so far (`:` keepalives).
    pub comments: usize,
    /// The body ended.
    pub ended: bool,
}

/// Opens a subscription (or any operation) over SSE.
pub async fn subscribe(
    base: &str,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> SseStream {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mut request = http
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(json!({ "query": query, "variables": variables }).to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the gateway answers");
    SseStream {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default(),
        response: Some(response),
        buffer: String::new(),
        comments: 0,
        ended: false,
    }
}

impl SseStream {
    /// The next event within `within`; `None` when the body ended or
    /// nothing came in time.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let response = self.response.as_mut()?;
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => self
                    .buffer
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events")),
                Ok(_) => {
                    self.ended = true;
                    self.response = None;
                    return self.take_event();
                }
                Err(_) => return None,
            }
        }
    }

    /// The `next` events' data until `complete` (or `within` each).
    pub async fn until_complete(&mut self, within: Duration) -> Vec<Value> {
        let mut data = Vec::new();
        while let Some(event) = self.next(within).await {
            if event.name == "complete" {
                return data;
            }
            data.push(event.data);
        }
        panic!("no `complete` event; got {data:?}");
    }

    /// The whole body as text, for a refused request.
    pub async fn text(mut self) -> String {
        let response = self.response.take().expect("a response");
        response.text().await.expect("a body")
    }

    fn take_event(&mut self) -> Option<Event> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                } else if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            let Some(name) = name else { continue };
            let data = if data.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&data).expect("an event's data is JSON")
            };
            return Some(Event {
                at: Instant::now(),
                name,
                data,
            });
        }
    }
}
