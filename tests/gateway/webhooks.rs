//! docs/SUBSCRIPTIONS.md, webhooks (issue 21): `POST /webhooks/NAME`
//! signed with HMAC-SHA256 (computed here with the `hmac` crate, not the
//! gateway's code), delivered to the SSE subscriptions whose `filter`
//! matches; and `broker = "redis"` carrying a delivery received by one
//! gateway to the subscribers of another, over one real `redis-server`.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::support::redis::RedisServer;
use crate::support::sse::{subscribe, SseStream};
use crate::support::*;

const HOOK_SECRET: &str = "order-hook-secret";
const WAIT: Duration = Duration::from_secs(5);

const SDL: &str = r#"
type Query { ping: String }
type Subscription { shipped(orderId: ID): Shipment }
type Shipment { orderId: ID! carrier: String order: Order }
type Order { id: ID! total: Int }
"#;

fn config(subscriptions: &str) -> String {
    format!(
        r#"
[subscriptions]
{subscriptions}

[webhooks.order-shipped]
secret = "{HOOK_SECRET}"

[services.orders]
url = "{{orders}}"
retries = 0

[resolvers]
"Query.ping" = {{ service = "orders", get = "/ping" }}
"Subscription.shipped" = {{ webhook = "order-shipped", filter = {{ orderId = "{{args.orderId}}" }} }}
"Shipment.order" = {{ service = "orders", get = "/orders/{{parent.orderId}}" }}
"#
    )
}

async fn start(orders: &MockServer, subscriptions: &str) -> TestGateway {
    Mock::given(method("GET"))
        .and(path("/orders/o1"))
        .respond_with(json_reply(json!({ "id": "o1", "total": 42 })))
        .mount(orders)
        .await;
    Mock::given(method("GET"))
        .and(path("/orders/o2"))
        .respond_with(json_reply(json!({ "id": "o2", "total": 7 })))
        .mount(orders)
        .await;
    TestGateway::builder()
        .schema(SDL)
        .config(&config(subscriptions))
        .upstream("orders", orders)
        .start()
        .await
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_hook(
    gateway: &TestGateway,
    name: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(signature) = signature {
        headers.push(("x-conflux-signature", signature));
    }
    gateway
        .request(
            reqwest::Method::POST,
            &format!("/webhooks/{name}"),
            &headers,
            Some(body.to_vec()),
        )
        .await
}

const SHIPPED: &str =
    "subscription($id: ID) { shipped(orderId: $id) { orderId carrier order { total } } }";

async fn next(stream: &mut SseStream) -> Option<Value> {
    let event = stream.next(WAIT).await?;
    assert_eq!(event.name, "next", "{event:?}");
    Some(event.data)
}

/// A subscription is registered once its stream is open; the delivery is
/// retried until it arrives (bounded), so the test does not depend on
/// when the gateway's task got to run.
async fn deliver_until_received(
    sender: &TestGateway,
    stream: &mut SseStream,
    body: &Value,
) -> Value {
    let raw = body.to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = post_hook(
            sender,
            "order-shipped",
            raw.as_bytes(),
            Some(&sign(HOOK_SECRET, raw.as_bytes())),
        )
        .await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        if let Some(event) = stream.next(Duration::from_millis(300)).await {
            assert_eq!(event.name, "next");
            return event.data;
        }
        assert!(Instant::now() < deadline, "the delivery never arrived");
    }
}

#[tokio::test]
async fn a_signed_delivery_is_202_and_reaches_the_subscriptions_its_filter_matches() {
    let orders = MockServer::start().await;
    let gateway = start(&orders, "").await;
    let mut o1 = subscribe(&gateway.url(""), SHIPPED, json!({"id": "o1"}), &[]).await;
    let mut o2 = subscribe(&gateway.url(""), SHIPPED, json!({"id": "o2"}), &[]).await;
    let mut all = subscribe(&gateway.url(""), SHIPPED, json!({}), &[]).await;
    assert_eq!(o1.status, 200);
    let first = deliver_until_received(
        &gateway,
        &mut o1,
        &json!({"orderId": "o1", "carrier": "UPS"}),
    )
    .await;
    // The body is the field's value; the selection below it resolves like
    // a query's (a call per event).
    assert_eq!(
        first,
        json!({"data": {"shipped": {"orderId": "o1", "carrier": "UPS", "order": {"total": 42}}}})
    );
    // The unfiltered subscription got it too (perhaps more than once, as
    // the delivery may have been retried); `o2`'s filter kept it out.
    assert_eq!(
        next(&mut all).await.expect("delivered")["data"]["shipped"]["orderId"],
        "o1"
    );
    let body = json!({"orderId": "o2", "carrier": "DHL"}).to_string();
    let reply = post_hook(
        &gateway,
        "order-shipped",
        body.as_bytes(),
        Some(&sign(HOOK_SECRET, body.as_bytes())),
    )
    .await;
    assert_eq!(reply.status, 202);
    let second = next(&mut o2).await.expect("o2's delivery");
    assert_eq!(
        second["data"]["shipped"]["orderId"], "o2",
        "o2 got another order's event first"
    );
    assert_eq!(second["data"]["shipped"]["order"]["total"], 7);
}

#[tokio::test]
async fn a_wrong_or_missing_signature_is_401_and_delivers_nothing() {
    let orders = MockServer::start().await;
    let gateway = start(&orders, "").await;
    let mut stream = subscribe(&gateway.url(""), SHIPPED, json!({}), &[]).await;
    // Open and registered: a valid delivery arrives.
    deliver_until_received(
        &gateway,
        &mut stream,
        &json!({"orderId": "o1", "carrier": "UPS"}),
    )
    .await;
    while stream.next(Duration::from_millis(200)).await.is_some() {}
    let body = json!({"orderId": "o2", "carrier": "forged"}).to_string();
    let good = sign(HOOK_SECRET, body.as_bytes());
    let bad_signatures = [
        None,
        Some(sign("another-secret", body.as_bytes())),
        Some(good.to_uppercase().replace("SHA256=", "sha256=")),
        Some(good.trim_start_matches("sha256=").to_owned()),
        Some(format!("{}0", &good[..good.len() - 1])),
        Some("sha256=".to_owned()),
    ];
    for signature in &bad_signatures {
        let reply = post_hook(
            &gateway,
            "order-shipped",
            body.as_bytes(),
            signature.as_deref(),
        )
        .await;
        assert_eq!(reply.status, 401, "{signature:?}: {}", reply.text);
        assert_eq!(reply.error_codes(), vec!["UNAUTHENTICATED"]);
    }
    assert!(
        stream.next(Duration::from_millis(500)).await.is_none(),
        "a delivery with a bad signature reached a subscriber"
    );
    let metrics = gateway
        .request(reqwest::Method::GET, "/metrics", &[], None)
        .await;
    assert!(
        metrics.text.contains("conflux_webhook_deliveries_total"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_and_an_unknown_webhook_404() {
    let orders = MockServer::start().await;
    let gateway = start(&orders, "").await;
    let body = b"not json {";
    let reply = post_hook(
        &gateway,
        "order-shipped",
        body,
        Some(&sign(HOOK_SECRET, body)),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error_codes(), vec!["BAD_REQUEST"]);
    let json_body = br#"{"orderId":"o1"}"#;
    let unknown = post_hook(
        &gateway,
        "nobody",
        json_body,
        Some(&sign(HOOK_SECRET, json_body)),
    )
    .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn the_redis_broker_carries_a_delivery_from_one_gateway_to_another() {
    let redis = RedisServer::start();
    let broker = format!(
        "broker = \"redis\"\nredis_url = \"redis://127.0.0.1:{}\"",
        redis.port
    );
    let orders = MockServer::start().await;
    let receiving = start(&orders, &broker).await;
    let subscribed = start(&orders, &broker).await;
    let mut stream = subscribe(&subscribed.url(""), SHIPPED, json!({"id": "o1"}), &[]).await;
    assert_eq!(stream.status, 200);
    // Posted to the other gateway only.
    let event = deliver_until_received(
        &receiving,
        &mut stream,
        &json!({"orderId": "o1", "carrier": "UPS"}),
    )
    .await;
    assert_eq!(
        event,
        json!({"data": {"shipped": {"orderId": "o1", "carrier": "UPS", "order": {"total": 42}}}})
    );
}

#[tokio::test]
async fn without_a_broker_a_delivery_stays_on_its_gateway() {
    let orders = MockServer::start().await;
    let receiving = start(&orders, "").await;
    let subscribed = start(&orders, "").await;
    let mut stream = subscribe(&subscribed.url(""), SHIPPED, json!({"id": "o1"}), &[]).await;
    // Registered: a delivery to its own gateway arrives.
    deliver_until_received(
        &subscribed,
        &mut stream,
        &json!({"orderId": "o1", "carrier": "own"}),
    )
    .await;
    while stream.next(Duration::from_millis(200)).await.is_some() {}
    let body = json!({"orderId": "o1", "carrier": "other"}).to_string();
    let reply = post_hook(
        &receiving,
        "order-shipped",
        body.as_bytes(),
        Some(&sign(HOOK_SECRET, body.as_bytes())),
    )
    .await;
    assert_eq!(reply.status, 202);
    assert!(stream.next(Duration::from_millis(500)).await.is_none());
}
