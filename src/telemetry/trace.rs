//! Request ids and W3C trace context (docs/CONFIG.md `propagate_trace_context`).
//!
//! A request id comes from the client's `x-request-id` (when it is a sane
//! token) or is made up; it is returned to the client and sent upstream.
//! A `traceparent` from the client is continued: every upstream call gets
//! the same trace id with a span id of its own; without one, a new trace
//! starts here. `tracestate` is passed on untouched.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header names, parsed once: a `&str` name is parsed (and its case
/// checked) at every lookup, on every request and call.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest client-given request id kept; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

#[derive(Debug, Clone)]
pub struct RequestTrace {
    pub request_id: HeaderValue,
    trace_id: String,
    /// The client's span, the parent of ours (for logs).
    pub parent_span: Option<String>,
    flags: String,
    tracestate: Option<HeaderValue>,
}

impl RequestTrace {
    pub fn from_headers(headers: &HeaderMap) -> RequestTrace {
        let request_id = headers
            .get(X_REQUEST_ID)
            .filter(|v| {
                let bytes = v.as_bytes();
                !bytes.is_empty()
                    && bytes.len() <= MAX_REQUEST_ID
                    && bytes.iter().all(|b| b.is_ascii_graphic())
            })
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_str(&random_id()).unwrap_or(HeaderValue::from_static("-"))
            });
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let (trace_id, parent_span, flags) = match parent {
            Some((trace_id, span, flags)) => (trace_id, Some(span), flags),
            None => (random_id(), None, "01".to_owned()),
        };
        RequestTrace {
            request_id,
            trace_id,
            parent_span,
            flags,
            tracestate: headers.get(TRACESTATE).cloned(),
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Headers for one upstream call: the request id, and (when
    /// propagating) a `traceparent` with a fresh span id and `tracestate`.
    pub fn upstream_headers(&self, propagate: bool, headers: &mut HeaderMap) {
        headers.insert(X_REQUEST_ID, self.request_id.clone());
        if !propagate {
            return;
        }
        // Written by hand: two `format!`s here were most of the cost of
        // building an upstream call's headers.
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        traceparent.push_str(&self.trace_id);
        traceparent.push('-');
        push_hex(&mut traceparent, fastrand::u64(1..));
        traceparent.push('-');
        traceparent.push_str(&self.flags);
        if let Ok(value) = HeaderValue::try_from(traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
    }
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; all-zero ids are
/// invalid (W3C Trace Context §3.2).
fn parse_traceparent(text: &str) -> Option<(String, String, String)> {
    let mut parts = text.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(span_id, 16)
        && span_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then(|| (trace_id.to_owned(), span_id.to_owned(), flags.to_owned()))
}

/// `value` as 16 lowercase hex digits; a span id when not zero.
fn push_hex(text: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        text.push(DIGITS[(value >> (shift * 4)) as usize & 0xf] as char);
    }
}

/// 16 random bytes as 32 lowercase hex digits, not all zero.
fn random_id() -> String {
    let mut text = String::with_capacity(32);
    push_hex(&mut text, fastrand::u64(1..));
    push_hex(&mut text, fastrand::u64(..));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_traceparent_with_new_span_ids() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let trace = RequestTrace::from_headers(&headers);
        let mut upstream = HeaderMap::new();
        trace.upstream_headers(true, &mut upstream);
        let sent = upstream["traceparent"].to_str().expect("ascii");
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(!sent.contains("00f067aa0ba902b7"), "a span of our own");
        let (trace_id, span_id, flags) = parse_traceparent(sent).expect("a valid traceparent");
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!((span_id.len(), flags.as_str()), (16, "01"));
        assert!(upstream.contains_key("x-request-id"));
    }

    #[test]
    fn starts_a_trace_when_the_client_sent_none_or_garbage() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-000-bad"));
        headers.insert("x-request-id", HeaderValue::from_static("req-42"));
        let trace = RequestTrace::from_headers(&headers);
        assert_eq!(trace.trace_id().len(), 32);
        assert_eq!(trace.request_id, "req-42");
        assert!(trace.parent_span.is_none());
        let mut upstream = HeaderMap::new();
        trace.upstream_headers(true, &mut upstream);
        let sent = upstream["traceparent"].to_str().expect("ascii");
        let (trace_id, _, _) = parse_traceparent(sent).expect("a valid traceparent");
        assert_eq!(trace_id, trace.trace_id());
    }
}
