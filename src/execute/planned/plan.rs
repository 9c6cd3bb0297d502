//! One operation of a document → an [`OperationPlan`]: the GraphQL spec's
//! CollectFields done once (fragments expanded, type conditions matched,
//! `@skip`/`@include` applied, repeated response keys merged), every field
//! tied to its binding, response keys pre-rendered as JSON. `None` means
//! the operation uses something only async-graphql's executor answers
//! (introspection, mutations, unknown directives); it then runs there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet, TypeKind,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Pos, Value as GqlValue, Variables};
use async_graphql_value::Value as InputValue;
use indexmap::IndexMap;
use rustc_hash::FxHashMap;

use crate::connector::coerce::{OutputKind, OutputType};
use crate::schema::binding::BoundSource;
use crate::schema::{Bindings, FieldBinding, SchemaModel};

/// Fragment spreads followed inside one another, at most (validation has
/// already refused cycles; this bounds the work on a hostile document).
const MAX_SPREAD_DEPTH: usize = 32;

/// What the planner needs from the schema, computed once per gateway.
pub struct PlanSchema {
    pub query_type: String,
    /// Object type → the interfaces it implements and the unions it is in.
    supertypes: HashMap<String, HashSet<String>>,
    /// `Type.field` → its arguments' SDL defaults.
    arg_defaults: HashMap<String, Vec<(Name, GqlValue)>>,
}

impl PlanSchema {
    pub fn new(sdl: &SchemaModel) -> Self {
        let mut supertypes: HashMap<String, HashSet<String>> = HashMap::new();
        let mut arg_defaults = HashMap::new();
        for (name, definition) in &sdl.types {
            match &definition.kind {
                TypeKind::Object(object) => {
                    let entry = supertypes.entry(name.clone()).or_default();
                    entry.extend(object.implements.iter().map(|i| i.node.to_string()));
                    for field in &object.fields {
                        let defaults: Vec<(Name, GqlValue)> = field
                            .node
                            .arguments
                            .iter()
                            .filter_map(|arg| {
                                let default = arg.node.default_value.as_ref()?;
                                Some((arg.node.name.node.clone(), default.node.clone()))
                            })
                            .collect();
                        if !defaults.is_empty() {
                            arg_defaults
                                .insert(format!("{name}.{}", field.node.name.node), defaults);
                        }
                    }
                }
                TypeKind::Union(union) => {
                    for member in &union.members {
                        supertypes
                            .entry(member.node.to_string())
                            .or_default()
                            .insert(name.clone());
                    }
                }
                _ => {}
            }
        }
        PlanSchema {
            query_type: sdl.query_type.clone(),
            supertypes,
            arg_defaults,
        }
    }

    /// Whether a fragment on `condition` applies to an object of type
    /// `object` (GraphQL spec DoesFragmentTypeApply).
    fn applies(&self, condition: &str, object: &str) -> bool {
        condition == object
            || self
                .supertypes
                .get(object)
                .is_some_and(|s| s.contains(condition))
    }
}

pub struct OperationPlan {
    pub root: ObjectPlan,
    /// Fields in the plan (ids are `0..field_count`).
    pub field_count: usize,
    /// Arguments of the fields that make calls, by field id.
    pub args: Vec<Option<ArgsPlan>>,
    /// `@skip`/`@include` read a variable: the plan holds for these
    /// variables' values only, so it is not kept for other requests.
    pub depends_on_variables: bool,
    /// How long the last response body written for this plan was: the
    /// next one is sized from it, so that a large answer is written into
    /// one buffer instead of one grown by doubling (which copied it and
    /// held up to twice its size).
    pub last_body_len: AtomicUsize,
}

impl OperationPlan {
    /// Roughly the heap this plan holds, for the plan cache's byte bound: a
    /// field measured about 180 bytes (its node, response key, its place in
    /// its object's maps) and a call's arguments about 400 more, Vec growth
    /// included; counted [`FIELD_BYTES`] and [`ARGS_BYTES`], plus the text
    /// of the argument values (a literal is copied into the plan).
    pub fn estimated_bytes(&self) -> usize {
        let arguments: usize = self
            .args
            .iter()
            .flatten()
            .map(|args| {
                let values: usize = args
                    .given
                    .iter()
                    .map(|(name, value)| name.len() + value_bytes(value))
                    .sum();
                ARGS_BYTES + values
            })
            .sum();
        self.field_count * FIELD_BYTES + arguments
    }
}

const FIELD_BYTES: usize = 256;
const ARGS_BYTES: usize = 512;

/// An argument value's estimated heap: a node each, and its strings.
fn value_bytes(value: &InputValue) -> usize {
    const NODE_BYTES: usize = 128;
    NODE_BYTES
        + match value {
            InputValue::String(text) => text.len(),
            InputValue::Enum(name) | InputValue::Variable(name) => name.len(),
            InputValue::List(items) => items.iter().map(value_bytes).sum(),
            InputValue::Object(fields) => fields
                .iter()
                .map(|(name, value)| name.len() + value_bytes(value))
                .sum(),
            _ => 0,
        }
}

/// A selection on one object type, fields in response order.
pub struct ObjectPlan {
    pub type_name: Arc<str>,
    pub fields: Vec<FieldPlan>,
    /// Some field makes a call, here or below.
    pub resolves: bool,
    /// Key of the object's JSON → the fields (by index) that read it.
    pub reads: FxHashMap<Box<str>, Vec<usize>>,
}

pub struct FieldPlan {
    /// Unique in the operation: the key of its answers and arguments.
    pub id: usize,
    /// The response key, and the same as a JSON object key with its colon.
    pub key: Name,
    pub key_json: Box<str>,
    pub pos: Pos,
    pub kind: FieldKind,
}

pub enum FieldKind {
    Typename,
    Field {
        binding: Arc<FieldBinding>,
        sub: SubPlan,
        /// This field makes a call, or some field below it does.
        resolves: bool,
    },
}

pub enum SubPlan {
    Leaf,
    Object(Box<ObjectPlan>),
    /// An interface or union: a plan per possible object type.
    Abstract(Vec<ObjectPlan>),
}

impl SubPlan {
    pub fn resolves(&self) -> bool {
        match self {
            SubPlan::Leaf => false,
            SubPlan::Object(plan) => plan.resolves,
            SubPlan::Abstract(plans) => plans.iter().any(|p| p.resolves),
        }
    }

    /// The plan for an object of concrete type `type_name`.
    pub fn for_type(&self, type_name: &str) -> Option<&ObjectPlan> {
        match self {
            SubPlan::Leaf => None,
            SubPlan::Object(plan) => Some(plan),
            SubPlan::Abstract(plans) => plans.iter().find(|p| &*p.type_name == type_name),
        }
    }
}

/// A call field's arguments as written (variables substituted per
/// request), and the SDL defaults of the ones left out.
pub struct ArgsPlan {
    pub given: Vec<(Name, InputValue)>,
    pub defaults: Vec<(Name, GqlValue)>,
}

impl ArgsPlan {
    /// The arguments a request gives: variables substituted (an omitted
    /// variable without a default leaves its argument out), SDL defaults
    /// for the rest — what async-graphql's `ctx.args` holds.
    pub fn values(
        &self,
        operation: &OperationDefinition,
        variables: &Variables,
    ) -> IndexMap<Name, GqlValue> {
        let mut args = IndexMap::with_capacity(self.given.len() + self.defaults.len());
        for (name, value) in &self.given {
            if let InputValue::Variable(var) = value {
                // An omitted variable without a default: as if the
                // argument were not given (GraphQL spec CoerceArgumentValues).
                if let Some(value) = variable_value(operation, variables, var) {
                    args.insert(name.clone(), value);
                }
                continue;
            }
            args.insert(name.clone(), substitute(value, operation, variables));
        }
        for (name, default) in &self.defaults {
            if !args.contains_key(name) {
                args.insert(name.clone(), default.clone());
            }
        }
        args
    }
}

/// An argument value with its variables' values in place. A variable with
/// neither a value nor a default leaves its input-object field out (so the
/// field's default applies) and is null in a list (GraphQL spec input
/// coercion).
fn substitute(
    value: &InputValue,
    operation: &OperationDefinition,
    variables: &Variables,
) -> GqlValue {
    match value {
        InputValue::Variable(name) => {
            variable_value(operation, variables, name).unwrap_or(GqlValue::Null)
        }
        InputValue::List(items) => GqlValue::List(
            items
                .iter()
                .map(|item| substitute(item, operation, variables))
                .collect(),
        ),
        InputValue::Object(fields) => GqlValue::Object(
            fields
                .iter()
                .filter(|(_, value)| match value {
                    InputValue::Variable(name) => {
                        variable_value(operation, variables, name).is_some()
                    }
                    _ => true,
                })
                .map(|(name, value)| (name.clone(), substitute(value, operation, variables)))
                .collect(),
        ),
        // No variable inside: the literal as it is.
        other => other.clone().into_const().unwrap_or(GqlValue::Null),
    }
}

/// A variable's value: given, else its default.
pub fn variable_value(
    operation: &OperationDefinition,
    variables: &Variables,
    name: &str,
) -> Option<GqlValue> {
    if let Some(value) = variables.get(name) {
        return Some(value.clone());
    }
    operation
        .variable_definitions
        .iter()
        .find(|d| d.node.name.node == name)
        // Only a written default: async-graphql's `default_value()` also
        // answers null for any nullable variable, which is not the same as
        // an absent one.
        .and_then(|d| d.node.default_value.as_ref())
        .map(|default| default.node.clone())
}

/// Why an operation is left to async-graphql's executor.
#[derive(Debug)]
pub struct Unplannable;

type Planned<T> = Result<T, Unplannable>;

/// Plans `operation` of `document`.
pub fn plan(
    schema: &PlanSchema,
    bindings: &Bindings,
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Planned<OperationPlan> {
    if operation.ty != OperationType::Query {
        return Err(Unplannable);
    }
    let mut planner = Planner {
        schema,
        bindings,
        document,
        operation,
        variables,
        next_id: 0,
        args: Vec::new(),
        depends_on_variables: false,
    };
    let root = planner.object(&schema.query_type, &[&operation.selection_set.node])?;
    Ok(OperationPlan {
        root,
        field_count: planner.next_id,
        args: planner.args,
        depends_on_variables: planner.depends_on_variables,
        last_body_len: AtomicUsize::new(0),
    })
}

struct Planner<'a> {
    schema: &'a PlanSchema,
    bindings: &'a Bindings,
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
    next_id: usize,
    args: Vec<Option<ArgsPlan>>,
    depends_on_variables: bool,
}

/// Field nodes by response key, in first-seen order.
type Grouped<'d> = IndexMap<Name, Vec<&'d Positioned<Field>>>;

impl<'a> Planner<'a> {
    /// The plan for the selection sets `sets` (merged) on object type
    /// `type_name`.
    fn object(&mut self, type_name: &str, sets: &[&'a SelectionSet]) -> Planned<ObjectPlan> {
        let mut grouped = Grouped::new();
        let mut visited = HashSet::new();
        for set in sets {
            self.collect(type_name, set, &mut grouped, &mut visited, 0)?;
        }
        let mut fields = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            fields.push(self.field(type_name, key, &nodes)?);
        }
        let resolves = fields.iter().any(|f| match &f.kind {
            FieldKind::Field { resolves, .. } => *resolves,
            FieldKind::Typename => false,
        });
        let mut reads: FxHashMap<Box<str>, Vec<usize>> = FxHashMap::default();
        for (index, field) in fields.iter().enumerate() {
            if let FieldKind::Field { binding, .. } = &field.kind {
                if let BoundSource::ParentKey(key) = &binding.source {
                    reads.entry(key.as_str().into()).or_default().push(index);
                }
            }
        }
        Ok(ObjectPlan {
            type_name: Arc::from(type_name),
            fields,
            resolves,
            reads,
        })
    }

    /// GraphQL spec CollectFields.
    fn collect(
        &mut self,
        type_name: &str,
        set: &'a SelectionSet,
        grouped: &mut Grouped<'a>,
        visited: &mut HashSet<&'a str>,
        spreads: usize,
    ) -> Planned<()> {
        for selection in &set.items {
            if !self.included(selection.node.directives().as_slice())? {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    grouped
                        .entry(field.node.response_key().node.clone())
                        .or_default()
                        .push(field);
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let applies = inline
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| self.schema.applies(&c.node.on.node, type_name));
                    if applies {
                        self.collect(
                            type_name,
                            &inline.selection_set.node,
                            grouped,
                            visited,
                            spreads,
                        )?;
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if !visited.insert(name) {
                        continue;
                    }
                    if spreads >= MAX_SPREAD_DEPTH {
                        return Err(Unplannable);
                    }
                    let fragment = self.document.fragments.get(name).ok_or(Unplannable)?;
                    if self
                        .schema
                        .applies(&fragment.node.type_condition.node.on.node, type_name)
                    {
                        self.collect(
                            type_name,
                            &fragment.node.selection_set.node,
                            grouped,
                            visited,
                            spreads + 1,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `@skip(if:)` / `@include(if:)`; any other directive is left to
    /// async-graphql.
    fn included(&mut self, directives: &[Positioned<Directive>]) -> Planned<bool> {
        for directive in directives {
            let directive = &directive.node;
            let skip_when = match directive.name.node.as_str() {
                "skip" => true,
                "include" => false,
                _ => return Err(Unplannable),
            };
            let condition = match directive.get_argument("if").map(|v| &v.node) {
                Some(InputValue::Boolean(b)) => *b,
                Some(InputValue::Variable(var)) => {
                    self.depends_on_variables = true;
                    match variable_value(self.operation, self.variables, var) {
                        Some(GqlValue::Boolean(b)) => b,
                        _ => return Err(Unplannable),
                    }
                }
                _ => return Err(Unplannable),
            };
            if condition == skip_when {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn field(
        &mut self,
        type_name: &str,
        key: Name,
        nodes: &[&'a Positioned<Field>],
    ) -> Planned<FieldPlan> {
        // Errors point at the field's start, alias included (graphql-js).
        let pos = nodes[0].pos;
        let first = &nodes[0].node;
        let id = self.next_id;
        self.next_id += 1;
        self.args.push(None);
        let key_json = format!("{}:", serde_json::Value::String(key.to_string())).into_boxed_str();
        let name = first.name.node.as_str();
        if name == "__typename" {
            return Ok(FieldPlan {
                id,
                key,
                key_json,
                pos,
                kind: FieldKind::Typename,
            });
        }
        let binding = self
            .bindings
            .get(&format!("{type_name}.{name}"))
            .ok_or(Unplannable)?
            .clone();
        let sets: Vec<&'a SelectionSet> =
            nodes.iter().map(|f| &f.node.selection_set.node).collect();
        let sub = match innermost(&binding.output) {
            OutputKind::Object(object) => SubPlan::Object(Box::new(self.object(object, &sets)?)),
            OutputKind::Abstract(abstract_type) => SubPlan::Abstract(
                abstract_type
                    .possible
                    .iter()
                    .map(|possible| self.object(possible, &sets))
                    .collect::<Planned<_>>()?,
            ),
            _ => SubPlan::Leaf,
        };
        let calls = !matches!(
            binding.source,
            BoundSource::ParentKey(_) | BoundSource::From(_)
        );
        if calls {
            self.args[id] = Some(ArgsPlan {
                given: first
                    .arguments
                    .iter()
                    .map(|(name, value)| (name.node.clone(), value.node.clone()))
                    .collect(),
                defaults: self
                    .schema
                    .arg_defaults
                    .get(&binding.name)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        let resolves = calls || sub.resolves();
        Ok(FieldPlan {
            id,
            key,
            key_json,
            pos,
            kind: FieldKind::Field {
                binding,
                sub,
                resolves,
            },
        })
    }
}

/// The type at the bottom of `ty`'s lists.
fn innermost(ty: &OutputType) -> &OutputKind {
    match &ty.kind {
        OutputKind::List(inner) => innermost(inner),
        kind => kind,
    }
}
