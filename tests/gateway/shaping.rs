//! docs/SHAPING.md: `errors`, `null_on`, `error_when`, `value`, `filter`,
//! `limit`, `map`, `default` and `body_format = "form"` against real HTTP
//! upstreams — each test asserts the GraphQL response and what the
//! upstream received.

use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  strictUser(id: ID!): User!
  order(id: ID!): Order
  products(kind: String, first: Int): [Product!]!
}
type Mutation {
  placeOrder(sku: String!, qty: Int!): Order
  signup(name: String!, email: String, tags: [String!]): Boolean
  recent(first: Int): [Order!]!
}
type User {
  id: ID!
  name: String!
  display: String
  greeting: String!
  age: Int
  nickname: String!
  status: Status
  roles: [Role!]!
  orders(status: String, first: Int): [Order!]!
}
enum Status { ACTIVE INACTIVE }
enum Role { ADMIN READER }
type Order {
  id: ID!
  status: Status
  product: Product
}
type Product {
  id: ID!
  name: String!
  kind: String
  badges: [String!]!
}
"#;

/// Every root field needs a mapping: these, unless the test gives its own.
const ROOTS: [(&str, &str); 7] = [
    (
        "Query.user",
        r#"{ service = "shop", get = "/users/{args.id}" }"#,
    ),
    (
        "Query.strictUser",
        r#"{ service = "shop", get = "/users/{args.id}" }"#,
    ),
    (
        "Query.order",
        r#"{ service = "shop", get = "/orders/{args.id}" }"#,
    ),
    (
        "Query.products",
        r#"{ service = "shop", get = "/products" }"#,
    ),
    (
        "Mutation.placeOrder",
        r#"{ service = "shop", post = "/orders" }"#,
    ),
    (
        "Mutation.signup",
        r#"{ service = "shop", post = "/signup" }"#,
    ),
    (
        "Mutation.recent",
        r#"{ service = "shop", post = "/recent" }"#,
    ),
];

fn toml(service_extra: &str, resolvers: &str) -> String {
    let mut all = resolvers.to_owned();
    for (field, mapping) in ROOTS {
        if !resolvers.contains(&format!("\"{field}\"")) {
            all.push_str(&format!("\n\"{field}\" = {mapping}"));
        }
    }
    format!(
        r#"
[services.shop]
url = "{{shop}}"
{service_extra}

[resolvers]
{all}
"#
    )
}

async fn gateway(shop: &MockServer, service_extra: &str, resolvers: &str) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&toml(service_extra, resolvers))
        .upstream("shop", shop)
        .start()
        .await
}

fn only_error(body: &Value) -> &Value {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors in {body}"));
    assert_eq!(errors.len(), 1, "expected one error: {body}");
    &errors[0]
}

const PLACE_ORDER: &str = r#""Mutation.placeOrder" = { service = "shop", post = "/orders", body = { sku = "{args.sku}", qty = "{args.qty}" }, errors = { message = "{response.body.error.message}", code = "{response.body.error.code}", extensions = { left = "{response.body.error.left}", ref = "{response.headers.x-error-ref}", sku = "{args.sku}", status = "{response.body.error.left}", service = "spoofed", absent = "{response.body.nope}" } } }"#;

#[tokio::test]
async fn errors_shape_message_code_and_extensions_from_the_answer_and_nothing_else_leaks() {
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "POST",
        "/orders",
        ResponseTemplate::new(409)
            .insert_header("x-error-ref", "ref-77")
            .set_body_json(json!({"error": {
                "code": "OUT_OF_STOCK", "message": "only 2 left", "left": 2,
                "trace": "at Inventory.reserve(secret-internal.java:12)"
            }})),
        1,
    )
    .await;
    let gateway = gateway(&shop, "", PLACE_ORDER).await;
    let reply = gateway
        .post(r#"mutation { placeOrder(sku: "p-9", qty: 3) { id } }"#)
        .await;
    let body = reply.json();
    assert_eq!(body["data"], json!({"placeOrder": null}));
    let error = only_error(&body);
    assert_eq!(error["message"], "only 2 left");
    assert_eq!(error["path"], json!(["placeOrder"]));
    // The shaped code; `left` keeps its JSON type; `status` and `service`
    // stay Conflux's; an entry without a value is left out.
    assert_eq!(
        error["extensions"],
        json!({"code": "OUT_OF_STOCK", "left": 2, "ref": "ref-77", "sku": "p-9",
               "service": "shop", "status": 409})
    );
    assert!(
        !body.to_string().contains("secret-internal"),
        "upstream body leaked: {body}"
    );
    let sent = received(&shop).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(body_json(&sent[0]), json!({"sku": "p-9", "qty": 3}));
}

#[tokio::test]
async fn errors_fall_back_to_conflux_message_and_code_when_templates_have_no_value() {
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "POST",
        "/orders",
        ResponseTemplate::new(503).set_body_string("<html>backend down</html>"),
        1,
    )
    .await;
    let gateway = gateway(&shop, "", PLACE_ORDER).await;
    let body = gateway
        .post(r#"mutation { placeOrder(sku: "p-1", qty: 1) { id } }"#)
        .await
        .json();
    let error = only_error(&body);
    assert_eq!(error["message"], "service `shop` answered HTTP 503");
    assert_eq!(
        error["extensions"],
        json!({"code": "UPSTREAM_ERROR", "sku": "p-1", "service": "shop", "status": 503})
    );
    assert!(!body.to_string().contains("backend down"));
    assert_eq!(received(&shop).await.len(), 1);
}

#[tokio::test]
async fn a_service_default_errors_is_overridden_by_the_mapping_key_by_key() {
    let shop = MockServer::start().await;
    for route in ["/users/u1", "/orders/o1"] {
        serve(
            &shop,
            "GET",
            route,
            ResponseTemplate::new(422)
                .set_body_json(json!({"err": "E_BAD", "msg": "bad input", "hint": "retry"})),
        )
        .await;
    }
    let gateway = gateway(
        &shop,
        r#"errors = { message = "shop says: {response.body.msg}", code = "{response.body.err}", extensions = { hint = "{response.body.hint}" } }"#,
        r#"
"Query.user"  = { service = "shop", get = "/users/{args.id}" }
"Query.order" = { service = "shop", get = "/orders/{args.id}", errors = { code = "ORDER_{response.body.err}", extensions = { id = "{args.id}" } } }
"#,
    )
    .await;
    let body = gateway
        .post(r#"{ user(id: "u1") { id } order(id: "o1") { id } }"#)
        .await
        .json();
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    let by_path = |field: &str| {
        errors
            .iter()
            .find(|e| e["path"] == json!([field]))
            .unwrap_or_else(|| panic!("no error at {field}: {body}"))
    };
    assert_eq!(by_path("user")["message"], "shop says: bad input");
    assert_eq!(
        by_path("user")["extensions"],
        json!({"code": "E_BAD", "hint": "retry", "service": "shop", "status": 422})
    );
    // The mapping's `code` and its extension entry over the service's;
    // the service's `message` and `hint` kept.
    assert_eq!(by_path("order")["message"], "shop says: bad input");
    assert_eq!(
        by_path("order")["extensions"],
        json!({"code": "ORDER_E_BAD", "hint": "retry", "id": "o1", "service": "shop", "status": 422})
    );
    assert_eq!(received(&shop).await.len(), 2);
}

#[tokio::test]
async fn null_on_decides_which_statuses_null_a_field() {
    let shop = MockServer::start().await;
    serve_times(&shop, "GET", "/users/gone", ResponseTemplate::new(410), 2).await;
    serve_times(
        &shop,
        "GET",
        "/users/missing",
        ResponseTemplate::new(404),
        1,
    )
    .await;
    let gateway = gateway(
        &shop,
        "null_on = [410]",
        r#"
"Query.user"       = { service = "shop", get = "/users/{args.id}" }
"Query.strictUser" = { service = "shop", get = "/users/{args.id}" }
"#,
    )
    .await;
    // 410 is in the service's `null_on`: null, no error.
    let body = gateway.post(r#"{ user(id: "gone") { id } }"#).await.json();
    assert_eq!(body, json!({"data": {"user": null}}));
    // 404 is not (the list replaced the default): an error like any other.
    let body = gateway
        .post(r#"{ user(id: "missing") { id } }"#)
        .await
        .json();
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(error["extensions"]["status"], 404);
    // On a non-null field a `null_on` status is an error.
    let body = gateway
        .post(r#"{ strictUser(id: "gone") { id } }"#)
        .await
        .json();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(only_error(&body)["path"], json!(["strictUser"]));
    assert_eq!(received(&shop).await.len(), 3);
}

#[tokio::test]
async fn an_empty_null_on_makes_a_404_an_error_shaped_by_errors() {
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "GET",
        "/users/u0",
        ResponseTemplate::new(404).set_body_json(json!({"reason": "NO_SUCH_USER"})),
        1,
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#""Query.user" = { service = "shop", get = "/users/{args.id}", null_on = [], errors = { code = "{response.body.reason}" } }"#,
    )
    .await;
    let body = gateway.post(r#"{ user(id: "u0") { id } }"#).await.json();
    assert_eq!(body["data"], json!({"user": null}));
    assert_eq!(
        only_error(&body)["extensions"],
        json!({"code": "NO_SUCH_USER", "service": "shop", "status": 404})
    );
}

#[tokio::test]
async fn error_when_turns_a_200_carrying_an_error_into_a_shaped_failure() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/users/bad",
        json_reply(json!({"error": {"code": "LOCKED", "text": "account locked"}})),
    )
    .await;
    serve(
        &shop,
        "GET",
        "/users/ok",
        json_reply(json!({"error": null, "id": "ok", "name": "Ada"})),
    )
    .await;
    serve(
        &shop,
        "GET",
        "/users/no",
        json_reply(json!({"error": false, "id": "no", "name": "Bo"})),
    )
    .await;
    let gateway = gateway(
        &shop,
        r#"error_when = "{response.body.error}""#,
        r#""Query.user" = { service = "shop", get = "/users/{args.id}", errors = { message = "{response.body.error.text}", code = "{response.body.error.code}" } }"#,
    )
    .await;
    let body = gateway
        .post(r#"{ user(id: "bad") { id name } }"#)
        .await
        .json();
    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["message"], "account locked");
    assert_eq!(error["extensions"]["code"], "LOCKED");
    assert_eq!(error["extensions"]["service"], "shop");
    // `null` and `false` are no error.
    for (id, name) in [("ok", "Ada"), ("no", "Bo")] {
        let body = gateway
            .post(&format!(r#"{{ user(id: "{id}") {{ id name }} }}"#))
            .await
            .json();
        assert_eq!(body, json!({"data": {"user": {"id": id, "name": name}}}));
    }
    assert_eq!(received(&shop).await.len(), 3);
}

#[tokio::test]
async fn value_renders_a_template_without_a_call() {
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "GET",
        "/users/u1",
        json_reply(
            json!({"id": "u1", "name": "Ada", "first": "Ada", "last": "Lovelace", "years": 36}),
        ),
        2,
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#"
"Query.user"     = { service = "shop", get = "/users/{args.id}" }
"User.display"   = { value = "{parent.first} {parent.last}" }
"User.age"       = { value = "{parent.years}" }
"User.greeting"  = { value = "hello {parent.nope}" }
"#,
    )
    .await;
    let body = gateway
        .post(r#"{ user(id: "u1") { display age } }"#)
        .await
        .json();
    // Text with placeholders is a String; one placeholder alone keeps its
    // JSON type (an Int).
    assert_eq!(
        body,
        json!({"data": {"user": {"display": "Ada Lovelace", "age": 36}}})
    );
    // A placeholder without a value on a non-null field: MISSING_VALUE,
    // the parent nulled.
    let body = gateway
        .post(r#"{ user(id: "u1") { greeting } }"#)
        .await
        .json();
    assert_eq!(body["data"], json!({"user": null}));
    assert_eq!(only_error(&body)["extensions"]["code"], "MISSING_VALUE");
    // Two operations, one call each: `value` made none.
    assert_eq!(received(&shop).await.len(), 2);
}

#[tokio::test]
async fn filter_limit_and_map_shape_a_list_item_by_item_before_coercion() {
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "GET",
        "/users/u1",
        json_reply(json!({"id": "u1", "name": "Ada", "state": "A", "roleCodes": ["a", "r", "a"]})),
        1,
    )
    .await;
    serve_times(
        &shop,
        "GET",
        "/orders",
        json_reply(json!([
            {"id": "o1", "status": "A"}, {"id": "o2", "status": "I"},
            {"id": "o3", "status": "A"}, {"id": "o4", "status": "A"},
            {"id": "o5", "status": "X"}
        ])),
        1,
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#"
"Query.user"   = { service = "shop", get = "/users/{args.id}" }
"User.orders"  = { service = "shop", get = "/orders", query = { user = "{parent.id}" }, filter = { status = "{args.status}" }, limit = "{args.first}" }
"User.status"  = { from = "state", map = { "A" = "ACTIVE", "I" = "INACTIVE" } }
"User.roles"   = { from = "roleCodes", map = { "a" = "ADMIN", "r" = "READER" } }
"Order.status" = { map = { "A" = "ACTIVE", "I" = "INACTIVE" } }
"#,
    )
    .await;
    let body = gateway
        .post(r#"{ user(id: "u1") { status roles orders(status: "A", first: 2) { id status } } }"#)
        .await
        .json();
    assert_eq!(
        body,
        json!({"data": {"user": {
            "status": "ACTIVE",
            "roles": ["ADMIN", "READER", "ADMIN"],
            "orders": [{"id": "o1", "status": "ACTIVE"}, {"id": "o3", "status": "ACTIVE"}]
        }}})
    );
    // Filtering and limiting happen in the gateway: the upstream got only
    // its own query parameters.
    let lines = request_lines(&received(&shop).await);
    assert_eq!(lines, vec!["GET /users/u1", "GET /orders?user=u1"]);
}

#[tokio::test]
async fn a_value_map_leaves_unmapped_is_then_coerced_and_fails_as_a_bad_response() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/orders/o5",
        json_reply(json!({"id": "o5", "status": "X"})),
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#"
"Query.order"  = { service = "shop", get = "/orders/{args.id}" }
"Order.status" = { map = { "A" = "ACTIVE" } }
"#,
    )
    .await;
    let body = gateway
        .post(r#"{ order(id: "o5") { id status } }"#)
        .await
        .json();
    // "X" is kept by `map`, then is no `Status`: coercion refuses it.
    assert_eq!(body["data"], json!({"order": {"id": "o5", "status": null}}));
    assert_eq!(
        only_error(&body)["extensions"]["code"],
        "UPSTREAM_BAD_RESPONSE"
    );
}

#[tokio::test]
async fn default_fills_an_absent_or_null_value() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/users/u1",
        json_reply(json!({"id": "u1", "name": "Ada"})),
    )
    .await;
    serve(
        &shop,
        "GET",
        "/users/u2",
        json_reply(json!({"id": "u2", "name": "Bo", "nickname": null, "age": 7})),
    )
    .await;
    serve(
        &shop,
        "GET",
        "/users/u3",
        json_reply(json!({"id": "u3", "name": "Cy", "nickname": "cy"})),
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#"
"Query.user"    = { service = "shop", get = "/users/{args.id}" }
"User.nickname" = { default = "anonymous" }
"User.age"      = { default = 0 }
"#,
    )
    .await;
    let body = gateway
        .post(r#"{ a: user(id: "u1") { nickname age } b: user(id: "u2") { nickname age } c: user(id: "u3") { nickname age } }"#)
        .await
        .json();
    assert_eq!(
        body,
        json!({"data": {
            "a": {"nickname": "anonymous", "age": 0},
            "b": {"nickname": "anonymous", "age": 7},
            "c": {"nickname": "cy", "age": 0}
        }})
    );
    assert_eq!(received(&shop).await.len(), 3);
}

#[tokio::test]
async fn shaping_applies_to_batched_fields_root_lists_and_mutations_alike() {
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "GET",
        "/products",
        json_reply(json!([
            {"id": "p1", "name": "Book", "kind": "book", "badgeCodes": ["n"]},
            {"id": "p2", "name": "Pen", "kind": "tool", "badgeCodes": []},
            {"id": "p3", "name": "Atlas", "kind": "book", "badgeCodes": ["s", "n"]},
            {"id": "p4", "name": "Map", "kind": "book", "badgeCodes": []}
        ])),
        1,
    )
    .await;
    serve_times(
        &shop,
        "POST",
        "/recent",
        json_reply(json!([
            {"id": "o1", "status": "I", "productId": "p1"},
            {"id": "o2", "status": "A", "productId": "p3"},
            {"id": "o3", "status": "A", "productId": "p1"}
        ])),
        1,
    )
    .await;
    serve_times(
        &shop,
        "GET",
        "/products/batch",
        json_reply(json!([
            {"id": "p1", "name": "Book", "badgeCodes": ["n", "s"]},
            {"id": "p3", "name": "Atlas", "badgeCodes": ["s"]}
        ])),
        1,
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#"
"Query.products"   = { service = "shop", get = "/products", filter = { kind = "{args.kind}" }, limit = "{args.first}" }
"Mutation.recent"  = { service = "shop", post = "/recent", limit = "{args.first}" }
"Order.status"     = { map = { "A" = "ACTIVE", "I" = "INACTIVE" } }
"Order.product"    = { service = "shop", get = "/products/{parent.productId}", batch = { key = "{parent.productId}", get = "/products/batch?ids={keys}", match = "id" } }
"Product.badges"   = { from = "badgeCodes", map = { "n" = "new", "s" = "sale" } }
"#,
    )
    .await;
    let body = gateway
        .post(r#"{ products(kind: "book", first: 2) { id badges } }"#)
        .await
        .json();
    assert_eq!(
        body,
        json!({"data": {"products": [
            {"id": "p1", "badges": ["new"]},
            {"id": "p3", "badges": ["sale", "new"]}
        ]}})
    );
    let body = gateway
        .post(r#"mutation { recent(first: 2) { id status product { name badges } } }"#)
        .await
        .json();
    assert_eq!(
        body,
        json!({"data": {"recent": [
            {"id": "o1", "status": "INACTIVE", "product": {"name": "Book", "badges": ["new", "sale"]}},
            {"id": "o2", "status": "ACTIVE", "product": {"name": "Atlas", "badges": ["sale"]}}
        ]}})
    );
    let lines = request_lines(&received(&shop).await);
    assert_eq!(
        lines,
        vec![
            "GET /products",
            "POST /recent",
            "GET /products/batch?ids=p1,p3"
        ]
    );
}

#[tokio::test]
async fn a_form_body_is_sent_urlencoded_with_its_content_type() {
    let shop = MockServer::start().await;
    serve_times(&shop, "POST", "/signup", ResponseTemplate::new(204), 2).await;
    let gateway = gateway(
        &shop,
        "",
        r#""Mutation.signup" = { service = "shop", post = "/signup", body_format = "form", body = { name = "{args.name}", email = "{args.email}", tags = "{args.tags}", source = "web app", v = 2 } }"#,
    )
    .await;
    let body = gateway
        .post(r#"mutation { signup(name: "Ada Lovelace & co", email: "ada+1@example.com", tags: ["a b", "c"]) }"#)
        .await
        .json();
    assert_eq!(body, json!({"data": {"signup": true}}));
    // An absent argument is left out.
    let body = gateway
        .post(r#"mutation { signup(name: "Bo") }"#)
        .await
        .json();
    assert_eq!(body, json!({"data": {"signup": true}}));
    let sent = received(&shop).await;
    assert_eq!(sent.len(), 2);
    for request in &sent {
        assert_eq!(
            header(request, "content-type").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&sent[0].body),
        "name=Ada+Lovelace+%26+co&email=ada%2B1%40example.com&tags=a+b%2Cc&source=web+app&v=2"
    );
    assert_eq!(
        String::from_utf8_lossy(&sent[1].body),
        "name=Bo&source=web+app&v=2"
    );
}

#[tokio::test]
async fn a_batched_call_is_shaped_by_errors_and_null_on_too() {
    for (status, null_on, expected_code) in
        [(429, "[404]", Some("SLOW_DOWN")), (503, "[503]", None)]
    {
        let shop = MockServer::start().await;
        serve_times(
            &shop,
            "POST",
            "/recent",
            json_reply(json!([{"id": "o1", "productId": "p1"}, {"id": "o2", "productId": "p2"}])),
            1,
        )
        .await;
        serve_times(
            &shop,
            "GET",
            "/products/batch",
            ResponseTemplate::new(status).set_body_json(json!({"code": "SLOW_DOWN"})),
            1,
        )
        .await;
        // No retry of the 503, so each status is one batched call.
        let gateway = gateway(
            &shop,
            "retries = 0",
            &format!(
                r#""Order.product" = {{ service = "shop", get = "/products/{{parent.productId}}", batch = {{ key = "{{parent.productId}}", get = "/products/batch?ids={{keys}}", match = "id" }}, null_on = {null_on}, errors = {{ code = "{{response.body.code}}" }} }}"#
            ),
        )
        .await;
        let body = gateway
            .post(r#"mutation { recent { id product { id } } }"#)
            .await
            .json();
        assert_eq!(
            body["data"],
            json!({"recent": [{"id": "o1", "product": null}, {"id": "o2", "product": null}]}),
            "{body}"
        );
        let codes: Vec<String> = error_codes(&body);
        match expected_code {
            Some(code) => {
                assert_eq!(codes, vec![code, code], "{body}");
                assert_eq!(body["errors"][0]["extensions"]["status"], status);
            }
            None => assert!(codes.is_empty(), "{body}"),
        }
        assert_eq!(received(&shop).await.len(), 2);
    }
}

#[tokio::test]
async fn a_deferred_fragment_gets_its_fields_shaped_like_any_other() {
    use crate::support::multipart::{read_parts, MULTIPART_ACCEPT};
    let shop = MockServer::start().await;
    serve_times(
        &shop,
        "GET",
        "/users/u1",
        json_reply(json!({"id": "u1", "name": "Ada", "state": "I"})),
        1,
    )
    .await;
    serve_times(
        &shop,
        "GET",
        "/orders",
        json_reply(json!([
            {"id": "o1", "status": "I"}, {"id": "o2", "status": "A"}, {"id": "o3", "status": "A"}
        ])),
        1,
    )
    .await;
    let gateway = gateway(
        &shop,
        "",
        r#"
"User.orders"  = { service = "shop", get = "/orders", filter = { status = "{args.status}" }, limit = "{args.first}" }
"User.status"  = { from = "state", map = { "A" = "ACTIVE", "I" = "INACTIVE" } }
"Order.status" = { map = { "A" = "ACTIVE", "I" = "INACTIVE" } }
"#,
    )
    .await;
    let response = reqwest::Client::new()
        .post(gateway.url("/graphql"))
        .header("accept", MULTIPART_ACCEPT)
        .json(&json!({"query": r#"{ user(id: "u1") { id ... @defer { status orders(status: "A", first: 1) { id status } } } }"#}))
        .send()
        .await
        .expect("the gateway answers");
    let reply = read_parts(response).await;
    assert_eq!(
        reply.jsons(),
        [
            json!({"data": {"user": {"id": "u1"}}, "hasNext": true}),
            json!({
                "incremental": [{
                    "data": {"status": "INACTIVE", "orders": [{"id": "o2", "status": "ACTIVE"}]},
                    "path": ["user"]
                }],
                "hasNext": false
            }),
        ]
    );
    assert_eq!(
        request_lines(&received(&shop).await),
        ["GET /users/u1", "GET /orders"]
    );
}
