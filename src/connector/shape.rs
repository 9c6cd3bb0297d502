//! Value transforms of a mapping (docs/SHAPING.md): `filter`, `limit`,
//! `map` and `default`, applied to the field's value in that order — after
//! the call (or `from` / `value`) and `select`, before the value is
//! coerced to the schema type by `connector::coerce` as any other value.
//!
//! The engine applies a shape once, where it keeps a mapping's answer
//! (`execute::calls::shaped`): the shaped value is what the resolve phase
//! walks for the calls below and what the writer writes, for queries,
//! mutations, batched fields and deferred fragments alike.

use sonic_rs::{JsonValueMutTrait, JsonValueTrait};

use super::request::render_value;
use super::template::{Looked, Scope, Template};
use crate::upstream::json::{self, Json};

/// A mapping's `filter`, `limit`, `map` and `default`; `None` in a binding
/// when the mapping has none of them, so unshaped fields cost nothing.
#[derive(Debug, Default)]
pub struct Shape {
    /// `filter = { status = "{args.status}" }`: (dotted path in each item,
    /// the value it must equal).
    pub filter: Vec<(Vec<String>, Template)>,
    /// `limit = "{args.first}"`: keep the first N items.
    pub limit: Option<Template>,
    /// `map = { "A" = "ACTIVE" }`: a scalar's string form → its
    /// replacement.
    pub map: Vec<(String, Json)>,
    /// `default`: the value when the field's is absent or null.
    pub default: Option<Json>,
}

impl Shape {
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
            && self.limit.is_none()
            && self.map.is_empty()
            && self.default.is_none()
    }

    /// The shaped copy of `value` (`None`: absent). Templates read
    /// `scope` (arguments, parent, claims, headers).
    pub fn apply(&self, value: Option<&Json>, scope: &dyn Scope) -> Option<Json> {
        let mut value = value.filter(|v| !v.is_null()).cloned();
        if let Some(items) = value.as_mut().and_then(|v| v.as_array_mut()) {
            if !self.filter.is_empty() {
                let wanted: Vec<(&[String], String)> = self
                    .filter
                    .iter()
                    .filter_map(|(path, template)| {
                        let looked = render_value(template, scope)?;
                        (!looked.is_null()).then(|| (path.as_slice(), looked_text(&looked)))
                    })
                    .collect();
                if !wanted.is_empty() {
                    items.retain(|item| {
                        wanted.iter().all(|(path, text)| {
                            json::at(item, path).is_some_and(|v| scalar_text(v) == *text)
                        })
                    });
                }
            }
            if let Some(limit) = self.limit.as_ref().and_then(|t| limit_of(t, scope)) {
                if items.len() > limit {
                    items.truncate(limit);
                }
            }
        }
        if !self.map.is_empty() {
            if let Some(value) = value.as_mut() {
                self.map_in(value);
            }
        }
        match value {
            Some(value) if !value.is_null() => Some(value),
            _ => self.default.clone(),
        }
    }

    /// Replaces scalars found in the table, item by item in lists.
    fn map_in(&self, value: &mut Json) {
        if let Some(items) = value.as_array_mut() {
            for item in items.iter_mut() {
                self.map_in(item);
            }
            return;
        }
        if value.is_object() || value.is_null() {
            return;
        }
        let text = scalar_text(value);
        if let Some((_, replacement)) = self.map.iter().find(|(from, _)| *from == text) {
            *value = replacement.clone();
        }
    }
}

/// The string form a scalar is compared by: a string's own text, a number
/// or boolean as JSON writes it.
pub fn scalar_text(value: &Json) -> String {
    match value.as_str() {
        Some(text) => text.to_owned(),
        None => value.to_string(),
    }
}

fn looked_text(looked: &Looked<'_>) -> String {
    match looked {
        Looked::Upstream(value) => scalar_text(value),
        Looked::Input(value) => match value.as_ref() {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        },
    }
}

/// `limit`'s value: a non-negative integer, or a string of one; anything
/// else (or no value) keeps every item.
fn limit_of(template: &Template, scope: &dyn Scope) -> Option<usize> {
    let looked = render_value(template, scope)?;
    let text = looked_text(&looked);
    text.trim().parse::<usize>().ok()
}

/// A TOML value (`default`, a `map` replacement) as upstream JSON.
pub fn from_toml(value: &toml::Value) -> Json {
    let serde: serde_json::Value = match value {
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        other => serde_json::to_value(other).unwrap_or_default(),
    };
    json::from_serde(&serde)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::template::Placeholder;
    use sonic_rs::JsonContainerTrait;
    use std::borrow::Cow;

    struct Args(serde_json::Value);
    impl Scope for Args {
        fn lookup(&self, p: &Placeholder) -> Option<Looked<'_>> {
            crate::connector::template::value_at(&self.0, &p.path)
                .map(|v| Looked::Input(Cow::Borrowed(v)))
        }
    }

    fn parsed(text: &str) -> Json {
        json::parse(text.as_bytes()).expect("json")
    }

    #[test]
    fn filter_then_limit_then_map_then_default() {
        let shape = Shape {
            filter: vec![(
                vec!["status".into()],
                Template::parse("{args.status}").expect("valid"),
            )],
            limit: Some(Template::parse("{args.first}").expect("valid")),
            map: vec![("A".into(), parsed(r#""ACTIVE""#))],
            default: None,
        };
        let items = parsed(
            r#"[{"status":"A","n":1},{"status":"I","n":2},{"status":"A","n":3},{"status":"A","n":4}]"#,
        );
        let scope = Args(serde_json::json!({"status": "A", "first": 2}));
        let shaped = shape.apply(Some(&items), &scope).expect("value");
        assert_eq!(
            sonic_rs::to_string(&shaped).expect("text"),
            r#"[{"status":"A","n":1},{"status":"A","n":3}]"#
        );
        // No value for the filter's template: no filtering; none for the
        // limit: every item.
        let all = shape.apply(Some(&items), &Args(serde_json::json!({})));
        assert_eq!(all.and_then(|v| v.as_array().map(|a| a.len())), Some(4));
    }

    #[test]
    fn map_replaces_scalars_item_by_item_and_default_fills_null() {
        let shape = Shape {
            map: vec![
                ("A".into(), parsed(r#""ACTIVE""#)),
                ("1".into(), parsed("true")),
            ],
            default: Some(parsed(r#""NONE""#)),
            ..Shape::default()
        };
        let scope = Args(serde_json::json!({}));
        let shaped = shape.apply(Some(&parsed(r#"["A","B",1,[ "A" ]]"#)), &scope);
        assert_eq!(
            sonic_rs::to_string(&shaped.expect("value")).expect("text"),
            r#"["ACTIVE","B",true,["ACTIVE"]]"#
        );
        let null = shape.apply(Some(&parsed("null")), &scope);
        assert_eq!(null.as_ref().and_then(|v| v.as_str()), Some("NONE"));
        assert_eq!(
            shape.apply(None, &scope).as_ref().and_then(|v| v.as_str()),
            Some("NONE")
        );
    }
}
