//! Admission: what refuses work before execution. docs/HTTP.md (statuses, media
//! types, 429 + `Retry-After`), docs/CONFIG.md (`[limits]`, `[rate_limit]`,
//! `[persisted_queries]`, `[server].introspection`, `cors_origins`) and docs/ERRORS.md
//! (codes).
//!
//! Every refused request is also checked to have reached no upstream: the
//! point of admission is that refused work costs the services nothing.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::MockServer;

use crate::support::client::{preview, raw_http_status};
use crate::support::redis::RedisServer;
use crate::support::*;

const SDL: &str = r#"
type Query {
  me: User
  user(id: ID!): User
  users(first: Int, limit: Int): [User!]!
  version: String
}
type Mutation { rename(id: ID!, name: String!): User }
type User {
  id: ID!
  name: String
  orders(first: Int): [Order!]!
  friends(first: Int): [User!]!
}
type Order { id: ID! total: Float }
"#;

const SERVICES: &str = r#"
[services.users]
url = "{users}"

[resolvers]
"Query.me"        = { service = "users", get = "/me" }
"Query.user"      = { service = "users", get = "/users/{args.id}" }
"Query.users"     = { service = "users", get = "/users", query = { first = "{args.first}", limit = "{args.limit}" } }
"Query.version"   = { service = "users", get = "/version" }
"Mutation.rename" = { service = "users", patch = "/users/{args.id}", body = { name = "{args.name}" } }
"User.orders"     = { service = "users", get = "/orders", query = { userId = "{parent.id}", first = "{args.first}" } }
"User.friends"    = { service = "users", get = "/friends", query = { of = "{parent.id}", first = "{args.first}" } }
"#;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const SECRET: &str = "admission-test-secret-0123456789abcdef";

/// `extra` (top-level tables such as `[limits]`) followed by the service
/// and its resolvers.
fn config(extra: &str) -> String {
    format!("{extra}\n{SERVICES}")
}

/// The users service: every route the schema maps, with fixed answers.
async fn users_service() -> MockServer {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/me",
        json_reply(json!({"id": "me", "name": "Me"})),
    )
    .await;
    for id in ["1", "2"] {
        serve(
            &users,
            "GET",
            &format!("/users/{id}"),
            json_reply(json!({"id": id, "name": format!("User {id}")})),
        )
        .await;
    }
    serve(
        &users,
        "GET",
        "/users",
        json_reply(json!([
            {"id": "1", "name": "User 1"},
            {"id": "2", "name": "User 2"}
        ])),
    )
    .await;
    serve(
        &users,
        "GET",
        "/orders",
        json_reply(json!([{"id": "o1", "total": 9.5}])),
    )
    .await;
    serve(
        &users,
        "GET",
        "/friends",
        json_reply(json!([{"id": "2", "name": "User 2"}])),
    )
    .await;
    serve(&users, "GET", "/version", json_reply(json!("1.0"))).await;
    users
}

async fn gateway(users: &MockServer, extra: &str) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config(extra))
        .upstream("users", users)
        .start()
        .await
}

/// How many requests the service has received so far.
async fn calls(server: &MockServer) -> usize {
    received(server).await.len()
}

async fn assert_no_upstream_calls(server: &MockServer, what: &str) {
    let requests = received(server).await;
    assert!(
        requests.is_empty(),
        "{what}: a refused request reached the upstream: {:?}",
        request_lines(&requests)
    );
}

/// A refused request: this status, exactly one error with a message and
/// this code, and no `data` entry.
fn assert_refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status,
        status,
        "expected {status} {code}; body: {}",
        preview(&reply.text)
    );
    let body = reply.json();
    assert_eq!(error_codes(&body), [code], "body: {body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error needs a message: {body}"
    );
    assert!(
        body.get("data").is_none(),
        "a refused request has no `data` entry: {body}"
    );
}

/// A document refused by `[limits]` (or failing validation): 400 for a
/// client accepting `application/graphql-response+json`, 200 for a legacy
/// `application/json` client, the same error body both times (docs/HTTP.md).
async fn assert_document_refused(gateway: &TestGateway, body: &Value, code: &str) {
    let modern = gateway
        .post_raw(body.to_string(), &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;
    assert_refused(&modern, 400, code);
    assert_eq!(modern.media_type(), GRAPHQL_RESPONSE_JSON, "{body}");

    let legacy = gateway
        .post_raw(body.to_string(), &[("accept", "application/json")])
        .await;
    assert_refused(&legacy, 200, code);
    assert_eq!(legacy.media_type(), "application/json", "{body}");
}

async fn assert_query_refused(gateway: &TestGateway, query: &str, code: &str) {
    assert_document_refused(gateway, &json!({ "query": query }), code).await;
}

/// 200 with `data` equal to `expected` and no errors.
fn assert_data(reply: &Reply, expected: Value) {
    assert_eq!(reply.status, 200, "body: {}", preview(&reply.text));
    assert_eq!(reply.json(), json!({ "data": expected }));
}

// ---------------------------------------------------------------------------
// [limits].max_depth
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_query_as_deep_as_max_depth_runs() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_depth = 3").await;

    let reply = gateway.post(r#"{ user(id: "1") { orders { id } } }"#).await;

    assert_data(&reply, json!({"user": {"orders": [{"id": "o1"}]}}));
    assert_eq!(calls(&users).await, 2);
}

#[tokio::test]
async fn a_query_one_level_deeper_than_max_depth_is_query_too_deep_and_calls_nothing() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_depth = 3").await;

    assert_query_refused(
        &gateway,
        r#"{ user(id: "1") { friends { orders { id } } } }"#,
        "QUERY_TOO_DEEP",
    )
    .await;
    // docs/CONFIG.md's own example has depth 3: refused under max_depth = 2.
    let shallow = self::gateway(&users, "[limits]\nmax_depth = 2").await;
    assert_query_refused(
        &shallow,
        r#"{ user(id: "1") { orders { id } } }"#,
        "QUERY_TOO_DEEP",
    )
    .await;

    assert_no_upstream_calls(&users, "too deep").await;
}

#[tokio::test]
async fn depth_is_counted_through_named_and_inline_fragments() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_depth = 3").await;

    // Depth 4 hidden in a named fragment holding an inline fragment.
    assert_query_refused(
        &gateway,
        r#"query { user(id: "1") { ...F } }
           fragment F on User { friends { ... on User { orders { id } } } }"#,
        "QUERY_TOO_DEEP",
    )
    .await;
    // Depth 4 through fragments spreading fragments.
    assert_query_refused(
        &gateway,
        r#"query { ...Root }
           fragment Root on Query { user(id: "1") { ...Friends } }
           fragment Friends on User { friends { ...Orders } }
           fragment Orders on User { orders { id } }"#,
        "QUERY_TOO_DEEP",
    )
    .await;
    // Depth 4 in an inline fragment on the root.
    assert_query_refused(
        &gateway,
        r#"{ ... on Query { user(id: "1") { friends { friends { id } } } } }"#,
        "QUERY_TOO_DEEP",
    )
    .await;
    assert_no_upstream_calls(&users, "too deep through fragments").await;

    // Exactly depth 3 through fragments runs.
    let reply = gateway
        .post(
            r#"query { user(id: "1") { ...F } }
               fragment F on User { orders { ... on Order { id } } }"#,
        )
        .await;
    assert_data(&reply, json!({"user": {"orders": [{"id": "o1"}]}}));
}

#[tokio::test]
async fn typename_adds_no_depth() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_depth = 3").await;

    // `friends` is at depth 3; its `__typename` would be depth 4.
    let reply = gateway
        .post(r#"{ user(id: "1") { __typename friends { __typename } } }"#)
        .await;

    assert_data(
        &reply,
        json!({"user": {"__typename": "User", "friends": [{"__typename": "User"}]}}),
    );
}

#[tokio::test]
async fn a_too_deep_query_over_get_is_refused_and_calls_nothing() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_depth = 2").await;

    let modern = gateway
        .get_with_headers(
            &encode_params(&[("query", r#"{ user(id: "1") { orders { id } } }"#)]),
            &[("accept", GRAPHQL_RESPONSE_JSON)],
        )
        .await;
    let legacy = gateway
        .get_params(&[("query", r#"{ user(id: "1") { orders { id } } }"#)])
        .await;

    assert_refused(&modern, 400, "QUERY_TOO_DEEP");
    assert_refused(&legacy, 200, "QUERY_TOO_DEEP");
    assert_no_upstream_calls(&users, "too deep over GET").await;
}

// ---------------------------------------------------------------------------
// [limits].max_complexity
// ---------------------------------------------------------------------------

/// `users(first: 10) { id name }` costs 1 + 10 × 2 = 21.
const COMPLEXITY_21: &str = "[limits]\nmax_complexity = 21";

#[tokio::test]
async fn a_query_exactly_at_max_complexity_runs() {
    let users = users_service().await;
    let gateway = gateway(&users, COMPLEXITY_21).await;

    let first = gateway.post("{ users(first: 10) { id name } }").await;
    let limit = gateway.post("{ users(limit: 10) { id name } }").await;
    let typename = gateway
        .post("{ __typename users(first: 10) { __typename id name } }")
        .await;

    let two = json!([{"id": "1", "name": "User 1"}, {"id": "2", "name": "User 2"}]);
    assert_data(&first, json!({"users": two}));
    assert_data(&limit, json!({"users": two}));
    assert_eq!(typename.status, 200, "{}", typename.text);
    assert!(typename.json().get("errors").is_none(), "{}", typename.text);
    assert_eq!(calls(&users).await, 3);
}

#[tokio::test]
async fn one_over_max_complexity_is_query_too_complex_and_calls_nothing() {
    let users = users_service().await;
    let gateway = gateway(&users, COMPLEXITY_21).await;

    // 21 + 1 for `version`.
    assert_query_refused(
        &gateway,
        "{ users(first: 10) { id name } version }",
        "QUERY_TOO_COMPLEX",
    )
    .await;
    // 1 + 11 × 2 = 23, by `first` and by `limit`.
    assert_query_refused(
        &gateway,
        "{ users(first: 11) { id name } }",
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_query_refused(
        &gateway,
        "{ users(limit: 11) { id name } }",
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_no_upstream_calls(&users, "too complex").await;
}

#[tokio::test]
async fn a_first_given_as_a_variable_multiplies_like_a_literal() {
    let users = users_service().await;
    let gateway = gateway(&users, COMPLEXITY_21).await;
    let query = "query Users($n: Int) { users(first: $n) { id name } }";

    assert_document_refused(
        &gateway,
        &json!({"query": query, "variables": {"n": 11}}),
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_document_refused(
        &gateway,
        &json!({"query": "query Users($n: Int) { users(limit: $n) { id name } }", "variables": {"n": 11}}),
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_no_upstream_calls(&users, "too complex by a variable").await;

    let at_limit = gateway.post_vars(query, json!({"n": 10})).await;
    assert_eq!(at_limit.status, 200, "{}", at_limit.text);
    assert!(
        at_limit.json()["data"]["users"].is_array(),
        "{}",
        at_limit.text
    );
    assert_eq!(calls(&users).await, 1);
}

#[tokio::test]
async fn a_first_variable_left_to_its_default_value_multiplies_by_the_default() {
    let users = users_service().await;
    let gateway = gateway(&users, COMPLEXITY_21).await;

    // No value given: `$n` is 11, so `users(first: $n) { id name }` costs
    // 1 + 11 × 2 = 23, as the literal `first: 11` does.
    assert_document_refused(
        &gateway,
        &json!({"query": "query Users($n: Int = 11) { users(first: $n) { id name } }"}),
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_document_refused(
        &gateway,
        &json!({
            "query": "query Users($n: Int = 11) { users(limit: $n) { id name } }",
            "variables": {}
        }),
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_no_upstream_calls(&users, "too complex by a variable's default").await;
}

#[tokio::test]
async fn nested_multipliers_multiply_each_other() {
    let users = users_service().await;
    let gateway = gateway(&users, COMPLEXITY_21).await;

    // 1 + 2 × (1 + 3 × 2) = 15.
    let within = gateway
        .post("{ users(first: 2) { orders(first: 3) { id total } } }")
        .await;
    assert_eq!(within.status, 200, "{}", within.text);
    assert!(within.json().get("errors").is_none(), "{}", within.text);
    let calls_within = calls(&users).await;
    assert!(calls_within > 0);

    // 1 + 3 × (1 + 3 × 2) = 22.
    assert_query_refused(
        &gateway,
        "{ users(first: 3) { orders(first: 3) { id total } } }",
        "QUERY_TOO_COMPLEX",
    )
    .await;
    // The same through fragments: 1 + 3 × (1 + 3 × 2) = 22.
    assert_query_refused(
        &gateway,
        "query { ...Q } fragment Q on Query { users(first: 3) { ...U } }
         fragment U on User { orders(first: 3) { ... on Order { id total } } }",
        "QUERY_TOO_COMPLEX",
    )
    .await;
    assert_eq!(calls(&users).await, calls_within, "refused work was called");
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_quickly_and_the_gateway_stays_healthy() {
    let users = users_service().await;
    // Default limits: max_complexity = 10000.
    let gateway = gateway(&users, "").await;
    // 30 levels of fragments spreading the next one twice: 2^30 fields.
    let mut bomb = String::from("query Bomb { ...F0 }\n");
    for level in 0..30 {
        let next = level + 1;
        bomb.push_str(&format!(
            "fragment F{level} on Query {{ ...F{next} ...F{next} }}\n"
        ));
    }
    bomb.push_str("fragment F30 on Query { version }\n");

    let started = Instant::now();
    let modern = gateway
        .post_raw(
            json!({ "query": bomb }).to_string(),
            &[("accept", GRAPHQL_RESPONSE_JSON)],
        )
        .await;
    let elapsed = started.elapsed();

    assert_refused(&modern, 400, "QUERY_TOO_COMPLEX");
    assert!(
        elapsed < Duration::from_secs(3),
        "the bomb took {elapsed:?} to refuse"
    );
    assert_query_refused(&gateway, &bomb, "QUERY_TOO_COMPLEX").await;
    assert_no_upstream_calls(&users, "fragment bomb").await;

    let health = gateway.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!((health.status, health.text.trim()), (200, "ok"));
    assert_data(
        &gateway.post(r#"{ user(id: "1") { name } }"#).await,
        json!({"user": {"name": "User 1"}}),
    );
}

// ---------------------------------------------------------------------------
// [limits].max_aliases, max_batch, max_body_bytes; fragment cycles
// ---------------------------------------------------------------------------

#[tokio::test]
async fn aliases_up_to_max_aliases_run() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_aliases = 2").await;

    let reply = gateway
        .post(r#"{ a: user(id: "1") { name } b: user(id: "2") { name } }"#)
        .await;

    assert_data(
        &reply,
        json!({"a": {"name": "User 1"}, "b": {"name": "User 2"}}),
    );
}

#[tokio::test]
async fn one_alias_over_max_aliases_is_too_many_aliases_and_calls_nothing() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_aliases = 2").await;

    assert_query_refused(
        &gateway,
        r#"{ a: user(id: "1") { name } b: user(id: "2") { name } c: user(id: "1") { id } }"#,
        "TOO_MANY_ALIASES",
    )
    .await;
    // Aliases inside fragments count, nested ones too.
    assert_query_refused(
        &gateway,
        r#"query { ...F } fragment F on Query { a: user(id: "1") { n: name } b: me { i: id } }"#,
        "TOO_MANY_ALIASES",
    )
    .await;
    assert_no_upstream_calls(&users, "too many aliases").await;
}

#[tokio::test]
async fn a_batch_at_max_batch_runs_and_one_more_is_batch_too_large_calling_nothing() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_batch = 2").await;
    let one = json!({"query": r#"{ user(id: "1") { name } }"#});
    let two = json!({"query": r#"{ user(id: "2") { name } }"#});

    for accept in [GRAPHQL_RESPONSE_JSON, "application/json"] {
        let over = gateway
            .post_raw(json!([one, two, one]).to_string(), &[("accept", accept)])
            .await;
        // A batch-level problem is 4xx whatever the media type (docs/HTTP.md).
        assert_refused(&over, 400, "BATCH_TOO_LARGE");
    }
    assert_no_upstream_calls(&users, "batch too large").await;

    let within = gateway.post_json(json!([one, two])).await;
    assert_eq!(within.status, 200, "{}", within.text);
    assert_eq!(
        within.json(),
        json!([
            {"data": {"user": {"name": "User 1"}}},
            {"data": {"user": {"name": "User 2"}}}
        ])
    );
    assert_eq!(calls(&users).await, 2);
}

#[tokio::test]
async fn a_limit_refusal_inside_a_batch_fails_only_that_operation() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_depth = 2").await;

    let reply = gateway
        .post_raw(
            json!([
                {"query": r#"{ user(id: "1") { name } }"#},
                {"query": r#"{ user(id: "2") { orders { id } } }"#}
            ])
            .to_string(),
            &[("accept", GRAPHQL_RESPONSE_JSON)],
        )
        .await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    let results = reply.json();
    assert_eq!(results[0], json!({"data": {"user": {"name": "User 1"}}}));
    assert_eq!(error_codes(&results[1]), ["QUERY_TOO_DEEP"], "{results}");
    assert!(results[1].get("data").is_none(), "{results}");
    assert_eq!(
        request_lines(&received(&users).await),
        ["GET /users/1"],
        "only the admitted operation calls upstream"
    );
}

/// `{"query":"{ user(id: \"1\") { name } }   …"}` exactly `length` bytes long.
fn body_of_length(length: usize) -> String {
    let bare = json!({"query": r#"{ user(id: "1") { name } }"#}).to_string();
    assert!(length >= bare.len());
    let padding = " ".repeat(length - bare.len());
    let body = json!({"query": format!(r#"{{ user(id: "1") {{ name }} }}{padding}"#)}).to_string();
    assert_eq!(body.len(), length);
    body
}

#[tokio::test]
async fn a_body_of_exactly_max_body_bytes_runs_and_one_byte_more_is_413() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_body_bytes = 256").await;

    for accept in [GRAPHQL_RESPONSE_JSON, "application/json"] {
        let over = gateway
            .post_raw(body_of_length(257), &[("accept", accept)])
            .await;
        // 413 whatever the media type: only document errors become 200.
        assert_refused(&over, 413, "PAYLOAD_TOO_LARGE");
    }
    assert_no_upstream_calls(&users, "body too large").await;

    let at_limit = gateway.post_raw(body_of_length(256), &[]).await;
    assert_data(&at_limit, json!({"user": {"name": "User 1"}}));
}

#[tokio::test]
async fn a_chunked_body_over_max_body_bytes_is_413_without_a_content_length() {
    let users = users_service().await;
    let gateway = gateway(&users, "[limits]\nmax_body_bytes = 256").await;
    let addr = gateway.base.trim_start_matches("http://").to_owned();
    let body = body_of_length(2000);
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );

    let status = raw_http_status(&addr, request.as_bytes()).await;

    assert_eq!(status, Some(413));
    assert_no_upstream_calls(&users, "chunked body too large").await;
}

#[tokio::test]
async fn a_fragment_cycle_is_graphql_validation_failed_and_calls_nothing() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;

    assert_query_refused(
        &gateway,
        r#"query { user(id: "1") { ...A } }
           fragment A on User { name ...B }
           fragment B on User { id ...A }"#,
        "GRAPHQL_VALIDATION_FAILED",
    )
    .await;
    assert_query_refused(
        &gateway,
        r#"query { user(id: "1") { ...Self } } fragment Self on User { id ...Self }"#,
        "GRAPHQL_VALIDATION_FAILED",
    )
    .await;
    assert_no_upstream_calls(&users, "fragment cycle").await;

    let health = gateway.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!(health.status, 200);
}

// ---------------------------------------------------------------------------
// [server].introspection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn with_introspection_off_schema_and_type_are_introspection_disabled() {
    let users = users_service().await;
    let gateway = gateway(&users, "[server]\nintrospection = false").await;

    assert_query_refused(
        &gateway,
        "{ __schema { queryType { name } } }",
        "INTROSPECTION_DISABLED",
    )
    .await;
    assert_query_refused(
        &gateway,
        r#"{ __type(name: "User") { name } }"#,
        "INTROSPECTION_DISABLED",
    )
    .await;
    // Hidden in a fragment, or beside a real field: still refused, and the
    // real field is not fetched.
    assert_query_refused(
        &gateway,
        r#"query { user(id: "1") { name } ...I } fragment I on Query { __schema { types { name } } }"#,
        "INTROSPECTION_DISABLED",
    )
    .await;
    // An alias does not hide it.
    assert_query_refused(
        &gateway,
        "{ s: __schema { types { name } } }",
        "INTROSPECTION_DISABLED",
    )
    .await;
    assert_no_upstream_calls(&users, "introspection disabled").await;
}

#[tokio::test]
async fn with_introspection_off_typename_still_works() {
    let users = users_service().await;
    let gateway = gateway(&users, "[server]\nintrospection = false").await;

    let root = gateway.post("{ __typename }").await;
    let nested = gateway
        .post(r#"{ user(id: "1") { __typename name } }"#)
        .await;

    assert_data(&root, json!({"__typename": "Query"}));
    assert_data(
        &nested,
        json!({"user": {"__typename": "User", "name": "User 1"}}),
    );
}

#[tokio::test]
async fn introspection_is_on_by_default() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;

    let schema = gateway
        .post("{ __schema { queryType { name } mutationType { name } } }")
        .await;
    let user = gateway
        .post(r#"{ __type(name: "Order") { name fields { name } } }"#)
        .await;

    assert_data(
        &schema,
        json!({"__schema": {"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}}}),
    );
    assert_data(
        &user,
        json!({"__type": {"name": "Order", "fields": [{"name": "id"}, {"name": "total"}]}}),
    );
    assert_no_upstream_calls(&users, "introspection").await;
}

// ---------------------------------------------------------------------------
// [rate_limit], memory backend
// ---------------------------------------------------------------------------

const USER_1: &str = r#"{ user(id: "1") { name } }"#;

/// 429 `RATE_LIMITED` with `Retry-After` the whole seconds, rounded up,
/// until a request would pass: the next token is `due` after the moment
/// the bucket was emptied, and at most `elapsed` has passed since then.
fn assert_rate_limited(reply: &Reply, due: Duration, elapsed: Duration) {
    assert_refused(reply, 429, "RATE_LIMITED");
    let whole_seconds = |d: Duration| (d.as_millis() as u64).div_ceil(1000).max(1);
    let lowest = whole_seconds(due.saturating_sub(elapsed));
    let highest = whole_seconds(due);
    let header = reply.header("retry-after");
    let seconds = header.as_deref().and_then(|v| v.parse::<u64>().ok());
    assert!(
        seconds.is_some_and(|s| (lowest..=highest).contains(&s)),
        "Retry-After {header:?}: expected the whole seconds, rounded up, until a \
         request would pass ({lowest}..={highest})"
    );
}

#[tokio::test]
async fn per_ip_burst_requests_pass_and_the_next_is_429_with_retry_after() {
    let users = users_service().await;
    let gateway = gateway(
        &users,
        "[rate_limit]\nper_second = 0.5\nburst = 2\nkey = \"ip\"\nbackend = \"memory\"",
    )
    .await;

    let start = Instant::now();
    let first = gateway.post(USER_1).await;
    let second = gateway.post(USER_1).await;
    let third = gateway.post(USER_1).await;
    let modern = gateway
        .post_with_headers(USER_1, &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;
    let over_get = gateway.get_params(&[("query", USER_1)]).await;
    let elapsed = start.elapsed();

    assert_data(&first, json!({"user": {"name": "User 1"}}));
    assert_data(&second, json!({"user": {"name": "User 1"}}));
    // One token every 2 s: the next one is a little under 2 s away, so
    // `Retry-After: 2` (unless this machine took over a second).
    let two_seconds = Duration::from_secs(2);
    assert_rate_limited(&third, two_seconds, elapsed);
    assert_rate_limited(&modern, two_seconds, elapsed);
    assert_rate_limited(&over_get, two_seconds, elapsed);
    assert_eq!(
        calls(&users).await,
        2,
        "rate-limited requests must not reach the upstream"
    );
}

#[tokio::test]
async fn a_fractional_rate_refills_a_token_after_its_fraction_of_a_second() {
    let users = users_service().await;
    // 0.8 per second: one token every 1.25 s.
    let gateway = gateway(&users, "[rate_limit]\nper_second = 0.8\nburst = 1").await;
    let period = Duration::from_millis(1250);

    let start = Instant::now();
    let first = gateway.post(USER_1).await;
    let refused = gateway.post(USER_1).await;
    let refused_at = start.elapsed();
    tokio::time::sleep_until((start + Duration::from_millis(1350)).into()).await;
    let refill = Instant::now();
    let refilled = gateway.post(USER_1).await;
    let refused_again = gateway.post(USER_1).await;
    let refused_again_at = refill.elapsed();

    assert_data(&first, json!({"user": {"name": "User 1"}}));
    // A little under 1.25 s, rounded up: 2.
    assert_rate_limited(&refused, period, refused_at);
    assert_data(&refilled, json!({"user": {"name": "User 1"}}));
    assert_rate_limited(&refused_again, period, refused_again_at);
    assert_eq!(calls(&users).await, 2);
}

/// The refill period at `per_second = 0.01`.
const HUNDRED_SECONDS: Duration = Duration::from_secs(100);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// An HS256 token for `sub`, valid for an hour.
fn token(sub: &str) -> String {
    let claims = json!({"sub": sub, "iat": now(), "exp": now() + 3600});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a test token")
}

#[tokio::test]
async fn per_subject_each_jwt_sub_has_its_own_bucket_and_anonymous_falls_back_to_ip() {
    let users = users_service().await;
    let gateway = gateway(
        &users,
        &format!(
            "[auth]\nsecret = \"{SECRET}\"\n\n\
             [rate_limit]\nper_second = 0.01\nburst = 1\nkey = \"subject\""
        ),
    )
    .await;
    let alice = format!("Bearer {}", token("alice"));
    let bob = format!("Bearer {}", token("bob"));
    let as_alice = [("authorization", alice.as_str())];
    let as_bob = [("authorization", bob.as_str())];

    let start = Instant::now();
    let alice_1 = gateway.post_with_headers(USER_1, &as_alice).await;
    let alice_2 = gateway.post_with_headers(USER_1, &as_alice).await;
    let bob_1 = gateway.post_with_headers(USER_1, &as_bob).await;
    let anonymous_1 = gateway.post(USER_1).await;
    let anonymous_2 = gateway.post(USER_1).await;
    let bob_2 = gateway.post_with_headers(USER_1, &as_bob).await;
    let elapsed = start.elapsed();

    let ok = json!({"user": {"name": "User 1"}});
    assert_data(&alice_1, ok.clone());
    // One token per 100 s.
    assert_rate_limited(&alice_2, HUNDRED_SECONDS, elapsed);
    assert_data(&bob_1, ok.clone());
    assert_data(&anonymous_1, ok);
    assert_rate_limited(&anonymous_2, HUNDRED_SECONDS, elapsed);
    assert_rate_limited(&bob_2, HUNDRED_SECONDS, elapsed);
    assert_eq!(calls(&users).await, 3);
}

#[tokio::test]
async fn healthz_and_readyz_are_never_rate_limited_and_spend_no_budget() {
    let users = users_service().await;
    let gateway = gateway(&users, "[rate_limit]\nper_second = 0.01\nburst = 1").await;

    for _ in 0..5 {
        let health = gateway.request(Method::GET, "/healthz", &[], None).await;
        assert_eq!((health.status, health.text.trim()), (200, "ok"));
        let ready = gateway.request(Method::GET, "/readyz", &[], None).await;
        assert_eq!(ready.status, 200, "{}", ready.text);
    }
    let start = Instant::now();
    let first = gateway.post(USER_1).await;
    let second = gateway.post(USER_1).await;
    let elapsed = start.elapsed();
    let health = gateway.request(Method::GET, "/healthz", &[], None).await;

    assert_data(&first, json!({"user": {"name": "User 1"}}));
    assert_rate_limited(&second, HUNDRED_SECONDS, elapsed);
    assert_eq!((health.status, health.text.trim()), (200, "ok"));
    assert_eq!(calls(&users).await, 1);
}

// ---------------------------------------------------------------------------
// [rate_limit], Redis backend
// ---------------------------------------------------------------------------

fn redis_rate_limit(url: &str) -> String {
    format!(
        "[rate_limit]\nper_second = 0.01\nburst = 3\nkey = \"ip\"\n\
         backend = \"redis\"\nredis_url = \"{url}\""
    )
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_one_limit_and_fail_open_when_it_dies() {
    let mut redis = RedisServer::start();
    let users = users_service().await;
    let a = gateway(&users, &redis_rate_limit(&redis.url())).await;
    let b = gateway(&users, &redis_rate_limit(&redis.url())).await;
    let ok = json!({"user": {"name": "User 1"}});

    let start = Instant::now();
    assert_data(&a.post(USER_1).await, ok.clone());
    assert_data(&a.post(USER_1).await, ok.clone());
    assert_data(&b.post(USER_1).await, ok.clone());
    let fourth_through_a = a.post(USER_1).await;
    let fourth_through_b = b.post(USER_1).await;
    let elapsed = start.elapsed();

    assert_rate_limited(&fourth_through_a, HUNDRED_SECONDS, elapsed);
    assert_rate_limited(&fourth_through_b, HUNDRED_SECONDS, elapsed);
    assert_eq!(calls(&users).await, 3, "refused requests reached upstream");

    redis.kill();
    assert!(!redis.answers_ping(), "redis-server is still answering");
    for round in 0..3 {
        for (name, gateway) in [("A", &a), ("B", &b)] {
            let reply = gateway.post(USER_1).await;
            assert_eq!(
                reply.status,
                200,
                "gateway {name}, request {round} after Redis died: {}",
                preview(&reply.text)
            );
            assert_eq!(reply.json(), json!({"data": ok}));
        }
    }
    assert_eq!(calls(&users).await, 9);
}

#[tokio::test]
async fn a_gateway_whose_redis_is_unreachable_from_the_start_serves() {
    let users = users_service().await;
    let nowhere = closed_port_url().replace("http://", "redis://");
    let gateway = gateway(&users, &redis_rate_limit(&nowhere)).await;

    for _ in 0..5 {
        assert_data(
            &gateway.post(USER_1).await,
            json!({"user": {"name": "User 1"}}),
        );
    }
}

// ---------------------------------------------------------------------------
// [persisted_queries]: automatic persisted queries
// ---------------------------------------------------------------------------

const ME: &str = "query Me { me { id name } }";
const VERSION: &str = "query Version { version }";

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted_extension(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

/// What Apollo Client's persisted-query link POSTs first: the hash only.
fn apollo_hash_only(operation: &str, query: &str) -> Value {
    json!({
        "operationName": operation,
        "variables": {},
        "extensions": persisted_extension(&sha256_hex(query)),
    })
}

/// What it POSTs after `PersistedQueryNotFound`: the query and its hash.
fn apollo_with_query(operation: &str, query: &str) -> Value {
    json!({
        "operationName": operation,
        "variables": {},
        "query": query,
        "extensions": persisted_extension(&sha256_hex(query)),
    })
}

/// Apollo Client's GET for a hashed query: no `query` parameter.
fn apollo_get_params(operation: &str, query: &str) -> Vec<(String, String)> {
    vec![
        ("operationName".to_owned(), operation.to_owned()),
        ("variables".to_owned(), "{}".to_owned()),
        (
            "extensions".to_owned(),
            persisted_extension(&sha256_hex(query)).to_string(),
        ),
    ]
}

async fn get_pairs(gateway: &TestGateway, pairs: &[(String, String)]) -> Reply {
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    gateway.get_params(&borrowed).await
}

/// HTTP 200, one error with exactly this message and code, no data.
fn assert_apq_answer(reply: &Reply, message: &str, code: &str) {
    assert_refused(reply, 200, code);
    assert_eq!(
        reply.json()["errors"][0]["message"],
        message,
        "{}",
        reply.text
    );
}

const ME_DATA: &str = r#"{"me": {"id": "me", "name": "Me"}}"#;

fn me_data() -> Value {
    serde_json::from_str(ME_DATA).expect("valid JSON")
}

#[tokio::test]
async fn apq_over_post_asks_for_the_query_then_runs_it_by_hash() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;

    // Apollo Client 3 sends `accept: */*`; newer clients prefer
    // graphql-response+json. PersistedQueryNotFound is 200 either way.
    let not_found = gateway
        .post_raw(apollo_hash_only("Me", ME).to_string(), &[("accept", "*/*")])
        .await;
    let not_found_modern = gateway
        .post_raw(
            apollo_hash_only("Me", ME).to_string(),
            &[(
                "accept",
                "application/graphql-response+json,application/json;q=0.9",
            )],
        )
        .await;
    assert_apq_answer(
        &not_found,
        "PersistedQueryNotFound",
        "PERSISTED_QUERY_NOT_FOUND",
    );
    assert_apq_answer(
        &not_found_modern,
        "PersistedQueryNotFound",
        "PERSISTED_QUERY_NOT_FOUND",
    );
    assert_no_upstream_calls(&users, "PersistedQueryNotFound").await;

    let registered = gateway.post_json(apollo_with_query("Me", ME)).await;
    assert_data(&registered, me_data());
    assert_eq!(calls(&users).await, 1);

    let by_hash = gateway.post_json(apollo_hash_only("Me", ME)).await;
    assert_data(&by_hash, me_data());
    let again = gateway.post_json(apollo_hash_only("Me", ME)).await;
    assert_data(&again, me_data());
    assert_eq!(calls(&users).await, 3, "one upstream call per execution");
}

#[tokio::test]
async fn apq_over_get_asks_for_the_query_then_runs_it_by_hash() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;
    let params = apollo_get_params("Me", ME);

    let not_found = get_pairs(&gateway, &params).await;
    assert_apq_answer(
        &not_found,
        "PersistedQueryNotFound",
        "PERSISTED_QUERY_NOT_FOUND",
    );
    assert_no_upstream_calls(&users, "PersistedQueryNotFound over GET").await;

    // Apollo registers with a POST carrying the query...
    let registered = gateway.post_json(apollo_with_query("Me", ME)).await;
    assert_data(&registered, me_data());
    // ...then GETs by hash.
    let by_hash = get_pairs(&gateway, &params).await;
    assert_data(&by_hash, me_data());
    assert_eq!(calls(&users).await, 2);
}

#[tokio::test]
async fn apq_registration_over_get_with_query_and_hash_works() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;
    let mut with_query = apollo_get_params("Version", VERSION);
    with_query.push(("query".to_owned(), VERSION.to_owned()));

    let registered = get_pairs(&gateway, &with_query).await;
    let by_hash = get_pairs(&gateway, &apollo_get_params("Version", VERSION)).await;
    let by_hash_post = gateway
        .post_json(apollo_hash_only("Version", VERSION))
        .await;

    assert_data(&registered, json!({"version": "1.0"}));
    assert_data(&by_hash, json!({"version": "1.0"}));
    assert_data(&by_hash_post, json!({"version": "1.0"}));
    assert_eq!(calls(&users).await, 3);
}

#[tokio::test]
async fn a_query_that_does_not_hash_to_its_sha256_is_400_hash_mismatch() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;
    let lying = json!({
        "operationName": "Me",
        "variables": {},
        "query": ME,
        "extensions": persisted_extension(&sha256_hex("query Me { me { id } }")),
    });

    let plain = gateway.post_json(lying.clone()).await;
    let modern = gateway
        .post_raw(lying.to_string(), &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;
    // The lie registered nothing under that hash.
    let by_hash = gateway
        .post_json(apollo_hash_only("Me", "query Me { me { id } }"))
        .await;

    assert_refused(&plain, 400, "PERSISTED_QUERY_HASH_MISMATCH");
    assert_refused(&modern, 400, "PERSISTED_QUERY_HASH_MISMATCH");
    assert_apq_answer(
        &by_hash,
        "PersistedQueryNotFound",
        "PERSISTED_QUERY_NOT_FOUND",
    );
    assert_no_upstream_calls(&users, "hash mismatch").await;
}

fn safelist_json(queries: &[&str]) -> String {
    let map: serde_json::Map<String, Value> = queries
        .iter()
        .map(|q| (sha256_hex(q), Value::String((*q).to_owned())))
        .collect();
    Value::Object(map).to_string()
}

async fn gateway_with_safelist(
    users: &MockServer,
    persisted: &str,
    listed: &[&str],
) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config(persisted))
        .file("persisted.json", &safelist_json(listed))
        .upstream("users", users)
        .start()
        .await
}

#[tokio::test]
async fn with_apq_off_a_persisted_query_is_not_supported_but_a_safelisted_hash_is_served() {
    let users = users_service().await;
    let gateway = gateway_with_safelist(
        &users,
        "[persisted_queries]\napq = false\nsafelist = \"persisted.json\"",
        &[VERSION],
    )
    .await;

    let hash_only = gateway.post_json(apollo_hash_only("Me", ME)).await;
    let with_query = gateway.post_json(apollo_with_query("Me", ME)).await;
    let over_get = get_pairs(&gateway, &apollo_get_params("Me", ME)).await;
    for reply in [&hash_only, &with_query, &over_get] {
        assert_apq_answer(
            reply,
            "PersistedQueryNotSupported",
            "PERSISTED_QUERY_NOT_SUPPORTED",
        );
    }
    assert_no_upstream_calls(&users, "APQ not supported").await;

    let safelisted = gateway
        .post_json(apollo_hash_only("Version", VERSION))
        .await;
    let plain = gateway.post(ME).await;
    assert_data(&safelisted, json!({"version": "1.0"}));
    assert_data(&plain, me_data());
    assert_eq!(calls(&users).await, 2);
}

#[tokio::test]
async fn a_safelisted_hash_is_served_without_registration_when_apq_is_on() {
    let users = users_service().await;
    let gateway = gateway_with_safelist(
        &users,
        "[persisted_queries]\nsafelist = \"persisted.json\"",
        &[VERSION],
    )
    .await;

    let by_hash = gateway
        .post_json(apollo_hash_only("Version", VERSION))
        .await;
    let unknown = gateway.post_json(apollo_hash_only("Me", ME)).await;
    let plain = gateway.post(ME).await;

    assert_data(&by_hash, json!({"version": "1.0"}));
    assert_apq_answer(
        &unknown,
        "PersistedQueryNotFound",
        "PERSISTED_QUERY_NOT_FOUND",
    );
    assert_data(&plain, me_data());
    assert_eq!(calls(&users).await, 2);
}

#[tokio::test]
async fn with_apq_off_a_safelisted_query_sent_with_its_hash_is_served() {
    let users = users_service().await;
    let gateway = gateway_with_safelist(
        &users,
        "[persisted_queries]\napq = false\nsafelist = \"persisted.json\"",
        &[VERSION],
    )
    .await;

    let with_query = gateway
        .post_json(apollo_with_query("Version", VERSION))
        .await;

    assert_data(&with_query, json!({"version": "1.0"}));
    assert_eq!(calls(&users).await, 1);
}

const ONLY_SAFELISTED: &str =
    "[persisted_queries]\nsafelist = \"persisted.json\"\nonly_safelisted = true";

#[tokio::test]
async fn only_safelisted_refuses_a_document_outside_the_safelist_with_400() {
    let users = users_service().await;
    let gateway = gateway_with_safelist(&users, ONLY_SAFELISTED, &[ME]).await;

    let plain = gateway.post(USER_1).await;
    let modern = gateway
        .post_with_headers(USER_1, &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;
    let over_get = gateway.get_params(&[("query", USER_1)]).await;
    let unknown_hash = gateway
        .post_json(apollo_hash_only("Version", VERSION))
        .await;
    let apq_registration = gateway
        .post_json(apollo_with_query("Version", VERSION))
        .await;
    let after_registration = gateway
        .post_json(apollo_hash_only("Version", VERSION))
        .await;

    for reply in [
        &plain,
        &modern,
        &over_get,
        &unknown_hash,
        &apq_registration,
        &after_registration,
    ] {
        assert_refused(reply, 400, "PERSISTED_QUERY_NOT_ALLOWED");
    }
    assert_no_upstream_calls(&users, "not safelisted").await;
}

#[tokio::test]
async fn only_safelisted_runs_a_listed_document_by_text_or_by_hash() {
    let users = users_service().await;
    let gateway = gateway_with_safelist(&users, ONLY_SAFELISTED, &[ME, VERSION]).await;

    let by_text = gateway.post(ME).await;
    let by_text_named = gateway
        .post_json(json!({"query": ME, "operationName": "Me", "variables": {}}))
        .await;
    let by_hash = gateway.post_json(apollo_hash_only("Me", ME)).await;
    let by_text_and_hash = gateway.post_json(apollo_with_query("Me", ME)).await;
    let by_hash_over_get = get_pairs(&gateway, &apollo_get_params("Version", VERSION)).await;

    for reply in [&by_text, &by_text_named, &by_hash, &by_text_and_hash] {
        assert_data(reply, me_data());
    }
    assert_data(&by_hash_over_get, json!({"version": "1.0"}));
    assert_eq!(calls(&users).await, 5);
}

#[test]
fn check_rejects_a_safelist_entry_whose_key_is_not_the_sha256_of_its_query() {
    let toml = "schema = \"schema.graphql\"\n\
                [persisted_queries]\nsafelist = \"persisted.json\"\n\
                [services.users]\nurl = \"http://127.0.0.1:9\"\n\
                [resolvers]\n\"Query.version\" = { service = \"users\", get = \"/version\" }\n";
    let sdl = "type Query { version: String }";
    let wrong_key = sha256_hex("query Other { version }");
    let bad = json!({ wrong_key.clone(): VERSION }).to_string();
    let good = safelist_json(&[VERSION]);

    let refused = check_files(toml, &[("schema.graphql", sdl), ("persisted.json", &bad)]);
    let accepted = check_files(toml, &[("schema.graphql", sdl), ("persisted.json", &good)]);
    let binary = run_binary(
        &["check"],
        toml,
        &[("schema.graphql", sdl), ("persisted.json", &bad)],
    );

    assert!(!refused.ok, "a wrong safelist key passed check");
    assert!(
        refused
            .lines
            .iter()
            .any(|line| line.contains("persisted.json") && line.contains(&wrong_key)),
        "no problem names the file and the key: {:?}",
        refused.lines
    );
    assert!(accepted.ok, "a valid safelist failed: {:?}", accepted.lines);
    assert_eq!(binary.code, Some(1), "stderr: {}", binary.stderr);
    assert!(
        binary.stderr.contains("persisted.json"),
        "stderr: {}",
        binary.stderr
    );
}

// ---------------------------------------------------------------------------
// [server].cors_origins
// ---------------------------------------------------------------------------

const FRONTEND: &str = "http://localhost:3000";

async fn preflight(gateway: &TestGateway, origin: &str) -> Reply {
    gateway
        .request(
            Method::OPTIONS,
            "/graphql",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type, authorization",
                ),
            ],
            None,
        )
        .await
}

fn header_lists(reply: &Reply, name: &str, wanted: &str) -> bool {
    reply.header(name).is_some_and(|value| {
        value
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(wanted))
    })
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_with_the_allowances() {
    let users = users_service().await;
    let gateway = gateway(
        &users,
        "[server]\ncors_origins = [\"http://localhost:3000\"]",
    )
    .await;

    let reply = preflight(&gateway, FRONTEND).await;

    assert!(
        reply.status == 200 || reply.status == 204,
        "preflight status {}: {}",
        reply.status,
        reply.text
    );
    assert_eq!(
        reply.header("access-control-allow-origin").as_deref(),
        Some(FRONTEND)
    );
    assert!(
        header_lists(&reply, "access-control-allow-methods", "POST"),
        "{:?}",
        reply.headers
    );
    for wanted in ["content-type", "authorization"] {
        assert!(
            header_lists(&reply, "access-control-allow-headers", wanted),
            "`{wanted}` not allowed: {:?}",
            reply.headers
        );
    }
    assert_no_upstream_calls(&users, "preflight").await;
}

#[tokio::test]
async fn a_post_from_an_allowed_origin_gets_allow_origin_and_another_origin_does_not() {
    let users = users_service().await;
    let gateway = gateway(
        &users,
        "[server]\ncors_origins = [\"http://localhost:3000\"]",
    )
    .await;

    let allowed = gateway
        .post_with_headers(USER_1, &[("origin", FRONTEND)])
        .await;
    let other = gateway
        .post_with_headers(USER_1, &[("origin", "http://evil.example")])
        .await;
    let other_preflight = preflight(&gateway, "http://evil.example").await;

    assert_data(&allowed, json!({"user": {"name": "User 1"}}));
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some(FRONTEND)
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other_preflight.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_star_origin_allows_any_origin() {
    let users = users_service().await;
    let gateway = gateway(&users, "[server]\ncors_origins = [\"*\"]").await;

    for origin in ["http://anything.example", "https://app.test:8443"] {
        let pre = preflight(&gateway, origin).await;
        let post = gateway
            .post_with_headers(USER_1, &[("origin", origin)])
            .await;
        for reply in [&pre, &post] {
            let allow = reply.header("access-control-allow-origin");
            assert!(
                allow.as_deref() == Some("*") || allow.as_deref() == Some(origin),
                "origin {origin}: access-control-allow-origin {allow:?}"
            );
        }
        assert!(
            header_lists(&pre, "access-control-allow-methods", "POST"),
            "{:?}",
            pre.headers
        );
        assert_data(&post, json!({"user": {"name": "User 1"}}));
    }
}

// ---------------------------------------------------------------------------
// The document cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_repeated_document_answers_each_request_with_its_own_variables() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;
    let query = "query User($id: ID!) { user(id: $id) { id name } }";

    let mut answers = Vec::new();
    for id in ["1", "2", "1", "2", "1"] {
        let reply = gateway.post_vars(query, json!({ "id": id })).await;
        assert_data(
            &reply,
            json!({"user": {"id": id, "name": format!("User {id}")}}),
        );
        answers.push(reply.text);
    }

    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0], answers[4]);
    assert_eq!(answers[1], answers[3]);
    assert_eq!(
        request_lines(&received(&users).await),
        [
            "GET /users/1",
            "GET /users/2",
            "GET /users/1",
            "GET /users/2",
            "GET /users/1"
        ]
    );
}

#[tokio::test]
async fn the_same_query_sent_three_times_gives_identical_answers() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;
    let query = r#"{ user(id: "1") { id name orders { id total } } me { name } }"#;

    let answers: Vec<Reply> = futures_join3(
        gateway.post(query),
        gateway.post(query),
        gateway.post(query),
    )
    .await;
    let sequential = gateway.post(query).await;

    for reply in answers.iter().chain([&sequential]) {
        assert_data(
            reply,
            json!({"user": {"id": "1", "name": "User 1", "orders": [{"id": "o1", "total": 9.5}]},
                   "me": {"name": "Me"}}),
        );
        assert_eq!(reply.text, sequential.text);
    }
}

async fn futures_join3(
    a: impl std::future::Future<Output = Reply>,
    b: impl std::future::Future<Output = Reply>,
    c: impl std::future::Future<Output = Reply>,
) -> Vec<Reply> {
    let (a, b, c) = tokio::join!(a, b, c);
    vec![a, b, c]
}

#[tokio::test]
async fn a_cached_document_selects_the_requested_operation_each_time() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;
    let query = r#"query One { user(id: "1") { name } } query Two { user(id: "2") { name } }"#;

    for (operation, name) in [("One", "User 1"), ("Two", "User 2"), ("One", "User 1")] {
        let reply = gateway
            .post_json(json!({"query": query, "operationName": operation}))
            .await;
        assert_data(&reply, json!({"user": {"name": name}}));
    }
}

#[tokio::test]
async fn a_cached_document_is_measured_again_with_each_requests_variables() {
    let users = users_service().await;
    let gateway = gateway(&users, COMPLEXITY_21).await;
    let query = "query Users($n: Int) { users(first: $n) { id name } }";

    let within = gateway.post_vars(query, json!({"n": 10})).await;
    let over = gateway.post_vars(query, json!({"n": 11})).await;
    let within_again = gateway.post_vars(query, json!({"n": 10})).await;
    let over_again = gateway.post_vars(query, json!({"n": 50})).await;

    assert_eq!(within.status, 200, "{}", within.text);
    assert!(within.json()["data"]["users"].is_array(), "{}", within.text);
    assert_refused(&over, 200, "QUERY_TOO_COMPLEX");
    assert_eq!(within_again.text, within.text);
    assert_refused(&over_again, 200, "QUERY_TOO_COMPLEX");
    assert_eq!(calls(&users).await, 2);
}

#[tokio::test]
async fn a_cached_document_error_is_reported_every_time() {
    let users = users_service().await;
    let gateway = gateway(&users, "").await;

    for _ in 0..3 {
        assert_query_refused(
            &gateway,
            "{ user(id: \"1\") { name }",
            "GRAPHQL_PARSE_FAILED",
        )
        .await;
        assert_query_refused(
            &gateway,
            r#"{ user(id: "1") { nope } }"#,
            "GRAPHQL_VALIDATION_FAILED",
        )
        .await;
    }
    assert_no_upstream_calls(&users, "document errors").await;
}

// ---------------------------------------------------------------------------
// Fuzz-style robustness
// ---------------------------------------------------------------------------

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Arguments a noisy document may carry: valid, wrongly typed, undeclared
/// variables, out of range.
const NOISY_ARGUMENTS: &[&str] = &[
    "\"1\"",
    "\"2\"",
    "1",
    "$id",
    "$n",
    "-1",
    "0",
    "99999999999999999999",
    "null",
    "[1, 2]",
    "{a: 1}",
    "true",
    "2.5",
    "\"\\u00e9\"",
    "\"\\\"\"",
    "ENUM",
];

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "$",
    "...",
    "fragment",
    "on",
    "query",
    "mutation",
    "\"",
    "\"\"\"",
    "#",
    "@",
    "!",
    "=",
    ",",
    "|",
    "&",
    "\\",
    "é",
    "\u{0}",
    "__schema",
    "__typename",
    "user",
    "1e999",
    "-",
    "\n",
    "\t",
    "💥",
];

/// Builds one random document. A valid one (about half) uses only literal
/// arguments of the right type, unique aliases, used fragments and
/// declared variables, so it reaches execution; a noisy one uses anything
/// and is then mutated.
struct DocumentGen<'r> {
    rng: &'r mut Rng,
    valid: bool,
    aliases: usize,
    uses_fragment: bool,
}

impl DocumentGen<'_> {
    fn argument(&mut self, valid: &[&'static str]) -> &'static str {
        if self.valid {
            self.rng.pick(valid)
        } else {
            self.rng.pick(NOISY_ARGUMENTS)
        }
    }

    fn alias(&mut self) -> String {
        if self.rng.chance(15) {
            self.aliases += 1;
            if self.valid {
                format!("a{}: ", self.aliases)
            } else {
                "a: ".to_owned()
            }
        } else {
            String::new()
        }
    }

    fn directive(&mut self) -> &'static str {
        let noisy = [" @include(if: $b)", " @skip(if: true)", " @unknown"];
        let valid = [
            " @include(if: true)",
            " @skip(if: false)",
            " @skip(if: true)",
        ];
        if self.rng.chance(80) {
            ""
        } else if self.valid {
            self.rng.pick(&valid)
        } else {
            self.rng.pick(&noisy)
        }
    }

    fn user_selection(&mut self, depth: usize) -> String {
        let mut fields = Vec::new();
        for _ in 0..=self.rng.below(3) {
            let field = match self.rng.below(7) {
                0 => "id".to_owned(),
                1 => "name".to_owned(),
                2 => "__typename".to_owned(),
                3 if depth < 5 => format!(
                    "orders(first: {}) {{ id total }}",
                    self.argument(&["1", "2", "0"])
                ),
                4 if depth < 5 => {
                    let first = self.argument(&["1", "3"]);
                    format!("friends(first: {first}) {}", self.user_selection(depth + 1))
                }
                5 => {
                    self.uses_fragment = true;
                    "...UserFields".to_owned()
                }
                _ => {
                    let inner = if self.valid {
                        self.rng.pick(&["id", "name"])
                    } else {
                        self.rng.pick(&["id", "name", "nope"])
                    };
                    format!("... on User {{ {inner} }}")
                }
            };
            let (alias, directive) = (self.alias(), self.directive());
            fields.push(format!("{alias}{field}{directive}"));
        }
        format!("{{ {} }}", fields.join(" "))
    }

    fn root_field(&mut self) -> String {
        let choices = if self.valid { 7 } else { 8 };
        match self.rng.below(choices) {
            0 => {
                let id = self.argument(&["\"1\"", "\"2\"", "1", "\"404\""]);
                format!("user(id: {id}) {}", self.user_selection(1))
            }
            1 => {
                let first = self.argument(&["1", "2", "10"]);
                let limit = self.argument(&["1", "5"]);
                format!(
                    "users(first: {first}, limit: {limit}) {}",
                    self.user_selection(1)
                )
            }
            2 => format!("me {}", self.user_selection(1)),
            3 => "version".to_owned(),
            4 => "__typename".to_owned(),
            5 => "__schema { types { name fields { name } } }".to_owned(),
            6 => format!(
                "__type(name: {}) {{ name }}",
                self.argument(&["\"User\"", "\"Nope\""])
            ),
            _ => format!(
                "rename(id: {}, name: {}) {{ id }}",
                self.rng.pick(NOISY_ARGUMENTS),
                self.rng.pick(NOISY_ARGUMENTS)
            ),
        }
    }

    fn document(mut self) -> String {
        let mut roots = Vec::new();
        for _ in 0..=self.rng.below(3) {
            let (alias, root) = (self.alias(), self.root_field());
            roots.push(format!("{alias}{root}"));
        }
        let header = if !self.valid {
            self.rng
                .pick(&[
                    "",
                    "query",
                    "query Q",
                    "query Q($id: ID!, $n: Int, $b: Boolean!)",
                    "query Q($id: ID = \"1\", $n: Int = 3, $b: Boolean = true)",
                    "mutation M",
                    "subscription S",
                    "query Q($x: [[Int!]!])",
                ])
                .to_owned()
        } else if self.rng.chance(40) {
            // Declared variables must be used: a root field uses them.
            roots.push("v: user(id: $id) { friends(first: $n) { id } }".to_owned());
            "query Q($id: ID!, $n: Int)".to_owned()
        } else {
            self.rng.pick(&["", "query", "query Q"]).to_owned()
        };
        let mut document = format!("{header} {{ {} }}", roots.join(" "));
        if self.uses_fragment || (!self.valid && self.rng.chance(50)) {
            document.push_str(" fragment UserFields on User { id name }");
        }
        if self.valid {
            return document;
        }
        if self.rng.chance(10) {
            document.push_str(" fragment Loop on User { ...Loop }");
        }
        mutate(self.rng, document)
    }
}

fn random_document(rng: &mut Rng) -> String {
    let valid = rng.chance(50);
    DocumentGen {
        rng,
        valid,
        aliases: 0,
        uses_fragment: false,
    }
    .document()
}

/// Up to three random edits: drop a character, duplicate a brace, insert
/// a token, truncate.
fn mutate(rng: &mut Rng, text: String) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.below(4) {
        if chars.is_empty() {
            break;
        }
        let at = rng.below(chars.len());
        match rng.below(5) {
            0 => {
                chars.remove(at);
            }
            1 => {
                let brace = if rng.chance(50) { '{' } else { '}' };
                let count = 1 + rng.below(3);
                for _ in 0..count {
                    chars.insert(at, brace);
                }
            }
            2 => {
                let token = rng.pick(TOKENS);
                for (offset, c) in token.chars().enumerate() {
                    chars.insert(at + offset, c);
                }
            }
            3 => chars.truncate(at),
            _ => {
                let other = rng.below(chars.len());
                chars.swap(at, other);
            }
        }
    }
    chars.into_iter().collect()
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64),
        3 => json!((rng.next() % 1000) as f64 / 7.0),
        4 => json!(rng.pick(&["1", "", "é", "{ user }", "\u{0}", "9999999999999"])),
        5 => json!(rng.below(100)),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                let key = rng.pick(&[
                    "query",
                    "variables",
                    "operationName",
                    "extensions",
                    "persistedQuery",
                    "sha256Hash",
                    "version",
                    "id",
                    "n",
                    "b",
                    "x",
                ]);
                map.insert(key.to_owned(), random_json(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn random_variables(rng: &mut Rng) -> Value {
    if rng.chance(20) {
        return random_json(rng, 2);
    }
    let mut map = serde_json::Map::new();
    for name in ["id", "n", "b", "x"] {
        if rng.chance(60) {
            let value = match rng.below(4) {
                0 => json!(rng.pick(&["1", "2", "x"])),
                1 => json!(rng.below(30)),
                2 => json!(rng.chance(50)),
                _ => random_json(rng, 2),
            };
            map.insert(name.to_owned(), value);
        }
    }
    Value::Object(map)
}

fn random_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => {
            let full = json!({
                "query": random_document(rng),
                "variables": random_variables(rng),
            })
            .to_string();
            let cut = rng.below(full.len() + 1);
            full.as_bytes()[..cut].to_vec()
        }
        2 => random_json(rng, 0).to_string().into_bytes(),
        3 => Value::Array(
            (0..rng.below(5))
                .map(|_| json!({"query": random_document(rng), "variables": random_variables(rng)}))
                .collect(),
        )
        .to_string()
        .into_bytes(),
        4 => {
            let mut body = json!({
                "query": random_document(rng),
                "variables": random_variables(rng),
            });
            if rng.chance(30) {
                body["operationName"] = json!(rng.pick(&["Q", "M", "S", "", "Nope"]));
            }
            if rng.chance(20) {
                body["extensions"] = random_json(rng, 1);
            }
            body.to_string().into_bytes()
        }
        _ => {
            let hash = if rng.chance(50) {
                sha256_hex(ME)
            } else {
                rng.pick(&["", "00", "zz", "ABCDEF"]).to_owned()
            };
            let mut body = json!({"extensions": persisted_extension(&hash)});
            if rng.chance(50) {
                body["query"] = json!(random_document(rng));
            }
            body.to_string().into_bytes()
        }
    }
}

/// What the gateway may answer to anything: 2xx or 4xx, with a GraphQL
/// response body; never 5xx, never a dropped connection.
fn assert_sane(what: &str, answer: Result<Reply, reqwest::Error>) {
    let reply = match answer {
        Ok(reply) => reply,
        Err(err) => panic!("no answer (dropped connection?) to {what}: {err}"),
    };
    assert!(
        (200..500).contains(&reply.status),
        "status {} for {what}; body: {}",
        reply.status,
        preview(&reply.text)
    );
    let body: Value = serde_json::from_str(&reply.text).unwrap_or_else(|err| {
        panic!(
            "body is not JSON ({err}) for {what}: status {}, {}",
            reply.status,
            preview(&reply.text)
        )
    });
    let results = match &body {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    for result in results {
        assert!(
            result.get("data").is_some() || result.get("errors").is_some(),
            "not a GraphQL response for {what}: {}",
            preview(&reply.text)
        );
    }
}

#[tokio::test]
async fn random_bodies_documents_and_variables_never_get_a_5xx_or_a_dropped_connection() {
    // Every mapped route answers; anything else (`/users/404`) is 404.
    let users = users_service().await;
    let mut gateway = ProcessGateway::start(
        &config("[limits]\nmax_depth = 8\nmax_complexity = 500"),
        SDL,
        &[("users", &users.uri())],
    )
    .await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut sent = 0usize;

    for case in 0..2400 {
        if Instant::now() > deadline {
            break;
        }
        match case % 3 {
            0 => {
                let body = random_body(&mut rng);
                let what = format!("body #{case}: {}", preview(&String::from_utf8_lossy(&body)));
                let answer = gateway
                    .try_request(
                        Method::POST,
                        "/graphql",
                        &[("content-type", "application/json")],
                        Some(body),
                    )
                    .await;
                assert_sane(&what, answer);
            }
            1 => {
                let body = json!({
                    "query": random_document(&mut rng),
                    "variables": random_variables(&mut rng),
                });
                let what = format!("document #{case}: {body}");
                let accept = rng.pick(&[GRAPHQL_RESPONSE_JSON, "application/json", "*/*"]);
                let answer = gateway
                    .try_request(
                        Method::POST,
                        "/graphql",
                        &[("content-type", "application/json"), ("accept", accept)],
                        Some(body.to_string().into_bytes()),
                    )
                    .await;
                assert_sane(&what, answer);
            }
            _ => {
                let document = random_document(&mut rng);
                let variables = random_variables(&mut rng).to_string();
                let variables = if rng.chance(50) {
                    mutate(&mut rng, variables)
                } else {
                    variables
                };
                let mut params = vec![("query", document.as_str())];
                if rng.chance(70) {
                    params.push(("variables", variables.as_str()));
                }
                if rng.chance(20) {
                    params.push(("operationName", "Q"));
                }
                let what = format!("GET #{case}: {params:?}");
                let path = format!("/graphql?{}", encode_params(&params));
                let answer = gateway.try_request(Method::GET, &path, &[], None).await;
                assert_sane(&what, answer);
            }
        }
        sent += 1;
        assert!(gateway.is_running(), "the gateway died after case #{case}");
    }

    assert!(sent >= 100, "only {sent} random requests ran in time");
    assert!(gateway.is_running(), "the gateway process died");
    let health = gateway.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!((health.status, health.text.trim()), (200, "ok"));
    let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;
    assert_eq!(reply.json(), json!({"data": {"user": {"name": "User 1"}}}));
}
