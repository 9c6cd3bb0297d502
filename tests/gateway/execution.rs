//! docs/CONFIG.md, last paragraphs: sibling fields and list items resolve
//! concurrently, top-level mutation fields one after another in document
//! order, and identical GETs within one operation are made once.
//!
//! Timing bounds are generous (a busy 2-core machine) but still far below
//! what a serial execution would take.

use std::time::Instant;

use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_root_fields_are_resolved_concurrently() {
    let left = MockServer::start().await;
    let right = MockServer::start().await;
    serve_times(
        &left,
        "GET",
        "/a",
        json_reply(json!({"id": "a"})).set_delay(ms(300)),
        1,
    )
    .await;
    serve_times(
        &right,
        "GET",
        "/b",
        json_reply(json!({"id": "b"})).set_delay(ms(300)),
        1,
    )
    .await;
    let gateway = TestGateway::builder()
        .schema("type Query { a: Thing b: Thing }\ntype Thing { id: ID! }")
        .config(
            r#"
[services.left]
url = "{left}"

[services.right]
url = "{right}"

[resolvers]
"Query.a" = { service = "left", get = "/a" }
"Query.b" = { service = "right", get = "/b" }
"#,
        )
        .upstream("left", &left)
        .upstream("right", &right)
        .start()
        .await;

    let started = Instant::now();
    let reply = gateway.post("{ a { id } b { id } }").await;
    let elapsed = started.elapsed();

    assert_eq!(
        reply.json(),
        json!({"data": {"a": {"id": "a"}, "b": {"id": "b"}}})
    );
    assert!(
        elapsed < ms(550),
        "two 300 ms siblings took {elapsed:?}: not concurrent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_of_a_list_are_resolved_concurrently() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users",
        json_reply(json!([
            {"id": "1"}, {"id": "2"}, {"id": "3"}, {"id": "4"}, {"id": "5"}
        ])),
    )
    .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/users/[0-9]+/orders$"))
        .respond_with(json_reply(json!([{"id": "o"}])).set_delay(ms(300)))
        .expect(5)
        .mount(&users)
        .await;
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { users: [User!]! }
type User { id: ID! orders: [Order!]! }
type Order { id: ID! }
"#,
        )
        .config(
            r#"
[services.users]
url = "{users}"

[resolvers]
"Query.users" = { service = "users", get = "/users" }
"User.orders" = { service = "users", get = "/users/{parent.id}/orders" }
"#,
        )
        .upstream("users", &users)
        .start()
        .await;

    let started = Instant::now();
    let reply = gateway.post("{ users { id orders { id } } }").await;
    let elapsed = started.elapsed();

    let users_json: Vec<_> = (1..=5)
        .map(|i| json!({"id": i.to_string(), "orders": [{"id": "o"}]}))
        .collect();
    assert_eq!(reply.json(), json!({"data": {"users": users_json}}));
    assert!(
        elapsed < ms(900),
        "5 items × 300 ms took {elapsed:?}: not concurrent"
    );
    let mut lines = request_lines(&received(&users).await);
    lines.sort();
    assert_eq!(
        lines,
        [
            "GET /users",
            "GET /users/1/orders",
            "GET /users/2/orders",
            "GET /users/3/orders",
            "GET /users/4/orders",
            "GET /users/5/orders"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_mutation_fields_run_one_after_another_in_document_order() {
    let things = MockServer::start().await;
    let arrivals = Arrivals::answering(json_reply(json!({"id": "t"})).set_delay(ms(250)));
    Mock::given(method("POST"))
        .and(path("/things"))
        .respond_with(arrivals.clone())
        .mount(&things)
        .await;
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { ping: String }
type Mutation { create(name: String!): Thing }
type Thing { id: ID! }
"#,
        )
        .config(
            r#"
[services.things]
url = "{things}"

[resolvers]
"Query.ping"      = { service = "things", get = "/ping" }
"Mutation.create" = { service = "things", post = "/things", body = { name = "{args.name}" } }
"#,
        )
        .upstream("things", &things)
        .start()
        .await;

    let reply = gateway
        .post(r#"mutation { z: create(name: "one") { id } a: create(name: "two") { id } m: create(name: "three") { id } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"z": {"id": "t"}, "a": {"id": "t"}, "m": {"id": "t"}}})
    );
    let log = arrivals.log();
    let names: Vec<String> = log
        .iter()
        .map(|(_, request)| {
            body_json(request)["name"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["one", "two", "three"], "document order");
    for pair in log.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(
            gap >= ms(250),
            "a mutation started {gap:?} after the previous one, which takes 250 ms: not serial"
        );
    }
}

#[tokio::test]
async fn identical_gets_within_one_operation_are_made_once() {
    let users = MockServer::start().await;
    serve_times(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
        1,
    )
    .await;
    serve_times(
        &users,
        "GET",
        "/users/2",
        json_reply(json!({"id": "2", "name": "Bo"})),
        1,
    )
    .await;
    let gateway = TestGateway::builder()
        .schema("type Query { user(id: ID!): User }\ntype User { id: ID! name: String }")
        .config(
            r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"#,
        )
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ a: user(id: "1") { name } b: user(id: "1") { id } c: user(id: "2") { name } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"a": {"name": "Ann"}, "b": {"id": "1"}, "c": {"name": "Bo"}}})
    );
}

#[tokio::test]
async fn identical_gets_from_different_parents_are_made_once() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/orders",
        json_reply(json!([
            {"id": "o1", "userId": "1"},
            {"id": "o2", "userId": "1"},
            {"id": "o3", "userId": "2"}
        ])),
    )
    .await;
    serve_times(
        &shop,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
        1,
    )
    .await;
    serve_times(
        &shop,
        "GET",
        "/users/2",
        json_reply(json!({"id": "2", "name": "Bo"})),
        1,
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { orders: [Order!]! }
type Order { id: ID! owner: User }
type User { id: ID! name: String }
"#,
        )
        .config(
            r#"
[services.shop]
url = "{shop}"

[resolvers]
"Query.orders" = { service = "shop", get = "/orders" }
"Order.owner"  = { service = "shop", get = "/users/{parent.userId}" }
"#,
        )
        .upstream("shop", &shop)
        .start()
        .await;

    let reply = gateway.post("{ orders { id owner { name } } }").await;

    assert_eq!(
        reply.json(),
        json!({"data": {"orders": [
            {"id": "o1", "owner": {"name": "Ann"}},
            {"id": "o2", "owner": {"name": "Ann"}},
            {"id": "o3", "owner": {"name": "Bo"}}
        ]}})
    );
}

#[tokio::test]
async fn the_same_get_in_two_operations_is_made_twice() {
    let users = MockServer::start().await;
    serve_times(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
        2,
    )
    .await;
    let gateway = TestGateway::builder()
        .schema("type Query { user(id: ID!): User }\ntype User { id: ID! name: String }")
        .config(
            r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"#,
        )
        .upstream("users", &users)
        .start()
        .await;

    for _ in 0..2 {
        let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;
        assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_keeps_what_resolved_and_times_out_the_rest() {
    let shop = MockServer::start().await;
    serve(&shop, "GET", "/fast", json_reply(json!({"id": "f"}))).await;
    serve(
        &shop,
        "GET",
        "/slow",
        json_reply(json!({"id": "s"})).set_delay(ms(3_000)),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema("type Query { fast: Thing slow: Thing }\ntype Thing { id: ID! }")
        .config(
            r#"
[limits]
request_timeout_ms = 300

[services.shop]
url = "{shop}"
timeout_ms = 10000

[resolvers]
"Query.fast" = { service = "shop", get = "/fast" }
"Query.slow" = { service = "shop", get = "/slow" }
"#,
        )
        .upstream("shop", &shop)
        .start()
        .await;

    let started = Instant::now();
    let reply = gateway.post("{ fast { id } slow { id } }").await;
    let elapsed = started.elapsed();

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"fast": {"id": "f"}, "slow": null}),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], json!("TIMEOUT"));
    assert_eq!(body["errors"][0]["path"], json!(["slow"]));
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1));
    assert!(elapsed < ms(1_500), "answered after {elapsed:?}");
}
