//! Reading an incrementally delivered (`multipart/mixed`) response part by
//! part, each part stamped with the instant its JSON was complete.

use std::time::Instant;

use serde_json::Value;

/// What the `Accept` of Apollo Client asks for with `@defer`.
pub const MULTIPART_ACCEPT: &str =
    "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json;q=0.9";

/// One part and when its JSON had arrived whole.
#[derive(Debug)]
pub struct Part {
    pub at: Instant,
    pub json: Value,
}

/// A response read to its end.
#[derive(Debug)]
pub struct Multipart {
    pub status: u16,
    pub content_type: String,
    pub cache_control: Option<String>,
    pub parts: Vec<Part>,
    /// The body ended with the closing delimiter.
    pub closed: bool,
    /// When the body ended.
    pub ended: Instant,
}

impl Multipart {
    pub fn jsons(&self) -> Vec<Value> {
        self.parts.iter().map(|p| p.json.clone()).collect()
    }
}

/// Reads `response`'s body chunk by chunk: a part is taken as soon as the
/// JSON after its headers parses whole (the JSON of a part has no raw line
/// break, so it ends where the next delimiter begins).
pub async fn read_parts(mut response: reqwest::Response) -> Multipart {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let cache_control = header("cache-control");
    let mut reader = PartReader::default();
    let mut parts = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the body reads") {
        reader
            .buffer
            .push_str(std::str::from_utf8(&chunk).expect("UTF-8 body"));
        while let Some(json) = reader.next_part() {
            parts.push(Part {
                at: Instant::now(),
                json,
            });
        }
    }
    Multipart {
        status,
        content_type,
        cache_control,
        parts,
        closed: reader.buffer == "\r\n-----\r\n",
        ended: Instant::now(),
    }
}

/// What has arrived and not been taken as a part yet.
#[derive(Default)]
pub struct PartReader {
    pub buffer: String,
}

impl PartReader {
    /// The next whole part, taken off the buffer.
    pub fn next_part(&mut self) -> Option<Value> {
        const DELIMITER: &str = "\r\n---\r\n";
        let rest = self.buffer.strip_prefix(DELIMITER)?;
        let body_start = rest.find("\r\n\r\n")? + 4;
        let headers = &rest[..body_start];
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "a part without a JSON content type: {headers:?}"
        );
        let body = &rest[body_start..];
        let end = body.find("\r\n").unwrap_or(body.len());
        let json: Value = serde_json::from_str(&body[..end]).ok()?;
        let taken = DELIMITER.len() + body_start + end;
        self.buffer.drain(..taken);
        Some(json)
    }
}
