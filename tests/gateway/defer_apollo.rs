//! docs/DEFER.md with a real client: Apollo Client 4 (npm, pinned by
//! tests/clients/apollo/package-lock.json) runs a `@defer` query through
//! `HttpLink` against the real gateway, and renders the first part before
//! the deferred data arrives. The test installs the client (`npm ci`) when
//! its `node_modules` is absent, and fails when it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::support::*;

const SDL: &str = r#"
type Query { user(id: ID!): User }
type User { id: ID! name: String reviews: [Review!] }
type Review { id: ID! text: String }
"#;

const CONFIG: &str = r#"
[services.users]
url = "{users}"
[services.reviews]
url = "{reviews}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"User.reviews" = { service = "reviews", get = "/users/{parent.id}/reviews" }
"#;

/// The client's directory, its packages installed.
fn apollo_client() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/apollo");
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("node_modules/@apollo/client").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (node and npm are needed for this test)");
        assert!(status.success(), "`npm ci` in {} failed", dir.display());
    }
    dir
}

#[tokio::test]
async fn apollo_client_renders_the_first_part_then_the_deferred_data() {
    let dir = apollo_client();
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ada"})),
    )
    .await;
    let reviews = MockServer::start().await;
    let arrivals = Arrivals::answering(
        json_reply(json!([{"id": "r1", "text": "great"}])).set_delay(Duration::from_millis(800)),
    );
    Mock::given(method("GET"))
        .and(path("/users/1/reviews"))
        .respond_with(arrivals.clone())
        .mount(&reviews)
        .await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(CONFIG)
        .upstream("users", &users)
        .upstream("reviews", &reviews)
        .start()
        .await;

    // On a blocking thread: the gateway serves on this test's runtime.
    let url = gateway.url("/graphql");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("defer.mjs")
            .arg(url)
            .current_dir(&dir)
            .output()
    })
    .await
    .expect("the client's thread")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();

    // What the frontend renders: the user at once, marked as still
    // streaming, then the same user with the deferred reviews.
    // (Before any data, the query is `empty`: loading.)
    let first = results
        .iter()
        .find(|r| !r["data"].is_null())
        .expect("a result with data");
    assert_eq!(first["dataState"], "streaming", "{results:#?}");
    assert_eq!(
        first["data"],
        json!({"user": {"__typename": "User", "id": "1", "name": "Ada"}}),
        "{results:#?}"
    );
    let last = results.last().expect("a last result");
    assert_eq!(last["dataState"], "complete", "{results:#?}");
    assert_eq!(
        last["data"],
        json!({"user": {
            "__typename": "User", "id": "1", "name": "Ada",
            "reviews": [{"__typename": "Review", "id": "r1", "text": "great"}]
        }})
    );
    assert!(last["error"].is_null());
    assert_eq!(arrivals.log().len(), 1, "one call for the deferred field");
    let (first_ms, last_ms) = (
        first["ms"].as_u64().expect("ms"),
        last["ms"].as_u64().expect("ms"),
    );
    assert!(
        last_ms > first_ms,
        "the deferred data came with the slow answer, after the first result ({first_ms} ms, {last_ms} ms)"
    );
}
