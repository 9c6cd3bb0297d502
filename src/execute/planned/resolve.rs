//! The engine's first phase: walk the upstream JSON along the
//! plan and make every call the operation needs — sibling fields and list
//! items concurrently, a list's batched fields for all its items at once —
//! keeping each answer under (parent object, field). Nothing is shaped or
//! written here; the second phase (`write`) reads the answers.
//!
//! Answers are keyed by the address of the parent JSON object: every value
//! walked lives in an answer kept until the operation ends, so an address
//! names one object for the whole operation. The same object reached twice
//! (a batch item shared by several parents) is walked once.
//!
//! A deferred fragment (`@defer`) is not walked with the part that holds
//! it: once that part is written, its calls are made at each object it was
//! found at ([`Resolution::deferred`]).

use std::sync::{Arc, Mutex};

use async_graphql::parser::types::OperationDefinition;
use async_graphql::Variables;
use futures::future::{join_all, BoxFuture, FutureExt};
use indexmap::IndexMap;
use rustc_hash::{FxHashMap, FxHashSet};
use sonic_rs::JsonValueTrait;

use super::deferred::{self, Step};
use super::plan::{FieldKind, FieldPlan, ObjectPlan, OperationPlan, SubPlan};
use crate::connector::coerce::{OutputKind, OutputType};
use crate::execute::calls::{self, Args, FieldAnswer, FieldScope, Held};
use crate::execute::operation::OperationState;
use crate::schema::binding::BoundSource;
use crate::upstream::json::{self, Json};

pub struct Resolution<'p> {
    state: &'p OperationState,
    /// Arguments of the fields that make calls, by field id.
    args: Vec<Option<Args>>,
    answers: Mutex<FxHashMap<(usize, usize), Arc<FieldAnswer>>>,
    /// (object, plan) pairs already walked.
    walked: Mutex<FxHashSet<(usize, usize)>>,
}

/// The identity of a JSON value while the operation holds it.
pub fn address(value: &Json) -> usize {
    value as *const Json as usize
}

/// The arguments of the fields that make calls, by field id, for one
/// request's variables.
pub fn arguments(
    plan: &OperationPlan,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Vec<Option<Args>> {
    plan.args
        .iter()
        .map(|args| {
            args.as_ref()
                .map(|a| a.values(operation, variables, &plan.inputs))
        })
        .collect()
}

impl<'p> Resolution<'p> {
    /// `args`: the request's [`arguments`].
    pub fn new(state: &'p OperationState, args: Vec<Option<Args>>) -> Self {
        Resolution {
            state,
            args,
            answers: Mutex::new(FxHashMap::default()),
            walked: Mutex::default(),
        }
    }

    /// Makes every call of the deferred fragment `plan` at the object
    /// `route` leads to from `object`. Every call on the route was made for
    /// the part that holds the fragment; its answers are looked up.
    pub fn deferred<'a>(
        &'a self,
        object: &'a Json,
        route: &'a [Step<'a>],
        plan: &'a ObjectPlan,
    ) -> BoxFuture<'a, ()> {
        async move {
            let Some((step, rest)) = route.split_first() else {
                return self.object(plan, object, false).await;
            };
            let Step::Field(field) = step else {
                return;
            };
            let answer = self.answer_of(object, field.id);
            if let Some((next, rest)) = deferred::follow(field, object, answer.as_deref(), rest) {
                self.deferred(next, rest, plan).await;
            }
        }
        .boxed()
    }

    /// The answer of field `id` for the object `parent`, when it was made.
    pub fn answer_of(&self, parent: &Json, id: usize) -> Option<Arc<FieldAnswer>> {
        self.lock_answers().get(&(address(parent), id)).cloned()
    }

    fn lock_answers(
        &self,
    ) -> std::sync::MutexGuard<'_, FxHashMap<(usize, usize), Arc<FieldAnswer>>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn claims(&self) -> Option<&serde_json::Value> {
        self.state.claims.as_deref()
    }

    pub fn state(&self) -> &OperationState {
        self.state
    }

    /// Makes every call of a mutation's root `plan`: its fields one after
    /// another, in document order, each finished — its own call and every
    /// call below it — before the next starts.
    pub async fn serial(&self, plan: &ObjectPlan, parent: &Json) {
        for field in plan.fields.iter().filter(|f| resolves(f)) {
            self.field(field, parent, false).await;
        }
    }

    /// Makes every call below `parent` for `plan`. `preloaded`: the
    /// object's batched fields were answered for its whole list already.
    pub fn object<'a>(
        &'a self,
        plan: &'a ObjectPlan,
        parent: &'a Json,
        preloaded: bool,
    ) -> BoxFuture<'a, ()> {
        async move {
            if !plan.resolves {
                return;
            }
            let first_walk = self
                .walked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((address(parent), plan as *const ObjectPlan as usize));
            if !first_walk {
                return;
            }
            let fields = plan.fields.iter().filter(|f| resolves(f));
            join_all(fields.map(|field| self.field(field, parent, preloaded))).await;
        }
        .boxed()
    }

    async fn field(&self, field: &FieldPlan, parent: &Json, preloaded: bool) {
        let FieldKind::Field {
            binding,
            sub,
            feeds,
            ..
        } = &field.kind
        else {
            return;
        };
        // A field the caller may not see makes no call (`write` reports it).
        if let Some(rule) = &binding.access {
            if rule.check(self.claims()).is_err() {
                return;
            }
        }
        match &binding.source {
            BoundSource::ParentKey(key) if binding.shape.is_none() => {
                self.below(sub, &binding.output, json::get(parent, key))
                    .await
            }
            BoundSource::From(path) if binding.shape.is_none() => {
                self.below(sub, &binding.output, json::at(parent, path))
                    .await
            }
            source => {
                let answer = if preloaded && matches!(source, BoundSource::Batch(_)) {
                    self.answer_of(parent, field.id)
                } else {
                    // A batched field waits on batches itself: counting it
                    // as a provider could make two batches wait on each
                    // other.
                    let no_feeds: &[Arc<str>] = &[];
                    let feeds = match source {
                        BoundSource::Batch(_) => no_feeds,
                        _ => feeds.as_slice(),
                    };
                    let providing = self.state.batches.provide(feeds);
                    let args = self.args[field.id].as_ref();
                    let scope = FieldScope::new(binding, self.state, args, Some(parent));
                    // Boxed: a call's future is kilobytes, and inline it made
                    // every field's future (and `join_all`'s list of them,
                    // grown by doubling) that large, calls or not.
                    let answer = Arc::new(Box::pin(calls::answer(&scope, self.state)).await);
                    self.lock_answers()
                        .insert((address(parent), field.id), answer.clone());
                    // Its keys join their batches in this same turn, as the
                    // walk below starts now.
                    drop(providing);
                    Some(answer)
                };
                if let Some(FieldAnswer::Value { held, .. }) = answer.as_deref() {
                    self.below_held(sub, &binding.output, held).await;
                }
            }
        }
    }

    async fn below_held(&self, sub: &SubPlan, ty: &OutputType, held: &Held) {
        match (held, &ty.kind) {
            (Held::Batch { .. }, OutputKind::List(item)) => {
                self.list(sub, item, held.matches()).await
            }
            _ => self.below(sub, ty, held.single()).await,
        }
    }

    /// Walks a field's value of type `ty` for the calls below it.
    fn below<'a>(
        &'a self,
        sub: &'a SubPlan,
        ty: &'a OutputType,
        value: Option<&'a Json>,
    ) -> BoxFuture<'a, ()> {
        async move {
            if !sub.resolves() {
                return;
            }
            let Some(value) = value else {
                return;
            };
            match &ty.kind {
                OutputKind::List(item) => {
                    if let Some(items) = json::items(value) {
                        self.list(sub, item, items).await
                    }
                }
                OutputKind::Object(_) if value.is_object() => {
                    if let Some(plan) = sub.for_type("") {
                        self.object(plan, value, false).await
                    }
                }
                OutputKind::Abstract(abstract_type) if value.is_object() => {
                    let plan = abstract_type
                        .concrete_type_of(value)
                        .ok()
                        .and_then(|t| sub.for_type(t));
                    if let Some(plan) = plan {
                        self.object(plan, value, false).await
                    }
                }
                _ => {}
            }
        }
        .boxed()
    }

    async fn list(&self, sub: &SubPlan, item: &OutputType, items: &[Json]) {
        let (OutputKind::Object(_), SubPlan::Object(plan)) = (&item.kind, sub) else {
            join_all(items.iter().map(|value| self.below(sub, item, Some(value)))).await;
            return;
        };
        self.preload_batches(plan, items).await;
        // Items need walking only for what preloading did not cover.
        let walk = plan.fields.iter().any(|field| match &field.kind {
            FieldKind::Field {
                binding,
                sub,
                resolves,
                ..
            } => *resolves && (!matches!(binding.source, BoundSource::Batch(_)) || sub.resolves()),
            FieldKind::Typename | FieldKind::Introspection => false,
        });
        if walk {
            let objects = items.iter().filter(|v| v.is_object());
            join_all(objects.map(|value| self.object(plan, value, true))).await;
        }
    }

    /// Answers the batched fields of `plan` for every item of a list in
    /// one go: all keys registered at once, one load per field (batching
    /// is decided when the list arrives).
    async fn preload_batches(&self, plan: &ObjectPlan, items: &[Json]) {
        for field in &plan.fields {
            let FieldKind::Field { binding, .. } = &field.kind else {
                continue;
            };
            let BoundSource::Batch(batch) = &binding.source else {
                continue;
            };
            if binding
                .access
                .as_ref()
                .is_some_and(|rule| rule.check(self.claims()).is_err())
            {
                continue;
            }
            let args = self.args[field.id].as_ref();
            // Items sharing a key share its answer: keys are rendered per
            // item, everything else is done per distinct key.
            let mut keys: IndexMap<String, Json, foldhash::fast::RandomState> = IndexMap::default();
            let mut item_keys = Vec::with_capacity(items.len());
            let mut first_parent: Vec<&Json> = Vec::new();
            let mut no_key = Vec::new();
            for value in items.iter().filter(|v| v.is_object()) {
                let scope = FieldScope::new(binding, self.state, args, Some(value));
                match calls::batch_key(batch, &scope) {
                    Some(key) => {
                        let (index, known) = keys.insert_full(json::key_text(&key), key);
                        if known.is_none() {
                            first_parent.push(value);
                        }
                        item_keys.push((address(value), index));
                    }
                    None => no_key.push((address(value), calls::no_key(binding, batch, &scope))),
                }
            }
            let found = if keys.is_empty() {
                Ok(Vec::new())
            } else {
                let scope = FieldScope::new(binding, self.state, args, None);
                let id = calls::batch_id(batch, args);
                let pairs = keys.iter().map(|(t, k)| (t.clone(), k.clone())).collect();
                let load = self.state.batches.load_many(&id, pairs, |keys| {
                    calls::fetch_batch(batch, keys, &scope, self.state)
                });
                tokio::time::timeout_at(self.state.deadline, load)
                    .await
                    .unwrap_or_else(|_| Err(calls::timed_out()))
            };
            let per_key: Vec<Arc<FieldAnswer>> = keys
                .into_keys()
                .enumerate()
                .map(|(index, text)| {
                    let answer = match &found {
                        Ok(found) => calls::batch_answer(found, text),
                        Err(err) => FieldAnswer::Failed(err.clone()),
                    };
                    if binding.shape.is_none() {
                        return Arc::new(answer);
                    }
                    // A shape's templates read the arguments (the same for
                    // every item) and the first parent with that key.
                    let parent = first_parent.get(index).copied();
                    let scope = FieldScope::new(binding, self.state, args, parent);
                    Arc::new(calls::shaped(answer, &scope))
                })
                .collect();
            let mut answers = self.lock_answers();
            for (object, answer) in no_key {
                answers.insert((object, field.id), Arc::new(answer));
            }
            for (object, index) in item_keys {
                answers.insert((object, field.id), per_key[index].clone());
            }
        }
    }
}

fn resolves(field: &FieldPlan) -> bool {
    matches!(field.kind, FieldKind::Field { resolves: true, .. })
}
