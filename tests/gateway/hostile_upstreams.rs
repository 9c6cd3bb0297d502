//! Hostile values and hostile upstreams: a value from a client or from
//! upstream JSON never changes which endpoint is called, a redirect goes
//! only where `follow_redirects` lets it and never carries the gateway's
//! headers to another origin, and no answer is held past
//! `max_response_bytes`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

/// A raw HTTP/1.1 upstream on a loopback port that records each request's
/// request line as sent (wiremock reads the target as a URL, which
/// resolves dot-segments) and answers every request with `answer`.
struct RawUpstream {
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

/// What a [`RawUpstream`] writes back.
#[derive(Clone, Copy)]
enum Answer {
    /// `200` with this JSON body and its `Content-Length`.
    Json(&'static str),
    /// `200`, `Content-Length: N`, then `N` bytes of a JSON string.
    Declared(usize),
    /// `200`, chunked, 64 KiB chunks until the gateway hangs up.
    Endless,
    /// `200` whose head holds a header of this many bytes, then `{}`.
    LongHead(usize),
}

impl RawUpstream {
    async fn start(answer: Answer) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move { serve_raw(socket, answer, seen).await });
            }
        });
        RawUpstream { url, lines }
    }

    fn request_lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }
}

async fn serve_raw(mut socket: TcpStream, answer: Answer, seen: Arc<Mutex<Vec<String>>>) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or_default().to_owned();
        seen.lock().expect("lines").push(line);
        let written = match answer {
            Answer::Json(body) => {
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(reply.as_bytes()).await
            }
            Answer::Declared(length) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut left = length;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                Ok(())
            }
            Answer::LongHead(length) => {
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-padding: {}\r\ncontent-length: 2\r\n\r\n{{}}",
                    "p".repeat(length)
                );
                socket.write_all(reply.as_bytes()).await
            }
            Answer::Endless => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                loop {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        };
        if written.is_err() {
            return;
        }
    }
}

const SDL: &str = r#"
type Query { user(id: ID!): User }
type User { id: ID! name: String }
"#;

const DOT_SDL: &str = r#"
type Query {
  user(id: ID!): User
  pair(a: String!, b: String!): User
}
type User { id: ID! name: String orders: [Order!] }
type Order { id: ID! }
"#;

const DOT_TOML: &str = r#"
[services.users]
url = "{users}/api/v1"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"Query.pair" = { service = "users", get = "/users/{args.a}/{args.b}/profile" }
"User.orders" = { service = "users", get = "/users/{parent.id}/orders" }
"#;

#[tokio::test]
async fn an_argument_of_dots_never_changes_the_endpoint() {
    let users = RawUpstream::start(Answer::Json(r#"{"id":"x","name":"Ann"}"#)).await;
    let gateway = ProcessGateway::start(DOT_TOML, DOT_SDL, &[("users", &users.url)]).await;

    for (query, line) in [
        (
            r#"{ user(id: "..") { name } }"#,
            "GET /api/v1/users/%2E%2E HTTP/1.1",
        ),
        (
            r#"{ user(id: ".") { name } }"#,
            "GET /api/v1/users/%2E HTTP/1.1",
        ),
        // Two of them would climb out of the service's base path.
        (
            r#"{ pair(a: "..", b: "..") { name } }"#,
            "GET /api/v1/users/%2E%2E/%2E%2E/profile HTTP/1.1",
        ),
    ] {
        let reply = gateway.post(query).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.text);
        let lines = users.request_lines();
        assert_eq!(lines.last().map(String::as_str), Some(line), "{query}");
    }
    assert_eq!(users.request_lines().len(), 3, "one call per query");
}

#[tokio::test]
async fn a_parent_value_of_dots_never_changes_the_endpoint() {
    let users = RawUpstream::start(Answer::Json(r#"{"id":"..","name":"Ann","orders":null}"#)).await;
    let gateway = ProcessGateway::start(DOT_TOML, DOT_SDL, &[("users", &users.url)]).await;

    let reply = gateway
        .post(r#"{ user(id: "7") { name orders { id } } }"#)
        .await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        users.request_lines(),
        vec![
            "GET /api/v1/users/7 HTTP/1.1".to_owned(),
            // Not `/api/v1/orders`: the parent's id stays inside its segment.
            "GET /api/v1/users/%2E%2E/orders HTTP/1.1".to_owned(),
        ]
    );
}

/// The users service with a secret header of its own, a claims header and
/// a forwarded client header, under a `follow_redirects` policy.
fn redirect_config(policy: &str) -> String {
    format!(
        r#"
[auth]
secret = "redirect-secret"

[services.users]
url = "{{users}}"
headers = {{ "x-api-key" = "k-123" }}
forward_headers = ["accept-language"]
claims_headers = {{ "x-user-id" = "sub" }}
{policy}

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}", headers = {{ "x-tenant" = "t-9" }} }}
"#
    )
}

fn token() -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u1", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(b"redirect-secret"),
    )
    .expect("sign")
}

/// `GET /users/1` on `users` answers 302 to `target`, which answers Ann.
async fn redirected_query(policy: &str, users: &MockServer, target: String) -> Reply {
    serve(
        users,
        "GET",
        "/users/1",
        ResponseTemplate::new(302).insert_header("location", target.as_str()),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&redirect_config(policy))
        .upstream("users", users)
        .start()
        .await;
    let bearer = format!("Bearer {}", token());
    gateway
        .post_with_headers(
            r#"{ user(id: "1") { name } }"#,
            &[("authorization", &bearer), ("accept-language", "fr")],
        )
        .await
}

const ADDED: [&str; 5] = [
    "x-api-key",
    "x-user-id",
    "accept-language",
    "x-tenant",
    "referer",
];

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_by_default() {
    let users = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    serve(
        &elsewhere,
        "GET",
        "/people/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;

    let reply = redirected_query("", &users, format!("{}/people/1", elsewhere.uri())).await;

    let body = reply.json();
    assert_eq!(body["data"]["user"], Value::Null);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(body["errors"][0]["extensions"]["status"], 302);
    assert!(
        received(&elsewhere).await.is_empty(),
        "the other origin was never called"
    );
}

#[tokio::test]
async fn a_redirect_within_the_origin_keeps_the_gateway_headers() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/people/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;

    let reply = redirected_query("", &users, format!("{}/people/1", users.uri())).await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    let asked = received(&users).await;
    assert_eq!(asked.len(), 2);
    for name in ["x-api-key", "x-user-id", "accept-language", "x-tenant"] {
        assert_eq!(
            header(&asked[1], name),
            header(&asked[0], name),
            "{name} goes along on the same origin"
        );
        assert!(header(&asked[1], name).is_some(), "{name}");
    }
}

#[tokio::test]
async fn a_followed_redirect_to_another_origin_carries_none_of_the_gateway_headers() {
    let users = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    serve(
        &elsewhere,
        "GET",
        "/people/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;

    let reply = redirected_query(
        r#"follow_redirects = "any""#,
        &users,
        format!("{}/people/1", elsewhere.uri()),
    )
    .await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    let first = &received(&users).await[0];
    assert_eq!(header(first, "x-api-key").as_deref(), Some("k-123"));
    assert_eq!(header(first, "x-user-id").as_deref(), Some("u1"));
    let onward = &received(&elsewhere).await[0];
    for name in ADDED
        .iter()
        .chain(&["authorization", "traceparent", "x-request-id"])
    {
        assert!(
            header(onward, name).is_none(),
            "{name} must stay with the service's origin"
        );
    }
}

#[tokio::test]
async fn follow_redirects_none_answers_the_redirect_itself() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/people/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;

    let reply = redirected_query(
        r#"follow_redirects = "none""#,
        &users,
        format!("{}/people/1", users.uri()),
    )
    .await;

    let body = reply.json();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(body["errors"][0]["extensions"]["status"], 302);
    assert_eq!(received(&users).await.len(), 1, "the target was not asked");
}

#[tokio::test]
async fn check_rejects_an_unknown_follow_redirects_policy() {
    let checked = check(
        &redirect_config(r#"follow_redirects = "sometimes""#).replace("{users}", "http://x"),
        SDL,
    );
    let text = checked.lines.join("\n");
    assert!(!checked.ok);
    assert!(text.contains("follow_redirects"), "{text}");
}

/// The default `max_response_bytes` (16 MiB), a generous timeout.
const BIG_TOML: &str = r#"
[services.users]
url = "{users}"
timeout_ms = 30000

[limits]
request_timeout_ms = 30000

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"#;

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

async fn assert_too_large(answer: Answer) {
    let users = RawUpstream::start(answer).await;
    let gateway = ProcessGateway::start(BIG_TOML, SDL, &[("users", &users.url)]).await;
    let before = rss_kib(gateway.pid());
    let started = Instant::now();

    let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;

    let took = started.elapsed();
    let body = reply.json();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UPSTREAM_BAD_RESPONSE",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["service"], "users");
    assert!(
        took < Duration::from_secs(20),
        "refused as soon as the limit is passed, not at the timeout: {took:?}"
    );
    let grown = rss_kib(gateway.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the gateway held {grown} KiB more for a call limited to 16 MiB"
    );
}

#[tokio::test]
async fn an_answer_declared_over_max_response_bytes_is_refused_unread() {
    assert_too_large(Answer::Declared(200 * 1024 * 1024)).await;
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_max_response_bytes() {
    assert_too_large(Answer::Endless).await;
}

/// The gateway's read buffer per upstream connection stops at 64 KiB
/// (docs/CONFIG.md `max_response_bytes`): a head within it is read, a far
/// longer one (300 KiB, which hyper's default buffer would take) is a
/// failed call, answered as any other, not a buffer grown to fit it.
#[tokio::test]
async fn a_response_head_far_over_64_kib_is_a_failed_call() {
    for (length, read) in [(60 * 1024, true), (300 * 1024, false)] {
        let users = RawUpstream::start(Answer::LongHead(length)).await;
        let gateway = TestGateway::builder()
            .schema(SDL)
            .config(BIG_TOML)
            .upstream_url("users", &users.url)
            .start()
            .await;

        let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;

        let body = reply.json();
        assert_eq!(reply.status, 200, "{}", reply.text);
        if read {
            assert_eq!(body["data"]["user"], json!({"name": null}), "{body}");
            assert!(body.get("errors").is_none(), "{body}");
        } else {
            assert_eq!(body["data"]["user"], Value::Null, "{body}");
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UPSTREAM_UNAVAILABLE",
                "{body}"
            );
            assert_eq!(body["errors"][0]["extensions"]["service"], "users");
        }
    }
}

#[tokio::test]
async fn max_response_bytes_is_set_per_service() {
    let users = MockServer::start().await;
    let name = "n".repeat(900 * 1024);
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": name})),
    )
    .await;
    for (limit, read) in [(1024 * 1024, true), (512 * 1024, false)] {
        let config = format!(
            r#"
[services.users]
url = "{{users}}"
max_response_bytes = {limit}

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}" }}
"#
        );
        let gateway = TestGateway::builder()
            .schema(SDL)
            .config(&config)
            .upstream("users", &users)
            .start()
            .await;

        let body = gateway.post(r#"{ user(id: "1") { name } }"#).await.json();

        if read {
            assert_eq!(body["data"]["user"]["name"], json!(name), "limit {limit}");
        } else {
            assert_eq!(body["data"]["user"], Value::Null, "limit {limit}");
            assert_eq!(
                body["errors"][0]["extensions"]["code"],
                "UPSTREAM_BAD_RESPONSE"
            );
        }
    }
}

/// The `conflux_requests_in_flight` value on a process gateway's `/metrics`.
async fn requests_in_flight(gateway: &ProcessGateway) -> Option<f64> {
    let metrics = gateway
        .request(reqwest::Method::GET, "/metrics", &[], None)
        .await;
    metrics.text.lines().find_map(|line| {
        line.strip_prefix("conflux_requests_in_flight ")
            .and_then(|value| value.trim().parse().ok())
    })
}

#[tokio::test]
async fn a_client_that_goes_away_mid_request_leaves_no_request_in_flight() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})).set_delay(Duration::from_secs(3)),
    )
    .await;
    let gateway =
        ProcessGateway::start(&redirect_config(""), SDL, &[("users", &users.uri())]).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let gone = client
        .post(format!("http://{}/graphql", gateway.addr))
        .header("content-type", "application/json")
        .body(json!({"query": r#"{ user(id: "1") { name } }"#}).to_string())
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the answer");

    // Bounded polling: the count goes back to 0 as soon as the gateway
    // sees the connection close, long before the upstream answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = requests_in_flight(&gateway).await;
    while seen != Some(0.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = requests_in_flight(&gateway).await;
    }
    assert_eq!(
        seen,
        Some(0.0),
        "conflux_requests_in_flight after the client left"
    );
}

#[tokio::test]
async fn a_redirect_loop_stops_after_ten_hops() {
    let users = MockServer::start().await;
    // Answers 302 back to itself, forever.
    let reply = redirected_query("", &users, format!("{}/users/1", users.uri())).await;

    let body = reply.json();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["status"], 302);
    assert_eq!(
        received(&users).await.len(),
        11,
        "the first call and ten redirects, then the 3xx is the answer"
    );
}
