//! docs/PLAN.md: the upstream calls an operation can make, predicted from
//! its plan (per parent, `first`/`limit` or `[limits].assumed_list_length`,
//! batches as `ceil(keys / max)`, identical calls once), checked against
//! hand-computed counts and against the calls the upstreams received;
//! `[limits].max_upstream_calls` before and during execution; `[rate_limit]
//! cost = "upstream_calls"`.

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{received, TestGateway};

pub const SDL: &str = r#"
type Query {
  user(id: ID!): User
  users(first: Int): [User!]!
  settings: Settings
}
type User {
  id: ID!
  name: String
  orders(first: Int): [Order!]
  settings: Settings
}
type Order { id: ID!  productId: String  product: Product  detail: Detail }
type Product { id: ID!  name: String }
type Detail { note: String }
type Settings { theme: String }
"#;

/// `extra` goes into `[limits]` (or after it, for other tables).
pub fn config(extra: &str) -> String {
    format!(
        r#"
[server]
debug = true

[limits]
{extra}

[services.users]
url = "{{users}}"
[services.orders]
url = "{{orders}}"
[services.products]
url = "{{products}}"

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}" }}
"Query.users" = {{ service = "users", get = "/users", query = {{ first = "{{args.first}}" }} }}
"Query.settings" = {{ service = "users", get = "/settings", cache_ttl_s = 60 }}
"User.settings" = {{ service = "users", get = "/settings", cache_ttl_s = 60 }}
"User.orders" = {{ service = "orders", get = "/users/{{parent.id}}/orders", query = {{ first = "{{args.first}}" }} }}
"Order.product" = {{ service = "products", get = "/products/{{parent.productId}}", batch = {{ key = "{{parent.productId}}", get = "/products?ids={{keys}}", match = "id", max = 2 }} }}
"Order.detail" = {{ service = "orders", get = "/details/{{parent.id}}" }}
"#
    )
}

/// `GET /users?first=N` → N users (`users` when no `first`); every other
/// `/users/{id}` → that user.
struct Users {
    /// Users answered when `first` is absent, or always when set.
    fixed: Option<usize>,
}

impl Respond for Users {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let first = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "first")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let count = self.fixed.or(first).unwrap_or(3);
        let users: Vec<Value> = (0..count)
            .map(|i| json!({"id": format!("u{i}"), "name": format!("user {i}")}))
            .collect();
        ResponseTemplate::new(200).set_body_json(users)
    }
}

/// `GET /users/{id}/orders?first=N` → N orders (2 without `first`), each
/// of its own product: `{id}-o{i}` of product `{id}-p{i}`.
struct Orders;

impl Respond for Orders {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let user = request
            .url
            .path()
            .split('/')
            .nth(2)
            .unwrap_or("?")
            .to_owned();
        let first = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "first")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(2);
        let orders: Vec<Value> = (0..first)
            .map(|i| json!({"id": format!("{user}-o{i}"), "productId": format!("{user}-p{i}")}))
            .collect();
        ResponseTemplate::new(200).set_body_json(orders)
    }
}

/// `GET /products?ids=a,b` → one product per id.
struct Products;

impl Respond for Products {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let ids = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "ids")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let products: Vec<Value> = ids
            .split(',')
            .map(|id| json!({"id": id, "name": format!("product {id}")}))
            .collect();
        ResponseTemplate::new(200).set_body_json(products)
    }
}

pub struct Shop {
    pub users: MockServer,
    pub orders: MockServer,
    pub products: MockServer,
    pub gateway: TestGateway,
}

impl Shop {
    pub async fn start(extra: &str) -> Shop {
        Shop::start_with(extra, None).await
    }

    /// `fixed`: `/users` answers this many users whatever `first` says.
    pub async fn start_with(extra: &str, fixed: Option<usize>) -> Shop {
        let (users, orders, products) = (
            MockServer::start().await,
            MockServer::start().await,
            MockServer::start().await,
        );
        Mock::given(method("GET"))
            .and(path("/users"))
            .respond_with(Users { fixed })
            .mount(&users)
            .await;
        Mock::given(method("GET"))
            .and(path("/settings"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"theme": "dark"})))
            .mount(&users)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/users/[^/]+$"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": "u1", "name": "Ada"})),
            )
            .mount(&users)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/users/[^/]+/orders$"))
            .respond_with(Orders)
            .mount(&orders)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/details/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"note": "ok"})))
            .mount(&orders)
            .await;
        Mock::given(method("GET"))
            .and(path("/products"))
            .respond_with(Products)
            .mount(&products)
            .await;
        let gateway = TestGateway::builder()
            .schema(SDL)
            .config(&config(extra))
            .upstream("users", &users)
            .upstream("orders", &orders)
            .upstream("products", &products)
            .start()
            .await;
        Shop {
            users,
            orders,
            products,
            gateway,
        }
    }

    /// Requests the three services received.
    pub async fn calls_received(&self) -> usize {
        received(&self.users).await.len()
            + received(&self.orders).await.len()
            + received(&self.products).await.len()
    }

    /// `extensions.conflux.plan` for `query` with `variables`, nothing run.
    pub async fn plan(&self, query: &str, variables: Value) -> Value {
        let reply = self
            .gateway
            .post_raw(
                serde_json::to_vec(&json!({"query": query, "variables": variables}))
                    .expect("serializes"),
                &[
                    ("content-type", "application/json"),
                    ("conflux-explain", "1"),
                ],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        assert_eq!(body["data"], Value::Null, "{body}");
        body["extensions"]["conflux"]["plan"].clone()
    }
}

/// `count` of each call by field, in plan order.
fn counts(plan: &Value) -> Vec<(String, u64)> {
    plan["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["field"].as_str().expect("field").to_owned(),
                c["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(f, c)| ((*f).to_owned(), *c)).collect()
}

const NESTED: &str =
    "{ users(first: 3) { name settings { theme } orders(first: 4) { id product { name } detail { note } } } }";

#[tokio::test]
async fn nested_lists_and_batches_are_predicted_per_parent_and_match_the_calls_made() {
    let shop = Shop::start("").await;
    let plan = shop.plan(NESTED, json!({})).await;
    // By hand: 1 list of users; `settings` is the same GET for every user:
    // once; 3 users × 1 orders call; 3 × 4 = 12 orders → 12 product keys in
    // batches of 2 = 6 calls; one detail per order = 12.
    assert_eq!(
        counts(&plan),
        owned(&[
            ("users", 1),
            ("users.settings", 1),
            ("users.orders", 3),
            ("users.orders.product", 6),
            ("users.orders.detail", 12),
        ])
    );
    assert_eq!(plan["predicted_calls"], 23);
    assert_eq!(shop.calls_received().await, 0, "explaining calls nothing");

    // Run for real: the upstreams answer exactly as many items as `first`
    // asks, so the prediction is what is called.
    let reply = shop.gateway.post(NESTED).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["users"][2]["orders"][3]["product"]["name"],
        "product u2-p3"
    );
    assert_eq!(shop.calls_received().await, 23);
    assert_eq!(received(&shop.products).await.len(), 6);
}

#[tokio::test]
async fn lists_without_first_count_assumed_list_length() {
    let shop = Shop::start("assumed_list_length = 4").await;
    let plan = shop
        .plan("{ users { orders { detail { note } } } }", json!({}))
        .await;
    // 1 + 4 users × 1 + 4 × 4 orders × 1 detail.
    assert_eq!(
        counts(&plan),
        owned(&[
            ("users", 1),
            ("users.orders", 4),
            ("users.orders.detail", 16)
        ])
    );
    assert_eq!(plan["predicted_calls"], 21);
    assert_eq!(plan["calls"][2]["per_item_of"], "users.orders");
    assert_eq!(plan["calls"][1]["per_item_of"], "users");
}

#[tokio::test]
async fn aliases_of_identical_calls_count_once() {
    let shop = Shop::start("").await;
    let query = r#"{ a: user(id: "u1") { name } b: user(id: "u1") { name } c: user(id: "u2") { name }
                    s: settings { theme } t: settings { theme } }"#;
    let plan = shop.plan(query, json!({})).await;
    assert_eq!(
        counts(&plan),
        owned(&[("a", 1), ("b", 0), ("c", 1), ("s", 1), ("t", 0)])
    );
    assert_eq!(plan["predicted_calls"], 3);
    let reply = shop.gateway.post(query).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(received(&shop.users).await.len(), 3, "what was predicted");
}

#[tokio::test]
async fn first_given_as_a_variable_is_read_from_the_request() {
    let shop = Shop::start("").await;
    let query = "query($n: Int) { users(first: $n) { orders(first: $n) { product { name } } } }";
    // n = 5: 1 + 5 + ceil(25 / 2) = 19.
    let plan = shop.plan(query, json!({"n": 5})).await;
    assert_eq!(
        counts(&plan),
        owned(&[
            ("users", 1),
            ("users.orders", 5),
            ("users.orders.product", 13)
        ])
    );
    assert_eq!(plan["predicted_calls"], 19);
    // n = 1: 1 + 1 + 1, from the same document (its plan cached).
    let plan = shop.plan(query, json!({"n": 1})).await;
    assert_eq!(plan["predicted_calls"], 3);
}

#[tokio::test]
async fn an_operation_predicted_over_the_budget_is_refused_before_any_call() {
    let shop = Shop::start("max_upstream_calls = 22").await;
    let reply = shop.gateway.post(NESTED).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error_codes(), ["TOO_MANY_UPSTREAM_CALLS"]);
    let message = reply.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("23") && message.contains("22"),
        "{message}"
    );
    assert_eq!(shop.calls_received().await, 0);
    // An operation without variables is predicted once and kept with its
    // plan: the second time it is refused the same way.
    let again = shop.gateway.post(NESTED).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.error_codes(), ["TOO_MANY_UPSTREAM_CALLS"]);
    assert_eq!(shop.calls_received().await, 0);
    // One fewer item fits: 1 + 1 + 3 + ceil(9 / 2) = 5 + 9 = 19.
    let reply = shop
        .gateway
        .post("{ users(first: 3) { name settings { theme } orders(first: 3) { id product { name } detail { note } } } }")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(shop.calls_received().await, 19);
}

#[tokio::test]
async fn calls_past_the_budget_during_execution_are_not_made() {
    // `/users` answers 6 users although 2 were asked for: predicted 1 + 2 =
    // 3 calls, within a budget of 3; the 4 users past it get no call.
    let shop = Shop::start_with("max_upstream_calls = 3", Some(6)).await;
    let query = "{ users(first: 2) { id orders(first: 1) { id } } }";
    assert_eq!(shop.plan(query, json!({})).await["predicted_calls"], 3);
    let reply = shop.gateway.post(query).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(received(&shop.users).await.len(), 1);
    assert_eq!(
        received(&shop.orders).await.len(),
        2,
        "the budget leaves two calls for orders"
    );
    let users = body["data"]["users"].as_array().expect("users").clone();
    assert_eq!(users.len(), 6);
    let answered = users.iter().filter(|u| u["orders"].is_array()).count();
    assert_eq!(answered, 2, "{body}");
    assert_eq!(
        reply.error_codes(),
        vec!["TOO_MANY_UPSTREAM_CALLS"; 4],
        "one error per call not made: {body}"
    );
}

#[tokio::test]
async fn rate_limit_cost_takes_the_predicted_calls_from_the_bucket() {
    // A bucket of 10 that refills one token per 1000 s.
    let shop =
        Shop::start("[rate_limit]\nper_second = 0.001\nburst = 10\ncost = \"upstream_calls\"")
            .await;
    let six = "{ users(first: 5) { orders(first: 1) { id } } }";
    let reply = shop.gateway.post(six).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(shop.calls_received().await, 6);
    // 4 tokens left: 6 more do not fit.
    let reply = shop.gateway.post(six).await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.error_codes(), ["RATE_LIMITED"]);
    let retry: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry >= 1000, "two tokens short at 0.001/s: {retry}");
    assert_eq!(shop.calls_received().await, 6, "nothing called");
    // 4 still fit.
    let reply = shop
        .gateway
        .post("{ users(first: 3) { orders(first: 1) { id } } }")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(shop.calls_received().await, 10);
}

#[tokio::test]
async fn a_huge_list_is_refused_and_a_negative_one_counts_no_item() {
    // `max_complexity` out of the way: it would refuse these first.
    let shop = Shop::start("max_complexity = 9000000000000000000").await;
    let reply = shop
        .gateway
        .post_raw(
            serde_json::to_vec(&json!({"query":
                "{ users(first: 1000000) { orders(first: 1000000) { product { name } detail { note } } } }"}))
            .expect("serializes"),
            &[("content-type", "application/json"), ("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error_codes(), ["TOO_MANY_UPSTREAM_CALLS"]);
    let plan = shop
        .plan(
            "{ users(first: -5) { orders { detail { note } } } }",
            json!({}),
        )
        .await;
    assert_eq!(plan["predicted_calls"], 1, "no user, no order: {plan}");
    assert_eq!(shop.calls_received().await, 0);
}

#[tokio::test]
async fn a_deferred_fragment_s_calls_are_predicted_too() {
    // 1 + 3 orders calls + 3 × 4 details = 16 with the deferred part, 4
    // without it: a budget of 10 refuses it, before anything is called.
    let shop = Shop::start("max_upstream_calls = 10").await;
    let query = "{ users(first: 3) { orders(first: 4) { id ... @defer { detail { note } } } } }";
    let reply = shop
        .gateway
        .post_raw(
            serde_json::to_vec(&json!({ "query": query })).expect("serializes"),
            &[
                ("content-type", "application/json"),
                (
                    "accept",
                    "multipart/mixed;deferSpec=20220824, application/json",
                ),
            ],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(
        reply.text.contains("TOO_MANY_UPSTREAM_CALLS"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("16 upstream calls"), "{}", reply.text);
    assert_eq!(shop.calls_received().await, 0);
}
