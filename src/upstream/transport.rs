//! How one attempt reaches an instance and what comes back: the status,
//! the cache directives, and the body of a successful answer.
//!
//! reqwest carries every call that needs something it adds: TLS and client
//! certificates, user and password in the URL, a proxy named by
//! `HTTP_PROXY`/`ALL_PROXY`. A plain `http://` call
//! goes straight to hyper-util's pooled client, the one reqwest itself
//! sends through: reqwest's own layers (its URL types, a redirect policy
//! that parses every request's URL again, a retry policy, boxed futures)
//! were a fifth of the gateway's instructions per flagship query on the
//! benchmark (callgrind), and a plain call needs none of them.
//!
//! Neither transport follows a redirect itself: each hands back the next
//! step ([`Redirect`]) and `upstream::service` decides, by the service's
//! `follow_redirects`, whether to take it and with which headers. At most
//! `max_response_bytes` of an answer is ever read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, REFERER, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::{CacheDirectives, Forwarded};

/// What one attempt came to, before the body is read as JSON.
pub struct Reply {
    pub status: StatusCode,
    pub cache: CacheDirectives,
    /// The service's `forward_response_headers` the answer carried.
    pub forwarded: Forwarded,
    /// Read for a 2xx answer, and for an error answer when the call asks
    /// (`Outgoing::error_body`).
    pub body: Option<Bytes>,
    /// An error answer's headers, kept when its body is read.
    pub error_headers: Option<HeaderMap>,
    /// Where the call would go on, when the answer is a redirect.
    pub redirect: Option<Redirect>,
}

impl Reply {
    /// What the status line and headers say; the body is read after, and
    /// only for a 2xx.
    fn head(status: StatusCode, headers: &HeaderMap, forward: &[HeaderName]) -> Reply {
        let mut forwarded = Forwarded::new();
        for name in forward {
            for value in headers.get_all(name) {
                forwarded.push((name.clone(), value.clone()));
            }
        }
        Reply {
            status,
            cache: CacheDirectives::parse(headers),
            forwarded,
            body: None,
            error_headers: None,
            redirect: None,
        }
    }

    /// Whether this answer's body is read as an error's: a non-2xx that is
    /// no redirect, to a call whose `errors` templates read bodies.
    fn wants_error_body(&self, error_body: bool) -> bool {
        error_body && !self.status.is_success() && self.redirect.is_none()
    }
}

/// The most of an error answer's body read for `errors` templates.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// The next step of a redirected call, as reqwest's redirect policy
/// (tower-http's `FollowRedirect`) takes it: a 301 or 302 turns a POST into
/// a GET without its body, a 303 turns anything but a HEAD into a GET
/// without its body, a 307 or 308 keeps both; `Location` is read relative
/// to the call's URL.
pub struct Redirect {
    pub url: reqwest::Url,
    pub method: Method,
    /// The call's body goes along (307, 308, or a 301/302 of other than a
    /// POST).
    pub keep_body: bool,
}

impl Redirect {
    /// `None` when the answer is not one reqwest follows: another 3xx, or
    /// no `Location` URL (reqwest then hands the 3xx back, and so do we).
    fn of(
        status: StatusCode,
        headers: &HeaderMap,
        from: &reqwest::Url,
        method: &Method,
    ) -> Option<Self> {
        let (method, keep_body) = match status {
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND if method == Method::POST => {
                (Method::GET, false)
            }
            StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT => (method.clone(), true),
            StatusCode::SEE_OTHER if method == Method::HEAD => (Method::HEAD, false),
            StatusCode::SEE_OTHER => (Method::GET, false),
            _ => return None,
        };
        let location = headers.get(LOCATION)?.to_str().ok()?;
        let url = from.join(location).ok()?;
        matches!(url.scheme(), "http" | "https").then_some(Redirect {
            url,
            method,
            keep_body,
        })
    }

    /// The headers of the call sent on from `from`, given the request's own:
    /// no body headers when the body stays behind. On the origin the call started at, the rest
    /// as they were and a `Referer`, as reqwest's policy sends them. Once a
    /// call has left that origin (`foreign`), none of the headers the
    /// gateway added — the service's own, claims, forwarded client headers,
    /// the mapping's, the trace context — nor a `Referer` naming the
    /// internal URL: only `Accept` and the body's own headers.
    /// `with_body`: the call still carries the body (no earlier hop left
    /// it behind).
    pub fn headers(
        &self,
        from: &reqwest::Url,
        mut headers: HeaderMap,
        with_body: bool,
        foreign: bool,
    ) -> HeaderMap {
        if !with_body {
            for name in [
                CONTENT_TYPE,
                CONTENT_LENGTH,
                CONTENT_ENCODING,
                TRANSFER_ENCODING,
            ] {
                headers.remove(name);
            }
        }
        if foreign {
            let mut kept = HeaderMap::new();
            for name in [ACCEPT, CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING] {
                if let Some(value) = headers.remove(&name) {
                    kept.insert(name, value);
                }
            }
            return kept;
        }
        let mut referer = from.clone();
        let _ = referer.set_username("");
        let _ = referer.set_password(None);
        referer.set_fragment(None);
        if let Ok(referer) = HeaderValue::from_str(referer.as_str()) {
            headers.insert(REFERER, referer);
        }
        headers
    }
}

/// A request target (absolute, as the direct client sends it) read as a
/// WHATWG URL, for resolving a redirect's `Location` against it.
pub fn url_of(target: &http::Uri) -> Option<reqwest::Url> {
    reqwest::Url::parse(&target.to_string()).ok()
}

/// Whether two URLs have one origin: scheme, host and port.
pub fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// One call as the transports take it.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// The call's WHATWG URL; `None` for a plain call to a direct instance,
    /// which has only `verbatim` (`Instance::plain_target`).
    pub url: Option<&'a reqwest::Url>,
    /// The request target the direct client sends instead of `url`'s text:
    /// a plain call's, built without a URL, or a path whose encoded
    /// dot-segments `url` (a WHATWG URL) would have resolved. Only the
    /// direct client can send it.
    pub verbatim: Option<&'a http::Uri>,
    pub headers: HeaderMap,
    pub body: Option<&'a Bytes>,
    pub deadline: Instant,
    /// `max_response_bytes`: no more of a body is read.
    pub max_body: usize,
    /// `forward_response_headers`: the answer's headers to keep.
    pub forward: &'a [HeaderName],
    /// Read an error answer's body too (at most [`MAX_ERROR_BODY`]).
    pub error_body: bool,
}

/// Why a transport got no reply.
pub enum SendError {
    TimedOut,
    /// The body is longer than the call's `max_body` (declared or read).
    TooLarge,
    /// What kind of failure (never the URL, whose path and query may hold
    /// personal data) and every cause: "cannot connect: tcp connect error:
    /// Connection refused (os error 111)".
    Failed(String),
}

/// Sends `call` through reqwest and reads a 2xx answer's body, all before
/// its deadline. The client follows no redirect (its policy is `none`).
pub async fn via_reqwest(client: &reqwest::Client, call: Outgoing<'_>) -> Result<Reply, SendError> {
    let (None, Some(url)) = (call.verbatim, call.url) else {
        // Callers send such a call through the direct client only.
        return Err(SendError::Failed(
            "request failed: the path cannot be sent through reqwest".to_owned(),
        ));
    };
    let mut builder = client
        .request(call.method.clone(), url.clone())
        .headers(call.headers)
        .timeout(call.deadline.saturating_duration_since(Instant::now()));
    if let Some(body) = call.body {
        builder = builder.body(body.clone());
    }
    let mut response = builder.send().await.map_err(reqwest_error)?;
    let mut reply = Reply::head(response.status(), response.headers(), call.forward);
    if reply.status.is_redirection() {
        reply.redirect = Redirect::of(reply.status, response.headers(), url, call.method);
    }
    if reply.status.is_success() {
        let declared = declared_length(response.headers());
        if declared.is_some_and(|length| length > call.max_body) {
            return Err(SendError::TooLarge);
        }
        let mut body = BytesMut::with_capacity(preallocated(declared));
        while let Some(chunk) = response.chunk().await.map_err(reqwest_error)? {
            if body.len() + chunk.len() > call.max_body {
                // Dropping the response drops its connection mid-body.
                return Err(SendError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        reply.body = Some(body.freeze());
    } else if reply.wants_error_body(call.error_body) {
        reply.error_headers = Some(response.headers().clone());
        let limit = MAX_ERROR_BODY.min(call.max_body);
        let mut body = BytesMut::new();
        // A body over the bound, or broken, is no body: the failure stays
        // the status.
        while let Ok(Some(chunk)) = response.chunk().await {
            if body.len() + chunk.len() > limit {
                body.clear();
                break;
            }
            body.extend_from_slice(&chunk);
        }
        reply.body = (!body.is_empty()).then(|| body.freeze());
    }
    Ok(reply)
}

/// The body length an answer declares (`Content-Length`).
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn reqwest_error(err: reqwest::Error) -> SendError {
    if err.is_timeout() {
        return SendError::TimedOut;
    }
    // reqwest's own message names the filled URL: say what kind of failure
    // it was instead, then the causes (a refused certificate says why:
    // "invalid peer certificate: UnknownIssuer").
    let kind = if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "cannot read the answer"
    } else {
        "request failed"
    };
    SendError::Failed(with_causes(kind, &err))
}

/// `kind`, then every source of `err`, `: `-separated.
/// What to allocate for an answer body of `declared` length before any of
/// it has come: all of it, up to 4 MiB, so that an upstream declaring a
/// length it never sends cannot make every call hold `max_response_bytes`.
fn preallocated(declared: Option<usize>) -> usize {
    declared.unwrap_or(0).min(4 << 20)
}

fn with_causes(kind: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = kind.to_owned();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether a connect or read failed for lack of time: a timeout, as
/// reqwest classes it, not a failure of the instance's making.
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The most a connection's read buffer grows to. hyper's default (about
/// 400 KiB) is reached by one large answer and then kept by the pooled
/// connection while it waits idle for its next call: with 32 connections
/// to a service that answers 0.4 MiB, 13 MiB held for nothing
/// (bench/README.md, `large`). A larger body is read in more, smaller
/// reads; a response head longer than this is refused.
const READ_BUFFER_MAX: usize = 64 * 1024;

/// hyper-util's client for plain `http://` calls.
pub struct Direct {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Direct {
    /// With the settings the reqwest client of the same service has.
    pub fn new(connect_timeout: Duration, pool_idle_timeout: Duration, max_idle: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .http1_max_buf_size(READ_BUFFER_MAX)
            .pool_idle_timeout(pool_idle_timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Direct { client }
    }

    /// Whether this client may carry a call to `url`: plain HTTP, with no
    /// credentials in it, and no proxy to go through.
    pub fn carries(url: &reqwest::Url) -> bool {
        url.scheme() == "http"
            && url.username().is_empty()
            && url.password().is_none()
            && !proxy_configured()
    }

    /// Sends `call` and reads a 2xx answer's body, all before its deadline.
    pub async fn send(&self, call: Outgoing<'_>) -> Result<Reply, SendError> {
        let uri: http::Uri = match (call.verbatim, call.url) {
            (Some(uri), _) => uri.clone(),
            (None, Some(url)) => url
                .as_str()
                .parse()
                .map_err(|err| SendError::Failed(format!("request failed: {err}")))?,
            (None, None) => {
                return Err(SendError::Failed(
                    "request failed: the call has no target".to_owned(),
                ))
            }
        };
        let body = call.body.cloned().map(Full::new).unwrap_or_default();
        let mut request = http::Request::new(body);
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = call.headers;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                if timed_out(&err) {
                    return SendError::TimedOut;
                }
                let kind = if err.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                SendError::Failed(with_causes(kind, &err))
            })?;
            let mut reply = Reply::head(response.status(), response.headers(), call.forward);
            if reply.status.is_redirection() {
                // A plain call has no URL to resolve `Location` against
                // until now.
                let target = call
                    .url
                    .is_none()
                    .then(|| call.verbatim.and_then(url_of))
                    .flatten();
                if let Some(from) = call.url.or(target.as_ref()) {
                    reply.redirect =
                        Redirect::of(reply.status, response.headers(), from, call.method);
                }
            }
            if reply.status.is_success() {
                let declared = declared_length(response.headers());
                if declared.is_some_and(|n| n > call.max_body) {
                    return Err(SendError::TooLarge);
                }
                // Read into one buffer of the declared length, each chunk
                // freed once copied: collecting the chunks and joining them
                // held a large answer twice (bench/README.md, `large`).
                // Dropping the body past the limit drops its connection.
                let mut incoming = response.into_body();
                let mut body = BytesMut::with_capacity(preallocated(declared));
                while let Some(frame) = incoming.frame().await {
                    let frame = frame.map_err(|err| {
                        SendError::Failed(with_causes("cannot read the answer", &err))
                    })?;
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if body.len() + chunk.len() > call.max_body {
                        return Err(SendError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                reply.body = Some(body.freeze());
            } else if reply.wants_error_body(call.error_body) {
                reply.error_headers = Some(response.headers().clone());
                let limit = MAX_ERROR_BODY.min(call.max_body);
                // A body over the bound, or broken, is no body: the
                // failure stays the status.
                reply.body = Limited::new(response.into_body(), limit)
                    .collect()
                    .await
                    .ok()
                    .map(|body| body.to_bytes())
                    .filter(|body| !body.is_empty());
            }
            Ok(reply)
        };
        match tokio::time::timeout_at(call.deadline, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(SendError::TimedOut),
        }
    }
}

/// Whether the environment names a proxy for plain HTTP, as reqwest reads
/// it (then reqwest carries the call, and applies `NO_PROXY`).
fn proxy_configured() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}
