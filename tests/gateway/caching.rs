//! docs/CONFIG.md `[cache]`, a field's `cache_ttl_s` / `stale_if_error_s` and a
//! service's `coalesce`: upstream answers served from the response cache
//! (memory or a shared Redis), keyed by the whole upstream request as sent;
//! identical in-flight GETs from different clients sent once; a stale entry
//! standing in for a failed call, named in `extensions.conflux.stale`.
//!
//! Every test counts what the upstream received: the point of a cache is
//! the calls it saves, and the point of the key is the calls it must not.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{json, Value};
use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::client::preview;
use crate::support::redis::RedisServer;
use crate::support::*;

const PRODUCT_SDL: &str = r#"
type Query { product(id: ID!): Product }
type Product { id: ID!  name: String  viewer: String }
"#;

const PRODUCT_P1: &str = r#"{ product(id: "p1") { id name viewer } }"#;
const PRODUCT_P2: &str = r#"{ product(id: "p2") { id name viewer } }"#;

/// What the products service answers for `id` to a caller who sent
/// `authorization: viewer` (`anonymous` without one).
fn product(id: &str, viewer: &str) -> Value {
    json!({"id": id, "name": format!("Product {id}"), "viewer": viewer})
}

fn p1_for(viewer: &str) -> Value {
    json!({ "product": product("p1", viewer) })
}

/// Answers `GET /products/{id}` with [`product`], echoing the
/// `authorization` it received, with an optional `Cache-Control` and delay.
#[derive(Clone, Default)]
struct ProductById {
    cache_control: Option<&'static str>,
    delay: Duration,
}

impl Respond for ProductById {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        let viewer = header(request, "authorization").unwrap_or_else(|| "anonymous".to_owned());
        let mut reply = json_reply(product(id, &viewer)).set_delay(self.delay);
        if let Some(directives) = self.cache_control {
            reply = reply.insert_header("cache-control", directives);
        }
        reply
    }
}

async fn products_service(responder: ProductById) -> MockServer {
    let server = MockServer::start().await;
    mount_products(&server, responder).await;
    server
}

async fn mount_products(server: &MockServer, responder: ProductById) {
    Mock::given(method("GET"))
        .and(path_regex(r"^/products/[^/]+$"))
        .respond_with(responder)
        .mount(server)
        .await;
}

/// `tables` (top-level tables such as `[cache]`), then service `products`
/// with `service_keys`, then `Query.product` with `field_keys` appended to
/// its mapping (e.g. `cache_ttl_s = 30`).
fn product_config(tables: &str, service_keys: &str, field_keys: &str) -> String {
    let field_keys = if field_keys.is_empty() {
        String::new()
    } else {
        format!(", {field_keys}")
    };
    format!(
        r#"
{tables}

[services.products]
url = "{{products}}"
retries = 0
{service_keys}

[resolvers]
"Query.product" = {{ service = "products", get = "/products/{{args.id}}"{field_keys} }}
"#
    )
}

async fn product_gateway(
    products: &MockServer,
    tables: &str,
    service_keys: &str,
    field_keys: &str,
) -> TestGateway {
    TestGateway::builder()
        .schema(PRODUCT_SDL)
        .config(&product_config(tables, service_keys, field_keys))
        .upstream("products", products)
        .start()
        .await
}

async fn calls(server: &MockServer) -> usize {
    received(server).await.len()
}

/// Asserts a 200 without errors and returns `data`.
fn clean_data(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "body: {}", preview(&reply.text));
    let body = reply.json();
    assert!(
        body.get("errors").is_none(),
        "unexpected errors: {}",
        preview(&reply.text)
    );
    body["data"].clone()
}

fn stale_paths(body: &Value) -> &Value {
    &body["extensions"]["conflux"]["stale"]
}

// ---------------------------------------------------------------------------
// cache_ttl_s
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_second_identical_query_within_cache_ttl_makes_no_upstream_call() {
    let products = products_service(ProductById::default()).await;
    let gateway = product_gateway(&products, "", "", "cache_ttl_s = 30").await;

    let first = gateway.post(PRODUCT_P1).await;
    assert_eq!(clean_data(&first), p1_for("anonymous"));
    assert_eq!(calls(&products).await, 1);

    let second = gateway.post(PRODUCT_P1).await;
    assert_eq!(second.json(), first.json(), "the cached answer differs");
    assert_eq!(
        calls(&products).await,
        1,
        "the second identical query went upstream"
    );

    // Another argument is another upstream request: its own entry.
    let other = gateway.post(PRODUCT_P2).await;
    assert_eq!(
        clean_data(&other),
        json!({"product": product("p2", "anonymous")})
    );
    assert_eq!(calls(&products).await, 2);
    gateway.post(PRODUCT_P2).await;
    gateway.post(PRODUCT_P1).await;
    assert_eq!(calls(&products).await, 2);
}

#[tokio::test]
async fn without_cache_ttl_every_query_calls_the_upstream() {
    let products = products_service(ProductById::default()).await;
    let gateway = product_gateway(&products, "", "", "").await;

    let first = gateway.post(PRODUCT_P1).await;
    let second = gateway.post(PRODUCT_P1).await;

    assert_eq!(clean_data(&first), p1_for("anonymous"));
    assert_eq!(clean_data(&second), p1_for("anonymous"));
    assert_eq!(calls(&products).await, 2, "an uncached field was cached");
}

#[tokio::test]
async fn each_forwarded_authorization_gets_its_own_cache_entry() {
    let products = products_service(ProductById::default()).await;
    let gateway = product_gateway(
        &products,
        "",
        r#"forward_headers = ["authorization"]"#,
        "cache_ttl_s = 30",
    )
    .await;
    let users = ["Basic YWxpY2U6c2VjcmV0", "Basic Ym9iOmh1bnRlcjI="];

    for round in 0..2 {
        for user in users {
            let reply = gateway
                .post_with_headers(PRODUCT_P1, &[("authorization", user)])
                .await;
            assert_eq!(
                clean_data(&reply),
                p1_for(user),
                "round {round}: {user} got someone else's answer"
            );
        }
        // A caller without the header is a third identity, never served
        // a user's entry.
        assert_eq!(
            clean_data(&gateway.post(PRODUCT_P1).await),
            p1_for("anonymous"),
            "round {round}: an anonymous caller got a user's answer"
        );
    }

    let requests = received(&products).await;
    assert_eq!(
        requests.len(),
        3,
        "one call per identity: {:?}",
        request_lines(&requests)
    );
    for user in users {
        let theirs = requests
            .iter()
            .filter(|r| header(r, "authorization").as_deref() == Some(user))
            .count();
        assert_eq!(theirs, 1, "calls carrying `{user}`");
    }
}

#[tokio::test]
async fn per_request_trace_headers_do_not_split_cache_entries() {
    // docs/CONFIG.md: the key is every header but `traceparent`, `tracestate` and
    // `x-request-id`, which differ on every request.
    let products = products_service(ProductById::default()).await;
    let gateway = product_gateway(
        &products,
        "",
        r#"forward_headers = ["traceparent", "tracestate", "x-request-id"]"#,
        "cache_ttl_s = 30",
    )
    .await;

    for i in 0..3 {
        let traceparent = format!("00-{:032x}-{:016x}-01", i + 1, i + 1);
        let request_id = format!("req-{i}");
        let state = format!("vendor={i}");
        let reply = gateway
            .post_with_headers(
                PRODUCT_P1,
                &[
                    ("traceparent", &traceparent),
                    ("tracestate", &state),
                    ("x-request-id", &request_id),
                ],
            )
            .await;
        assert_eq!(clean_data(&reply), p1_for("anonymous"));
    }
    let requests = received(&products).await;
    assert_eq!(requests.len(), 1, "{:?}", request_lines(&requests));
    assert_eq!(
        header(&requests[0], "x-request-id").as_deref(),
        Some("req-0"),
        "the header was not forwarded, so this test proves nothing"
    );
}

#[tokio::test]
async fn upstream_no_store_and_private_answers_are_never_cached() {
    for directives in [
        "no-store",
        "private",
        "private, max-age=60",
        "no-store, max-age=60",
    ] {
        let products = products_service(ProductById {
            cache_control: Some(directives),
            ..ProductById::default()
        })
        .await;
        let gateway = product_gateway(&products, "", "", "cache_ttl_s = 30").await;

        for _ in 0..3 {
            let reply = gateway.post(PRODUCT_P1).await;
            assert_eq!(clean_data(&reply), p1_for("anonymous"));
        }
        assert_eq!(
            calls(&products).await,
            3,
            "`Cache-Control: {directives}` was cached"
        );
    }
}

#[tokio::test]
async fn a_shorter_upstream_max_age_wins_over_cache_ttl() {
    let products = products_service(ProductById {
        cache_control: Some("public, max-age=1"),
        ..ProductById::default()
    })
    .await;
    let gateway = product_gateway(&products, "", "", "cache_ttl_s = 30").await;

    let started = Instant::now();
    assert_eq!(
        clean_data(&gateway.post(PRODUCT_P1).await),
        p1_for("anonymous")
    );
    assert_eq!(
        clean_data(&gateway.post(PRODUCT_P1).await),
        p1_for("anonymous")
    );
    assert_eq!(
        calls(&products).await,
        1,
        "an answer with max-age=1 was not cached at all"
    );

    // Poll until the entry expires: after max-age (1 s), long before
    // cache_ttl_s (30 s).
    let deadline = started + Duration::from_secs(6);
    loop {
        let reply = gateway.post(PRODUCT_P1).await;
        assert_eq!(clean_data(&reply), p1_for("anonymous"));
        if calls(&products).await >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {:?} the entry is still served: max-age=1 did not shorten cache_ttl_s = 30",
            started.elapsed()
        );
        tokio::time::sleep(ms(50)).await;
    }
    let refetched_after = started.elapsed();
    assert!(
        refetched_after >= ms(900),
        "the entry was dropped after {refetched_after:?}, before max-age=1 ran out"
    );
    assert_eq!(calls(&products).await, 2);
}

// ---------------------------------------------------------------------------
// Batched fields cache per key
// ---------------------------------------------------------------------------

const ORDERS_SDL: &str = r#"
type Query { orders(set: String!): [Order!]! }
type Order { id: ID!  product: Product }
type Product { id: ID!  name: String  viewer: String }
"#;

const ORDERS_CONFIG: &str = r#"
[services.orders]
url = "{orders}"

[services.products]
url = "{products}"
retries = 0

[resolvers]
"Query.orders" = { service = "orders", get = "/orders/{args.set}" }
"Order.product" = { service = "products", get = "/products/{parent.productId}", batch = { key = "{parent.productId}", get = "/products?ids={keys}", match = "id" }, cache_ttl_s = 30 }
"#;

/// Answers `GET /products?ids=a,b` with one product per id, in the order
/// asked, echoing the `authorization` it received as `viewer`.
struct ProductsByIds;

impl Respond for ProductsByIds {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let viewer = header(request, "authorization").unwrap_or_else(|| "anonymous".to_owned());
        let items: Vec<Value> = batch_ids(request)
            .iter()
            .map(|id| json!({"id": id, "name": format!("Product {id}"), "viewer": viewer}))
            .collect();
        json_reply(Value::Array(items))
    }
}

/// The ids of one batched call, as asked.
fn batch_ids(request: &Request) -> Vec<String> {
    query_pairs(request)
        .into_iter()
        .find(|(name, _)| name == "ids")
        .map(|(_, ids)| ids.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn sorted_ids(request: &Request) -> Vec<String> {
    let mut ids = batch_ids(request);
    ids.sort();
    ids
}

#[tokio::test]
async fn a_batch_after_a_partial_cache_hit_asks_only_for_the_missing_keys() {
    let orders = MockServer::start().await;
    let sets = [
        ("first", vec!["p1", "p2"]),
        ("second", vec!["p1", "p2", "p3"]),
        ("third", vec!["p3", "p1", "p2", "p1"]),
    ];
    for (set, product_ids) in &sets {
        let list: Vec<Value> = product_ids
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"id": format!("{set}-{i}"), "productId": p}))
            .collect();
        serve(
            &orders,
            "GET",
            &format!("/orders/{set}"),
            json_reply(Value::Array(list)),
        )
        .await;
    }
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(ProductsByIds)
        .mount(&products)
        .await;
    let gateway = TestGateway::builder()
        .schema(ORDERS_SDL)
        .config(ORDERS_CONFIG)
        .upstream("orders", &orders)
        .upstream("products", &products)
        .start()
        .await;

    let mut expected_calls = Vec::new();
    for ((set, product_ids), new_keys) in sets.iter().zip([vec!["p1", "p2"], vec!["p3"], vec![]]) {
        let reply = gateway
            .post(&format!(
                r#"{{ orders(set: "{set}") {{ id product {{ id name }} }} }}"#
            ))
            .await;
        let expected: Vec<Value> = product_ids
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "id": format!("{set}-{i}"),
                    "product": {"id": p, "name": format!("Product {p}")}
                })
            })
            .collect();
        assert_eq!(
            clean_data(&reply),
            json!({ "orders": expected }),
            "query over set `{set}`"
        );
        if !new_keys.is_empty() {
            expected_calls.push(new_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        }
        let requests = received(&products).await;
        let asked: Vec<Vec<String>> = requests.iter().map(sorted_ids).collect();
        assert_eq!(
            asked,
            expected_calls,
            "after the query over set `{set}`, the batched calls were {:?}",
            request_lines(&requests)
        );
    }
}

#[tokio::test]
async fn per_key_batch_entries_are_per_user_when_the_call_forwards_who_it_is() {
    let orders = MockServer::start().await;
    serve(
        &orders,
        "GET",
        "/orders/first",
        json_reply(json!([
            {"id": "o1", "productId": "p1"},
            {"id": "o2", "productId": "p2"}
        ])),
    )
    .await;
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(ProductsByIds)
        .mount(&products)
        .await;
    let gateway = TestGateway::builder()
        .schema(ORDERS_SDL)
        .config(&ORDERS_CONFIG.replace(
            "retries = 0",
            "retries = 0\nforward_headers = [\"authorization\"]",
        ))
        .upstream("orders", &orders)
        .upstream("products", &products)
        .start()
        .await;
    let query = r#"{ orders(set: "first") { product { id viewer } } }"#;
    let users = ["Basic YWxpY2U6c2VjcmV0", "Basic Ym9iOmh1bnRlcjI="];

    for round in 0..2 {
        for user in users {
            let reply = gateway
                .post_with_headers(query, &[("authorization", user)])
                .await;
            assert_eq!(
                clean_data(&reply),
                json!({"orders": [
                    {"product": {"id": "p1", "viewer": user}},
                    {"product": {"id": "p2", "viewer": user}}
                ]}),
                "round {round}: {user} got another user's cached items"
            );
        }
    }
    let requests = received(&products).await;
    assert_eq!(
        requests
            .iter()
            .map(|r| header(r, "authorization").unwrap_or_default())
            .collect::<Vec<_>>(),
        users,
        "one batched call per user, then hits: {:?}",
        request_lines(&requests)
    );
}

// ---------------------------------------------------------------------------
// Coalescing across clients
// ---------------------------------------------------------------------------

fn slow_products() -> ProductById {
    ProductById {
        delay: ms(200),
        ..ProductById::default()
    }
}

#[tokio::test]
async fn fifty_concurrent_identical_queries_make_one_upstream_call() {
    // Uncached (coalescing alone), and cached (50 misses at once).
    for field_keys in ["", "cache_ttl_s = 30"] {
        let products = products_service(slow_products()).await;
        let gateway = product_gateway(&products, "", "", field_keys).await;

        let replies = join_all((0..50).map(|_| gateway.post(PRODUCT_P1))).await;

        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(
                clean_data(reply),
                p1_for("anonymous"),
                "client {i}, field `{field_keys}`"
            );
        }
        assert_eq!(
            calls(&products).await,
            1,
            "50 identical in-flight GETs were not coalesced (field `{field_keys}`)"
        );
    }
}

#[tokio::test]
async fn with_coalesce_off_every_concurrent_query_calls_the_upstream() {
    let products = products_service(slow_products()).await;
    let gateway = product_gateway(&products, "", "coalesce = false", "").await;

    let replies = join_all((0..50).map(|_| gateway.post(PRODUCT_P1))).await;

    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(clean_data(reply), p1_for("anonymous"), "client {i}");
    }
    assert_eq!(calls(&products).await, 50);
}

#[tokio::test]
async fn concurrent_queries_differing_in_a_forwarded_header_are_not_merged() {
    let products = products_service(slow_products()).await;
    let gateway =
        product_gateway(&products, "", r#"forward_headers = ["authorization"]"#, "").await;
    let users = ["Basic YWxpY2U6c2VjcmV0", "Basic Ym9iOmh1bnRlcjI="];

    let gateway = &gateway;
    let replies = join_all((0..50).map(|i| {
        let user = users[i % 2];
        async move {
            let reply = gateway
                .post_with_headers(PRODUCT_P1, &[("authorization", user)])
                .await;
            (user, reply)
        }
    }))
    .await;

    for (i, (user, reply)) in replies.iter().enumerate() {
        assert_eq!(
            clean_data(reply),
            p1_for(user),
            "client {i} ({user}) got another user's answer"
        );
    }
    let requests = received(&products).await;
    assert_eq!(
        requests.len(),
        2,
        "expected one call per user, got {:?}",
        requests
            .iter()
            .map(|r| header(r, "authorization"))
            .collect::<Vec<_>>()
    );
    for user in users {
        assert!(
            requests
                .iter()
                .any(|r| header(r, "authorization").as_deref() == Some(user)),
            "no call carried `{user}`"
        );
    }
}

// ---------------------------------------------------------------------------
// stale_if_error_s
// ---------------------------------------------------------------------------

/// Makes every request to `server` fail with `failure` from now on.
async fn break_upstream(server: &MockServer, failure: ResponseTemplate) {
    server.reset().await;
    Mock::given(any()).respond_with(failure).mount(server).await;
}

/// Queries `PRODUCT_P1` every 100 ms until `done` says the answer is the
/// one awaited (after the 1 s entry expired), checking `each` on every
/// answer on the way. Returns that answer's body and the time it took
/// since `started`.
async fn poll_until(
    gateway: &TestGateway,
    started: Instant,
    what: &str,
    mut each: impl FnMut(&Reply, &Value),
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let deadline = started + Duration::from_secs(8);
    loop {
        let reply = gateway.post(PRODUCT_P1).await;
        let body = reply.json();
        each(&reply, &body);
        if done(&body) {
            return (body, started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "after {:?}, still no {what}; last answer: {}",
            started.elapsed(),
            preview(&reply.text)
        );
        tokio::time::sleep(ms(100)).await;
    }
}

#[tokio::test]
async fn stale_if_error_serves_the_stale_value_marked_when_the_upstream_fails() {
    let products = products_service(ProductById::default()).await;
    let gateway =
        product_gateway(&products, "", "", "cache_ttl_s = 1, stale_if_error_s = 60").await;

    let started = Instant::now();
    let first = gateway.post(PRODUCT_P1).await;
    assert_eq!(clean_data(&first), p1_for("anonymous"));
    assert!(
        stale_paths(&first.json()).is_null(),
        "a fresh answer is marked stale: {}",
        first.text
    );
    break_upstream(
        &products,
        ResponseTemplate::new(500).set_body_string("down"),
    )
    .await;

    // Fresh for 1 s (served from the cache, unmarked), then the call fails
    // and the stale value stands in: every answer is the cached value,
    // without an error.
    let (body, after) = poll_until(
        &gateway,
        started,
        "answer marked stale",
        |reply, _| {
            assert_eq!(clean_data(reply), p1_for("anonymous"));
        },
        |body| !stale_paths(body).is_null(),
    )
    .await;

    assert_eq!(stale_paths(&body), &json!([["product"]]), "body: {body}");
    assert!(
        after >= ms(900),
        "marked stale after {after:?}, before cache_ttl_s = 1 ran out"
    );
    assert!(
        calls(&products).await >= 1,
        "served stale without trying the upstream"
    );
}

#[tokio::test]
async fn stale_if_error_also_stands_in_for_a_timed_out_call() {
    let products = products_service(ProductById::default()).await;
    let gateway = product_gateway(
        &products,
        "",
        "timeout_ms = 300",
        "cache_ttl_s = 1, stale_if_error_s = 60",
    )
    .await;

    let started = Instant::now();
    assert_eq!(
        clean_data(&gateway.post(PRODUCT_P1).await),
        p1_for("anonymous")
    );
    break_upstream(
        &products,
        json_reply(product("p1", "too late")).set_delay(ms(3000)),
    )
    .await;

    let (body, _) = poll_until(
        &gateway,
        started,
        "answer marked stale",
        |reply, _| {
            assert_eq!(clean_data(reply), p1_for("anonymous"));
        },
        |body| !stale_paths(body).is_null(),
    )
    .await;
    assert_eq!(stale_paths(&body), &json!([["product"]]), "body: {body}");
}

#[tokio::test]
async fn without_stale_if_error_a_failed_call_after_expiry_is_an_upstream_error() {
    let products = products_service(ProductById::default()).await;
    let gateway = product_gateway(&products, "", "", "cache_ttl_s = 1").await;

    let started = Instant::now();
    assert_eq!(
        clean_data(&gateway.post(PRODUCT_P1).await),
        p1_for("anonymous")
    );
    break_upstream(
        &products,
        ResponseTemplate::new(500).set_body_string("down"),
    )
    .await;

    let (body, after) = poll_until(
        &gateway,
        started,
        "UPSTREAM_ERROR",
        |reply, body| {
            assert_eq!(reply.status, 200, "body: {}", preview(&reply.text));
            if body.get("errors").is_none() {
                // Still within cache_ttl_s.
                assert_eq!(body["data"], p1_for("anonymous"));
            }
        },
        |body| body.get("errors").is_some(),
    )
    .await;

    assert_eq!(error_codes(&body), ["UPSTREAM_ERROR"], "body: {body}");
    assert_eq!(body["errors"][0]["path"], json!(["product"]));
    assert_eq!(body["data"], json!({"product": null}));
    assert!(
        stale_paths(&body).is_null(),
        "stale marker without stale_if_error_s: {body}"
    );
    assert!(
        after >= ms(900),
        "the entry failed after {after:?}, before cache_ttl_s = 1 ran out"
    );
}

#[tokio::test]
async fn stale_if_error_also_covers_a_batched_field() {
    let orders = MockServer::start().await;
    serve(
        &orders,
        "GET",
        "/orders/first",
        json_reply(json!([
            {"id": "o1", "productId": "p1"},
            {"id": "o2", "productId": "p2"}
        ])),
    )
    .await;
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(ProductsByIds)
        .mount(&products)
        .await;
    let gateway = TestGateway::builder()
        .schema(ORDERS_SDL)
        .config(
            &ORDERS_CONFIG.replace("cache_ttl_s = 30", "cache_ttl_s = 1, stale_if_error_s = 60"),
        )
        .upstream("orders", &orders)
        .upstream("products", &products)
        .start()
        .await;
    let query = r#"{ orders(set: "first") { id product { id name } } }"#;
    let expected = json!({"orders": [
        {"id": "o1", "product": {"id": "p1", "name": "Product p1"}},
        {"id": "o2", "product": {"id": "p2", "name": "Product p2"}}
    ]});

    let started = Instant::now();
    assert_eq!(clean_data(&gateway.post(query).await), expected);
    break_upstream(
        &products,
        ResponseTemplate::new(500).set_body_string("down"),
    )
    .await;

    let deadline = started + Duration::from_secs(8);
    let body = loop {
        let reply = gateway.post(query).await;
        let body = reply.json();
        assert!(
            body.get("errors").is_none(),
            "after {:?}, the failed batch was not covered by the stale entries: {}",
            started.elapsed(),
            preview(&reply.text)
        );
        assert_eq!(body["data"], expected);
        if !stale_paths(&body).is_null() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "after {:?}, no answer marked stale",
            started.elapsed()
        );
        tokio::time::sleep(ms(100)).await;
    };
    let mut paths: Vec<String> = stale_paths(&body)
        .as_array()
        .unwrap_or_else(|| panic!("extensions.conflux.stale is not a list: {body}"))
        .iter()
        .map(Value::to_string)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [r#"["orders",0,"product"]"#, r#"["orders",1,"product"]"#],
        "body: {body}"
    );
}

// ---------------------------------------------------------------------------
// [cache] backend = "redis": a fleet shares one cache
// ---------------------------------------------------------------------------

fn redis_cache(url: &str) -> String {
    format!("[cache]\nbackend = \"redis\"\nredis_url = \"{url}\"")
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_entries_and_keep_serving_when_it_dies() {
    let mut redis = RedisServer::start();
    let products = products_service(ProductById::default()).await;
    let tables = redis_cache(&redis.url());
    let a = product_gateway(&products, &tables, "", "cache_ttl_s = 30").await;
    let b = product_gateway(&products, &tables, "", "cache_ttl_s = 30").await;

    assert_eq!(clean_data(&a.post(PRODUCT_P1).await), p1_for("anonymous"));
    assert_eq!(calls(&products).await, 1);
    assert_eq!(clean_data(&b.post(PRODUCT_P1).await), p1_for("anonymous"));
    assert_eq!(clean_data(&a.post(PRODUCT_P1).await), p1_for("anonymous"));
    assert_eq!(
        calls(&products).await,
        1,
        "the entry cached through A was not a hit through B"
    );

    // Clients keep asking both instances while Redis dies under them.
    let traffic = async {
        let mut replies = Vec::new();
        for round in 0..16 {
            for (name, gateway) in [("A", &a), ("B", &b)] {
                replies.push((name, round, gateway.post(PRODUCT_P1).await));
            }
            tokio::time::sleep(ms(25)).await;
        }
        replies
    };
    let kill = async {
        tokio::time::sleep(ms(150)).await;
        redis.kill();
    };
    let (replies, ()) = tokio::join!(traffic, kill);
    assert!(!redis.answers_ping(), "redis-server is still answering");
    for (name, round, reply) in &replies {
        assert_eq!(reply.status, 200, "gateway {name}, round {round}");
        assert_eq!(
            clean_data(reply),
            p1_for("anonymous"),
            "gateway {name}, round {round}"
        );
    }

    // Without Redis, nothing is cached: every query goes upstream.
    let before = calls(&products).await;
    assert!(before > 1, "no call went upstream after Redis died");
    for round in 0..3 {
        for (name, gateway) in [("A", &a), ("B", &b)] {
            let reply = gateway.post(PRODUCT_P1).await;
            assert_eq!(
                clean_data(&reply),
                p1_for("anonymous"),
                "gateway {name}, query {round} after Redis died"
            );
        }
    }
    assert_eq!(calls(&products).await, before + 6);
}

#[tokio::test]
async fn a_gateway_whose_cache_redis_is_unreachable_from_the_start_serves() {
    let products = products_service(ProductById::default()).await;
    let nowhere = closed_port_url().replace("http://", "redis://");
    let gateway = product_gateway(&products, &redis_cache(&nowhere), "", "cache_ttl_s = 30").await;

    for _ in 0..3 {
        assert_eq!(
            clean_data(&gateway.post(PRODUCT_P1).await),
            p1_for("anonymous")
        );
    }
    assert_eq!(calls(&products).await, 3);
}

#[test]
fn check_and_print_schema_accept_a_redis_cache_config_without_reaching_redis() {
    // docs/CLI.md: `check` validates without serving (exit 0 when valid); the
    // Redis of `[cache]` is a runtime dependency, not something to reach or
    // need a runtime for at check time.
    let nowhere = closed_port_url().replace("http://", "redis://");
    let toml = product_config(&redis_cache(&nowhere), "", "cache_ttl_s = 30")
        .replace("{products}", "http://127.0.0.1:9");
    let files = [("schema/schema.graphql", PRODUCT_SDL)];
    for command in ["check", "print-schema"] {
        let run = run_binary(&[command], &toml, &files);
        assert_eq!(
            run.code,
            Some(0),
            "`conflux {command}` on a valid config with `[cache] backend = \"redis\"`; stderr:\n{}",
            preview(&run.stderr)
        );
    }
}

/// A `redis-server` started again on the port of one that was killed;
/// killed on drop.
struct RespawnedRedis(std::process::Child);

impl RespawnedRedis {
    fn on(port: u16) -> RespawnedRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(std::env::temp_dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `redis-server` again: {err}"));
        RespawnedRedis(child)
    }
}

impl Drop for RespawnedRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn gateways_pick_their_redis_cache_up_again_when_it_comes_back() {
    let mut redis = RedisServer::start();
    let products = products_service(ProductById::default()).await;
    let tables = redis_cache(&redis.url());
    let a = product_gateway(&products, &tables, "", "cache_ttl_s = 30").await;
    let b = product_gateway(&products, &tables, "", "cache_ttl_s = 30").await;
    assert_eq!(clean_data(&a.post(PRODUCT_P1).await), p1_for("anonymous"));

    redis.kill();
    assert_eq!(clean_data(&a.post(PRODUCT_P1).await), p1_for("anonymous"));
    assert_eq!(clean_data(&b.post(PRODUCT_P1).await), p1_for("anonymous"));
    assert_eq!(calls(&products).await, 3, "served from a dead Redis");

    // Redis is back (empty): without a restart of either gateway, an
    // answer stored through A becomes a hit through B again.
    let _again = RespawnedRedis::on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !redis.answers_ping() {
        assert!(Instant::now() < deadline, "redis-server did not come back");
        tokio::time::sleep(ms(20)).await;
    }
    loop {
        let before = calls(&products).await;
        assert_eq!(clean_data(&a.post(PRODUCT_P1).await), p1_for("anonymous"));
        assert_eq!(clean_data(&b.post(PRODUCT_P1).await), p1_for("anonymous"));
        if calls(&products).await - before < 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "15 s after Redis came back, the gateways still do not share entries"
        );
        tokio::time::sleep(ms(200)).await;
    }
    let before = calls(&products).await;
    for gateway in [&a, &b, &a, &b] {
        assert_eq!(
            clean_data(&gateway.post(PRODUCT_P1).await),
            p1_for("anonymous")
        );
    }
    assert_eq!(
        calls(&products).await,
        before,
        "the entry is not served from Redis again"
    );
}
