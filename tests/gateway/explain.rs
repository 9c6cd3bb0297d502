//! docs/PLAN.md: `conflux explain` (text, `--format json`, `--operation`,
//! `--variables`, `-` for stdin) and `conflux-explain: 1`: the same plan,
//! exactly, and no upstream call.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::budget::{config, Shop, SDL};
use crate::support::temp::TempDir;

const QUERY: &str = r#"query Page($n: Int) { user(id: "u1") { name orders(first: $n) { id product { name } detail { note } } } }
query Other { settings { theme } }"#;

/// The plan of `Page` with `n = 3`, written out by hand.
fn page_plan() -> Value {
    json!({
        "predicted_calls": 7,
        "calls": [
            {"field": "user", "service": "users", "method": "GET", "path": "/users/{args.id}",
             "depends_on": [], "batched": null, "per_item_of": null, "count": 1},
            {"field": "user.orders", "service": "orders", "method": "GET", "path": "/users/{parent.id}/orders",
             "depends_on": ["user"], "batched": null, "per_item_of": null, "count": 1},
            {"field": "user.orders.product", "service": "products", "method": "GET", "path": "/products?ids={keys}",
             "depends_on": ["user.orders"], "batched": 2, "per_item_of": null, "count": 2},
            {"field": "user.orders.detail", "service": "orders", "method": "GET", "path": "/details/{parent.id}",
             "depends_on": ["user.orders"], "batched": null, "per_item_of": "user.orders", "count": 3}
        ]
    })
}

/// Runs `conflux explain ARGS` in `dir`, `stdin` piped in; (exit code,
/// stdout, stderr).
fn explain(dir: &TempDir, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .arg("explain")
        .args(args)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run conflux explain");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("conflux explain ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A project whose services are the shop's mock servers.
fn project(shop: &Shop) -> TempDir {
    let dir = TempDir::new();
    let toml = config("")
        .replace("{users}", &shop.users.uri())
        .replace("{orders}", &shop.orders.uri())
        .replace("{products}", &shop.products.uri());
    dir.write("services.toml", &toml);
    dir.write("schema/schema.graphql", SDL);
    dir.write("page.graphql", QUERY);
    dir
}

#[tokio::test]
async fn the_explain_header_answers_the_plan_exactly_and_calls_nothing() {
    let shop = Shop::start("").await;
    let reply = shop
        .gateway
        .post_raw(
            serde_json::to_vec(
                &json!({"query": QUERY, "operationName": "Page", "variables": {"n": 3}}),
            )
            .expect("serializes"),
            &[
                ("content-type", "application/json"),
                ("conflux-explain", "1"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"data": null, "extensions": {"conflux": {"plan": page_plan()}}})
    );
    assert_eq!(shop.calls_received().await, 0);
}

#[tokio::test]
async fn the_explain_header_needs_debug() {
    let users = wiremock::MockServer::start().await;
    let toml = config("")
        .replace("debug = true", "debug = false")
        .replace("{users}", &users.uri())
        .replace("{orders}", &users.uri())
        .replace("{products}", &users.uri());
    crate::support::serve(
        &users,
        "GET",
        "/settings",
        crate::support::json_reply(json!({"theme": "dark"})),
    )
    .await;
    let gateway = crate::support::TestGateway::builder()
        .schema(SDL)
        .config(&toml)
        .start()
        .await;
    let reply = gateway
        .post_with_headers("{ settings { theme } }", &[("conflux-explain", "1")])
        .await;
    assert_eq!(
        reply.json(),
        json!({"data": {"settings": {"theme": "dark"}}})
    );
}

#[tokio::test]
async fn conflux_explain_prints_the_same_plan_as_json_and_calls_nothing() {
    let shop = Shop::start("").await;
    let dir = project(&shop);
    let (code, stdout, stderr) = explain(
        &dir,
        &[
            "--format",
            "json",
            "--operation",
            "Page",
            "--variables",
            r#"{"n": 3}"#,
            "page.graphql",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(printed, page_plan());
    assert_eq!(shop.calls_received().await, 0);
}

#[tokio::test]
async fn conflux_explain_prints_text_from_stdin() {
    let shop = Shop::start("").await;
    let dir = project(&shop);
    let (code, stdout, stderr) = explain(
        &dir,
        &["--operation", "Page", "--variables", r#"{"n": 3}"#, "-"],
        QUERY,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "user  users  GET /users/{args.id}  no cache  1 call\n\
         user.orders  orders  GET /users/{parent.id}/orders  after user  no cache  1 call\n\
         user.orders.product  products  GET /products?ids={keys}  batched (max 2)  after user.orders  no cache  2 calls\n\
         user.orders.detail  orders  GET /details/{parent.id}  once per item of user.orders  after user.orders  no cache  3 calls\n\
         predicted upstream calls: 7\n"
    );
    let (code, stdout, stderr) = explain(&dir, &["--operation", "Other", "-"], QUERY);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "settings  users  GET /settings  cache 60s  1 call\npredicted upstream calls: 1\n"
    );
    assert_eq!(shop.calls_received().await, 0);
}

#[tokio::test]
async fn conflux_explain_reports_a_bad_document_with_its_position() {
    let shop = Shop::start("").await;
    let dir = project(&shop);
    dir.write("bad.graphql", "{\n  user(id: \"u1\") { nope }\n}\n");
    let (code, stdout, stderr) = explain(&dir, &["bad.graphql"], "");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.starts_with("bad.graphql:2:"), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
    // Several operations and none named.
    let (code, _, stderr) = explain(&dir, &["page.graphql"], "");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("operationName"), "{stderr}");
    let (code, _, stderr) = explain(&dir, &["--variables", "[1]", "page.graphql"], "");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--variables"), "{stderr}");
    assert_eq!(shop.calls_received().await, 0);
}
