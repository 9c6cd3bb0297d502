//! The one resolver every object field runs: read the parent, or call the
//! field's service(s), then shape the JSON into the field's type.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dynamic::{FieldFuture, FieldValue, ObjectAccessor, ResolverContext};

use futures::future::join_all;
use http::HeaderMap;
use serde_json::Value;

use super::operation::{CallLabel, OperationState};
use super::shape::{shape_borrowed, shape_owned};
use crate::batch::{key_text, BatchId, BatchItems, Grouped};
use crate::connector::coerce::OutputKind;
use crate::connector::request::{self, render_body, ClientContext};
use crate::connector::template::{value_at, Placeholder, Root, Scope};
use crate::error::{ErrorCode, FieldError};
use crate::fetch::cache::{now_ms, Entry};
use crate::schema::binding::{BoundBatch, BoundCall, BoundSource};
pub use crate::schema::FieldBinding as Binding;
use crate::telemetry::trace::RequestTrace;
use crate::upstream::{CacheDirectives, UpstreamAnswer};

pub(super) type FieldResult<'a> = Result<Option<FieldValue<'a>>, async_graphql::Error>;

pub fn resolve(binding: Arc<Binding>, ctx: ResolverContext<'_>) -> FieldFuture<'_> {
    if let Some(rule) = &binding.access {
        // SPEC §4: checked before the field resolves; no call is made.
        let claims = ctx
            .data::<Arc<OperationState>>()
            .ok()
            .and_then(|s| s.claims.clone());
        if let Err(err) = rule.check(claims.as_deref()) {
            return ready(Err(err.into_graphql()));
        }
    }
    let parent = ctx.parent_value.downcast_ref::<Value>();
    if parent.is_none()
        && ctx
            .parent_value
            .downcast_ref::<super::plan::PlannedItem>()
            .is_some()
    {
        return ready(Err(FieldError::new(
            ErrorCode::Internal,
            "a planned list item was not answered from its rendered value",
        )
        .into_graphql()));
    }
    match &binding.source {
        // The common case by far: no call, no allocation beyond the value.
        BoundSource::ParentKey(key) => ready(shape_borrowed(
            parent.and_then(|p| p.get(key)),
            &binding,
            &ctx,
        )),
        BoundSource::From(path) => ready(shape_borrowed(
            parent.and_then(|p| value_at(p, path)),
            &binding,
            &ctx,
        )),
        BoundSource::Call(_) | BoundSource::Merge(_) | BoundSource::Batch(_) => {
            FieldFuture::new(async move {
                let deadline = ctx.data::<Arc<OperationState>>().ok().map(|s| s.deadline);
                let Some(deadline) = deadline else {
                    return resolve_calls(&binding, &ctx, parent).await;
                };
                // SPEC `request_timeout_ms`: a field still waiting when the
                // operation's time is up gets `TIMEOUT`; dropping its future
                // cancels the upstream call.
                match tokio::time::timeout_at(deadline, resolve_calls(&binding, &ctx, parent)).await
                {
                    Ok(result) => result,
                    Err(_) => Err(FieldError::new(
                        ErrorCode::Timeout,
                        "the operation did not finish within request_timeout_ms",
                    )
                    .into_graphql()),
                }
            })
        }
    }
}

fn ready(result: FieldResult<'_>) -> FieldFuture<'_> {
    match result {
        Ok(value) => FieldFuture::Value(value),
        Err(err) => FieldFuture::new(async move { Err::<Option<FieldValue<'_>>, _>(err) }),
    }
}

async fn resolve_calls<'a>(
    binding: &Binding,
    ctx: &ResolverContext<'a>,
    parent: Option<&'a Value>,
) -> FieldResult<'a> {
    let state = ctx.data::<Arc<OperationState>>().map_err(|_| {
        FieldError::new(ErrorCode::Internal, "operation state missing").into_graphql()
    })?;
    let scope = FieldScope {
        binding,
        trace: (&state.trace, state.propagate_trace),
        args: Some(&ctx.args),
        parent,
        headers: &state.client_headers,
        claims: state.claims.as_deref(),
    };
    match &binding.source {
        BoundSource::Call(call) => match fetch(call, &scope, state).await {
            (CallOutcome::Value(value), stale) => {
                note_stale(state, ctx, stale);
                // A list whose items need no per-item resolver is rendered
                // in one pass; otherwise the executor walks it field by field.
                match super::plan::render_list(binding, value.get(), ctx, state).await {
                    Some(rendered) => rendered,
                    None => shape_owned(value.into_owned(), binding, ctx),
                }
            }
            (CallOutcome::NotFound, _) => not_found(binding, &call.service.name),
            (CallOutcome::NoCall(placeholder), _) => {
                missing_value(binding, &placeholder, state.claims.as_deref())
            }
            (CallOutcome::Failed(err), _) => Err(err.into_graphql()),
        },
        BoundSource::Merge(calls) => {
            let answers = join_all(calls.iter().map(|call| fetch(call, &scope, state))).await;
            let mut merged = Value::Object(Default::default());
            let mut any_stale = false;
            for ((answer, stale), call) in answers.into_iter().zip(calls) {
                any_stale |= stale;
                match answer {
                    CallOutcome::Value(value) if value.get().is_object() => {
                        deep_merge(&mut merged, value.into_owned())
                    }
                    CallOutcome::Value(_) => {
                        return Err(bad_response(
                            binding,
                            "a `merge` call answered something other than an object",
                        )
                        .from_service(&call.service.name)
                        .into_graphql())
                    }
                    // SPEC: a 404 from any of them applies to the whole field.
                    CallOutcome::NotFound => return not_found(binding, &call.service.name),
                    CallOutcome::NoCall(placeholder) => {
                        return missing_value(binding, &placeholder, state.claims.as_deref())
                    }
                    CallOutcome::Failed(err) => return Err(err.into_graphql()),
                }
            }
            note_stale(state, ctx, any_stale);
            shape_owned(merged, binding, ctx)
        }
        BoundSource::Batch(batch) => resolve_batched(binding, batch, &scope, state, ctx).await,
        BoundSource::ParentKey(_) | BoundSource::From(_) => unreachable_source(binding),
    }
}

/// A batched field: its key joins the operation's batch for this field;
/// the matches come back as a list (list-typed field) or the first one.
async fn resolve_batched<'a>(
    binding: &Binding,
    batch: &BoundBatch,
    scope: &FieldScope<'_>,
    state: &OperationState,
    ctx: &ResolverContext<'a>,
) -> FieldResult<'a> {
    let key = render_body(
        &crate::config::BodyTemplate::Text(batch.spec.key.clone()),
        scope,
    );
    let key = match key {
        Some(key) if !key.is_null() => key,
        _ => {
            let placeholder = batch.spec.key.placeholders().next().cloned();
            return match placeholder {
                Some(placeholder) => missing_value(binding, &placeholder, state.claims.as_deref()),
                None => Ok(None),
            };
        }
    };
    let id = BatchId {
        field: batch.id.clone(),
        args: if ctx.args.is_empty() {
            String::new()
        } else {
            async_graphql::Value::Object(ctx.args.as_index_map().clone()).to_string()
        },
    };
    let (items, stale) = state
        .batches
        .load(id, key_text(&key), key, |keys| {
            fetch_batch(batch, keys, scope, state)
        })
        .await
        .map_err(FieldError::into_graphql)?;
    note_stale(state, ctx, stale);
    let value = match binding.output.kind {
        OutputKind::List(_) => Value::Array(items),
        _ => items.into_iter().next().unwrap_or(Value::Null),
    };
    shape_owned(value, binding, ctx)
}

/// One batch: keys with a fresh per-key cache entry are answered from it;
/// the rest go `max` keys per call, the calls made concurrently, every item
/// grouped under the text of its `match` field (and cached per key).
pub(super) async fn fetch_batch(
    batch: &BoundBatch,
    keys: Vec<Value>,
    scope: &FieldScope<'_>,
    state: &OperationState,
) -> crate::batch::BatchOutcome {
    let spec = &batch.spec;
    let build = |keys: &[Value]| {
        let keys = Value::Array(keys.to_vec());
        let scope = WithKeys {
            inner: scope,
            keys: &keys,
        };
        request::build(
            &spec.call,
            &batch.service,
            &scope,
            &scope.inner.client(),
            batch.timeout,
        )
        .map_err(|p| {
            FieldError::new(
                ErrorCode::MissingValue,
                format!("the batched call needs a value for `{p}`"),
            )
        })
    };
    let mut grouped = BatchItems::default();
    // Per-key cache entries are keyed by the call that would fetch that one
    // key alone, so they carry the same identity (headers included).
    let mut cache_keys: Vec<String> = Vec::new();
    let mut stale_entries: HashMap<String, Value> = HashMap::new();
    let mut missing = Vec::with_capacity(keys.len());
    match batch.cache {
        Some(_) => {
            let now = now_ms();
            for key in keys {
                let cache_key = build(std::slice::from_ref(&key))?
                    .identity()
                    .fingerprint(&batch.service.name);
                let entry = state.fetcher.lookup(&cache_key).await;
                match entry.as_deref() {
                    Some(Entry {
                        value: Some(Value::Array(items)),
                        ..
                    }) if entry.as_ref().is_some_and(|e| e.is_fresh(now)) => {
                        grouped.by_key.insert(key_text(&key), items.clone());
                        continue;
                    }
                    Some(
                        entry @ Entry {
                            value: Some(value), ..
                        },
                    ) if entry.is_usable_stale(now) => {
                        stale_entries.insert(key_text(&key), value.clone());
                    }
                    _ => {}
                }
                cache_keys.push(cache_key);
                missing.push(key);
            }
        }
        None => missing = keys,
    }
    let calls = missing.chunks(spec.max).map(|chunk| async {
        let request = build(chunk)?;
        // The per-key entries are the cache here, not the whole call.
        state
            .fetch(
                &batch.service,
                request,
                None,
                CallLabel {
                    path: spec.call.path_text.clone(),
                    batch_size: Some(chunk.len()),
                },
            )
            .await
            .map_err(|err| err.to_field_error())
    });
    let mut directives = CacheDirectives::default();
    for (answer, chunk) in join_all(calls)
        .await
        .into_iter()
        .zip(missing.chunks(spec.max))
    {
        let fetched = match answer {
            Ok(fetched) => fetched,
            Err(err) => {
                // SPEC `stale_if_error_s`: when every key of the failed
                // call has a stale entry, those stand in, marked stale.
                let texts: Vec<String> = chunk.iter().map(key_text).collect();
                if texts.iter().all(|t| stale_entries.contains_key(t)) {
                    for text in texts {
                        if let Some(Value::Array(items)) = stale_entries.remove(&text) {
                            grouped.by_key.insert(text.clone(), items);
                        }
                        grouped.stale.insert(text);
                    }
                    continue;
                }
                return Err(err);
            }
        };
        let Some(json) = fetched.answer.json() else {
            continue; // A 404 for a batch: none of its keys matched.
        };
        if let UpstreamAnswer::Json { cache, .. } = &*fetched.answer {
            directives = directives.strictest(*cache);
        }
        let list = match &spec.call.select {
            Some(path) => value_at(json, path),
            None => Some(json),
        };
        let Some(Value::Array(items)) = list else {
            return Err(FieldError::new(
                ErrorCode::UpstreamBadResponse,
                format!(
                    "service `{}` answered a batch with something other than a list",
                    batch.service.name
                ),
            )
            .from_service(&batch.service.name));
        };
        for item in items {
            if let Some(matched) = value_at(item, &spec.match_field) {
                grouped
                    .by_key
                    .entry(key_text(matched))
                    .or_default()
                    .push(item.clone());
            }
        }
    }
    if let Some(policy) = batch.cache {
        for (key, cache_key) in missing.iter().zip(cache_keys) {
            let text = key_text(key);
            if grouped.stale.contains(&text) {
                continue;
            }
            let items = grouped.by_key.get(&text).cloned().unwrap_or_default();
            state
                .fetcher
                .store(cache_key, Value::Array(items), directives, policy)
                .await;
        }
    }
    Ok(Grouped::new(grouped))
}

/// A field's scope plus `{keys}` for one batched call.
struct WithKeys<'a> {
    inner: &'a FieldScope<'a>,
    keys: &'a Value,
}

impl Scope for WithKeys<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Cow<'_, Value>> {
        match placeholder.root {
            Root::Keys => Some(Cow::Borrowed(self.keys)),
            _ => self.inner.lookup(placeholder),
        }
    }
}

fn unreachable_source<'a>(binding: &Binding) -> FieldResult<'a> {
    Err(FieldError::new(
        ErrorCode::Internal,
        format!("`{}` has no call", binding.name),
    )
    .into_graphql())
}

/// What one call of a field came to.
enum CallOutcome {
    Value(Selected),
    NotFound,
    NoCall(Placeholder),
    Failed(FieldError),
}

/// Builds, sends and selects one call; true when a stale cache entry
/// answered it.
async fn fetch(
    call: &BoundCall,
    scope: &FieldScope<'_>,
    state: &OperationState,
) -> (CallOutcome, bool) {
    let request = match request::build(
        &call.spec,
        &call.service,
        scope,
        &scope.client(),
        call.timeout,
    ) {
        Ok(request) => request,
        Err(placeholder) => return (CallOutcome::NoCall(placeholder.clone()), false),
    };
    let label = CallLabel {
        path: call.spec.path_text.clone(),
        batch_size: None,
    };
    let fetched = match state.fetch(&call.service, request, call.cache, label).await {
        Ok(fetched) => fetched,
        Err(err) => return (CallOutcome::Failed(err.to_field_error()), false),
    };
    let outcome = match &*fetched.answer {
        UpstreamAnswer::NotFound => CallOutcome::NotFound,
        UpstreamAnswer::Json { .. } => CallOutcome::Value(Selected {
            answer: fetched.answer.clone(),
            path: call.spec.select.clone(),
        }),
    };
    (outcome, fetched.stale)
}

/// An upstream answer and the part of it a field selects. Borrowed where
/// it can be (planned lists); copied only for a consumer that must own it.
struct Selected {
    answer: Arc<UpstreamAnswer>,
    path: Option<Vec<String>>,
}

static NULL: Value = Value::Null;

impl Selected {
    fn get(&self) -> &Value {
        let Some(json) = self.answer.json() else {
            return &NULL;
        };
        match &self.path {
            Some(path) => value_at(json, path).unwrap_or(&NULL),
            None => json,
        }
    }

    /// The selected value, moved out when nothing else holds the answer.
    fn into_owned(self) -> Value {
        match Arc::try_unwrap(self.answer) {
            Ok(UpstreamAnswer::Json { mut value, .. }) => match &self.path {
                Some(path) => value_at_mut(&mut value, path)
                    .map(Value::take)
                    .unwrap_or(Value::Null),
                None => value,
            },
            Ok(UpstreamAnswer::NotFound) => Value::Null,
            Err(shared) => Selected {
                answer: shared,
                path: self.path,
            }
            .get()
            .clone(),
        }
    }
}

fn value_at_mut<'v>(mut value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get_mut(segment)?,
            Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// SPEC `stale_if_error_s`: the response names every path served stale.
fn note_stale(state: &OperationState, ctx: &ResolverContext<'_>, stale: bool) {
    if stale {
        let path = ctx
            .ctx
            .path_node
            .as_ref()
            .map(super::path_of)
            .unwrap_or_default();
        state.mark_stale(path);
    }
}

/// SPEC: 404 makes a nullable field null without an error.
fn not_found<'a>(binding: &Binding, service: &str) -> FieldResult<'a> {
    if binding.output.non_null {
        let mut err = FieldError::new(
            ErrorCode::UpstreamError,
            format!("service `{service}` answered HTTP 404"),
        )
        .from_service(service);
        err.status = Some(404);
        Err(err.into_graphql())
    } else {
        Ok(None)
    }
}

/// SPEC: a path placeholder without a value makes no call; the field is
/// null, or `MISSING_VALUE` when it is non-null.
fn missing_value<'a>(
    binding: &Binding,
    placeholder: &Placeholder,
    claims: Option<&Value>,
) -> FieldResult<'a> {
    if placeholder.root == Root::Claims && claims.is_none() {
        return Err(FieldError::new(
            ErrorCode::Unauthenticated,
            format!("`{}` needs an authenticated caller", binding.name),
        )
        .into_graphql());
    }
    if binding.output.non_null {
        Err(FieldError::new(
            ErrorCode::MissingValue,
            format!("`{}` needs a value for `{placeholder}`", binding.name),
        )
        .into_graphql())
    } else {
        Ok(None)
    }
}

pub(super) fn bad_response(binding: &Binding, message: &str) -> FieldError {
    FieldError::new(
        ErrorCode::UpstreamBadResponse,
        format!("`{}`: {message}", binding.name),
    )
}

fn deep_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing @ Value::Object(_)) if value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

/// Placeholder values for one field: its arguments, its parent's JSON and
/// the client's headers.
pub(super) struct FieldScope<'a> {
    pub(super) binding: &'a Binding,
    /// Request id and trace context for the upstream headers, and whether
    /// to propagate the trace context.
    pub(super) trace: (&'a RequestTrace, bool),
    /// `None` where a field is resolved without its arguments (planned
    /// lists only plan fields that take none).
    pub(super) args: Option<&'a ObjectAccessor<'a>>,
    pub(super) parent: Option<&'a Value>,
    pub(super) headers: &'a HeaderMap,
    pub(super) claims: Option<&'a Value>,
}

impl FieldScope<'_> {
    fn client(&self) -> ClientContext<'_> {
        ClientContext {
            headers: self.headers,
            claims: self.claims,
            trace: self.trace,
        }
    }
}

impl Scope for FieldScope<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Cow<'_, Value>> {
        let path = &placeholder.path;
        match placeholder.root {
            Root::Args => {
                let mut value = self
                    .args?
                    .get(&path[0])?
                    .as_value()
                    .clone()
                    .into_json()
                    .ok()?;
                if let Some((_, ty)) = self
                    .binding
                    .input_args
                    .iter()
                    .find(|(name, _)| *name == path[0])
                {
                    self.binding.input_defaults.apply(&mut value, ty);
                }
                if path.len() == 1 {
                    return Some(Cow::Owned(value));
                }
                value_at(&value, &path[1..]).cloned().map(Cow::Owned)
            }
            Root::Parent => value_at(self.parent?, path).map(Cow::Borrowed),
            Root::Headers => {
                let value = self.headers.get(path.join(".").as_str())?;
                Some(Cow::Owned(Value::String(value.to_str().ok()?.to_owned())))
            }
            Root::Claims => value_at(self.claims?, path).map(Cow::Borrowed),
            Root::Keys => None,
        }
    }
}
