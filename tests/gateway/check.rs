//! docs/CLI.md `conflux check` and docs/CONFIG.md: every configuration problem is reported
//! as `FILE:LINE:COL: message`, all of them in one run; exit 1 when any,
//! 0 when none.

use crate::support::check::Checked;
use crate::support::*;

const SDL: &str = "type Query {\n  user(id: ID!): User\n}\ntype User { id: ID! name: String }\n";

const VALID: &str = r#"
[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"#;

/// Asserts the problem at `services.toml:{position of needle}` mentions
/// every word of `mentions`.
fn assert_problem(checked: &Checked, file: &str, text: &str, needle: &str, mentions: &[&str]) {
    let prefix = format!("{file}:{}: ", position(text, needle));
    let line = checked.line_at(&prefix);
    for word in mentions {
        assert!(
            line.contains(word),
            "`{line}` does not mention `{word}`; all lines:\n{}",
            checked.lines.join("\n")
        );
    }
}

/// Like [`assert_problem`], for problems inside a template string: the
/// location may be the string or the placeholder inside it.
fn assert_template_problem(
    checked: &Checked,
    text: &str,
    string: &str,
    placeholder: &str,
    mentions: &[&str],
) {
    let at_string = format!("services.toml:{}: ", position(text, string));
    let at_placeholder = format!("services.toml:{}: ", position(text, placeholder));
    let line = checked
        .lines
        .iter()
        .find(|line| line.starts_with(&at_string) || line.starts_with(&at_placeholder))
        .unwrap_or_else(|| {
            panic!(
                "no problem at `{at_string}` or `{at_placeholder}`; all lines:\n{}",
                checked.lines.join("\n")
            )
        });
    for word in mentions {
        assert!(line.contains(word), "`{line}` does not mention `{word}`");
    }
}

#[test]
fn a_valid_configuration_passes() {
    let checked = check(VALID, SDL);

    assert!(checked.ok, "{:?}", checked.lines);
    assert!(checked.lines.is_empty());
}

#[test]
fn unknown_keys_are_reported_in_every_table_with_their_location() {
    let toml = r#"
schemas = "schema"

[server]
graphiql = true
colour = "blue"

[services.users]
url = "http://127.0.0.1:9"
timeout = 100

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}", cache_ttl = 5 }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "schemas",
        &["unknown key", "schemas"],
    );
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "colour",
        &["unknown key", "colour"],
    );
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "timeout",
        &["unknown key", "timeout"],
    );
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "cache_ttl",
        &["unknown key", "cache_ttl"],
    );
    assert_eq!(checked.lines.len(), 4, "{:#?}", checked.lines);
}

#[test]
fn an_undefined_service_is_reported_at_its_name() {
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user" = { service = "userz", get = "/users/{args.id}" }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_problem(&checked, "services.toml", toml, "\"userz\"", &["userz"]);
    assert_eq!(checked.lines.len(), 1, "{:#?}", checked.lines);
}

#[test]
fn a_mapping_for_a_field_not_in_the_schema_is_reported_at_its_key() {
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user"  = { service = "users", get = "/users/{args.id}" }
"Query.nope"  = { service = "users", get = "/nope" }
"Ghost.field" = { from = "x" }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "\"Query.nope\"",
        &["Query.nope"],
    );
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "\"Ghost.field\"",
        &["Ghost"],
    );
    assert_eq!(checked.lines.len(), 2, "{:#?}", checked.lines);
}

#[test]
fn an_args_placeholder_that_is_not_an_argument_is_reported() {
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.userId}" }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_template_problem(
        &checked,
        toml,
        "\"/users/{args.userId}\"",
        "{args.userId}",
        &["userId"],
    );
    assert_eq!(checked.lines.len(), 1, "{:#?}", checked.lines);
}

#[test]
fn an_unknown_template_root_is_reported() {
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}", query = { v = "{user.id}" } }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_template_problem(
        &checked,
        toml,
        "\"{user.id}\"",
        "{user.id}",
        &["root", "user"],
    );
    assert_eq!(checked.lines.len(), 1, "{:#?}", checked.lines);
}

#[test]
fn a_missing_environment_variable_is_reported_at_its_string() {
    let toml = r#"
[services.users]
url = "${CONFLUX_IT_SURELY_UNSET_VARIABLE}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"#;

    let checked = check(toml, SDL);

    assert!(!checked.ok);
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "\"${CONFLUX_IT_SURELY_UNSET_VARIABLE}\"",
        &["CONFLUX_IT_SURELY_UNSET_VARIABLE"],
    );
    assert_eq!(checked.lines.len(), 1, "{:#?}", checked.lines);
}

#[test]
fn a_default_makes_an_unset_environment_variable_fine() {
    let toml = VALID.replace(
        "\"http://127.0.0.1:9\"",
        "\"${CONFLUX_IT_SURELY_UNSET_VARIABLE:-http://127.0.0.1:9}\"",
    );

    let checked = check(&toml, SDL);

    assert!(checked.ok, "{:?}", checked.lines);
}

#[test]
fn a_root_field_without_mapping_is_reported_in_the_schema_file() {
    let sdl = "type Query {\n  user(id: ID!): User\n  users: [User!]!\n}\ntype User { id: ID! }\n";

    let checked = check(VALID, sdl);

    assert!(!checked.ok);
    assert_problem(
        &checked,
        "schema/schema.graphql",
        sdl,
        "users",
        &["Query.users"],
    );
    assert_eq!(checked.lines.len(), 1, "{:#?}", checked.lines);
}

#[test]
fn an_sdl_syntax_error_is_reported_in_the_schema_file() {
    let sdl = "type Query {\n  user(id: ID!): User\n}\ntype User {\n  id: ID!\n  name String\n}\n";

    let checked = check(VALID, sdl);

    assert!(!checked.ok);
    assert_eq!(checked.lines.len(), 1, "{:#?}", checked.lines);
    // At the token where `:` was expected (the `String` of `name String`).
    assert_problem(
        &checked,
        "schema/schema.graphql",
        sdl,
        "String\n}",
        &["syntax"],
    );
}

#[test]
fn several_problems_are_reported_together_in_one_run() {
    let toml = r#"
[server]
colour = "blue"

[services.users]
url = "${CONFLUX_IT_SURELY_UNSET_VARIABLE}"

[services.orders]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user"   = { service = "userz", get = "/users/{args.id}" }
"Query.orders" = { service = "orders", get = "/orders", query = { for = "{args.owner}" } }
"#;
    let sdl = "type Query {\n  user(id: ID!): User\n  orders: [ID!]!\n  users: [User!]!\n}\ntype User { id: ID! }\n";

    let checked = check(toml, sdl);

    assert!(!checked.ok);
    assert_problem(&checked, "services.toml", toml, "colour", &["colour"]);
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "\"${CONFLUX_IT_SURELY_UNSET_VARIABLE}\"",
        &["CONFLUX_IT_SURELY_UNSET_VARIABLE"],
    );
    assert_problem(&checked, "services.toml", toml, "\"userz\"", &["userz"]);
    assert_template_problem(
        &checked,
        toml,
        "\"{args.owner}\"",
        "{args.owner}",
        &["owner"],
    );
    assert_problem(
        &checked,
        "schema/schema.graphql",
        sdl,
        "users",
        &["Query.users"],
    );
    assert_eq!(checked.lines.len(), 5, "{:#?}", checked.lines);
}

#[test]
fn the_binary_check_exits_1_and_prints_every_problem_to_stderr() {
    let toml = r#"
[server]
colour = "blue"

[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user" = { service = "userz", get = "/users/{args.id}" }
"#;
    let files = [("schema/schema.graphql", SDL)];
    let in_process = check_files(toml, &files);

    let run = run_binary(&["check", "--config", "services.toml"], toml, &files);

    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let stderr = run.stderr_lines();
    assert_eq!(in_process.lines.len(), 2, "{:#?}", in_process.lines);
    for expected in &in_process.lines {
        assert!(
            stderr.contains(&expected.as_str()),
            "stderr lacks `{expected}`:\n{}",
            run.stderr
        );
    }
    assert!(
        stderr
            .iter()
            .any(|line| line.starts_with(&format!("services.toml:{}: ", position(toml, "colour")))),
        "{}",
        run.stderr
    );
}

#[test]
fn the_binary_check_exits_0_for_a_valid_configuration() {
    let run = run_binary(
        &["check", "--config", "services.toml"],
        VALID,
        &[("schema/schema.graphql", SDL)],
    );

    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
}

#[test]
fn the_binary_serve_refuses_an_invalid_configuration_with_the_same_messages() {
    let toml = VALID.replace("\"users\", get", "\"userz\", get");
    let files = [("schema/schema.graphql", SDL)];

    let run = run_binary(
        &[
            "serve",
            "--config",
            "services.toml",
            "--listen",
            "127.0.0.1:0",
        ],
        &toml,
        &files,
    );

    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let expected = format!("services.toml:{}: ", position(&toml, "\"userz\""));
    assert!(
        run.stderr_lines()
            .iter()
            .any(|line| line.starts_with(&expected) && line.contains("userz")),
        "stderr lacks `{expected}…userz`:\n{}",
        run.stderr
    );
}

#[test]
fn every_problem_of_one_mapping_is_listed() {
    let toml = r#"
[services.users]
url = "http://127.0.0.1:9"

[resolvers]
"Query.user" = { service = "userz", get = "/users/{args.nope}" }
"#;
    let checked = check(toml, SDL);
    assert!(!checked.ok);
    assert_problem(
        &checked,
        "services.toml",
        toml,
        "\"userz\"",
        &["unknown service", "userz"],
    );
    assert_template_problem(
        &checked,
        toml,
        "\"/users/{args.nope}\"",
        "{args.nope}",
        &["args.nope", "no argument"],
    );
    assert_eq!(checked.lines.len(), 2, "{}", checked.lines.join("\n"));
}
