//! Upstream JSON → values of the field's schema type (docs/CONFIG.md "Upstream
//! responses"): `ID` from a string or an integer, `Int` from an integer in
//! range, `Float` from a number, enums from their name, custom scalars
//! passed through. A mismatch is `UPSTREAM_BAD_RESPONSE`.

use std::sync::Arc;

use async_graphql::{Name, Value as GqlValue};
use serde_json::Value;
use sonic_rs::JsonValueTrait;

use crate::config::TypeResolution;
use crate::upstream::json::{self, Json};

/// A field's output type, compiled once from the SDL.
#[derive(Debug, Clone)]
pub struct OutputType {
    pub non_null: bool,
    pub kind: OutputKind,
}

#[derive(Debug, Clone)]
pub enum OutputKind {
    List(Box<OutputType>),
    Scalar(ScalarKind),
    Enum(Arc<EnumValues>),
    Object(Arc<str>),
    /// An interface or union: the concrete type is read from each object.
    Abstract(Arc<AbstractType>),
}

/// An enum's value names. Checked for every enum leaf written: a fast
/// hash (the set is fixed by the SDL, so no input can grow it).
pub type EnumValues = rustc_hash::FxHashSet<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Id,
    Int,
    Float,
    String,
    Boolean,
    /// A custom scalar: any JSON, passed through.
    Custom,
}

#[derive(Debug)]
pub struct AbstractType {
    pub name: String,
    /// `[types.X]` when configured.
    pub resolution: Option<TypeResolution>,
    /// The object types a value may be.
    pub possible: Vec<String>,
}

/// An object's key as [`AbstractType`] reads it.
pub enum Tag<'v> {
    Text(&'v str),
    /// Any other JSON, as JSON text.
    Other(String),
}

impl AbstractType {
    /// The concrete type of `value`: from `[types.X]`'s discriminator, or
    /// else from a `__typename` key the upstream sent.
    pub fn concrete_type(&self, value: &Value) -> Result<&str, String> {
        self.concrete_type_by(|key| {
            value.get(key).map(|tag| match tag {
                Value::String(text) => Tag::Text(text),
                other => Tag::Other(other.to_string()),
            })
        })
    }

    /// [`AbstractType::concrete_type`] of upstream JSON.
    pub fn concrete_type_of(&self, value: &Json) -> Result<&str, String> {
        self.concrete_type_by(|key| {
            json::get(value, key).map(|tag| match tag.as_str() {
                Some(text) => Tag::Text(text),
                None => Tag::Other(tag.to_string()),
            })
        })
    }

    /// The concrete type of an object whose key `k` is `tag(k)`.
    fn concrete_type_by<'v>(&self, tag: impl Fn(&str) -> Option<Tag<'v>>) -> Result<&str, String> {
        let found = match &self.resolution {
            Some(resolution) => {
                let tag_text = match tag(&resolution.discriminator) {
                    Some(Tag::Text(text)) => text.to_owned(),
                    Some(Tag::Other(text)) => text,
                    None => {
                        return Err(format!(
                            "`{}` value has no `{}` key to pick its type",
                            self.name, resolution.discriminator
                        ))
                    }
                };
                resolution
                    .map
                    .get(&tag_text)
                    .map(String::as_str)
                    .ok_or_else(|| {
                        format!(
                            "`{}` value has unmapped {} `{tag_text}`",
                            self.name, resolution.discriminator
                        )
                    })?
            }
            None => match tag("__typename") {
                Some(Tag::Text(name)) => name,
                _ => {
                    return Err(format!(
                        "cannot tell which type a `{}` value is (configure [types.{}])",
                        self.name, self.name
                    ))
                }
            },
        };
        self.possible
            .iter()
            .find(|t| *t == found)
            .map(String::as_str)
            .ok_or_else(|| format!("`{found}` is not a possible type of `{}`", self.name))
    }
}

/// Coerces JSON to a leaf value (scalar or enum). `Err` holds a message for
/// `UPSTREAM_BAD_RESPONSE`.
pub fn leaf(value: &Value, kind: &OutputKind) -> Result<GqlValue, String> {
    match kind {
        OutputKind::Scalar(scalar) => scalar_value(value, *scalar),
        OutputKind::Enum(values) => match value {
            Value::String(name) if values.contains(name) => Ok(GqlValue::Enum(Name::new(name))),
            other => Err(format!("expected an enum value, got {}", describe(other))),
        },
        _ => Err("expected a leaf type".to_owned()),
    }
}

fn scalar_value(value: &Value, kind: ScalarKind) -> Result<GqlValue, String> {
    let mismatch = |expected: &str| Err(format!("expected {expected}, got {}", describe(value)));
    match (kind, value) {
        (ScalarKind::Custom, value) => GqlValue::from_json(value.clone())
            .map_err(|_| "a value that is not representable".to_owned()),
        (ScalarKind::String, Value::String(s)) => Ok(GqlValue::String(s.clone())),
        (ScalarKind::String, _) => mismatch("a string"),
        (ScalarKind::Boolean, Value::Bool(b)) => Ok(GqlValue::Boolean(*b)),
        (ScalarKind::Boolean, _) => mismatch("a boolean"),
        (ScalarKind::Id, Value::String(s)) => Ok(GqlValue::String(s.clone())),
        (ScalarKind::Id, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(GqlValue::String(n.to_string()))
        }
        (ScalarKind::Id, _) => mismatch("an ID (string or integer)"),
        (ScalarKind::Int, Value::Number(n)) => match n.as_i64().and_then(|i| i32::try_from(i).ok())
        {
            Some(i) => Ok(GqlValue::Number(i.into())),
            None => mismatch("a 32-bit integer"),
        },
        (ScalarKind::Int, _) => mismatch("an integer"),
        (ScalarKind::Float, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => Ok(GqlValue::Number(
                serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into()),
            )),
            _ => mismatch("a number"),
        },
        (ScalarKind::Float, _) => mismatch("a number"),
    }
}

/// Writes upstream JSON as a leaf value (scalar or enum) straight into a
/// response: the same rules as [`leaf`], without building a value. `Err`
/// holds a message for `UPSTREAM_BAD_RESPONSE`; nothing is written then.
pub fn write_leaf(out: &mut Vec<u8>, value: &Json, kind: &OutputKind) -> Result<(), String> {
    let mismatch = |expected: &str| {
        Err(format!(
            "expected {expected}, got {}",
            json::describe(value)
        ))
    };
    let scalar = match kind {
        OutputKind::Scalar(scalar) => *scalar,
        OutputKind::Enum(values) => {
            return match value.as_str() {
                Some(name) if values.contains(name) => write_json(out, name),
                _ => Err(format!(
                    "expected an enum value, got {}",
                    json::describe(value)
                )),
            }
        }
        _ => return Err("expected a leaf type".to_owned()),
    };
    match scalar {
        ScalarKind::Custom => write_json(out, value),
        ScalarKind::String | ScalarKind::Id if value.is_str() => {
            write_json(out, value.as_str().unwrap_or_default())
        }
        ScalarKind::String => mismatch("a string"),
        ScalarKind::Boolean => match value.as_bool() {
            Some(b) => {
                out.extend_from_slice(if b { b"true" } else { b"false" });
                Ok(())
            }
            None => mismatch("a boolean"),
        },
        ScalarKind::Id => {
            let mut buffer = itoa::Buffer::new();
            let digits = match (value.as_i64(), value.as_u64()) {
                (Some(i), _) => buffer.format(i),
                (None, Some(u)) => buffer.format(u),
                (None, None) => return mismatch("an ID (string or integer)"),
            };
            out.push(b'"');
            out.extend_from_slice(digits.as_bytes());
            out.push(b'"');
            Ok(())
        }
        ScalarKind::Int => {
            if !value.is_number() {
                return mismatch("an integer");
            }
            match value.as_i64().and_then(|i| i32::try_from(i).ok()) {
                Some(i) => {
                    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                    Ok(())
                }
                None => mismatch("a 32-bit integer"),
            }
        }
        ScalarKind::Float => match value.as_f64() {
            Some(f) if f.is_finite() => write_json(
                out,
                &serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into()),
            ),
            _ => mismatch("a number"),
        },
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), String> {
    serde_json::to_writer(out, value).map_err(|err| err.to_string())
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scalar(kind: ScalarKind) -> OutputKind {
        OutputKind::Scalar(kind)
    }

    #[test]
    fn ids_accept_strings_and_integers() {
        assert_eq!(
            leaf(&json!(7), &scalar(ScalarKind::Id)),
            Ok(GqlValue::String("7".into()))
        );
        assert_eq!(
            leaf(&json!("u1"), &scalar(ScalarKind::Id)),
            Ok(GqlValue::String("u1".into()))
        );
        assert!(leaf(&json!(1.5), &scalar(ScalarKind::Id)).is_err());
    }

    #[test]
    fn ints_must_fit_in_32_bits() {
        assert!(leaf(&json!(2_147_483_647), &scalar(ScalarKind::Int)).is_ok());
        assert!(leaf(&json!(2_147_483_648_i64), &scalar(ScalarKind::Int)).is_err());
        assert!(leaf(&json!("3"), &scalar(ScalarKind::Int)).is_err());
    }

    /// The writer and the value builder follow the same rules.
    #[test]
    fn written_leaves_match_built_ones() {
        let kinds = [
            scalar(ScalarKind::Id),
            scalar(ScalarKind::Int),
            scalar(ScalarKind::Float),
            scalar(ScalarKind::String),
            scalar(ScalarKind::Boolean),
            scalar(ScalarKind::Custom),
            OutputKind::Enum(Arc::new(EnumValues::from_iter(["GOLD".to_owned()]))),
        ];
        let values = [
            json!(7),
            json!(-3),
            json!(2_147_483_648_i64),
            json!(1.5),
            json!(1e300),
            json!("u1"),
            json!("q\"uote\n"),
            json!("GOLD"),
            json!(true),
            json!(null),
            json!([1, "a"]),
            json!({"b": 1, "a": [true]}),
        ];
        for kind in &kinds {
            for value in &values {
                let mut written = Vec::new();
                let upstream = json::parse(value.to_string().as_bytes()).expect("json");
                let result = write_leaf(&mut written, &upstream, kind);
                match leaf(value, kind) {
                    Ok(built) => {
                        assert_eq!(result, Ok(()), "{value} as {kind:?}");
                        assert_eq!(
                            String::from_utf8(written).unwrap(),
                            serde_json::to_string(&built).unwrap(),
                            "{value} as {kind:?}"
                        );
                    }
                    Err(message) => assert_eq!(result, Err(message), "{value} as {kind:?}"),
                }
            }
        }
    }

    #[test]
    fn enums_come_from_their_names() {
        let kind = OutputKind::Enum(Arc::new(EnumValues::from_iter(["GOLD".to_owned()])));
        assert_eq!(
            leaf(&json!("GOLD"), &kind),
            Ok(GqlValue::Enum(Name::new("GOLD")))
        );
        assert!(leaf(&json!("gold"), &kind).is_err());
    }
}
