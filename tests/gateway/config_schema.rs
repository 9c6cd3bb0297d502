//! docs/CONFIG.md "Editor completion": the JSON Schema of `services.toml`
//! is generated from the config types, committed as
//! docs/services.schema.json (this test fails when the two differ;
//! `CONFLUX_WRITE_SCHEMA=1 cargo test --test gateway config_schema`
//! rewrites it), named by the `#:schema` line of the demo's services.toml,
//! accepts the demo config and rejects unknown keys and wrong types.

use std::path::PathBuf;

use serde_json::Value;

fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn generated() -> String {
    serde_json::to_string_pretty(&conflux::config::json_schema()).expect("serializes") + "\n"
}

/// A TOML text as the JSON value a schema validator (or an editor) sees.
fn toml_as_json(text: &str) -> Value {
    let value: toml::Value = toml::from_str(text).expect("valid TOML");
    serde_json::to_value(value).expect("TOML values are JSON values")
}

/// docs/services.schema.json, rewritten first when CONFLUX_WRITE_SCHEMA=1
/// (by whichever test reads it first: they run in parallel).
fn committed() -> String {
    let path = repo("docs/services.schema.json");
    if std::env::var_os("CONFLUX_WRITE_SCHEMA").is_some_and(|v| v == "1") {
        std::fs::write(&path, generated()).expect("write docs/services.schema.json");
    }
    std::fs::read_to_string(&path).unwrap_or_default()
}

fn validator() -> jsonschema::Validator {
    let committed = committed();
    let schema: Value = serde_json::from_str(&committed).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed = committed();
    assert!(
        committed == generated(),
        "docs/services.schema.json differs from the config types; regenerate it with \
         `CONFLUX_WRITE_SCHEMA=1 cargo test --test gateway config_schema`"
    );
}

#[test]
fn the_demo_config_names_the_schema_and_passes_it() {
    let text = std::fs::read_to_string(repo("services.toml")).expect("the demo config");
    assert_eq!(
        text.lines().next(),
        Some("#:schema ./docs/services.schema.json"),
        "the first line tells Taplo-based editors where the schema is"
    );

    let validator = validator();
    let demo = toml_as_json(&text);
    assert_eq!(errors(&validator, &demo), Vec::<String>::new());
    // The demo uses most tables; the schema must know every one of them.
    for table in ["server", "auth", "services", "types", "resolvers"] {
        assert!(demo.get(table).is_some(), "the demo has [{table}]");
    }
}

#[test]
fn the_schema_rejects_unknown_keys_and_wrong_types_where_check_does() {
    let validator = validator();
    let config = |extra: &str| {
        toml_as_json(&format!(
            "[server]\n{extra}\n[services.users]\nurl = \"http://127.0.0.1:9\"\n\n[resolvers]\n\"Query.user\" = {{ service = \"users\", get = \"/users/{{args.id}}\" }}\n"
        ))
    };
    assert_eq!(errors(&validator, &config("")), Vec::<String>::new());

    let unknown = errors(&validator, &config("colour = \"blue\""));
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].contains("colour"), "{unknown:?}");

    let misspelt_mapping = toml_as_json(
        "[services.users]\nurl = \"http://x\"\n[resolvers]\n\"Query.user\" = { sevice = \"users\" }\n",
    );
    let found = errors(&validator, &misspelt_mapping);
    assert!(found.iter().any(|e| e.contains("sevice")), "{found:?}");

    let wrong_type = errors(&validator, &config("header_read_timeout_ms = \"5s\""));
    assert_eq!(wrong_type.len(), 1, "{wrong_type:?}");
}
