//! docs/HTTP.md: the HTTP surface — POST and GET /graphql, batches, request
//! errors and their statuses, media types, GraphiQL, /healthz.

use reqwest::Method;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use crate::support::*;

const SDL: &str = r#"
type Query { user(id: ID!): User }
type Mutation { rename(id: ID!, name: String!): User }
type User { id: ID! name: String }
"#;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

fn config(extra: &str) -> String {
    format!(
        r#"
{extra}

[services.users]
url = "{{users}}"

[resolvers]
"Query.user"      = {{ service = "users", get = "/users/{{args.id}}" }}
"Mutation.rename" = {{ service = "users", patch = "/users/{{args.id}}", body = {{ name = "{{args.name}}" }} }}
"#
    )
}

/// A gateway whose users service answers `{"id": <id>, "name": "User <id>"}`
/// for /users/1 and /users/2.
async fn gateway_with(users: &MockServer, extra: &str) -> TestGateway {
    for id in ["1", "2"] {
        serve(
            users,
            "GET",
            &format!("/users/{id}"),
            json_reply(json!({"id": id, "name": format!("User {id}")})),
        )
        .await;
    }
    TestGateway::builder()
        .schema(SDL)
        .config(&config(extra))
        .upstream("users", users)
        .start()
        .await
}

/// A users service that must not be called at all.
async fn untouchable() -> MockServer {
    let users = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!({})))
        .expect(0)
        .named("no upstream call")
        .mount(&users)
        .await;
    users
}

fn assert_request_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    let body = reply.json();
    assert_eq!(error_codes(&body), [code], "body: {body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(
        body.get("data"),
        None,
        "a request error has no data entry: {body}"
    );
}

#[tokio::test]
async fn a_post_with_a_json_body_is_answered_200_with_application_json() {
    let users = MockServer::start().await;
    let gateway = gateway_with(&users, "").await;

    let reply = gateway.post(r#"{ user(id: "1") { id name } }"#).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type(), "application/json");
    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "1", "name": "User 1"}}})
    );
}

#[tokio::test]
async fn a_post_with_variables_and_operation_name_runs_the_named_operation() {
    let users = MockServer::start().await;
    let gateway = gateway_with(&users, "").await;

    let reply = gateway
        .post_json(json!({
            "query": r#"query First { user(id: "1") { name } } query Second($id: ID!) { user(id: $id) { id name } }"#,
            "operationName": "Second",
            "variables": {"id": "2"}
        }))
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "2", "name": "User 2"}}})
    );
    assert_eq!(request_lines(&received(&users).await), ["GET /users/2"]);
}

#[tokio::test]
async fn a_get_with_query_variables_and_operation_name_runs_the_named_operation() {
    let users = MockServer::start().await;
    let gateway = gateway_with(&users, "").await;

    let reply = gateway
        .get_params(&[
            (
                "query",
                r#"query First { user(id: "1") { name } } query Second($id: ID!) { user(id: $id) { id name } }"#,
            ),
            ("operationName", "Second"),
            ("variables", r#"{"id": "2"}"#),
        ])
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type(), "application/json");
    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "2", "name": "User 2"}}})
    );
    assert_eq!(request_lines(&received(&users).await), ["GET /users/2"]);
}

#[tokio::test]
async fn a_content_type_header_on_a_bodiless_get_is_ignored() {
    let users = MockServer::start().await;
    let gateway = gateway_with(&users, "").await;
    let query = encode_params(&[("query", r#"{ user(id: "1") { name } }"#)]);

    for content_type in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let reply = gateway
            .get_with_headers(&query, &[("content-type", content_type)])
            .await;
        assert_eq!(
            reply.status, 200,
            "content-type {content_type}: {}",
            reply.text
        );
        assert_eq!(
            reply.json(),
            json!({"data": {"user": {"name": "User 1"}}}),
            "content-type {content_type}"
        );
    }
}

#[tokio::test]
async fn a_mutation_over_get_is_405_method_not_allowed_and_calls_nothing() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;
    let query = encode_params(&[("query", r#"mutation { rename(id: "1", name: "x") { id } }"#)]);

    let plain = gateway.get(&query).await;
    let modern = gateway
        .get_with_headers(&query, &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;

    assert_request_error(&plain, 405, "METHOD_NOT_ALLOWED");
    assert_request_error(&modern, 405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn other_methods_on_graphql_are_405_method_not_allowed() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;
    let body = json!({"query": r#"{ user(id: "1") { id } }"#}).to_string();

    for verb in [Method::PUT, Method::DELETE, Method::PATCH] {
        let reply = gateway
            .request(
                verb.clone(),
                "/graphql",
                &[("content-type", "application/json")],
                Some(body.clone().into_bytes()),
            )
            .await;
        assert_eq!(reply.status, 405, "{verb}: {}", reply.text);
        assert_eq!(reply.error_codes(), ["METHOD_NOT_ALLOWED"], "{verb}");
    }
}

#[tokio::test]
async fn a_batch_gets_one_result_per_operation_in_order_with_status_200() {
    let users = MockServer::start().await;
    let gateway = gateway_with(&users, "").await;
    let batch = json!([
        {"query": r#"{ user(id: "1") { name } }"#},
        {"query": "{ nope }"},
        {"query": "query($id: ID!) { user(id: $id) { id } }", "variables": {"id": "2"}}
    ]);

    for accept in [None, Some(GRAPHQL_RESPONSE_JSON)] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let reply = gateway.post_raw(batch.to_string(), &headers).await;

        assert_eq!(reply.status, 200, "accept {accept:?}: {}", reply.text);
        let body = reply.json();
        let results = body
            .as_array()
            .unwrap_or_else(|| panic!("an array: {body}"));
        assert_eq!(results.len(), 3, "{body}");
        assert_eq!(results[0], json!({"data": {"user": {"name": "User 1"}}}));
        assert_eq!(error_codes(&results[1]), ["GRAPHQL_VALIDATION_FAILED"]);
        assert_eq!(results[2], json!({"data": {"user": {"id": "2"}}}));
    }
}

#[tokio::test]
async fn a_batch_over_max_batch_is_400_batch_too_large_and_calls_nothing() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config("[limits]\nmax_batch = 2"))
        .upstream("users", &users)
        .start()
        .await;
    let operation = json!({"query": r#"{ user(id: "1") { name } }"#});
    let batch = json!([operation, operation, operation]);

    let plain = gateway.post_json(batch.clone()).await;
    let modern = gateway
        .post_raw(batch.to_string(), &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;

    assert_request_error(&plain, 400, "BATCH_TOO_LARGE");
    assert_request_error(&modern, 400, "BATCH_TOO_LARGE");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_bad_request() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    for accept in ["application/json", GRAPHQL_RESPONSE_JSON] {
        let reply = gateway
            .post_raw(
                r#"{"query": "{ user(id: \"1\") { id } }""#,
                &[("accept", accept)],
            )
            .await;
        assert_request_error(&reply, 400, "BAD_REQUEST");
        assert_eq!(reply.media_type(), accept);
    }
}

#[tokio::test]
async fn json_that_is_not_a_graphql_request_is_400_bad_request() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    for body in [
        json!({"foo": 1}),
        json!(42),
        json!("{ user(id: \"1\") { id } }"),
        json!(null),
        json!({"query": 5}),
        json!({"query": {"text": "{ user }"}}),
        json!({"query": "{ user(id: \"1\") { id } }", "variables": "x"}),
        json!({"query": "{ user(id: \"1\") { id } }", "variables": [1]}),
        json!({"query": "{ user(id: \"1\") { id } }", "operationName": 5}),
    ] {
        let reply = gateway.post_json(body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error_codes(), ["BAD_REQUEST"], "{body}");
    }
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413_payload_too_large() {
    let users = MockServer::start().await;
    let gateway = gateway_with(&users, "[limits]\nmax_body_bytes = 2000").await;
    let query = |padding: usize| {
        json!({"query": format!("{{ user(id: \"1\") {{ name }} }}{}", " ".repeat(padding))})
            .to_string()
    };

    let within = gateway.post_raw(query(1500), &[]).await;
    let over = gateway.post_raw(query(5000), &[]).await;

    assert_eq!(within.status, 200, "{}", within.text);
    assert_eq!(within.json(), json!({"data": {"user": {"name": "User 1"}}}));
    assert_request_error(&over, 413, "PAYLOAD_TOO_LARGE");
}

/// The same document error answered to each kind of client.
async fn assert_document_error(gateway: &TestGateway, query: &str, code: &str) {
    let modern = gateway
        .post_with_headers(query, &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;
    assert_request_error(&modern, 400, code);
    assert_eq!(modern.media_type(), GRAPHQL_RESPONSE_JSON);

    let preferred = gateway
        .post_with_headers(
            query,
            &[(
                "accept",
                "application/graphql-response+json, application/json;q=0.9",
            )],
        )
        .await;
    assert_request_error(&preferred, 400, code);
    assert_eq!(preferred.media_type(), GRAPHQL_RESPONSE_JSON);

    for accept in [
        Some("application/json"),
        Some("*/*"),
        Some("application/graphql-response+json;q=0.5, application/json"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let legacy = gateway
            .post_raw(json!({ "query": query }).to_string(), &headers)
            .await;
        assert_request_error(&legacy, 200, code);
        assert_eq!(legacy.media_type(), "application/json", "accept {accept:?}");
    }
}

#[tokio::test]
async fn a_parse_error_is_graphql_parse_failed_400_for_graphql_response_json_and_200_for_json() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    assert_document_error(
        &gateway,
        r#"{ user(id: "1") { name }"#,
        "GRAPHQL_PARSE_FAILED",
    )
    .await;
}

#[tokio::test]
async fn a_validation_error_is_graphql_validation_failed_400_for_graphql_response_json_and_200_for_json(
) {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    assert_document_error(
        &gateway,
        r#"{ user(id: "1") { nickname } }"#,
        "GRAPHQL_VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn a_get_with_a_parse_error_follows_the_same_media_rules() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;
    let query = encode_params(&[("query", "{ user(")]);

    let modern = gateway
        .get_with_headers(&query, &[("accept", GRAPHQL_RESPONSE_JSON)])
        .await;
    let legacy = gateway.get(&query).await;

    assert_request_error(&modern, 400, "GRAPHQL_PARSE_FAILED");
    assert_eq!(modern.media_type(), GRAPHQL_RESPONSE_JSON);
    assert_request_error(&legacy, 200, "GRAPHQL_PARSE_FAILED");
    assert_eq!(legacy.media_type(), "application/json");
}

#[tokio::test]
async fn graphiql_is_served_with_its_own_assets() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    let page = gateway
        .request(
            Method::GET,
            "/graphql",
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
            None,
        )
        .await;

    assert_eq!(page.status, 200);
    assert_eq!(page.media_type(), "text/html");
    assert!(
        page.text.to_ascii_lowercase().contains("graphiql"),
        "{}",
        preview(&page.text)
    );
    assert!(
        page.text.contains("/graphiql/graphiql.min.js"),
        "the page loads the bundled script"
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "unpkg.com",
        "jsdelivr",
    ] {
        assert!(
            !page.text.contains(external),
            "the page must not load anything from the internet ({external})"
        );
    }

    let script = gateway
        .request(Method::GET, "/graphiql/graphiql.min.js", &[], None)
        .await;
    assert_eq!(script.status, 200);
    assert!(
        script.media_type().contains("javascript"),
        "content-type {:?}",
        script.header("content-type")
    );
    assert!(script.text.len() > 1000, "a real script");
}

#[tokio::test]
async fn every_asset_the_graphiql_page_references_is_served() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    let page = gateway
        .request(Method::GET, "/graphql", &[("accept", "text/html")], None)
        .await;

    let assets: Vec<&str> = page
        .text
        .split(['"', '\''])
        .filter(|part| part.starts_with("/graphiql/"))
        .collect();
    assert!(!assets.is_empty(), "the page references its assets");
    for asset in assets {
        let reply = gateway.request(Method::GET, asset, &[], None).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(!reply.text.is_empty(), "{asset}");
    }
}

#[tokio::test]
async fn healthz_answers_200_ok() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(""))
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway.request(Method::GET, "/healthz", &[], None).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.text.trim(), "ok");
}

#[tokio::test]
async fn every_error_body_is_a_graphql_response() {
    let users = untouchable().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config("[limits]\nmax_body_bytes = 100"))
        .upstream("users", &users)
        .start()
        .await;

    let replies = [
        gateway.post_raw("nope", &[]).await,
        gateway.post_raw("x".repeat(500), &[]).await,
        gateway.request(Method::DELETE, "/graphql", &[], None).await,
        gateway.get("").await,
    ];

    for reply in replies {
        assert!(reply.status >= 400, "{}: {}", reply.status, reply.text);
        let body: Value = reply.json();
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        assert!(!errors.is_empty());
        assert!(errors[0]["message"].is_string(), "{body}");
        assert!(errors[0]["extensions"]["code"].is_string(), "{body}");
    }
}

fn preview(text: &str) -> String {
    crate::support::client::preview(text)
}
