//! docs/SHAPING.md "What `check` refuses": each refusal of the shaping keys
//! with its `FILE:LINE:COL`, and the OAuth2 secret never in `check`'s
//! output.

use crate::support::*;

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  users: [User!]!
}
type Mutation { signup(name: String!): Boolean }
type User {
  id: ID!
  name: String!
  age: Int
  status: Status
  tags: [String!]!
}
enum Status { ACTIVE INACTIVE }
"#;

const HEAD: &str = r#"
[services.shop]
url = "http://127.0.0.1:9"

[resolvers]
"Query.users" = { service = "shop", get = "/users" }
"Mutation.signup" = { service = "shop", post = "/signup", body = { name = "{args.name}" } }
"#;

/// Checks `HEAD` + `extra`, and returns the text checked with the result.
fn checked(extra: &str) -> (String, crate::support::check::Checked) {
    let text = format!("{HEAD}{extra}");
    let result = check(&text, SDL);
    (text, result)
}

/// The problem at the position of `needle` mentions every word.
fn refused_at(extra: &str, needle: &str, mentions: &[&str]) {
    let (text, result) = checked(extra);
    assert!(!result.ok, "accepted:\n{text}");
    let line = result.line_at(&format!("services.toml:{}: ", position(&text, needle)));
    for word in mentions {
        assert!(line.contains(word), "`{line}` does not mention `{word}`");
    }
}

#[test]
fn valid_shaping_keys_pass() {
    let (text, result) = checked(
        r#"
"Query.user" = { service = "shop", get = "/users/{args.id}", null_on = [404, 410], error_when = "{response.body.error}", errors = { message = "{response.body.error.message}", code = "{response.body.error.code}", extensions = { ref = "{response.headers.x-ref}", at = "{response.status}" } } }
"User.status" = { map = { "A" = "ACTIVE", "I" = "INACTIVE" } }
"User.age" = { default = 0 }
"User.tags" = { filter = { kind = "x" }, limit = 3, map = { "a" = "b" } }
"#,
    );
    assert!(result.ok, "{text}\n{:#?}", result.lines);
}

#[test]
fn filter_on_a_field_that_is_not_a_list_is_refused() {
    refused_at(
        r#""User.name" = { filter = { kind = "x" } }"#,
        r#"{ kind = "x" }"#,
        &["filter", "list", "User.name"],
    );
}

#[test]
fn limit_on_a_field_that_is_not_a_list_is_refused() {
    refused_at(
        r#""User.age" = { limit = 2 }"#,
        "2 }",
        &["limit", "list", "User.age"],
    );
}

#[test]
fn a_default_that_does_not_fit_the_field_is_refused() {
    refused_at(
        r#""User.age" = { default = "old" }"#,
        r#""old""#,
        &["default", "Int"],
    );
    refused_at(
        r#""User.status" = { default = "GONE" }"#,
        r#""GONE""#,
        &["default", "Status"],
    );
}

#[test]
fn a_map_value_that_does_not_fit_the_field_is_refused() {
    refused_at(
        r#""User.status" = { map = { "A" = "ACTIVE", "X" = "UNKNOWN" } }"#,
        r#""UNKNOWN""#,
        &["map", "UNKNOWN", "Status"],
    );
}

#[test]
fn response_placeholders_outside_errors_and_error_when_are_refused() {
    refused_at(
        r#""Query.user" = { service = "shop", get = "/users/{response.status}" }"#,
        r#""/users/{response.status}""#,
        &["{response.status}", "errors", "error_when"],
    );
    refused_at(
        r#""Query.user" = { service = "shop", get = "/users/{args.id}", headers = { x = "{response.body.a}" } }"#,
        r#""{response.body.a}""#,
        &["{response.body.a}", "only available"],
    );
    refused_at(
        r#""User.name" = { value = "{response.body.name}" }"#,
        r#""{response.body.name}""#,
        &["response"],
    );
}

#[test]
fn a_nested_form_body_is_refused() {
    refused_at(
        r#"
[resolvers."Query.user"]
service = "shop"
post = "/users"
body_format = "form"
body = { name = "{args.id}", address = { city = "x" } }
"#,
        r#"{ name = "{args.id}", address"#,
        &["form", "body.address", "nested"],
    );
}

#[test]
fn an_unknown_body_format_and_a_bad_null_on_status_are_refused() {
    refused_at(
        r#""Query.user" = { service = "shop", get = "/users/{args.id}", body_format = "xml" }"#,
        r#""xml""#,
        &["body_format", "xml", "json, form"],
    );
    refused_at(
        r#""Query.user" = { service = "shop", get = "/users/{args.id}", null_on = [404, 1000] }"#,
        "[404, 1000]",
        &["null_on", "1000"],
    );
}

#[test]
fn oauth2_problems_are_reported_without_the_secret() {
    let text = r#"
[services.shop]
url = "http://127.0.0.1:9"
oauth2 = { token_url = "not a url", client_id = "gw", client_secret = "hunter2-very-secret" }

[services.other]
url = "http://127.0.0.1:9"
oauth2 = { client_secret = "hunter2-very-secret" }

[resolvers]
"Query.users" = { service = "shop", get = "/users" }
"Query.user" = { service = "other", get = "/users/{args.id}" }
"Mutation.signup" = { service = "shop", post = "/signup" }
"#;
    let result = check(text, SDL);
    assert!(!result.ok);
    let line = result.line_at(&format!(
        "services.toml:{}: ",
        position(text, r#""not a url""#)
    ));
    assert!(line.contains("token_url"), "{line}");
    let line = result.line_at(&format!(
        "services.toml:{}: ",
        position(text, r#"{ client_secret"#)
    ));
    assert!(
        line.contains("token_url") && line.contains("client_id"),
        "{line}"
    );
    let all = result.lines.join("\n");
    assert!(
        !all.contains("hunter2"),
        "the secret is in check's output:\n{all}"
    );
    // The binary prints the same, without the secret either.
    let run = run_binary(&["check"], text, &[("schema/schema.graphql", SDL)]);
    assert_eq!(run.code, Some(1));
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}
