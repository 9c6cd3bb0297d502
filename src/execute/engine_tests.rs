//! The resolve and write phases, run in-process through `run::run` against
//! a real upstream (wiremock on a loopback port): what calls an operation
//! makes, and the exact response it writes — key order, null propagation,
//! leaf coercion, error paths and codes. (The planner's own output is in
//! `planned/tests.rs`; the HTTP surface is tested in `tests/gateway/`.)

use std::path::PathBuf;

use http::HeaderMap;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::run::{run, Caller, GraphqlRequest, Report};
use crate::gateway::Gateway;
use crate::telemetry::trace::RequestTrace;

const SDL: &str = r#"
scalar JSON
type Query {
  user(id: ID!): User
  users: [User!]!
  strict: Strict!
  search(filter: Filter = {}): [Hit!]!
}
type Mutation { rename(id: ID!, name: String!): User }
input Filter { text: String = "all"  first: Int = 2 }
union Hit = User | Product
type User { id: ID!  name: String  age: Int  status: Status  meta: JSON  favorite: Product  best: Product! }
type Product { id: ID!  name: String! }
type Strict { id: ID!  must: Product! }
enum Status { ACTIVE GONE }
"#;

fn toml(upstream: &str) -> String {
    format!(
        r#"
schema = "schema.graphql"

[services.shop]
url = "{upstream}"

[types.Hit]
discriminator = "kind"
map = {{ user = "User", product = "Product" }}

[resolvers]
"Query.user" = {{ service = "shop", get = "/users/{{args.id}}" }}
"Query.users" = {{ service = "shop", get = "/users" }}
"Query.strict" = {{ service = "shop", get = "/strict" }}
"Query.search" = {{ service = "shop", post = "/search", body = {{ filter = "{{args.filter}}" }} }}
"Mutation.rename" = {{ service = "shop", put = "/users/{{args.id}}", body = {{ name = "{{args.name}}" }} }}
"User.favorite" = {{ service = "shop", get = "/products/{{parent.favoriteId}}", batch = {{ key = "{{parent.favoriteId}}", get = "/products?ids={{keys}}", match = "id" }} }}
"User.best" = {{ service = "shop", get = "/products/{{parent.bestId}}" }}
"Strict.must" = {{ service = "shop", get = "/products/{{parent.mustId}}" }}
"#
    )
}

/// A gateway over `upstream`, loaded from the files above.
fn gateway(upstream: &MockServer) -> Gateway {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "conflux-engine-tests-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("schema.graphql"), SDL).expect("write schema");
    std::fs::write(dir.join("services.toml"), toml(&upstream.uri())).expect("write config");
    let loaded = crate::gateway::load(&dir.join("services.toml"));
    let _ = std::fs::remove_dir_all(&dir);
    loaded.unwrap_or_else(|problems| panic!("the test config loads: {problems}"))
}

/// Runs `query` and returns the response body's text.
async fn execute(gateway: &Gateway, query: &str, variables: Value) -> String {
    let headers = HeaderMap::new();
    let trace = RequestTrace::from_headers(&headers);
    let caller = Caller {
        headers: &headers,
        trace: &trace,
        debug: false,
        claims: None,
        over_get: false,
        incremental: false,
        explain: false,
        rate_key: None,
        subscriber: None,
    };
    let request = GraphqlRequest {
        query: Some(query.to_owned()),
        operation_name: None,
        variables: Some(variables),
        extensions: None,
    };
    let outcome = run(gateway, caller, request, &mut Report::default()).await;
    String::from_utf8(outcome.into_body().expect("serializes")).expect("utf-8")
}

fn answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

async fn requests_to(upstream: &MockServer, at: &str) -> Vec<wiremock::Request> {
    upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

#[tokio::test]
async fn the_writer_follows_the_query_order_and_coerces_leaves() {
    let upstream = MockServer::start().await;
    // The upstream's own key order, extra keys, an integer ID, and a
    // custom scalar object whose key order is kept.
    Mock::given(method("GET"))
        .and(path("/users/u1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"status":"ACTIVE","extra":1,"age":41,"name":"Ada","id":7,"meta":{"z":1,"a":[true,null]}}"#,
            "application/json",
        ))
        .mount(&upstream)
        .await;
    let gateway = gateway(&upstream);
    let body = execute(
        &gateway,
        r#"{ user(id: "u1") { meta name who: id age status __typename } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        body,
        r#"{"data":{"user":{"meta":{"z":1,"a":[true,null]},"name":"Ada","who":"7","age":41,"status":"ACTIVE","__typename":"User"}}}"#
    );
}

#[tokio::test]
async fn a_leaf_that_does_not_fit_is_a_field_error_at_its_path() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users"))
        .respond_with(answer(json!([
            {"id": "a", "age": 3, "status": "ACTIVE"},
            {"id": "b", "age": 2.5, "status": "MAYBE"}
        ])))
        .mount(&upstream)
        .await;
    let gateway = gateway(&upstream);
    let body = execute(&gateway, "{ users { id age status } }", json!({})).await;
    let response: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        response["data"],
        json!({"users": [
            {"id": "a", "age": 3, "status": "ACTIVE"},
            {"id": "b", "age": null, "status": null}
        ]})
    );
    let errors = response["errors"].as_array().expect("errors");
    let paths: Vec<&Value> = errors.iter().map(|e| &e["path"]).collect();
    assert_eq!(
        paths,
        [&json!(["users", 1, "age"]), &json!(["users", 1, "status"])]
    );
    for error in errors {
        assert_eq!(
            error["extensions"]["code"], "UPSTREAM_BAD_RESPONSE",
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/strict"))
        .respond_with(answer(json!({"id": "s", "mustId": "p9"})))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/users/u1"))
        .respond_with(answer(json!({"id": "u1", "bestId": "p9"})))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/products/p9"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&upstream)
        .await;
    let gateway = gateway(&upstream);
    // `strict` and `must` are non-null all the way up: `data` is null.
    let body = execute(&gateway, "{ strict { id must { name } } }", json!({})).await;
    let response: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(response["data"], Value::Null, "{body}");
    assert_eq!(response["errors"][0]["path"], json!(["strict", "must"]));
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "UPSTREAM_ERROR"
    );
    assert_eq!(response["errors"][0]["extensions"]["service"], "shop");
    assert_eq!(response["errors"].as_array().map(Vec::len), Some(1));
    // `user` is nullable: it alone becomes null, its sibling stays.
    let body = execute(
        &gateway,
        r#"{ user(id: "u1") { id best { name } } again: user(id: "u1") { id } }"#,
        json!({}),
    )
    .await;
    let response: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        response["data"],
        json!({"user": null, "again": {"id": "u1"}}),
        "{body}"
    );
    assert_eq!(response["errors"][0]["path"], json!(["user", "best"]));
    // One call for `user` and `again` alike: identical calls are made once.
    assert_eq!(requests_to(&upstream, "/users/u1").await.len(), 1);
}

#[tokio::test]
async fn batched_keys_across_items_make_one_call_and_items_share_a_key() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users"))
        .respond_with(answer(json!([
            {"id": "a", "favoriteId": "p1"},
            {"id": "b", "favoriteId": "p2"},
            {"id": "c", "favoriteId": "p1"},
            {"id": "d"}
        ])))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .and(query_param("ids", "p1,p2"))
        .respond_with(answer(json!([
            {"id": "p2", "name": "Two"},
            {"id": "p1", "name": "One"}
        ])))
        .mount(&upstream)
        .await;
    let gateway = gateway(&upstream);
    let body = execute(&gateway, "{ users { id favorite { name } } }", json!({})).await;
    assert_eq!(
        body,
        r#"{"data":{"users":[{"id":"a","favorite":{"name":"One"}},{"id":"b","favorite":{"name":"Two"}},{"id":"c","favorite":{"name":"One"}},{"id":"d","favorite":null}]}}"#
    );
    assert_eq!(requests_to(&upstream, "/products").await.len(), 1);
}

#[tokio::test]
async fn abstract_types_resolve_by_discriminator_and_inputs_get_their_defaults() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/search"))
        .respond_with(answer(json!([
            {"kind": "product", "id": "p1", "name": "One"},
            {"kind": "user", "id": "u1", "name": "Ada"}
        ])))
        .mount(&upstream)
        .await;
    let gateway = gateway(&upstream);
    let query = "query($f: Filter) { search(filter: $f) { __typename ... on User { id } ... on Product { name } } }";
    let literal = r#"{ search(filter: {text: "x"}) { __typename ... on User { id } ... on Product { name } } }"#;
    let with_variable = execute(&gateway, query, json!({"f": {"text": "x"}})).await;
    assert_eq!(
        with_variable,
        r#"{"data":{"search":[{"__typename":"Product","name":"One"},{"__typename":"User","id":"u1"}]}}"#
    );
    assert_eq!(execute(&gateway, literal, json!({})).await, with_variable);
    // The argument's SDL default `{}` and the variable left out both get
    // the input object's own defaults.
    execute(&gateway, "{ search { __typename } }", json!({})).await;
    let bodies: Vec<Value> = requests_to(&upstream, "/search")
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json body"))
        .collect();
    assert_eq!(
        bodies,
        [
            json!({"filter": {"text": "x", "first": 2}}),
            json!({"filter": {"text": "x", "first": 2}}),
            json!({"filter": {"text": "all", "first": 2}}),
        ]
    );
}

#[tokio::test]
async fn mutation_fields_run_one_after_another_in_document_order() {
    let upstream = MockServer::start().await;
    for (id, name) in [("u1", "first"), ("u2", "second")] {
        Mock::given(method("PUT"))
            .and(path(format!("/users/{id}")))
            .respond_with(answer(json!({"id": id, "name": name})))
            .mount(&upstream)
            .await;
    }
    let gateway = gateway(&upstream);
    let body = execute(
        &gateway,
        r#"mutation { b: rename(id: "u2", name: "second") { name } a: rename(id: "u1", name: "first") { name } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        body,
        r#"{"data":{"b":{"name":"second"},"a":{"name":"first"}}}"#
    );
    let order: Vec<String> = upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(order, ["/users/u2", "/users/u1"]);
}
