//! One operation of a document → an [`OperationPlan`]: the GraphQL spec's
//! CollectFields done once (fragments expanded, type conditions matched,
//! `@skip`/`@include` applied, repeated response keys merged), every field
//! tied to its binding, response keys pre-rendered as JSON, arguments
//! without variables coerced once. Queries and mutations plan alike (a
//! mutation's root fields then run one after another); the root's
//! introspection fields (`__schema`, `__type`) are set aside as a document
//! of their own, which async-graphql answers from the schema. When the
//! client takes incremental delivery, a fragment with `@defer` is planned
//! apart from the fields around it ([`DeferredPlan`], docs/DEFER.md).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, FragmentDefinition,
    OperationDefinition, OperationType, Selection, SelectionSet, Type, TypeKind,
    VariableDefinition,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Pos, Value as GqlValue, Variables};
use async_graphql_value::Value as InputValue;
use indexmap::IndexMap;
use rustc_hash::FxHashMap;

use crate::connector::coerce::{OutputKind, OutputType};
use crate::execute::variables::InputTypes;
use crate::schema::binding::BoundSource;
use crate::schema::{Bindings, FieldBinding, SchemaModel};

/// Fragment spreads followed inside one another, at most (validation has
/// already refused cycles; this bounds the work on a hostile document).
const MAX_SPREAD_DEPTH: usize = 32;

/// What the planner needs from the schema, computed once per gateway.
pub struct PlanSchema {
    pub query_type: String,
    pub mutation_type: Option<String>,
    pub subscription_type: Option<String>,
    /// Object type → the interfaces it implements and the unions it is in.
    supertypes: HashMap<String, HashSet<String>>,
    /// `Type.field` → its arguments: name, type, SDL default.
    field_args: HashMap<String, Arc<[ArgDefinition]>>,
    pub inputs: Arc<InputTypes>,
}

/// One argument of a field, as the SDL declares it.
pub struct ArgDefinition {
    name: Name,
    ty: Type,
    default: Option<GqlValue>,
}

impl PlanSchema {
    pub fn new(sdl: &SchemaModel) -> Self {
        let mut supertypes: HashMap<String, HashSet<String>> = HashMap::new();
        let mut field_args = HashMap::new();
        for (name, definition) in &sdl.types {
            match &definition.kind {
                TypeKind::Object(object) => {
                    let entry = supertypes.entry(name.clone()).or_default();
                    entry.extend(object.implements.iter().map(|i| i.node.to_string()));
                    for field in &object.fields {
                        let args: Vec<ArgDefinition> = field
                            .node
                            .arguments
                            .iter()
                            .map(|arg| ArgDefinition {
                                name: arg.node.name.node.clone(),
                                ty: arg.node.ty.node.clone(),
                                default: arg.node.default_value.as_ref().map(|d| d.node.clone()),
                            })
                            .collect();
                        if !args.is_empty() {
                            field_args.insert(format!("{name}.{}", field.node.name.node), args);
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
        // An argument's SDL default is coerced once, here, like a value
        // the document writes (its input objects' own defaults filled in).
        let inputs = Arc::new(InputTypes::new(sdl));
        for args in field_args.values_mut() {
            for arg in args.iter_mut() {
                if let Some(default) = arg.default.take() {
                    arg.default = Some(inputs.coerce_argument(default, &arg.ty));
                }
            }
        }
        let field_args = field_args
            .into_iter()
            .map(|(name, args)| (name, Arc::from(args)))
            .collect();
        PlanSchema {
            query_type: sdl.query_type.clone(),
            mutation_type: sdl.mutation_type.clone(),
            subscription_type: sdl.subscription_type.clone(),
            supertypes,
            field_args,
            inputs,
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
    /// A mutation: the root's fields run one after another, in order.
    pub serial: bool,
    /// The root's `__schema`/`__type` fields as a document of their own
    /// (with the fragments and variables they use), for async-graphql.
    pub introspection: Option<Introspection>,
    /// Coerces the arguments that hold variables, per request.
    pub inputs: Arc<InputTypes>,
    /// Fields in the plan (ids are `0..field_count`).
    pub field_count: usize,
    /// Arguments of the fields that make calls, by field id.
    pub args: Vec<Option<ArgsPlan>>,
    /// `@skip`/`@include` (or `@defer`'s `if`) read a variable: the plan
    /// holds for these variables' values only, so it is not kept for other
    /// requests.
    pub depends_on_variables: bool,
    /// Some fragment is deferred ([`ObjectPlan::deferred`]): the response
    /// is delivered in parts.
    pub defers: bool,
    /// How long the last response body written for this plan was: the
    /// next one is sized from it, so that a large answer is written into
    /// one buffer instead of one grown by doubling (which copied it and
    /// held up to twice its size).
    pub last_body_len: AtomicUsize,
    /// `Some` when the operation declares no variables: its arguments, and
    /// so its predicted calls, are the same for every request, and are
    /// predicted once (docs/PLAN.md). A plan belongs to the gateway it was
    /// planned by, whose `[limits]` a reload does not change (it builds a
    /// new gateway).
    pub predicted_once: Option<std::sync::OnceLock<u64>>,
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
                    .map(|(name, value)| {
                        name.len()
                            + match value {
                                GivenArg::Const(value) => const_bytes(value),
                                GivenArg::Variable(value) => value_bytes(value),
                            }
                    })
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

/// A coerced argument value's estimated heap, as [`value_bytes`].
fn const_bytes(value: &GqlValue) -> usize {
    const NODE_BYTES: usize = 128;
    NODE_BYTES
        + match value {
            GqlValue::String(text) => text.len(),
            GqlValue::Enum(name) => name.len(),
            GqlValue::List(items) => items.iter().map(const_bytes).sum(),
            GqlValue::Object(fields) => fields
                .iter()
                .map(|(name, value)| name.len() + const_bytes(value))
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
    /// Fragments with `@defer` on this object: resolved and delivered
    /// after the part that holds `fields` (never in `fields`, so no call
    /// of theirs is waited for by it).
    pub deferred: Vec<DeferredPlan>,
}

/// A deferred fragment on one object type: its fields (collected like any
/// selection, a `@defer` inside giving deferred plans of its own), and the
/// label its part carries.
pub struct DeferredPlan {
    pub label: Option<Box<str>>,
    pub plan: ObjectPlan,
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
    /// `__schema` or `__type`: its value is the introspection document's
    /// answer under the same response key.
    Introspection,
    Field {
        binding: Arc<FieldBinding>,
        sub: SubPlan,
        /// This field makes a call, or some field below it does.
        resolves: bool,
        /// The batched fields below this one (`Type.field`): while its
        /// call is in flight, their batches wait for the keys it may give.
        feeds: Vec<Arc<str>>,
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

/// A call field's arguments as written, and the SDL declarations that
/// coerce them and give the defaults of the ones left out.
pub struct ArgsPlan {
    pub given: Vec<(Name, GivenArg)>,
    pub definitions: Arc<[ArgDefinition]>,
}

/// An argument written in the document.
pub enum GivenArg {
    /// No variable inside: coerced once, when planned.
    Const(GqlValue),
    /// Holds variables: substituted and coerced per request.
    Variable(InputValue),
}

impl ArgsPlan {
    /// The arguments a request gives (GraphQL spec CoerceArgumentValues):
    /// variables substituted (an omitted variable without a default leaves
    /// its argument out), every value coerced to its declared type, SDL
    /// defaults for the rest.
    pub fn values(
        &self,
        operation: &OperationDefinition,
        variables: &Variables,
        inputs: &InputTypes,
    ) -> IndexMap<Name, GqlValue> {
        let mut args = IndexMap::with_capacity(self.definitions.len());
        for (name, value) in &self.given {
            let value = match value {
                GivenArg::Const(value) => value.clone(),
                GivenArg::Variable(InputValue::Variable(var)) => {
                    // Already coerced with the request's variables.
                    match variable_value(operation, variables, var) {
                        Some(value) => value,
                        None => continue,
                    }
                }
                GivenArg::Variable(value) => {
                    let value = substitute(value, operation, variables);
                    match self.definition(name) {
                        Some(definition) => inputs.coerce_argument(value, &definition.ty),
                        None => value,
                    }
                }
            };
            args.insert(name.clone(), value);
        }
        for definition in self.definitions.iter() {
            if let (Some(default), false) =
                (&definition.default, args.contains_key(&definition.name))
            {
                args.insert(definition.name.clone(), default.clone());
            }
        }
        args
    }

    fn definition(&self, name: &Name) -> Option<&ArgDefinition> {
        self.definitions.iter().find(|d| &d.name == name)
    }
}

/// Whether an argument value holds a variable anywhere.
fn has_variable(value: &InputValue) -> bool {
    match value {
        InputValue::Variable(_) => true,
        InputValue::List(items) => items.iter().any(has_variable),
        InputValue::Object(fields) => fields.values().any(has_variable),
        _ => false,
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

/// Why a valid operation cannot run: validation lets through what no
/// plan answers (a subscription, which needs a streaming transport).
#[derive(Debug)]
pub struct Unplannable(pub String);

type Planned<T> = Result<T, Unplannable>;

/// Plans `operation` of `document`; `incremental`: the client takes
/// incremental delivery, so `@defer` defers.
pub fn plan(
    schema: &PlanSchema,
    bindings: &Bindings,
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
    incremental: bool,
) -> Planned<OperationPlan> {
    let root_type = match operation.ty {
        OperationType::Query => &schema.query_type,
        OperationType::Mutation => schema
            .mutation_type
            .as_ref()
            .ok_or_else(|| Unplannable("the schema has no mutation type".to_owned()))?,
        // Planned like a query: each event resolves the selection below
        // the subscription field (docs/SUBSCRIPTIONS.md); the transports
        // decide whether one may run.
        OperationType::Subscription => schema
            .subscription_type
            .as_ref()
            .ok_or_else(|| Unplannable("the schema has no subscription type".to_owned()))?,
    };
    let mut planner = Planner {
        schema,
        bindings,
        document,
        operation,
        variables,
        next_id: 0,
        args: Vec::new(),
        depends_on_variables: false,
        introspection: Vec::new(),
        root: true,
        incremental,
        deferred: 0,
    };
    let root = planner.object(root_type, &[&operation.selection_set.node])?;
    let introspection = (!planner.introspection.is_empty()).then(|| Introspection {
        document: introspection_document(document, operation, &planner.introspection),
        answered: std::sync::OnceLock::new(),
    });
    Ok(OperationPlan {
        root,
        serial: operation.ty == OperationType::Mutation,
        introspection,
        inputs: schema.inputs.clone(),
        field_count: planner.next_id,
        args: planner.args,
        depends_on_variables: planner.depends_on_variables,
        defers: planner.deferred > 0,
        last_body_len: AtomicUsize::new(0),
        predicted_once: operation
            .variable_definitions
            .is_empty()
            .then(std::sync::OnceLock::new),
    })
}

/// The root's introspection fields, answered by async-graphql.
pub struct Introspection {
    pub document: ExecutableDocument,
    /// The answer, once given, when it reads no variable: the schema does
    /// not change under a plan, so the document is validated and run once,
    /// not per request (GraphiQL asks the same question at every load).
    pub answered: std::sync::OnceLock<Arc<async_graphql::Response>>,
}

impl Introspection {
    /// Whether the answer is the same for every request.
    pub fn is_constant(&self) -> bool {
        match &self.document.operations {
            DocumentOperations::Single(op) => op.node.variable_definitions.is_empty(),
            DocumentOperations::Multiple(_) => false,
        }
    }
}

/// A query of the root's introspection fields alone, with the fragments
/// and variable definitions they use (validation refuses unused ones).
fn introspection_document(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    fields: &[Positioned<Field>],
) -> ExecutableDocument {
    let mut fragments: HashMap<Name, Positioned<FragmentDefinition>> = HashMap::new();
    let mut variables: HashSet<Name> = HashSet::new();
    let mut pending: Vec<&SelectionSet> =
        fields.iter().map(|f| &f.node.selection_set.node).collect();
    for field in fields {
        uses_variables(
            &field.node.arguments,
            &field.node.directives,
            &mut variables,
        );
    }
    while let Some(set) = pending.pop() {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    uses_variables(
                        &field.node.arguments,
                        &field.node.directives,
                        &mut variables,
                    );
                    pending.push(&field.node.selection_set.node);
                }
                Selection::InlineFragment(inline) => {
                    uses_variables(&[], &inline.node.directives, &mut variables);
                    pending.push(&inline.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    uses_variables(&[], &spread.node.directives, &mut variables);
                    let name = &spread.node.fragment_name.node;
                    if fragments.contains_key(name) {
                        continue;
                    }
                    if let Some(fragment) = document.fragments.get(name) {
                        fragments.insert(name.clone(), fragment.clone());
                        pending.push(&fragment.node.selection_set.node);
                    }
                }
            }
        }
    }
    let variable_definitions: Vec<Positioned<VariableDefinition>> = operation
        .variable_definitions
        .iter()
        .filter(|d| variables.contains(&d.node.name.node))
        .cloned()
        .collect();
    let selection_set = SelectionSet {
        items: fields
            .iter()
            .map(|f| Positioned::new(Selection::Field(f.clone()), f.pos))
            .collect(),
    };
    // A `@defer` in there is answered inline, like any fragment.
    super::deferred::inlined(ExecutableDocument {
        operations: DocumentOperations::Single(Positioned::new(
            OperationDefinition {
                ty: OperationType::Query,
                variable_definitions,
                directives: Vec::new(),
                selection_set: Positioned::new(selection_set, operation.selection_set.pos),
            },
            operation.selection_set.pos,
        )),
        fragments: fragments.into_iter().collect(),
    })
}

/// Adds the variables named in `arguments` and `directives` to `used`.
fn uses_variables(
    arguments: &[(Positioned<Name>, Positioned<InputValue>)],
    directives: &[Positioned<Directive>],
    used: &mut HashSet<Name>,
) {
    // `@defer` is taken out of the introspection document (`deferred::inlined`).
    let values = arguments.iter().map(|(_, v)| &v.node).chain(
        directives
            .iter()
            .filter(|d| d.node.name.node != super::deferred::DEFER)
            .flat_map(|d| d.node.arguments.iter().map(|(_, v)| &v.node)),
    );
    for value in values {
        variables_in(value, used);
    }
}

fn variables_in(value: &InputValue, used: &mut HashSet<Name>) {
    match value {
        InputValue::Variable(name) => {
            used.insert(name.clone());
        }
        InputValue::List(items) => items.iter().for_each(|v| variables_in(v, used)),
        InputValue::Object(fields) => fields.values().for_each(|v| variables_in(v, used)),
        _ => {}
    }
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
    /// The root's introspection fields, merged by response key.
    introspection: Vec<Positioned<Field>>,
    /// Planning the root's own selection (introspection fields live there
    /// only).
    root: bool,
    /// The client takes incremental delivery: an active `@defer` makes a
    /// [`DeferredPlan`]; otherwise its fragment is collected like any other.
    incremental: bool,
    /// Deferred fragments planned.
    deferred: usize,
}

/// A deferred fragment found by CollectFields: its label and selection.
type Deferral<'d> = (Option<Box<str>>, &'d SelectionSet);

/// Field nodes by response key, in first-seen order.
type Grouped<'d> = IndexMap<Name, Vec<&'d Positioned<Field>>>;

impl<'a> Planner<'a> {
    /// The plan for the selection sets `sets` (merged) on object type
    /// `type_name`.
    fn object(&mut self, type_name: &str, sets: &[&'a SelectionSet]) -> Planned<ObjectPlan> {
        let mut grouped = Grouped::new();
        let mut visited = HashSet::new();
        let mut deferrals = Vec::new();
        for set in sets {
            self.collect(
                type_name,
                set,
                &mut grouped,
                &mut deferrals,
                &mut visited,
                0,
            )?;
        }
        let root = std::mem::replace(&mut self.root, false);
        let mut fields = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            fields.push(self.field(type_name, key, &nodes, root)?);
        }
        let mut deferred = Vec::with_capacity(deferrals.len());
        for (label, set) in deferrals {
            self.deferred += 1;
            // A deferred fragment on the root may hold its introspection
            // fields too.
            self.root = root;
            let plan = self.object(type_name, &[set])?;
            deferred.push(DeferredPlan { label, plan });
        }
        let resolves = fields.iter().any(|f| match &f.kind {
            FieldKind::Field { resolves, .. } => *resolves,
            FieldKind::Typename | FieldKind::Introspection => false,
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
            deferred,
        })
    }

    /// GraphQL spec CollectFields; the fragments it defers are set aside
    /// in `deferrals` (each collected on its own, with the fields it
    /// repeats from around it: the 2022-08-24 incremental delivery format
    /// sends those again, and clients merge them).
    fn collect(
        &mut self,
        type_name: &str,
        set: &'a SelectionSet,
        grouped: &mut Grouped<'a>,
        deferrals: &mut Vec<Deferral<'a>>,
        visited: &mut HashSet<&'a str>,
        spreads: usize,
    ) -> Planned<()> {
        for selection in &set.items {
            let directives = selection.node.directives();
            if !self.included(directives.as_slice())? {
                continue;
            }
            let deferred = match &selection.node {
                Selection::Field(_) => None,
                _ => self.deferred_label(directives.as_slice()),
            };
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
                    if let (true, Some(label)) = (applies, deferred) {
                        deferrals.push((label, &inline.selection_set.node));
                    } else if applies {
                        self.collect(
                            type_name,
                            &inline.selection_set.node,
                            grouped,
                            deferrals,
                            visited,
                            spreads,
                        )?;
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    // A deferred spread does not count as visited: the same
                    // fragment spread without `@defer` still adds its fields.
                    if deferred.is_none() && !visited.insert(name) {
                        continue;
                    }
                    if spreads >= MAX_SPREAD_DEPTH {
                        return Err(Unplannable(format!(
                            "fragments spread inside one another more than {MAX_SPREAD_DEPTH} deep"
                        )));
                    }
                    let fragment = self
                        .document
                        .fragments
                        .get(name)
                        .ok_or_else(|| Unplannable(format!("unknown fragment `{name}`")))?;
                    let applies = self
                        .schema
                        .applies(&fragment.node.type_condition.node.on.node, type_name);
                    if let (true, Some(label)) = (applies, deferred) {
                        deferrals.push((label, &fragment.node.selection_set.node));
                    } else if applies {
                        self.collect(
                            type_name,
                            &fragment.node.selection_set.node,
                            grouped,
                            deferrals,
                            visited,
                            spreads + 1,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `@skip(if:)` / `@include(if:)`. Other directives the schema
    /// declares (validation refuses any other) change nothing here.
    fn included(&mut self, directives: &[Positioned<Directive>]) -> Planned<bool> {
        for directive in directives {
            let directive = &directive.node;
            let skip_when = match directive.name.node.as_str() {
                "skip" => true,
                "include" => false,
                _ => continue,
            };
            let condition = match directive.get_argument("if").map(|v| &v.node) {
                Some(InputValue::Boolean(b)) => *b,
                Some(InputValue::Variable(var)) => {
                    self.depends_on_variables = true;
                    match variable_value(self.operation, self.variables, var) {
                        Some(GqlValue::Boolean(b)) => b,
                        // Validation and coercion guarantee a Boolean!.
                        _ => false,
                    }
                }
                _ => false,
            };
            if condition == skip_when {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `Some(label)` when `directives` defer their fragment: `@defer` whose
    /// `if` is true, for a client that takes incremental delivery. The
    /// arguments' shapes were checked before validation
    /// (`deferred::rewrite_for_validation`).
    fn deferred_label(&mut self, directives: &[Positioned<Directive>]) -> Option<Option<Box<str>>> {
        let defer = directives
            .iter()
            .find(|d| d.node.name.node == super::deferred::DEFER)?;
        if !self.incremental {
            return None;
        }
        let active = match defer.node.get_argument("if").map(|v| &v.node) {
            None => true,
            Some(InputValue::Boolean(b)) => *b,
            Some(InputValue::Variable(var)) => {
                self.depends_on_variables = true;
                matches!(
                    variable_value(self.operation, self.variables, var),
                    Some(GqlValue::Boolean(true))
                )
            }
            Some(_) => false,
        };
        let label = match defer.node.get_argument("label").map(|v| &v.node) {
            Some(InputValue::String(label)) => Some(label.as_str().into()),
            _ => None,
        };
        active.then_some(label)
    }

    fn field(
        &mut self,
        type_name: &str,
        key: Name,
        nodes: &[&'a Positioned<Field>],
        root: bool,
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
        if root && matches!(name, "__schema" | "__type") {
            // One field under its response key, its selections merged.
            let mut merged = nodes[0].clone();
            for node in &nodes[1..] {
                merged
                    .node
                    .selection_set
                    .node
                    .items
                    .extend(node.node.selection_set.node.items.iter().cloned());
            }
            self.introspection.push(merged);
            return Ok(FieldPlan {
                id,
                key,
                key_json,
                pos,
                kind: FieldKind::Introspection,
            });
        }
        let binding = self
            .bindings
            .get(&format!("{type_name}.{name}"))
            .ok_or_else(|| Unplannable(format!("`{type_name}.{name}` has no binding")))?
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
        // A shaped field's answer is kept like a call's (docs/SHAPING.md).
        let calls = binding.shape.is_some()
            || !matches!(
                binding.source,
                BoundSource::ParentKey(_) | BoundSource::From(_)
            );
        if calls {
            let definitions = self
                .schema
                .field_args
                .get(&binding.name)
                .cloned()
                .unwrap_or_else(|| Arc::from(Vec::new()));
            let given = first
                .arguments
                .iter()
                .map(|(name, value)| {
                    let name = name.node.clone();
                    let value = &value.node;
                    if has_variable(value) {
                        return (name, GivenArg::Variable(value.clone()));
                    }
                    let literal = value.clone().into_const().unwrap_or(GqlValue::Null);
                    let coerced = match definitions.iter().find(|d| d.name == name) {
                        Some(definition) => {
                            self.schema.inputs.coerce_argument(literal, &definition.ty)
                        }
                        None => literal,
                    };
                    (name, GivenArg::Const(coerced))
                })
                .collect();
            self.args[id] = Some(ArgsPlan { given, definitions });
        }
        let resolves = calls || sub.resolves();
        let mut feeds = Vec::new();
        batched_below(&sub, &mut feeds);
        Ok(FieldPlan {
            id,
            key,
            key_json,
            pos,
            kind: FieldKind::Field {
                binding,
                sub,
                resolves,
                feeds,
            },
        })
    }
}

/// Adds the batched fields anywhere in `sub` to `feeds`, once each.
fn batched_below(sub: &SubPlan, feeds: &mut Vec<Arc<str>>) {
    let plans: &[ObjectPlan] = match sub {
        SubPlan::Leaf => return,
        SubPlan::Object(plan) => std::slice::from_ref(&**plan),
        SubPlan::Abstract(plans) => plans,
    };
    for plan in plans {
        for field in &plan.fields {
            let FieldKind::Field { binding, sub, .. } = &field.kind else {
                continue;
            };
            if let BoundSource::Batch(batch) = &binding.source {
                if !feeds.contains(&batch.id) {
                    feeds.push(batch.id.clone());
                }
            }
            batched_below(sub, feeds);
        }
    }
}

/// The type at the bottom of `ty`'s lists.
fn innermost(ty: &OutputType) -> &OutputKind {
    match &ty.kind {
        OutputKind::List(inner) => innermost(inner),
        kind => kind,
    }
}
