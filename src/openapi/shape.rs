//! What a schema object of the document describes, once `$ref`s are
//! followed, `allOf` members merged and `null` alternatives taken as
//! nullability: an object with properties, a list, a scalar, a string enum,
//! a union of alternatives, or nothing GraphQL can name ([`Kind::Any`]).
//!
//! Both the importer (SDL types) and the linter (does a mapping's path exist,
//! does its SDL type fit) read schemas through [`classify`], so they agree.

use std::cell::Cell;

use super::document::{child, component_name, Document, Node, Version};

/// A schema node of the document and where it is.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub node: &'a Node,
    pub pointer: &'a str,
}

/// A classified schema.
#[derive(Debug, Clone)]
pub struct Shape<'a> {
    pub kind: Kind<'a>,
    /// `nullable: true` (3.0), `null` among `type`s or `enum` values, or a
    /// `null` alternative of `oneOf`/`anyOf` (3.1).
    pub nullable: bool,
    /// The resolved schema's pointer: the same schema reached from several
    /// places has the same pointer (`#/components/schemas/Pet`).
    pub pointer: String,
    /// Set when the schema is a component (`#/components/schemas/NAME`).
    pub component: Option<String>,
    /// Its `description`, else the one written beside its `$ref`.
    pub description: Option<&'a str>,
    pub deprecated: bool,
    /// What could not be followed or merged on the way: pointer, message.
    pub problems: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Kind<'a> {
    /// `type: object` or `properties`: the properties in document order
    /// (`allOf` members' in member order), each with whether it is required.
    Object(Vec<Property<'a>>),
    /// `type: array`; `None`: no `items`.
    Array(Option<Item<'a>>),
    String,
    /// `format` as written (`int64`, `int32`).
    Integer(Option<&'a str>),
    Number,
    Boolean,
    /// A string `enum`: its values in order.
    Enum(Vec<String>),
    /// `oneOf`/`anyOf` with more than one non-null alternative.
    Union {
        members: Vec<Item<'a>>,
        discriminator: Option<Discriminator<'a>>,
    },
    /// No shape GraphQL can name: `{}`, several `type`s, …
    Any(&'static str),
}

/// A place holding a schema (a property's, an array's `items`, a member).
#[derive(Debug, Clone)]
pub struct Item<'a> {
    pub node: &'a Node,
    pub pointer: String,
}

#[derive(Debug, Clone)]
pub struct Property<'a> {
    pub name: &'a str,
    pub schema: Item<'a>,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct Discriminator<'a> {
    pub property: &'a str,
    /// `mapping`: value → `$ref` (or a component name), as written.
    pub mapping: Vec<(&'a str, &'a str)>,
    pub pointer: String,
}

/// `allOf` nested deeper than this is not merged further.
const MAX_DEPTH: usize = 32;

/// Schemas looked at for one classification at most: `allOf`s sharing
/// members through `$ref`s could otherwise make the work exponential.
const BUDGET: u32 = 10_000;

/// Classifies the schema `node` at `pointer`.
pub fn classify<'a>(doc: &'a Document, node: &'a Node, pointer: &str) -> Shape<'a> {
    let budget = Cell::new(BUDGET);
    classify_depth(doc, node, pointer, 0, &budget)
}

fn classify_depth<'a>(
    doc: &'a Document,
    node: &'a Node,
    pointer: &str,
    depth: usize,
    budget: &Cell<u32>,
) -> Shape<'a> {
    budget.set(budget.get().saturating_sub(1));
    let beside_ref = node.str_at("description");
    let (node, at) = match doc.resolve(node, pointer) {
        Ok(found) => found,
        Err(problem) => {
            return Shape {
                kind: Kind::Any("its `$ref` cannot be followed"),
                nullable: true,
                pointer: pointer.to_owned(),
                component: None,
                description: beside_ref,
                deprecated: false,
                problems: vec![(problem.pointer, problem.message)],
            }
        }
    };
    let mut shape = Shape {
        kind: Kind::Any("it has no type"),
        nullable: false,
        component: component_name(&at),
        pointer: at,
        description: node.str_at("description").or(beside_ref),
        deprecated: node.flag("deprecated"),
        problems: Vec::new(),
    };
    if !matches!(node, Node::Object(_)) {
        // `true`/`false` schemas (3.1) and anything else: no shape.
        shape.kind = Kind::Any("it is not a schema object");
        shape.nullable = true;
        return shape;
    }
    if doc.version == Version::V30 && node.flag("nullable") {
        shape.nullable = true;
    }

    // `allOf`: merged, unless it is one member standing for a `$ref` (the
    // usual way to add a description beside a reference).
    if let Some(members) = node.get("allOf").and_then(Node::as_array) {
        if depth >= MAX_DEPTH || budget.get() == 0 {
            shape.kind = Kind::Any("its `allOf` nests too deep");
            return shape;
        }
        let all_of = child(&shape.pointer, "allOf");
        let own_keys = node.as_object().map_or(0, |map| {
            map.keys()
                .filter(|k| {
                    !matches!(
                        k.as_str(),
                        "allOf"
                            | "description"
                            | "nullable"
                            | "deprecated"
                            | "title"
                            | "example"
                            | "examples"
                            | "readOnly"
                            | "writeOnly"
                            | "default"
                    )
                })
                .count()
        });
        if members.len() == 1 && own_keys == 0 {
            let inner_pointer = child(&all_of, "0");
            let mut inner = classify_depth(doc, &members[0], &inner_pointer, depth + 1, budget);
            inner.nullable |= shape.nullable;
            if shape.description.is_some() {
                inner.description = shape.description;
            }
            return inner;
        }
        return merge_all_of(doc, node, members, &all_of, shape, depth, budget);
    }

    for key in ["oneOf", "anyOf"] {
        let Some(members) = node.get(key).and_then(Node::as_array) else {
            continue;
        };
        let list = child(&shape.pointer, key);
        let mut alternatives = Vec::new();
        for (i, member) in members.iter().enumerate() {
            let member_pointer = child(&list, &i.to_string());
            if is_null_schema(doc, member, &member_pointer) {
                shape.nullable = true;
            } else {
                alternatives.push(Item {
                    node: member,
                    pointer: member_pointer,
                });
            }
        }
        if alternatives.len() == 1 && !has_type_keywords(node) && depth < MAX_DEPTH {
            let only = alternatives.remove(0);
            let mut inner = classify_depth(doc, only.node, &only.pointer, depth + 1, budget);
            inner.nullable |= shape.nullable;
            if shape.description.is_some() {
                inner.description = shape.description;
            }
            return inner;
        }
        if alternatives.is_empty() {
            shape.kind = Kind::Any("its alternatives are all `null`");
            shape.nullable = true;
            return shape;
        }
        let discriminator = node.get("discriminator").and_then(|d| {
            Some(Discriminator {
                property: d.str_at("propertyName")?,
                mapping: d
                    .get("mapping")
                    .and_then(Node::as_object)
                    .map(|map| {
                        map.iter()
                            .filter_map(|(value, target)| Some((value.as_str(), target.as_str()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
                pointer: child(&shape.pointer, "discriminator"),
            })
        });
        shape.kind = Kind::Union {
            members: alternatives,
            discriminator,
        };
        return shape;
    }

    shape.kind = kind_of(node, &shape.pointer, &mut shape.nullable);
    shape
}

/// Keywords that give a schema a type of its own beside `oneOf`/`anyOf`.
fn has_type_keywords(node: &Node) -> bool {
    ["type", "properties", "items", "enum"]
        .iter()
        .any(|key| node.get(key).is_some())
}

/// `{type: 'null'}`, `{enum: [null]}`, `{const: null}` (3.1), `{nullable:
/// true}` with nothing else.
fn is_null_schema(doc: &Document, node: &Node, pointer: &str) -> bool {
    let Ok((node, _)) = doc.resolve(node, pointer) else {
        return false;
    };
    match node.get("type") {
        Some(Node::String(t)) if t == "null" => return true,
        Some(Node::Array(types))
            if !types.is_empty() && types.iter().all(|t| t.as_str() == Some("null")) =>
        {
            return true
        }
        _ => {}
    }
    matches!(node.get("const"), Some(Node::Null))
        || node
            .get("enum")
            .and_then(Node::as_array)
            .is_some_and(|values| values.len() == 1 && values[0] == Node::Null)
}

/// The kind of a schema object without composition keywords.
fn kind_of<'a>(node: &'a Node, pointer: &str, nullable: &mut bool) -> Kind<'a> {
    let mut types: Vec<&str> = match node.get("type") {
        Some(Node::String(t)) => vec![t.as_str()],
        Some(Node::Array(list)) => list.iter().filter_map(Node::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"null") {
        *nullable = true;
        types.retain(|t| *t != "null");
    }
    let enum_values = node.get("enum").and_then(Node::as_array);
    if let Some(values) = enum_values {
        if values.contains(&Node::Null) {
            *nullable = true;
        }
    }
    let ty = match types.as_slice() {
        [one] => *one,
        [] => {
            if node.get("properties").is_some() || node.get("additionalProperties").is_some() {
                "object"
            } else if node.get("items").is_some() {
                "array"
            } else if let Some(values) = enum_values {
                match values.iter().find(|v| **v != Node::Null) {
                    Some(Node::String(_)) => "string",
                    Some(Node::Bool(_)) => "boolean",
                    Some(Node::Number(n)) if n.is_i64() || n.is_u64() => "integer",
                    Some(Node::Number(_)) => "number",
                    _ => return Kind::Any("it has no type"),
                }
            } else if let Some(value) = node.get("const") {
                match value {
                    Node::String(_) => "string",
                    Node::Bool(_) => "boolean",
                    Node::Number(n) if n.is_i64() || n.is_u64() => "integer",
                    Node::Number(_) => "number",
                    _ => return Kind::Any("it has no type"),
                }
            } else {
                return Kind::Any("it has no type");
            }
        }
        _ => return Kind::Any("it allows several types"),
    };
    match ty {
        "object" => Kind::Object(properties(node, pointer)),
        "array" => Kind::Array(node.get("items").map(|items| Item {
            node: items,
            pointer: child(pointer, "items"),
        })),
        "string" => match enum_values {
            Some(values) => {
                let strings: Vec<String> = values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if strings.is_empty() {
                    Kind::String
                } else {
                    Kind::Enum(strings)
                }
            }
            None => Kind::String,
        },
        "integer" => Kind::Integer(node.str_at("format")),
        "number" => Kind::Number,
        "boolean" => Kind::Boolean,
        _ => Kind::Any("its `type` is unknown"),
    }
}

fn properties<'a>(node: &'a Node, pointer: &str) -> Vec<Property<'a>> {
    let required: Vec<&str> = node
        .get("required")
        .and_then(Node::as_array)
        .map(|names| names.iter().filter_map(Node::as_str).collect())
        .unwrap_or_default();
    let Some(props) = node.get("properties").and_then(Node::as_object) else {
        return Vec::new();
    };
    let props_pointer = child(pointer, "properties");
    props
        .iter()
        .map(|(name, schema)| Property {
            name,
            schema: Item {
                node: schema,
                pointer: child(&props_pointer, name),
            },
            required: required.contains(&name.as_str()),
        })
        .collect()
}

/// `allOf`: every member's properties (a later member's property of the
/// same name replaces an earlier one in place), `required` united. Members
/// that are not objects but carry only constraints are passed over; any
/// other member makes the whole schema [`Kind::Any`].
fn merge_all_of<'a>(
    doc: &'a Document,
    node: &'a Node,
    members: &'a [Node],
    all_of: &str,
    mut shape: Shape<'a>,
    depth: usize,
    budget: &Cell<u32>,
) -> Shape<'a> {
    let mut merged: Vec<Property<'a>> = Vec::new();
    let mut required: Vec<&'a str> = Vec::new();
    let mut scalar: Option<Shape<'a>> = None;
    let add = |props: Vec<Property<'a>>, merged: &mut Vec<Property<'a>>| {
        for prop in props {
            match merged.iter_mut().find(|p| p.name == prop.name) {
                Some(existing) => {
                    existing.required |= prop.required;
                    existing.schema = prop.schema;
                }
                None => merged.push(prop),
            }
        }
    };
    for (i, member) in members.iter().enumerate() {
        let member_pointer = child(all_of, &i.to_string());
        let inner = classify_depth(doc, member, &member_pointer, depth + 1, budget);
        shape.problems.extend(inner.problems.iter().cloned());
        if shape.description.is_none() {
            shape.description = inner.description;
        }
        // A member's `required` list applies to properties from any member.
        if let Ok((resolved, _)) = doc.resolve(member, &member_pointer) {
            if let Some(names) = resolved.get("required").and_then(Node::as_array) {
                required.extend(names.iter().filter_map(Node::as_str));
            }
        }
        match inner.kind {
            Kind::Object(props) => add(props, &mut merged),
            Kind::Any(_) if is_constraint_only(doc, member, &member_pointer) => {}
            _ if scalar.is_none() && merged.is_empty() => scalar = Some(inner),
            _ => {
                shape.kind = Kind::Any("its `allOf` members do not merge into one object");
                return shape;
            }
        }
    }
    // The schema's own properties beside `allOf`.
    let own = properties(node, &shape.pointer);
    if let Some(names) = node.get("required").and_then(Node::as_array) {
        required.extend(names.iter().filter_map(Node::as_str));
    }
    add(own, &mut merged);
    if let Some(scalar) = scalar {
        if merged.is_empty() {
            let mut result = scalar;
            result.nullable |= shape.nullable;
            result.pointer = shape.pointer;
            result.component = shape.component;
            result.description = shape.description;
            result.problems.extend(shape.problems);
            return result;
        }
        shape.kind = Kind::Any("its `allOf` members do not merge into one object");
        return shape;
    }
    for prop in &mut merged {
        prop.required |= required.contains(&prop.name);
    }
    shape.kind = Kind::Object(merged);
    shape
}

/// A member with no `type`, `properties`, composition or `$ref` of its own
/// (`{required: [id]}`, `{description: …}`): nothing to merge.
fn is_constraint_only(doc: &Document, node: &Node, pointer: &str) -> bool {
    let Ok((node, _)) = doc.resolve(node, pointer) else {
        return false;
    };
    node.as_object().is_some_and(|map| {
        !map.keys().any(|k| {
            matches!(
                k.as_str(),
                "type"
                    | "properties"
                    | "items"
                    | "enum"
                    | "const"
                    | "allOf"
                    | "oneOf"
                    | "anyOf"
                    | "additionalProperties"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(text, "api.yaml", false).expect("valid document")
    }

    fn shape_of<'a>(doc: &'a Document, pointer: &'a str) -> Shape<'a> {
        classify(doc, doc.at(pointer).expect("pointer exists"), pointer)
    }

    #[test]
    fn all_of_merges_properties_and_required_across_members() {
        let d = doc("openapi: 3.0.3\ncomponents:\n  schemas:\n    Pet:\n      type: object\n      required: [id]\n      properties:\n        id: {type: integer}\n        name: {type: string}\n    Cat:\n      allOf:\n        - $ref: '#/components/schemas/Pet'\n        - type: object\n          required: [name]\n          properties:\n            hunts: {type: boolean}\n");
        let cat = shape_of(&d, "#/components/schemas/Cat");
        let Kind::Object(props) = cat.kind else {
            panic!("object: {cat:?}")
        };
        let summary: Vec<(&str, bool)> = props.iter().map(|p| (p.name, p.required)).collect();
        assert_eq!(summary, [("id", true), ("name", true), ("hunts", false)]);
        assert_eq!(cat.component.as_deref(), Some("Cat"));
    }

    #[test]
    fn a_single_all_of_reference_stands_for_its_target() {
        let d = doc("openapi: 3.0.3\ncomponents:\n  schemas:\n    Pet: {type: object, properties: {id: {type: string}}}\n    Owner:\n      type: object\n      properties:\n        pet:\n          description: the pet\n          allOf: [{$ref: '#/components/schemas/Pet'}]\n");
        let pet = shape_of(&d, "#/components/schemas/Owner/properties/pet");
        assert_eq!(pet.component.as_deref(), Some("Pet"));
        assert_eq!(pet.description, Some("the pet"));
    }

    #[test]
    fn null_alternatives_and_types_are_nullability() {
        let d = doc("openapi: 3.1.0\ncomponents:\n  schemas:\n    A: {type: [string, 'null']}\n    B:\n      anyOf: [{$ref: '#/components/schemas/A'}, {type: 'null'}]\n    C: {oneOf: [{type: string}, {type: integer}]}\n    D: {type: [string, integer]}\n    E: {type: string, enum: [a, b, null]}\n");
        let a = shape_of(&d, "#/components/schemas/A");
        assert!(a.nullable && matches!(a.kind, Kind::String));
        let b = shape_of(&d, "#/components/schemas/B");
        assert!(b.nullable);
        assert_eq!(b.component.as_deref(), Some("A"));
        assert!(matches!(
            shape_of(&d, "#/components/schemas/C").kind,
            Kind::Union {
                discriminator: None,
                ..
            }
        ));
        assert!(matches!(
            shape_of(&d, "#/components/schemas/D").kind,
            Kind::Any(_)
        ));
        let e = shape_of(&d, "#/components/schemas/E");
        assert!(e.nullable);
        assert!(matches!(&e.kind, Kind::Enum(values) if values == &["a", "b"]));
    }

    #[test]
    fn nullable_is_read_in_3_0_only() {
        let d =
            doc("openapi: 3.0.3\ncomponents:\n  schemas:\n    A: {type: string, nullable: true}\n");
        assert!(shape_of(&d, "#/components/schemas/A").nullable);
        let d =
            doc("openapi: 3.1.0\ncomponents:\n  schemas:\n    A: {type: string, nullable: true}\n");
        assert!(!shape_of(&d, "#/components/schemas/A").nullable);
    }

    #[test]
    fn an_unfollowable_reference_is_any_with_its_problem() {
        let d = doc("openapi: 3.1.0\ncomponents:\n  schemas:\n    A: {$ref: 'other.yaml#/B'}\n");
        let a = shape_of(&d, "#/components/schemas/A");
        assert!(matches!(a.kind, Kind::Any(_)));
        assert_eq!(a.problems[0].0, "#/components/schemas/A/$ref");
    }
}
