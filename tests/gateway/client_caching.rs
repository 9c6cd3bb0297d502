//! docs/CACHING.md, caching for clients: the `Cache-Control` of every
//! answer, `stale_while_revalidate_s`, a mutation's `invalidates` (in
//! memory and in a shared Redis), `forward_response_headers`, and
//! automatic persisted queries shared through Redis.
//!
//! Every test runs the real gateway against wiremock upstreams and, where
//! a fleet is the point, a real `redis-server`; promises about calls count
//! what the upstream received.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::client::preview;
use crate::support::redis::RedisServer;
use crate::support::*;

const SDL: &str = r#"
type Query {
  product(id: ID!): Product
  price(id: ID!): Price
  me: Profile
  hello: String
}
type Mutation {
  renameProduct(id: ID!, name: String!): Product
}
type Product { id: ID!  name: String  version: Int }
type Price { id: ID!  amount: Int }
type Profile { id: ID!  name: String }
"#;

const PRODUCT_P1: &str = r#"{ product(id: "p1") { id name version } }"#;
const PRODUCT_P2: &str = r#"{ product(id: "p2") { id name version } }"#;
const SECRET: &str = "client-caching-test-secret";

/// Answers `GET /products/{id}` with a version counting its calls (every
/// call after the first one after `later_delay`), with `cache_control` when
/// given.
#[derive(Clone, Default)]
struct Products {
    calls: Arc<AtomicUsize>,
    later_delay: Duration,
    cache_control: Option<&'static str>,
}

impl Respond for Products {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let version = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        let delay = if version == 1 {
            Duration::ZERO
        } else {
            self.later_delay
        };
        let mut reply =
            json_reply(json!({"id": id, "name": format!("Product {id}"), "version": version}))
                .set_delay(delay);
        if let Some(directives) = self.cache_control {
            reply = reply.insert_header("cache-control", directives);
        }
        reply
    }
}

async fn products_service(products: Products) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/products/[^/]+$"))
        .respond_with(products)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/prices/[^/]+$"))
        .respond_with(json_reply(json!({"id": "p1", "amount": 5})))
        .mount(&server)
        .await;
    server
}

/// A gateway over service `products` (`service_keys` added to it) with
/// `Query.product` carrying `product_keys`, `Query.price` carrying
/// `price_keys`, and `tables` on top.
async fn gateway(
    products: &MockServer,
    tables: &str,
    service_keys: &str,
    product_keys: &str,
    price_keys: &str,
) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config(tables, service_keys, product_keys, price_keys))
        .upstream("products", products)
        .start()
        .await
}

fn config(tables: &str, service_keys: &str, product_keys: &str, price_keys: &str) -> String {
    format!(
        r#"
{tables}

[services.products]
url = "{{products}}"
retries = 0
{service_keys}

[resolvers]
"Query.product" = {{ service = "products", get = "/products/{{args.id}}"{product_keys} }}
"Query.price" = {{ service = "products", get = "/prices/{{args.id}}"{price_keys} }}
"Query.me" = {{ service = "products", get = "/products/me" }}
"Query.hello" = {{ from = "nothing" }}
"Mutation.renameProduct" = {{ service = "products", post = "/products/{{args.id}}/name", body = {{ name = "{{args.name}}" }}, invalidates = [{{ service = "products", get = "/products/{{args.id}}" }}] }}
"#
    )
}

fn cache_control(reply: &Reply) -> String {
    reply
        .header("cache-control")
        .unwrap_or_else(|| panic!("no Cache-Control; body: {}", preview(&reply.text)))
}

fn data(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "body: {}", preview(&reply.text));
    let body = reply.json();
    assert!(
        body.get("errors").is_none(),
        "errors: {}",
        preview(&reply.text)
    );
    body["data"].clone()
}

/// `public, max-age=N` or `private, max-age=N`: the scope and N.
fn max_age(value: &str) -> (String, u64) {
    let (scope, age) = value
        .split_once(", max-age=")
        .unwrap_or_else(|| panic!("not `SCOPE, max-age=N`: {value}"));
    (
        scope.to_owned(),
        age.parse().expect("a whole number of seconds"),
    )
}

async fn calls(server: &MockServer) -> usize {
    received(server).await.len()
}

// ---------------------------------------------------------------------------
// Cache-Control
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_cached_query_says_public_and_its_remaining_lifetime() {
    let products = products_service(Products::default()).await;
    let gateway = gateway(&products, "", "", ", cache_ttl_s = 30", "").await;

    let first = gateway.post(PRODUCT_P1).await;
    data(&first);
    assert_eq!(cache_control(&first), "public, max-age=30");

    // Answered from the cache: what is left of the entry, rounded down.
    tokio::time::sleep(ms(1100)).await;
    let second = gateway.post(PRODUCT_P1).await;
    data(&second);
    assert_eq!(calls(&products).await, 1, "the second query was not a hit");
    let (scope, age) = max_age(&cache_control(&second));
    assert_eq!(scope, "public");
    assert!(
        (27..=28).contains(&age),
        "a 30 s entry 1.1 s old (and less than 3 s) has 27 or 28 whole seconds left, not {age}"
    );

    // GET answers the same way.
    let over_get = gateway.get(&encode_params(&[("query", PRODUCT_P2)])).await;
    data(&over_get);
    assert_eq!(cache_control(&over_get), "public, max-age=30");
}

#[tokio::test]
async fn the_smallest_lifetime_among_the_calls_wins_and_an_upstream_max_age_below_the_ttl() {
    let products = products_service(Products {
        cache_control: Some("max-age=5"),
        ..Products::default()
    })
    .await;
    let gateway = gateway(
        &products,
        "",
        "",
        ", cache_ttl_s = 30",
        ", cache_ttl_s = 10",
    )
    .await;

    let price_only = gateway.post(r#"{ price(id: "p1") { amount } }"#).await;
    data(&price_only);
    assert_eq!(cache_control(&price_only), "public, max-age=10");

    // The products upstream says `max-age=5`: smaller than both TTLs.
    let both = gateway
        .post(r#"{ product(id: "p1") { id } price(id: "p1") { amount } }"#)
        .await;
    data(&both);
    assert_eq!(cache_control(&both), "public, max-age=5");
}

#[tokio::test]
async fn a_call_carrying_who_the_user_is_makes_the_answer_private() {
    let products = products_service(Products::default()).await;
    let tables = format!("[auth]\nsecret = \"{SECRET}\"");
    let gateway = gateway(
        &products,
        &tables,
        r#"forward_headers = ["authorization"]"#,
        ", cache_ttl_s = 30",
        "",
    )
    .await;
    let token = encode(
        &Header::default(),
        &json!({"sub": "alice", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let bearer = format!("Bearer {token}");

    let signed_in = gateway
        .post_with_headers(PRODUCT_P1, &[("authorization", &bearer)])
        .await;
    data(&signed_in);
    assert_eq!(cache_control(&signed_in), "private, max-age=30");

    // The same query without a token forwards nothing of a user.
    let anonymous = gateway.post(PRODUCT_P1).await;
    data(&anonymous);
    assert_eq!(cache_control(&anonymous), "public, max-age=30");
}

#[tokio::test]
async fn a_claims_header_makes_the_answer_private() {
    let products = products_service(Products::default()).await;
    let tables = format!("[auth]\nsecret = \"{SECRET}\"");
    let gateway = gateway(
        &products,
        &tables,
        r#"claims_headers = { "x-user-id" = "sub" }"#,
        ", cache_ttl_s = 30",
        "",
    )
    .await;
    let token = encode(
        &Header::default(),
        &json!({"sub": "alice", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");

    let reply = gateway
        .post_with_headers(PRODUCT_P1, &[("authorization", &format!("Bearer {token}"))])
        .await;
    data(&reply);
    assert_eq!(cache_control(&reply), "private, max-age=30");
}

#[tokio::test]
async fn no_store_for_an_uncached_call_no_call_errors_mutations_batches_and_refusals() {
    let products = products_service(Products::default()).await;
    Mock::given(method("POST"))
        .and(path("/products/p1/name"))
        .respond_with(json_reply(json!({"id": "p1", "name": "New"})))
        .mount(&products)
        .await;
    let gateway = gateway(&products, "", "", ", cache_ttl_s = 30", "").await;

    // `Query.price` has no cache_ttl_s.
    let uncached = gateway
        .post(r#"{ product(id: "p1") { id } price(id: "p1") { amount } }"#)
        .await;
    data(&uncached);
    assert_eq!(cache_control(&uncached), "no-store", "a call without TTL");

    let no_call = gateway.post("{ hello __typename }").await;
    data(&no_call);
    assert_eq!(cache_control(&no_call), "no-store", "no call at all");

    let with_error = gateway.post(r#"{ product(id: "p1") { id } nope }"#).await;
    assert_eq!(cache_control(&with_error), "no-store", "a validation error");
    assert_ne!(with_error.status, 500);

    let mutation = gateway
        .post(r#"mutation { renameProduct(id: "p1", name: "New") { id name } }"#)
        .await;
    data(&mutation);
    assert_eq!(cache_control(&mutation), "no-store", "a mutation");

    let batch = gateway
        .post_json(json!([{"query": PRODUCT_P1}, {"query": PRODUCT_P2}]))
        .await;
    assert_eq!(batch.status, 200);
    assert_eq!(cache_control(&batch), "no-store", "a batch");

    let refused = gateway
        .post_with_headers(
            "{ product(id: ",
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(cache_control(&refused), "no-store", "a 400");

    let not_allowed = gateway
        .get(&encode_params(&[(
            "query",
            r#"mutation { renameProduct(id: "p1", name: "x") { id } }"#,
        )]))
        .await;
    assert_eq!(not_allowed.status, 405);
    assert_eq!(cache_control(&not_allowed), "no-store", "a 405");
}

#[tokio::test]
async fn a_field_error_from_an_upstream_makes_the_answer_no_store() {
    let products = MockServer::start().await;
    serve(&products, "GET", "/prices/p1", ResponseTemplate::new(500)).await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/products/[^/]+$"))
        .respond_with(Products::default())
        .mount(&products)
        .await;
    let gateway = gateway(
        &products,
        "",
        "",
        ", cache_ttl_s = 30",
        ", cache_ttl_s = 30",
    )
    .await;

    let reply = gateway
        .post(r#"{ product(id: "p1") { id } price(id: "p1") { amount } }"#)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(error_codes(&reply.json()), ["UPSTREAM_ERROR"]);
    assert_eq!(cache_control(&reply), "no-store");
}

#[tokio::test]
async fn an_upstream_no_store_makes_the_answer_no_store_and_private_makes_it_private() {
    for (directive, expected) in [
        ("no-store", "no-store"),
        ("private, max-age=60", "private, max-age=30"),
    ] {
        let products = products_service(Products {
            cache_control: Some(directive),
            ..Products::default()
        })
        .await;
        let gateway = gateway(&products, "", "", ", cache_ttl_s = 30", "").await;
        let reply = gateway.post(PRODUCT_P1).await;
        data(&reply);
        assert_eq!(cache_control(&reply), expected, "upstream `{directive}`");
    }
}

#[tokio::test]
async fn a_stale_entry_standing_in_for_a_failed_call_is_no_store() {
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products/p1"))
        .respond_with(Products::default())
        .up_to_n_times(1)
        .mount(&products)
        .await;
    serve(&products, "GET", "/products/p1", ResponseTemplate::new(503)).await;
    let gateway = gateway(
        &products,
        "",
        "",
        ", cache_ttl_s = 1, stale_if_error_s = 60",
        "",
    )
    .await;

    assert_eq!(
        cache_control(&gateway.post(PRODUCT_P1).await),
        "public, max-age=1"
    );
    tokio::time::sleep(ms(1100)).await;
    let stale = gateway.post(PRODUCT_P1).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.json()["data"]["product"]["version"], 1);
    assert!(stale.json()["extensions"]["conflux"]["stale"].is_array());
    assert_eq!(cache_control(&stale), "no-store");
}

// ---------------------------------------------------------------------------
// stale_while_revalidate_s
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_entry_is_served_at_once_to_50_clients_and_refreshed_by_one_call() {
    let counter = Arc::new(AtomicUsize::new(0));
    let products = products_service(Products {
        calls: counter.clone(),
        // The refresh is slow enough that every client arrives while it is
        // out: each is answered by the stale entry at once, or not at all.
        later_delay: ms(3000),
        ..Products::default()
    })
    .await;
    let gateway = gateway(
        &products,
        "",
        "",
        ", cache_ttl_s = 2, stale_while_revalidate_s = 60",
        "",
    )
    .await;

    assert_eq!(
        data(&gateway.post(PRODUCT_P1).await)["product"]["version"],
        1
    );
    tokio::time::sleep(ms(2100)).await;

    let started = Instant::now();
    let replies = join_all((0..50).map(|_| gateway.post(PRODUCT_P1))).await;
    let took = started.elapsed();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(
            data(reply)["product"]["version"],
            1,
            "client {i} did not get the stale entry at once"
        );
        assert_eq!(cache_control(reply), "no-store", "client {i}");
    }
    // Bounded polling: the refresh's answer lands after its 3 s; until
    // then every client is still served the stale entry and no second
    // refresh starts.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refreshed = loop {
        let reply = gateway.post(PRODUCT_P1).await;
        if data(&reply)["product"]["version"] != 1 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(ms(100)).await;
    };
    assert_eq!(data(&refreshed)["product"]["version"], 2);
    let (scope, _) = max_age(&cache_control(&refreshed));
    assert_eq!(scope, "public");
    assert_eq!(
        counter.load(Ordering::SeqCst),
        2,
        "one first call and exactly one background refresh (50 clients in {took:?})"
    );
}

// ---------------------------------------------------------------------------
// invalidates
// ---------------------------------------------------------------------------

async fn with_rename(products: &MockServer, status: u16) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/products/[^/]+/name$"))
        .respond_with(
            ResponseTemplate::new(status).set_body_json(json!({"id": "p1", "name": "New"})),
        )
        .mount(products)
        .await;
}

fn product_gets(requests: &[Request], id: &str) -> usize {
    let wanted = format!("/products/{id}");
    requests
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path() == wanted)
        .count()
}

const RENAME_P1: &str = r#"mutation { renameProduct(id: "p1", name: "New") { id name } }"#;

#[tokio::test]
async fn a_mutation_drops_every_users_entries_of_its_url() {
    let products = products_service(Products::default()).await;
    with_rename(&products, 200).await;
    let gateway = gateway(
        &products,
        "",
        r#"forward_headers = ["authorization"]"#,
        ", cache_ttl_s = 300",
        "",
    )
    .await;
    let users = [
        ("authorization", "Basic YWxpY2U6eA=="),
        ("authorization", "Basic Ym9iOnk="),
    ];
    let warm = || async {
        for user in users {
            data(&gateway.post_with_headers(PRODUCT_P1, &[user]).await);
        }
        data(&gateway.post(PRODUCT_P2).await);
    };
    warm().await;
    warm().await;
    let requests = received(&products).await;
    assert_eq!(product_gets(&requests, "p1"), 2, "one entry per user");
    assert_eq!(product_gets(&requests, "p2"), 1);

    data(&gateway.post_with_headers(RENAME_P1, &[users[0]]).await);
    warm().await;
    let requests = received(&products).await;
    assert_eq!(
        product_gets(&requests, "p1"),
        4,
        "both users' entries of /products/p1 were dropped"
    );
    assert_eq!(
        product_gets(&requests, "p2"),
        1,
        "/products/p2 was not named"
    );
}

#[tokio::test]
async fn a_failed_mutation_invalidates_nothing() {
    let products = products_service(Products::default()).await;
    with_rename(&products, 500).await;
    let gateway = gateway(&products, "", "", ", cache_ttl_s = 300", "").await;

    data(&gateway.post(PRODUCT_P1).await);
    let failed = gateway.post(RENAME_P1).await;
    assert_eq!(error_codes(&failed.json()), ["UPSTREAM_ERROR"]);
    data(&gateway.post(PRODUCT_P1).await);
    assert_eq!(
        product_gets(&received(&products).await, "p1"),
        1,
        "a failed mutation dropped the entry"
    );
}

#[tokio::test]
async fn a_mutation_on_one_gateway_invalidates_the_shared_redis_cache_for_another() {
    let redis = RedisServer::start();
    let tables = format!(
        "[cache]\nbackend = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    );
    let products = products_service(Products::default()).await;
    with_rename(&products, 200).await;
    let a = gateway(&products, &tables, "", ", cache_ttl_s = 300", "").await;
    let b = gateway(&products, &tables, "", ", cache_ttl_s = 300", "").await;

    assert_eq!(data(&a.post(PRODUCT_P1).await)["product"]["version"], 1);
    assert_eq!(data(&b.post(PRODUCT_P1).await)["product"]["version"], 1);
    assert_eq!(
        product_gets(&received(&products).await, "p1"),
        1,
        "B shares A's entry"
    );

    data(&b.post(RENAME_P1).await);
    let after = a.post(PRODUCT_P1).await;
    assert_eq!(
        data(&after)["product"]["version"],
        2,
        "A still served the entry B's mutation invalidated"
    );
    // The entry A stored after the mutation is shared again.
    assert_eq!(data(&b.post(PRODUCT_P1).await)["product"]["version"], 2);
    assert_eq!(product_gets(&received(&products).await, "p1"), 2);
}

// ---------------------------------------------------------------------------
// forward_response_headers
// ---------------------------------------------------------------------------

/// Answers `GET /products/me` with a new session cookie each call (and
/// `x-served-by` naming the call), after `delay`.
#[derive(Clone)]
struct Sessions {
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

impl Respond for Sessions {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        json_reply(json!({"id": format!("s{n}"), "name": "me"}))
            .append_header("set-cookie", format!("sid=session-{n}; HttpOnly").as_str())
            .append_header("set-cookie", "theme=dark")
            .insert_header("x-served-by", format!("me-{n}").as_str())
            .set_delay(self.delay)
    }
}

#[tokio::test]
async fn set_cookie_is_appended_from_every_call_and_other_headers_are_the_last_calls() {
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products/me"))
        .respond_with(Sessions {
            calls: Arc::default(),
            delay: Duration::ZERO,
        })
        .mount(&products)
        .await;
    // The price call finishes last (slower), so its `x-served-by` wins.
    Mock::given(method("GET"))
        .and(path("/prices/p1"))
        .respond_with(
            json_reply(json!({"id": "p1", "amount": 5}))
                .append_header("set-cookie", "price=seen")
                .insert_header("x-served-by", "prices")
                .set_delay(ms(300)),
        )
        .mount(&products)
        .await;
    let gateway = gateway(
        &products,
        "",
        r#"forward_response_headers = ["set-cookie", "x-served-by"]"#,
        "",
        "",
    )
    .await;

    let reply = gateway
        .post(r#"{ me { id } price(id: "p1") { amount } }"#)
        .await;
    data(&reply);
    let mut cookies = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text").to_owned())
        .collect::<Vec<_>>();
    cookies.sort();
    assert_eq!(
        cookies,
        ["price=seen", "sid=session-1; HttpOnly", "theme=dark"]
    );
    let served_by: Vec<_> = reply.headers.get_all("x-served-by").iter().collect();
    assert_eq!(served_by, ["prices"], "the last call's value alone");
}

#[tokio::test]
async fn a_forwarded_cookie_is_never_cached_nor_shared_with_another_user() {
    let counter = Arc::new(AtomicUsize::new(0));
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products/me"))
        .respond_with(Sessions {
            calls: counter.clone(),
            delay: ms(200),
        })
        .mount(&products)
        .await;
    let config = config("", r#"forward_response_headers = ["set-cookie"]"#, "", "").replace(
        r#""Query.me" = { service = "products", get = "/products/me" }"#,
        r#""Query.me" = { service = "products", get = "/products/me", cache_ttl_s = 60 }"#,
    );
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config)
        .upstream("products", &products)
        .start()
        .await;

    let session = |reply: &Reply| {
        reply
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .find(|c| c.starts_with("sid="))
            .unwrap_or_else(|| panic!("no session cookie: {:?}", reply.headers))
    };
    // Two users at once (identical requests: coalescing would share one
    // call), then one after the other (the cache would share one entry).
    let both = join_all([gateway.post("{ me { id } }"), gateway.post("{ me { id } }")]).await;
    let later = gateway.post("{ me { id } }").await;
    let mut seen: Vec<String> = both.iter().chain([&later]).map(session).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        3,
        "a session cookie reached two clients: {seen:?}"
    );
    assert_eq!(
        counter.load(Ordering::SeqCst),
        3,
        "an answer with a cookie was reused"
    );
    for reply in both.iter().chain([&later]) {
        assert_eq!(cache_control(reply), "private, max-age=60");
    }
}

// ---------------------------------------------------------------------------
// Automatic persisted queries across instances
// ---------------------------------------------------------------------------

fn apq(query: Option<&str>, hash: &str) -> Value {
    let mut body = json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}});
    if let Some(query) = query {
        body["query"] = json!(query);
    }
    body
}

fn sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn a_hash_registered_on_one_instance_is_served_by_another_and_redis_down_falls_back() {
    let mut redis = RedisServer::start();
    let tables = format!(
        "[cache]\nbackend = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    );
    let products = products_service(Products::default()).await;
    let a = gateway(&products, &tables, "", "", "").await;
    let b = gateway(&products, &tables, "", "", "").await;
    let hash = sha256(PRODUCT_P1);

    let unknown = b.post_json(apq(None, &hash)).await;
    assert_eq!(error_codes(&unknown.json()), ["PERSISTED_QUERY_NOT_FOUND"]);
    data(&a.post_json(apq(Some(PRODUCT_P1), &hash)).await);
    let served = b.post_json(apq(None, &hash)).await;
    assert_eq!(
        data(&served)["product"]["id"],
        "p1",
        "B did not know A's hash"
    );

    // Redis gone: each instance registers in and serves from its own store.
    redis.kill();
    let other = sha256(PRODUCT_P2);
    data(&a.post_json(apq(Some(PRODUCT_P2), &other)).await);
    assert_eq!(
        data(&a.post_json(apq(None, &other)).await)["product"]["id"],
        "p2"
    );
    let elsewhere = b.post_json(apq(None, &other)).await;
    assert_eq!(elsewhere.status, 200);
    assert_eq!(
        error_codes(&elsewhere.json()),
        ["PERSISTED_QUERY_NOT_FOUND"]
    );
    // What B learnt while Redis was up it still knows.
    assert_eq!(
        data(&b.post_json(apq(None, &hash)).await)["product"]["id"],
        "p1"
    );
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

#[test]
fn check_refuses_invalidates_off_a_mutation_and_revalidation_without_a_ttl() {
    let toml = r#"
[services.products]
url = "http://127.0.0.1:9"

[resolvers]
"Query.product" = { service = "products", get = "/products/{args.id}", stale_while_revalidate_s = 5, invalidates = [{ service = "products", get = "/x" }] }
"Query.price" = { service = "products", get = "/prices/{args.id}" }
"Query.me" = { service = "products", get = "/me" }
"Query.hello" = { from = "x" }
"Mutation.renameProduct" = { service = "products", post = "/p", invalidates = [{ service = "nope", get = "/x" }, { service = "products", get = "/products/{args.nope}" }] }
"#;
    let checked = check(toml, SDL);
    assert!(!checked.ok);
    let all = checked.lines.join("\n");
    for expected in [
        "`stale_while_revalidate_s` needs `cache_ttl_s`",
        "`Query.product`: `invalidates` is only for fields of the mutation type",
        "unknown service `nope`",
        "`{args.nope}`: `Mutation.renameProduct` has no argument `nope`",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
}
