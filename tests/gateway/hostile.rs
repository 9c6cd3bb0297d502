//! Hostile input: nothing a client sends may crash the gateway or get a
//! 5xx from the gateway itself, and it keeps serving afterwards. These
//! tests run the real binary in a child process, so a crash (a stack
//! overflow aborts a process) fails the test instead of the test binary.

use reqwest::Method;
use serde_json::json;
use wiremock::MockServer;

use crate::support::client::{self, raw_http_status};
use crate::support::*;

const SDL: &str = r#"
type Query { user(id: ID!): User }
type User { id: ID! name: String }
"#;

const TOML: &str = r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"#;

async fn hostile_target() -> (MockServer, ProcessGateway) {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;
    let gateway = ProcessGateway::start(TOML, SDL, &[("users", &users.uri())]).await;
    (users, gateway)
}

/// The gateway still runs, `/healthz` answers and a normal query works.
async fn assert_still_serving(gateway: &mut ProcessGateway) {
    assert!(gateway.is_running(), "the gateway process died");
    let health = gateway.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text.trim(), "ok");
    let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;
    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
}

/// A client error, with a GraphQL error body (an object, or an array for a
/// batch), never a 5xx.
fn assert_client_error(what: &str, reply: &Reply) {
    assert!(
        (400..500).contains(&reply.status) || reply.status == 200,
        "{what}: status {} ({})",
        reply.status,
        client::preview(&reply.text)
    );
    let body = reply.json();
    let first = if body.is_array() { &body[0] } else { &body };
    assert!(
        first["errors"][0]["extensions"]["code"].is_string(),
        "{what}: no error code in {}",
        client::preview(&reply.text)
    );
}

#[tokio::test]
async fn malformed_json_bodies_get_client_errors() {
    let (_users, mut gateway) = hostile_target().await;
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        "{{\"query\": \"{{ user(id: \\\"1\\\") {{ id }} }}\", \"variables\": {}{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("open brace", b"{".to_vec()),
        (
            "truncated",
            br#"{"query": "{ user(id: \"1\") { id } }"#.to_vec(),
        ),
        ("open bracket", b"[".to_vec()),
        ("bad array", b"[{]".to_vec()),
        ("lone quote", b"\"".to_vec()),
        (
            "trailing garbage",
            br#"{"query": "{ __typename }"} xyz"#.to_vec(),
        ),
        ("invalid utf-8", b"{\"query\": \"\xff\xfe\"}".to_vec()),
        ("nul bytes", b"\0\0\0\0".to_vec()),
        ("empty batch", b"[]".to_vec()),
        ("batch of numbers", b"[1, 2]".to_vec()),
        ("batch of nulls", b"[null]".to_vec()),
        ("null query", br#"{"query": null}"#.to_vec()),
        ("deeply nested array", deep_array.into_bytes()),
        ("deeply nested variables", deep_object.into_bytes()),
        (
            "huge number",
            format!("{{\"query\": {}}}", "9".repeat(10_000)).into_bytes(),
        ),
    ];

    for (what, body) in bodies {
        let reply = gateway.post_raw(body, &[]).await;
        assert_client_error(what, &reply);
        assert!(gateway.is_running(), "the gateway died on: {what}");
    }

    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn a_null_query_is_400_bad_request() {
    let (_users, mut gateway) = hostile_target().await;

    let reply = gateway.post_json(json!({"query": null})).await;

    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error_codes(), ["BAD_REQUEST"]);
    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn a_500_kb_query_is_answered_without_a_5xx() {
    let (_users, mut gateway) = hostile_target().await;
    let comment = format!("# {}\n{{ __typename }}", "x".repeat(500_000));
    let garbage = format!("{{ {} }}", "a".repeat(500_000));
    let many_fields = format!("{{ {} }}", "__typename ".repeat(50_000));

    let commented = gateway.post(&comment).await;
    let unknown = gateway.post(&garbage).await;
    let wide = gateway.post(&many_fields).await;

    assert_eq!(
        commented.status,
        200,
        "{}",
        client::preview(&commented.text)
    );
    assert_eq!(commented.json(), json!({"data": {"__typename": "Query"}}));
    assert_client_error("500 KB field name", &unknown);
    assert!(wide.status < 500, "50 000 fields: status {}", wide.status);
    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn a_500_kb_get_query_string_is_refused_without_a_5xx() {
    let (_users, mut gateway) = hostile_target().await;
    let request = format!(
        "GET /graphql?query={} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(500_000),
        gateway.addr
    );

    let status = raw_http_status(&gateway.addr, request.as_bytes()).await;

    // Refusing such a request line (414/431/400) or closing the connection
    // are both fine; a 5xx is not.
    if let Some(status) = status {
        assert!(status < 500, "a 500 KB URL got {status}");
    }
    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn deeply_nested_documents_are_refused_without_a_crash() {
    let (_users, mut gateway) = hostile_target().await;
    let selections = format!(
        "{}{}",
        "{ user(id: \"1\") ".repeat(20_000),
        "}".repeat(20_000)
    );
    let braces = format!("{}{}", "{ a ".repeat(100_000), "}".repeat(100_000));
    let list_value = format!(
        "{{ user(id: {}\"1\"{}) {{ id }} }}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let object_value = format!(
        "{{ user(id: {}1{}) {{ id }} }}",
        "{a: ".repeat(50_000),
        "}".repeat(50_000)
    );
    let fragments = {
        let mut text = String::from("{ ...F0 }\n");
        for i in 0..2_000 {
            text.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
        }
        text.push_str("fragment F2000 on Query { __typename }\n");
        text
    };

    for (what, query) in [
        ("20 000 nested selections", selections),
        ("100 000 nested braces", braces),
        ("100 000 nested list values", list_value),
        ("50 000 nested object values", object_value),
        ("2 000 chained fragments", fragments),
    ] {
        let reply = gateway.post(&query).await;
        assert!(gateway.is_running(), "the gateway died on: {what}");
        assert!(
            reply.status < 500,
            "{what}: status {} ({})",
            reply.status,
            client::preview(&reply.text)
        );
        assert!(
            reply.json()["errors"].is_array(),
            "{what}: {}",
            client::preview(&reply.text)
        );
    }

    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn variables_of_the_wrong_type_are_graphql_validation_failed() {
    let (users, mut gateway) = hostile_target().await;
    let query = "query($id: ID!) { user(id: $id) { name } }";

    for variables in [
        json!({"id": {"nested": 1}}),
        json!({"id": [1, 2]}),
        json!({"id": true}),
        json!({"id": null}),
        json!({}),
    ] {
        let body = json!({"query": query, "variables": variables}).to_string();
        let modern = gateway
            .post_raw(
                body.clone(),
                &[("accept", "application/graphql-response+json")],
            )
            .await;
        let legacy = gateway.post_raw(body, &[]).await;

        assert_eq!(modern.status, 400, "{variables}: {}", modern.text);
        assert_eq!(
            modern.error_codes(),
            ["GRAPHQL_VALIDATION_FAILED"],
            "{variables}"
        );
        assert_eq!(legacy.status, 200, "{variables}: {}", legacy.text);
        assert_eq!(
            legacy.error_codes(),
            ["GRAPHQL_VALIDATION_FAILED"],
            "{variables}"
        );
    }

    assert_eq!(
        received(&users).await.len(),
        0,
        "no upstream call for an invalid request"
    );
    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn an_unknown_operation_name_is_a_request_error() {
    let (users, mut gateway) = hostile_target().await;

    for (query, name) in [
        (r#"query A { user(id: "1") { name } }"#, "B"),
        (
            r#"query A { user(id: "1") { name } } query B { user(id: "1") { id } }"#,
            "C",
        ),
        (r#"{ user(id: "1") { name } }"#, "A"),
    ] {
        let reply = gateway
            .post_raw(
                json!({"query": query, "operationName": name}).to_string(),
                &[("accept", "application/graphql-response+json")],
            )
            .await;
        assert_eq!(reply.status, 400, "{query} / {name}: {}", reply.text);
        let codes = reply.error_codes();
        assert!(
            codes == ["GRAPHQL_VALIDATION_FAILED"] || codes == ["BAD_REQUEST"],
            "{query} / {name}: {codes:?}"
        );
    }

    assert_eq!(received(&users).await.len(), 0);
    assert_still_serving(&mut gateway).await;
}

#[tokio::test]
async fn hostile_get_parameters_get_client_errors() {
    let (_users, mut gateway) = hostile_target().await;

    for (what, query_string) in [
        ("no query", String::new()),
        (
            "variables not JSON",
            encode_params(&[("query", "{ __typename }"), ("variables", "{")]),
        ),
        (
            "variables a list",
            encode_params(&[("query", "{ __typename }"), ("variables", "[1]")]),
        ),
        (
            "extensions not JSON",
            encode_params(&[("query", "{ __typename }"), ("extensions", "nope")]),
        ),
        ("bad percent-encoding", "query=%zz%".to_owned()),
        ("invalid utf-8", "query=%ff%fe".to_owned()),
        ("repeated query", "query=a&query=b".to_owned()),
    ] {
        let reply = gateway.get(&query_string).await;
        assert_client_error(what, &reply);
        assert!(gateway.is_running(), "the gateway died on: {what}");
    }

    assert_still_serving(&mut gateway).await;
}
