//! docs/CONFIG.md "Upstream responses" and docs/ERRORS.md: what each kind of upstream answer
//! becomes — null, a located field error with its code, service and
//! status, a coerced value — and that no upstream detail leaks.

use std::time::Instant;

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  account(id: ID!): Account
  ping: String
}
type Mutation {
  touch(id: ID!): User
}
type User {
  id: ID!
  name: String!
  age: Int
  score: Float
  tier: Tier
  meta: JSON
  since: Date
  tags: [String!]
}
enum Tier { STANDARD GOLD }
scalar JSON
scalar Date
type Account {
  id: ID!
  balance: Int
  owner: User!
}
"#;

fn config(service_extra: &str) -> String {
    format!(
        r#"
[services.users]
url = "{{users}}"
{service_extra}

[resolvers]
"Query.user"     = {{ service = "users", get = "/users/{{args.id}}" }}
"Query.account"  = {{ service = "users", get = "/accounts/{{args.id}}" }}
"Query.ping"     = {{ service = "users", get = "/ping" }}
"Mutation.touch" = {{ service = "users", post = "/users/{{args.id}}/touch" }}
"Account.owner"  = {{ service = "users", get = "/users/{{parent.ownerId}}" }}
"#
    )
}

async fn gateway(users: &MockServer, service_extra: &str) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config(service_extra))
        .upstream("users", users)
        .start()
        .await
}

/// The one error of `body`, after checking there is exactly one.
fn only_error(body: &Value) -> &Value {
    let errors = body["errors"].as_array().unwrap_or_else(|| {
        panic!("expected errors in {body}");
    });
    assert_eq!(errors.len(), 1, "expected one error: {body}");
    &errors[0]
}

#[tokio::test]
async fn a_404_makes_a_nullable_field_null_without_an_error() {
    let users = MockServer::start().await;
    serve_times(&users, "GET", "/users/404", ResponseTemplate::new(404), 1).await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "404") { id name } }"#).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"data": {"user": null}}));
}

#[tokio::test]
async fn a_500_is_upstream_error_with_service_status_and_path() {
    let users = MockServer::start().await;
    serve_times(
        &users,
        "GET",
        "/users/1",
        ResponseTemplate::new(500).set_body_string("boom at db-7.internal:5432"),
        1,
    )
    .await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { id name } }"#).await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_ERROR"));
    assert_eq!(error["extensions"]["service"], json!("users"));
    assert_eq!(error["extensions"]["status"], json!(500));
    assert_eq!(error["path"], json!(["user"]));
    assert!(error["message"].is_string());
    assert!(
        !reply.text.contains("db-7"),
        "upstream body leaked: {}",
        reply.text
    );
}

#[tokio::test]
async fn a_get_answered_503_is_retried_once_by_default() {
    let users = MockServer::start().await;
    serve_times(&users, "GET", "/users/1", ResponseTemplate::new(503), 2).await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { id } }"#).await;

    let body = reply.json();
    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_ERROR"));
    assert_eq!(error["extensions"]["status"], json!(503));
}

#[tokio::test]
async fn retries_zero_makes_one_call() {
    let users = MockServer::start().await;
    serve_times(&users, "GET", "/users/1", ResponseTemplate::new(503), 1).await;
    let gateway = gateway(&users, "retries = 0").await;

    let reply = gateway.post(r#"{ user(id: "1") { id } }"#).await;

    assert_eq!(error_codes(&reply.json()), ["UPSTREAM_ERROR"]);
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let users = MockServer::start().await;
    serve_times(
        &users,
        "POST",
        "/users/1/touch",
        ResponseTemplate::new(503),
        1,
    )
    .await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"mutation { touch(id: "1") { id } }"#).await;

    let body = reply.json();
    assert_eq!(body["data"], json!({"touch": null}));
    assert_eq!(error_codes(&body), ["UPSTREAM_ERROR"]);
    assert_eq!(body["errors"][0]["extensions"]["status"], json!(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_slower_than_timeout_ms_is_upstream_timeout() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})).set_delay(ms(5000)),
    )
    .await;
    let gateway = gateway(&users, "timeout_ms = 300").await;

    let started = Instant::now();
    let reply = gateway.post(r#"{ user(id: "1") { id } }"#).await;
    let elapsed = started.elapsed();

    let body = reply.json();
    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_TIMEOUT"));
    assert_eq!(error["extensions"]["service"], json!("users"));
    assert_eq!(
        error["extensions"].get("status"),
        None,
        "no status without an answer"
    );
    assert_eq!(error["path"], json!(["user"]));
    assert!(
        elapsed < ms(3000),
        "timeout_ms = 300 (retries included) but the answer took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_timeout_ms_overrides_the_service_timeout() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})).set_delay(ms(5000)),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(
            r#"
[services.users]
url = "{users}"
timeout_ms = 20000

[resolvers]
"Query.user"     = { service = "users", get = "/users/{args.id}", timeout_ms = 300 }
"Query.account"  = { service = "users", get = "/accounts/{args.id}" }
"Query.ping"     = { service = "users", get = "/ping" }
"Mutation.touch" = { service = "users", post = "/users/{args.id}/touch" }
"#,
        )
        .upstream("users", &users)
        .start()
        .await;

    let started = Instant::now();
    let reply = gateway.post(r#"{ user(id: "1") { id } }"#).await;

    assert_eq!(error_codes(&reply.json()), ["UPSTREAM_TIMEOUT"]);
    assert!(started.elapsed() < ms(3000), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_refused_connection_is_upstream_unavailable() {
    let closed = closed_port_url();
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream_url("users", &closed)
        .start()
        .await;

    let reply = gateway.post(r#"{ user(id: "1") { id } }"#).await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_UNAVAILABLE"));
    assert_eq!(error["extensions"]["service"], json!("users"));
    assert_eq!(error["extensions"].get("status"), None);
    assert_eq!(error["path"], json!(["user"]));
    let port = closed.rsplit(':').next().expect("a port");
    assert!(
        !reply.text.contains("127.0.0.1") && !reply.text.contains(port),
        "the upstream address leaked: {}",
        reply.text
    );
}

#[tokio::test]
async fn a_2xx_body_that_is_not_json_is_upstream_bad_response() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        ResponseTemplate::new(200).set_body_raw("<html>secret-page</html>", "text/html"),
    )
    .await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { id } }"#).await;

    let body = reply.json();
    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_BAD_RESPONSE"));
    assert_eq!(error["extensions"]["service"], json!("users"));
    assert_eq!(error["path"], json!(["user"]));
    assert!(!reply.text.contains("secret-page"), "{}", reply.text);
}

#[tokio::test]
async fn a_2xx_body_nested_too_deep_is_upstream_bad_response_and_the_gateway_lives_on() {
    let users = MockServer::start().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    serve(
        &users,
        "GET",
        "/users/1",
        ResponseTemplate::new(200).set_body_raw(deep, "application/json"),
    )
    .await;
    serve(&users, "GET", "/users/2", json_reply(json!({"id": "2"}))).await;
    let gateway = gateway(&users, "").await;

    let body = gateway.post(r#"{ user(id: "1") { id } }"#).await.json();

    assert_eq!(body["data"], json!({"user": null}));
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_BAD_RESPONSE"));
    assert_eq!(error["extensions"]["service"], json!("users"));
    let next = gateway.post(r#"{ user(id: "2") { id } }"#).await.json();
    assert_eq!(next, json!({"data": {"user": {"id": "2"}}}));
}

#[tokio::test]
async fn a_key_an_upstream_object_repeats_reads_as_its_last_value() {
    // Both ways the writer reads keys: one pass over a small object's
    // entries, and a lookup per field in an object with many more keys.
    let users = MockServer::start().await;
    let small = r#"{"id": "1", "name": "first", "name": "last"}"#;
    let padding: String = (0..20).map(|i| format!(r#""k{i}": {i}, "#)).collect();
    let wide = format!(r#"{{{padding}"id": "2", "name": "first", "name": "last"}}"#);
    for (route, body) in [("/users/1", small.to_owned()), ("/users/2", wide)] {
        serve(
            &users,
            "GET",
            route,
            ResponseTemplate::new(200).set_body_raw(body, "application/json"),
        )
        .await;
    }
    let gateway = gateway(&users, "").await;

    for id in ["1", "2"] {
        let body = gateway
            .post(&format!(r#"{{ user(id: "{id}") {{ id name }} }}"#))
            .await
            .json();
        assert_eq!(
            body,
            json!({"data": {"user": {"id": id, "name": "last"}}}),
            "user {id}"
        );
    }
}

// ---- coercion ---------------------------------------------------------------

#[tokio::test]
async fn values_are_coerced_to_their_schema_types() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/42",
        json_reply(json!({
            "id": 42,
            "name": "Ann",
            "age": 41,
            "score": 3,
            "tier": "GOLD",
            "meta": {"a": [1, {"b": null}], "c": "x"},
            "since": "2020-01-02",
            "tags": ["x", "y"]
        })),
    )
    .await;
    let gateway = gateway(&users, "").await;

    let reply = gateway
        .post(r#"{ user(id: "42") { id name age score tier meta since tags } }"#)
        .await;

    let body = reply.json();
    assert_eq!(body.get("errors"), None, "{body}");
    let user = &body["data"]["user"];
    assert_eq!(user["id"], json!("42"), "ID from an integer is a string");
    assert_eq!(user["name"], json!("Ann"));
    assert_eq!(user["age"], json!(41));
    assert_eq!(user["score"].as_f64(), Some(3.0), "Float from an integer");
    assert_eq!(user["tier"], json!("GOLD"), "enum from its name");
    assert_eq!(
        user["meta"],
        json!({"a": [1, {"b": null}], "c": "x"}),
        "a custom scalar passes JSON through"
    );
    assert_eq!(user["since"], json!("2020-01-02"));
    assert_eq!(user["tags"], json!(["x", "y"]));
}

#[tokio::test]
async fn a_value_that_does_not_fit_its_type_is_a_field_error_and_the_rest_resolves() {
    let users = MockServer::start().await;
    let cases: [(&str, Value, &str); 6] = [
        ("1", json!({"age": 3_000_000_000_i64}), "age"),
        ("2", json!({"age": "41"}), "age"),
        ("3", json!({"age": 1.5}), "age"),
        ("4", json!({"tier": "PLATINUM"}), "tier"),
        ("5", json!({"score": "fast"}), "score"),
        ("6", json!({"tags": "x"}), "tags"),
    ];
    for (id, extra, _) in &cases {
        let mut user = json!({"id": id, "name": "Ann"});
        for (key, value) in extra.as_object().expect("object") {
            user[key] = value.clone();
        }
        serve(&users, "GET", &format!("/users/{id}"), json_reply(user)).await;
    }
    let gateway = gateway(&users, "").await;

    for (id, extra, field) in &cases {
        let reply = gateway
            .post(&format!(r#"{{ user(id: "{id}") {{ id name {field} }} }}"#))
            .await;
        let body = reply.json();
        let mut expected = json!({"id": id, "name": "Ann"});
        expected[*field] = Value::Null;
        assert_eq!(
            body["data"],
            json!({ "user": expected }),
            "upstream {extra}: {body}"
        );
        let error = only_error(&body);
        assert_eq!(
            error["extensions"]["code"],
            json!("UPSTREAM_BAD_RESPONSE"),
            "upstream {extra}: {body}"
        );
        assert_eq!(error["path"], json!(["user", field]), "upstream {extra}");
    }
}

#[tokio::test]
async fn a_null_for_a_non_null_field_nulls_the_nearest_nullable_parent() {
    let users = MockServer::start().await;
    serve(&users, "GET", "/users/1", json_reply(json!({"id": "1"}))).await;
    serve(&users, "GET", "/ping", json_reply(json!("pong"))).await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { id name } ping }"#).await;

    let body = reply.json();
    assert_eq!(body["data"], json!({"user": null, "ping": "pong"}));
    let error = only_error(&body);
    assert_eq!(error["path"], json!(["user", "name"]));
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_BAD_RESPONSE"));
}

#[tokio::test]
async fn an_upstream_error_on_a_non_null_field_propagates_to_its_nullable_parent() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/accounts/a1",
        json_reply(json!({"id": "a1", "balance": 5, "ownerId": "9"})),
    )
    .await;
    serve(&users, "GET", "/users/9", ResponseTemplate::new(500)).await;
    serve(&users, "GET", "/ping", json_reply(json!("pong"))).await;
    let gateway = gateway(&users, "").await;

    let reply = gateway
        .post(r#"{ account(id: "a1") { id balance owner { name } } ping }"#)
        .await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["data"], json!({"account": null, "ping": "pong"}));
    let error = only_error(&body);
    assert_eq!(error["path"], json!(["account", "owner"]));
    assert_eq!(error["extensions"]["code"], json!("UPSTREAM_ERROR"));
    assert_eq!(error["extensions"]["service"], json!("users"));
    assert_eq!(error["extensions"]["status"], json!(500));
}

#[tokio::test]
async fn no_upstream_url_or_body_reaches_the_client() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        ResponseTemplate::new(500).set_body_string("SECRET-STACKTRACE at /srv/app.py line 3"),
    )
    .await;
    serve(
        &users,
        "GET",
        "/users/2",
        ResponseTemplate::new(200).set_body_raw("SECRET-HTML <body>", "text/html"),
    )
    .await;
    serve(
        &users,
        "GET",
        "/users/3",
        ResponseTemplate::new(502).set_body_string("SECRET-GATEWAY"),
    )
    .await;
    serve(
        &users,
        "GET",
        "/users/4",
        json_reply(json!({"id": "4", "name": "Ann", "age": "SECRET-AGE"})),
    )
    .await;
    let gateway = gateway(&users, "").await;
    let address = users.address().to_string();

    let reply = gateway
        .post(
            r#"{ a: user(id: "1") { id } b: user(id: "2") { id } c: user(id: "3") { id } d: user(id: "4") { age } }"#,
        )
        .await;

    let body = reply.json();
    assert_eq!(
        error_codes(&body).len(),
        4,
        "one error per failing field: {body}"
    );
    for leak in [
        "SECRET",
        address.as_str(),
        "127.0.0.1",
        "localhost",
        "/users/",
        "http://",
    ] {
        assert!(
            !reply.text.contains(leak),
            "`{leak}` reached the client: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn an_empty_upstream_list_is_an_empty_list_and_a_missing_one_is_null() {
    let users = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!({"id": "1", "name": "Ann", "tags": []})))
        .mount(&users)
        .await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { tags age } }"#).await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"tags": [], "age": null}}})
    );
}

#[tokio::test]
async fn a_redirect_from_a_plain_http_upstream_is_followed() {
    let users = MockServer::start().await;
    serve_times(
        &users,
        "GET",
        "/users/1",
        ResponseTemplate::new(302).insert_header("location", "/people/1"),
        1,
    )
    .await;
    serve_times(
        &users,
        "GET",
        "/people/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
        1,
    )
    .await;
    let gateway = gateway(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { id name } }"#).await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "1", "name": "Ann"}}})
    );
}

/// The users service with a credential of its own and a mutation that
/// posts a body: what a redirect may carry on, and what it may not.
const REDIRECT_CONFIG: &str = r#"
[services.users]
url = "{users}"
headers = { authorization = "Bearer s3cret" }
follow_redirects = "any"

[resolvers]
"Query.user"     = { service = "users", get = "/users/{args.id}" }
"Query.account"  = { service = "users", get = "/accounts/{args.id}" }
"Query.ping"     = { service = "users", get = "/ping" }
"Mutation.touch" = { service = "users", post = "/users/{args.id}/touch", body = { id = "{args.id}" } }
"#;

async fn redirect_gateway(users: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(REDIRECT_CONFIG)
        .upstream("users", users)
        .start()
        .await
}

/// Runs the `touch` mutation while `POST /users/1/touch` answers `status`
/// pointing at `onward`, which answers a `method` call once; the first URL
/// must be asked once too. What the users service received, in order.
async fn touch_redirected(status: u16, method: &str, onward: &str) -> (String, Vec<Request>) {
    let users = MockServer::start().await;
    serve_times(
        &users,
        "POST",
        "/users/1/touch",
        ResponseTemplate::new(status).insert_header("location", onward),
        1,
    )
    .await;
    serve_times(
        &users,
        method,
        onward,
        json_reply(json!({"id": "1", "name": "Ann"})),
        1,
    )
    .await;
    let gateway = redirect_gateway(&users).await;

    let reply = gateway
        .post(r#"mutation { touch(id: "1") { name } }"#)
        .await;

    assert_eq!(reply.json(), json!({"data": {"touch": {"name": "Ann"}}}));
    let asked = received(&users).await;
    assert_eq!(asked.len(), 2, "the first URL once, then the target once");
    (users.uri(), asked)
}

#[tokio::test]
async fn a_post_redirected_by_307_goes_on_once_with_its_method_and_body() {
    let (base, asked) = touch_redirected(307, "POST", "/people/1/touch").await;

    let body: Value = serde_json::from_slice(&asked[1].body).expect("a JSON body");
    assert_eq!(body, json!({"id": "1"}), "the body went along");
    assert_eq!(
        asked[1].headers.get("referer").map(|v| v.to_str().unwrap()),
        Some(format!("{base}/users/1/touch").as_str())
    );
}

#[tokio::test]
async fn a_post_redirected_by_303_goes_on_once_as_a_get_without_its_body() {
    let (_, asked) = touch_redirected(303, "GET", "/people/1").await;

    assert!(asked[1].body.is_empty(), "no body on the GET");
    assert!(asked[1].headers.get("content-type").is_none());
}

#[tokio::test]
async fn a_redirect_to_another_host_does_not_carry_the_credentials() {
    let users = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    serve_times(
        &users,
        "GET",
        "/users/1",
        ResponseTemplate::new(302)
            .insert_header("location", format!("{}/people/1", elsewhere.uri()).as_str()),
        1,
    )
    .await;
    serve_times(
        &elsewhere,
        "GET",
        "/people/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
        1,
    )
    .await;
    let gateway = redirect_gateway(&users).await;

    let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    let first = &received(&users).await[0];
    assert_eq!(first.headers["authorization"], "Bearer s3cret");
    let onward = &received(&elsewhere).await[0];
    assert!(
        onward.headers.get("authorization").is_none(),
        "the service's credential stays with its host"
    );
}

#[tokio::test]
async fn a_proxy_named_in_the_environment_carries_plain_http_calls() {
    let users = MockServer::start().await;
    let proxy = MockServer::start().await;
    serve_times(
        &proxy,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Via the proxy"})),
        1,
    )
    .await;
    let gateway = ProcessGateway::start_with_env(
        &config(""),
        SDL,
        &[("users", &users.uri())],
        &[("HTTP_PROXY", &proxy.uri()), ("NO_PROXY", "")],
    )
    .await;

    let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"name": "Via the proxy"}}})
    );
    assert!(
        received(&users).await.is_empty(),
        "the proxy carried the call"
    );
    let asked = received(&proxy).await;
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].url.as_str(),
        format!("{}/users/1", users.uri()),
        "asked for the upstream's URL"
    );
}
