//! Operating Conflux (issue 7; docs/CLI.md `--hot-reload`, SIGHUP and
//! `--log-format`, docs/OPERATIONS.md "Metrics", docs/CONFIG.md `[telemetry]` and `[server].debug`):
//! request ids and W3C trace context reaching the upstreams, Prometheus
//! series that move by exactly the right amounts, the JSON log lines,
//! reloads under traffic, and the debug waterfall.
//!
//! Metrics, logs, signals and file watching use the real binary in a child
//! process: its metrics recorder, its stderr and its pid are its own, so no
//! other test of this binary can move its counters or write into its logs.
//! Counters are still compared before/after, never as absolute totals.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::client::{preview, Client};
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

// ---------------------------------------------------------------------------
// The shop: one mock API behind three services
// ---------------------------------------------------------------------------

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  broken: User
  cachedUser(id: ID!): User
  orders: [Order!]!
}
type User { id: ID  name: String }
type Order { id: ID!  product: Product }
type Product { id: ID!  name: String }
"#;

const RESOLVERS: &str = r#"
[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"Query.broken" = { service = "users", get = "/broken" }
"Query.cachedUser" = { service = "users", get = "/cached/{args.id}", cache_ttl_s = 60 }
"Query.orders" = { service = "orders", get = "/orders" }
"Order.product" = { service = "products", get = "/products/{parent.productId}", batch = { key = "{parent.productId}", get = "/products?ids={keys}", match = "id", max = 100 } }
"#;

/// `extra` (tables such as `[server]`), the three services on `{api}`, and
/// [`RESOLVERS`].
fn shop_config(extra: &str) -> String {
    format!(
        "{extra}\n\n[services.users]\nurl = \"{{api}}\"\n\
         [services.orders]\nurl = \"{{api}}\"\n\
         [services.products]\nurl = \"{{api}}\"\n{RESOLVERS}"
    )
}

/// Answers `GET …/ID` with `{"id": ID, "name": "User ID"}`.
struct UserById;

impl Respond for UserById {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        json_reply(json!({"id": id, "name": format!("User {id}")}))
    }
}

/// Answers `/products?ids=a,b` with one product per id, in the order asked.
struct ProductsByIds;

impl Respond for ProductsByIds {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let ids = query_pairs(request)
            .into_iter()
            .find(|(k, _)| k == "ids")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let products: Vec<Value> = ids
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| json!({"id": id, "name": format!("Product {id}")}))
            .collect();
        json_reply(Value::Array(products))
    }
}

/// Four orders over three products (p1 twice): one batch of 3 keys.
fn four_orders() -> Value {
    json!([
        {"id": "o1", "productId": "p1"},
        {"id": "o2", "productId": "p2"},
        {"id": "o3", "productId": "p1"},
        {"id": "o4", "productId": "p3"}
    ])
}

/// The API every shop service points at.
async fn shop_api() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/users/[^/]+$"))
        .respond_with(UserById)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/cached/[^/]+$"))
        .respond_with(UserById)
        .mount(&api)
        .await;
    serve(
        &api,
        "GET",
        "/broken",
        ResponseTemplate::new(500).set_body_json(json!({"error": "boom"})),
    )
    .await;
    serve(&api, "GET", "/orders", json_reply(four_orders())).await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(ProductsByIds)
        .mount(&api)
        .await;
    api
}

async fn in_process(extra: &str, api: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&shop_config(extra))
        .upstream("api", api)
        .start()
        .await
}

/// POST /graphql `{query, operationName, variables}` with these headers.
async fn post_op(
    client: &Client,
    query: &str,
    operation: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> Reply {
    let body = json!({"query": query, "operationName": operation, "variables": variables});
    client.post_raw(body.to_string(), headers).await
}

fn assert_ok(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "body: {}", preview(&reply.text));
    let body = reply.json();
    assert!(
        body.get("errors").is_none(),
        "unexpected errors: {}",
        preview(&reply.text)
    );
    body
}

/// Waits (polling) until `done` holds, or panics with `what`.
async fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(ms(20)).await;
    }
}

// ---------------------------------------------------------------------------
// The real binary, its stderr captured
// ---------------------------------------------------------------------------

/// `conflux serve` in a child process, on `127.0.0.1:0`, with every stderr
/// line kept. Derefs to a [`Client`] of it.
struct Served {
    client: Client,
    serving: Serving,
    dir: TempDir,
}

/// A directory with `services.toml` (`{api}` replaced by `api`) and
/// `schema/schema.graphql`.
fn config_dir(toml: &str, sdl: &str, api: &str) -> TempDir {
    let dir = TempDir::new();
    dir.write("services.toml", &toml.replace("{api}", api));
    dir.write("schema/schema.graphql", sdl);
    dir
}

impl Served {
    /// `conflux serve --config services.toml --listen 127.0.0.1:0
    /// --log-format FORMAT [extra…]` in `dir`, with `RUST_LOG=rust_log`;
    /// waits until it says where it serves.
    async fn start(dir: TempDir, format: &str, rust_log: &str, extra: &[&str]) -> Served {
        let args: Vec<&str> = ["--log-format", format]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let serving = Serving::start(dir.path(), rust_log, &args).await;
        Served {
            client: Client::new(format!("http://{}", serving.addr)),
            serving,
            dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.serving.lines()
    }

    fn stderr_text(&self) -> String {
        self.lines().join("\n")
    }

    /// Every stderr line that is a JSON object.
    fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The `conflux::request` lines of the request with this id.
    fn request_lines(&self, request_id: &str) -> Vec<Value> {
        self.json_lines()
            .into_iter()
            .filter(|line| line["target"] == "conflux::request")
            .filter(|line| line["fields"]["request_id"] == request_id)
            .collect()
    }

    /// The first JSON line for which `found` holds, waiting for it.
    async fn wait_for_json(&self, what: &str, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.json_lines().into_iter().find(|line| found(line)) {
                return line;
            }
            if Instant::now() > deadline {
                let lines = self.lines();
                let tail = &lines[lines.len().saturating_sub(40)..];
                panic!(
                    "no log line {what} within 30 s; last lines:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(ms(20)).await;
        }
    }

    /// A `{ __typename }` request with id `marker`, and its log line: once
    /// it is read, so is every line logged before that request was sent.
    async fn log_barrier(&self, marker: &str) {
        let reply = self
            .post_with_headers("{ __typename }", &[("x-request-id", marker)])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        self.wait_for_json(&format!("for request {marker}"), |line| {
            line["target"] == "conflux::request" && line["fields"]["request_id"] == marker
        })
        .await;
    }

    async fn metrics(&self) -> Metrics {
        let reply = self.request(Method::GET, "/metrics", &[], None).await;
        assert_eq!(reply.status, 200, "/metrics: {}", preview(&reply.text));
        Metrics::parse(&reply.text)
    }

    /// Replaces `relative` as editors save: write a temporary file beside
    /// it, then rename it over the old one.
    fn write_atomically(&self, relative: &str, text: &str) {
        let temporary = format!("{relative}.conflux-test-tmp");
        let written = self.dir.write(&temporary, text);
        std::fs::rename(&written, self.dir.path().join(relative)).expect("rename over");
    }

    /// `kill -HUP PID`.
    fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.serving.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed: {status}");
    }

    fn is_running(&mut self) -> bool {
        self.serving.is_running()
    }
}

impl Deref for Served {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Prometheus text, parsed
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        Metrics {
            samples: text.lines().filter_map(parse_sample).collect(),
        }
    }

    /// The samples of `name` whose labels include every one of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum over the matching samples (0 when there is none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    /// Every value of `label` on series `name`.
    fn values_of(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// How much a series moved between two scrapes.
fn moved(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}

/// `name{k="v",…} value [timestamp]`; comments and blank lines are `None`.
fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(at + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        rest = &inner[end?..];
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[test]
fn the_metrics_parser_reads_labels_escapes_and_special_values() {
    let metrics = Metrics::parse(
        "# TYPE x counter\nx{a=\"1\",b=\"q\\\"uote, }\"} 3\nx{a=\"2\"} 4 1700000000\n\
         h_bucket{le=\"+Inf\"} 7\nplain 1.5\n",
    );
    assert_eq!(metrics.sum("x", &[]), 7.0);
    assert_eq!(metrics.sum("x", &[("b", "q\"uote, }")]), 3.0);
    assert_eq!(metrics.sum("h_bucket", &[("le", "+Inf")]), 7.0);
    assert_eq!(metrics.sum("plain", &[]), 1.5);
    assert!(!metrics.has("x", &[("a", "3")]));
}

// ---------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_request_id_comes_back_and_reaches_the_upstream() {
    let api = shop_api().await;
    let gateway = in_process("", &api).await;

    let reply = gateway
        .post_with_headers(
            r#"{ a: user(id: "1") { name } b: user(id: "2") { name } }"#,
            &[("x-request-id", "abc-123")],
        )
        .await;

    assert_ok(&reply);
    assert_eq!(reply.header("x-request-id").as_deref(), Some("abc-123"));
    let sent = received(&api).await;
    assert_eq!(sent.len(), 2, "{:?}", request_lines(&sent));
    for request in &sent {
        assert_eq!(
            header(request, "x-request-id").as_deref(),
            Some("abc-123"),
            "{} {}",
            request.method,
            request.url
        );
    }
}

#[tokio::test]
async fn without_a_request_id_a_generated_one_is_returned_and_sent_upstream() {
    let api = shop_api().await;
    let gateway = in_process("", &api).await;

    let reply = gateway
        .post(r#"{ a: user(id: "1") { name } b: user(id: "2") { name } }"#)
        .await;
    assert_ok(&reply);
    let generated = reply
        .header("x-request-id")
        .expect("a generated x-request-id on the response");
    assert!(!generated.trim().is_empty(), "an empty request id");
    let sent = received(&api).await;
    assert_eq!(sent.len(), 2, "{:?}", request_lines(&sent));
    for request in &sent {
        assert_eq!(
            header(request, "x-request-id").as_deref(),
            Some(generated.as_str()),
            "the upstream must get the id the client got back"
        );
    }

    let again = gateway.post(r#"{ user(id: "3") { name } }"#).await;
    let second = again.header("x-request-id").expect("a generated id");
    assert_ne!(second, generated, "each request gets its own id");
}

// ---------------------------------------------------------------------------
// W3C trace context
// ---------------------------------------------------------------------------

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent(span: &str) -> String {
    format!("00-{TRACE_ID}-{span}-01")
}

/// `(version, trace id, span id, flags)` of a well-formed traceparent.
fn traceparent_parts(value: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {value}");
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    assert!(
        lower_hex(parts[0], 2)
            && lower_hex(parts[1], 32)
            && lower_hex(parts[2], 16)
            && lower_hex(parts[3], 2),
        "not a W3C traceparent: {value}"
    );
    assert!(
        parts[1].bytes().any(|b| b != b'0') && parts[2].bytes().any(|b| b != b'0'),
        "all-zero id in {value}"
    );
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

#[tokio::test]
async fn a_client_traceparent_continues_upstream_with_the_same_trace_id_and_new_spans() {
    let api = shop_api().await;
    let gateway = in_process("", &api).await;
    let traceparent = client_traceparent(CLIENT_SPAN);

    let reply = gateway
        .post_with_headers(
            r#"{ a: user(id: "1") { name } b: user(id: "2") { name } }"#,
            &[
                ("traceparent", &traceparent),
                ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ],
        )
        .await;

    assert_ok(&reply);
    let sent = received(&api).await;
    assert_eq!(sent.len(), 2, "{:?}", request_lines(&sent));
    let mut spans = BTreeSet::new();
    for request in &sent {
        let value = header(request, "traceparent").expect("a traceparent upstream");
        let (version, trace_id, span, flags) = traceparent_parts(&value);
        assert_eq!(version, "00");
        assert_eq!(trace_id, TRACE_ID, "the client's trace goes on: {value}");
        assert_ne!(span, CLIENT_SPAN, "the gateway's call is a span of its own");
        assert_eq!(flags, "01", "the sampled flag is kept: {value}");
        spans.insert(span);
        assert_eq!(
            header(request, "tracestate").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            "tracestate is passed on untouched"
        );
    }
    assert_eq!(spans.len(), 2, "one span per upstream call: {spans:?}");
}

#[tokio::test]
async fn without_a_client_traceparent_the_upstream_calls_start_one_new_trace() {
    let api = shop_api().await;
    let gateway = in_process("", &api).await;

    let reply = gateway
        .post(r#"{ a: user(id: "1") { name } b: user(id: "2") { name } }"#)
        .await;

    assert_ok(&reply);
    let sent = received(&api).await;
    assert_eq!(sent.len(), 2);
    let traces: BTreeSet<String> = sent
        .iter()
        .map(|r| {
            let value = header(r, "traceparent").expect("a traceparent upstream");
            traceparent_parts(&value).1
        })
        .collect();
    assert_eq!(traces.len(), 1, "one trace per request: {traces:?}");
    assert!(sent.iter().all(|r| header(r, "tracestate").is_none()));
}

#[tokio::test]
async fn with_propagation_off_no_trace_context_goes_upstream() {
    let api = shop_api().await;
    let gateway = in_process("[telemetry]\npropagate_trace_context = false", &api).await;

    let reply = gateway
        .post_with_headers(
            r#"{ user(id: "1") { name } }"#,
            &[
                ("traceparent", &client_traceparent(CLIENT_SPAN)),
                ("tracestate", "congo=t61rcWkgMzE"),
                ("x-request-id", "no-trace-1"),
            ],
        )
        .await;

    assert_ok(&reply);
    let sent = received(&api).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(header(&sent[0], "traceparent"), None);
    assert_eq!(header(&sent[0], "tracestate"), None);
    assert_eq!(
        header(&sent[0], "x-request-id").as_deref(),
        Some("no-trace-1"),
        "the request id is not trace context: it still goes upstream"
    );
}

#[tokio::test]
async fn trace_context_splits_neither_deduplication_nor_the_cache() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/(users|cached)/[^/]+$"))
        .respond_with(UserById)
        .mount(&api)
        .await;
    let gateway = in_process("", &api).await;

    // Two aliases of one call: each call gets its own span id, yet it is
    // one call.
    let reply = gateway
        .post_with_headers(
            r#"{ a: user(id: "7") { name } b: user(id: "7") { id } }"#,
            &[("traceparent", &client_traceparent(CLIENT_SPAN))],
        )
        .await;
    let body = assert_ok(&reply);
    assert_eq!(
        body["data"],
        json!({"a": {"name": "User 7"}, "b": {"id": "7"}})
    );

    // Two requests from two traces: one cache entry.
    let query = r#"{ cachedUser(id: "c7") { name } }"#;
    let first = gateway
        .post_with_headers(
            query,
            &[("traceparent", &client_traceparent("1111111111111111"))],
        )
        .await;
    let second = gateway
        .post_with_headers(
            query,
            &[
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-2222222222222222-01",
                ),
                ("tracestate", "other=1"),
            ],
        )
        .await;
    assert_eq!(assert_ok(&first), assert_ok(&second));

    assert_eq!(
        request_lines(&received(&api).await),
        vec!["GET /users/7", "GET /cached/c7"],
        "one call for the two aliases, one for the two traced requests"
    );
}

// ---------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------

async fn metrics_gateway(extra: &str, api: &MockServer) -> Served {
    Served::start(
        config_dir(&shop_config(extra), SDL, &api.uri()),
        "json",
        "info",
        &[],
    )
    .await
}

#[tokio::test]
async fn a_known_query_moves_the_request_and_upstream_series_by_exactly_its_calls() {
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;

    let scrape = gateway.request(Method::GET, "/metrics", &[], None).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.media_type().starts_with("text/plain"),
        "Prometheus text: {:?}",
        scrape.header("content-type")
    );
    let before = Metrics::parse(&scrape.text);

    let reply = post_op(
        &gateway,
        r#"query OpsKnownQuery { a: user(id: "1") { name } b: user(id: "2") { name } }"#,
        "OpsKnownQuery",
        Value::Null,
        &[],
    )
    .await;
    assert_ok(&reply);
    let after = gateway.metrics().await;

    let ok = [("operation", "OpsKnownQuery"), ("outcome", "ok")];
    assert_eq!(moved(&before, &after, "conflux_requests_total", &ok), 1.0);
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_requests_total",
            &[("operation", "OpsKnownQuery")]
        ),
        1.0,
        "counted once, under one outcome"
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_requests_total",
            &[("service", "users"), ("status", "2xx")]
        ),
        2.0
    );
    let instance = api.uri();
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_requests_total",
            &[("instance", instance.as_str()), ("status", "2xx")]
        ),
        2.0,
        "the upstream series name the instance called"
    );
    assert!(
        after.has("conflux_request_duration_seconds_bucket", &ok),
        "a latency histogram per operation and outcome"
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_request_duration_seconds_count",
            &ok
        ),
        1.0
    );
    assert!(after.has(
        "conflux_upstream_duration_seconds_bucket",
        &[("service", "users"), ("status", "2xx")]
    ));
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_duration_seconds_count",
            &[("service", "users"), ("status", "2xx")]
        ),
        2.0
    );
    assert!(
        after.has("conflux_requests_in_flight", &[]),
        "in-flight requests are a series"
    );
    assert_eq!(
        after.sum("conflux_requests_in_flight", &[]),
        0.0,
        "nothing is in flight between requests"
    );
}

#[tokio::test]
async fn a_failing_upstream_moves_the_5xx_series_and_not_the_ok_outcome() {
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;
    let before = gateway.metrics().await;

    let reply = post_op(
        &gateway,
        "query OpsBrokenQuery { broken { name } }",
        "OpsBrokenQuery",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(reply.error_codes(), vec!["UPSTREAM_ERROR"]);
    let after = gateway.metrics().await;

    let users = |status| [("service", "users"), ("status", status)];
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_requests_total",
            &users("5xx")
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_requests_total",
            &users("2xx")
        ),
        0.0
    );
    let operation = [("operation", "OpsBrokenQuery")];
    assert_eq!(
        moved(&before, &after, "conflux_requests_total", &operation),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_requests_total",
            &[("operation", "OpsBrokenQuery"), ("outcome", "ok")]
        ),
        0.0,
        "a request with an upstream error is not `ok`"
    );
}

#[tokio::test]
async fn a_batched_call_records_its_key_count() {
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;
    let before = gateway.metrics().await;

    let reply = post_op(
        &gateway,
        "query OpsBatchQuery { orders { id product { name } } }",
        "OpsBatchQuery",
        Value::Null,
        &[],
    )
    .await;
    let body = assert_ok(&reply);
    assert_eq!(body["data"]["orders"][3]["product"]["name"], "Product p3");
    let after = gateway.metrics().await;

    assert_eq!(
        moved(&before, &after, "conflux_batch_keys_count", &[]),
        1.0,
        "one batched call"
    );
    assert_eq!(
        moved(&before, &after, "conflux_batch_keys_sum", &[]),
        3.0,
        "with the 3 distinct keys"
    );
    assert!(after.has("conflux_batch_keys_bucket", &[]));
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_requests_total",
            &[("service", "products"), ("status", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_upstream_requests_total",
            &[("service", "orders"), ("status", "2xx")]
        ),
        1.0
    );
}

#[tokio::test]
async fn cache_lookups_count_a_miss_then_a_hit() {
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;
    let query = r#"{ cachedUser(id: "m1") { name } }"#;
    let lookups = |result| [("result", result)];

    let before = gateway.metrics().await;
    assert_ok(&gateway.post(query).await);
    let after_first = gateway.metrics().await;
    assert_ok(&gateway.post(query).await);
    let after_second = gateway.metrics().await;

    let name = "conflux_cache_lookups_total";
    assert_eq!(moved(&before, &after_first, name, &lookups("miss")), 1.0);
    assert_eq!(moved(&before, &after_first, name, &lookups("hit")), 0.0);
    assert_eq!(
        moved(&after_first, &after_second, name, &lookups("hit")),
        1.0
    );
    assert_eq!(
        moved(&after_first, &after_second, name, &lookups("miss")),
        0.0
    );
    assert_eq!(
        moved(
            &after_first,
            &after_second,
            "conflux_upstream_requests_total",
            &[("service", "users")]
        ),
        0.0,
        "a cache hit is not an upstream call"
    );
    let calls: Vec<String> = request_lines(&received(&api).await);
    assert_eq!(calls, vec!["GET /cached/m1"]);
}

#[tokio::test]
async fn a_rate_limited_request_is_counted_and_metrics_are_never_limited() {
    let api = shop_api().await;
    let gateway = metrics_gateway("[rate_limit]\nper_second = 0.01\nburst = 1", &api).await;
    let before = gateway.metrics().await;

    assert_ok(&gateway.post(r#"{ user(id: "1") { name } }"#).await);
    let refused = gateway.post(r#"{ user(id: "1") { name } }"#).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    // Scraping spends no budget: these all answer.
    for _ in 0..3 {
        gateway.metrics().await;
    }
    let after = gateway.metrics().await;

    assert_eq!(
        moved(&before, &after, "conflux_rate_limited_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn circuit_state_is_a_gauge_per_service_instance() {
    let first = shop_api().await;
    let second = shop_api().await;
    let flaky = shop_api().await;
    let toml = r#"
[services.users]
urls = ["{first}", "{second}"]
[services.flaky]
url = "{flaky}"
retries = 0
circuit_breaker = { failures = 1, open_ms = 600000 }

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"Query.broken" = { service = "flaky", get = "/broken" }
"#
    .replace("{first}", &first.uri())
    .replace("{second}", &second.uri())
    .replace("{flaky}", &flaky.uri());
    let sdl =
        "type Query { user(id: ID!): User  broken: User }\ntype User { id: ID  name: String }";
    let gateway = Served::start(config_dir(&toml, sdl, ""), "json", "info", &[]).await;

    let state = |metrics: &Metrics, service: &str, instance: &str| {
        let samples: Vec<f64> = metrics
            .matching(
                "conflux_upstream_circuit_state",
                &[("service", service), ("instance", instance)],
            )
            .map(|s| s.value)
            .collect();
        assert_eq!(
            samples.len(),
            1,
            "one circuit gauge for {service} {instance}"
        );
        samples[0]
    };
    let before = gateway.metrics().await;
    let instances: BTreeSet<String> = before
        .matching("conflux_upstream_circuit_state", &[("service", "users")])
        .filter_map(|s| s.labels.get("instance").cloned())
        .collect();
    assert_eq!(
        instances,
        BTreeSet::from([first.uri(), second.uri()]),
        "one gauge per instance, labelled with its URL"
    );
    assert_eq!(state(&before, "users", &first.uri()), 0.0, "closed");
    assert_eq!(state(&before, "flaky", &flaky.uri()), 0.0, "closed");

    let reply = gateway.post("{ broken { name } }").await;
    assert_eq!(reply.error_codes(), vec!["UPSTREAM_ERROR"]);
    let after = gateway.metrics().await;
    assert_eq!(
        state(&after, "flaky", &flaky.uri()),
        2.0,
        "open after `failures` consecutive failures"
    );
    assert_eq!(state(&after, "users", &second.uri()), 0.0);
}

#[tokio::test]
async fn past_100_operation_names_later_ones_are_counted_as_other() {
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;
    let before = gateway.metrics().await;
    let send = |i: usize| {
        let name = format!("OpsCap{i:03}");
        let client = gateway.client.clone();
        async move {
            let reply = post_op(
                &client,
                &format!("query {name} {{ __typename }}"),
                &name,
                Value::Null,
                &[],
            )
            .await;
            assert_ok(&reply);
        }
    };
    // In order: the first 100 names seen keep their label.
    for i in 0..105 {
        send(i).await;
    }
    send(0).await;
    let after = gateway.metrics().await;

    let count = |name: &str| {
        moved(
            &before,
            &after,
            "conflux_requests_total",
            &[("operation", name)],
        )
    };
    assert_eq!(count("OpsCap000"), 2.0, "a kept name stays kept");
    for i in 1..100 {
        assert_eq!(count(&format!("OpsCap{i:03}")), 1.0, "OpsCap{i:03}");
    }
    for i in 100..105 {
        assert!(
            !after.has(
                "conflux_requests_total",
                &[("operation", &format!("OpsCap{i:03}"))]
            ),
            "OpsCap{i:03} must not become a label"
        );
    }
    assert_eq!(count("other"), 5.0);
    let labels = after.values_of("conflux_requests_total", "operation");
    assert!(
        labels.len() <= 102,
        "the label set stays bounded (100 names, other, anonymous): {} values",
        labels.len()
    );
    assert!(
        after
            .values_of("conflux_request_duration_seconds_bucket", "operation")
            .is_subset(&labels),
        "the histogram is bounded the same way"
    );
}

#[tokio::test]
async fn the_operation_label_is_the_documents_name_when_operation_name_is_absent() {
    // Many clients (curl, fetch) send a named operation without repeating
    // its name in `operationName`: operators still want it by name.
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;
    let before = gateway.metrics().await;

    let reply = gateway
        .post_with_headers(
            r#"query OpsUnrepeatedName { user(id: "1") { name } }"#,
            &[("x-request-id", "unrepeated-1")],
        )
        .await;
    assert_ok(&reply);
    gateway.log_barrier("unrepeated-barrier").await;
    let after = gateway.metrics().await;

    let lines = gateway.request_lines("unrepeated-1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["operation"], "OpsUnrepeatedName");
    assert_eq!(
        moved(
            &before,
            &after,
            "conflux_requests_total",
            &[("operation", "OpsUnrepeatedName")]
        ),
        1.0
    );
}

#[tokio::test]
async fn upstream_series_are_labelled_by_instance() {
    // Issue 7: "upstream call count and latency histogram by service,
    // instance and status class".
    let api = shop_api().await;
    let gateway = metrics_gateway("", &api).await;

    assert_ok(&gateway.post(r#"{ user(id: "1") { name } }"#).await);
    let after = gateway.metrics().await;

    let uri = api.uri();
    let labels = [("service", "users"), ("instance", uri.as_str())];
    assert!(
        after.has("conflux_upstream_requests_total", &labels),
        "conflux_upstream_requests_total has no instance label: {:?}",
        after
            .matching("conflux_upstream_requests_total", &[])
            .map(|s| &s.labels)
            .collect::<Vec<_>>()
    );
    assert!(after.has("conflux_upstream_duration_seconds_bucket", &labels));
}

#[tokio::test]
async fn with_metrics_off_the_metrics_path_is_404() {
    let api = shop_api().await;
    let gateway = in_process("[telemetry]\nmetrics = false", &api).await;

    let reply = gateway.request(Method::GET, "/metrics", &[], None).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_ok(&gateway.post(r#"{ user(id: "1") { name } }"#).await);
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

const JWT_SECRET: &str = "ops-log-secret-0123456789abcdef";

/// A value that must never be logged: it travels in a variable and ends up
/// in an upstream path.
const PERSONAL: &str = "PersonalValue4711zq";

fn auth_table() -> String {
    format!("[auth]\nalgorithms = [\"HS256\"]\nsecret = \"{JWT_SECRET}\"")
}

fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let claims = json!({"sub": sub, "iat": now, "exp": now + 3600});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign a test token")
}

/// `error_codes` as a list, whether logged as `A,B` or as an array.
fn logged_codes(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

const USER_BY_VARIABLE: &str = "query OpsLogUser($id: ID!) { user(id: $id) { name } }";

#[tokio::test]
async fn each_graphql_request_logs_one_json_line_with_its_fields() {
    let api = shop_api().await;
    let dir = config_dir(&shop_config(&auth_table()), SDL, &api.uri());
    let gateway = Served::start(dir, "json", "info", &[]).await;
    let bearer = format!("Bearer {}", token("user-42"));

    let reply = post_op(
        &gateway,
        USER_BY_VARIABLE,
        "OpsLogUser",
        json!({"id": PERSONAL}),
        &[("x-request-id", "log-ok-1"), ("authorization", &bearer)],
    )
    .await;
    assert_ok(&reply);
    let broken = post_op(
        &gateway,
        "query OpsLogBroken { broken { name } }",
        "OpsLogBroken",
        Value::Null,
        &[("x-request-id", "log-broken-1")],
    )
    .await;
    assert_eq!(broken.error_codes(), vec!["UPSTREAM_ERROR"]);
    let refused = gateway
        .post_with_headers("{ user(", &[("x-request-id", "log-refused-1")])
        .await;
    assert_eq!(refused.error_codes(), vec!["GRAPHQL_PARSE_FAILED"]);
    gateway.log_barrier("log-barrier-1").await;

    let ok = gateway.request_lines("log-ok-1");
    assert_eq!(ok.len(), 1, "exactly one line per request: {ok:?}");
    let line = &ok[0];
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["operation"], "OpsLogUser", "{line}");
    assert_eq!(fields["kind"], "query", "{line}");
    // One engine runs every operation: the line no longer names one.
    assert!(fields.get("executor").is_none(), "{line}");
    assert_eq!(fields["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(fields["subject"], "user-42", "{line}");
    assert_eq!(fields["status"], 200, "{line}");
    assert_eq!(fields["upstream_calls"], 1, "{line}");
    assert!(logged_codes(&fields["error_codes"]).is_empty(), "{line}");
    let duration = fields["duration_ms"]
        .as_f64()
        .expect("duration_ms, a number");
    assert!((0.0..30_000.0).contains(&duration), "{line}");

    let broken = gateway.request_lines("log-broken-1");
    assert_eq!(broken.len(), 1, "{broken:?}");
    let fields = &broken[0]["fields"];
    assert_eq!(fields["operation"], "OpsLogBroken");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["upstream_calls"], 1);
    assert_eq!(logged_codes(&fields["error_codes"]), vec!["UPSTREAM_ERROR"]);
    assert!(
        fields["subject"].is_null() || fields["subject"] == "-",
        "an anonymous request has no subject: {}",
        broken[0]
    );

    let refused = gateway.request_lines("log-refused-1");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let fields = &refused[0]["fields"];
    assert_eq!(
        logged_codes(&fields["error_codes"]),
        vec!["GRAPHQL_PARSE_FAILED"]
    );
    assert_eq!(fields["upstream_calls"], 0);
    // What the client got: a legacy `application/json` client is answered
    // a document error with 200.
    assert_eq!(fields["status"], 200);

    assert!(
        !gateway.stderr_text().contains(PERSONAL),
        "a variable's value reached the logs"
    );
}

#[tokio::test]
async fn at_debug_level_each_upstream_call_logs_its_path_template_never_the_value() {
    let api = shop_api().await;
    let dir = config_dir(&shop_config(""), SDL, &api.uri());
    let gateway = Served::start(dir, "json", "conflux=debug", &[]).await;

    let reply = post_op(
        &gateway,
        "query OpsDebugCalls($id: ID!) { user(id: $id) { name } orders { product { name } } }",
        "OpsDebugCalls",
        json!({"id": PERSONAL}),
        &[("x-request-id", "debug-calls-1")],
    )
    .await;
    assert_ok(&reply);
    gateway.log_barrier("debug-calls-barrier").await;

    let calls: Vec<Value> = gateway
        .json_lines()
        .into_iter()
        .filter(|line| line["level"] == "DEBUG" && line["fields"]["message"] == "upstream call")
        .collect();
    let by_path = |template: &str| -> Value {
        let found: Vec<&Value> = calls
            .iter()
            .filter(|line| line["fields"]["path"] == template)
            .collect();
        assert_eq!(found.len(), 1, "one line for {template}: {calls:?}");
        found[0].clone()
    };
    let user = by_path("/users/{args.id}");
    let fields = &user["fields"];
    assert_eq!(fields["service"], "users", "{user}");
    assert_eq!(fields["method"], "GET", "{user}");
    assert_eq!(fields["status"], "2xx", "{user}");
    assert!(fields["duration_ms"].is_number(), "{user}");
    assert_eq!(by_path("/orders")["fields"]["service"], "orders");
    assert_eq!(
        by_path("/products?ids={keys}")["fields"]["service"],
        "products"
    );
    assert_eq!(calls.len(), 3, "one line per upstream call: {calls:?}");

    let sent = request_lines(&received(&api).await);
    assert!(
        sent.contains(&format!("GET /users/{PERSONAL}")),
        "the value did go upstream: {sent:?}"
    );
    assert!(
        !gateway.stderr_text().contains(PERSONAL),
        "the filled path reached the logs"
    );
}

#[tokio::test]
async fn the_upstream_call_line_names_the_instance_and_the_retries() {
    // Issue 7: one line per upstream call with "service, instance, method,
    // path template, status, duration, retries".
    let api = shop_api().await;
    let dir = config_dir(&shop_config(""), SDL, &api.uri());
    let gateway = Served::start(dir, "json", "conflux=debug", &[]).await;

    assert_ok(&gateway.post(r#"{ user(id: "1") { name } }"#).await);
    let line = gateway
        .wait_for_json("for the upstream call", |line| {
            line["fields"]["message"] == "upstream call"
        })
        .await;

    assert_eq!(line["fields"]["instance"], api.uri().as_str(), "{line}");
    assert_eq!(line["fields"]["retries"], 0, "{line}");
}

#[tokio::test]
async fn a_failed_upstream_connection_logs_no_filled_url() {
    let dir = config_dir(&shop_config(""), SDL, &closed_port_url());
    let gateway = Served::start(dir, "json", "conflux=debug", &[]).await;

    let reply = post_op(
        &gateway,
        USER_BY_VARIABLE,
        "OpsLogUser",
        json!({"id": PERSONAL}),
        &[("x-request-id", "unreachable-1")],
    )
    .await;
    assert_eq!(reply.error_codes(), vec!["UPSTREAM_UNAVAILABLE"]);
    gateway.log_barrier("unreachable-barrier").await;

    let leaked: Vec<String> = gateway
        .lines()
        .into_iter()
        .filter(|line| line.contains(PERSONAL))
        .collect();
    assert!(
        leaked.is_empty(),
        "the filled URL reached the logs:\n{}",
        leaked.join("\n")
    );
}

#[tokio::test]
async fn text_logs_carry_the_same_request_line() {
    let api = shop_api().await;
    let dir = config_dir(&shop_config(""), SDL, &api.uri());
    let gateway = Served::start(dir, "text", "info", &[]).await;

    assert_ok(
        &post_op(
            &gateway,
            r#"query OpsTextLog { user(id: "1") { name } }"#,
            "OpsTextLog",
            Value::Null,
            &[("x-request-id", "text-log-1")],
        )
        .await,
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let found = gateway
            .lines()
            .iter()
            .map(|line| strip_ansi(line))
            .find(|line| line.contains("text-log-1"));
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no text line for text-log-1");
        tokio::time::sleep(ms(20)).await;
    };
    assert!(
        serde_json::from_str::<Value>(&line).is_err(),
        "text: {line}"
    );
    for expected in [
        "INFO",
        "conflux::request",
        "graphql request",
        "request_id",
        "OpsTextLog",
        "upstream_calls=1",
        "status=200",
    ] {
        assert!(line.contains(expected), "`{expected}` in: {line}");
    }
}

// ---------------------------------------------------------------------------
// Reload: --hot-reload and SIGHUP
// ---------------------------------------------------------------------------

const RELOAD_SDL: &str = "type Query { user(id: ID!): User }\ntype User { id: ID  name: String }\n";

fn reload_config(mapping: &str) -> String {
    format!("[services.users]\nurl = \"{{api}}\"\n\n[resolvers]\n{mapping}\n")
}

const V1: &str = r#""Query.user" = { service = "users", get = "/users/{args.id}" }"#;
const V2: &str = r#""Query.user" = { service = "users", get = "/v2/users/{args.id}" }"#;

/// `/users/1` answers `v1`, `/v2/users/1` `v2`, `/greeting` `"hello"`.
async fn versioned_api() -> MockServer {
    let api = MockServer::start().await;
    serve(&api, "GET", "/users/1", json_reply(json!({"name": "v1"}))).await;
    serve(
        &api,
        "GET",
        "/v2/users/1",
        json_reply(json!({"name": "v2"})),
    )
    .await;
    serve(&api, "GET", "/greeting", json_reply(json!("hello"))).await;
    api
}

/// The name a `{ user(id: "1") { name } }` answered, or why it failed.
async fn user_name(client: &Client) -> Result<String, String> {
    user_name_of(client, "1").await
}

/// The name `{ user(id: ID) { name } }` answered, or why it failed.
async fn user_name_of(client: &Client, id: &str) -> Result<String, String> {
    let query = format!(r#"{{ user(id: "{id}") {{ name }} }}"#);
    let body = json!({ "query": query }).to_string();
    let exchange = client.try_request(
        Method::POST,
        "/graphql",
        &[("content-type", "application/json")],
        Some(body.into_bytes()),
    );
    let reply = match tokio::time::timeout(Duration::from_secs(30), exchange).await {
        Err(_) => return Err("no answer within 30 s".to_owned()),
        Ok(Err(err)) => return Err(format!("no answer: {err}")),
        Ok(Ok(reply)) => reply,
    };
    let body: Value = serde_json::from_str(&reply.text)
        .map_err(|_| format!("status {}: {}", reply.status, preview(&reply.text)))?;
    if reply.status != 200 || body.get("errors").is_some() {
        return Err(format!("status {}: {}", reply.status, preview(&reply.text)));
    }
    body["data"]["user"]["name"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no name: {body}"))
}

/// A steady stream of `{ user(id: "1") { name } }`, 20 a second, each
/// request on its own task (so some are in flight during a swap).
struct Traffic {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Result<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(client: Client) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (stopping, recorded) = (stop.clone(), answers.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ms(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut requests = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                tick.tick().await;
                let (client, recorded) = (client.clone(), recorded.clone());
                requests.push(tokio::spawn(async move {
                    let answer = user_name(&client).await;
                    recorded.lock().expect("answers lock").push(answer);
                }));
            }
            for request in requests {
                let _ = request.await;
            }
        });
        Traffic {
            stop,
            answers,
            task,
        }
    }

    fn answers(&self) -> Vec<Result<String, String>> {
        self.answers.lock().expect("answers lock").clone()
    }

    /// How many answers said `name`.
    fn count(&self, name: &str) -> usize {
        self.answers()
            .iter()
            .filter(|a| a.as_deref() == Ok(name))
            .count()
    }

    /// Stops sending and returns every answer, once all are in.
    async fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the traffic task");
        let answers = self.answers.lock().expect("answers lock").clone();
        answers
    }
}

/// Lines with a `problem` field (reload refusals), in order.
fn refused_problems(gateway: &Served) -> Vec<String> {
    gateway
        .json_lines()
        .iter()
        .filter_map(|line| line["fields"]["problem"].as_str().map(str::to_owned))
        .collect()
}

/// What `conflux check` says of this `services.toml` beside `RELOAD_SDL`.
fn check_lines(toml: &str) -> Vec<String> {
    let run = run_binary(
        &["check", "--config", "services.toml"],
        toml,
        &[("schema/schema.graphql", RELOAD_SDL)],
    );
    assert_eq!(run.code, Some(1), "check must refuse it: {}", run.stderr);
    run.stderr_lines()
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_mappings_under_traffic_and_keeps_serving_through_invalid_edits() {
    let api = versioned_api().await;
    let dir = config_dir(&reload_config(V1), RELOAD_SDL, &api.uri());
    let mut gateway = Served::start(dir, "json", "info", &["--hot-reload"]).await;
    gateway
        .wait_for_json("saying the files are watched", |line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("watching the configuration files"))
        })
        .await;
    let before = gateway.metrics().await;
    let traffic = Traffic::start(gateway.client.clone());
    eventually(
        "5 answers from the first mapping",
        Duration::from_secs(30),
        || traffic.count("v1") >= 5,
    )
    .await;

    // 1. A valid change, saved by atomic rename.
    let v2 = reload_config(V2).replace("{api}", &api.uri());
    gateway.write_atomically("services.toml", &v2);
    eventually("the new mapping", Duration::from_secs(30), || {
        traffic.count("v2") >= 1
    })
    .await;
    let seen = traffic.count("v2");
    eventually("10 more answers", Duration::from_secs(30), || {
        traffic.count("v2") >= seen + 10
    })
    .await;
    assert_eq!(user_name(&gateway).await.as_deref(), Ok("v2"));

    // 2. An invalid change: logged as `check` says it, the second config
    // keeps serving.
    let invalid =
        reload_config(r#""Query.user" = { service = "nope", get = "/v3/users/{args.id}" }"#)
            .replace("{api}", &api.uri());
    let expected = check_lines(&invalid);
    let refusals = refused_problems(&gateway).len();
    gateway.write_atomically("services.toml", &invalid);
    eventually(
        "the invalid change to be logged with check's messages",
        Duration::from_secs(30),
        || {
            let logged = refused_problems(&gateway);
            expected
                .iter()
                .all(|line| logged[refusals..].contains(line))
        },
    )
    .await;
    let seen = traffic.count("v2");
    eventually("10 more answers", Duration::from_secs(30), || {
        traffic.count("v2") >= seen + 10
    })
    .await;
    assert_eq!(user_name(&gateway).await.as_deref(), Ok("v2"));

    // 3. A mapping for a field that a new schema file adds: refused until
    // the file appears, then picked up.
    let greeting = reload_config(&format!(
        "{V2}\n\"Query.greeting\" = {{ service = \"users\", get = \"/greeting\" }}"
    ))
    .replace("{api}", &api.uri());
    let refusals = refused_problems(&gateway).len();
    gateway.write_atomically("services.toml", &greeting);
    eventually(
        "the mapping without its field to be refused",
        Duration::from_secs(30),
        || {
            refused_problems(&gateway)[refusals..]
                .iter()
                .any(|problem| problem.contains("greeting"))
        },
    )
    .await;
    gateway.dir.write(
        "schema/greeting.graphql",
        "extend type Query { greeting: String }\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = gateway.post("{ greeting }").await;
        if reply.status == 200 && reply.json()["data"]["greeting"] == "hello" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new schema file was not picked up: {}",
            reply.text
        );
        tokio::time::sleep(ms(50)).await;
    }

    let answers = traffic.finish().await;
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        answers
            .iter()
            .all(|a| matches!(a.as_deref(), Ok("v1" | "v2"))),
        "only the two valid mappings ever answered"
    );
    let sent = request_lines(&received(&api).await);
    assert!(
        !sent.iter().any(|line| line.contains("/v3/")),
        "the invalid mapping was used"
    );
    let after = gateway.metrics().await;
    let reloads = |outcome| [("outcome", outcome)];
    assert!(
        moved(
            &before,
            &after,
            "conflux_config_reloads_total",
            &reloads("success")
        ) >= 2.0,
        "two successful reloads counted"
    );
    assert!(
        moved(
            &before,
            &after,
            "conflux_config_reloads_total",
            &reloads("failure")
        ) >= 2.0,
        "two refused reloads counted"
    );
    assert!(gateway.is_running());
}

#[tokio::test]
async fn sighup_reloads_without_hot_reload() {
    let api = versioned_api().await;
    let dir = config_dir(&reload_config(V1), RELOAD_SDL, &api.uri());
    let mut gateway = Served::start(dir, "json", "info", &[]).await;
    // Serving answers: the runtime, and its signal handler, are running.
    for _ in 0..3 {
        assert_eq!(user_name(&gateway).await.as_deref(), Ok("v1"));
    }

    gateway.dir.write(
        "services.toml",
        &reload_config(V2).replace("{api}", &api.uri()),
    );
    assert_eq!(
        user_name(&gateway).await.as_deref(),
        Ok("v1"),
        "the old mapping serves until the signal"
    );
    gateway.hang_up();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = user_name(&gateway).await;
        if answer.as_deref() == Ok("v2") {
            break;
        }
        assert_eq!(answer.as_deref(), Ok("v1"), "no failure while reloading");
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(ms(50)).await;
    }
    assert!(gateway.is_running(), "SIGHUP must not stop the gateway");

    // An invalid file and a SIGHUP: logged, the second config keeps serving.
    let invalid =
        reload_config(r#""Query.user" = { service = "nope", get = "/v3/users/{args.id}" }"#)
            .replace("{api}", &api.uri());
    let expected = check_lines(&invalid);
    gateway.dir.write("services.toml", &invalid);
    gateway.hang_up();
    eventually(
        "the refused reload to be logged",
        Duration::from_secs(30),
        || {
            let logged = refused_problems(&gateway);
            expected.iter().all(|line| logged.contains(line))
        },
    )
    .await;
    assert_eq!(user_name(&gateway).await.as_deref(), Ok("v2"));
    assert!(gateway.is_running());
}

/// An upstream whose `/users/held` answers only once released:
/// `/users/ID` answers `v1`, `/v2/users/ID` `v2`, `/users/held` `held-v1`.
struct HeldUpstream {
    url: String,
    arrived: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

async fn held_upstream() -> HeldUpstream {
    use axum::extract::Path;
    use axum::routing::get;

    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (on_arrival, on_release) = (arrived.clone(), release.clone());
    let app = axum::Router::new()
        .route(
            "/users/{id}",
            get(move |Path(id): Path<String>| {
                let (arrived, release) = (on_arrival.clone(), on_release.clone());
                async move {
                    if id == "held" {
                        arrived.notify_one();
                        release.notified().await;
                        return axum::Json(json!({"name": "held-v1"}));
                    }
                    axum::Json(json!({"name": "v1"}))
                }
            }),
        )
        .route(
            "/v2/users/{id}",
            get(|| async { axum::Json(json!({"name": "v2"})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an upstream");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HeldUpstream {
        url,
        arrived,
        release,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_a_reload_finishes_on_the_old_config() {
    let upstream = held_upstream().await;
    let dir = config_dir(&reload_config(V1), RELOAD_SDL, &upstream.url);
    let gateway = Served::start(dir, "json", "info", &[]).await;
    for _ in 0..3 {
        assert_eq!(user_name(&gateway).await.as_deref(), Ok("v1"));
    }

    let client = gateway.client.clone();
    let held = tokio::spawn(async move { user_name_of(&client, "held").await });
    tokio::time::timeout(Duration::from_secs(30), upstream.arrived.notified())
        .await
        .expect("the held call reached the upstream");

    gateway.dir.write(
        "services.toml",
        &reload_config(V2).replace("{api}", &upstream.url),
    );
    gateway.hang_up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while user_name(&gateway).await.as_deref() != Ok("v2") {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(ms(50)).await;
    }
    assert!(!held.is_finished(), "the held request is still in flight");

    upstream.release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the held request finished")
        .expect("its task");
    assert_eq!(
        answer.as_deref(),
        Ok("held-v1"),
        "a request keeps the configuration it started with"
    );
}

// ---------------------------------------------------------------------------
// Debug waterfall
// ---------------------------------------------------------------------------

const WATERFALL: &str =
    r#"{ user(id: "1") { name } orders { id product { name } } cachedUser(id: "w1") { name } }"#;

/// `extensions.conflux.calls` by path template.
fn calls_by_path(body: &Value) -> BTreeMap<String, Value> {
    let calls = body["extensions"]["conflux"]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no extensions.conflux.calls: {body}"));
    let mut by_path = BTreeMap::new();
    for call in calls {
        let path = call["path"].as_str().expect("a path").to_owned();
        assert!(
            by_path.insert(path, call.clone()).is_none(),
            "two records for one call: {calls:?}"
        );
    }
    by_path
}

#[tokio::test]
async fn the_debug_header_returns_the_upstream_call_waterfall() {
    let api = shop_api().await;
    let gateway = in_process("[server]\ndebug = true", &api).await;
    let debug = [("conflux-debug", "1")];

    let first = gateway.post_with_headers(WATERFALL, &debug).await;
    let body = assert_ok(&first);
    let calls = calls_by_path(&body);
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        vec![
            "/cached/{args.id}",
            "/orders",
            "/products?ids={keys}",
            "/users/{args.id}"
        ],
        "each call, named by its template: {calls:?}"
    );
    let expected_services = [
        ("/cached/{args.id}", "users"),
        ("/orders", "orders"),
        ("/products?ids={keys}", "products"),
        ("/users/{args.id}", "users"),
    ];
    for (template, service) in expected_services {
        let call = &calls[template];
        assert_eq!(call["service"], service, "{call}");
        let start = call["start_ms"].as_f64().expect("start_ms");
        let duration = call["duration_ms"].as_f64().expect("duration_ms");
        assert!(start >= 0.0 && duration >= 0.0, "{call}");
        assert_eq!(call["cache_hit"], false, "{call}");
    }
    assert_eq!(calls["/products?ids={keys}"]["batch_size"], 3);
    assert!(calls["/orders"]["batch_size"].is_null());
    let orders = &calls["/orders"];
    let orders_end = orders["start_ms"].as_f64().unwrap_or_default()
        + orders["duration_ms"].as_f64().unwrap_or_default();
    assert!(
        calls["/products?ids={keys}"]["start_ms"]
            .as_f64()
            .unwrap_or_default()
            >= orders_end - 1e-6,
        "the batch starts once the orders are in: {calls:?}"
    );

    let second = gateway.post_with_headers(WATERFALL, &debug).await;
    let calls = calls_by_path(&assert_ok(&second));
    assert_eq!(
        calls["/cached/{args.id}"]["cache_hit"], true,
        "the second lookup is a hit: {calls:?}"
    );
    assert_eq!(calls["/users/{args.id}"]["cache_hit"], false);

    let plain = assert_ok(&gateway.post(WATERFALL).await);
    assert!(
        plain["extensions"]["conflux"]["calls"].is_null(),
        "no waterfall without the header: {plain}"
    );
}

#[tokio::test]
async fn with_debug_off_the_header_returns_no_waterfall() {
    let api = shop_api().await;
    let gateway = in_process("", &api).await;

    let reply = gateway
        .post_with_headers(WATERFALL, &[("conflux-debug", "1")])
        .await;
    let body = assert_ok(&reply);
    assert!(
        body["extensions"]["conflux"]["calls"].is_null(),
        "[server].debug is off: {body}"
    );
}

// ---- OTLP export ----------------------------------------------------------

#[tokio::test]
async fn spans_are_exported_over_otlp_and_name_the_upstream_call_as_its_parent() {
    let api = shop_api().await;
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let extra = format!("[telemetry]\notlp_endpoint = \"{}\"", collector.uri());
    let gateway = metrics_gateway(&extra, &api).await;

    let reply = gateway
        .post_with_headers(
            r#"{ user(id: "7") { name } }"#,
            &[("traceparent", &client_traceparent(CLIENT_SPAN))],
        )
        .await;
    assert_ok(&reply);

    // The upstream's parent span is the gateway's call span, in the client's trace.
    let sent = received(&api).await;
    let upstream = header(&sent[0], "traceparent").expect("traceparent upstream");
    let (_, trace_id, call_span, _) = traceparent_parts(&upstream);
    assert_eq!(trace_id, TRACE_ID);

    // The batch exporter sends within its schedule delay (5 s by default).
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace_bytes = hex_bytes(TRACE_ID);
    let span_bytes = hex_bytes(&call_span);
    loop {
        let exports = collector.received_requests().await.unwrap_or_default();
        let bodies: Vec<&[u8]> = exports.iter().map(|r| r.body.as_slice()).collect();
        let has = |needle: &[u8]| {
            bodies
                .iter()
                .any(|b| b.windows(needle.len()).any(|w| w == needle))
        };
        if has(&trace_bytes) && has(&span_bytes) && has(b"graphql.operation") {
            let content_type = header(&exports[0], "content-type").unwrap_or_default();
            assert_eq!(content_type, "application/x-protobuf");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no OTLP export with the trace and the call span"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}
