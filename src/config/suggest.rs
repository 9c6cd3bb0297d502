//! What `check` adds to "unknown key": a "did you mean `…`?" when a known
//! key of that table is a small edit away, and where a key belongs when it
//! is known in another table — TOML puts every key written after a
//! `[header]` into that table, so a top-level key or another table's key
//! written below a header lands there (docs/CONFIG.md).
//!
//! The known keys are read from the JSON Schema generated from the raw
//! types (`raw::json_schema`), so there is no second list to keep.

use std::sync::LazyLock;

use serde_json::Value;

use super::Segment;

static SCHEMA: LazyLock<Value> = LazyLock::new(super::raw::json_schema);

/// The hint for the unknown `key` found in the table at `table` (empty:
/// the top level), or `None`.
pub(super) fn hint(table: &[Segment], key: &str) -> Option<String> {
    let here = object_at(&SCHEMA, table);
    if let Some(known) = here.map(keys) {
        if let Some(best) = closest(key, &known) {
            return Some(format!("did you mean `{best}`?"));
        }
    }
    let header = table_name(table);
    let mut homes: Vec<String> = tables(&SCHEMA)
        .into_iter()
        .filter(|(_, known)| known.iter().any(|k| k == key))
        .map(|(name, _)| name)
        .filter(|name| Some(name) != header.as_ref())
        .collect();
    if homes.is_empty() && looks_like_mapping(key) && header.as_deref() != Some("[resolvers]") {
        homes.push("[resolvers]".to_owned());
    }
    if homes.is_empty() {
        return None;
    }
    let homes = homes.join(" or ");
    let belongs = if homes == "the top level" {
        "is a top-level key".to_owned()
    } else {
        format!("belongs in {homes}")
    };
    Some(match header {
        Some(header) => format!(
            "`{key}` {belongs}: it is below the {header} header, and TOML puts every key \
             after a header into that table until the next one; move it {}",
            if homes == "the top level" {
                "above the first [table] header".to_owned()
            } else {
                format!("under {homes}")
            }
        ),
        None => format!("`{key}` {belongs}; write it under that header"),
    })
}

/// The known key nearest to `key`: the same but for case or `-`/`_`, at
/// most two edits away (one for short keys), or `key` plus a suffix such
/// as a unit (`timeout` → `timeout_ms`).
fn closest<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    let normal = |k: &str| k.to_ascii_lowercase().replace('-', "_");
    let wanted = normal(key);
    let budget = if key.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .filter_map(|candidate| {
            let distance = if normal(candidate) == wanted {
                0
            } else if candidate.starts_with(&format!("{wanted}_")) {
                1
            } else {
                strsim::levenshtein(&wanted, &normal(candidate))
            };
            (distance <= budget).then_some((distance, candidate.as_str()))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `"Query.user"`: a `Type.field` key, the shape of a `[resolvers]` entry.
fn looks_like_mapping(key: &str) -> bool {
    match key.split_once('.') {
        Some((ty, field)) => {
            ty.starts_with(|c: char| c.is_ascii_uppercase())
                && !field.is_empty()
                && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// `[server]`, `[services.NAME]` (any service), `[resolvers]` — as the
/// tables of [`tables`] are named; `None` for the top level.
fn table_name(table: &[Segment]) -> Option<String> {
    let Some(Segment::Key(first)) = table.first() else {
        return None;
    };
    let root = resolve(&SCHEMA, &SCHEMA);
    let property = root.get("properties").and_then(|p| p.get(first.as_str()));
    let dynamic = property
        .map(|p| resolve(&SCHEMA, p))
        .is_some_and(|p| p.get("properties").is_none() && p.get("additionalProperties").is_some());
    Some(match table.len() {
        1 => format!("[{first}]"),
        2 if dynamic && first == "resolvers" => "a [resolvers] entry".to_owned(),
        2 if dynamic => format!("[{first}.NAME]"),
        _ => return Some(format!("[{}]", super::type_error::dotted(table))),
    })
}

/// Every table a key can be written in, with its keys: the top level, each
/// top-level table, and the entries of `[services.NAME]`, `[types.NAME]`
/// and `[resolvers]`.
fn tables(schema: &Value) -> Vec<(String, Vec<String>)> {
    let root = resolve(schema, schema);
    let mut out = vec![("the top level".to_owned(), keys(root))];
    let Some(Value::Object(properties)) = root.get("properties") else {
        return out;
    };
    for (name, property) in properties {
        let property = resolve(schema, property);
        if property.get("properties").is_some() {
            out.push((format!("[{name}]"), keys(property)));
        } else if let Some(entry) = property.get("additionalProperties") {
            let entry = resolve(schema, entry);
            if entry.get("properties").is_some() {
                let label = if name == "resolvers" {
                    "a [resolvers] entry".to_owned()
                } else {
                    format!("[{name}.NAME]")
                };
                out.push((label, keys(entry)));
            }
        }
    }
    out
}

/// The object schema of the table at `path`.
fn object_at<'s>(schema: &'s Value, path: &[Segment]) -> Option<&'s Value> {
    let mut node = resolve(schema, schema);
    for segment in path {
        node = match segment {
            Segment::Key(key) => match node.get("properties").and_then(|p| p.get(key.as_str())) {
                Some(property) => resolve(schema, property),
                None => resolve(schema, node.get("additionalProperties")?),
            },
            Segment::Index(_) => resolve(schema, node.get("items")?),
        };
    }
    node.get("properties").is_some().then_some(node)
}

fn keys(object: &Value) -> Vec<String> {
    match object.get("properties") {
        Some(Value::Object(properties)) => properties.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Follows `$ref`s (also as `allOf: [ref]`, how draft 7 gives a
/// reference a description), and an `Option`'s `anyOf: [T, null]` to its `T`.
fn resolve<'s>(schema: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..16 {
        if let Some(Value::String(reference)) = node.get("$ref") {
            let pointer = reference.trim_start_matches('#');
            match schema.pointer(pointer) {
                Some(target) => node = target,
                None => return node,
            }
        } else if let Some(Value::Array(variants)) = node
            .get("allOf")
            .or(node.get("anyOf"))
            .or(node.get("oneOf"))
        {
            let object = variants
                .iter()
                .find(|v| v.get("$ref").is_some() || v.get("properties").is_some());
            match object {
                Some(object) => node = object,
                None => return node,
            }
        } else {
            return node;
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &[&str]) -> Vec<Segment> {
        path.iter().map(|k| Segment::Key((*k).to_owned())).collect()
    }

    #[test]
    fn a_misspelt_key_gets_the_known_one() {
        let hint = hint(&at(&["resolvers", "Query.user"]), "sevice");
        assert_eq!(hint.as_deref(), Some("did you mean `service`?"));
        let hint = hint_for(&["services", "users"], "timeout");
        assert_eq!(hint.as_deref(), Some("did you mean `timeout_ms`?"));
        let hint = hint_for(&["server"], "cors-origins");
        assert_eq!(hint.as_deref(), Some("did you mean `cors_origins`?"));
        assert_eq!(hint_for(&["server"], "zebra"), None);
    }

    fn hint_for(path: &[&str], key: &str) -> Option<String> {
        hint(&at(path), key)
    }

    #[test]
    fn a_key_of_another_table_says_where_it_belongs() {
        let hint = hint_for(&["services", "users"], "schema").expect("a hint");
        assert!(hint.contains("`schema` is a top-level key"), "{hint}");
        assert!(hint.contains("below the [services.NAME] header"), "{hint}");
        let hint = hint_for(&["server"], "max_depth").expect("a hint");
        assert!(hint.contains("belongs in [limits]"), "{hint}");
        let hint = hint_for(&["services", "users"], "Query.user").expect("a hint");
        assert!(hint.contains("belongs in [resolvers]"), "{hint}");
    }
}
