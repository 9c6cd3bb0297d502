//! A call's templates + one field's scope → the upstream request to send.

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use foldhash::quality::RandomState;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::template::{encode_component, Looked, Placeholder, Root, Scope, Template};
use crate::auth::claim_text;
use crate::config::{BodyTemplate, CallSpec, ServiceConfig};
use crate::telemetry::trace::RequestTrace;

/// One request to one service, ready to send to any of its instances.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query string, appended to the chosen instance's base URL.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub timeout: Duration,
    /// The path template as written, for logs and metrics: the filled URL
    /// may hold personal data and never goes into a log line.
    pub template: Arc<str>,
    /// The request carries who the user is (README "Caching": a forwarded
    /// `authorization` or cookie, a claims header, a `{claims.…}` value):
    /// its answer is the user's own, so the client's `Cache-Control` is
    /// `private`.
    pub personal: bool,
    /// Read the body of a non-2xx answer (bounded): the call's `errors`
    /// templates may name it (docs/SHAPING.md). Otherwise only 2xx bodies
    /// are read.
    pub error_body: bool,
    /// [`UpstreamRequest::identity`], built on first use: the operation's
    /// de-duplication, coalescing and the cache all key by it.
    identity: OnceLock<Arc<RequestIdentity>>,
}

impl UpstreamRequest {
    /// Identical GETs within an operation are sent once (docs/CONFIG.md).
    pub fn is_deduplicable(&self) -> bool {
        self.method == Method::GET
    }

    /// Everything that makes two requests the same request: method, path
    /// and query, every header (sorted, so order does not matter), body.
    /// Built once per request and shared.
    pub fn identity(&self) -> Arc<RequestIdentity> {
        self.identity
            .get_or_init(|| Arc::new(self.build_identity()))
            .clone()
    }

    fn build_identity(&self) -> RequestIdentity {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            // Per-request tracing headers differ on every call of the same
            // request; they must not split de-duplication or the cache.
            .filter(|(name, _)| !PER_REQUEST_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        headers.sort();
        let mut identity = RequestIdentity {
            hash: 0,
            method: self.method.clone(),
            path_and_query: self.path_and_query.clone(),
            headers,
            body: self.body.clone(),
        };
        let hash = IDENTITY_HASHER
            .get_or_init(RandomState::default)
            .hash_one(identity.parts());
        identity.hash = hash;
        identity
    }
}

impl RequestIdentity {
    /// A stable text key for the response cache: the same across gateway
    /// instances and restarts (unlike `Hash`), so Redis entries are shared.
    /// `URL:REQUEST`: the first part is [`url_fingerprint`], what a
    /// mutation's `invalidates` drops entries by.
    pub fn fingerprint(&self, service: &str) -> String {
        let mut hasher = Sha256::new();
        for part in [
            service.as_bytes(),
            self.method.as_str().as_bytes(),
            self.path_and_query.as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let url = url_fingerprint(service, &self.method, &self.path_and_query);
        for (name, value) in &self.headers {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value);
        }
        if let Some(body) = &self.body {
            hasher.update((body.len() as u64).to_le_bytes());
            hasher.update(body);
        }
        format!("{url}:{}", hex::encode(hasher.finalize()))
    }
}

/// The service, method and URL of a call alone (no headers, no body): the
/// first part of every cache key of that URL.
pub fn url_fingerprint(service: &str, method: &Method, path_and_query: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        service.as_bytes(),
        method.as_str().as_bytes(),
        path_and_query.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// A hashable identity of an [`UpstreamRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIdentity {
    /// The hash of the other fields, computed once: the operation's
    /// de-duplication map and the coalescer each hash a call's identity
    /// two or three times, and hashing every header each time cost about a
    /// thousand instructions a time. First, so unequal identities differ
    /// at the first comparison.
    hash: u64,
    method: Method,
    path_and_query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Bytes>,
}

impl RequestIdentity {
    fn parts(&self) -> impl Hash + '_ {
        (
            &self.method,
            &self.path_and_query,
            &self.headers,
            &self.body,
        )
    }
}

impl Hash for RequestIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Seeded once per process: identities are built from client input.
static IDENTITY_HASHER: OnceLock<RandomState> = OnceLock::new();

/// Headers that identify one client request, not what is asked for.
const PER_REQUEST_HEADERS: [&str; 3] = ["traceparent", "tracestate", "x-request-id"];

/// What of the client's request may reach an upstream.
pub struct ClientContext<'a> {
    pub headers: &'a HeaderMap,
    pub claims: Option<&'a Value>,
    /// The request id and trace context, and whether to propagate the
    /// trace context (`[telemetry].propagate_trace_context`).
    pub trace: (&'a RequestTrace, bool),
}

/// Builds the request; `Err` names a path placeholder with no value, in
/// which case no call is made.
pub fn build<'s>(
    spec: &'s CallSpec,
    service: &ServiceConfig,
    scope: &dyn Scope,
    client: &ClientContext<'_>,
    timeout: Duration,
) -> Result<UpstreamRequest, &'s Placeholder> {
    let watched = Watched {
        inner: scope,
        personal: Cell::new(false),
    };
    let scope: &dyn Scope = &watched;
    let mut personal = false;
    let mut path_and_query = spec.path.render_path(scope)?;
    let mut separator = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    for (name, value) in &spec.query {
        // docs/CONFIG.md: a query parameter whose value is absent or null is left out.
        let Some(value) = value.render_query_value(scope) else {
            continue;
        };
        path_and_query.push(separator);
        separator = '&';
        path_and_query.push_str(&encode_component(name).to_string());
        path_and_query.push('=');
        path_and_query.push_str(&value);
    }

    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in &service.headers {
        headers.insert(name.clone(), value.clone());
    }
    for name in &service.forward_headers {
        // A client header named like a claims header is never forwarded:
        // identity comes from the verified token only.
        if service
            .claims_headers
            .iter()
            .any(|(claim_header, _)| claim_header == name)
        {
            continue;
        }
        if name == AUTHORIZATION {
            // The one value the token was read from: a request with more
            // than one is refused before anything runs (src/http/graphql.rs).
            if let Some(value) = client.headers.get(name) {
                headers.append(name.clone(), value.clone());
                personal = true;
            }
            continue;
        }
        for value in client.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
            personal |= IDENTITY_HEADERS.contains(&name.as_str());
        }
    }
    let (trace, propagate) = client.trace;
    trace.upstream_headers(propagate, &mut headers);
    if let Some(claims) = client.claims {
        for (name, claim) in &service.claims_headers {
            if let Some(value) =
                claim_text(claims, claim).and_then(|v| HeaderValue::from_str(&v).ok())
            {
                headers.insert(name.clone(), value);
                personal = true;
            }
        }
    }
    for (name, template) in &spec.headers {
        if let Some(value) = template
            .render_text(scope)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(name.clone(), value);
        }
    }

    let body = spec.body.as_ref().map(|body| {
        if spec.form_body {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            let mut form = Vec::with_capacity(128);
            write_form_body(body, scope, &mut form);
            return Bytes::from(form);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut json = Vec::with_capacity(128);
        if !write_body(body, scope, &mut json) {
            json.extend_from_slice(b"null");
        }
        Bytes::from(json)
    });

    Ok(UpstreamRequest {
        method: spec.method.clone(),
        path_and_query,
        headers,
        body,
        timeout,
        template: spec.path_text.clone(),
        personal: personal || watched.personal.get(),
        error_body: spec.answers.reads_error_body,
        identity: OnceLock::new(),
    })
}

/// Client headers that say who the user is.
const IDENTITY_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// A scope that notes whether a value filled in says who the user is: a
/// claim, or an identity header through `{headers.…}`.
struct Watched<'a> {
    inner: &'a dyn Scope,
    personal: Cell<bool>,
}

impl Scope for Watched<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Looked<'_>> {
        let value = self.inner.lookup(placeholder)?;
        let personal = match placeholder.root {
            Root::Claims => true,
            Root::Headers => IDENTITY_HEADERS
                .iter()
                .any(|h| placeholder.path.join(".").eq_ignore_ascii_case(h)),
            _ => false,
        };
        if personal && !value.is_null() {
            self.personal.set(true);
        }
        Some(value)
    }
}

/// Writes a body template as JSON text, straight from the values it names
/// (no tree is built). `false` means absent, and nothing was written: an
/// object key whose value is absent is left out, so an optional argument
/// not given is not sent; an absent list item is `null`.
pub fn write_body(body: &BodyTemplate, scope: &dyn Scope, out: &mut Vec<u8>) -> bool {
    match body {
        BodyTemplate::Literal(value) => Looked::Input(Cow::Borrowed(value)).write_json(out),
        BodyTemplate::Text(template) => match render_value(template, scope) {
            Some(value) => value.write_json(out),
            None => return false,
        },
        BodyTemplate::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_body(item, scope, out) {
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b']');
        }
        BodyTemplate::Object(entries) => {
            out.push(b'{');
            let mut empty = true;
            for (key, item) in entries {
                let mark = out.len();
                if !empty {
                    out.push(b',');
                }
                Looked::Input(Cow::Owned(Value::String(key.clone()))).write_json(out);
                out.push(b':');
                if write_body(item, scope, out) {
                    empty = false;
                } else {
                    out.truncate(mark);
                }
            }
            out.push(b'}');
        }
    }
    true
}

/// Writes a body table as `application/x-www-form-urlencoded`
/// (`body_format = "form"`): `name=value` pairs in the table's order, a
/// value absent or null left out, a list's items comma-joined (as in a
/// query string). `check` refuses a nested table or array.
pub fn write_form_body(body: &BodyTemplate, scope: &dyn Scope, out: &mut Vec<u8>) {
    let BodyTemplate::Object(entries) = body else {
        return;
    };
    for (name, value) in entries {
        let text = match value {
            BodyTemplate::Text(template) => template.render_text(scope),
            BodyTemplate::Literal(Value::String(text)) => Some(text.clone()),
            BodyTemplate::Literal(Value::Null) => None,
            BodyTemplate::Literal(other) => Some(other.to_string()),
            BodyTemplate::Array(_) | BodyTemplate::Object(_) => None,
        };
        let Some(text) = text else {
            continue;
        };
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(form_encode(name).to_string().as_bytes());
        out.push(b'=');
        out.extend_from_slice(form_encode(&text).to_string().as_bytes());
    }
}

/// The form-urlencoded serializer of the WHATWG URL standard: `*-._` and
/// alphanumerics kept, a space as `+`, every other byte `%XX`.
pub fn form_encode(text: &str) -> impl std::fmt::Display + '_ {
    struct Form<'t>(&'t str);
    impl std::fmt::Display for Form<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for piece in percent_encoding::utf8_percent_encode(self.0, FORM_ENCODE_SET) {
                if piece == "%20" {
                    f.write_str("+")?;
                } else {
                    f.write_str(piece)?;
                }
            }
            Ok(())
        }
    }
    Form(text)
}

const FORM_ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Fills a text template as a value: one placeholder alone keeps its JSON
/// type (docs/CONFIG.md `body`), anything else is a string.
pub fn render_value<'s>(template: &Template, scope: &'s dyn Scope) -> Option<Looked<'s>> {
    match template.single_placeholder() {
        Some(placeholder) => scope.lookup(placeholder),
        None => template
            .render_text(scope)
            .map(|text| Looked::Input(Cow::Owned(Value::String(text)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::template::{value_at, Template};
    use serde_json::json;

    struct Args(Value);
    impl Scope for Args {
        fn lookup(&self, p: &Placeholder) -> Option<Looked<'_>> {
            value_at(&self.0, &p.path).map(|v| Looked::Input(Cow::Borrowed(v)))
        }
    }

    fn body_text(body: &BodyTemplate, scope: &dyn Scope) -> Option<String> {
        let mut out = Vec::new();
        write_body(body, scope, &mut out).then(|| String::from_utf8(out).expect("utf-8"))
    }

    fn text(t: &str) -> BodyTemplate {
        BodyTemplate::Text(Template::parse(t).expect("valid"))
    }

    #[test]
    fn form_bodies_are_urlencoded_in_table_order_absent_values_left_out() {
        let body = BodyTemplate::Object(vec![
            ("name".into(), text("{args.name}")),
            ("qty".into(), text("{args.qty}")),
            ("note".into(), text("{args.nope}")),
            ("kind".into(), BodyTemplate::Literal(json!("a&b=c"))),
            ("n".into(), BodyTemplate::Literal(json!(3))),
        ]);
        let scope = Args(json!({"name": "Ada Lovelace/é", "qty": 2}));
        let mut out = Vec::new();
        write_form_body(&body, &scope, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "name=Ada+Lovelace%2F%C3%A9&qty=2&kind=a%26b%3Dc&n=3"
        );
    }

    #[test]
    fn single_placeholders_keep_their_json_type_at_any_depth() {
        let body = BodyTemplate::Object(vec![
            ("input".into(), text("{args.input}")),
            ("limit".into(), text("{args.limit}")),
            ("note".into(), text("n={args.limit}")),
            (
                "nested".into(),
                BodyTemplate::Array(vec![text("{args.flag}")]),
            ),
            ("absent".into(), text("{args.nope}")),
        ]);
        let scope = Args(json!({"input": {"a": [1]}, "limit": 5, "flag": true}));
        assert_eq!(
            body_text(&body, &scope).as_deref(),
            Some(r#"{"input":{"a":[1]},"limit":5,"note":"n=5","nested":[true]}"#)
        );
        // An object whose every key is absent is `{}`; a lone absent value
        // is absent.
        let empty = BodyTemplate::Object(vec![("a".into(), text("{args.nope}"))]);
        assert_eq!(body_text(&empty, &scope).as_deref(), Some("{}"));
        assert_eq!(body_text(&text("{args.nope}"), &scope), None);
    }
}
