//! Defaults of input object fields. async-graphql fills a field argument's
//! own default, but not the defaults declared inside input object types;
//! a body like `"{args.input}"` must still carry them (GraphQL spec
//! "Input Coercion").

use std::collections::HashMap;

use serde_json::Value;

/// One input object field: its default, and its input object type when it
/// has one (for nested defaults).
#[derive(Debug, Clone)]
pub struct InputField {
    pub name: String,
    pub default: Option<Value>,
    pub object_type: Option<String>,
}

/// Input object type name → its fields. Built once from the SDL.
#[derive(Debug, Default)]
pub struct InputDefaults {
    pub types: HashMap<String, Vec<InputField>>,
}

impl InputDefaults {
    /// Fills missing fields of `value` (an object, or a list of them) of
    /// input type `type_name` with their defaults, at every depth.
    pub fn apply(&self, value: &mut Value, type_name: &str) {
        self.apply_depth(value, type_name, 0);
    }

    fn apply_depth(&self, value: &mut Value, type_name: &str, depth: usize) {
        // Input values come from a parsed document of bounded depth, but a
        // recursive input type must not make this loop forever.
        if depth > 64 {
            return;
        }
        let Some(fields) = self.types.get(type_name) else {
            return;
        };
        match value {
            Value::Array(items) => {
                for item in items {
                    self.apply_depth(item, type_name, depth + 1);
                }
            }
            Value::Object(map) => {
                for field in fields {
                    if !map.contains_key(&field.name) {
                        if let Some(default) = &field.default {
                            map.insert(field.name.clone(), default.clone());
                        }
                    }
                    if let (Some(nested), Some(inner)) =
                        (&field.object_type, map.get_mut(&field.name))
                    {
                        self.apply_depth(inner, nested, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_nested_defaults_without_overriding_given_values() {
        let mut defaults = InputDefaults::default();
        defaults.types.insert(
            "Order".into(),
            vec![
                InputField {
                    name: "quantity".into(),
                    default: Some(json!(1)),
                    object_type: None,
                },
                InputField {
                    name: "gift".into(),
                    default: None,
                    object_type: Some("Gift".into()),
                },
            ],
        );
        defaults.types.insert(
            "Gift".into(),
            vec![InputField {
                name: "wrap".into(),
                default: Some(json!(false)),
                object_type: None,
            }],
        );
        let mut value = json!({"gift": {"message": "hi"}, "quantity": 3});
        defaults.apply(&mut value, "Order");
        assert_eq!(
            value,
            json!({"gift": {"message": "hi", "wrap": false}, "quantity": 3})
        );
    }
}
