//! Input coercion against the SDL (GraphQL spec "CoerceVariableValues"
//! and "Input Coercion"): a request's variables are checked and coerced
//! once, before anything runs, and every argument value — written in the
//! document or passed as a variable — goes through the same rules, so a
//! query answers the same either way.
//!
//! Coercing is: an enum from its name; `Int` from an integer in range;
//! `Float` from any number; `ID` from a string or an integer; a single
//! value where a list is expected becomes a list of one; an input object's
//! fields checked by name and type, and the fields left out that declare
//! a default get it (so `"{args.filter}"` in a body carries them); custom
//! scalars pass through as they are.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{BaseType, OperationDefinition, Type, TypeKind};
use async_graphql::{Name, Value as GqlValue, Variables};

use crate::schema::SchemaModel;

/// Input object fields and enum values deeper than this are not walked
/// (documents nest at most 64 levels; this bounds hostile variables).
const MAX_DEPTH: usize = 64;

/// The input types of a schema, as coercion needs them.
pub struct InputTypes {
    types: HashMap<String, InputKind>,
}

enum InputKind {
    Enum(HashSet<String>),
    Object(Vec<InputField>),
    /// A scalar the schema declares: passed through as it is.
    Custom,
}

struct InputField {
    name: String,
    ty: Type,
    default: Option<GqlValue>,
}

impl InputTypes {
    pub fn new(model: &SchemaModel) -> Self {
        let mut types = HashMap::new();
        for (name, definition) in &model.types {
            let kind = match &definition.kind {
                TypeKind::Enum(e) => InputKind::Enum(
                    e.values
                        .iter()
                        .map(|v| v.node.value.node.to_string())
                        .collect(),
                ),
                TypeKind::InputObject(input) => InputKind::Object(
                    input
                        .fields
                        .iter()
                        .map(|f| InputField {
                            name: f.node.name.node.to_string(),
                            ty: f.node.ty.node.clone(),
                            default: f.node.default_value.as_ref().map(|d| d.node.clone()),
                        })
                        .collect(),
                ),
                TypeKind::Scalar => InputKind::Custom,
                _ => continue,
            };
            types.insert(name.clone(), kind);
        }
        InputTypes { types }
    }

    /// The operation's variables, coerced: given values checked against
    /// their declared types, defaults for the ones left out. The message
    /// names the variable and where in its value the problem is.
    pub fn coerce_variables(
        &self,
        operation: &OperationDefinition,
        given: Option<serde_json::Value>,
    ) -> Result<Variables, String> {
        let mut given = given.map(Variables::from_json).unwrap_or_default();
        let mut coerced = Variables::default();
        for definition in &operation.variable_definitions {
            let definition = &definition.node;
            let name = &definition.name.node;
            let ty = &definition.var_type.node;
            let value = match given.remove(name) {
                Some(value) => value,
                None => match &definition.default_value {
                    Some(default) => default.node.clone(),
                    None if ty.nullable => continue,
                    None => return Err(needs_value(name, ty)),
                },
            };
            if value == GqlValue::Null && !ty.nullable {
                return Err(needs_value(name, ty));
            }
            let mut path = String::new();
            let value = self.coerce(value, ty, &mut path, 0).map_err(|reason| {
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!(" at `{path}`")
                };
                format!("variable `${name}` of type `{ty}` has an invalid value{at}: {reason}")
            })?;
            coerced.insert(name.clone(), value);
        }
        Ok(coerced)
    }

    /// An argument value with its variables already in place, coerced to
    /// the argument's type. Validation has checked what the document
    /// wrote and `coerce_variables` what the variables hold, so this only
    /// normalises (enum names, lists of one); a value it cannot coerce is
    /// kept as it is.
    pub fn coerce_argument(&self, value: GqlValue, ty: &Type) -> GqlValue {
        let mut path = String::new();
        match self.coerce(value.clone(), ty, &mut path, 0) {
            Ok(coerced) => coerced,
            Err(_) => value,
        }
    }

    fn coerce(
        &self,
        value: GqlValue,
        ty: &Type,
        path: &mut String,
        depth: usize,
    ) -> Result<GqlValue, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deep".to_owned());
        }
        if value == GqlValue::Null {
            return if ty.nullable {
                Ok(GqlValue::Null)
            } else {
                Err(format!("expected a non-null `{ty}`, found null"))
            };
        }
        match &ty.base {
            BaseType::List(item) => match value {
                GqlValue::List(items) => {
                    let mut coerced = Vec::with_capacity(items.len());
                    for (index, value) in items.into_iter().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("[{index}]"));
                        coerced.push(self.coerce(value, item, path, depth + 1)?);
                        path.truncate(len);
                    }
                    Ok(GqlValue::List(coerced))
                }
                // GraphQL spec: a single value where a list is expected is
                // a list of one.
                single => Ok(GqlValue::List(vec![self.coerce(
                    single,
                    item,
                    path,
                    depth + 1,
                )?])),
            },
            BaseType::Named(name) => self.named(value, name.as_str(), path, depth),
        }
    }

    fn named(
        &self,
        value: GqlValue,
        type_name: &str,
        path: &mut String,
        depth: usize,
    ) -> Result<GqlValue, String> {
        let found = || describe(&value);
        match (type_name, &value) {
            ("String", GqlValue::String(_)) | ("Boolean", GqlValue::Boolean(_)) => Ok(value),
            ("ID", GqlValue::String(_)) => Ok(value),
            ("ID", GqlValue::Number(n)) if n.is_i64() || n.is_u64() => Ok(value),
            ("Float", GqlValue::Number(_)) => Ok(value),
            ("Int", GqlValue::Number(n)) => match integral(n) {
                Some(i) if i32::try_from(i).is_ok() => Ok(GqlValue::Number(i.into())),
                Some(_) => Err(format!("{} does not fit in an Int (32 bits)", found())),
                None => Err(format!("expected an Int, found {}", found())),
            },
            ("String" | "Boolean" | "ID" | "Float" | "Int", _) => Err(format!(
                "expected {}, found {}",
                article(type_name),
                found()
            )),
            _ => match self.types.get(type_name) {
                Some(InputKind::Enum(values)) => {
                    let text = match &value {
                        GqlValue::String(text) => Some(text.as_str()),
                        GqlValue::Enum(name) => Some(name.as_str()),
                        _ => None,
                    };
                    match text {
                        Some(text) if values.contains(text) => Ok(GqlValue::Enum(Name::new(text))),
                        _ => Err(format!("{} is not a value of enum `{type_name}`", found())),
                    }
                }
                Some(InputKind::Object(fields)) => {
                    let GqlValue::Object(mut given) = value else {
                        return Err(format!(
                            "expected an object of input type `{type_name}`, found {}",
                            found()
                        ));
                    };
                    if let Some(unknown) = given
                        .keys()
                        .find(|key| !fields.iter().any(|f| f.name == key.as_str()))
                    {
                        return Err(format!("input type `{type_name}` has no field `{unknown}`"));
                    }
                    let mut coerced = async_graphql::indexmap::IndexMap::new();
                    // The order the client wrote, as a literal keeps it.
                    let order: Vec<Name> = given.keys().cloned().collect();
                    for field in fields {
                        if !given.contains_key(field.name.as_str())
                            && !field.ty.nullable
                            && field.default.is_none()
                        {
                            return Err(format!(
                                "field `{}` of input type `{type_name}` is required",
                                field.name
                            ));
                        }
                    }
                    for key in order {
                        let value = given.shift_remove(&key).unwrap_or(GqlValue::Null);
                        let Some(field) = fields.iter().find(|f| f.name == key.as_str()) else {
                            continue;
                        };
                        let len = path.len();
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&key);
                        let value = self.coerce(value, &field.ty, path, depth + 1)?;
                        path.truncate(len);
                        coerced.insert(key, value);
                    }
                    // After the fields written, in declaration order.
                    for field in fields {
                        if let (Some(default), false) =
                            (&field.default, coerced.contains_key(field.name.as_str()))
                        {
                            let value = self.coerce(default.clone(), &field.ty, path, depth + 1)?;
                            coerced.insert(Name::new(&field.name), value);
                        }
                    }
                    Ok(GqlValue::Object(coerced))
                }
                // Custom scalars, and anything validation let through.
                Some(InputKind::Custom) | None => Ok(value),
            },
        }
    }
}

fn needs_value(name: &str, ty: &Type) -> String {
    format!("variable `${name}` of type `{ty}` needs a non-null value")
}

/// A number as an integer, when it is one (`1.0` included, as JSON
/// writers may send it).
fn integral(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn article(type_name: &str) -> String {
    match type_name {
        "Int" | "ID" => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// A short description of a value for a message: its kind, and the value
/// itself when short.
fn describe(value: &GqlValue) -> String {
    let text = value.to_string();
    if text.len() <= 40 {
        text
    } else {
        match value {
            GqlValue::String(_) => "a long string".to_owned(),
            GqlValue::List(_) => "a list".to_owned(),
            GqlValue::Object(_) => "an object".to_owned(),
            _ => "a value".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> SchemaModel {
        let sdl = r#"
            type Query { orders(sort: Sort, filter: Filter, ids: [ID!]): [String] }
            enum Sort { NEWEST OLDEST }
            input Filter { status: Sort! limit: Int = 10 tags: [String!] inner: Inner }
            input Inner { deep: [[Int]] }
            scalar JSON
        "#;
        let mut diagnostics = crate::config::Diagnostics::default();
        let model = crate::schema::sdl::merge(
            &[(std::sync::Arc::from("schema.graphql"), sdl.to_owned())],
            &mut diagnostics,
        );
        assert!(diagnostics.is_empty(), "{diagnostics}");
        model
    }

    fn operation(text: &str) -> OperationDefinition {
        let document = async_graphql::parser::parse_query(text).expect("parses");
        match document.operations {
            async_graphql::parser::types::DocumentOperations::Single(op) => op.node,
            _ => panic!("one operation"),
        }
    }

    #[test]
    fn enums_lists_and_input_objects_are_coerced() {
        let inputs = InputTypes::new(&model());
        let op = operation(
            "query($s: Sort, $f: Filter, $ids: [ID!], $d: Sort = NEWEST) { orders(sort: $s) }",
        );
        let vars = inputs
            .coerce_variables(
                &op,
                Some(json!({
                    "s": "OLDEST",
                    "f": {"status": "NEWEST", "inner": {"deep": [1, [2, 3]]}},
                    "ids": "7",
                })),
            )
            .expect("valid");
        assert_eq!(vars.get("s"), Some(&GqlValue::Enum(Name::new("OLDEST"))));
        assert_eq!(vars.get("d"), Some(&GqlValue::Enum(Name::new("NEWEST"))));
        assert_eq!(
            vars.get("ids"),
            Some(&GqlValue::List(vec![GqlValue::String("7".into())]))
        );
        let f = vars.get("f").expect("f").clone().into_json().expect("json");
        // `limit` was left out: its declared default is filled in.
        assert_eq!(
            f,
            json!({"status": "NEWEST", "inner": {"deep": [[1], [2, 3]]}, "limit": 10})
        );
    }

    #[test]
    fn invalid_variables_say_which_and_where() {
        let inputs = InputTypes::new(&model());
        let op = operation("query($s: Sort, $f: Filter!, $n: [ID!]) { orders(sort: $s) }");
        let cases = [
            (json!({"s": "SIDEWAYS", "f": {"status": "NEWEST"}}), "`$s`"),
            (
                json!({"f": {"limit": 3}}),
                "field `status` of input type `Filter` is required",
            ),
            (
                json!({"f": {"status": "NEWEST", "nope": 1}}),
                "has no field `nope`",
            ),
            (
                json!({"f": {"status": "NEWEST", "limit": 1.5}}),
                "at `limit`",
            ),
            (
                json!({"f": {"status": "NEWEST", "limit": 3_000_000_000u64}}),
                "32 bits",
            ),
            (json!({"f": {"status": "NEWEST"}, "n": [null]}), "at `[0]`"),
            (json!({}), "`$f` of type `Filter!` needs a non-null value"),
            (json!({"f": null}), "needs a non-null value"),
        ];
        for (given, expected) in cases {
            let err = inputs
                .coerce_variables(&op, Some(given.clone()))
                .expect_err("invalid");
            assert!(err.contains(expected), "{given}: {err}");
        }
    }

    #[test]
    fn a_literal_and_a_variable_coerce_alike() {
        let inputs = InputTypes::new(&model());
        let ty = Type::new("[ID!]").expect("type");
        let literal = inputs.coerce_argument(GqlValue::String("7".into()), &ty);
        let op = operation("query($ids: [ID!]) { orders(ids: $ids) }");
        let vars = inputs
            .coerce_variables(&op, Some(json!({"ids": "7"})))
            .expect("valid");
        assert_eq!(Some(&literal), vars.get("ids"));
    }
}
