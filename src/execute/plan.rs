//! Planned lists: a list field whose items need no per-item resolver is
//! rendered in one synchronous pass over the upstream JSON, straight into
//! response values, instead of the executor resolving every field of every
//! item (PERFORMANCE.md: a boxed future per field and a map per object is
//! what makes generic executors 20-40x slower than hand-written code on
//! large lists, and what fills memory under load).
//!
//! "No per-item resolver" means every selected field reads the item's JSON
//! (same-name key or `from`), or is a batched field (one level deep) whose
//! keys are then collected from the whole list at once — batching decided
//! when the list arrives. Anything else (calls, access rules, abstract
//! types, directives, repeated response keys, errors while rendering)
//! falls back to the executor, which then answers exactly as before.
//!
//! The rendered items are handed to the executor through
//! `OperationState::precompute`: `execute::rules` answers each list item's
//! path with its value without resolving its fields.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dynamic::{FieldValue, ResolverContext};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Value as GqlValue};
use futures::future::join_all;
use indexmap::IndexMap;
use serde_json::Value;

use super::operation::OperationState;
use super::resolver::{fetch_batch, Binding, FieldScope};
use crate::batch::{key_text, BatchId};
use crate::connector::coerce::{self, OutputKind, OutputType};
use crate::connector::request::render_body;
use crate::connector::template::{value_at, Placeholder, Root, Scope};
use crate::schema::binding::{BoundBatch, BoundSource};
use crate::schema::Bindings;

/// Fragment spreads followed inside one plan, at most.
const MAX_SPREAD_DEPTH: usize = 16;

struct ObjectPlan {
    type_name: Name,
    fields: Vec<PlannedField>,
}

struct PlannedField {
    key: Name,
    kind: PlanKind,
}

enum PlanKind {
    Typename,
    /// Read from the item's JSON (same-name key or `from`).
    Read {
        binding: Arc<Binding>,
        sub: Option<ObjectPlan>,
    },
    /// A batched field; its items come from `batches[index]`.
    Batched {
        binding: Arc<Binding>,
        index: usize,
        sub: Option<ObjectPlan>,
    },
}

/// Renders `value` for `binding`'s list field when it can be planned;
/// `None` leaves the value to the executor.
pub(super) async fn render_list<'a>(
    binding: &Binding,
    value: &Value,
    ctx: &ResolverContext<'a>,
    state: &OperationState,
) -> Option<Result<Option<FieldValue<'a>>, async_graphql::Error>> {
    let OutputKind::List(item_type) = &binding.output.kind else {
        return None;
    };
    let OutputKind::Object(type_name) = &item_type.kind else {
        return None;
    };
    let Value::Array(items) = value else {
        return None;
    };
    let (Some(bindings), Some(document)) = (&state.bindings, &state.document) else {
        return None;
    };
    let mut batched = Vec::new();
    let planner = Planner { bindings, document };
    let plan = planner.object(
        type_name,
        &ctx.ctx.item.node.selection_set,
        &mut batched,
        true,
        0,
    )?;
    let loaded = load_batches(&batched, items, state).await?;
    let mut rendered = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        rendered.push(shape(Some(item), item_type, Some(&plan), &loaded, Some(index)).ok()?);
    }
    let list_path = ctx
        .ctx
        .path_node
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let count = rendered.len();
    state.precompute(&list_path, rendered);
    // The executor still walks the list, item by item, but each item is
    // answered from the precomputed values without resolving its fields.
    Some(Ok(Some(FieldValue::list(
        (0..count).map(|_| FieldValue::NULL),
    ))))
}

/// What the executor holds for a planned item. Its fields are never
/// resolved (`execute::rules` answers the item); if they ever were, the
/// resolver sees this parent and fails loudly instead of reading nothing.
pub(super) struct PlannedItem;

struct Planner<'a> {
    bindings: &'a Bindings,
    document: &'a ExecutableDocument,
}

impl Planner<'_> {
    /// The plan for a selection on object type `type_name`, or `None` when
    /// some part needs the executor.
    fn object(
        &self,
        type_name: &str,
        set: &Positioned<SelectionSet>,
        batched: &mut Vec<Arc<Binding>>,
        allow_batch: bool,
        spreads: usize,
    ) -> Option<ObjectPlan> {
        let mut plan = ObjectPlan {
            type_name: Name::new(type_name),
            fields: Vec::new(),
        };
        let mut keys = HashSet::new();
        self.collect(
            type_name,
            set,
            batched,
            allow_batch,
            spreads,
            &mut plan.fields,
            &mut keys,
        )?;
        Some(plan)
    }

    #[allow(clippy::too_many_arguments)]
    fn collect(
        &self,
        type_name: &str,
        set: &Positioned<SelectionSet>,
        batched: &mut Vec<Arc<Binding>>,
        allow_batch: bool,
        spreads: usize,
        fields: &mut Vec<PlannedField>,
        keys: &mut HashSet<Name>,
    ) -> Option<()> {
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if !field.directives.is_empty() {
                        return None;
                    }
                    let key = field.response_key().node.clone();
                    // Two selections of one response key merge their
                    // sub-selections: left to the executor.
                    if !keys.insert(key.clone()) {
                        return None;
                    }
                    let name = field.name.node.as_str();
                    if name == "__typename" {
                        fields.push(PlannedField {
                            key,
                            kind: PlanKind::Typename,
                        });
                        continue;
                    }
                    let binding = self.bindings.get(&format!("{type_name}.{name}"))?;
                    if binding.access.is_some() {
                        return None;
                    }
                    let sub = match named_object(&binding.output) {
                        Some(child) => Some(self.object(
                            child,
                            &field.selection_set,
                            batched,
                            false,
                            spreads,
                        )?),
                        None if is_leaf(&binding.output) => None,
                        None => return None,
                    };
                    let kind = match &binding.source {
                        BoundSource::ParentKey(_) | BoundSource::From(_) => PlanKind::Read {
                            binding: binding.clone(),
                            sub,
                        },
                        BoundSource::Batch(_) if allow_batch && field.arguments.is_empty() => {
                            batched.push(binding.clone());
                            PlanKind::Batched {
                                binding: binding.clone(),
                                index: batched.len() - 1,
                                sub,
                            }
                        }
                        _ => return None,
                    };
                    fields.push(PlannedField { key, kind });
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let applies = inline
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| c.node.on.node == type_name);
                    if !inline.directives.is_empty() || !applies {
                        return None;
                    }
                    self.collect(
                        type_name,
                        &inline.selection_set,
                        batched,
                        allow_batch,
                        spreads,
                        fields,
                        keys,
                    )?;
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = self
                        .document
                        .fragments
                        .get(&spread.node.fragment_name.node)?;
                    if !spread.node.directives.is_empty()
                        || fragment.node.type_condition.node.on.node != type_name
                        || spreads >= MAX_SPREAD_DEPTH
                    {
                        return None;
                    }
                    self.collect(
                        type_name,
                        &fragment.node.selection_set,
                        batched,
                        allow_batch,
                        spreads + 1,
                        fields,
                        keys,
                    )?;
                }
            }
        }
        Some(())
    }
}

/// The object type at the bottom of `ty`'s lists, if it is one.
fn named_object(ty: &OutputType) -> Option<&str> {
    match &ty.kind {
        OutputKind::List(inner) => named_object(inner),
        OutputKind::Object(name) => Some(name),
        _ => None,
    }
}

fn is_leaf(ty: &OutputType) -> bool {
    match &ty.kind {
        OutputKind::List(inner) => is_leaf(inner),
        OutputKind::Scalar(_) | OutputKind::Enum(_) => true,
        _ => false,
    }
}

/// One batched field's items for the whole list: each list item's key
/// text, and the fetched items by key text.
struct LoadedBatch {
    item_keys: Vec<Option<String>>,
    by_key: HashMap<String, Vec<Value>>,
}

type Loaded = Vec<LoadedBatch>;

/// Loads every batched field's keys, from all items at once. `None` when a
/// batch failed or was served stale: the executor then reports it per path.
async fn load_batches(
    batched: &[Arc<Binding>],
    items: &[Value],
    state: &OperationState,
) -> Option<Loaded> {
    let mut loaded = Vec::with_capacity(batched.len());
    for binding in batched {
        let BoundSource::Batch(batch) = &binding.source else {
            return None;
        };
        let scope = FieldScope {
            binding,
            trace: (&state.trace, state.propagate_trace),
            args: None,
            parent: None,
            headers: &state.client_headers,
            claims: state.claims.as_deref(),
        };
        let claims = state.claims.as_deref();
        let mut keys: IndexMap<String, Value> = IndexMap::new();
        let mut item_keys = Vec::with_capacity(items.len());
        for item in items {
            let key = item_key(batch, item, claims);
            item_keys.push(key.as_ref().map(key_text));
            if let Some(key) = key {
                keys.entry(key_text(&key)).or_insert(key);
            }
        }
        let loads = keys.iter().map(|(text, key)| {
            let id = BatchId {
                field: batch.id.clone(),
                args: String::new(),
            };
            let scope = &scope;
            state
                .batches
                .load(id, text.clone(), key.clone(), move |keys| {
                    fetch_batch(batch, keys, scope, state)
                })
        });
        let mut by_key = HashMap::with_capacity(keys.len());
        for ((text, _), result) in keys.iter().zip(join_all(loads).await) {
            match result {
                Ok((items, false)) => {
                    by_key.insert(text.clone(), items);
                }
                _ => return None,
            }
        }
        loaded.push(LoadedBatch { item_keys, by_key });
    }
    Some(loaded)
}

/// One item's key for a batched field (its `{parent.…}` is the item).
fn item_key(batch: &BoundBatch, item: &Value, claims: Option<&Value>) -> Option<Value> {
    let scope = ItemScope { item, claims };
    render_body(
        &crate::config::BodyTemplate::Text(batch.spec.key.clone()),
        &scope,
    )
    .filter(|k| !k.is_null())
}

struct ItemScope<'a> {
    item: &'a Value,
    claims: Option<&'a Value>,
}

impl Scope for ItemScope<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Cow<'_, Value>> {
        match placeholder.root {
            Root::Parent => value_at(self.item, &placeholder.path).map(Cow::Borrowed),
            Root::Claims => value_at(self.claims?, &placeholder.path).map(Cow::Borrowed),
            _ => None,
        }
    }
}

/// `item`: the index of the list item being rendered, at its top level
/// (where batched fields are planned).
fn render_object(
    plan: &ObjectPlan,
    json: &Value,
    loaded: &Loaded,
    item: Option<usize>,
) -> Result<GqlValue, ()> {
    if !json.is_object() {
        return Err(());
    }
    let mut object = IndexMap::with_capacity(plan.fields.len());
    for field in &plan.fields {
        let value = match &field.kind {
            PlanKind::Typename => GqlValue::String(plan.type_name.to_string()),
            PlanKind::Read { binding, sub } => {
                let read = match &binding.source {
                    BoundSource::ParentKey(key) => json.get(key),
                    BoundSource::From(path) => value_at(json, path),
                    _ => return Err(()),
                };
                shape(read, &binding.output, sub.as_ref(), loaded, None)?
            }
            PlanKind::Batched {
                binding,
                index,
                sub,
            } => {
                // Batched fields are planned on list items only.
                let item = item.ok_or(())?;
                let batch = loaded.get(*index).ok_or(())?;
                let found: &[Value] = batch
                    .item_keys
                    .get(item)
                    .and_then(Option::as_ref)
                    .and_then(|key| batch.by_key.get(key))
                    .map_or(&[], Vec::as_slice);
                match &binding.output.kind {
                    // Every match, in upstream order (`[]` when none).
                    OutputKind::List(inner) => GqlValue::List(
                        found
                            .iter()
                            .map(|v| shape(Some(v), inner, sub.as_ref(), loaded, None))
                            .collect::<Result<_, ()>>()?,
                    ),
                    // The first match, or null.
                    _ => shape(found.first(), &binding.output, sub.as_ref(), loaded, None)?,
                }
            }
        };
        object.insert(field.key.clone(), value);
    }
    Ok(GqlValue::Object(object))
}

/// JSON → response value of type `ty`; any mismatch is `Err` (the
/// executor then reports it properly).
fn shape(
    json: Option<&Value>,
    ty: &OutputType,
    sub: Option<&ObjectPlan>,
    loaded: &Loaded,
    item: Option<usize>,
) -> Result<GqlValue, ()> {
    let json = match json {
        Some(json) if !json.is_null() => json,
        _ if ty.non_null => return Err(()),
        _ => return Ok(GqlValue::Null),
    };
    match &ty.kind {
        OutputKind::Scalar(_) | OutputKind::Enum(_) => coerce::leaf(json, &ty.kind).map_err(|_| ()),
        OutputKind::List(inner) => match json {
            Value::Array(items) => items
                .iter()
                .map(|item| shape(Some(item), inner, sub, loaded, None))
                .collect::<Result<Vec<_>, ()>>()
                .map(GqlValue::List),
            _ => Err(()),
        },
        OutputKind::Object(_) => render_object(sub.ok_or(())?, json, loaded, item),
        OutputKind::Abstract(_) => Err(()),
    }
}
