//! GraphQL execution semantics (GraphQL spec "Execution" and "Response",
//! docs/CONFIG.md "Upstream responses", docs/ERRORS.md), pinned against the real gateway and
//! real upstreams so that a new executor must answer exactly as this one:
//! merged response keys, aliases, `@skip`/`@include`, fragments and type
//! conditions, argument and variable defaults, null propagation, leaf
//! coercion inside lists, response field order, and variable coercion.
//!
//! Every test asserts the whole response (data and errors) and, where calls
//! matter, exactly which upstream requests were made. `serde_json::Value`
//! compares objects without their key order, so order is asserted
//! separately with [`keys_at`].

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

// ---- the shop ---------------------------------------------------------------

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  requiredUser(id: ID!): User!
  users(first: Int = 2): [User]
  node(id: ID!): Node
  search(text: String!): [SearchResult!]!
  grid: [[Int]]
  strictGrid: [[Int!]]
  filtered(filter: Filter): [User!]
  slow: Thing
  fast: Thing
  ping: String
}
input Filter {
  text: String
  limit: Int = 5
  paging: Paging
}
input Paging {
  size: Int = 10
  offset: Int
}
interface Node { id: ID! }
type User implements Node {
  id: ID!
  name: String
  email: String
  tier: Tier
  meta: JSON
  profile: Profile
  orders(first: Int = 2): [Order]
  lines: [Order!]!
}
type Profile { handle: String! bio: String }
type Order { id: ID! status: Status! total: Int tags: [Tier] product: Product }
enum Status { OPEN SHIPPED }
enum Tier { STANDARD GOLD }
type Product implements Node { id: ID! title: String price: Int! }
type Article { id: ID! headline: String }
union SearchResult = User | Product | Article
type Thing { id: ID! }
scalar JSON
"#;

const TOML: &str = r#"
[services.shop]
url = "{shop}"

[types.Node]
discriminator = "type"
map = { user = "User", product = "Product" }

[types.SearchResult]
discriminator = "type"
map = { user = "User", product = "Product", article = "Article" }

[resolvers]
"Query.user"         = { service = "shop", get = "/users/{args.id}" }
"Query.requiredUser" = { service = "shop", get = "/users/{args.id}" }
"Query.users"        = { service = "shop", get = "/users", query = { limit = "{args.first}" } }
"Query.node"         = { service = "shop", get = "/nodes/{args.id}" }
"Query.search"       = { service = "shop", get = "/search", query = { q = "{args.text}" } }
"Query.grid"         = { service = "shop", get = "/grid" }
"Query.strictGrid"   = { service = "shop", get = "/strict-grid" }
"Query.filtered"     = { service = "shop", get = "/filtered", query = { text = "{args.filter.text}", limit = "{args.filter.limit}", size = "{args.filter.paging.size}", offset = "{args.filter.paging.offset}" } }
"Query.slow"         = { service = "shop", get = "/slow" }
"Query.fast"         = { service = "shop", get = "/fast" }
"Query.ping"         = { service = "shop", get = "/ping" }
"User.orders"        = { service = "shop", get = "/users/{parent.id}/orders", query = { limit = "{args.first}" } }
"Order.product"      = { service = "shop", get = "/products/{parent.productId}", batch = { key = "{parent.productId}", get = "/products?ids={keys}", match = "id", max = 100 } }
"#;

async fn shop_gateway(shop: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(TOML)
        .upstream("shop", shop)
        .start()
        .await
}

/// `GET route` → 200 with `body`.
async fn answer(shop: &MockServer, route: &str, body: Value) {
    serve(shop, "GET", route, json_reply(body)).await;
}

/// `GET /users/1` → Ann, with every field `User` reads from its JSON.
async fn answer_ann(shop: &MockServer) {
    answer(
        shop,
        "/users/1",
        json!({
            "id": "1",
            "name": "Ann",
            "email": "ann@example.com",
            "tier": "GOLD",
            "profile": {"handle": "ann", "bio": "Hi"}
        }),
    )
    .await;
}

/// `GET /users/1/orders` → three good orders.
async fn answer_ann_orders(shop: &MockServer) {
    answer(
        shop,
        "/users/1/orders",
        json!([
            {"id": "o1", "status": "OPEN", "total": 10},
            {"id": "o2", "status": "SHIPPED", "total": 20},
            {"id": "o3", "status": "OPEN", "total": 30}
        ]),
    )
    .await;
}

/// The upstream requests made so far, as `METHOD /path?sorted=query`,
/// sorted (concurrent calls arrive in any order).
async fn calls(shop: &MockServer) -> Vec<String> {
    let mut lines = request_lines(&received(shop).await);
    lines.sort();
    lines
}

/// The one error of `body`, after checking there is exactly one.
fn only_error(body: &Value) -> &Value {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors in {body}"));
    assert_eq!(errors.len(), 1, "expected exactly one error: {body}");
    &errors[0]
}

/// Checks one error: its `path`, `extensions.code`, and a fragment of its
/// message.
fn assert_field_error(error: &Value, path: Value, code: &str, message_part: &str) {
    assert_eq!(error["path"], path, "{error}");
    assert_eq!(error["extensions"]["code"], json!(code), "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "the message should name `{message_part}`: {error}"
    );
}

/// Checks that the message of the first error holds `part`.
fn assert_first_message_contains(body: &Value, part: &str) {
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(part),
        "the message should name `{part}`: {body}"
    );
}

/// `errors`, sorted by path (concurrent fields fail in any order).
fn errors_by_path(body: &Value) -> Vec<Value> {
    let mut errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors in {body}"))
        .clone();
    errors.sort_by_key(|e| e["path"].to_string());
    errors
}

/// A JSON value that keeps the order of object keys.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ordered {
    Object(IndexMap<String, Ordered>),
    List(Vec<Ordered>),
    Leaf(serde::de::IgnoredAny),
}

/// The keys of the object at `at` (object keys, or list indices as
/// numbers), in the order the gateway wrote them.
fn keys_at(reply: &Reply, at: &[&str]) -> Vec<String> {
    let mut value: Ordered = serde_json::from_str(&reply.text)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", reply.text));
    for step in at {
        value = match value {
            Ordered::Object(mut map) => map
                .swap_remove(*step)
                .unwrap_or_else(|| panic!("no `{step}` on the way to {at:?}: {}", reply.text)),
            Ordered::List(mut items) => {
                let index: usize = step.parse().expect("a list index");
                assert!(index < items.len(), "no item {index}: {}", reply.text);
                items.swap_remove(index)
            }
            Ordered::Leaf(_) => panic!("{at:?} goes through a leaf: {}", reply.text),
        };
    }
    match value {
        Ordered::Object(map) => map.into_keys().collect(),
        _ => panic!("{at:?} is not an object: {}", reply.text),
    }
}

// ---- one response key selected twice ----------------------------------------

#[tokio::test]
async fn a_response_key_selected_twice_merges_into_one_object_in_first_seen_order() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer(&shop, "/ping", json!("pong")).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { name } ping user(id: "1") { email id name } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "user": {"name": "Ann", "email": "ann@example.com", "id": "1"},
            "ping": "pong"
        }})
    );
    assert_eq!(keys_at(&reply, &["data"]), ["user", "ping"]);
    assert_eq!(keys_at(&reply, &["data", "user"]), ["name", "email", "id"]);
    assert_eq!(
        calls(&shop).await,
        ["GET /ping", "GET /users/1"],
        "one call for both `user`"
    );
}

#[tokio::test]
async fn a_response_key_repeated_through_fragments_merges_with_the_direct_selection() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"
{
  user(id: "1") { ...Naming }
  user(id: "1") { email ... on User { name id } }
}
fragment Naming on User { name }
"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"name": "Ann", "email": "ann@example.com", "id": "1"}}})
    );
    assert_eq!(keys_at(&reply, &["data", "user"]), ["name", "email", "id"]);
    assert_eq!(calls(&shop).await, ["GET /users/1"]);
}

#[tokio::test]
async fn a_repeated_list_field_merges_its_items_field_by_field() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer_ann_orders(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { orders { id } name orders { status id } } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {
            "orders": [
                {"id": "o1", "status": "OPEN"},
                {"id": "o2", "status": "SHIPPED"},
                {"id": "o3", "status": "OPEN"}
            ],
            "name": "Ann"
        }}})
    );
    assert_eq!(keys_at(&reply, &["data", "user"]), ["orders", "name"]);
    assert_eq!(
        keys_at(&reply, &["data", "user", "orders", "1"]),
        ["id", "status"]
    );
    assert_eq!(
        calls(&shop).await,
        ["GET /users/1", "GET /users/1/orders?limit=2"]
    );
}

#[tokio::test]
async fn repeated_object_fields_merge_at_every_depth() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ user(id: "1") { profile { handle } } user(id: "1") { name profile { bio handle } } }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"profile": {"handle": "ann", "bio": "Hi"}, "name": "Ann"}}})
    );
    assert_eq!(keys_at(&reply, &["data", "user"]), ["profile", "name"]);
    assert_eq!(
        keys_at(&reply, &["data", "user", "profile"]),
        ["handle", "bio"]
    );
    assert_eq!(calls(&shop).await, ["GET /users/1"]);
}

#[tokio::test]
async fn a_skipped_occurrence_of_a_repeated_field_leaves_the_other_in_place() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let leaf = gateway
        .post(r#"{ user(id: "1") { email @skip(if: true) id email } }"#)
        .await;
    let object = gateway
        .post(r#"{ user(id: "1") @skip(if: true) { name } user(id: "1") { email } }"#)
        .await;

    assert_eq!(
        leaf.json(),
        json!({"data": {"user": {"email": "ann@example.com", "id": "1"}}}),
        "a skipped selection is not collected: `email` sits where its kept selection is"
    );
    assert_eq!(keys_at(&leaf, &["data", "user"]), ["id", "email"]);
    assert_eq!(
        object.json(),
        json!({"data": {"user": {"email": "ann@example.com"}}})
    );
}

#[tokio::test]
async fn one_response_key_with_different_arguments_is_a_validation_error_and_calls_nothing() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_with_headers(
            r#"{ user(id: "1") { name } user(id: "2") { name } }"#,
            &[("accept", "application/graphql-response+json")],
        )
        .await;

    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body.get("data"), None, "{body}");
    assert_eq!(error_codes(&body), ["GRAPHQL_VALIDATION_FAILED"], "{body}");
    assert_first_message_contains(&body, "conflict");
    assert!(calls(&shop).await.is_empty());
}

#[tokio::test]
async fn a_bad_leaf_under_a_response_key_selected_twice_is_reported_once() {
    let shop = MockServer::start().await;
    answer(&shop, "/users/1", json!({"id": "1", "name": 5})).await;
    answer(
        &shop,
        "/users/1/orders",
        json!([{"id": "o1", "status": "OPEN"}, {"id": "o2", "status": "LOST"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let root = gateway
        .post(r#"{ user(id: "1") { name } user(id: "1") { name } }"#)
        .await;
    let leaf = gateway.post(r#"{ user(id: "1") { name id name } }"#).await;
    let item = gateway
        .post(r#"{ user(id: "1") { orders { status } orders { id status } } }"#)
        .await;

    for reply in [&root, &leaf] {
        let body = reply.json();
        assert_eq!(body["data"]["user"]["name"], Value::Null, "{body}");
        assert_field_error(
            only_error(&body),
            json!(["user", "name"]),
            "UPSTREAM_BAD_RESPONSE",
            "User.name",
        );
    }
    assert_eq!(root.json()["data"], json!({"user": {"name": null}}));
    assert_eq!(
        leaf.json()["data"],
        json!({"user": {"name": null, "id": "1"}})
    );
    let body = item.json();
    assert_eq!(
        body["data"],
        json!({"user": {"orders": [{"status": "OPEN", "id": "o1"}, null]}}),
        "{body}"
    );
    assert_field_error(
        only_error(&body),
        json!(["user", "orders", 1, "status"]),
        "UPSTREAM_BAD_RESPONSE",
        "Order.status",
    );
}

// ---- aliases ----------------------------------------------------------------

#[tokio::test]
async fn aliases_rename_leaf_and_object_fields_beside_the_unaliased_field() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ person: user(id: "1") { fullName: name name about: profile { at: handle } } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"person": {"fullName": "Ann", "name": "Ann", "about": {"at": "ann"}}}})
    );
    assert_eq!(
        keys_at(&reply, &["data", "person"]),
        ["fullName", "name", "about"]
    );
    assert_eq!(calls(&shop).await, ["GET /users/1"]);
}

#[tokio::test]
async fn two_aliases_of_a_root_field_with_different_arguments_make_one_call_each() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer(&shop, "/users/2", json!({"id": "2", "name": "Bo"})).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ second: user(id: "2") { name } first: user(id: "1") { name } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"second": {"name": "Bo"}, "first": {"name": "Ann"}}})
    );
    assert_eq!(keys_at(&reply, &["data"]), ["second", "first"]);
    assert_eq!(calls(&shop).await, ["GET /users/1", "GET /users/2"]);
}

#[tokio::test]
async fn two_aliases_of_a_nested_list_field_with_different_arguments_make_one_call_each() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    Mock::given(method("GET"))
        .and(path("/users/1/orders"))
        .and(query_param("limit", "1"))
        .respond_with(json_reply(json!([{"id": "o1", "status": "OPEN"}])))
        .mount(&shop)
        .await;
    Mock::given(method("GET"))
        .and(path("/users/1/orders"))
        .and(query_param("limit", "3"))
        .respond_with(json_reply(json!([
            {"id": "o1", "status": "OPEN"},
            {"id": "o2", "status": "SHIPPED"},
            {"id": "o3", "status": "OPEN"}
        ])))
        .mount(&shop)
        .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ user(id: "1") { latest: orders(first: 1) { id } recent: orders(first: 3) { ref: id state: status } } }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {
            "latest": [{"id": "o1"}],
            "recent": [
                {"ref": "o1", "state": "OPEN"},
                {"ref": "o2", "state": "SHIPPED"},
                {"ref": "o3", "state": "OPEN"}
            ]
        }}})
    );
    assert_eq!(
        keys_at(&reply, &["data", "user", "recent", "2"]),
        ["ref", "state"]
    );
    assert_eq!(
        calls(&shop).await,
        [
            "GET /users/1",
            "GET /users/1/orders?limit=1",
            "GET /users/1/orders?limit=3"
        ]
    );
}

// ---- @skip and @include -----------------------------------------------------

#[tokio::test]
async fn skip_and_include_with_literal_conditions_on_fields() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ user(id: "1") { id @skip(if: true) name @skip(if: false) email @include(if: false) tier @include(if: true) } }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"name": "Ann", "tier": "GOLD"}}})
    );
    assert_eq!(keys_at(&reply, &["data", "user"]), ["name", "tier"]);
}

#[tokio::test]
async fn skip_and_include_with_variable_conditions_on_fields() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;
    let query = r#"query($yes: Boolean!, $no: Boolean!) {
  user(id: "1") { id @skip(if: $yes) name @skip(if: $no) email @include(if: $no) tier @include(if: $yes) }
}"#;

    let on = gateway
        .post_vars(query, json!({"yes": true, "no": false}))
        .await;
    let off = gateway
        .post_vars(query, json!({"yes": false, "no": true}))
        .await;

    assert_eq!(
        on.json(),
        json!({"data": {"user": {"name": "Ann", "tier": "GOLD"}}})
    );
    assert_eq!(
        off.json(),
        json!({"data": {"user": {"id": "1", "email": "ann@example.com"}}})
    );
}

#[tokio::test]
async fn a_field_with_skip_and_include_is_kept_only_when_skip_is_false_and_include_is_true() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;
    let query = r#"query($skip: Boolean!, $include: Boolean!) {
  user(id: "1") { id name @skip(if: $skip) @include(if: $include) }
}"#;

    for (skip, include, kept) in [
        (false, true, true),
        (false, false, false),
        (true, true, false),
        (true, false, false),
    ] {
        let reply = gateway
            .post_vars(query, json!({"skip": skip, "include": include}))
            .await;
        let expected = if kept {
            json!({"data": {"user": {"id": "1", "name": "Ann"}}})
        } else {
            json!({"data": {"user": {"id": "1"}}})
        };
        assert_eq!(reply.json(), expected, "skip {skip}, include {include}");
    }
}

#[tokio::test]
async fn skip_and_include_on_inline_fragments_and_fragment_spreads() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;
    let query = r#"query($on: Boolean!) {
  user(id: "1") {
    id
    ... @include(if: $on) { name }
    ... on User @skip(if: $on) { email }
    ...Tiering @include(if: $on)
    ...Profiled @skip(if: $on)
    ...Never @skip(if: true)
  }
}
fragment Tiering on User { tier }
fragment Profiled on User { profile { handle } }
fragment Never on User { meta }"#;

    let on = gateway.post_vars(query, json!({"on": true})).await;
    let off = gateway.post_vars(query, json!({"on": false})).await;

    assert_eq!(
        on.json(),
        json!({"data": {"user": {"id": "1", "name": "Ann", "tier": "GOLD"}}})
    );
    assert_eq!(keys_at(&on, &["data", "user"]), ["id", "name", "tier"]);
    assert_eq!(
        off.json(),
        json!({"data": {"user": {"id": "1", "email": "ann@example.com", "profile": {"handle": "ann"}}}})
    );
    assert_eq!(keys_at(&off, &["data", "user"]), ["id", "email", "profile"]);
}

#[tokio::test]
async fn a_skipped_field_that_has_a_call_makes_no_upstream_call() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer_ann_orders(&shop).await;
    answer(&shop, "/ping", json!("pong")).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_vars(
            r#"query($withOrders: Boolean!) {
  user(id: "1") { name orders @include(if: $withOrders) { id } }
  ping @skip(if: true)
  other: user(id: "2") @skip(if: true) { name }
}"#,
            json!({"withOrders": false}),
        )
        .await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    assert_eq!(calls(&shop).await, ["GET /users/1"]);
}

#[tokio::test]
async fn skip_applies_inside_the_items_of_a_list() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users",
        json!([{"id": "1", "name": "Ann"}, {"id": "2", "name": "Bo"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;
    let query = "query($hide: Boolean!) { users { id name @skip(if: $hide) } }";

    let hidden = gateway.post_vars(query, json!({"hide": true})).await;
    let shown = gateway.post_vars(query, json!({"hide": false})).await;

    assert_eq!(
        hidden.json(),
        json!({"data": {"users": [{"id": "1"}, {"id": "2"}]}})
    );
    assert_eq!(
        shown.json(),
        json!({"data": {"users": [{"id": "1", "name": "Ann"}, {"id": "2", "name": "Bo"}]}})
    );
}

// ---- fragments --------------------------------------------------------------

#[tokio::test]
async fn named_and_nested_fragments_expand_in_place() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer_ann_orders(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"
{ user(id: "1") { ...Card } }
fragment Card on User { id ...Contact orders { ...Line } tier }
fragment Contact on User { name email }
fragment Line on Order { id ...State }
fragment State on Order { status }
"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {
            "id": "1",
            "name": "Ann",
            "email": "ann@example.com",
            "orders": [
                {"id": "o1", "status": "OPEN"},
                {"id": "o2", "status": "SHIPPED"},
                {"id": "o3", "status": "OPEN"}
            ],
            "tier": "GOLD"
        }}})
    );
    assert_eq!(
        keys_at(&reply, &["data", "user"]),
        ["id", "name", "email", "orders", "tier"]
    );
    assert_eq!(
        keys_at(&reply, &["data", "user", "orders", "0"]),
        ["id", "status"]
    );
}

#[tokio::test]
async fn an_inline_fragment_without_a_type_condition_adds_its_fields_in_place() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { ... { name } id ... { email } } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"name": "Ann", "id": "1", "email": "ann@example.com"}}})
    );
    assert_eq!(keys_at(&reply, &["data", "user"]), ["name", "id", "email"]);
}

#[tokio::test]
async fn type_conditions_on_an_interface_value_select_by_its_concrete_type() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/nodes/u1",
        json!({"type": "user", "id": "u1", "name": "Ann", "title": "not a Product"}),
    )
    .await;
    answer(
        &shop,
        "/nodes/p1",
        json!({"type": "product", "id": "p1", "title": "Lamp", "name": "not a User"}),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{
  a: node(id: "u1") { __typename id ... on User { name } ... on Product { title } }
  b: node(id: "p1") { __typename id ... on User { name } ...ProductTitle }
}
fragment ProductTitle on Product { title }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "a": {"__typename": "User", "id": "u1", "name": "Ann"},
            "b": {"__typename": "Product", "id": "p1", "title": "Lamp"}
        }})
    );
}

#[tokio::test]
async fn type_conditions_on_a_union_value_accept_object_and_interface_conditions() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/search",
        json!([
            {"type": "user", "id": "u1", "name": "Ann"},
            {"type": "product", "id": "p1", "title": "Lamp"},
            {"type": "article", "id": "a1", "headline": "News"}
        ]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ search(text: "x") { __typename ... on Node { id } ... on User { name } ... on Article { headline } } }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"search": [
            {"__typename": "User", "id": "u1", "name": "Ann"},
            {"__typename": "Product", "id": "p1"},
            {"__typename": "Article", "headline": "News"}
        ]}}),
        "`... on Node` applies to the members implementing Node, not to Article"
    );
    assert_eq!(
        keys_at(&reply, &["data", "search", "0"]),
        ["__typename", "id", "name"]
    );
    assert_eq!(calls(&shop).await, ["GET /search?q=x"]);
}

#[tokio::test]
async fn a_fragment_on_an_interface_spreads_into_a_selection_on_an_implementing_object() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ user(id: "1") { ...NodeId name ... on Node { __typename } } }
fragment NodeId on Node { id }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "1", "name": "Ann", "__typename": "User"}}})
    );
    assert_eq!(
        keys_at(&reply, &["data", "user"]),
        ["id", "name", "__typename"]
    );
}

#[tokio::test]
async fn type_conditions_on_an_interface_apply_to_every_item_of_an_object_list() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users",
        json!([{"id": "1", "name": "Ann"}, {"id": "2", "name": "Bo"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ users { ... on Node { id } ...Named ... on Node { __typename } } }
fragment Named on User { name }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"users": [
            {"id": "1", "name": "Ann", "__typename": "User"},
            {"id": "2", "name": "Bo", "__typename": "User"}
        ]}}),
        "User implements Node: both `... on Node` apply to every item"
    );
    assert_eq!(
        keys_at(&reply, &["data", "users", "1"]),
        ["id", "name", "__typename"]
    );
}

#[tokio::test]
async fn typename_names_the_concrete_type_of_roots_objects_interfaces_and_unions() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer(&shop, "/nodes/p1", json!({"type": "product", "id": "p1"})).await;
    answer(
        &shop,
        "/search",
        json!([{"type": "article", "id": "a1"}, {"type": "user", "id": "u1"}]),
    )
    .await;
    answer(&shop, "/users", json!([{"id": "1"}, {"id": "2"}])).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{
  __typename
  user(id: "1") { __typename kind: __typename }
  node(id: "p1") { __typename }
  search(text: "x") { __typename }
  users { __typename id }
}"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "__typename": "Query",
            "user": {"__typename": "User", "kind": "User"},
            "node": {"__typename": "Product"},
            "search": [{"__typename": "Article"}, {"__typename": "User"}],
            "users": [{"__typename": "User", "id": "1"}, {"__typename": "User", "id": "2"}]
        }})
    );
}

#[tokio::test]
async fn a_typename_only_query_makes_no_upstream_call() {
    let shop = MockServer::start().await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ __typename alias: __typename }").await;

    assert_eq!(
        reply.json(),
        json!({"data": {"__typename": "Query", "alias": "Query"}})
    );
    assert!(calls(&shop).await.is_empty());
}

// ---- argument and variable defaults -----------------------------------------

#[tokio::test]
async fn an_omitted_argument_takes_its_sdl_default_at_the_root_and_below() {
    let shop = MockServer::start().await;
    answer(&shop, "/users", json!([{"id": "1"}])).await;
    answer(&shop, "/users/1/orders", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ users { id orders { id } } }").await;

    assert_eq!(
        reply.json(),
        json!({"data": {"users": [{"id": "1", "orders": []}]}})
    );
    assert_eq!(
        calls(&shop).await,
        ["GET /users/1/orders?limit=2", "GET /users?limit=2"]
    );
}

#[tokio::test]
async fn a_variable_default_applies_when_the_variable_is_not_given() {
    let shop = MockServer::start().await;
    answer(&shop, "/users", json!([])).await;
    let gateway = shop_gateway(&shop).await;
    let query = "query($n: Int = 3) { users(first: $n) { id } }";

    let defaulted = gateway.post_vars(query, json!({})).await;
    let given = gateway.post_vars(query, json!({"n": 5})).await;

    assert_eq!(defaulted.json(), json!({"data": {"users": []}}));
    assert_eq!(given.json(), json!({"data": {"users": []}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        ["GET /users?limit=3", "GET /users?limit=5"]
    );
}

#[tokio::test]
async fn an_explicit_null_argument_replaces_the_default_and_leaves_the_parameter_out() {
    let shop = MockServer::start().await;
    answer(&shop, "/users", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let literal = gateway.post("{ users(first: null) { id } }").await;
    let variable = gateway
        .post_vars(
            "query($n: Int = 3) { users(first: $n) { id } }",
            json!({"n": null}),
        )
        .await;

    assert_eq!(literal.json(), json!({"data": {"users": []}}));
    assert_eq!(variable.json(), json!({"data": {"users": []}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        ["GET /users", "GET /users"],
        "(null as a literal, null as a variable with a default)"
    );
}

#[tokio::test]
async fn an_unprovided_variable_without_a_default_leaves_the_argument_to_its_sdl_default() {
    let shop = MockServer::start().await;
    answer(&shop, "/users", json!([])).await;
    answer_ann(&shop).await;
    answer(&shop, "/users/1/orders", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let root = gateway
        .post_vars("query($n: Int) { users(first: $n) { id } }", json!({}))
        .await;
    let nested = gateway
        .post_vars(
            r#"query($n: Int) { user(id: "1") { orders(first: $n) { id } } }"#,
            json!({}),
        )
        .await;
    let given = gateway
        .post_vars(
            "query($n: Int) { users(first: $n) { id } }",
            json!({"n": 4}),
        )
        .await;

    assert_eq!(root.json(), json!({"data": {"users": []}}));
    assert_eq!(nested.json(), json!({"data": {"user": {"orders": []}}}));
    assert_eq!(given.json(), json!({"data": {"users": []}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        [
            "GET /users?limit=2",
            "GET /users/1",
            "GET /users/1/orders?limit=2",
            "GET /users?limit=4"
        ],
        "an unprovided variable is not null: the argument is absent and `first` defaults to 2"
    );
}

#[tokio::test]
async fn an_unprovided_variable_inside_an_input_object_leaves_the_field_to_its_sdl_default() {
    let shop = MockServer::start().await;
    answer(&shop, "/filtered", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let top = gateway
        .post_vars(
            r#"query($l: Int) { filtered(filter: {text: "a", limit: $l}) { id } }"#,
            json!({}),
        )
        .await;
    let nested = gateway
        .post_vars(
            r#"query($s: Int, $o: Int) { filtered(filter: {text: "b", paging: {size: $s, offset: $o}}) { id } }"#,
            json!({"o": 4}),
        )
        .await;
    let given = gateway
        .post_vars(
            r#"query($l: Int) { filtered(filter: {text: "c", limit: $l}) { id } }"#,
            json!({"l": 1}),
        )
        .await;

    for reply in [&top, &nested, &given] {
        assert_eq!(reply.json(), json!({"data": {"filtered": []}}));
    }
    assert_eq!(
        request_lines(&received(&shop).await),
        [
            "GET /filtered?limit=5&text=a",
            "GET /filtered?limit=5&offset=4&size=10&text=b",
            "GET /filtered?limit=1&text=c"
        ],
        "`Filter.limit` defaults to 5 and `Paging.size` to 10 when their variable is not given"
    );
}

// ---- null propagation -------------------------------------------------------

#[tokio::test]
async fn a_null_non_null_leaf_in_a_list_item_nulls_only_that_item() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer(
        &shop,
        "/users/1/orders",
        json!([
            {"id": "o1", "status": "OPEN"},
            {"id": "o2", "status": null},
            {"id": "o3", "status": "SHIPPED"}
        ]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { name orders { id status } } }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"user": {"name": "Ann", "orders": [
            {"id": "o1", "status": "OPEN"},
            null,
            {"id": "o3", "status": "SHIPPED"}
        ]}}),
        "{body}"
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["user", "orders", 1, "status"]),
        "UPSTREAM_BAD_RESPONSE",
        "Order.status",
    );
}

#[tokio::test]
async fn a_null_non_null_leaf_nulls_its_nullable_parent_object() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users/1",
        json!({"id": "1", "name": "Ann", "profile": {"bio": "Hi"}}),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { name profile { bio handle } id } }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"user": {"name": "Ann", "profile": null, "id": "1"}}),
        "{body}"
    );
    assert_eq!(
        keys_at(&reply, &["data", "user"]),
        ["name", "profile", "id"]
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["user", "profile", "handle"]),
        "UPSTREAM_BAD_RESPONSE",
        "Profile.handle",
    );
}

#[tokio::test]
async fn a_null_propagates_through_non_null_items_and_lists_to_the_nearest_nullable_field() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users/1",
        json!({"id": "1", "lines": [
            {"id": "o1", "status": "OPEN"},
            {"id": "o2", "status": null}
        ]}),
    )
    .await;
    answer(&shop, "/ping", json!("pong")).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { id lines { id status } } ping }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"user": null, "ping": "pong"}),
        "[Order!]! and Order.status: Status! are all non-null up to `user`: {body}"
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["user", "lines", 1, "status"]),
        "UPSTREAM_BAD_RESPONSE",
        "Order.status",
    );
}

#[tokio::test]
async fn a_failing_non_null_root_field_nulls_the_whole_data() {
    let shop = MockServer::start().await;
    serve(&shop, "GET", "/users/1", ResponseTemplate::new(500)).await;
    answer(&shop, "/ping", json!("pong")).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ ping requiredUser(id: "1") { id } }"#)
        .await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["data"], Value::Null, "{body}");
    assert!(body.as_object().is_some_and(|b| b.contains_key("data")));
    let error = only_error(&body);
    assert_field_error(error, json!(["requiredUser"]), "UPSTREAM_ERROR", "500");
    assert_eq!(error["extensions"]["service"], json!("shop"));
    assert_eq!(error["extensions"]["status"], json!(500));
}

#[tokio::test]
async fn a_null_non_null_leaf_under_a_non_null_root_field_nulls_the_whole_data() {
    let shop = MockServer::start().await;
    answer(&shop, "/users/1", json!({"name": "Ann"})).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ requiredUser(id: "1") { name id } }"#)
        .await;

    let body = reply.json();
    assert_eq!(body["data"], Value::Null, "{body}");
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["requiredUser", "id"]),
        "UPSTREAM_BAD_RESPONSE",
        "User.id",
    );
}

#[tokio::test]
async fn errors_in_two_sibling_root_fields_are_both_reported() {
    let shop = MockServer::start().await;
    serve(&shop, "GET", "/users/1", ResponseTemplate::new(500)).await;
    serve(
        &shop,
        "GET",
        "/users/2",
        ResponseTemplate::new(200).set_body_raw("<html>", "text/html"),
    )
    .await;
    answer(&shop, "/ping", json!("pong")).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ a: user(id: "1") { name } b: user(id: "2") { name } ping }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"a": null, "b": null, "ping": "pong"}),
        "{body}"
    );
    let errors = errors_by_path(&body);
    assert_eq!(errors.len(), 2, "{body}");
    assert_field_error(&errors[0], json!(["a"]), "UPSTREAM_ERROR", "500");
    assert_field_error(
        &errors[1],
        json!(["b"]),
        "UPSTREAM_BAD_RESPONSE",
        "not JSON",
    );
}

#[tokio::test]
async fn errors_in_two_sibling_leaves_of_one_object_are_both_reported() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users/1",
        json!({"id": "1", "name": 5, "email": "ann@example.com", "tier": "PLATINUM"}),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { tier email name } }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"user": {"tier": null, "email": "ann@example.com", "name": null}}),
        "{body}"
    );
    assert_eq!(
        keys_at(&reply, &["data", "user"]),
        ["tier", "email", "name"]
    );
    let errors = errors_by_path(&body);
    assert_eq!(errors.len(), 2, "{body}");
    assert_field_error(
        &errors[0],
        json!(["user", "name"]),
        "UPSTREAM_BAD_RESPONSE",
        "User.name",
    );
    assert_field_error(
        &errors[1],
        json!(["user", "tier"]),
        "UPSTREAM_BAD_RESPONSE",
        "User.tier",
    );
}

#[tokio::test]
async fn a_null_item_of_a_nullable_list_stays_null_without_an_error() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users",
        json!([{"id": "1", "name": "Ann"}, null, {"id": "3", "name": "Cy"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ users { id name } }").await;

    assert_eq!(
        reply.json(),
        json!({"data": {"users": [{"id": "1", "name": "Ann"}, null, {"id": "3", "name": "Cy"}]}})
    );
}

#[tokio::test]
async fn error_paths_use_response_keys_and_errors_locate_their_field_in_the_document() {
    let shop = MockServer::start().await;
    answer(&shop, "/users/1", json!({"id": "1", "name": 5})).await;
    answer(
        &shop,
        "/users/1/orders",
        json!([{"id": "o1", "status": "OPEN"}, {"id": "o2", "status": "LOST"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{
  person: user(id: "1") {
    label: name
    recent: orders { state: status }
  }
}"#,
        )
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"person": {"label": null, "recent": [{"state": "OPEN"}, null]}}),
        "{body}"
    );
    let errors = errors_by_path(&body);
    assert_eq!(errors.len(), 2, "{body}");
    assert_field_error(
        &errors[0],
        json!(["person", "label"]),
        "UPSTREAM_BAD_RESPONSE",
        "User.name",
    );
    assert_eq!(errors[0]["locations"], json!([{"line": 3, "column": 5}]));
    assert_field_error(
        &errors[1],
        json!(["person", "recent", 1, "state"]),
        "UPSTREAM_BAD_RESPONSE",
        "Order.status",
    );
    assert_eq!(errors[1]["locations"], json!([{"line": 4, "column": 22}]));
}

#[tokio::test]
async fn a_failed_call_of_one_list_item_is_an_error_at_that_item_only() {
    let shop = MockServer::start().await;
    answer(&shop, "/users", json!([{"id": "1"}, {"id": "2"}])).await;
    answer(
        &shop,
        "/users/1/orders",
        json!([{"id": "o1", "status": "OPEN"}]),
    )
    .await;
    serve(&shop, "GET", "/users/2/orders", ResponseTemplate::new(500)).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ users { id orders { id } } }").await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"users": [
            {"id": "1", "orders": [{"id": "o1"}]},
            {"id": "2", "orders": null}
        ]}),
        "{body}"
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["users", 1, "orders"]),
        "UPSTREAM_ERROR",
        "500",
    );
    assert_eq!(error["extensions"]["service"], json!("shop"));
    assert_eq!(error["extensions"]["status"], json!(500));
}

// ---- leaf coercion at depth -------------------------------------------------

#[tokio::test]
async fn a_list_of_lists_of_ints_keeps_its_shape_and_null_items() {
    let shop = MockServer::start().await;
    answer(&shop, "/grid", json!([[1, 2], null, [], [3, null]])).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ grid }").await;

    assert_eq!(
        reply.json(),
        json!({"data": {"grid": [[1, 2], null, [], [3, null]]}})
    );
}

#[tokio::test]
async fn a_bad_leaf_deep_in_a_list_of_lists_is_nulled_with_an_error_at_its_path() {
    let shop = MockServer::start().await;
    answer(&shop, "/grid", json!([[1, 2], [3, "four", 5]])).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ grid }").await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"grid": [[1, 2], [3, null, 5]]}),
        "{body}"
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["grid", 1, 1]),
        "UPSTREAM_BAD_RESPONSE",
        "Query.grid",
    );
}

#[tokio::test]
async fn a_bad_leaf_in_an_inner_list_of_non_null_items_nulls_that_inner_list() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/strict-grid",
        json!([[1, 2], [3, 2_147_483_648_i64]]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ strictGrid }").await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"strictGrid": [[1, 2], null]}),
        "{body}"
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["strictGrid", 1, 1]),
        "UPSTREAM_BAD_RESPONSE",
        "Query.strictGrid",
    );
}

#[tokio::test]
async fn ids_enums_and_custom_scalars_are_coerced_inside_list_items() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users",
        json!([
            {"id": 7, "tier": "GOLD", "meta": {"a": [1, {"b": null}], "c": "x"}},
            {"id": "8", "tier": "STANDARD", "meta": [true, 2.5]}
        ]),
    )
    .await;
    answer(
        &shop,
        "/users/1/orders",
        json!([{"id": 42, "status": "SHIPPED", "tags": ["GOLD", null, "STANDARD"]}]),
    )
    .await;
    answer(
        &shop,
        "/users/1",
        json!({"id": 1, "meta": {"deep": {"x": [null]}}}),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ users { id tier meta } user(id: "1") { id meta orders { id status tags } } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "users": [
                {"id": "7", "tier": "GOLD", "meta": {"a": [1, {"b": null}], "c": "x"}},
                {"id": "8", "tier": "STANDARD", "meta": [true, 2.5]}
            ],
            "user": {
                "id": "1",
                "meta": {"deep": {"x": [null]}},
                "orders": [{"id": "42", "status": "SHIPPED", "tags": ["GOLD", null, "STANDARD"]}]
            }
        }})
    );
}

#[tokio::test]
async fn an_unknown_enum_value_in_a_list_item_is_an_error_at_that_leaf() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users",
        json!([{"id": "1", "tier": "GOLD"}, {"id": "2", "tier": "PLATINUM"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ users { id tier } }").await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"users": [{"id": "1", "tier": "GOLD"}, {"id": "2", "tier": null}]}),
        "{body}"
    );
    let error = only_error(&body);
    assert_field_error(
        error,
        json!(["users", 1, "tier"]),
        "UPSTREAM_BAD_RESPONSE",
        "User.tier",
    );
}

// ---- batched fields under the same rules ------------------------------------

/// `GET /users/1/orders` → three orders of two products, and
/// `GET /products?ids=…` → both products; p2 has no `price` when
/// `p2_price` is null.
async fn answer_orders_with_products(shop: &MockServer, p2_price: Value) {
    answer(
        shop,
        "/users/1/orders",
        json!([
            {"id": "o1", "status": "OPEN", "productId": "p1"},
            {"id": "o2", "status": "SHIPPED", "productId": "p2"},
            {"id": "o3", "status": "OPEN", "productId": "p1"}
        ]),
    )
    .await;
    answer(
        shop,
        "/products",
        json!([
            {"id": "p1", "title": "Lamp", "price": 12},
            {"id": "p2", "title": "Desk", "price": p2_price}
        ]),
    )
    .await;
}

/// The product ids each batched `/products` call asked for, sorted.
async fn product_batches(shop: &MockServer) -> Vec<Vec<String>> {
    received(shop)
        .await
        .iter()
        .filter(|r| r.url.path() == "/products")
        .map(|r| {
            let mut ids: Vec<String> = query_pairs(r)
                .into_iter()
                .filter(|(k, _)| k == "ids")
                .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
                .collect();
            ids.sort();
            ids
        })
        .collect()
}

#[tokio::test]
async fn a_batched_field_selected_twice_and_aliased_merges_and_is_fetched_in_one_call() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer_orders_with_products(&shop, json!(30)).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"{ user(id: "1") { orders { product { id } id item: product { price } product { title } } } }"#,
        )
        .await;

    let lamp = json!({"id": "p1", "title": "Lamp"});
    let desk = json!({"id": "p2", "title": "Desk"});
    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"orders": [
            {"product": lamp, "id": "o1", "item": {"price": 12}},
            {"product": desk, "id": "o2", "item": {"price": 30}},
            {"product": lamp, "id": "o3", "item": {"price": 12}}
        ]}}})
    );
    assert_eq!(
        keys_at(&reply, &["data", "user", "orders", "1"]),
        ["product", "id", "item"]
    );
    assert_eq!(
        keys_at(&reply, &["data", "user", "orders", "1", "product"]),
        ["id", "title"]
    );
    assert_eq!(product_batches(&shop).await, [["p1", "p2"]]);
}

#[tokio::test]
async fn a_skipped_batched_field_makes_no_call() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer_orders_with_products(&shop, json!(30)).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_vars(
            r#"query($withProduct: Boolean!) { user(id: "1") { orders { id product @include(if: $withProduct) { title } } } }"#,
            json!({"withProduct": false}),
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"orders": [{"id": "o1"}, {"id": "o2"}, {"id": "o3"}]}}})
    );
    assert_eq!(
        calls(&shop).await,
        ["GET /users/1", "GET /users/1/orders?limit=2"]
    );
}

#[tokio::test]
async fn a_null_non_null_leaf_of_a_batched_item_nulls_that_field_of_that_list_item_only() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    answer_orders_with_products(&shop, Value::Null).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { orders { id product { title price } } } }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"user": {"orders": [
            {"id": "o1", "product": {"title": "Lamp", "price": 12}},
            {"id": "o2", "product": null},
            {"id": "o3", "product": {"title": "Lamp", "price": 12}}
        ]}}),
        "{body}"
    );
    assert_field_error(
        only_error(&body),
        json!(["user", "orders", 1, "product", "price"]),
        "UPSTREAM_BAD_RESPONSE",
        "Product.price",
    );
    assert_eq!(product_batches(&shop).await, [["p1", "p2"]]);
}

/// Ann, her `orders` and the batched `/products` answer `products`.
async fn answer_ann_orders_and_products(shop: &MockServer, orders: Value, products: Value) {
    answer_ann(shop).await;
    answer(shop, "/users/1/orders", orders).await;
    answer(shop, "/products", products).await;
}

#[tokio::test]
async fn a_bad_value_in_a_batched_answer_shared_by_two_items_is_reported_at_each() {
    // o1 and o3 share p2's answer: the writer copies a shared answer it
    // wrote before, but not one that reported an error (errors carry the
    // path).
    let shop = MockServer::start().await;
    answer_ann_orders_and_products(
        &shop,
        json!([
            {"id": "o1", "status": "OPEN", "productId": "p2"},
            {"id": "o2", "status": "OPEN", "productId": "p1"},
            {"id": "o3", "status": "OPEN", "productId": "p2"}
        ]),
        json!([{"id": "p1", "title": "Lamp", "price": 12}, {"id": "p2", "title": "Desk", "price": "dear"}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let body = gateway
        .post(r#"{ user(id: "1") { orders(first: 3) { id product { title price } } } }"#)
        .await
        .json();

    assert_eq!(
        body["data"],
        json!({"user": {"orders": [
            {"id": "o1", "product": null},
            {"id": "o2", "product": {"title": "Lamp", "price": 12}},
            {"id": "o3", "product": null}
        ]}}),
        "{body}"
    );
    let paths: Vec<Value> = errors_by_path(&body)
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            json!(["user", "orders", 0, "product", "price"]),
            json!(["user", "orders", 2, "product", "price"])
        ],
        "{body}"
    );
    assert_eq!(product_batches(&shop).await, [["p1", "p2"]]);
}

#[tokio::test]
async fn a_shared_batched_answer_stays_whole_after_an_item_that_held_it_was_nulled() {
    // o1 writes p1's product, then its non-null status fails and o1 is
    // cut back to null; o3 shares p1's answer and must write it in full,
    // not copy the cut bytes.
    let shop = MockServer::start().await;
    answer_ann_orders_and_products(
        &shop,
        json!([
            {"id": "o1", "status": null, "productId": "p1"},
            {"id": "o2", "status": "SHIPPED", "productId": "p2"},
            {"id": "o3", "status": "OPEN", "productId": "p1"}
        ]),
        json!([{"id": "p1", "title": "Lamp", "price": 12}, {"id": "p2", "title": "Desk", "price": 30}]),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let body = gateway
        .post(r#"{ user(id: "1") { orders(first: 3) { product { title price } status } } }"#)
        .await
        .json();

    assert_eq!(
        body["data"],
        json!({"user": {"orders": [
            null,
            {"product": {"title": "Desk", "price": 30}, "status": "SHIPPED"},
            {"product": {"title": "Lamp", "price": 12}, "status": "OPEN"}
        ]}}),
        "{body}"
    );
    assert_field_error(
        only_error(&body),
        json!(["user", "orders", 0, "status"]),
        "UPSTREAM_BAD_RESPONSE",
        "Order.status",
    );
}

// ---- the service behind a bad upstream value --------------------------------

/// `toml` with the resolver of `field` moved from `shop` to `service`
/// (whose `[services.…]` table is added, at URL `{service}`).
fn served_by(toml: &str, field: &str, service: &str) -> String {
    let key = format!("\"{field}\"");
    let line = toml
        .lines()
        .find(|line| line.starts_with(&key))
        .unwrap_or_else(|| panic!("no resolver for {field}"));
    let moved = line.replace(r#"service = "shop""#, &format!(r#"service = "{service}""#));
    assert_ne!(moved, line, "{field} is not served by shop");
    format!(
        "{}\n[services.{service}]\nurl = \"{{{service}}}\"\n",
        toml.replace(line, &moved)
    )
}

/// The shop with `User.orders` served by service `orders` and
/// `Order.product` (batched) by service `catalog`.
async fn three_service_gateway(
    shop: &MockServer,
    orders: &MockServer,
    catalog: &MockServer,
) -> TestGateway {
    let toml = served_by(
        &served_by(TOML, "User.orders", "orders"),
        "Order.product",
        "catalog",
    );
    TestGateway::builder()
        .schema(SDL)
        .config(&toml)
        .upstream("shop", shop)
        .upstream("orders", orders)
        .upstream("catalog", catalog)
        .start()
        .await
}

/// Checks that `error` names `service` as the one whose answer held the
/// bad value.
fn assert_service(error: &Value, service: &str) {
    assert_eq!(error["extensions"]["service"], json!(service), "{error}");
}

#[tokio::test]
async fn a_bad_value_read_from_a_parents_json_names_the_service_of_the_nearest_call_above() {
    let shop = MockServer::start().await;
    let orders = MockServer::start().await;
    let catalog = MockServer::start().await;
    answer(&shop, "/ping", json!(5)).await;
    answer(
        &shop,
        "/users/1",
        json!({"id": "1", "name": 5, "profile": {"bio": "Hi"}}),
    )
    .await;
    answer(
        &orders,
        "/users/1/orders",
        json!([
            {"id": "o1", "status": "OPEN", "total": "ten"},
            {"id": "o2", "status": null, "total": 20}
        ]),
    )
    .await;
    let gateway = three_service_gateway(&shop, &orders, &catalog).await;

    let reply = gateway
        .post(r#"{ ping user(id: "1") { name profile { handle } orders { id status total } } }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({
            "ping": null,
            "user": {
                "name": null,
                "profile": null,
                "orders": [{"id": "o1", "status": "OPEN", "total": null}, null]
            }
        }),
        "{body}"
    );
    let errors = errors_by_path(&body);
    assert_eq!(errors.len(), 5, "{body}");
    let expected = [
        (json!(["ping"]), "Query.ping", "shop"),
        (json!(["user", "name"]), "User.name", "shop"),
        (
            json!(["user", "orders", 0, "total"]),
            "Order.total",
            "orders",
        ),
        (
            json!(["user", "orders", 1, "status"]),
            "Order.status",
            "orders",
        ),
        (
            json!(["user", "profile", "handle"]),
            "Profile.handle",
            "shop",
        ),
    ];
    for (error, (path, field, service)) in errors.iter().zip(expected) {
        assert_field_error(error, path, "UPSTREAM_BAD_RESPONSE", field);
        assert_service(error, service);
    }
    assert!(
        received(&catalog).await.is_empty(),
        "no product was selected"
    );
}

#[tokio::test]
async fn a_bad_value_in_a_batched_item_names_the_service_of_the_batch() {
    let shop = MockServer::start().await;
    let orders = MockServer::start().await;
    let catalog = MockServer::start().await;
    answer_ann(&shop).await;
    answer(
        &orders,
        "/users/1/orders",
        json!([
            {"id": "o1", "status": "OPEN", "productId": "p1"},
            {"id": "o2", "status": "SHIPPED", "productId": "p2"}
        ]),
    )
    .await;
    answer(
        &catalog,
        "/products",
        json!([
            {"id": "p1", "title": "Lamp", "price": "cheap"},
            {"id": "p2", "title": 7, "price": 30}
        ]),
    )
    .await;
    let gateway = three_service_gateway(&shop, &orders, &catalog).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { name orders { id product { title price } } } }"#)
        .await;

    let body = reply.json();
    assert_eq!(
        body["data"],
        json!({"user": {"name": "Ann", "orders": [
            {"id": "o1", "product": null},
            {"id": "o2", "product": {"title": null, "price": 30}}
        ]}}),
        "{body}"
    );
    let errors = errors_by_path(&body);
    assert_eq!(errors.len(), 2, "{body}");
    assert_field_error(
        &errors[0],
        json!(["user", "orders", 0, "product", "price"]),
        "UPSTREAM_BAD_RESPONSE",
        "Product.price",
    );
    assert_field_error(
        &errors[1],
        json!(["user", "orders", 1, "product", "title"]),
        "UPSTREAM_BAD_RESPONSE",
        "Product.title",
    );
    for error in &errors {
        assert_service(error, "catalog");
    }
    assert_eq!(product_batches(&catalog).await, [["p1", "p2"]]);
}

// ---- response field order ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_fields_keep_the_query_order_when_a_later_field_answers_first() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/slow",
        json_reply(json!({"id": "s"})).set_delay(ms(300)),
    )
    .await;
    answer(&shop, "/fast", json!({"id": "f"})).await;
    let gateway = shop_gateway(&shop).await;

    let slow_first = gateway.post("{ slow { id } fast { id } }").await;
    let fast_first = gateway.post("{ fast { id } slow { id } }").await;

    let expected = json!({"data": {"slow": {"id": "s"}, "fast": {"id": "f"}}});
    assert_eq!(slow_first.json(), expected);
    assert_eq!(fast_first.json(), expected);
    assert_eq!(keys_at(&slow_first, &["data"]), ["slow", "fast"]);
    assert_eq!(keys_at(&fast_first, &["data"]), ["fast", "slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_fields_keep_the_query_order_when_an_earlier_call_answers_last() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    serve(
        &shop,
        "GET",
        "/users/1/orders",
        json_reply(json!([{"id": "o1", "status": "OPEN"}])).set_delay(ms(300)),
    )
    .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ user(id: "1") { orders { id } name profile { bio } id } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {
            "orders": [{"id": "o1"}],
            "name": "Ann",
            "profile": {"bio": "Hi"},
            "id": "1"
        }}})
    );
    assert_eq!(
        keys_at(&reply, &["data", "user"]),
        ["orders", "name", "profile", "id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_items_keep_the_upstream_order_when_their_calls_finish_in_reverse() {
    let shop = MockServer::start().await;
    answer(
        &shop,
        "/users",
        json!([{"id": "1"}, {"id": "2"}, {"id": "3"}]),
    )
    .await;
    for (id, delay) in [("1", 400), ("2", 200), ("3", 0)] {
        serve(
            &shop,
            "GET",
            &format!("/users/{id}/orders"),
            json_reply(json!([{"id": format!("o{id}"), "status": "OPEN"}])).set_delay(ms(delay)),
        )
        .await;
    }
    let gateway = shop_gateway(&shop).await;

    let reply = gateway.post("{ users { orders { id } id } }").await;

    assert_eq!(
        reply.json(),
        json!({"data": {"users": [
            {"orders": [{"id": "o1"}], "id": "1"},
            {"orders": [{"id": "o2"}], "id": "2"},
            {"orders": [{"id": "o3"}], "id": "3"}
        ]}})
    );
    assert_eq!(keys_at(&reply, &["data", "users", "0"]), ["orders", "id"]);
}

// ---- variables --------------------------------------------------------------

#[tokio::test]
async fn a_variable_of_the_wrong_type_is_refused_before_any_call() {
    let shop = MockServer::start().await;
    answer(&shop, "/users", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let request = json!({
        "query": "query($n: Int!) { users(first: $n) { id } }",
        "variables": {"n": "three"}
    })
    .to_string();

    let legacy = gateway.post_raw(request.clone(), &[]).await;
    let modern = gateway
        .post_raw(request, &[("accept", "application/graphql-response+json")])
        .await;

    for (reply, status) in [(&legacy, 200), (&modern, 400)] {
        assert_eq!(reply.status, status, "{}", reply.text);
        let body = reply.json();
        assert_eq!(body.get("data"), None, "{body}");
        assert_eq!(error_codes(&body), ["GRAPHQL_VALIDATION_FAILED"], "{body}");
        assert_first_message_contains(&body, "Int");
    }
    assert!(calls(&shop).await.is_empty());
}

#[tokio::test]
async fn a_missing_non_null_variable_is_refused_before_any_call() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_vars("query($id: ID!) { user(id: $id) { id } }", json!({}))
        .await;

    let body = reply.json();
    assert_eq!(body.get("data"), None, "{body}");
    assert_eq!(error_codes(&body), ["GRAPHQL_VALIDATION_FAILED"], "{body}");
    assert_first_message_contains(&body, "$id");
    assert!(calls(&shop).await.is_empty());
}

#[tokio::test]
async fn an_input_object_variable_gets_the_defaults_of_its_nested_fields() {
    let shop = MockServer::start().await;
    answer(&shop, "/filtered", json!([{"id": "1"}])).await;
    let gateway = shop_gateway(&shop).await;
    let query = "query($f: Filter) { filtered(filter: $f) { id } }";

    let top = gateway.post_vars(query, json!({"f": {"text": "a"}})).await;
    let nested = gateway
        .post_vars(
            query,
            json!({"f": {"text": "b", "limit": 1, "paging": {"offset": 4}}}),
        )
        .await;

    assert_eq!(top.json(), json!({"data": {"filtered": [{"id": "1"}]}}));
    assert_eq!(nested.json(), json!({"data": {"filtered": [{"id": "1"}]}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        [
            "GET /filtered?limit=5&text=a",
            "GET /filtered?limit=1&offset=4&size=10&text=b"
        ]
    );
}

#[tokio::test]
async fn a_variable_default_input_object_gets_the_defaults_of_its_nested_fields() {
    let shop = MockServer::start().await;
    answer(&shop, "/filtered", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_vars(
            r#"query($f: Filter = {text: "c", paging: {}}) { filtered(filter: $f) { id } }"#,
            json!({}),
        )
        .await;

    assert_eq!(reply.json(), json!({"data": {"filtered": []}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        ["GET /filtered?limit=5&size=10&text=c"]
    );
}

#[tokio::test]
async fn an_explicit_null_inside_an_input_object_is_kept_and_not_defaulted() {
    let shop = MockServer::start().await;
    answer(&shop, "/filtered", json!([])).await;
    let gateway = shop_gateway(&shop).await;

    let literal = gateway
        .post(r#"{ filtered(filter: {text: "a", limit: null, paging: {size: null}}) { id } }"#)
        .await;
    let variable = gateway
        .post_vars(
            "query($f: Filter) { filtered(filter: $f) { id } }",
            json!({"f": {"text": "b", "limit": null, "paging": {"size": null}}}),
        )
        .await;

    assert_eq!(literal.json(), json!({"data": {"filtered": []}}));
    assert_eq!(variable.json(), json!({"data": {"filtered": []}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        ["GET /filtered?text=a", "GET /filtered?text=b"],
        "null `limit` and `size` are sent as null, so left out, not as their defaults"
    );
}

#[tokio::test]
async fn a_variable_default_decides_include_when_the_variable_is_not_given() {
    let shop = MockServer::start().await;
    answer(&shop, "/ping", json!("pong")).await;
    let gateway = shop_gateway(&shop).await;
    let query = "query($withPing: Boolean = false) { ping @include(if: $withPing) }";

    let defaulted = gateway.post_vars(query, json!({})).await;
    let given = gateway.post_vars(query, json!({"withPing": true})).await;

    assert_eq!(
        defaulted.json(),
        json!({"data": {}}),
        "every root field skipped: an empty object"
    );
    assert_eq!(given.json(), json!({"data": {"ping": "pong"}}));
    assert_eq!(request_lines(&received(&shop).await), ["GET /ping"]);
}

#[tokio::test]
async fn an_id_variable_accepts_an_integer() {
    let shop = MockServer::start().await;
    answer_ann(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_vars(
            "query($id: ID!) { user(id: $id) { id name } }",
            json!({"id": 1}),
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "1", "name": "Ann"}}})
    );
    assert_eq!(calls(&shop).await, ["GET /users/1"]);
}
