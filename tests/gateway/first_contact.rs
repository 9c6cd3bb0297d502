//! What a newcomer meets first (docs/HTTP.md, docs/OPERATIONS.md): the
//! demo config lets local frontend dev servers call it, `GET /` points to
//! `/graphql`, every `/metrics` series has a `# HELP` line, and an unnamed
//! operation is `anonymous` in the log line as in the metrics.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use wiremock::MockServer;

use crate::support::client::Client;
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

#[tokio::test]
async fn the_demo_lets_local_dev_servers_call_it_and_its_root_points_to_graphql() {
    // The repository's own services.toml, as `cargo run --example demo`
    // serves it (its services need not run for this).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let serving = Serving::start(repo, "info", &[]).await;
    let client = Client::new(format!("http://{}", serving.addr));

    for origin in [
        "http://localhost:5173",
        "http://localhost:3000",
        "http://localhost:8080",
        "http://127.0.0.1:5173",
    ] {
        let preflight = client
            .request(
                Method::OPTIONS,
                "/graphql",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
                None,
            )
            .await;
        assert_eq!(
            preflight.header("access-control-allow-origin").as_deref(),
            Some(origin),
            "{origin}"
        );
    }
    let elsewhere = client
        .request(
            Method::OPTIONS,
            "/graphql",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
            None,
        )
        .await;
    assert_eq!(elsewhere.header("access-control-allow-origin"), None);

    let root = client.request(Method::GET, "/", &[], None).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.json()["graphql"], "/graphql");
    let page = client
        .request(Method::GET, "/", &[("accept", "text/html,*/*")], None)
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.media_type().starts_with("text/html"),
        "{:?}",
        page.headers
    );
    assert!(page.text.contains("href=\"/graphql\""), "{}", page.text);
}

const SDL: &str = "type Query { user(id: ID!): User }\ntype User { id: ID! name: String }\n";

#[tokio::test]
async fn every_metric_has_help_and_an_unnamed_operation_is_anonymous_in_logs_and_metrics() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({ "id": "1", "name": "Ada" })),
    )
    .await;
    let dir = TempDir::new();
    dir.write(
        "services.toml",
        &format!(
            "[services.users]\nurl = \"{}\"\n\n[resolvers]\n\"Query.user\" = {{ service = \"users\", get = \"/users/{{args.id}}\", cache_ttl_s = 5 }}\n",
            users.uri()
        ),
    );
    dir.write("schema/schema.graphql", SDL);
    let serving = Serving::start(dir.path(), "info", &["--log-format", "json"]).await;
    let client = Client::new(format!("http://{}", serving.addr));

    let reply = client
        .post_with_headers(
            "{ user(id: \"1\") { name } }",
            &[("x-request-id", "first-contact-anonymous")],
        )
        .await;
    assert_eq!(
        reply.json(),
        json!({ "data": { "user": { "name": "Ada" } } })
    );
    assert_eq!(received(&users).await.len(), 1);

    let line = wait_for_request_line(&serving, "first-contact-anonymous").await;
    assert_eq!(line["fields"]["operation"], "anonymous", "{line}");

    let scrape = client.request(Method::GET, "/metrics", &[], None).await;
    assert_eq!(scrape.status, 200);
    let text = scrape.text;
    assert!(
        text.contains("conflux_requests_total{operation=\"anonymous\",outcome=\"ok\"} 1"),
        "{text}"
    );
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in [
        "conflux_requests_total",
        "conflux_request_duration_seconds",
        "conflux_upstream_requests_total",
        "conflux_upstream_duration_seconds",
        "conflux_cache_lookups_total",
    ] {
        assert!(typed.contains(&name), "{name} is exported: {text}");
    }
    for name in typed {
        let help = format!("# HELP {name} ");
        let described = text
            .lines()
            .find_map(|l| l.strip_prefix(&help))
            .unwrap_or_else(|| panic!("no `# HELP {name}` line:\n{text}"));
        assert!(described.len() > 10, "{name}: {described}");
    }
}

/// The `conflux::request` JSON line of the request with this id, waited for.
async fn wait_for_request_line(serving: &Serving, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = serving.lines().iter().find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            (value["target"] == "conflux::request" && value["fields"]["request_id"] == request_id)
                .then_some(value)
        });
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no request line for {request_id}:\n{}",
            serving.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
