//! `conflux init [DIR]` (docs/CLI.md, README "A five-minute tour"): the
//! project it writes passes `conflux check` and is served by `conflux
//! serve` — queried over HTTP against a wiremock standing in for its one
//! service — and it never overwrites a file.

use std::process::Command;

use serde_json::json;
use wiremock::MockServer;

use crate::support::client::Client;
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

fn conflux(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the conflux binary")
}

#[tokio::test]
async fn init_writes_a_project_that_check_accepts_and_serve_serves() {
    let dir = TempDir::new();
    let init = conflux(&["init", "my-bff"], dir.path());
    let said = String::from_utf8_lossy(&init.stderr);
    assert_eq!(init.status.code(), Some(0), "{said}");
    let project = dir.path().join("my-bff");
    for file in [
        "services.toml",
        "schema/api.graphql",
        "services.schema.json",
    ] {
        assert!(project.join(file).is_file(), "{file} written; {said}");
    }
    assert!(
        said.contains("conflux check"),
        "says what to run next: {said}"
    );
    let toml = std::fs::read_to_string(project.join("services.toml")).expect("services.toml");
    assert!(toml.starts_with("#:schema ./services.schema.json\n"));
    let schema = std::fs::read_to_string(project.join("services.schema.json")).expect("schema");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&schema).expect("JSON"),
        conflux::config::json_schema(),
        "the schema beside services.toml is this version's"
    );

    let check = conflux(&["check"], &project);
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{said}");
    assert!(said.trim_end().ends_with("services.toml: ok"), "{said}");

    // The service, as JSONPlaceholder answers.
    let api = MockServer::start().await;
    let user = json!({ "id": 1, "name": "Leanne Graham", "email": "leanne@example.com",
                       "address": { "city": "Gwenborough" } });
    serve(&api, "GET", "/users/1", json_reply(user)).await;
    serve(
        &api,
        "GET",
        "/users/1/posts",
        json_reply(json!([
            { "id": 1, "userId": 1, "title": "first", "body": "…" },
            { "id": 2, "userId": 1, "title": "second", "body": "…" }
        ])),
    )
    .await;
    let serving = Serving::start_with_env(&project, "info", &[], &[("API_URL", &api.uri())]).await;
    let client = Client::new(format!("http://{}", serving.addr));

    let reply = client
        .post("{ user(id: 1) { name city posts { title author { name } } } }")
        .await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({ "data": { "user": {
            "name": "Leanne Graham",
            "city": "Gwenborough",
            "posts": [
                { "title": "first", "author": { "name": "Leanne Graham" } },
                { "title": "second", "author": { "name": "Leanne Graham" } }
            ]
        } } })
    );
    // The user, their posts, and each post's author: the same call as the
    // user's, made once in the operation — not once per post.
    let calls = request_lines(&received(&api).await);
    assert_eq!(calls, ["GET /users/1", "GET /users/1/posts"]);

    // A dev server's origin may call it (the project's cors_origins).
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            "/graphql",
            &[
                ("origin", "http://localhost:5173"),
                ("access-control-request-method", "POST"),
            ],
            None,
        )
        .await;
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
}

#[test]
fn init_refuses_to_overwrite_and_writes_nothing() {
    let dir = TempDir::new();
    dir.write("services.toml", "# mine\n");

    let init = conflux(&["init"], dir.path());

    assert_eq!(init.status.code(), Some(1));
    let said = String::from_utf8_lossy(&init.stderr);
    assert!(
        said.contains("not overwriting") && said.contains("services.toml"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("services.toml")).expect("kept"),
        "# mine\n"
    );
    assert!(!dir.path().join("schema").exists(), "nothing else written");
}
