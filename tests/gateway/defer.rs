//! docs/DEFER.md: `@defer` over `multipart/mixed` (issue 20). Each test
//! reads the real gateway's multipart body part by part, stamping when each
//! part arrived, against wiremock upstreams whose slow answers are what the
//! deferral is for; timing is judged against the recorded arrival of the
//! slow call, never against a tight window.

use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::multipart::{read_parts, Multipart, MULTIPART_ACCEPT};
use crate::support::temp::TempDir;
use crate::support::*;

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  users: [User!]!
}
type User {
  id: ID!
  name: String
  reviews: [Review!]
  profile: Profile
  details: Details
}
type Review { id: ID! text: String! }
type Profile { bio: String friends: [Friend!] }
type Friend { name: String }
type Details { id: ID! email: String }
"#;

/// `users` answers the fields around the deferred fragments, `slow` those
/// inside them; `server` and `limits` are added to their tables.
fn config(server: &str, limits: &str) -> String {
    format!(
        r#"
[server]
{server}

[limits]
{limits}

[services.users]
url = "{{users}}"
retries = 0

[services.slow]
url = "{{slow}}"
retries = 0
timeout_ms = 10000

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}" }}
"Query.users" = {{ service = "users", get = "/users" }}
"User.reviews" = {{ service = "slow", get = "/users/{{parent.id}}/reviews" }}
"User.profile" = {{ service = "slow", get = "/profiles/{{parent.id}}" }}
"Profile.friends" = {{ service = "slow", get = "/profiles/{{parent.userId}}/friends" }}
"User.details" = {{ service = "slow", get = "/details/{{parent.id}}", batch = {{ key = "{{parent.id}}", get = "/details?ids={{keys}}", match = "id" }} }}
"#
    )
}

const CONTENT_TYPE: &str = "multipart/mixed; boundary=\"-\"; deferSpec=20220824";

/// Both upstreams, `users` answering user 1 and a list of three.
async fn upstreams() -> (MockServer, MockServer) {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ada"})),
    )
    .await;
    serve(
        &users,
        "GET",
        "/users",
        json_reply(json!([{"id": "1"}, {"id": "2"}, {"id": "3"}])),
    )
    .await;
    (users, MockServer::start().await)
}

async fn gateway(users: &MockServer, slow: &MockServer, limits: &str) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config("", limits))
        .upstream("users", users)
        .upstream("slow", slow)
        .start()
        .await
}

/// Mounts `GET route` on `server`, answering `body` after `delay`; the
/// arrivals record when each call came.
async fn slow_answer(server: &MockServer, route: &str, body: Value, delay: Duration) -> Arrivals {
    let arrivals = Arrivals::answering(json_reply(body).set_delay(delay));
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(arrivals.clone())
        .mount(server)
        .await;
    arrivals
}

/// POSTs `query` (and `variables`) accepting multipart, as Apollo Client
/// does.
async fn post_deferred(gateway: &TestGateway, query: &str, variables: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gateway.url("/graphql"))
        .header("accept", MULTIPART_ACCEPT)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("the gateway answers")
}

async fn deferred(gateway: &TestGateway, query: &str) -> Multipart {
    read_parts(post_deferred(gateway, query, json!({})).await).await
}

fn assert_multipart(reply: &Multipart) {
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, CONTENT_TYPE);
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    assert!(reply.closed, "the body ends with the closing delimiter");
}

#[tokio::test]
async fn the_first_part_arrives_while_the_deferred_call_is_still_pending() {
    let (users, slow) = upstreams().await;
    let reviews = slow_answer(
        &slow,
        "/users/1/reviews",
        json!([{"id": "r1", "text": "great"}]),
        Duration::from_secs(1),
    )
    .await;
    let gateway = gateway(&users, &slow, "").await;

    let response = post_deferred(
        &gateway,
        r#"{ user(id: "1") { id name ... @defer(label: "reviews") { reviews { id text } } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        response
            .headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked"),
        "HTTP/1.1 streams the parts chunked"
    );
    let reply = read_parts(response).await;

    assert_multipart(&reply);
    assert_eq!(
        reply.jsons(),
        [
            json!({"data": {"user": {"id": "1", "name": "Ada"}}, "hasNext": true}),
            json!({
                "incremental": [{
                    "data": {"reviews": [{"id": "r1", "text": "great"}]},
                    "path": ["user"],
                    "label": "reviews"
                }],
                "hasNext": false
            }),
        ]
    );
    let log = reviews.log();
    assert_eq!(log.len(), 1, "one call for the deferred field");
    let reviews_called = log[0].0;
    let reviews_answered = reviews_called + Duration::from_secs(1);
    assert!(
        reply.parts[0].at < reviews_answered,
        "the first part came while the deferred call was pending ({:?} before its answer)",
        reviews_answered - reply.parts[0].at
    );
    assert!(
        reply.parts[1].at >= reviews_called + Duration::from_millis(900),
        "the deferred part came with the slow answer"
    );
    assert_eq!(received(&users).await.len(), 1);
}

#[tokio::test]
async fn without_multipart_or_with_if_false_the_answer_is_one_ordinary_response() {
    let (users, slow) = upstreams().await;
    serve(
        &slow,
        "GET",
        "/users/1/reviews",
        json_reply(json!([{"id": "r1", "text": "great"}])),
    )
    .await;
    let gateway = gateway(&users, &slow, "").await;
    let everything = json!({"data": {"user": {"id": "1", "name": "Ada", "reviews": [{"id": "r1", "text": "great"}]}}});

    // No multipart in `Accept`: every fragment inline.
    let query = r#"{ user(id: "1") { id name ...Reviews @defer(label: "r") } }
                   fragment Reviews on User { reviews { id text } }"#;
    let reply = gateway.post(query).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type(), "application/json");
    assert_eq!(reply.json(), everything);

    // `if: false`, even to a client that takes multipart.
    let query = r#"{ user(id: "1") { id name ... @defer(if: false) { reviews { id text } } } }"#;
    let response = post_deferred(&gateway, query, json!({})).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/graphql-response+json; charset=utf-8"
    );
    assert_eq!(response.json::<Value>().await.expect("JSON"), everything);

    // `if` from a variable: false inline, true deferred (and the label
    // is left out when there is none).
    let query = r#"query($defer: Boolean!) { user(id: "1") { id name ...Reviews @defer(if: $defer) } }
                   fragment Reviews on User { reviews { id text } }"#;
    let response = post_deferred(&gateway, query, json!({"defer": false})).await;
    assert_eq!(response.json::<Value>().await.expect("JSON"), everything);
    let reply = read_parts(post_deferred(&gateway, query, json!({"defer": true})).await).await;
    assert_multipart(&reply);
    assert_eq!(
        reply.jsons(),
        [
            json!({"data": {"user": {"id": "1", "name": "Ada"}}, "hasNext": true}),
            json!({
                "incremental": [{"data": {"reviews": [{"id": "r1", "text": "great"}]}, "path": ["user"]}],
                "hasNext": false
            }),
        ]
    );
}

#[tokio::test]
async fn nested_defers_arrive_outer_first_then_inner() {
    let (users, slow) = upstreams().await;
    let profile = slow_answer(
        &slow,
        "/profiles/1",
        json!({"bio": "hi", "userId": "1"}),
        Duration::from_millis(300),
    )
    .await;
    let friends = slow_answer(
        &slow,
        "/profiles/1/friends",
        json!([{"name": "Bob"}]),
        Duration::from_millis(300),
    )
    .await;
    let gateway = gateway(&users, &slow, "").await;

    let reply = deferred(
        &gateway,
        r#"{ user(id: "1") { id ... @defer(label: "profile") {
                profile { bio ... @defer(label: "friends") { friends { name } } } } } }"#,
    )
    .await;

    assert_multipart(&reply);
    assert_eq!(
        reply.jsons(),
        [
            json!({"data": {"user": {"id": "1"}}, "hasNext": true}),
            json!({
                "incremental": [{"data": {"profile": {"bio": "hi"}}, "path": ["user"], "label": "profile"}],
                "hasNext": true
            }),
            json!({
                "incremental": [{"data": {"friends": [{"name": "Bob"}]}, "path": ["user", "profile"], "label": "friends"}],
                "hasNext": false
            }),
        ]
    );
    // The inner fragment reads the outer one's answer (`parent.userId`).
    assert!(friends.log()[0].0 >= profile.log()[0].0 + Duration::from_millis(300));
    assert!(reply.parts[1].at < friends.log()[0].0 + Duration::from_millis(300));
}

#[tokio::test]
async fn a_fragment_deferred_in_list_items_is_one_part_with_indexed_paths_and_one_batch() {
    let (users, slow) = upstreams().await;
    serve(
        &slow,
        "GET",
        "/details",
        json_reply(json!([
            {"id": "3", "email": "c@x"}, {"id": "1", "email": "a@x"}, {"id": "2", "email": "b@x"}
        ])),
    )
    .await;
    let gateway = gateway(&users, &slow, "").await;

    let reply = deferred(
        &gateway,
        r#"{ users { id ... @defer(label: "details") { details { email } } } }"#,
    )
    .await;

    assert_multipart(&reply);
    let entry = |index: usize, email: &str| json!({"data": {"details": {"email": email}}, "path": ["users", index], "label": "details"});
    assert_eq!(
        reply.jsons(),
        [
            json!({"data": {"users": [{"id": "1"}, {"id": "2"}, {"id": "3"}]}, "hasNext": true}),
            json!({
                "incremental": [entry(0, "a@x"), entry(1, "b@x"), entry(2, "c@x")],
                "hasNext": false
            }),
        ]
    );
    let calls = received(&slow).await;
    assert_eq!(
        request_lines(&calls),
        ["GET /details?ids=1,2,3"],
        "the deferred field of every item in one batched call"
    );
}

#[tokio::test]
async fn errors_of_a_deferred_fragment_travel_in_its_own_part() {
    let (users, slow) = upstreams().await;
    serve(
        &slow,
        "GET",
        "/users/1/reviews",
        ResponseTemplate::new(500).set_body_string("boom"),
    )
    .await;
    serve(
        &slow,
        "GET",
        "/profiles/1",
        json_reply(json!({"bio": "hi"})),
    )
    .await;
    serve(
        &users,
        "GET",
        "/users/2",
        json_reply(json!({"id": "2", "name": "Bea"})),
    )
    .await;
    serve(
        &slow,
        "GET",
        "/users/2/reviews",
        json_reply(json!([{"id": "r2", "text": null}])),
    )
    .await;
    let gateway = gateway(&users, &slow, "").await;

    let reply = deferred(
        &gateway,
        r#"{ user(id: "1") { id
               ... @defer(label: "reviews") { reviews { id } }
               ... @defer(label: "profile") { profile { bio } } }
             other: user(id: "2") { ... @defer(label: "bad") { reviews { id text } } } }"#,
    )
    .await;

    assert_multipart(&reply);
    let parts = reply.jsons();
    assert_eq!(parts.len(), 4, "{parts:#?}");
    assert_eq!(
        parts[0],
        json!({"data": {"user": {"id": "1"}, "other": {}}, "hasNext": true}),
        "no error in the first part"
    );
    assert_eq!(parts[3]["hasNext"], false);
    let entries: Vec<&Value> = parts[1..]
        .iter()
        .flat_map(|p| p["incremental"].as_array().expect("incremental"))
        .collect();
    let labelled = |label: &str| {
        entries
            .iter()
            .find(|e| e["label"] == label)
            .unwrap_or_else(|| panic!("no `{label}` entry in {parts:#?}"))
    };
    let reviews = labelled("reviews");
    assert_eq!(reviews["data"], json!({"reviews": null}));
    assert_eq!(reviews["path"], json!(["user"]));
    assert_eq!(error_codes(reviews), ["UPSTREAM_ERROR"]);
    assert_eq!(reviews["errors"][0]["path"], json!(["user", "reviews"]));
    assert_eq!(reviews["errors"][0]["extensions"]["service"], "slow");

    let profile = labelled("profile");
    assert_eq!(profile["data"], json!({"profile": {"bio": "hi"}}));
    assert!(profile.get("errors").is_none(), "{profile}");

    // A non-null field that fails nulls its nearest nullable position,
    // with the error's whole path.
    let bad = labelled("bad");
    assert_eq!(bad["data"], json!({"reviews": null}));
    assert_eq!(
        bad["errors"][0]["path"],
        json!(["other", "reviews", 0, "text"])
    );
    assert_eq!(error_codes(bad), ["UPSTREAM_BAD_RESPONSE"]);
}

#[tokio::test]
async fn request_timeout_ms_bounds_the_whole_stream() {
    let (users, slow) = upstreams().await;
    let reviews = slow_answer(
        &slow,
        "/users/1/reviews",
        json!([]),
        Duration::from_secs(10),
    )
    .await;
    let gateway = gateway(&users, &slow, "request_timeout_ms = 500").await;

    let started = Instant::now();
    let reply = deferred(
        &gateway,
        r#"{ user(id: "1") { id ... @defer(label: "reviews") { reviews { id } } } }"#,
    )
    .await;

    assert_multipart(&reply);
    assert_eq!(reply.parts.len(), 2);
    assert_eq!(
        reply.parts[0].json,
        json!({"data": {"user": {"id": "1"}}, "hasNext": true})
    );
    let last = &reply.parts[1].json;
    assert_eq!(last["hasNext"], false);
    let entry = &last["incremental"][0];
    assert_eq!(entry["data"], json!({"reviews": null}));
    assert_eq!(error_codes(entry), ["TIMEOUT"]);
    assert_eq!(entry["errors"][0]["path"], json!(["user", "reviews"]));
    assert_eq!(reviews.log().len(), 1);
    assert!(
        reply.ended < started + Duration::from_secs(8),
        "the stream ended at the timeout, not with the 10 s answer"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_calls_still_to_come() {
    let (users, slow) = upstreams().await;
    let profile = slow_answer(
        &slow,
        "/profiles/1",
        json!({"bio": "hi", "userId": "1"}),
        Duration::from_secs(1),
    )
    .await;
    let friends = slow_answer(&slow, "/profiles/1/friends", json!([]), Duration::ZERO).await;
    let gateway = gateway(&users, &slow, "").await;

    let mut response = post_deferred(
        &gateway,
        r#"{ user(id: "1") { id ... @defer { profile { bio friends { name } } } } }"#,
        json!({}),
    )
    .await;
    // The first part, then the client goes away.
    let first = response
        .chunk()
        .await
        .expect("a chunk")
        .expect("the first part");
    assert!(
        String::from_utf8_lossy(&first).contains(r#"{"data":{"user":{"id":"1"}},"hasNext":true}"#)
    );
    drop(response);
    let gone = Instant::now();

    // Well past the profile's answer (had its call been made at once):
    // the friends call, which would follow it in the same part, was never
    // made. (The profile call may have been cancelled before it left.)
    tokio::time::sleep_until((gone + Duration::from_millis(2500)).into()).await;
    assert!(profile.log().len() <= 1);
    assert!(
        friends.log().is_empty(),
        "no call was made for the client that went away"
    );
}

#[tokio::test]
async fn defer_is_refused_where_it_cannot_go_with_its_location() {
    let (users, slow) = upstreams().await;
    let gateway = gateway(&users, &slow, "").await;
    let refused = |query: &'static str, message: &'static str| {
        let gateway = &gateway;
        async move {
            let response = post_deferred(gateway, query, json!({})).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(status, 400, "{body}");
            let codes = error_codes(&body);
            assert!(
                !codes.is_empty() && codes.iter().all(|c| c == "GRAPHQL_VALIDATION_FAILED"),
                "{body}"
            );
            let error = &body["errors"][0];
            assert!(
                error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(message),
                "{body}"
            );
            assert!(error["locations"][0]["line"].is_number(), "{body}");
            assert!(body.get("data").is_none());
        }
    };
    refused(
        r#"{ user(id: "1") @defer { id } }"#,
        "may not be used on a field",
    )
    .await;
    refused(
        r#"{ user(id: "1") { ... @defer(label: "a") { id } ... @defer(label: "a") { name } } }"#,
        "the label `a` is used by another",
    )
    .await;
    refused(
        r#"query($l: String) { user(id: "1") { ... @defer(label: $l) { id } } }"#,
        "must be a string literal",
    )
    .await;
    refused(
        r#"{ user(id: "1") { ... @defer(when: true) { id } } }"#,
        "has no argument `when`",
    )
    .await;
    // `if` is checked as a Boolean! like `@include`'s.
    let response = post_deferred(
        &gateway,
        r#"query($d: String) { user(id: "1") { ... @defer(if: $d) { id } } }"#,
        json!({"d": "x"}),
    )
    .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_codes(&body), ["GRAPHQL_VALIDATION_FAILED"], "{body}");
    assert!(received(&users).await.is_empty(), "nothing was called");
}

#[test]
fn print_schema_declares_defer() {
    let dir = TempDir::new();
    dir.write(
        "services.toml",
        &config("", "")
            .replace("{users}", "http://127.0.0.1:9")
            .replace("{slow}", "http://127.0.0.1:9"),
    );
    dir.write("schema/schema.graphql", SDL);
    let output = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(["print-schema", "--config", "services.toml"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run conflux print-schema");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout.lines().any(|line| line
            == "directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------
// HTTP/2 and TLS

/// A CA and a server certificate for 127.0.0.1 it signed: (CA PEM, cert
/// PEM, key PEM).
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "defer test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).expect("a CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("names");
    leaf.distinguished_name.push(DnType::CommonName, "gateway");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("a leaf");
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn parts_stream_over_tls_with_http_1_1_and_http_2() {
    let (users, slow) = upstreams().await;
    let reviews = slow_answer(
        &slow,
        "/users/1/reviews",
        json!([{"id": "r1", "text": "great"}]),
        Duration::from_secs(1),
    )
    .await;
    let (ca, cert, key) = certificates();
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(&config(
            r#"tls = { cert_file = "certs/gateway.pem", key_file = "certs/gateway.key" }"#,
            "",
        ))
        .file("certs/gateway.pem", &cert)
        .file("certs/gateway.key", &key)
        .upstream("users", &users)
        .upstream("slow", &slow)
        .start()
        .await;
    let url = gateway.url("/graphql").replace("http://", "https://");

    for http2 in [false, true] {
        let builder = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"));
        let client = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        }
        .build()
        .expect("a client");
        let response = client
            .post(&url)
            .header("accept", MULTIPART_ACCEPT)
            .json(&json!({"query": r#"{ user(id: "1") { id ... @defer { reviews { id } } } }"#}))
            .send()
            .await
            .expect("the gateway answers over TLS");
        let version = response.version();
        assert_eq!(
            version,
            if http2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        let reply = read_parts(response).await;
        assert_multipart(&reply);
        assert_eq!(
            reply.jsons(),
            [
                json!({"data": {"user": {"id": "1"}}, "hasNext": true}),
                json!({"incremental": [{"data": {"reviews": [{"id": "r1"}]}, "path": ["user"]}], "hasNext": false}),
            ],
            "over {version:?}"
        );
        let called = reviews.log().last().expect("a reviews call").0;
        assert!(
            reply.parts[0].at < called + Duration::from_secs(1),
            "over {version:?} the first part came while the deferred call was pending"
        );
    }
}
