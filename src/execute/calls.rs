//! What a field with a call comes to: the call semantics of docs/CONFIG.md
//! (a 404, a path placeholder without a value, `merge`, `batch`,
//! `request_timeout_ms`) in one place, for the engine's resolve phase.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::{Name, Value as GqlValue};
use futures::future::join_all;
use http::HeaderMap;
use indexmap::IndexMap;
use serde_json::Value;
use sonic_rs::JsonValueTrait;

use super::operation::{CallLabel, OperationState};
use crate::batch::{BatchId, Grouped};
use crate::connector::coerce::{OutputKind, ScalarKind};
use crate::connector::errors::{Failed, Response};
use crate::connector::request::{self, render_value, ClientContext};
use crate::connector::template::{value_at, Looked, Placeholder, Root, Scope};
use crate::error::{ErrorCode, FieldError};
use crate::schema::binding::{BoundBatch, BoundCall, BoundSource};
use crate::schema::FieldBinding as Binding;
use crate::telemetry::trace::RequestTrace;
use crate::upstream::json::{self, key_text, Json};
use crate::upstream::UpstreamAnswer;

/// A field's arguments (variables substituted, SDL defaults added).
pub type Args = IndexMap<Name, GqlValue>;

/// What a field with a call comes to.
pub enum FieldAnswer {
    /// JSON to shape into the field's type; `stale` when a stale cache
    /// entry stood in for a failed call.
    Value {
        held: Held,
        stale: bool,
    },
    /// Null without an error (a 404 or a missing value, nullable field).
    Null,
    Failed(FieldError),
}

/// The JSON a call answered, kept without copying.
pub enum Held {
    Selected(Selected),
    /// A `merge` of several answers.
    Owned(Json),
    /// A batched field: the items matching `key` in `grouped`; every match
    /// for a list-typed field, else the first.
    Batch {
        grouped: Option<Grouped>,
        key: String,
    },
}

static EMPTY: Vec<Json> = Vec::new();

impl Held {
    /// A batched field's matches (empty for other answers).
    pub fn matches(&self) -> &[Json] {
        match self {
            Held::Batch {
                grouped: Some(grouped),
                key,
            } => grouped.by_key.get(key).unwrap_or(&EMPTY),
            _ => &EMPTY,
        }
    }

    /// The value for a field of a non-list type (a batch's first match).
    pub fn single(&self) -> Option<&Json> {
        match self {
            Held::Selected(selected) => Some(selected.get()),
            Held::Owned(value) => Some(value),
            Held::Batch { .. } => self.matches().first(),
        }
    }
}

/// Placeholder values for one field: its arguments, its parent's JSON and
/// the client's headers.
pub struct FieldScope<'a> {
    pub binding: &'a Binding,
    /// Request id and trace context for the upstream headers, and whether
    /// to propagate the trace context.
    pub trace: (&'a RequestTrace, bool),
    pub args: Option<&'a Args>,
    /// The parent's upstream JSON, for `{parent.…}`.
    pub parent: Option<&'a Json>,
    pub headers: &'a HeaderMap,
    pub claims: Option<&'a Value>,
}

impl<'a> FieldScope<'a> {
    pub fn new(
        binding: &'a Binding,
        state: &'a OperationState,
        args: Option<&'a Args>,
        parent: Option<&'a Json>,
    ) -> Self {
        FieldScope {
            binding,
            trace: (&state.trace, state.propagate_trace),
            args,
            parent,
            headers: &state.client_headers,
            claims: state.claims.as_deref(),
        }
    }

    pub fn client(&self) -> ClientContext<'_> {
        ClientContext {
            headers: self.headers,
            claims: self.claims,
            trace: self.trace,
        }
    }
}

impl Scope for FieldScope<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Looked<'_>> {
        let path = &placeholder.path;
        match placeholder.root {
            Root::Args => {
                // Arguments are coerced against the SDL (input-object
                // defaults filled in) before the plan runs.
                let value = self.args?.get(path[0].as_str())?.clone().into_json().ok()?;
                if path.len() == 1 {
                    return Some(Looked::Input(Cow::Owned(value)));
                }
                value_at(&value, &path[1..])
                    .cloned()
                    .map(|v| Looked::Input(Cow::Owned(v)))
            }
            Root::Parent => json::at(self.parent?, path).map(Looked::Upstream),
            Root::Headers => {
                let value = self.headers.get(path.join(".").as_str())?;
                let text = value.to_str().ok()?.to_owned();
                Some(Looked::Input(Cow::Owned(Value::String(text))))
            }
            Root::Claims => value_at(self.claims?, path).map(|v| Looked::Input(Cow::Borrowed(v))),
            Root::Keys | Root::Response => None,
        }
    }
}

/// The answer of a field that calls, bounded by the operation's deadline:
/// a field still waiting when `request_timeout_ms` runs out gets `TIMEOUT`,
/// and dropping its future cancels the upstream call.
pub async fn answer(scope: &FieldScope<'_>, state: &OperationState) -> FieldAnswer {
    match tokio::time::timeout_at(state.deadline, answer_now(scope, state)).await {
        Ok(answer) => answer,
        Err(_) => FieldAnswer::Failed(timed_out()),
    }
}

pub fn timed_out() -> FieldError {
    FieldError::new(
        ErrorCode::Timeout,
        "the operation did not finish within request_timeout_ms",
    )
}

async fn answer_now(scope: &FieldScope<'_>, state: &OperationState) -> FieldAnswer {
    let answer = shaped(answer_calls(scope, state).await, scope);
    if !scope.binding.invalidates.is_empty() && matches!(answer, FieldAnswer::Value { .. }) {
        invalidate(scope, state).await;
    }
    answer
}

/// docs/CACHING.md `invalidates`: after a mutation's call succeeded, every
/// cached entry of each listed method and URL (rendered with the
/// mutation's arguments) is dropped, whatever the headers of the calls
/// that stored them: every user's.
async fn invalidate(scope: &FieldScope<'_>, state: &OperationState) {
    for call in &scope.binding.invalidates {
        let Ok(request) = request::build(
            &call.spec,
            &call.service,
            scope,
            &scope.client(),
            call.timeout,
        ) else {
            // A path placeholder without a value names no URL.
            continue;
        };
        let url =
            request::url_fingerprint(&call.service.name, &request.method, &request.path_and_query);
        state.fetcher.invalidate(url).await;
    }
}

async fn answer_calls(scope: &FieldScope<'_>, state: &OperationState) -> FieldAnswer {
    let binding = scope.binding;
    match &binding.source {
        BoundSource::Call(call) => match fetch(call, scope, state).await {
            (CallOutcome::Value(selected), stale) => FieldAnswer::Value {
                held: Held::Selected(selected),
                stale,
            },
            (CallOutcome::Success, stale) => FieldAnswer::Value {
                held: Held::Owned(Json::from(true)),
                stale,
            },
            (CallOutcome::NotFound(status), _) => not_found(binding, &call.service.name, status),
            (CallOutcome::NoCall(placeholder), _) => missing_value(binding, &placeholder, scope),
            (CallOutcome::Failed(err), _) => FieldAnswer::Failed(err),
        },
        BoundSource::Merge(calls) => {
            let answers = join_all(calls.iter().map(|call| fetch(call, scope, state))).await;
            let mut merged = Json::new_object();
            let mut any_stale = false;
            for ((answer, stale), call) in answers.into_iter().zip(calls) {
                any_stale |= stale;
                match answer {
                    CallOutcome::Value(selected) if selected.get().is_object() => {
                        json::deep_merge(&mut merged, selected.get())
                    }
                    CallOutcome::Value(_) | CallOutcome::Success => {
                        return FieldAnswer::Failed(
                            bad_response(
                                binding,
                                "a `merge` call answered something other than an object",
                            )
                            .from_service(&call.service.name),
                        )
                    }
                    // docs/CONFIG.md: a 404 from any of them applies to the whole field.
                    CallOutcome::NotFound(status) => {
                        return not_found(binding, &call.service.name, status)
                    }
                    CallOutcome::NoCall(placeholder) => {
                        return missing_value(binding, &placeholder, scope)
                    }
                    CallOutcome::Failed(err) => return FieldAnswer::Failed(err),
                }
            }
            FieldAnswer::Value {
                held: Held::Owned(merged),
                stale: any_stale,
            }
        }
        BoundSource::Batch(batch) => {
            let Some(key) = batch_key(batch, scope) else {
                return no_key(binding, batch, scope);
            };
            let text = key_text(&key);
            let loaded = state
                .batches
                .load_many(
                    &batch_id(batch, scope.args),
                    vec![(text.clone(), key)],
                    |keys| fetch_batch(batch, keys, scope, state),
                )
                .await;
            match loaded {
                Ok(found) => batch_answer(&found, text),
                Err(err) => FieldAnswer::Failed(err),
            }
        }
        BoundSource::Value(template) => local_value(template, scope),
        // With a shape, the parent's value is kept as the field's answer.
        BoundSource::ParentKey(key) if binding.shape.is_some() => {
            held_copy(scope.parent.and_then(|p| json::get(p, key)))
        }
        BoundSource::From(path) if binding.shape.is_some() => {
            held_copy(scope.parent.and_then(|p| json::at(p, path)))
        }
        BoundSource::ParentKey(_) | BoundSource::From(_) => FieldAnswer::Failed(FieldError::new(
            ErrorCode::Internal,
            format!("`{}` has no call", binding.name),
        )),
    }
}

/// A value of the parent's, as a field's answer (to be shaped).
fn held_copy(value: Option<&Json>) -> FieldAnswer {
    match value {
        Some(value) if !value.is_null() => FieldAnswer::Value {
            held: Held::Owned(value.clone()),
            stale: false,
        },
        _ => FieldAnswer::Null,
    }
}

/// docs/SHAPING.md `value`: the template rendered against the request;
/// one placeholder alone keeps its JSON type, text is a `String`. A
/// placeholder without a value makes the field null (`MISSING_VALUE` on a
/// non-null field).
fn local_value(
    template: &crate::connector::template::Template,
    scope: &FieldScope<'_>,
) -> FieldAnswer {
    let missing = template
        .placeholders()
        .find(|p| scope.lookup(p).is_none_or(|v| v.is_null()));
    if let Some(placeholder) = missing {
        return missing_value(scope.binding, placeholder, scope);
    }
    match render_value(template, scope) {
        Some(value) if !value.is_null() => FieldAnswer::Value {
            held: Held::Owned(value.to_json()),
            stale: false,
        },
        _ => FieldAnswer::Null,
    }
}

/// docs/SHAPING.md: a field's `filter`, `limit`, `map` and `default`,
/// applied once to its answer; what the engine walks and writes after.
pub fn shaped(answer: FieldAnswer, scope: &FieldScope<'_>) -> FieldAnswer {
    let Some(shape) = &scope.binding.shape else {
        return answer;
    };
    let value = match &answer {
        FieldAnswer::Failed(_) => return answer,
        FieldAnswer::Null => shape.apply(None, scope),
        FieldAnswer::Value { held, .. } => match (held, &scope.binding.output.kind) {
            (Held::Batch { .. }, OutputKind::List(_)) => {
                let items = Json::from(held.matches().to_vec());
                shape.apply(Some(&items), scope)
            }
            _ => shape.apply(held.single(), scope),
        },
    };
    let stale = matches!(answer, FieldAnswer::Value { stale: true, .. });
    match value {
        Some(value) => FieldAnswer::Value {
            held: Held::Owned(value),
            stale,
        },
        None => FieldAnswer::Null,
    }
}

/// A batched field's key for the scope's parent; `None` when it has none.
pub fn batch_key(batch: &BoundBatch, scope: &dyn Scope) -> Option<Json> {
    render_value(&batch.spec.key, scope)
        .filter(|k| !k.is_null())
        .map(|k| k.to_json())
}

/// The answer of a batched field whose parent has no key.
pub fn no_key(binding: &Binding, batch: &BoundBatch, scope: &FieldScope) -> FieldAnswer {
    match batch.spec.key.placeholders().next() {
        Some(placeholder) => missing_value(binding, placeholder, scope),
        None => FieldAnswer::Null,
    }
}

/// Keys of the same batched field share batches when its arguments match.
pub fn batch_id(batch: &BoundBatch, args: Option<&Args>) -> BatchId {
    BatchId {
        field: batch.id.clone(),
        args: match args {
            Some(args) if !args.is_empty() => GqlValue::Object(args.clone()).to_string(),
            _ => String::new(),
        },
    }
}

/// The answer for key `text` among the batches that answered it.
pub fn batch_answer(found: &[Grouped], text: String) -> FieldAnswer {
    let stale = found.iter().any(|g| g.stale.contains(&text));
    let grouped = found
        .iter()
        .find(|g| g.by_key.contains_key(&text))
        .or(found.first())
        .cloned();
    FieldAnswer::Value {
        held: Held::Batch { grouped, key: text },
        stale,
    }
}

/// One batch of the field bound as `batch`, fetched by `batch::fetch`.
pub async fn fetch_batch(
    batch: &BoundBatch,
    keys: Vec<Json>,
    scope: &FieldScope<'_>,
    state: &OperationState,
) -> crate::batch::BatchOutcome {
    crate::batch::fetch::fetch(batch, keys, scope, &scope.client(), state).await
}

/// What one call of a field came to.
enum CallOutcome {
    Value(Selected),
    /// A 2xx answer without a body (or `null`) to a `Boolean` field with no
    /// `select`: `true`, the call succeeded (what `conflux import openapi`
    /// maps an operation without a JSON answer to; docs/OPENAPI.md).
    Success,
    /// A 404, or another status in `null_on`.
    NotFound(u16),
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
        Err(err) => return (failed_call(call, scope, &err), false),
    };
    state.note_lifetime(fetched.lifetime);
    let rules = &call.spec.answers;
    let outcome = match &*fetched.answer {
        UpstreamAnswer::NotFound if rules.nulls(404) => CallOutcome::NotFound(404),
        UpstreamAnswer::NotFound => {
            let mut base = FieldError::new(
                ErrorCode::UpstreamError,
                format!("service `{}` answered HTTP 404", call.service.name),
            )
            .from_service(&call.service.name);
            base.status = Some(404);
            let response = Response {
                status: 404,
                headers: None,
                body: None,
            };
            CallOutcome::Failed(rules.shape(base, &response, scope))
        }
        UpstreamAnswer::Json { value, .. }
            if rules.fails(
                &Response {
                    status: 200,
                    headers: None,
                    body: Some(value),
                },
                scope,
            ) =>
        {
            // docs/SHAPING.md `error_when`: a 2xx carrying an error.
            let mut base = FieldError::new(
                ErrorCode::UpstreamError,
                format!("service `{}` answered with an error", call.service.name),
            )
            .from_service(&call.service.name);
            base.status = Some(200);
            let response = Response {
                status: 200,
                headers: None,
                body: Some(value),
            };
            CallOutcome::Failed(rules.shape(base, &response, scope))
        }
        UpstreamAnswer::Json { value, .. }
            if value.is_null()
                && call.spec.select.is_none()
                && matches!(
                    scope.binding.output.kind,
                    OutputKind::Scalar(ScalarKind::Boolean)
                ) =>
        {
            CallOutcome::Success
        }
        UpstreamAnswer::Json { .. } => CallOutcome::Value(Selected {
            answer: fetched.answer.clone(),
            path: call.spec.select.clone(),
        }),
    };
    (outcome, fetched.stale)
}

/// A failed call as its field sees it (docs/SHAPING.md `null_on`,
/// `errors`).
fn failed_call(
    call: &BoundCall,
    scope: &FieldScope<'_>,
    err: &crate::upstream::UpstreamError,
) -> CallOutcome {
    match call.spec.answers.failed(err, scope) {
        Failed::Null(status) => CallOutcome::NotFound(status),
        Failed::Error(err) => CallOutcome::Failed(err),
    }
}

/// An upstream answer and the part of it a field selects, borrowed.
pub struct Selected {
    answer: Arc<UpstreamAnswer>,
    path: Option<Vec<String>>,
}

impl Selected {
    pub fn get(&self) -> &Json {
        let Some(value) = self.answer.json() else {
            return &json::NULL;
        };
        match &self.path {
            Some(path) => json::at(value, path).unwrap_or(&json::NULL),
            None => value,
        }
    }
}

/// docs/CONFIG.md: 404 (or a `null_on` status, docs/SHAPING.md) makes a
/// nullable field null without an error.
fn not_found(binding: &Binding, service: &str, status: u16) -> FieldAnswer {
    if binding.output.non_null {
        let mut err = FieldError::new(
            ErrorCode::UpstreamError,
            format!("service `{service}` answered HTTP {status}"),
        )
        .from_service(service);
        err.status = Some(status);
        FieldAnswer::Failed(err)
    } else {
        FieldAnswer::Null
    }
}

/// docs/CONFIG.md: a path placeholder without a value makes no call; the field is
/// null, or `MISSING_VALUE` when it is non-null.
fn missing_value(binding: &Binding, placeholder: &Placeholder, scope: &FieldScope) -> FieldAnswer {
    if placeholder.root == Root::Claims && scope.claims.is_none() {
        return FieldAnswer::Failed(FieldError::new(
            ErrorCode::Unauthenticated,
            format!("`{}` needs an authenticated caller", binding.name),
        ));
    }
    if binding.output.non_null {
        FieldAnswer::Failed(FieldError::new(
            ErrorCode::MissingValue,
            format!("`{}` needs a value for `{placeholder}`", binding.name),
        ))
    } else {
        FieldAnswer::Null
    }
}

pub fn bad_response(binding: &Binding, message: &str) -> FieldError {
    FieldError::new(
        ErrorCode::UpstreamBadResponse,
        format!("`{}`: {message}", binding.name),
    )
}
