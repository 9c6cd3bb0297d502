//! Upstream JSON → values of the field's schema type (docs/CONFIG.md "Upstream
//! responses"): `ID` from a string or an integer, `Int` from an integer in
//! range, `Float` from a number, enums from their name, custom scalars
//! passed through. A mismatch is `UPSTREAM_BAD_RESPONSE`.

use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(kind: ScalarKind) -> OutputKind {
        OutputKind::Scalar(kind)
    }

    /// The leaf `value` (JSON text) written as `kind`, or the message.
    fn written(value: &str, kind: &OutputKind) -> Result<String, String> {
        let upstream = json::parse(value.as_bytes()).expect("json");
        let mut out = Vec::new();
        write_leaf(&mut out, &upstream, kind).map(|()| String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn ids_accept_strings_and_integers() {
        let id = scalar(ScalarKind::Id);
        assert_eq!(written("7", &id).as_deref(), Ok(r#""7""#));
        assert_eq!(written(r#""u1""#, &id).as_deref(), Ok(r#""u1""#));
        assert!(written("1.5", &id).is_err());
    }

    #[test]
    fn ints_must_fit_in_32_bits() {
        let int = scalar(ScalarKind::Int);
        assert_eq!(written("2147483647", &int).as_deref(), Ok("2147483647"));
        assert!(written("2147483648", &int).is_err());
        assert!(written(r#""3""#, &int).is_err());
    }

    #[test]
    fn floats_strings_booleans_and_custom_scalars() {
        assert_eq!(
            written("1.5", &scalar(ScalarKind::Float)).as_deref(),
            Ok("1.5")
        );
        assert_eq!(
            written("3", &scalar(ScalarKind::Float)).as_deref(),
            Ok("3.0")
        );
        assert_eq!(
            written(r#""q\"uote\n""#, &scalar(ScalarKind::String)).as_deref(),
            Ok(r#""q\"uote\n""#)
        );
        assert!(written("1", &scalar(ScalarKind::String)).is_err());
        assert_eq!(
            written("true", &scalar(ScalarKind::Boolean)).as_deref(),
            Ok("true")
        );
        assert!(written(r#""true""#, &scalar(ScalarKind::Boolean)).is_err());
        // A custom scalar is the upstream's JSON, its key order kept.
        assert_eq!(
            written(r#"{"b":1,"a":[true,null]}"#, &scalar(ScalarKind::Custom)).as_deref(),
            Ok(r#"{"b":1,"a":[true,null]}"#)
        );
    }

    #[test]
    fn enums_come_from_their_names() {
        let kind = OutputKind::Enum(Arc::new(EnumValues::from_iter(["GOLD".to_owned()])));
        assert_eq!(written(r#""GOLD""#, &kind).as_deref(), Ok(r#""GOLD""#));
        assert!(written(r#""gold""#, &kind).is_err());
        assert!(written("1", &kind).is_err());
    }
}
