//! `conflux import openapi`: an OpenAPI document → the GraphQL types, root
//! fields and `[resolvers]` entries of a project (docs/OPENAPI.md says what
//! becomes what). [`generate`] builds the model; `openapi::write` prints it.
//!
//! Every piece of the document that cannot be mapped becomes a [`Note`] with
//! its JSON pointer: nothing is left out without saying so.

use std::collections::{HashMap, HashSet};

use super::document::{child, Document, Node};
use super::names::{self, Taken};
use super::shape::{classify, Item, Kind, Shape};

/// Something of the document that is not mapped, or mapped only in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// A GraphQL type reference: a named type or a list, each maybe non-null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GqlType {
    pub base: Base,
    pub non_null: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Named(String),
    List(Box<GqlType>),
}

impl GqlType {
    fn named(name: &str) -> GqlType {
        GqlType {
            base: Base::Named(name.to_owned()),
            non_null: false,
        }
    }
}

impl std::fmt::Display for GqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.base {
            Base::Named(name) => f.write_str(name)?,
            Base::List(inner) => write!(f, "[{inner}]")?,
        }
        if self.non_null {
            f.write_str("!")?;
        }
        Ok(())
    }
}

/// A field of an object type, or a root field.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub description: Option<String>,
    pub ty: GqlType,
    pub args: Vec<ArgDef>,
    pub deprecated: Option<String>,
}

/// An argument, or a field of an input type.
#[derive(Debug, Clone)]
pub struct ArgDef {
    pub name: String,
    pub description: Option<String>,
    pub ty: GqlType,
}

#[derive(Debug, Clone)]
pub enum TypeDef {
    Object {
        name: String,
        description: Option<String>,
        fields: Vec<FieldDef>,
    },
    Input {
        name: String,
        description: Option<String>,
        fields: Vec<ArgDef>,
    },
    Enum {
        name: String,
        description: Option<String>,
        values: Vec<String>,
    },
    Union {
        name: String,
        description: Option<String>,
        members: Vec<String>,
    },
}

/// `[types.NAME]`: how a union's JSON object picks its member.
#[derive(Debug, Clone)]
pub struct UnionTable {
    pub name: String,
    pub discriminator: String,
    pub map: Vec<(String, String)>,
}

/// One operation's root field and its mapping.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `Query` or `Mutation`.
    pub root: &'static str,
    pub field: FieldDef,
    pub method: &'static str,
    /// The path as written in the document.
    pub path: String,
    /// The mapping's path template (`/pets/{args.petId}`).
    pub template: String,
    /// `query`: parameter name → template.
    pub query: Vec<(String, String)>,
    pub body: Option<Body>,
    pub pointer: String,
    /// This operation's notes (also in [`Project::notes`]).
    pub notes: Vec<Note>,
}

/// What `body` sends.
#[derive(Debug, Clone)]
pub enum Body {
    /// `body = "{args.input}"`.
    Whole,
    /// `body = { "wire-name" = "{args.input.graphqlName}", … }`: the body's
    /// keys are not all GraphQL names.
    Keys(Vec<(String, String)>),
}

/// A field whose GraphQL name differs from its JSON key: `from = "key"`.
#[derive(Debug, Clone)]
pub struct Renamed {
    pub type_name: String,
    pub field: String,
    pub key: String,
}

/// The generated project, before it is written as text.
#[derive(Debug)]
pub struct Project {
    pub service: String,
    pub url: String,
    pub operations: Vec<Operation>,
    pub types: Vec<TypeDef>,
    pub unions: Vec<UnionTable>,
    pub renamed: Vec<Renamed>,
    pub uses_json: bool,
    /// Everything not mapped, in the document's order.
    pub notes: Vec<Note>,
    /// `info.title`, `info.version`, `openapi`.
    pub title: Option<String>,
    pub api_version: Option<String>,
    pub openapi_version: String,
    /// The document's `servers[].url`.
    pub servers: Vec<String>,
    /// Security schemes: name, what it asks for, pointer.
    pub security: Vec<(String, String, String)>,
}

/// Methods the gateway can call, in the order path items usually list them.
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];
/// Methods OpenAPI allows that a mapping cannot call.
const OTHER_METHODS: [&str; 3] = ["head", "options", "trace"];

/// Type names never generated: GraphQL's own and the roots.
const RESERVED_TYPES: [&str; 9] = [
    "Query",
    "Mutation",
    "Subscription",
    "String",
    "Int",
    "Float",
    "Boolean",
    "ID",
    "JSON",
];

/// What a schema is used for: the same schema maps differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    /// A field of an answer: object types, unions, `ID` for ids.
    Output,
    /// A path or query parameter: sent as text, so `ID` for ids; objects
    /// and unions are `JSON`.
    Argument,
    /// A request body: input types; numbers stay numbers, ids included, so
    /// the body carries what the service expects.
    Body,
}

/// A mapped schema: its GraphQL type (nullable as built) and whether the
/// document allows null there.
struct Mapped {
    base: Base,
    nullable: bool,
}

impl Mapped {
    fn named(name: &str, nullable: bool) -> Mapped {
        Mapped {
            base: Base::Named(name.to_owned()),
            nullable,
        }
    }

    fn into_type(self, non_null: bool) -> GqlType {
        GqlType {
            base: self.base,
            non_null,
        }
    }
}

struct Generator<'a> {
    doc: &'a Document,
    type_names: Taken,
    types: Vec<Option<TypeDef>>,
    /// (resolved pointer, mode) → the named type made for it.
    named: HashMap<(String, Mode), String>,
    /// Resolved pointer → enum name (an enum serves every mode).
    enums: HashMap<String, String>,
    unions: Vec<UnionTable>,
    renamed: Vec<Renamed>,
    uses_json: bool,
    notes: Vec<Note>,
    noted: HashSet<(String, String)>,
}

/// Builds the project for `doc`, calling service `service` at `url`.
pub fn generate(doc: &Document, service: &str, url: &str) -> Project {
    let mut generator = Generator {
        doc,
        type_names: Taken::with(&RESERVED_TYPES),
        types: Vec::new(),
        named: HashMap::new(),
        enums: HashMap::new(),
        unions: Vec::new(),
        renamed: Vec::new(),
        uses_json: false,
        notes: Vec::new(),
        noted: HashSet::new(),
    };
    generator.components();
    let operations = generator.operations();
    generator.document_notes();
    let root = &doc.root;
    let info = root.get("info");
    Project {
        service: service.to_owned(),
        url: url.to_owned(),
        operations,
        types: generator.types.into_iter().flatten().collect(),
        unions: generator.unions,
        renamed: generator.renamed,
        uses_json: generator.uses_json,
        notes: generator.notes,
        title: info.and_then(|i| i.str_at("title")).map(str::to_owned),
        api_version: info.and_then(|i| i.str_at("version")).map(str::to_owned),
        openapi_version: doc.version_text.clone(),
        servers: root
            .get("servers")
            .and_then(Node::as_array)
            .map(|servers| {
                servers
                    .iter()
                    .filter_map(|s| s.str_at("url").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        security: security_schemes(doc),
    }
}

fn security_schemes(doc: &Document) -> Vec<(String, String, String)> {
    let Some(schemes) = doc
        .root
        .get("components")
        .and_then(|c| c.get("securitySchemes"))
        .and_then(Node::as_object)
    else {
        return Vec::new();
    };
    let base = "#/components/securitySchemes";
    schemes
        .iter()
        .map(|(name, scheme)| {
            let pointer = child(base, name);
            let scheme = doc.resolve(scheme, &pointer).map_or(scheme, |(n, _)| n);
            let what = match scheme.str_at("type") {
                Some("apiKey") => format!(
                    "API key in {} `{}`",
                    scheme.str_at("in").unwrap_or("?"),
                    scheme.str_at("name").unwrap_or("?")
                ),
                Some("http") => format!(
                    "HTTP {} authentication (the `authorization` header)",
                    scheme.str_at("scheme").unwrap_or("?")
                ),
                Some("oauth2") => "OAuth 2.0 (a bearer token in `authorization`)".to_owned(),
                Some("openIdConnect") => {
                    "OpenID Connect (a bearer token in `authorization`)".to_owned()
                }
                Some(other) => format!("`{other}`"),
                None => "a scheme without a type".to_owned(),
            };
            (name.clone(), what, pointer)
        })
        .collect()
}

impl<'a> Generator<'a> {
    fn note(&mut self, pointer: impl Into<String>, message: impl Into<String>) -> Note {
        let note = Note {
            pointer: pointer.into(),
            message: message.into(),
        };
        if self
            .noted
            .insert((note.pointer.clone(), note.message.clone()))
        {
            self.notes.push(note.clone());
        }
        note
    }

    fn json(&mut self, nullable: bool) -> Mapped {
        self.uses_json = true;
        Mapped::named("JSON", nullable)
    }

    /// Every object, enum and discriminated union of `components/schemas`
    /// becomes a type of its name, in the document's order: names are
    /// claimed first, so a reference never takes a component's name.
    fn components(&mut self) {
        let doc = self.doc;
        let Some(schemas) = doc
            .root
            .get("components")
            .and_then(|c| c.get("schemas"))
            .and_then(Node::as_object)
        else {
            return;
        };
        let mut claimed = Vec::new();
        for (name, node) in schemas {
            let pointer = child("#/components/schemas", name);
            let shape = classify(doc, node, &pointer);
            if shape.pointer != pointer {
                // An alias of another schema: that one's type serves both.
                continue;
            }
            if let Some(slot) = self.claim(&shape, &names::type_name(name), Mode::Output) {
                claimed.push((slot, shape));
            }
        }
        for (slot, shape) in claimed {
            let name = self.named[&(shape.pointer.clone(), Mode::Output)].clone();
            self.fill(slot, &name, &shape, Mode::Output);
        }
    }

    /// Claims a type name for `shape` when it becomes a named type (an
    /// object with fields, an enum, a discriminated union); returns the
    /// slot its definition goes into (`None` for enums, made at once).
    fn claim(&mut self, shape: &Shape<'a>, hint: &str, mode: Mode) -> Option<usize> {
        let key = (shape.pointer.clone(), mode);
        match &shape.kind {
            Kind::Object(props) if self.fields_count(props, mode) > 0 => {
                let wanted = if mode == Mode::Body {
                    format!("{hint}Input")
                } else {
                    hint.to_owned()
                };
                let name = self.type_names.claim(&wanted);
                self.named.insert(key, name);
                self.types.push(None);
                Some(self.types.len() - 1)
            }
            Kind::Enum(values) => {
                self.enum_type(shape, values, hint);
                None
            }
            Kind::Union {
                members,
                discriminator: Some(_),
            } if mode == Mode::Output && self.union_members_ok(members) => {
                let name = self.type_names.claim(hint);
                self.named.insert(key, name);
                self.types.push(None);
                Some(self.types.len() - 1)
            }
            _ => None,
        }
    }

    /// Properties that become fields in `mode`.
    fn fields_count(&self, props: &[super::shape::Property<'a>], mode: Mode) -> usize {
        props.iter().filter(|p| self.keeps(p, mode)).count()
    }

    fn keeps(&self, prop: &super::shape::Property<'a>, mode: Mode) -> bool {
        let node = self
            .doc
            .resolve(prop.schema.node, &prop.schema.pointer)
            .map_or(prop.schema.node, |(n, _)| n);
        let own = prop.schema.node;
        let flag = |key: &str| own.flag(key) || node.flag(key);
        match mode {
            Mode::Output => {
                {
                    // A key with a `.` cannot be a `from` path.
                    let unreadable = needs_rename(prop.name) && prop.name.contains('.');
                    !flag("writeOnly") && !unreadable
                }
            }
            Mode::Body | Mode::Argument => !flag("readOnly"),
        }
    }

    /// Whether every alternative is an object that becomes a type.
    fn union_members_ok(&self, members: &[Item<'a>]) -> bool {
        members.iter().all(|m| {
            let shape = classify(self.doc, m.node, &m.pointer);
            matches!(&shape.kind, Kind::Object(props) if self.fields_count(props, Mode::Output) > 0)
        })
    }

    /// Writes the definition of the type claimed at `slot`.
    fn fill(&mut self, slot: usize, name: &str, shape: &Shape<'a>, mode: Mode) {
        let description = shape.description.map(str::to_owned);
        let def = match &shape.kind {
            Kind::Object(props) => self.object_fields(name, props, mode, description),
            Kind::Union {
                members,
                discriminator: Some(discriminator),
            } => {
                let mut member_names = Vec::new();
                let mut by_pointer: Vec<(String, String)> = Vec::new();
                for (i, member) in members.iter().enumerate() {
                    let mapped = self.schema(
                        member.node,
                        &member.pointer,
                        &format!("{name}{}", i + 1),
                        None,
                        Mode::Output,
                    );
                    if let Base::Named(member_name) = mapped.base {
                        let resolved = classify(self.doc, member.node, &member.pointer).pointer;
                        if !member_names.contains(&member_name) {
                            member_names.push(member_name.clone());
                        }
                        by_pointer.push((resolved, member_name));
                    }
                }
                let mut map: Vec<(String, String)> = Vec::new();
                for (value, target) in &discriminator.mapping {
                    let pointer = if target.starts_with('#') {
                        super::document::normalize(target)
                    } else {
                        child("#/components/schemas", target)
                    };
                    match by_pointer.iter().find(|(p, _)| *p == pointer) {
                        Some((_, member)) => map.push(((*value).to_owned(), member.clone())),
                        None => {
                            let at = child(&child(&discriminator.pointer, "mapping"), value);
                            self.note(
                                at,
                                format!("discriminator value `{value}` names `{target}`, which is not one of the alternatives: left out of [types.{name}].map"),
                            );
                        }
                    }
                }
                // Alternatives without a `mapping` entry are named by their
                // component name (OpenAPI's implicit mapping).
                for (pointer, member) in &by_pointer {
                    if map.iter().any(|(_, m)| m == member) {
                        continue;
                    }
                    match super::document::component_name(pointer) {
                        Some(component) => map.push((component, member.clone())),
                        None => {
                            self.note(
                                discriminator.pointer.clone(),
                                format!("alternative `{member}` is not a component and has no `mapping` entry: no discriminator value selects it"),
                            );
                        }
                    }
                }
                self.unions.push(UnionTable {
                    name: name.to_owned(),
                    discriminator: discriminator.property.to_owned(),
                    map,
                });
                TypeDef::Union {
                    name: name.to_owned(),
                    description,
                    members: member_names,
                }
            }
            _ => return,
        };
        self.types[slot] = Some(def);
    }

    fn object_fields(
        &mut self,
        name: &str,
        props: &[super::shape::Property<'a>],
        mode: Mode,
        description: Option<String>,
    ) -> TypeDef {
        let mut taken = Taken::default();
        let mut fields = Vec::new();
        let mut args = Vec::new();
        for prop in props {
            if !self.keeps(prop, mode) {
                if mode == Mode::Output && prop.name.contains('.') && needs_rename(prop.name) {
                    self.note(
                        prop.schema.pointer.clone(),
                        format!("property `{}` is not a GraphQL name and holds a `.`, which a `from` path cannot name: not mapped", prop.name),
                    );
                }
                continue;
            }
            let field_name = taken.claim(&names::field(prop.name));
            // Inline types are named after their owner (`PetOwner`); an
            // input type's after its owner without `Input` (`PetOwnerInput`).
            let owner = match mode {
                Mode::Body => name.strip_suffix("Input").unwrap_or(name),
                _ => name,
            };
            let hint = format!("{owner}{}", names::pascal(prop.name));
            let mapped = self.schema(
                prop.schema.node,
                &prop.schema.pointer,
                &hint,
                Some(prop.name),
                mode,
            );
            let non_null = prop.required && !mapped.nullable;
            let own = prop.schema.node;
            let field_description = own.str_at("description").map(str::to_owned);
            if field_name != prop.name && mode == Mode::Output {
                self.renamed.push(Renamed {
                    type_name: name.to_owned(),
                    field: field_name.clone(),
                    key: prop.name.to_owned(),
                });
            }
            let ty = mapped.into_type(non_null);
            if mode == Mode::Output {
                let deprecated = own.flag("deprecated").then(String::new);
                fields.push(FieldDef {
                    name: field_name,
                    description: field_description,
                    ty,
                    args: Vec::new(),
                    deprecated,
                });
            } else {
                let field_description = if own.flag("deprecated") {
                    Some(match field_description {
                        Some(text) => format!("Deprecated. {text}"),
                        None => "Deprecated.".to_owned(),
                    })
                } else {
                    field_description
                };
                args.push(ArgDef {
                    name: field_name,
                    description: field_description,
                    ty,
                });
            }
        }
        if mode == Mode::Output {
            TypeDef::Object {
                name: name.to_owned(),
                description,
                fields,
            }
        } else {
            TypeDef::Input {
                name: name.to_owned(),
                description,
                fields: args,
            }
        }
    }

    /// The GraphQL type of the schema at `pointer`, making the named types
    /// it needs; `hint` names an inline object, enum or union, `property` is
    /// the JSON key it is read from (for the `id` rules).
    fn schema(
        &mut self,
        node: &'a Node,
        pointer: &str,
        hint: &str,
        property: Option<&str>,
        mode: Mode,
    ) -> Mapped {
        let shape = classify(self.doc, node, pointer);
        for (at, message) in &shape.problems {
            self.note(at.clone(), format!("{message}: typed `JSON`"));
        }
        let nullable = shape.nullable;
        let is_id = property == Some("id");
        match &shape.kind {
            Kind::Object(props) => {
                if mode == Mode::Argument {
                    self.note(
                        pointer,
                        "an object parameter is sent as JSON text: typed `JSON`",
                    );
                    return self.json(nullable);
                }
                if self.fields_count(props, mode) == 0 {
                    return self.json(nullable);
                }
                let key = (shape.pointer.clone(), mode);
                if let Some(name) = self.named.get(&key) {
                    return Mapped::named(&name.clone(), nullable);
                }
                let base_hint = shape
                    .component
                    .as_deref()
                    .map_or_else(|| hint.to_owned(), names::type_name);
                let Some(slot) = self.claim(&shape, &base_hint, mode) else {
                    return self.json(nullable);
                };
                let name = self.named[&key].clone();
                self.fill(slot, &name, &shape, mode);
                Mapped::named(&name, nullable)
            }
            Kind::Array(items) => {
                let inner = match items {
                    Some(items) => self.schema(items.node, &items.pointer, hint, None, mode),
                    None => self.json(false),
                };
                let item_non_null = !inner.nullable;
                Mapped {
                    base: Base::List(Box::new(inner.into_type(item_non_null))),
                    nullable,
                }
            }
            Kind::String if is_id && mode != Mode::Body => Mapped::named("ID", nullable),
            Kind::String => Mapped::named("String", nullable),
            Kind::Integer(format) => {
                let id_like = property.is_some_and(is_id_name);
                let name = match (mode, format) {
                    (Mode::Output | Mode::Argument, _) if is_id => "ID",
                    (Mode::Output | Mode::Argument, Some("int64")) if id_like => "ID",
                    (_, Some("int64")) => "Float",
                    _ => "Int",
                };
                Mapped::named(name, nullable)
            }
            Kind::Number if is_id && mode != Mode::Body => Mapped::named("ID", nullable),
            Kind::Number => Mapped::named("Float", nullable),
            Kind::Boolean => Mapped::named("Boolean", nullable),
            Kind::Enum(values) => match self.enum_type(&shape, values, hint) {
                Some(name) => Mapped::named(&name, nullable),
                None => Mapped::named("String", nullable),
            },
            Kind::Union {
                members,
                discriminator,
            } => {
                let which = if node.get("oneOf").is_some()
                    || classify_has(self.doc, node, pointer, "oneOf")
                {
                    "oneOf"
                } else {
                    "anyOf"
                };
                match discriminator {
                    Some(_) if mode == Mode::Output => {
                        let key = (shape.pointer.clone(), Mode::Output);
                        if let Some(name) = self.named.get(&key) {
                            return Mapped::named(&name.clone(), nullable);
                        }
                        if !self.union_members_ok(members) {
                            self.note(
                                shape.pointer.clone(),
                                format!("`{which}` with a discriminator whose alternatives are not all objects: typed `JSON`"),
                            );
                            return self.json(nullable);
                        }
                        let base_hint = shape
                            .component
                            .as_deref()
                            .map_or_else(|| hint.to_owned(), names::type_name);
                        let Some(slot) = self.claim(&shape, &base_hint, Mode::Output) else {
                            return self.json(nullable);
                        };
                        let name = self.named[&key].clone();
                        self.fill(slot, &name, &shape, Mode::Output);
                        Mapped::named(&name, nullable)
                    }
                    Some(_) => {
                        self.note(
                            shape.pointer.clone(),
                            format!(
                                "`{which}` in an input (GraphQL has no input unions): typed `JSON`"
                            ),
                        );
                        self.json(nullable)
                    }
                    None => {
                        self.note(
                            shape.pointer.clone(),
                            format!("`{which}` without a discriminator: typed `JSON`"),
                        );
                        self.json(nullable)
                    }
                }
            }
            Kind::Any(why) => {
                let resolved = self.doc.resolve(node, pointer).map_or(node, |(n, _)| n);
                // `{}` (and a bare description) is "any value" on purpose.
                let on_purpose = *why == "it has no type"
                    && resolved.as_object().is_some_and(|map| {
                        map.keys().all(|k| {
                            matches!(
                                k.as_str(),
                                "description"
                                    | "title"
                                    | "example"
                                    | "examples"
                                    | "nullable"
                                    | "deprecated"
                                    | "readOnly"
                                    | "writeOnly"
                                    | "default"
                            ) || k.starts_with("x-")
                        })
                    });
                if !on_purpose && shape.problems.is_empty() {
                    self.note(
                        shape.pointer.clone(),
                        format!("no GraphQL type fits ({why}): typed `JSON`"),
                    );
                }
                // Any value includes null.
                self.json(true)
            }
        }
    }

    /// A GraphQL enum for a string `enum`, shared by every use of the same
    /// schema; `None` (the values are typed `String`) when a value is not a
    /// GraphQL enum value: the gateway passes values through by name.
    fn enum_type(&mut self, shape: &Shape<'a>, values: &[String], hint: &str) -> Option<String> {
        if let Some(name) = self.enums.get(&shape.pointer) {
            return Some(name.clone());
        }
        let mut seen = HashSet::new();
        // `true`, `false` and `null` are not enum values; the SDL parser
        // also refuses values that merely start with them (`false_positive`).
        let bad = values.iter().find(|v| {
            !names::is_valid(v)
                || ["true", "false", "null"].iter().any(|w| v.starts_with(w))
                || !seen.insert(v.as_str())
        });
        if let Some(bad) = bad {
            self.note(
                shape.pointer.clone(),
                format!("enum value `{bad}` cannot be a GraphQL enum value: typed `String`"),
            );
            return None;
        }
        let base = shape
            .component
            .as_deref()
            .map_or_else(|| hint.to_owned(), names::type_name);
        let name = self.type_names.claim(&base);
        self.enums.insert(shape.pointer.clone(), name.clone());
        self.types.push(Some(TypeDef::Enum {
            name: name.clone(),
            description: shape.description.map(str::to_owned),
            values: values.to_vec(),
        }));
        Some(name)
    }

    fn operations(&mut self) -> Vec<Operation> {
        let doc = self.doc;
        let Some(paths) = doc.root.get("paths").and_then(Node::as_object) else {
            return Vec::new();
        };
        let mut query_names = Taken::default();
        let mut mutation_names = Taken::default();
        let mut out = Vec::new();
        for (path, item) in paths {
            let item_pointer = child("#/paths", path);
            let (item, _) = match doc.resolve(item, &item_pointer) {
                Ok(found) => found,
                Err(problem) => {
                    self.note(
                        problem.pointer,
                        format!("{}: path not mapped", problem.message),
                    );
                    continue;
                }
            };
            let Some(entries) = item.as_object() else {
                self.note(item_pointer, "a path item must be an object: not mapped");
                continue;
            };
            if item.get("servers").is_some() {
                self.note(
                    child(&item_pointer, "servers"),
                    "path-level `servers` are not used: every call goes to the service's URL",
                );
            }
            for (method, operation) in entries {
                let op_pointer = child(&item_pointer, method);
                if OTHER_METHODS.contains(&method.as_str()) {
                    self.note(op_pointer, format!("{} operations cannot be mapped (a mapping calls GET, POST, PUT, PATCH or DELETE): not mapped", method.to_uppercase()));
                    continue;
                }
                let Some(method) = METHODS.iter().find(|m| **m == method.as_str()) else {
                    continue;
                };
                let taken = if *method == "get" {
                    &mut query_names
                } else {
                    &mut mutation_names
                };
                if let Some(op) = self.operation(path, item, operation, method, &op_pointer, taken)
                {
                    out.push(op);
                }
            }
        }
        out
    }

    fn operation(
        &mut self,
        path: &str,
        item: &'a Node,
        operation: &'a Node,
        method: &'static str,
        pointer: &str,
        taken: &mut Taken,
    ) -> Option<Operation> {
        let doc = self.doc;
        let notes_before = self.notes.len();
        if !matches!(operation, Node::Object(_)) {
            self.note(pointer, "an operation must be an object: not mapped");
            return None;
        }
        let root = if method == "get" { "Query" } else { "Mutation" };
        let wanted = match operation.str_at("operationId") {
            Some(id) if !names::camel(id).trim_matches('_').is_empty() => names::camel(id),
            _ => names::camel(&format!("{method} {path}")),
        };
        let field_name = taken.claim(&wanted);
        let type_hint = names::pascal(&field_name);
        let description = operation
            .str_at("description")
            .filter(|d| !d.trim().is_empty())
            .or_else(|| operation.str_at("summary"))
            .map(str::to_owned);
        let deprecated = operation.flag("deprecated").then(String::new);

        // The body's argument is `input`: claimed first.
        let mut arg_names = Taken::default();
        let body = self.request_body(operation, pointer, &type_hint, &mut arg_names);

        let (params, problems) = parameters(doc, item, operation, pointer);
        for (at, message) in problems {
            self.note(at, format!("{message}: parameter not mapped"));
        }

        let mut args = Vec::new();
        if let Some((arg, _)) = &body {
            args.push(arg.clone());
        }
        let mut template = path.to_owned();
        let mut query = Vec::new();
        let mut path_args: HashSet<String> = HashSet::new();
        for (param, at) in params {
            let (Some(name), Some(place)) = (param.str_at("name"), param.str_at("in")) else {
                self.note(at, "a parameter needs `name` and `in`: not mapped");
                continue;
            };
            match place {
                "path" | "query" => {}
                "header" | "cookie" => {
                    self.note(at, format!("{place} parameter `{name}` is left out (a mapping can send a fixed or forwarded header instead)"));
                    continue;
                }
                other => {
                    self.note(at, format!("parameter `{name}` in `{other}`: not mapped"));
                    continue;
                }
            }
            let arg_name = arg_names.claim(&names::field(name));
            let param_hint = format!("{type_hint}{}", names::pascal(name));
            let (schema_node, schema_pointer) = match (
                param.get("schema"),
                param.get("content").and_then(Node::as_object),
            ) {
                (Some(schema), _) => (Some(schema), child(&at, "schema")),
                (None, Some(content)) => match content.iter().next() {
                    Some((media, media_node)) => {
                        let media_pointer = child(&child(&at, "content"), media);
                        self.note(at.clone(), format!("parameter `{name}` is serialized as {media}: its value is sent as text"));
                        (media_node.get("schema"), child(&media_pointer, "schema"))
                    }
                    None => (None, at.clone()),
                },
                (None, None) => (None, at.clone()),
            };
            let mapped = match schema_node {
                Some(schema) => self.schema(
                    schema,
                    &schema_pointer,
                    &param_hint,
                    Some(name),
                    Mode::Argument,
                ),
                None => Mapped::named("String", true),
            };
            if matches!(mapped.base, Base::List(_)) && place == "query" {
                let explode = param
                    .get("explode")
                    .and_then(Node::as_bool)
                    .unwrap_or(param.str_at("style").is_none_or(|s| s == "form"));
                if explode {
                    self.note(at.clone(), format!("array parameter `{name}` is sent comma-joined (`{name}=a,b`), not repeated as the document's `explode` asks"));
                }
            }
            if let Some(style) = param.str_at("style") {
                if !matches!(style, "simple" | "form") {
                    self.note(
                        at.clone(),
                        format!("parameter `{name}` has style `{style}`: sent as a plain value"),
                    );
                }
            }
            let required = place == "path" || param.flag("required");
            let mut description = param.str_at("description").map(str::to_owned);
            if param.flag("deprecated") {
                description = Some(match description {
                    Some(text) => format!("Deprecated. {text}"),
                    None => "Deprecated.".to_owned(),
                });
            }
            args.push(ArgDef {
                name: arg_name.clone(),
                description,
                ty: mapped.into_type(required),
            });
            let placeholder = format!("{{args.{arg_name}}}");
            if place == "path" {
                let written = format!("{{{name}}}");
                if template.contains(&written) {
                    template = template.replace(&written, &placeholder);
                    path_args.insert(name.to_owned());
                } else {
                    self.note(at, format!("path parameter `{name}` is not in the path `{path}`: its argument is not sent"));
                }
            } else {
                query.push((name.to_owned(), placeholder));
            }
        }
        // Path segments without a declared parameter still need a value.
        for name in path_template_names(path) {
            if path_args.contains(&name) {
                continue;
            }
            let arg_name = arg_names.claim(&names::field(&name));
            self.note(
                pointer,
                format!("path parameter `{name}` is not declared: argument `{arg_name}: String!`"),
            );
            args.push(ArgDef {
                name: arg_name.clone(),
                description: None,
                ty: GqlType {
                    base: Base::Named("String".to_owned()),
                    non_null: true,
                },
            });
            template = template.replace(&format!("{{{name}}}"), &format!("{{args.{arg_name}}}"));
        }

        let ty = self.response_type(operation, pointer, &type_hint);
        if let Some(callbacks) = operation.get("callbacks").and_then(Node::as_object) {
            for name in callbacks.keys() {
                self.note(child(&child(pointer, "callbacks"), name), "callbacks are not mapped (Conflux calls services; it does not receive their calls here)");
            }
        }
        if operation.get("servers").is_some() {
            self.note(
                child(pointer, "servers"),
                "operation-level `servers` are not used: every call goes to the service's URL",
            );
        }
        let notes = self.notes[notes_before..].to_vec();
        Some(Operation {
            root,
            field: FieldDef {
                name: field_name,
                description,
                ty,
                args,
                deprecated,
            },
            method,
            path: path.to_owned(),
            template,
            query,
            body: body.map(|(_, body)| body),
            pointer: pointer.to_owned(),
            notes,
        })
    }

    /// The `input` argument and what `body` sends, for a JSON request body.
    fn request_body(
        &mut self,
        operation: &'a Node,
        pointer: &str,
        type_hint: &str,
        arg_names: &mut Taken,
    ) -> Option<(ArgDef, Body)> {
        let raw = operation.get("requestBody")?;
        let at = child(pointer, "requestBody");
        let (body, _) = match self.doc.resolve(raw, &at) {
            Ok(found) => found,
            Err(problem) => {
                self.note(
                    problem.pointer,
                    format!("{}: request body not sent", problem.message),
                );
                return None;
            }
        };
        let content = body.get("content").and_then(Node::as_object)?;
        let content_pointer = child(&at, "content");
        let Some((media, media_node)) = content.iter().find(|(media, _)| is_json(media)) else {
            let kinds: Vec<&str> = content.keys().map(String::as_str).collect();
            self.note(
                at,
                format!(
                    "request body is {}, not JSON: not sent (the field has no `input`)",
                    kinds.join(", ")
                ),
            );
            return None;
        };
        for other in content.keys().filter(|m| *m != media) {
            self.note(
                child(&content_pointer, other),
                format!("request body as {other}: only {media} is sent"),
            );
        }
        let media_pointer = child(&content_pointer, media);
        let name = arg_names.claim("input");
        let required = body.flag("required");
        let (mapped, keys) = match media_node.get("schema") {
            Some(schema) => {
                let schema_pointer = child(&media_pointer, "schema");
                let mapped = self.schema(schema, &schema_pointer, type_hint, None, Mode::Body);
                (
                    mapped,
                    self.renamed_body_keys(schema, &schema_pointer, &name),
                )
            }
            None => (self.json(true), None),
        };
        let description = body.str_at("description").map(str::to_owned);
        let arg = ArgDef {
            name,
            description,
            ty: mapped.into_type(required),
        };
        let body = match keys {
            Some(keys) => Body::Keys(keys),
            None => Body::Whole,
        };
        Some((arg, body))
    }

    /// For an object body whose keys are not all GraphQL names: the body
    /// written key by key (`"wire-name" = "{args.input.wireName}"`). Names
    /// deeper down go as their GraphQL names, which is noted.
    fn renamed_body_keys(
        &mut self,
        schema: &'a Node,
        pointer: &str,
        arg: &str,
    ) -> Option<Vec<(String, String)>> {
        let shape = classify(self.doc, schema, pointer);
        let Kind::Object(props) = &shape.kind else {
            return None;
        };
        let kept: Vec<_> = props.iter().filter(|p| self.keeps(p, Mode::Body)).collect();
        if !kept.iter().any(|p| needs_rename(p.name)) {
            return None;
        }
        let mut taken = Taken::default();
        Some(
            kept.iter()
                .map(|p| {
                    let field = taken.claim(&names::field(p.name));
                    (p.name.to_owned(), format!("{{args.{arg}.{field}}}"))
                })
                .collect(),
        )
    }

    /// The 200 (else 201, else first 2xx) JSON answer's type; `Boolean`
    /// when no 2xx answer is JSON.
    fn response_type(&mut self, operation: &'a Node, pointer: &str, type_hint: &str) -> GqlType {
        let answers = answers(self.doc, operation, pointer);
        if operation.get("responses").is_none() {
            self.note(
                child(pointer, "responses"),
                "no `responses`: the field is `Boolean`, true on success",
            );
        }
        for (at, message) in answers.problems {
            self.note(at, message);
        }
        let Some(answer) = answers.json else {
            for (at, kinds) in answers.other {
                self.note(at, format!("the answer is {kinds}, not JSON: the field is `Boolean`, true on an empty 2xx answer (a non-empty body that is not JSON is UPSTREAM_BAD_RESPONSE)"));
            }
            return GqlType::named("Boolean");
        };
        match answer.schema {
            Some(schema) => {
                let hint = format!("{type_hint}Response");
                self.schema(schema, &answer.pointer, &hint, None, Mode::Output)
                    .into_type(false)
            }
            None => self.json(true).into_type(false),
        }
    }

    /// Top-level parts that no field maps: webhooks (3.1).
    fn document_notes(&mut self) {
        if let Some(webhooks) = self.doc.root.get("webhooks").and_then(Node::as_object) {
            for name in webhooks.keys() {
                self.note(
                    child("#/webhooks", name),
                    "webhooks are not mapped (they are calls a service makes, not calls to it)",
                );
            }
        }
    }
}

/// An operation's parameters, each with the pointer where it is used: the
/// path item's, replaced by the operation's of the same name and place.
/// Also the references that could not be followed (pointer, message).
#[allow(clippy::type_complexity)]
pub fn parameters<'a>(
    doc: &'a Document,
    item: &'a Node,
    operation: &'a Node,
    pointer: &str,
) -> (Vec<(&'a Node, String)>, Vec<(String, String)>) {
    let mut params: Vec<(&'a Node, String)> = Vec::new();
    let mut problems = Vec::new();
    for (owner, owner_pointer) in [
        (item, pointer_parent(pointer)),
        (operation, pointer.to_owned()),
    ] {
        let Some(list) = owner.get("parameters").and_then(Node::as_array) else {
            continue;
        };
        let list_pointer = child(&owner_pointer, "parameters");
        for (i, param) in list.iter().enumerate() {
            let at = child(&list_pointer, &i.to_string());
            match doc.resolve(param, &at) {
                Ok((param, _)) => {
                    let key = (param.str_at("name"), param.str_at("in"));
                    params.retain(|(p, _)| (p.str_at("name"), p.str_at("in")) != key);
                    params.push((param, at));
                }
                Err(problem) => problems.push((problem.pointer, problem.message)),
            }
        }
    }
    (params, problems)
}

/// The JSON answer an operation's field returns.
pub struct Answer<'a> {
    /// Its schema; `None`: JSON without a schema.
    pub schema: Option<&'a Node>,
    /// Where the schema is (or would be).
    pub pointer: String,
}

/// An operation's 2xx answers.
pub struct Answers<'a> {
    /// The 200 JSON answer, else the 201, else the first 2xx.
    pub json: Option<Answer<'a>>,
    /// 2xx answers with content that is not JSON: pointer, media types.
    pub other: Vec<(String, String)>,
    /// Responses whose `$ref` cannot be followed.
    pub problems: Vec<(String, String)>,
}

/// The answers of `operation` (at `pointer`).
pub fn answers<'a>(doc: &'a Document, operation: &'a Node, pointer: &str) -> Answers<'a> {
    let responses_pointer = child(pointer, "responses");
    let mut out = Answers {
        json: None,
        other: Vec::new(),
        problems: Vec::new(),
    };
    let Some(responses) = operation.get("responses").and_then(Node::as_object) else {
        return out;
    };
    let mut json_answers: Vec<(&str, Answer<'a>)> = Vec::new();
    for (status, response) in responses {
        if !(status.starts_with('2') && status.len() == 3) {
            continue;
        }
        let at = child(&responses_pointer, status);
        let response = match doc.resolve(response, &at) {
            Ok((response, _)) => response,
            Err(problem) => {
                out.problems.push((
                    problem.pointer,
                    format!("{}: response not mapped", problem.message),
                ));
                continue;
            }
        };
        let content = response.get("content").and_then(Node::as_object);
        match content.and_then(|c| c.iter().find(|(media, _)| is_json(media))) {
            Some((media, media_node)) => {
                let schema_pointer = child(&child(&child(&at, "content"), media), "schema");
                json_answers.push((
                    status.as_str(),
                    Answer {
                        schema: media_node.get("schema"),
                        pointer: schema_pointer,
                    },
                ));
            }
            None => {
                if let Some(content) = content.filter(|c| !c.is_empty()) {
                    let kinds: Vec<&str> = content.keys().map(String::as_str).collect();
                    out.other.push((at, kinds.join(", ")));
                }
            }
        }
    }
    let pick = ["200", "201"]
        .iter()
        .find_map(|wanted| json_answers.iter().position(|(s, _)| s == wanted))
        .or_else(|| (!json_answers.is_empty()).then_some(0));
    if let Some(index) = pick {
        out.json = Some(json_answers.swap_remove(index).1);
    }
    out
}

/// Whether a schema at `pointer` (after `$ref`s) has `key`.
fn classify_has(doc: &Document, node: &Node, pointer: &str, key: &str) -> bool {
    doc.resolve(node, pointer)
        .is_ok_and(|(n, _)| n.get(key).is_some())
}

/// `application/json`, `application/problem+json`, with parameters or not.
pub fn is_json(media: &str) -> bool {
    let essence = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A property or parameter name that holds an id: `id`, `user_id`, `userId`.
fn is_id_name(name: &str) -> bool {
    name == "id" || name.ends_with("_id") || name.ends_with("Id") || name.ends_with("ID")
}

fn needs_rename(name: &str) -> bool {
    names::field(name) != name
}

/// `#/paths/~1pets/get` → `#/paths/~1pets`.
fn pointer_parent(pointer: &str) -> String {
    pointer
        .rsplit_once('/')
        .map_or(pointer, |(parent, _)| parent)
        .to_owned()
}

/// The `{name}`s of a path, in order.
pub fn path_template_names(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(after[..close].to_owned());
        rest = &after[close + 1..];
    }
    out
}
