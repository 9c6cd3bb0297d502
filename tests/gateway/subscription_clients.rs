//! docs/SUBSCRIPTIONS.md with the real npm clients (issue 21): `graphql-ws`
//! and `graphql-sse` (pinned by tests/clients/subscriptions/package-lock.json)
//! receive a polled subscription's events from the real gateway, run a
//! query through the same transport, and — when they leave — stop the
//! poller. The test installs the clients (`npm ci`) when their
//! `node_modules` is absent, and fails when it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const SDL: &str = r#"
type Query { order(id: ID!): Order }
type Subscription { order(id: ID!): Order }
type Order { id: ID! status: String }
"#;

const CONFIG: &str = r#"
[services.orders]
url = "{orders}"
retries = 0

[resolvers]
"Query.order" = { service = "orders", get = "/orders/{args.id}" }
"Subscription.order" = { service = "orders", get = "/orders/{args.id}", poll_ms = 150 }
"#;

/// The clients' directory, their packages installed.
fn clients() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/subscriptions");
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let installed = ["graphql-ws", "graphql-sse", "ws", "graphql"]
        .iter()
        .all(|package| dir.join("node_modules").join(package).is_dir());
    if !installed {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (node and npm are needed for this test)");
        assert!(status.success(), "`npm ci` in {} failed", dir.display());
    }
    dir
}

/// The order's status changes on every poll: `placed-1`, `placed-2`, …;
/// each arrival is recorded.
#[derive(Clone, Default)]
struct Counting {
    polls: Arc<AtomicUsize>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for Counting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrivals.lock().expect("arrivals").push(Instant::now());
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        json_reply(json!({ "id": "o1", "status": format!("placed-{n}") }))
    }
}

async fn gateway(orders: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(CONFIG)
        .upstream("orders", orders)
        .start()
        .await
}

/// Runs the client in `mode` for `count` results; their JSON lines.
async fn run_client(mode: &str, url: String, query: &str, count: usize) -> Vec<Value> {
    let dir = clients();
    let (mode, query) = (mode.to_owned(), query.to_owned());
    // On a blocking thread: the gateway serves on this test's runtime.
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("subscribe.mjs")
            .args([&mode, &url, &query, "{}", &count.to_string()])
            .current_dir(&dir)
            .output()
    })
    .await
    .expect("the client's thread")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

async fn receives_events_then_leaving_stops_the_poller(mode: &str) {
    let orders = MockServer::start().await;
    let counting = Counting::default();
    Mock::given(method("GET"))
        .and(path("/orders/o1"))
        .respond_with(counting.clone())
        .mount(&orders)
        .await;
    let gateway = gateway(&orders).await;
    let results = run_client(
        mode,
        gateway.url("/graphql"),
        "subscription { order(id: \"o1\") { status } }",
        3,
    )
    .await;
    assert_eq!(
        results,
        vec![
            json!({"data": {"order": {"status": "placed-1"}}}),
            json!({"data": {"order": {"status": "placed-2"}}}),
            json!({"data": {"order": {"status": "placed-3"}}}),
        ]
    );
    // The client disposed of its subscription and exited: the poller stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_leaving = counting.arrivals.lock().expect("arrivals").len();
    tokio::time::sleep(Duration::from_millis(750)).await;
    let later = counting.arrivals.lock().expect("arrivals").len();
    assert_eq!(
        after_leaving, later,
        "polling went on after {mode}'s client left"
    );

    let query = run_client(
        mode,
        gateway.url("/graphql"),
        "{ order(id: \"o1\") { id } }",
        5,
    )
    .await;
    assert_eq!(
        query,
        vec![
            json!({"data": {"order": {"id": "o1"}}}),
            json!({"complete": true})
        ]
    );
}

#[tokio::test]
async fn the_graphql_ws_client_receives_the_events_and_its_leaving_stops_the_poller() {
    receives_events_then_leaving_stops_the_poller("ws").await;
}

#[tokio::test]
async fn the_graphql_sse_client_receives_the_events_and_its_leaving_stops_the_poller() {
    receives_events_then_leaving_stops_the_poller("sse").await;
}
