//! `conflux check --openapi NAME=SPEC`: each mapping of service NAME
//! checked against the OpenAPI document, reported at the mapping's key
//! (for a field without a mapping, at the field in its SDL file).
//!
//! Errors: no operation has the mapping's method and path (path templates
//! compared by shape: `/pets/{args.id}` is `/pets/{petId}`), or a required
//! parameter (or body) the mapping never sends. Warnings: a `query`
//! parameter the operation does not declare; a `select`, `from`, `match` or
//! `batch.key` path naming a property the schema does not have; an SDL type
//! that does not fit the schema (list vs object vs scalar); a non-null SDL
//! field reading a property that is not required.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{BaseType, Type, TypeKind};

use super::document::{Document, Node};
use super::import::{answers, parameters};
use super::shape::{classify, Kind, Shape};
use crate::config::{CallSpec, Config, FieldMapping, FieldSource, Location};
use crate::connector::template::Root;
use crate::schema::sdl::{fields_of, SchemaModel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, at a place of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub location: Option<Location>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// An operation of the document.
struct Op<'a> {
    method: String,
    path: &'a str,
    item: &'a Node,
    node: &'a Node,
    pointer: String,
    /// The path's segments with every `{…}` as `{}`.
    shape: Vec<String>,
}

/// Lints every mapping of `service` (and the fields its answers reach)
/// against `doc`, named `doc_name` in messages.
pub fn lint(
    config: &Config,
    sdl: &SchemaModel,
    service: &str,
    doc: &Document,
    doc_name: &str,
) -> Vec<Finding> {
    let ops = operations(doc);
    let prefixes = server_prefixes(doc);
    let mappings: HashMap<String, &FieldMapping> = config
        .mappings
        .iter()
        .map(|m| (format!("{}.{}", m.type_name, m.field_name), m))
        .collect();
    let mut linter = Linter {
        config,
        sdl,
        doc,
        mappings,
        findings: Vec::new(),
        visited: HashSet::new(),
    };
    for mapping in &config.mappings {
        let calls: Vec<&CallSpec> = match &mapping.source {
            Some(FieldSource::Call(call)) => vec![call],
            Some(FieldSource::Merge(calls)) => calls.iter().collect(),
            Some(FieldSource::Batch(batch)) => vec![&batch.call],
            // A mapping with a problem of its own is linted once it is fixed.
            Some(FieldSource::From(_) | FieldSource::Value(_)) | None => Vec::new(),
        };
        for call in calls.into_iter().filter(|c| c.service == service) {
            let Some(op) = find(&ops, &prefixes, call) else {
                let at_path: Vec<&str> = ops
                    .iter()
                    .filter(|op| {
                        same_shape(&op.shape, &shape_of(path_part(&call.path_text)), &prefixes)
                    })
                    .map(|op| op.method.as_str())
                    .collect();
                let hint = if at_path.is_empty() {
                    String::new()
                } else {
                    format!(" (it has {} there)", at_path.join(", ").to_uppercase())
                };
                linter.error(
                    mapping,
                    format!(
                        "`{}.{}`: {} {} is not an operation of {doc_name}{hint}",
                        mapping.type_name,
                        mapping.field_name,
                        call.method,
                        path_part(&call.path_text)
                    ),
                );
                continue;
            };
            linter.parameters(mapping, call, op);
            linter.answer(mapping, call, op);
        }
    }
    linter.findings
}

struct Linter<'a> {
    config: &'a Config,
    sdl: &'a SchemaModel,
    doc: &'a Document,
    mappings: HashMap<String, &'a FieldMapping>,
    findings: Vec<Finding>,
    /// (SDL type, schema pointer) pairs already walked.
    visited: HashSet<(String, String)>,
}

impl<'a> Linter<'a> {
    fn error(&mut self, mapping: &FieldMapping, message: String) {
        self.push(Severity::Error, Some(mapping.location.clone()), message);
    }

    fn warn(&mut self, mapping: &FieldMapping, message: String) {
        self.push(Severity::Warning, Some(mapping.location.clone()), message);
    }

    fn push(&mut self, severity: Severity, location: Option<Location>, message: String) {
        let finding = Finding {
            severity,
            location,
            message,
        };
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    /// Required parameters sent, `query` parameters declared.
    fn parameters(&mut self, mapping: &FieldMapping, call: &CallSpec, op: &Op<'a>) {
        let key = format!("{}.{}", mapping.type_name, mapping.field_name);
        let (params, _) = parameters(self.doc, op.item, op.node, &op.pointer);
        let service = self.config.services.get(&call.service);
        let sends_header = |name: &str| {
            call.headers
                .iter()
                .any(|(h, _)| h.as_str().eq_ignore_ascii_case(name))
                || service.is_some_and(|s| {
                    s.headers
                        .iter()
                        .any(|(h, _)| h.as_str().eq_ignore_ascii_case(name))
                        || s.forward_headers
                            .iter()
                            .any(|h| h.as_str().eq_ignore_ascii_case(name))
                        || s.claims_headers
                            .iter()
                            .any(|(h, _)| h.as_str().eq_ignore_ascii_case(name))
                })
        };
        let mut declared_query = Vec::new();
        for (param, at) in &params {
            let (Some(name), Some(place)) = (param.str_at("name"), param.str_at("in")) else {
                continue;
            };
            if place == "query" {
                declared_query.push(name);
            }
            if !(param.flag("required") || place == "path") {
                continue;
            }
            let sent = match place {
                // Every `{…}` of the path is sent: the shapes matched.
                "path" => true,
                "query" => call.query.iter().any(|(n, _)| n == name),
                "header" => sends_header(name),
                "cookie" => sends_header("cookie"),
                _ => true,
            };
            if !sent {
                self.error(
                    mapping,
                    format!(
                        "`{key}`: required {place} parameter `{name}` of {} {} is never sent ({at})",
                        op.method.to_uppercase(),
                        op.path
                    ),
                );
            }
        }
        if let Some(body) = op.node.get("requestBody") {
            let at = super::document::child(&op.pointer, "requestBody");
            let body = self.doc.resolve(body, &at).map_or(body, |(n, _)| n);
            if body.flag("required") && call.body.is_none() {
                self.error(
                    mapping,
                    format!(
                        "`{key}`: {} {} requires a request body; the mapping sends none (`body`) ({at})",
                        op.method.to_uppercase(),
                        op.path
                    ),
                );
            }
        }
        for (name, _) in &call.query {
            if !declared_query.contains(&name.as_str()) {
                self.warn(
                    mapping,
                    format!(
                        "`{key}`: query parameter `{name}` is not declared by {} {} ({})",
                        op.method.to_uppercase(),
                        op.path,
                        op.pointer
                    ),
                );
            }
        }
    }

    /// The answer's schema against `select`, the field's type, and what
    /// the type's fields read from it.
    fn answer(&mut self, mapping: &'a FieldMapping, call: &CallSpec, op: &Op<'a>) {
        let Some(answer) = answers(self.doc, op.node, &op.pointer).json else {
            return;
        };
        let Some(schema) = answer.schema else {
            return;
        };
        let key = format!("{}.{}", mapping.type_name, mapping.field_name);
        let Some(field) = self.sdl.field(&mapping.type_name, &mapping.field_name) else {
            return;
        };
        let field_ty = field.ty.node.clone();
        let mut shape = classify(self.doc, schema, &answer.pointer);
        if let Some(select) = &call.select {
            let required = match self.walk(&shape, select) {
                Walked::Found(found, required) => {
                    shape = found;
                    required
                }
                Walked::Missing(at, segment, pointer) => {
                    self.warn(
                        mapping,
                        format!(
                            "`{key}`: `select = \"{}\"` names `{segment}`{at}, which the answer's schema does not have ({pointer})",
                            select.join(".")
                        ),
                    );
                    return;
                }
                Walked::Unknown => return,
            };
            if !field_ty.nullable && !required {
                self.warn(
                    mapping,
                    format!(
                        "`{key}` is non-null but `select = \"{}\"` reads a property that is not required ({})",
                        select.join("."),
                        shape.pointer
                    ),
                );
            }
        }
        if let Some(FieldSource::Batch(batch)) = &mapping.source {
            // The batch answers a list of items; each item is the field's.
            let items = match &shape.kind {
                Kind::Array(Some(items)) => classify(self.doc, items.node, &items.pointer),
                _ => return,
            };
            if let Some(text) = describe_misfit(&field_ty, &items, self.sdl) {
                self.warn(
                    mapping,
                    format!(
                        "`{key}` is `{field_ty}` but each batched item is {text} ({})",
                        items.pointer
                    ),
                );
            }
            if let Walked::Missing(at, segment, pointer) = self.walk(&items, &batch.match_field) {
                self.warn(
                    mapping,
                    format!(
                        "`{key}`: `match = \"{}\"` names `{segment}`{at}, which the batched items do not have ({pointer})",
                        batch.match_field.join(".")
                    ),
                );
            }
            self.fields_of(&field_ty, &items);
            return;
        }
        if let Some(text) = describe_misfit(&field_ty, &shape, self.sdl) {
            self.warn(
                mapping,
                format!(
                    "`{key}` is `{field_ty}` but the answer's schema is {text} ({})",
                    shape.pointer
                ),
            );
            return;
        }
        self.fields_of(&field_ty, &shape);
    }

    /// The fields of the object type under `ty`, read from `shape`.
    fn fields_of(&mut self, ty: &Type, shape: &Shape<'a>) {
        let (ty_name, shape) = match (&ty.base, &shape.kind) {
            (BaseType::List(inner), Kind::Array(Some(items))) => {
                let items = classify(self.doc, items.node, &items.pointer);
                return self.fields_of(inner, &items);
            }
            (BaseType::Named(name), Kind::Object(_)) => (name.to_string(), shape),
            _ => return,
        };
        if !self
            .visited
            .insert((ty_name.clone(), shape.pointer.clone()))
        {
            return;
        }
        let Some(definition) = self.sdl.types.get(&ty_name) else {
            return;
        };
        if !matches!(definition.kind, TypeKind::Object(_)) {
            return;
        }
        let Some(fields) = fields_of(definition) else {
            return;
        };
        for field in fields {
            let field = &field.node;
            let name = field.name.node.to_string();
            let key = format!("{ty_name}.{name}");
            let field_ty = &field.ty.node;
            let mapping = self.mappings.get(&key).copied();
            let path: Vec<String> = match mapping.and_then(|m| m.source.as_ref()) {
                None => vec![name.clone()],
                Some(FieldSource::From(path)) => path.clone(),
                Some(FieldSource::Batch(batch)) => {
                    // `batch.key`'s `{parent.…}` paths read this object.
                    let Some(mapping) = mapping else { continue };
                    for placeholder in batch.key.placeholders().filter(|p| p.root == Root::Parent) {
                        if let Walked::Missing(at, segment, pointer) =
                            self.walk(shape, &placeholder.path)
                        {
                            self.warn(
                                mapping,
                                format!(
                                    "`{key}`: `batch.key` `{placeholder}` names `{segment}`{at}, which `{ty_name}`'s schema does not have ({pointer})"
                                ),
                            );
                        }
                    }
                    continue;
                }
                Some(_) => continue,
            };
            let location = match mapping {
                Some(m) => Some(m.location.clone()),
                None => self.sdl.location(&key).cloned(),
            };
            let what = match mapping {
                Some(_) => format!("`from = \"{}\"`", path.join(".")),
                None => format!("the key `{name}`"),
            };
            let (found, required) = match self.walk(shape, &path) {
                Walked::Found(found, required) => (found, required),
                Walked::Missing(at, segment, pointer) => {
                    let message = format!(
                        "`{key}` reads {what}: `{segment}`{at} is not a property of `{ty_name}`'s schema ({pointer})"
                    );
                    self.push(Severity::Warning, location, message);
                    continue;
                }
                Walked::Unknown => continue,
            };
            if let Some(text) = describe_misfit(field_ty, &found, self.sdl) {
                self.push(
                    Severity::Warning,
                    location,
                    format!(
                        "`{key}` is `{field_ty}` but {what} is {text} in the schema ({})",
                        found.pointer
                    ),
                );
                continue;
            }
            if !field_ty.nullable && !required {
                self.push(
                    Severity::Warning,
                    location.clone(),
                    format!(
                        "`{key}` is non-null but {what} is not required{} in the schema ({})",
                        if found.nullable {
                            " (and nullable)"
                        } else {
                            ""
                        },
                        found.pointer
                    ),
                );
            }
            self.fields_of(field_ty, &found);
        }
    }

    /// Follows a dotted path from `shape`: properties of objects, indexes
    /// of arrays.
    fn walk(&self, shape: &Shape<'a>, path: &[String]) -> Walked<'a> {
        let mut current = shape.clone();
        let mut required = true;
        for (i, segment) in path.iter().enumerate() {
            let at = if i == 0 {
                String::new()
            } else {
                format!(" (after `{}`)", path[..i].join("."))
            };
            let next = match &current.kind {
                Kind::Object(props) => match props.iter().find(|p| p.name == segment) {
                    Some(prop) => {
                        let found = classify(self.doc, prop.schema.node, &prop.schema.pointer);
                        required = prop.required && !found.nullable;
                        found
                    }
                    None => return Walked::Missing(at, segment.clone(), current.pointer.clone()),
                },
                Kind::Array(Some(items)) if segment.parse::<usize>().is_ok() => {
                    required = false;
                    classify(self.doc, items.node, &items.pointer)
                }
                Kind::Array(_) => {
                    return Walked::Missing(at, segment.clone(), current.pointer.clone())
                }
                Kind::Any(_) | Kind::Union { .. } => return Walked::Unknown,
                _ => return Walked::Missing(at, segment.clone(), current.pointer.clone()),
            };
            current = next;
        }
        Walked::Found(current, required)
    }
}

enum Walked<'a> {
    /// The schema at the path, and whether every step is required.
    Found(Shape<'a>, bool),
    /// `(after …)`, the segment not found, and the schema it is not in.
    Missing(String, String, String),
    /// A step through a schema without a known shape.
    Unknown,
}

/// What the schema is, when the SDL type does not fit it; `None` when it
/// fits (or cannot be told).
fn describe_misfit(ty: &Type, shape: &Shape<'_>, sdl: &SchemaModel) -> Option<String> {
    let sdl_is = match &ty.base {
        BaseType::List(_) => "list",
        BaseType::Named(name) => match sdl.types.get(name.as_str()).map(|t| &t.kind) {
            Some(TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_)) => "object",
            // A custom scalar (`JSON`) holds anything.
            Some(TypeKind::Scalar) => return None,
            _ => "scalar",
        },
    };
    let schema_is = match &shape.kind {
        Kind::Array(_) => "list",
        Kind::Object(_) | Kind::Union { .. } => "object",
        Kind::Any(_) => return None,
        _ => "scalar",
    };
    (sdl_is != schema_is).then(|| {
        match schema_is {
            "list" => "a list",
            "object" => "an object",
            _ => "a scalar",
        }
        .to_owned()
    })
}

fn operations(doc: &Document) -> Vec<Op<'_>> {
    let Some(paths) = doc.root.get("paths").and_then(Node::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, item) in paths {
        let item_pointer = super::document::child("#/paths", path);
        let Ok((item, _)) = doc.resolve(item, &item_pointer) else {
            continue;
        };
        let Some(entries) = item.as_object() else {
            continue;
        };
        for (method, node) in entries {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
            ) {
                continue;
            }
            out.push(Op {
                method: method.clone(),
                path,
                item,
                node,
                pointer: super::document::child(&item_pointer, method),
                shape: shape_of(path),
            });
        }
    }
    out
}

/// The path part of a path template (before any `?`).
fn path_part(template: &str) -> &str {
    template.split('?').next().unwrap_or(template)
}

/// A path's segments with every `{…}` written as `{}`.
fn shape_of(path: &str) -> Vec<String> {
    let path = path.trim_start_matches('/');
    path.split('/')
        .map(|segment| {
            let mut out = String::new();
            let mut rest = segment;
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                match rest[open..].find('}') {
                    Some(close) => {
                        out.push_str("{}");
                        rest = &rest[open + close + 1..];
                    }
                    None => {
                        out.push_str(&rest[open..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// The base paths of the document's servers (`/v1`), so a mapping written
/// with the base path against a service URL without it matches too.
fn server_prefixes(doc: &Document) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    if let Some(servers) = doc.root.get("servers").and_then(Node::as_array) {
        for server in servers {
            let Some(url) = server.str_at("url") else {
                continue;
            };
            let path = match url.find("://") {
                Some(scheme) => url[scheme + 3..]
                    .find('/')
                    .map_or("", |i| &url[scheme + 3 + i..]),
                None => url,
            };
            let path = path.trim_end_matches('/');
            if !path.is_empty() && path != "/" {
                out.push(shape_of(path));
            }
        }
    }
    out
}

fn same_shape(op: &[String], mapping: &[String], prefixes: &[Vec<String>]) -> bool {
    prefixes.iter().any(|prefix| {
        mapping.len() == prefix.len() + op.len()
            && mapping[..prefix.len()] == prefix[..]
            && mapping[prefix.len()..] == *op
    })
}

fn find<'o, 'a>(
    ops: &'o [Op<'a>],
    prefixes: &[Vec<String>],
    call: &CallSpec,
) -> Option<&'o Op<'a>> {
    let method = call.method.as_str().to_ascii_lowercase();
    let shape = shape_of(path_part(&call.path_text));
    ops.iter()
        .find(|op| op.method == method && same_shape(&op.shape, &shape, prefixes))
}

/// `check --openapi SERVICE=SPEC` for the project at `config_path`: loads
/// the configuration, its schema and the document, then [`lint`]s. `Err`
/// when one of them cannot be read (the configuration's own problems are
/// `check`'s to report: then nothing is linted and `Ok` is empty).
pub fn check(
    config_path: &std::path::Path,
    service: &str,
    spec: &std::path::Path,
) -> Result<Vec<Finding>, String> {
    let document = Document::load(spec).map_err(|err| err.to_string())?;
    let Ok((config, _)) = crate::config::load(config_path) else {
        return Ok(Vec::new());
    };
    if !config.services.contains_key(service) {
        return Err(format!(
            "--openapi {service}={}: {} has no service `{service}`",
            spec.display(),
            config_path.display()
        ));
    }
    let Ok(sdl) = crate::schema::sdl::load(&config.schema_files) else {
        return Ok(Vec::new());
    };
    let name = spec.display().to_string();
    Ok(lint(&config, &sdl, service, &document, &name))
}
