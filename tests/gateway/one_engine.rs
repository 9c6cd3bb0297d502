//! One engine runs every operation: a query answers the same — data,
//! errors with their `path`, `code` and `service`, key order — whether its
//! arguments are written in the document or passed as variables; mutations
//! run their root fields one after another; introspection and `__typename`
//! are answered beside the fields that call services.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const SDL: &str = r#"
type Query {
  orders(sort: Sort = NEWEST, filter: OrderFilter, ids: [[ID!]], tags: [String!]): [Order]
}
type Mutation {
  first(id: ID!): Order
  second(id: ID!): Order
}
enum Sort { NEWEST OLDEST }
enum Status { OPEN CLOSED }
input OrderFilter { status: Status! limit: Int = 5 range: Range }
input Range { from: Int to: Int = 100 }
type Order { id: ID! status: Status total: Int product: Product }
type Product { id: ID! name: String }
"#;

const TOML: &str = r#"
[services.shop]
url = "{shop}"

[resolvers]
"Query.orders" = { service = "shop", post = "/orders/search", body = { sort = "{args.sort}", filter = "{args.filter}", ids = "{args.ids}", tags = "{args.tags}" } }
"Mutation.first" = { service = "shop", post = "/first/{args.id}" }
"Mutation.second" = { service = "shop", post = "/second/{args.id}" }
"Order.product" = { service = "shop", get = "/products/{parent.productId}" }
"#;

async fn shop_gateway(shop: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(TOML)
        .upstream("shop", shop)
        .start()
        .await
}

/// Two orders, the second with a status the schema does not know.
async fn answer_orders(shop: &MockServer) {
    serve(
        shop,
        "POST",
        "/orders/search",
        json_reply(json!([
            {"total": 3, "status": "OPEN", "id": "o1", "productId": "p1"},
            {"total": 4, "status": "WEIRD", "id": "o2", "productId": "p2"}
        ])),
    )
    .await;
}

#[tokio::test]
async fn literals_and_variables_answer_alike() {
    let shop = MockServer::start().await;
    answer_orders(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let literal = gateway
        .post(
            r#"{ orders(sort: OLDEST, filter: {status: OPEN, range: {from: 1}}, ids: [["1", "2"], ["3"]], tags: "a") { total id status } }"#,
        )
        .await;
    let variables = gateway
        .post_vars(
            r#"query($s: Sort, $f: OrderFilter, $i: [[ID!]], $t: [String!]) { orders(sort: $s, filter: $f, ids: $i, tags: $t) { total id status } }"#,
            json!({
                "s": "OLDEST",
                "f": {"status": "OPEN", "range": {"from": 1}},
                "i": [["1", "2"], ["3"]],
                "t": "a"
            }),
        )
        .await;
    // A variable nested inside a literal input object, too.
    let nested = gateway
        .post_vars(
            r#"query($st: Status!, $from: Int) { orders(sort: OLDEST, filter: {status: $st, range: {from: $from}}, ids: [["1", "2"], ["3"]], tags: ["a"]) { total id status } }"#,
            json!({"st": "OPEN", "from": 1}),
        )
        .await;

    assert_eq!(literal.status, 200);
    // Byte for byte, but for where each document wrote the field.
    let same = without_locations(&literal.text);
    assert!(literal.text.contains(r#""locations":[{"line":1,"column":"#));
    assert_eq!(without_locations(&variables.text), same);
    assert_eq!(without_locations(&nested.text), same);
    let body = literal.json();
    assert_eq!(
        body["data"]["orders"][0],
        json!({"total": 3, "id": "o1", "status": "OPEN"})
    );
    assert_eq!(body["data"]["orders"][1]["status"], Value::Null);
    let error = &body["errors"][0];
    assert_eq!(error["path"], json!(["orders", 1, "status"]));
    assert_eq!(error["extensions"]["code"], "UPSTREAM_BAD_RESPONSE");
    assert_eq!(error["extensions"]["service"], "shop");

    let sent: Vec<Value> = received(&shop).await.iter().map(body_json).collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1], sent[0], "the same upstream body");
    assert_eq!(sent[2], sent[0], "the same upstream body");
    assert_eq!(
        sent[0],
        json!({
            "sort": "OLDEST",
            "filter": {"status": "OPEN", "range": {"from": 1, "to": 100}, "limit": 5},
            "ids": [["1", "2"], ["3"]],
            "tags": ["a"]
        }),
        "enums by name, input defaults filled, a single value as a list of one"
    );
}

#[tokio::test]
async fn an_argument_default_applies_to_an_omitted_variable() {
    let shop = MockServer::start().await;
    answer_orders(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let omitted = gateway
        .post_vars("query($s: Sort) { orders(sort: $s) { id } }", json!({}))
        .await;
    let defaulted = gateway
        .post_vars(
            "query($s: Sort = OLDEST) { orders(sort: $s) { id } }",
            json!({}),
        )
        .await;

    assert_eq!(omitted.status, 200, "{}", omitted.text);
    let sent: Vec<Value> = received(&shop).await.iter().map(body_json).collect();
    assert_eq!(sent[0]["sort"], "NEWEST", "the argument's SDL default");
    assert_eq!(sent[1]["sort"], "OLDEST", "the variable's default");
    assert_eq!(defaulted.status, 200);
}

#[tokio::test]
async fn an_invalid_variable_is_refused_before_any_call() {
    let shop = MockServer::start().await;
    answer_orders(&shop).await;
    let gateway = shop_gateway(&shop).await;

    for (variables, needle) in [
        (json!({"s": "SIDEWAYS"}), "`$s`"),
        (
            json!({"f": {"limit": 3}}),
            "field `status` of input type `OrderFilter` is required",
        ),
        (
            json!({"f": {"status": "OPEN", "nope": 1}}),
            "has no field `nope`",
        ),
        (
            json!({"f": {"status": "OPEN", "range": {"from": "x"}}}),
            "at `range.from`",
        ),
    ] {
        let modern = gateway
            .post_raw(
                json!({
                    "query": "query($s: Sort, $f: OrderFilter) { orders(sort: $s, filter: $f) { id } }",
                    "variables": variables,
                })
                .to_string(),
                &[("accept", "application/graphql-response+json")],
            )
            .await;
        assert_eq!(modern.status, 400, "{}", modern.text);
        let body = modern.json();
        assert_eq!(body.get("data"), None, "{body}");
        assert_eq!(error_codes(&body), ["GRAPHQL_VALIDATION_FAILED"]);
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    }
    assert!(received(&shop).await.is_empty(), "no call was made");
}

/// Answers every request after `delay`, recording when each arrived.
struct Slow {
    delay: Duration,
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Respond for Slow {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        self.arrivals
            .lock()
            .expect("arrivals")
            .push((path.clone(), Instant::now()));
        let id = path.rsplit('/').next().unwrap_or_default().to_owned();
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({"id": id, "productId": format!("p{id}"), "name": "P"}))
    }
}

#[tokio::test]
async fn mutation_fields_run_one_after_another_with_their_selections() {
    let shop = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let delay = Duration::from_millis(300);
    Mock::given(method("POST"))
        .and(path_regex("^/(first|second)/"))
        .respond_with(Slow {
            delay,
            arrivals: arrivals.clone(),
        })
        .mount(&shop)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/products/"))
        .respond_with(Slow {
            delay,
            arrivals: arrivals.clone(),
        })
        .mount(&shop)
        .await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post(
            r#"mutation { a: first(id: "1") { id product { id } } b: second(id: "2") { id } c: first(id: "3") { __typename id } }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "a": {"id": "1", "product": {"id": "p1"}},
            "b": {"id": "2"},
            "c": {"__typename": "Order", "id": "3"}
        }})
    );
    let arrivals = arrivals.lock().expect("arrivals").clone();
    let paths: Vec<&str> = arrivals.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/first/1", "/products/p1", "/second/2", "/first/3"]);
    for pair in arrivals.windows(2) {
        let gap = pair[1].1.duration_since(pair[0].1);
        // Each call starts only once the one before has answered.
        assert!(
            gap >= delay - Duration::from_millis(50),
            "{} started {gap:?} after {}",
            pair[1].0,
            pair[0].0
        );
    }
}

#[tokio::test]
async fn introspection_and_typename_are_answered_beside_calls() {
    let shop = MockServer::start().await;
    answer_orders(&shop).await;
    let gateway = shop_gateway(&shop).await;

    let reply = gateway
        .post_vars(
            r#"query($t: String!) {
                 sort: __type(name: $t) { name kind enumValues { name } }
                 orders { __typename ...F ... on Order { total } }
                 __schema { queryType { name } mutationType { ...Named } }
                 __typename
               }
               fragment F on Order { __typename id }
               fragment Named on __Type { name }"#,
            json!({"t": "Sort"}),
        )
        .await;

    let body = reply.json();
    assert_eq!(reply.status, 200, "{body}");
    assert_eq!(
        body["data"]["sort"],
        json!({"name": "Sort", "kind": "ENUM", "enumValues": [{"name": "NEWEST"}, {"name": "OLDEST"}]})
    );
    assert_eq!(
        body["data"]["orders"][0],
        json!({"__typename": "Order", "id": "o1", "total": 3})
    );
    assert_eq!(
        body["data"]["__schema"],
        json!({"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}})
    );
    assert_eq!(body["data"]["__typename"], "Query");
    let at = |key: &str| reply.text.find(key).unwrap_or(usize::MAX);
    assert!(
        at(r#"{"data":{"sort":"#) < at(r#""orders":"#)
            && at(r#""orders":"#) < at(r#""__schema":"#)
            && at(r#""__schema":"#) < at(r#""__typename":"Query""#),
        "response keys in document order: {}",
        reply.text
    );
    assert_eq!(received(&shop).await.len(), 1, "one call, for orders");
}

/// A response's text without its errors' `locations` entries.
fn without_locations(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(r#""locations":["#) {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find("],").map_or(after.len(), |i| i + 2);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
