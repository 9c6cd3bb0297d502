//! docs/CACHING.md "Sharing across clients": batched calls of concurrent
//! client requests share upstream calls (`batch_window_ms`), by the cache's
//! identity rule. Judged on the calls the products service received.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::client::Client;
use crate::support::TestGateway;

const SDL: &str = r#"
type Query { orders(user: String!): [Order!]! }
type Order { id: ID!  product: Product }
type Product { id: ID!  name: String }
"#;

/// `orders`: more of the `Query.orders` mapping (e.g. `, cache_ttl_s = 60`).
fn config(products: &str, orders: &str) -> String {
    format!(
        r#"
[services.orders]
url = "{{orders}}"
[services.products]
url = "{{products}}"
retries = 0
{products}

[resolvers]
"Query.orders" = {{ service = "orders", get = "/orders/{{args.user}}"{orders} }}
"Order.product" = {{ service = "products", get = "/products/{{parent.productId}}", batch = {{ key = "{{parent.productId}}", get = "/products?ids={{keys}}", match = "id" }} }}
"#
    )
}

/// Each user's orders: `a` has p1 and p2, `b` p2 and p3, `c` p4.
async fn orders() -> MockServer {
    let orders = MockServer::start().await;
    for (user, products) in [
        ("a", &["p1", "p2"][..]),
        ("b", &["p2", "p3"]),
        ("c", &["p4"]),
    ] {
        let body: Vec<Value> = products
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"id": format!("{user}{i}"), "productId": p}))
            .collect();
        Mock::given(method("GET"))
            .and(path(format!("/orders/{user}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&orders)
            .await;
    }
    orders
}

/// `/products?ids=…`: one product per id, after `delay` — so that a batch
/// stays in flight while the other clients' batches are made.
struct SlowProducts {
    delay: Duration,
}

impl Respond for SlowProducts {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let items: Vec<Value> = ids(request)
            .split(',')
            .map(|id| json!({"id": id, "name": format!("Product {id}")}))
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(items)
            .set_delay(self.delay)
    }
}

fn ids(request: &Request) -> String {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == "ids")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn products(delay: Duration) -> MockServer {
    let products = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/products$"))
        .respond_with(SlowProducts { delay })
        .mount(&products)
        .await;
    products
}

async fn gateway(products_config: &str, orders: &MockServer, products: &MockServer) -> TestGateway {
    gateway_with(products_config, "", orders, products).await
}

async fn gateway_with(
    products_config: &str,
    orders_mapping: &str,
    orders: &MockServer,
    products: &MockServer,
) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config(products_config, orders_mapping))
        .upstream("orders", orders)
        .upstream("products", products)
        .start()
        .await
}

/// Until the products service has received `count` calls (bounded).
async fn received(products: &MockServer, count: usize) {
    let start = Instant::now();
    while products.received_requests().await.unwrap_or_default().len() < count {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no call {count} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `ids` of every products call, and each call's `authorization`.
async fn calls(products: &MockServer) -> Vec<(String, Option<String>)> {
    products
        .received_requests()
        .await
        .expect("recording")
        .iter()
        .map(|r| {
            let auth = r
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (ids(r), auth)
        })
        .collect()
}

/// The `ids` of every products call, in order.
async fn ids_sent(products: &MockServer) -> Vec<String> {
    calls(products).await.into_iter().map(|c| c.0).collect()
}

/// Runs `first`, and `then` once the products service has received a call
/// (`first`'s, which stays in flight for the service's delay).
async fn while_in_flight<A: std::future::Future, B: std::future::Future>(
    products: &MockServer,
    first: A,
    then: B,
) -> (A::Output, B::Output) {
    futures::join!(first, async {
        received(products, 1).await;
        then.await
    })
}

async fn names(client: &Client, user: &str, headers: &[(&str, &str)]) -> Vec<Value> {
    let query = format!(r#"{{ orders(user: "{user}") {{ product {{ name }} }} }}"#);
    let body = client.post_with_headers(&query, headers).await.json();
    assert_eq!(body["errors"], Value::Null, "{body}");
    body["data"]["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["product"]["name"].clone())
        .collect()
}

fn products_query(user: &str) -> Value {
    json!({ "query": format!(r#"{{ orders(user: "{user}") {{ product {{ name }} }} }}"#) })
}

#[tokio::test]
async fn operations_in_progress_together_share_batch_calls() {
    let (orders, products) = (orders().await, products(Duration::from_millis(1500)).await);
    let gw = gateway_with(
        "batch_window_ms = 500",
        ", cache_ttl_s = 60",
        &orders,
        &products,
    )
    .await;
    let client: &Client = &gw;
    // b's and c's orders come from the cache from now on, so that their
    // operations reach their products batch at the same moment.
    for user in ["b", "c"] {
        let body = client
            .post(&format!(r#"{{ orders(user: "{user}") {{ id }} }}"#))
            .await
            .json();
        assert_eq!(body["errors"], Value::Null, "{body}");
    }

    // Client a's batch (p1, p2) goes at once and stays in flight 1.5 s.
    let (a, both) = while_in_flight(&products, names(client, "a", &[]), async {
        // b's p2 is in a's call: b awaits it. b's p3 and c's p4, asked
        // while a's call is in flight, go together. The two operations
        // come in one HTTP batch only to be in progress at the same moment:
        // the shared batches do not know which client an operation is of.
        client
            .post_json(json!([products_query("b"), products_query("c")]))
            .await
            .json()
    })
    .await;
    assert_eq!(a, vec![json!("Product p1"), json!("Product p2")]);
    assert_eq!(
        both,
        json!([
            {"data": {"orders": [{"product": {"name": "Product p2"}}, {"product": {"name": "Product p3"}}]}},
            {"data": {"orders": [{"product": {"name": "Product p4"}}]}},
        ])
    );

    let mut sent = ids_sent(&products).await;
    sent[1..].sort();
    assert_eq!(
        sent,
        vec!["p1,p2", "p3,p4"],
        "three operations' five keys (four distinct) in two calls"
    );
}

/// A batch opened while another is in flight is sent once the operations in
/// progress have added their keys, not after the window: a request that
/// comes later makes its own call, and waits no window for it.
#[tokio::test]
async fn a_shared_batch_does_not_wait_out_its_window() {
    let (orders, products) = (orders().await, products(Duration::from_millis(1500)).await);
    let gw = gateway("batch_window_ms = 10000", &orders, &products).await;
    let client: &Client = &gw;

    let (_, (c, took)) = while_in_flight(&products, names(client, "a", &[]), async {
        let started = Instant::now();
        let names = names(client, "c", &[]).await;
        (names, started.elapsed())
    })
    .await;
    assert_eq!(c, vec![json!("Product p4")]);
    // p4's call takes 1.5 s; the window is 10 s.
    assert!(took < Duration::from_secs(8), "c waited {took:?}");
    let sent = ids_sent(&products).await;
    assert_eq!(sent, vec!["p1,p2", "p4"]);
}

#[tokio::test]
async fn calls_carrying_different_users_never_share() {
    let (orders, products) = (orders().await, products(Duration::from_millis(1500)).await);
    let gw = gateway(
        "batch_window_ms = 500\nforward_headers = [\"authorization\"]",
        &orders,
        &products,
    )
    .await;
    let client: &Client = &gw;

    let (first, second) = while_in_flight(
        &products,
        names(client, "a", &[("authorization", "Bearer user-1")]),
        async {
            // The same keys, asked while user 1's call is in flight.
            names(client, "a", &[("authorization", "Bearer user-2")]).await
        },
    )
    .await;
    assert_eq!(first, second);
    assert_eq!(
        calls(&products).await,
        vec![
            ("p1,p2".to_owned(), Some("Bearer user-1".to_owned())),
            ("p1,p2".to_owned(), Some("Bearer user-2".to_owned())),
        ],
        "each user's keys are fetched with that user's own call"
    );
}

#[tokio::test]
async fn a_window_of_zero_shares_nothing() {
    let (orders, products) = (orders().await, products(Duration::from_millis(1000)).await);
    let gw = gateway("batch_window_ms = 0", &orders, &products).await;
    let client: &Client = &gw;

    let (a, b) = while_in_flight(&products, names(client, "a", &[]), names(client, "b", &[])).await;
    assert_eq!(a, vec![json!("Product p1"), json!("Product p2")]);
    assert_eq!(b, vec![json!("Product p2"), json!("Product p3")]);
    let sent = ids_sent(&products).await;
    assert_eq!(
        sent,
        vec!["p1,p2", "p2,p3"],
        "each request asks for its own keys"
    );
}

#[tokio::test]
async fn with_the_default_window_keys_in_flight_are_not_asked_again() {
    let (orders, products) = (orders().await, products(Duration::from_millis(1000)).await);
    let gw = gateway("", &orders, &products).await;
    let client: &Client = &gw;

    let (_, b) = while_in_flight(&products, names(client, "a", &[]), names(client, "b", &[])).await;
    assert_eq!(b, vec![json!("Product p2"), json!("Product p3")]);
    let sent = ids_sent(&products).await;
    assert_eq!(
        sent,
        vec!["p1,p2", "p3"],
        "p2 is taken from a's call in flight"
    );
}
