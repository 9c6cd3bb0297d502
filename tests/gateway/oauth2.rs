//! docs/SHAPING.md "OAuth2 to services": `[services.X].oauth2` client
//! credentials against a real token endpoint (wiremock): the Bearer token
//! on every call, one token fetch whatever the traffic, renewal before
//! expiry and once after a 401, failures as `UPSTREAM_UNAVAILABLE`, and
//! neither the secret nor the token in logs, metrics or answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::client::Client;
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

const SDL: &str = r#"
type Query { order(id: ID!): Order }
type Order { id: ID! }
"#;

const SECRET: &str = "s3cr3t-client-value";

fn config() -> String {
    format!(
        r#"
[services.shop]
url = "{{shop}}"
retries = 0
oauth2 = {{ token_url = "{{idp}}/oauth/token", client_id = "gw-client", client_secret = "{SECRET}", scopes = ["orders:read", "orders:write"] }}

[resolvers]
"Query.order" = {{ service = "shop", get = "/orders/{{args.id}}" }}
"#
    )
}

/// A token endpoint answering `tok-1`, `tok-2`, … in turn, after `delay`.
struct TokenEndpoint {
    issued: AtomicUsize,
    expires_in: u64,
    delay: Duration,
}

impl Respond for TokenEndpoint {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": self.expires_in}))
    }
}

async fn token_endpoint(expires_in: u64, delay: Duration) -> MockServer {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(TokenEndpoint {
            issued: AtomicUsize::new(0),
            expires_in,
            delay,
        })
        .mount(&idp)
        .await;
    idp
}

/// The shop answers an order to `Bearer <accepted>` only, 401 otherwise.
struct Shop {
    accepted: &'static str,
}

impl Respond for Shop {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        if header(request, "authorization").as_deref() == Some(self.accepted) {
            json_reply(json!({"id": id}))
        } else {
            ResponseTemplate::new(401)
        }
    }
}

async fn shop(accepted: &'static str) -> MockServer {
    let shop = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(Shop { accepted })
        .mount(&shop)
        .await;
    shop
}

async fn gateway(shop: &MockServer, idp: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config())
        .upstream("shop", shop)
        .upstream("idp", idp)
        .start()
        .await
}

/// Standard base64 with padding (the Basic credentials as sent).
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn authorizations(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| header(r, "authorization").unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn the_token_is_fetched_with_basic_client_credentials_and_sent_as_bearer() {
    let idp = token_endpoint(3600, Duration::ZERO).await;
    let shop = shop("Bearer tok-1").await;
    let gateway = gateway(&shop, &idp).await;
    for id in ["o1", "o2"] {
        let body = gateway
            .post(&format!(r#"{{ order(id: "{id}") {{ id }} }}"#))
            .await
            .json();
        assert_eq!(body, json!({"data": {"order": {"id": id}}}));
    }
    let token_requests = received(&idp).await;
    assert_eq!(token_requests.len(), 1, "one token for both calls");
    let basic = base64(&format!("gw-client:{SECRET}"));
    assert_eq!(
        header(&token_requests[0], "authorization"),
        Some(format!("Basic {basic}"))
    );
    assert_eq!(
        header(&token_requests[0], "content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&token_requests[0].body),
        "grant_type=client_credentials&scope=orders%3Aread+orders%3Awrite"
    );
    assert_eq!(
        authorizations(&received(&shop).await),
        vec!["Bearer tok-1", "Bearer tok-1"]
    );
}

#[tokio::test]
async fn fifty_concurrent_queries_make_one_token_fetch() {
    // The endpoint takes a while, so every query arrives while the first
    // fetch is in flight.
    let idp = token_endpoint(3600, Duration::from_millis(300)).await;
    let shop = shop("Bearer tok-1").await;
    let gateway = gateway(&shop, &idp).await;
    let queries = (0..50).map(|i| {
        let gateway = &gateway;
        async move {
            gateway
                .post(&format!(r#"{{ order(id: "o{i}") {{ id }} }}"#))
                .await
                .json()
        }
    });
    let bodies = futures::future::join_all(queries).await;
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(body, &json!({"data": {"order": {"id": format!("o{i}")}}}));
    }
    assert_eq!(received(&idp).await.len(), 1, "token endpoint requests");
    let sent = received(&shop).await;
    assert_eq!(sent.len(), 50);
    assert!(authorizations(&sent).iter().all(|a| a == "Bearer tok-1"));
}

#[tokio::test]
async fn a_401_renews_the_token_once_and_sends_the_call_again_once() {
    let idp = token_endpoint(3600, Duration::ZERO).await;
    // The service has revoked tok-1: only the renewed token passes.
    let shop = shop("Bearer tok-2").await;
    let gateway = gateway(&shop, &idp).await;
    let body = gateway.post(r#"{ order(id: "o1") { id } }"#).await.json();
    assert_eq!(body, json!({"data": {"order": {"id": "o1"}}}));
    assert_eq!(received(&idp).await.len(), 2);
    assert_eq!(
        authorizations(&received(&shop).await),
        vec!["Bearer tok-1", "Bearer tok-2"]
    );
    // The renewed token serves the next call: no more fetches.
    let body = gateway.post(r#"{ order(id: "o2") { id } }"#).await.json();
    assert_eq!(body, json!({"data": {"order": {"id": "o2"}}}));
    assert_eq!(received(&idp).await.len(), 2);
    assert_eq!(received(&shop).await.len(), 3);
}

#[tokio::test]
async fn a_service_that_keeps_answering_401_gets_one_renewal_then_the_error() {
    let idp = token_endpoint(3600, Duration::ZERO).await;
    let shop = shop("Bearer never").await;
    let gateway = gateway(&shop, &idp).await;
    let body = gateway.post(r#"{ order(id: "o1") { id } }"#).await.json();
    assert_eq!(body["data"], json!({"order": null}));
    assert_eq!(body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(body["errors"][0]["extensions"]["status"], 401);
    assert_eq!(received(&idp).await.len(), 2, "exactly one renewal");
    assert_eq!(
        authorizations(&received(&shop).await),
        vec!["Bearer tok-1", "Bearer tok-2"]
    );
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    // 1 s tokens are renewed a tenth of their life early, at 0.9 s.
    let idp = token_endpoint(1, Duration::ZERO).await;
    let shop = shop("Bearer tok-2").await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config())
        .upstream("shop", &shop)
        .upstream("idp", &idp)
        .start()
        .await;
    // tok-1 is refused by this shop: one renewal after the 401 gives tok-2.
    gateway.post(r#"{ order(id: "o1") { id } }"#).await;
    assert_eq!(received(&idp).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // tok-2 is past its renewal time: a fetch before the call (tok-3,
    // refused, renewed again after the 401 to tok-4) — the call never
    // went out with the expired token.
    gateway.post(r#"{ order(id: "o2") { id } }"#).await;
    let sent = authorizations(&received(&shop).await);
    assert_eq!(sent[..2], ["Bearer tok-1", "Bearer tok-2"]);
    assert!(
        !sent[2..].contains(&"Bearer tok-2".to_owned()),
        "an expired token was sent: {sent:?}"
    );
    assert_eq!(sent[2], "Bearer tok-3");
}

#[tokio::test]
async fn a_failed_token_fetch_is_upstream_unavailable_and_no_call_is_made() {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("denied for {SECRET}")))
        .mount(&idp)
        .await;
    let shop = shop("Bearer tok-1").await;
    let gateway = gateway(&shop, &idp).await;
    let reply = gateway.post(r#"{ order(id: "o1") { id } }"#).await;
    let body = reply.json();
    assert_eq!(body["data"], json!({"order": null}));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(body["errors"][0]["extensions"]["service"], "shop");
    assert!(!body.to_string().contains(SECRET));
    assert!(received(&shop).await.is_empty());
}

#[tokio::test]
async fn neither_the_secret_nor_the_token_reaches_logs_metrics_or_answers() {
    let token = "tok-sensitive-9f8e7d";
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(json_reply(
            json!({"access_token": token, "expires_in": 3600}),
        ))
        .mount(&idp)
        .await;
    // A 401 first (a renewal, logged), then the order.
    let shop = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    struct Flaky(Arc<AtomicUsize>);
    impl Respond for Flaky {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            match self.0.fetch_add(1, Ordering::SeqCst) {
                0 => ResponseTemplate::new(401),
                _ => json_reply(json!({"id": "o1"})),
            }
        }
    }
    Mock::given(method("GET"))
        .respond_with(Flaky(calls.clone()))
        .mount(&shop)
        .await;
    let dir = TempDir::new();
    let toml = config()
        .replace("{shop}", &shop.uri())
        .replace("{idp}", &idp.uri())
        // A second service whose token endpoint fails, for the failure's
        // log line.
        + &format!(
            r#"
[services.broken]
url = "{}"
oauth2 = {{ token_url = "http://127.0.0.1:9/token", client_id = "gw-client", client_secret = "{SECRET}" }}
"#,
            shop.uri()
        );
    let toml = toml.replace(
        r#""Query.order" = { service = "shop", get = "/orders/{args.id}" }"#,
        r#""Query.order" = { service = "shop", get = "/orders/{args.id}" }
"Query.broken" = { service = "broken", get = "/orders/{args.id}" }"#,
    );
    dir.write("services.toml", &toml);
    dir.write(
        "schema/schema.graphql",
        "type Query { order(id: ID!): Order broken(id: ID!): Order }\ntype Order { id: ID! }\n",
    );
    let serving = Serving::start(dir.path(), "debug", &[]).await;
    let client = Client::new(format!("http://{}", serving.addr));
    let body = client
        .post(r#"{ order(id: "o1") { id } broken(id: "o2") { id } }"#)
        .await
        .json();
    assert_eq!(body["data"]["order"], json!({"id": "o1"}));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a 401, then the renewed call"
    );
    let metrics = client
        .request(reqwest::Method::GET, "/metrics", &[], None)
        .await
        .text;
    // Give the log lines of the failure a moment to be drained.
    let basic = base64(&format!("gw-client:{SECRET}"));
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = serving.lines();
        if lines
            .iter()
            .any(|l| l.contains("oauth2 token fetch failed"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("oauth2 token fetch failed")),
        "the failure is logged: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("renewing its oauth2 token")),
        "the renewal is logged: {lines:#?}"
    );
    for (what, text) in [
        ("logs", lines.join("\n")),
        ("metrics", metrics),
        ("answer", body.to_string()),
    ] {
        for needle in [SECRET, token, basic.as_str()] {
            assert!(!text.contains(needle), "{what} contain `{needle}`");
        }
    }
}

#[tokio::test]
async fn a_hostile_token_endpoint_is_upstream_unavailable_without_unbounded_reads() {
    for answer in [
        // Larger than the 64 KiB a token answer may be.
        ResponseTemplate::new(200).set_body_string("x".repeat(1024 * 1024)),
        ResponseTemplate::new(200).set_body_string("not json"),
        ResponseTemplate::new(200).set_body_json(json!({"token": "no access_token key"})),
        ResponseTemplate::new(302).insert_header("location", "http://127.0.0.1:9/elsewhere"),
    ] {
        let idp = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&idp)
            .await;
        let shop = shop("Bearer tok-1").await;
        let gateway = gateway(&shop, &idp).await;
        let body = gateway.post(r#"{ order(id: "o1") { id } }"#).await.json();
        assert_eq!(body["data"], json!({"order": null}));
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UPSTREAM_UNAVAILABLE"
        );
        assert!(received(&shop).await.is_empty(), "no call without a token");
        assert_eq!(received(&idp).await.len(), 1);
    }
}
