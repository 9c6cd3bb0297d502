//! docs/SUBSCRIPTIONS.md against the real `conflux serve` binary (issue
//! 21): SIGTERM completes every subscription and the process exits 0; a
//! reload (SIGHUP) that removes a subscription field completes the
//! subscriptions of that field while the others go on.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::support::process::Serving;
use crate::support::sse::subscribe;
use crate::support::temp::TempDir;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

const BOTH: &str = r#"
type Query { order(id: ID!): Order }
type Subscription { order(id: ID!): Order  shipment(id: ID!): Order }
type Order { id: ID! status: String }
"#;

const ONLY_ORDER: &str = r#"
type Query { order(id: ID!): Order }
type Subscription { order(id: ID!): Order }
type Order { id: ID! status: String }
"#;

fn toml(orders: &str, with_shipment: bool) -> String {
    let shipment = if with_shipment {
        r#""Subscription.shipment" = { service = "orders", get = "/orders/{args.id}", poll_ms = 100 }"#
    } else {
        ""
    };
    format!(
        r#"
[services.orders]
url = "{orders}"
retries = 0

[resolvers]
"Query.order" = {{ service = "orders", get = "/orders/{{args.id}}" }}
"Subscription.order" = {{ service = "orders", get = "/orders/{{args.id}}", poll_ms = 100, emit = "every" }}
{shipment}
"#
    )
}

async fn orders() -> MockServer {
    let orders = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/orders/o1"))
        .respond_with(json_reply(json!({ "id": "o1", "status": "placed" })))
        .mount(&orders)
        .await;
    orders
}

fn signal(serving: &Serving, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &serving.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}: {status}");
}

#[tokio::test]
async fn sigterm_completes_every_subscription_and_exits_zero() {
    let orders = orders().await;
    let dir = TempDir::new();
    dir.write("services.toml", &toml(&orders.uri(), true));
    dir.write("schema/schema.graphql", BOTH);
    let mut serving = Serving::start(dir.path(), "info", &[]).await;
    let base = format!("http://{}", serving.addr);
    let query = "subscription { order(id: \"o1\") { status } }";
    let mut stream = subscribe(&base, query, json!({}), &[]).await;
    assert_eq!(stream.status, 200);
    let first = stream.next(WAIT).await.expect("a first event");
    assert_eq!(first.data, json!({"data": {"order": {"status": "placed"}}}));
    signal(&serving, "TERM");
    // The stream ends with `complete` (events may come before it).
    let mut completed = false;
    while let Some(event) = stream.next(WAIT).await {
        if event.name == "complete" {
            completed = true;
            break;
        }
    }
    assert!(completed, "no `complete` after SIGTERM");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Ok(Some(status)) = serving.child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        serving.lines().join("\n")
    );
}

#[tokio::test]
async fn a_reload_that_removes_a_field_completes_its_subscriptions_only() {
    let orders = orders().await;
    let dir = TempDir::new();
    dir.write("services.toml", &toml(&orders.uri(), true));
    dir.write("schema/schema.graphql", BOTH);
    let serving = Serving::start(dir.path(), "info", &[]).await;
    let base = format!("http://{}", serving.addr);
    let mut kept = subscribe(
        &base,
        "subscription { order(id: \"o1\") { status } }",
        json!({}),
        &[],
    )
    .await;
    let mut removed = subscribe(
        &base,
        "subscription { shipment(id: \"o1\") { status } }",
        json!({}),
        &[],
    )
    .await;
    assert_eq!(
        kept.next(WAIT).await.expect("kept's first event").name,
        "next"
    );
    assert_eq!(
        removed
            .next(WAIT)
            .await
            .expect("removed's first event")
            .name,
        "next"
    );
    dir.write("schema/schema.graphql", ONLY_ORDER);
    dir.write("services.toml", &toml(&orders.uri(), false));
    signal(&serving, "HUP");
    let got = removed.until_complete(WAIT).await;
    assert!(
        got.len() <= 1,
        "events after the field was removed: {got:?}"
    );
    // The other subscription goes on: `emit = "every"` keeps sending.
    for _ in 0..3 {
        let event = kept
            .next(WAIT)
            .await
            .expect("the kept subscription goes on");
        assert_eq!(event.name, "next", "{event:?}");
    }
    // And a new subscription to the removed field is refused by the new
    // configuration.
    let refused = subscribe(
        &base,
        "subscription { shipment(id: \"o1\") { status } }",
        json!({}),
        &[],
    )
    .await;
    let deadline = Instant::now() + WAIT;
    let mut refused = refused;
    while refused.status == 200 {
        assert!(Instant::now() < deadline, "the reload never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        refused = subscribe(
            &base,
            "subscription { shipment(id: \"o1\") { status } }",
            json!({}),
            &[],
        )
        .await;
    }
    assert!(refused.text().await.contains("GRAPHQL_VALIDATION_FAILED"));
}
