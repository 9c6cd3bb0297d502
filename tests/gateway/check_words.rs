//! docs/CONFIG.md "How `check` reports problems": wrong types in plain words
//! with the key's dotted path, every one in one run; "did you mean" for a
//! misspelt key; where a key belongs when it landed under the wrong header;
//! a hint naming `--config` and `conflux init` outside a project.

use crate::support::check::Checked;
use crate::support::temp::TempDir;
use crate::support::*;

const SDL: &str = "type Query {\n  user(id: ID!): User\n}\ntype User { id: ID! name: String }\n";

/// The line at the position of `needle` in `toml`, which must say `says`.
fn assert_says(checked: &Checked, toml: &str, needle: &str, says: &str) {
    let prefix = format!("services.toml:{}: ", position(toml, needle));
    let line = checked.line_at(&prefix);
    assert_eq!(
        &line[prefix.len()..],
        says,
        "all lines:\n{}",
        checked.lines.join("\n")
    );
}

#[test]
fn every_wrong_type_in_a_file_is_reported_with_its_key_path_in_plain_words() {
    let toml = r#"
[server]
graphiql = "yes"
cors_origins = ["http://localhost:5173", 3000]

[limits]
max_depth = -1

[services.users]
url = "http://127.0.0.1:9"
timeout_ms = "5s"
health = "/health"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}", cache_ttl_s = 1.5 }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_says(
        &checked,
        toml,
        "\"yes\"",
        "`server.graphiql` must be `true` or `false`; found the string \"yes\"",
    );
    assert_says(
        &checked,
        toml,
        "3000",
        "`server.cors_origins[1]` must be a string; found the number 3000",
    );
    assert_says(
        &checked,
        toml,
        "-1",
        "`limits.max_depth` must be a whole number from 0 to 4294967295; found the number -1",
    );
    assert_says(
        &checked,
        toml,
        "\"5s\"",
        "`services.users.timeout_ms` must be a whole number of milliseconds; found the string \"5s\"",
    );
    assert_says(
        &checked,
        toml,
        "\"/health\"",
        "`services.users.health` must be a table (`{ … }` or a `[header]`); found the string \"/health\"",
    );
    assert_says(
        &checked,
        toml,
        "1.5",
        "`resolvers.\"Query.user\".cache_ttl_s` must be a whole number of seconds; found the number 1.5",
    );
    assert_eq!(checked.lines.len(), 6, "{:#?}", checked.lines);
}

#[test]
fn type_errors_unknown_keys_and_later_checks_come_out_of_one_run() {
    // A wrong type no longer hides what follows it: the unknown key after
    // it, and the validation of the rest (the undefined service).
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"
retries = "two"
colour = "blue"

[resolvers]
"Query.user" = { service = "userz", get = "/users/{args.id}" }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_says(
        &checked,
        toml,
        "\"two\"",
        "`services.users.retries` must be a whole number; found the string \"two\"",
    );
    assert!(checked
        .line_at(&format!("services.toml:{}: ", position(toml, "colour")))
        .contains("unknown key `colour` in [services.users]"));
    assert!(checked
        .line_at(&format!("services.toml:{}: ", position(toml, "\"userz\"")))
        .contains("userz"));
    assert_eq!(checked.lines.len(), 3, "{:#?}", checked.lines);
}

#[test]
fn a_misspelt_key_gets_did_you_mean() {
    let toml = r#"
schemas = "schema"

[server]
cors-origins = ["http://localhost:5173"]

[services.users]
url = "http://127.0.0.1:9"
timeout = 100

[resolvers]
"Query.user" = { sevice = "users", service = "users", get = "/users/{args.id}", cache_ttl = 5 }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_says(
        &checked,
        toml,
        "schemas",
        "unknown key `schemas`; did you mean `schema`?",
    );
    assert_says(
        &checked,
        toml,
        "cors-origins",
        "unknown key `cors-origins` in [server]; did you mean `cors_origins`?",
    );
    assert_says(
        &checked,
        toml,
        "timeout",
        "unknown key `timeout` in [services.users]; did you mean `timeout_ms`?",
    );
    assert_says(
        &checked,
        toml,
        "sevice",
        "unknown key `sevice` in [resolvers.\"Query.user\"]; did you mean `service`?",
    );
    assert_says(
        &checked,
        toml,
        "cache_ttl",
        "unknown key `cache_ttl` in [resolvers.\"Query.user\"]; did you mean `cache_ttl_s`?",
    );
    assert_eq!(checked.lines.len(), 5, "{:#?}", checked.lines);
}

#[test]
fn a_key_written_below_the_wrong_header_says_where_it_belongs() {
    // `schema` is a top-level key and `max_depth` a [limits] key, but TOML
    // puts every key after `[services.users]` into that table; the mapping
    // belongs in [resolvers].
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"
schema = "schema"
max_depth = 10
"Query.user" = { service = "users", get = "/users/{args.id}" }

[resolvers]
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_says(
        &checked,
        toml,
        "schema =",
        "unknown key `schema` in [services.users]; `schema` is a top-level key: it is below \
         the [services.NAME] header, and TOML puts every key after a header into that table \
         until the next one; move it above the first [table] header",
    );
    assert_says(
        &checked,
        toml,
        "max_depth",
        "unknown key `max_depth` in [services.users]; `max_depth` belongs in [limits]: it is \
         below the [services.NAME] header, and TOML puts every key after a header into that \
         table until the next one; move it under [limits]",
    );
    let mapping = checked.line_at(&format!(
        "services.toml:{}: ",
        position(toml, "\"Query.user\"")
    ));
    assert!(
        mapping.contains("unknown key `Query.user` in [services.users]")
            && mapping.contains("move it under [resolvers]"),
        "{mapping}"
    );
}

#[test]
fn check_outside_a_project_names_config_and_init() {
    let dir = TempDir::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_conflux"))
        .arg("check")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run the conflux binary");

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("services.toml: cannot read config"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--config FILE") && stderr.contains("conflux init"),
        "{stderr}"
    );
}
