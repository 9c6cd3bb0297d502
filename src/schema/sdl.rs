//! SDL files → one merged [`SchemaModel`]: types from every file, `extend`
//! definitions folded in, every problem reported with `FILE:LINE:COL`.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::{
    BaseType, DirectiveDefinition, FieldDefinition, InputValueDefinition, Type, TypeDefinition,
    TypeKind, TypeSystemDefinition,
};
use async_graphql::parser::{parse_schema, Pos, Positioned};
use indexmap::IndexMap;

use crate::config::{Diagnostic, Diagnostics, Location, SchemaFile};

/// The directives Conflux declares itself (docs/AUTH.md, docs/DEFER.md);
/// schemas use them without declaring them.
pub const CONFLUX_DIRECTIVES: &str = r#""""
The caller must present a valid token.
"""
directive @authenticated on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM

"""
The token's scopes must contain every scope of at least one inner list.
"""
directive @requiresScopes(scopes: [[String!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM

"""
Delivers this fragment after the rest of the response, to a client that takes incremental
delivery (multipart/mixed); `if: false` delivers it with the rest.
"""
directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT
"#;

const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];
const CONFLUX_DIRECTIVE_NAMES: [&str; 3] = ["authenticated", "requiresScopes", "defer"];

/// The whole schema, every file merged, in the order types were written.
#[derive(Debug)]
pub struct SchemaModel {
    pub types: IndexMap<String, TypeDefinition>,
    pub query_type: String,
    pub mutation_type: Option<String>,
    /// `schema { subscription }`, else a type named `Subscription`.
    pub subscription_type: Option<String>,
    /// Directives the schema declares itself (Conflux's own are not here).
    pub directives: Vec<DirectiveDefinition>,
    /// Where each type and each `Type.field` was written.
    pub locations: HashMap<String, Location>,
}

impl SchemaModel {
    pub fn location(&self, key: &str) -> Option<&Location> {
        self.locations.get(key)
    }

    pub fn field(&self, type_name: &str, field_name: &str) -> Option<&FieldDefinition> {
        fields_of(self.types.get(type_name)?)?
            .iter()
            .map(|f| &f.node)
            .find(|f| f.name.node == field_name)
    }

    /// Object types that implement `interface`, or the members of a union.
    pub fn possible_types(&self, abstract_type: &str) -> Vec<&str> {
        match self.types.get(abstract_type).map(|t| &t.kind) {
            Some(TypeKind::Union(union)) => union.members.iter().map(|m| m.node.as_str()).collect(),
            Some(TypeKind::Interface(_)) => self
                .types
                .values()
                .filter_map(|t| match &t.kind {
                    TypeKind::Object(object)
                        if object.implements.iter().any(|i| i.node == abstract_type) =>
                    {
                        Some(t.name.node.as_str())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The fields of an object or interface type.
pub fn fields_of(ty: &TypeDefinition) -> Option<&Vec<Positioned<FieldDefinition>>> {
    match &ty.kind {
        TypeKind::Object(object) => Some(&object.fields),
        TypeKind::Interface(interface) => Some(&interface.fields),
        _ => None,
    }
}

/// The named type at the bottom of a list/non-null wrapping.
pub fn named_type(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named_type(inner),
    }
}

fn location(file: &Arc<str>, pos: Pos) -> Location {
    Location {
        file: file.clone(),
        line: pos.line,
        col: pos.column,
    }
}

/// Reads, parses and merges every schema file.
pub fn load(files: &[SchemaFile]) -> Result<SchemaModel, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let mut sources = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file.path) {
            Ok(text) => sources.push((file.display.clone(), text)),
            Err(err) => diagnostics.push(Diagnostic::in_file(
                &file.display,
                format!("cannot read schema file: {err}"),
            )),
        }
    }
    let model = merge(&sources, &mut diagnostics);
    if diagnostics.is_empty() {
        Ok(model)
    } else {
        Err(diagnostics)
    }
}

/// Parses and merges SDL sources `(file name, text)`.
pub fn merge(sources: &[(Arc<str>, String)], diagnostics: &mut Diagnostics) -> SchemaModel {
    let mut model = SchemaModel {
        types: IndexMap::new(),
        query_type: "Query".to_owned(),
        mutation_type: None,
        subscription_type: None,
        directives: Vec::new(),
        locations: HashMap::new(),
    };
    let mut extensions = Vec::new();
    let mut schema_query = None;
    let mut schema_mutation = None;
    let mut schema_subscription = None;
    let mut parse_failed = false;
    for (file, text) in sources {
        let document = match parse_schema(text) {
            Ok(document) => document,
            Err(err) => {
                let pos = err.positions().next().unwrap_or(Pos { line: 1, column: 1 });
                diagnostics.push(Diagnostic::at(
                    location(file, pos),
                    format!("SDL syntax error: {}", syntax_message(&err.to_string())),
                ));
                parse_failed = true;
                continue;
            }
        };
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Type(ty) if ty.node.extend => {
                    extensions.push((file.clone(), ty))
                }
                TypeSystemDefinition::Type(ty) => {
                    let name = ty.node.name.node.to_string();
                    if let Some(previous) = model.locations.get(&name) {
                        diagnostics.push(Diagnostic::at(
                            location(file, ty.pos),
                            format!("type `{name}` is defined twice (first at {previous})"),
                        ));
                        continue;
                    }
                    record_locations(&mut model.locations, file, &ty);
                    model.types.insert(name, ty.node);
                }
                TypeSystemDefinition::Schema(schema) => {
                    if let Some(query) = &schema.node.query {
                        schema_query = Some(query.node.to_string());
                    }
                    if let Some(mutation) = &schema.node.mutation {
                        schema_mutation = Some(mutation.node.to_string());
                    }
                    if let Some(subscription) = &schema.node.subscription {
                        schema_subscription = Some(subscription.node.to_string());
                    }
                }
                TypeSystemDefinition::Directive(directive) => {
                    if CONFLUX_DIRECTIVE_NAMES.contains(&directive.node.name.node.as_str()) {
                        // Conflux declares these itself; a schema that
                        // declares them too (e.g. copied from Apollo) is fine.
                        continue;
                    }
                    model.directives.push(directive.node);
                }
            }
        }
    }
    for (file, extension) in extensions {
        apply_extension(&mut model, &file, extension, diagnostics);
    }
    model.query_type = schema_query.unwrap_or_else(|| "Query".to_owned());
    model.mutation_type = schema_mutation.or_else(|| {
        model
            .types
            .contains_key("Mutation")
            .then(|| "Mutation".to_owned())
    });
    model.subscription_type = schema_subscription.or_else(|| {
        model
            .types
            .contains_key("Subscription")
            .then(|| "Subscription".to_owned())
    });
    // A file that did not parse would make every reference into it look
    // broken: report the syntax error alone.
    if !parse_failed {
        check_references(&model, diagnostics);
    }
    model
}

/// The parser's multi-line, pest-style message (`--> 3:6`, source excerpt,
/// `= expected type_`) as one line: the location is printed separately.
pub(crate) fn syntax_message(message: &str) -> String {
    let reason = message
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("= "))
        .unwrap_or_else(|| message.lines().next().unwrap_or("syntax error").trim());
    reason.replace('_', " ").trim().to_owned()
}

fn record_locations(
    locations: &mut HashMap<String, Location>,
    file: &Arc<str>,
    ty: &Positioned<TypeDefinition>,
) {
    let name = ty.node.name.node.as_str();
    locations.insert(name.to_owned(), location(file, ty.node.name.pos));
    if let Some(fields) = fields_of(&ty.node) {
        for field in fields {
            locations.insert(
                format!("{name}.{}", field.node.name.node),
                location(file, field.node.name.pos),
            );
        }
    }
}

fn apply_extension(
    model: &mut SchemaModel,
    file: &Arc<str>,
    extension: Positioned<TypeDefinition>,
    diagnostics: &mut Diagnostics,
) {
    let name = extension.node.name.node.to_string();
    let Some(base) = model.types.get_mut(&name) else {
        diagnostics.push(Diagnostic::at(
            location(file, extension.pos),
            format!("`extend type {name}`: type `{name}` is not defined"),
        ));
        return;
    };
    record_locations(&mut model.locations, file, &extension);
    base.directives.extend(extension.node.directives);
    match (&mut base.kind, extension.node.kind) {
        (TypeKind::Object(base), TypeKind::Object(ext)) => {
            base.implements.extend(ext.implements);
            base.fields.extend(ext.fields);
        }
        (TypeKind::Interface(base), TypeKind::Interface(ext)) => {
            base.implements.extend(ext.implements);
            base.fields.extend(ext.fields);
        }
        (TypeKind::Union(base), TypeKind::Union(ext)) => base.members.extend(ext.members),
        (TypeKind::Enum(base), TypeKind::Enum(ext)) => base.values.extend(ext.values),
        (TypeKind::InputObject(base), TypeKind::InputObject(ext)) => base.fields.extend(ext.fields),
        (TypeKind::Scalar, TypeKind::Scalar) => {}
        _ => diagnostics.push(Diagnostic::at(
            location(file, extension.pos),
            format!("`extend` of `{name}` is not the same kind of type"),
        )),
    }
}

/// Every referenced type exists and has the right kind; root types exist.
fn check_references(model: &SchemaModel, diagnostics: &mut Diagnostics) {
    let loc = |key: &str| {
        model
            .locations
            .get(key)
            .cloned()
            .unwrap_or_else(|| Location {
                file: Arc::from("schema"),
                line: 1,
                col: 1,
            })
    };
    let exists = |name: &str| BUILT_IN_SCALARS.contains(&name) || model.types.contains_key(name);
    let is_output = |name: &str| {
        BUILT_IN_SCALARS.contains(&name)
            || !matches!(
                model.types.get(name).map(|t| &t.kind),
                Some(TypeKind::InputObject(_)) | None
            )
    };
    let is_input = |name: &str| {
        BUILT_IN_SCALARS.contains(&name)
            || matches!(
                model.types.get(name).map(|t| &t.kind),
                Some(TypeKind::InputObject(_) | TypeKind::Scalar | TypeKind::Enum(_))
            )
    };
    let check_args =
        |owner: &str, args: &[Positioned<InputValueDefinition>], diagnostics: &mut Diagnostics| {
            for arg in args {
                let ty = named_type(&arg.node.ty.node);
                if !exists(ty) {
                    diagnostics.push(Diagnostic::at(
                        loc(owner),
                        format!("`{owner}`: unknown type `{ty}`"),
                    ));
                } else if !is_input(ty) {
                    diagnostics.push(Diagnostic::at(
                        loc(owner),
                        format!("`{owner}`: `{ty}` cannot be used as an input type"),
                    ));
                }
            }
        };
    for (name, ty) in &model.types {
        if let Some(fields) = fields_of(ty) {
            for field in fields {
                let key = format!("{name}.{}", field.node.name.node);
                let field_ty = named_type(&field.node.ty.node);
                if !exists(field_ty) {
                    diagnostics.push(Diagnostic::at(
                        loc(&key),
                        format!("`{key}`: unknown type `{field_ty}`"),
                    ));
                } else if !is_output(field_ty) {
                    diagnostics.push(Diagnostic::at(
                        loc(&key),
                        format!(
                            "`{key}`: input type `{field_ty}` cannot be used as an output type"
                        ),
                    ));
                }
                check_args(&key, &field.node.arguments, diagnostics);
            }
        }
        match &ty.kind {
            TypeKind::Object(object) => {
                for interface in &object.implements {
                    if !matches!(
                        model.types.get(interface.node.as_str()).map(|t| &t.kind),
                        Some(TypeKind::Interface(_))
                    ) {
                        diagnostics.push(Diagnostic::at(
                            loc(name),
                            format!(
                                "`{name}` implements `{}`, which is not an interface",
                                interface.node
                            ),
                        ));
                    }
                }
            }
            TypeKind::Union(union) => {
                for member in &union.members {
                    if !matches!(
                        model.types.get(member.node.as_str()).map(|t| &t.kind),
                        Some(TypeKind::Object(_))
                    ) {
                        diagnostics.push(Diagnostic::at(
                            loc(name),
                            format!(
                                "union `{name}` member `{}` is not an object type",
                                member.node
                            ),
                        ));
                    }
                }
            }
            TypeKind::InputObject(input) => check_args(name, &input.fields, diagnostics),
            _ => {}
        }
    }
    if !model.types.contains_key(&model.query_type) {
        diagnostics.push(Diagnostic {
            location: None,
            file: None,
            message: format!("the schema has no `{}` type", model.query_type),
        });
    }
}
