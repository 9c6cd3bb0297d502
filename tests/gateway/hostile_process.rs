//! Hostile clients against the real binary: connections that send half a
//! request (or nothing) and bodies that stall are closed by the server
//! within the read timeouts of docs/CONFIG.md `[server]`, over plain HTTP
//! and TLS; and `serve --hot-reload` reloads once per change, not again
//! because a reload read the files.
//!
//! The clients are raw TCP (and TLS) streams, to send what an HTTP client
//! never would. Every bound is generous: two shared cores.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde_json::json;
use wiremock::MockServer;

use crate::support::client::Client;
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

const SDL: &str = "type Query { user(id: ID!): User }\ntype User { id: ID! name: String }\n";

/// `services.toml` with `server_keys` in `[server]`; `{users}` is the
/// users service. Answers are cached for a minute.
fn config(server_keys: &str, users: &str) -> String {
    format!(
        r#"
[server]
{server_keys}

[services.users]
url = "{users}"

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}", cache_ttl_s = 60 }}
"#
    )
}

const USER_QUERY: &str = r#"{ user(id: "1") { name } }"#;

/// A users service answering `/users/1` with Ann.
async fn users() -> MockServer {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;
    users
}

/// `conflux serve` on `config` (and [`SDL`], and `files`) in a fresh
/// directory, with `args`.
struct Gateway {
    serving: Serving,
    client: Client,
    dir: TempDir,
}

impl Gateway {
    async fn start(config: &str, files: &[(&str, &str)], args: &[&str]) -> Gateway {
        let dir = TempDir::new();
        dir.write("services.toml", config);
        dir.write("schema/schema.graphql", SDL);
        for (relative, text) in files {
            dir.write(relative, text);
        }
        let serving = Serving::start(dir.path(), "info", args).await;
        Gateway {
            client: Client::new(format!("http://{}", serving.addr)),
            serving,
            dir,
        }
    }

    /// Stderr lines containing `text`.
    fn count_lines(&self, text: &str) -> usize {
        self.serving
            .lines()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    /// `/healthz` answers and a query runs.
    async fn assert_serving(&mut self) {
        assert!(self.serving.is_running(), "the gateway process died");
        let health = self
            .client
            .request(Method::GET, "/healthz", &[], None)
            .await;
        assert_eq!(health.status, 200);
        let reply = self.client.post(USER_QUERY).await;
        assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    }
}

// ---------------------------------------------------------------------------
// Hot reload

/// `touch FILE`: a new modification time, the content unchanged.
fn touch(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the file to touch");
    file.set_modified(SystemTime::now())
        .expect("set the modification time");
}

/// Waits (at most `limit`) until `count` reaches `at_least`.
async fn wait_for_count(what: &str, limit: Duration, at_least: usize, count: impl Fn() -> usize) {
    let deadline = Instant::now() + limit;
    while count() < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: {} after {limit:?}, expected {at_least}",
            count()
        );
        tokio::time::sleep(ms(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_is_one_reload_and_reading_the_files_triggers_none() {
    const RELOADED: &str = "configuration reloaded";
    let users = users().await;
    let mut gateway = Gateway::start(&config("", &users.uri()), &[], &["--hot-reload"]).await;
    wait_for_count("watching", Duration::from_secs(30), 1, || {
        gateway.count_lines("watching the configuration files")
    })
    .await;
    let config_file = gateway.dir.path().join("services.toml");
    let schema_file = gateway.dir.path().join("schema/schema.graphql");

    touch(&config_file);
    wait_for_count(
        "reloads after one touch",
        Duration::from_secs(15),
        1,
        || gateway.count_lines(RELOADED),
    )
    .await;
    // The reload read services.toml and the schema: that is no change.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        gateway.count_lines(RELOADED),
        1,
        "reloads 5 s after one touch"
    );

    // A cached answer stays cached: no reload empties the cache meanwhile.
    gateway.assert_serving().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateway.assert_serving().await;
    assert_eq!(
        request_lines(&received(&users).await),
        vec!["GET /users/1"],
        "the second query is served from the cache"
    );

    touch(&schema_file);
    wait_for_count(
        "reloads after a second touch",
        Duration::from_secs(15),
        2,
        || gateway.count_lines(RELOADED),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        gateway.count_lines(RELOADED),
        2,
        "reloads 5 s after two touches"
    );
    gateway.assert_serving().await;
}
