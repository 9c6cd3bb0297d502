//! `[resolvers]` + the SDL → one [`FieldBinding`] per field of every object
//! type: how that field gets its value, checked against the schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::{BaseType, ConstDirective, FieldDefinition, Type, TypeKind};
use async_graphql::parser::Positioned;
use async_graphql::Name;

use super::sdl::SchemaModel;
use crate::auth::access::AccessRule;
use crate::config::{
    BatchSpec, CallSpec, Config, Diagnostic, Diagnostics, FieldMapping, FieldSource, ServiceConfig,
};
use crate::connector::coerce::{AbstractType, EnumValues, OutputKind, OutputType, ScalarKind};
use crate::connector::shape::Shape;
use crate::connector::template::{Root, Template};
use crate::fetch::CachePolicy;

/// How one field gets its value; built once, shared by every request.
#[derive(Debug)]
pub struct FieldBinding {
    /// `Type.field`, for logs.
    pub name: String,
    pub output: OutputType,
    pub source: BoundSource,
    /// `@authenticated` / `@requiresScopes` on the field, on the interface
    /// field it implements, or on the type it returns; checked before the
    /// field resolves.
    pub access: Option<AccessRule>,
    /// `invalidates` (a mutation field): the calls whose cached entries
    /// its success drops.
    pub invalidates: Vec<BoundCall>,
    /// `filter`, `limit`, `map`, `default` (docs/SHAPING.md): applied once,
    /// where the engine keeps the field's answer.
    pub shape: Option<Arc<Shape>>,
}

#[derive(Debug)]
pub enum BoundSource {
    /// No mapping: the parent's key of the same name.
    ParentKey(String),
    /// `from`: a dotted path into the parent.
    From(Vec<String>),
    Call(BoundCall),
    Merge(Vec<BoundCall>),
    Batch(BoundBatch),
    /// `value`: a template over the request, no call.
    Value(Template),
}

#[derive(Debug)]
pub struct BoundCall {
    pub spec: CallSpec,
    pub service: Arc<ServiceConfig>,
    /// The field's `timeout_ms`, else the service's.
    pub timeout: Duration,
    /// `cache_ttl_s` / `stale_if_error_s`, when the field caches.
    pub cache: Option<CachePolicy>,
}

#[derive(Debug)]
pub struct BoundBatch {
    /// `Type.field`: keys of the same field share batches.
    pub id: Arc<str>,
    pub spec: BatchSpec,
    pub service: Arc<ServiceConfig>,
    pub timeout: Duration,
    /// Cached per key: a later batch asks only for the keys not cached.
    pub cache: Option<CachePolicy>,
}

/// `Type.field` → binding, for every field of every object type.
pub type Bindings = HashMap<String, Arc<FieldBinding>>;

pub fn bind(config: &mut Config, schema: &SchemaModel) -> Result<Bindings, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let outputs = OutputTypes::new(config, schema, &mut diagnostics);
    let mut mapped: HashMap<String, FieldMapping> = HashMap::new();
    for mapping in std::mem::take(&mut config.mappings) {
        if check_mapping(&mapping, config, schema, &mut diagnostics) {
            mapped.insert(
                format!("{}.{}", mapping.type_name, mapping.field_name),
                mapping,
            );
        }
    }

    let roots: Vec<&str> = std::iter::once(schema.query_type.as_str())
        .chain(schema.mutation_type.as_deref())
        .collect();
    let mut bindings = Bindings::new();
    for (type_name, ty) in &schema.types {
        let TypeKind::Object(object) = &ty.kind else {
            continue;
        };
        for field in &object.fields {
            let field = &field.node;
            let key = format!("{type_name}.{}", field.name.node);
            let output = outputs.compile(&field.ty.node);
            let mut invalidates = Vec::new();
            let mut shape = None;
            let source = match mapped.remove(&key) {
                Some(mut mapping) => {
                    shape = mapping.shape.take();
                    invalidates = std::mem::take(&mut mapping.invalidates)
                        .into_iter()
                        .map(|spec| bind_call(spec, None, None, config))
                        .collect();
                    bound_source(mapping, config)
                }
                None if roots.contains(&type_name.as_str())
                    && !config.mapped_fields.contains(&key) =>
                {
                    diagnostics.push(at_field(
                        schema,
                        &key,
                        format!("root field `{key}` has no entry in [resolvers]"),
                    ));
                    continue;
                }
                None if roots.contains(&type_name.as_str()) => continue,
                None => BoundSource::ParentKey(field.name.node.to_string()),
            };
            let access = access_rule(schema, &object.implements, field);
            bindings.insert(
                key.clone(),
                Arc::new(FieldBinding {
                    name: key,
                    output,
                    source,
                    access,
                    invalidates,
                    shape,
                }),
            );
        }
    }
    if diagnostics.is_empty() {
        Ok(bindings)
    } else {
        Err(diagnostics)
    }
}

/// The access rule of `type_name.field`, from every place README "Authentication and authorization" allows a
/// directive: the field, the interface fields it implements, the type it
/// returns.
fn access_rule(
    schema: &SchemaModel,
    implements: &[Positioned<Name>],
    field: &FieldDefinition,
) -> Option<AccessRule> {
    let mut rule = AccessRule::default();
    let field_name = field.name.node.as_str();
    let mut sources: Vec<&[Positioned<ConstDirective>]> = vec![&field.directives];
    for interface in implements {
        if let Some(interface_field) = schema.field(interface.node.as_str(), field_name) {
            sources.push(&interface_field.directives);
        }
    }
    let returned = super::sdl::named_type(&field.ty.node);
    if let Some(ty) = schema.types.get(returned) {
        sources.push(&ty.directives);
    }
    for directives in sources {
        for directive in directives {
            match directive.node.name.node.as_str() {
                "authenticated" => rule.authenticated = true,
                "requiresScopes" => {
                    rule.authenticated = true;
                    rule.scopes.push(scope_sets(&directive.node));
                }
                _ => {}
            }
        }
    }
    (!rule.is_open()).then_some(rule)
}

/// `@requiresScopes(scopes: [["a", "b"], ["c"]])` → `[[a, b], [c]]`.
fn scope_sets(directive: &ConstDirective) -> Vec<Vec<String>> {
    let Some(scopes) = directive.get_argument("scopes") else {
        return Vec::new();
    };
    let strings = |value: &async_graphql::Value| -> Vec<String> {
        match value {
            async_graphql::Value::List(items) => items
                .iter()
                .filter_map(|i| match i {
                    async_graphql::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            async_graphql::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    match &scopes.node {
        async_graphql::Value::List(sets) => sets.iter().map(strings).collect(),
        other => vec![strings(other)],
    }
}

fn at_field(schema: &SchemaModel, key: &str, message: String) -> Diagnostic {
    match schema.location(key) {
        Some(location) => Diagnostic::at(location.clone(), message),
        None => Diagnostic {
            location: None,
            file: None,
            message,
        },
    }
}

/// Checks one mapping against the schema; false when it cannot be bound.
fn check_mapping(
    mapping: &FieldMapping,
    config: &Config,
    schema: &SchemaModel,
    diagnostics: &mut Diagnostics,
) -> bool {
    let key = format!("{}.{}", mapping.type_name, mapping.field_name);
    let error = |diagnostics: &mut Diagnostics, message: String| {
        diagnostics.push(Diagnostic::at(mapping.location.clone(), message));
    };
    let Some(ty) = schema.types.get(&mapping.type_name) else {
        error(
            diagnostics,
            format!("`{key}`: type `{}` is not in the schema", mapping.type_name),
        );
        return false;
    };
    if !matches!(ty.kind, TypeKind::Object(_)) {
        error(
            diagnostics,
            format!("`{key}`: only fields of object types can be mapped; map the field on each object type"),
        );
        return false;
    }
    let Some(field) = schema.field(&mapping.type_name, &mapping.field_name) else {
        error(diagnostics, format!("`{key}` is not a field of the schema"));
        return false;
    };
    let is_root = mapping.type_name == schema.query_type
        || schema.mutation_type.as_deref() == Some(mapping.type_name.as_str());
    let is_batch = matches!(mapping.source, Some(FieldSource::Batch(_)));
    let mut ok = true;
    for (location, placeholder) in &mapping.placeholders {
        let problem = match placeholder.root {
            Root::Args => {
                let name = &placeholder.path[0];
                (!field
                    .arguments
                    .iter()
                    .any(|a| a.node.name.node == name.as_str()))
                .then(|| format!("`{{args.{name}}}`: `{key}` has no argument `{name}`"))
            }
            Root::Parent if is_root => {
                Some(format!("`{placeholder}`: root field `{key}` has no parent"))
            }
            Root::Claims if config.auth.is_none() => {
                Some(format!("`{placeholder}` needs an [auth] table"))
            }
            Root::Keys if !is_batch => Some("`{keys}` is only available in `batch`".to_owned()),
            _ => None,
        };
        if let Some(message) = problem {
            diagnostics.push(Diagnostic::at(location.clone(), message));
            ok = false;
        }
    }
    if !check_shape(mapping, &field.ty.node, schema, diagnostics) {
        ok = false;
    }
    if !mapping.invalidates.is_empty()
        && schema.mutation_type.as_deref() != Some(mapping.type_name.as_str())
    {
        error(
            diagnostics,
            format!("`{key}`: `invalidates` is only for fields of the mutation type"),
        );
        ok = false;
    }
    if let Some(FieldSource::Batch(batch)) = &mapping.source {
        if batch.key.placeholders().any(|p| p.root == Root::Keys) {
            error(
                diagnostics,
                format!("`{key}`: `batch.key` cannot use `{{keys}}`"),
            );
            ok = false;
        }
        if is_root {
            error(
                diagnostics,
                format!("`{key}`: a root field has no parents to batch"),
            );
            ok = false;
        }
    }
    ok && mapping.source.is_some()
}

/// docs/SHAPING.md: `filter` and `limit` only on a list field; a `map`
/// value and a `default` of the field's type.
fn check_shape(
    mapping: &FieldMapping,
    ty: &Type,
    schema: &SchemaModel,
    diagnostics: &mut Diagnostics,
) -> bool {
    let key = format!("{}.{}", mapping.type_name, mapping.field_name);
    let written = &mapping.shape_locations;
    let is_list = matches!(ty.base, BaseType::List(_));
    let mut ok = true;
    let mut refuse = |location: &crate::config::Location, message: String| {
        diagnostics.push(Diagnostic::at(location.clone(), message));
        ok = false;
    };
    for (name, location) in [("filter", &written.filter), ("limit", &written.limit)] {
        if let (Some(location), false) = (location, is_list) {
            refuse(
                location,
                format!("`{key}`: `{name}` applies to a list, and `{key}` is `{ty}`"),
            );
        }
    }
    // A `map` value replaces one scalar: it must fit the innermost type.
    let mut leaf = ty;
    while let BaseType::List(item) = &leaf.base {
        leaf = item;
    }
    for (location, value) in &written.map {
        if !fits(value, leaf, schema) {
            refuse(
                location,
                format!("`{key}`: `map` value {value} does not fit `{leaf}`"),
            );
        }
    }
    if let Some((location, value)) = &written.default {
        if !fits(value, ty, schema) {
            refuse(
                location,
                format!("`{key}`: `default` {value} does not fit `{ty}`"),
            );
        }
    }
    ok
}

/// Whether a TOML value is a value of the GraphQL type `ty`.
fn fits(value: &toml::Value, ty: &Type, schema: &SchemaModel) -> bool {
    match (&ty.base, value) {
        (BaseType::List(item), toml::Value::Array(items)) => {
            items.iter().all(|v| fits(v, item, schema))
        }
        (BaseType::List(_), _) => false,
        (BaseType::Named(_), toml::Value::Array(_)) => false,
        (BaseType::Named(name), value) => match (name.as_str(), value) {
            ("Int", toml::Value::Integer(n)) => i32::try_from(*n).is_ok(),
            ("Float", toml::Value::Integer(_) | toml::Value::Float(_)) => true,
            ("String", toml::Value::String(_)) => true,
            ("Boolean", toml::Value::Boolean(_)) => true,
            ("ID", toml::Value::String(_) | toml::Value::Integer(_)) => true,
            ("Int" | "Float" | "String" | "Boolean" | "ID", _) => false,
            (other, value) => match schema.types.get(other).map(|t| &t.kind) {
                Some(TypeKind::Enum(values)) => value
                    .as_str()
                    .is_some_and(|text| values.values.iter().any(|v| v.node.value.node == text)),
                Some(TypeKind::Scalar) | None => true,
                Some(_) => value.is_table(),
            },
        },
    }
}

fn bind_call(
    spec: CallSpec,
    timeout: Option<Duration>,
    cache: Option<CachePolicy>,
    config: &Config,
) -> BoundCall {
    let service = config.services[&spec.service].clone();
    BoundCall {
        timeout: timeout.unwrap_or(service.timeout),
        service,
        spec,
        cache,
    }
}

fn bound_source(mapping: FieldMapping, config: &Config) -> BoundSource {
    let timeout = mapping.timeout;
    let id: Arc<str> = Arc::from(format!("{}.{}", mapping.type_name, mapping.field_name));
    let cache = mapping.cache_ttl.map(|ttl| CachePolicy {
        ttl,
        stale_if_error: mapping.stale_if_error.unwrap_or_default(),
        stale_while_revalidate: mapping.stale_while_revalidate.unwrap_or_default(),
    });
    let bind_call = |spec: CallSpec| bind_call(spec, timeout, cache, config);
    let Some(source) = mapping.source else {
        // `check_mapping` binds only mappings with a source.
        return BoundSource::ParentKey(mapping.field_name);
    };
    match source {
        FieldSource::From(path) => BoundSource::From(path),
        FieldSource::Value(template) => BoundSource::Value(template),
        FieldSource::Call(spec) => BoundSource::Call(bind_call(spec)),
        FieldSource::Merge(specs) => BoundSource::Merge(specs.into_iter().map(bind_call).collect()),
        FieldSource::Batch(spec) => {
            let service = config.services[&spec.call.service].clone();
            BoundSource::Batch(BoundBatch {
                id,
                timeout: timeout.unwrap_or(service.timeout),
                service,
                spec,
                cache,
            })
        }
    }
}

/// Compiles SDL types into [`OutputType`]s, sharing enum value sets and
/// abstract type descriptions between fields.
struct OutputTypes {
    enums: HashMap<String, Arc<EnumValues>>,
    abstracts: HashMap<String, Arc<AbstractType>>,
    objects: HashMap<String, Arc<str>>,
}

impl OutputTypes {
    fn new(config: &Config, schema: &SchemaModel, diagnostics: &mut Diagnostics) -> Self {
        let mut types = OutputTypes {
            enums: HashMap::new(),
            abstracts: HashMap::new(),
            objects: HashMap::new(),
        };
        for (name, resolution) in &config.types {
            let possible = schema.possible_types(name);
            if !matches!(
                schema.types.get(name).map(|t| &t.kind),
                Some(TypeKind::Interface(_) | TypeKind::Union(_))
            ) {
                diagnostics.push(Diagnostic::at(
                    resolution.location.clone(),
                    format!("[types.{name}]: `{name}` is not an interface or union of the schema"),
                ));
                continue;
            }
            for target in resolution.map.values() {
                if !possible.contains(&target.as_str()) {
                    diagnostics.push(Diagnostic::at(
                        resolution.location.clone(),
                        format!("[types.{name}]: `{target}` is not a possible type of `{name}`"),
                    ));
                }
            }
        }
        for (name, ty) in &schema.types {
            match &ty.kind {
                TypeKind::Enum(e) => {
                    let values = e
                        .values
                        .iter()
                        .map(|v| v.node.value.node.to_string())
                        .collect();
                    types.enums.insert(name.clone(), Arc::new(values));
                }
                TypeKind::Interface(_) | TypeKind::Union(_) => {
                    let abstract_type = AbstractType {
                        name: name.clone(),
                        resolution: config.types.get(name).cloned(),
                        possible: schema
                            .possible_types(name)
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                    };
                    types
                        .abstracts
                        .insert(name.clone(), Arc::new(abstract_type));
                }
                TypeKind::Object(_) => {
                    types.objects.insert(name.clone(), Arc::from(name.as_str()));
                }
                TypeKind::Scalar | TypeKind::InputObject(_) => {}
            }
        }
        types
    }

    fn compile(&self, ty: &Type) -> OutputType {
        let kind = match &ty.base {
            BaseType::List(inner) => OutputKind::List(Box::new(self.compile(inner))),
            BaseType::Named(name) => match name.as_str() {
                "ID" => OutputKind::Scalar(ScalarKind::Id),
                "Int" => OutputKind::Scalar(ScalarKind::Int),
                "Float" => OutputKind::Scalar(ScalarKind::Float),
                "String" => OutputKind::Scalar(ScalarKind::String),
                "Boolean" => OutputKind::Scalar(ScalarKind::Boolean),
                other => {
                    if let Some(values) = self.enums.get(other) {
                        OutputKind::Enum(values.clone())
                    } else if let Some(abstract_type) = self.abstracts.get(other) {
                        OutputKind::Abstract(abstract_type.clone())
                    } else if let Some(object) = self.objects.get(other) {
                        OutputKind::Object(object.clone())
                    } else {
                        OutputKind::Scalar(ScalarKind::Custom)
                    }
                }
            },
        };
        OutputType {
            non_null: !ty.nullable,
            kind,
        }
    }
}
