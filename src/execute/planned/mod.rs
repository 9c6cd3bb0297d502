//! The engine: how every operation runs. An operation is planned once per
//! document (cached), then each request makes its calls (`resolve`) and
//! writes the response JSON straight from the upstream values (`write`) —
//! no future, map or value per field: that per-field cost is what keeps
//! generic executors 2-40x behind hand-written code (docs/SPEED.md,
//! bench/README.md). Queries and mutations run here alike, whatever their
//! variables and directives.
//!
//! async-graphql stays for what it is good at: it validates each document
//! once (the result cached with the plan), and answers the root's
//! introspection fields, which this engine writes into its response.
//!
//! An operation that defers fragments (`@defer`, docs/DEFER.md) runs on the
//! same two phases, part by part ([`execute_incremental`]).

mod deferred;
mod plan;
mod predict;
mod resolve;
#[cfg(test)]
mod tests;
mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::admission::cache::ByteBoundedCache;
use crate::upstream::json::Json;
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition};
use async_graphql::{ServerError, Variables};

use deferred::Deferral;
use plan::DeferredPlan;
pub use plan::FieldKind;
pub use plan::OperationPlan;
pub use plan::PlanSchema;
pub use predict::{predict, predicted_calls, uses_parent, PredictedCall, Prediction};
pub use resolve::arguments;
use resolve::Resolution;
use write::Writer;

use super::calls::{self, Args};
use super::operation::OperationState;
use super::stream::PayloadSender;

/// What the plan cache may hold, in estimated bytes: each entry's query
/// text (up to `max_body_bytes`) and its plan
/// ([`OperationPlan::estimated_bytes`]). A count of entries alone was no
/// bound: 150 distinct 0.9 MB documents held 136 MiB.
pub const PLAN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Plans by (query text, operation name, whether `@defer` defers).
pub struct Plans {
    schema: PlanSchema,
    cache: ByteBoundedCache<(Arc<str>, Option<String>, bool), Arc<Prepared>>,
}

/// What a document's operation is prepared as.
enum Prepared {
    Plan(Arc<OperationPlan>),
    /// Valid, but `@skip`/`@include` read variables: planned per request.
    PlanPerRequest,
    /// Refused by validation (or valid but not runnable here), with the
    /// errors to answer every time.
    Refused(Arc<Vec<ServerError>>),
}

/// Tells `execute::rules` to stop after validation.
pub struct ValidateOnly;

/// An operation's result.
pub struct Executed {
    /// The response body, begun: `{"data":` and the JSON of `data`. The
    /// rest (`errors`, `extensions`, the closing brace) is appended to it,
    /// so a large `data` is never copied into a body of its own.
    pub begun_body: Vec<u8>,
    pub errors: Vec<ServerError>,
    /// Incremental delivery: more parts follow.
    pub has_next: Option<bool>,
}

/// How a response body begins.
pub const BODY_START: &[u8] = b"{\"data\":";

/// Room left after `data` for the body's end when the buffer is sized.
const BODY_END_ROOM: usize = 256;

impl Plans {
    pub fn new(schema: PlanSchema) -> Self {
        Plans {
            schema,
            cache: ByteBoundedCache::new(PLAN_CACHE_BYTES, |(query, name, _), prepared| {
                let plan = match &**prepared {
                    Prepared::Plan(plan) => plan.estimated_bytes(),
                    Prepared::PlanPerRequest => 0,
                    Prepared::Refused(errors) => errors.iter().map(|e| e.message.len() + 128).sum(),
                };
                query.len() + name.as_ref().map_or(0, String::len) + plan
            }),
        }
    }

    /// The request's variables for `operation`, coerced to their declared
    /// types; the message says which is wrong and why.
    pub fn coerce_variables(
        &self,
        operation: &OperationDefinition,
        given: Option<serde_json::Value>,
    ) -> Result<Variables, String> {
        self.schema.inputs.coerce_variables(operation, given)
    }

    /// The plan for `operation` with these (coerced) `variables`, or the
    /// validation errors that refuse the document. `incremental`: the
    /// client takes incremental delivery, so `@defer` defers.
    #[allow(clippy::too_many_arguments)]
    pub async fn plan(
        &self,
        executor: &async_graphql::dynamic::Schema,
        bindings: &crate::schema::Bindings,
        query: &Arc<str>,
        operation_name: Option<&str>,
        document: &ExecutableDocument,
        operation: &OperationDefinition,
        variables: &Variables,
        incremental: bool,
    ) -> Result<Arc<OperationPlan>, Arc<Vec<ServerError>>> {
        // A document that cannot hold `@defer` plans the same either way:
        // one cache entry for it.
        let incremental = incremental && query.contains(deferred::DEFER);
        let key = (
            query.clone(),
            operation_name.map(str::to_owned),
            incremental,
        );
        let prepared = match self.cache.get(&key) {
            Some(prepared) => prepared,
            None => {
                // The operation's first request: validate and plan it now,
                // and use that plan for this request too.
                let planned = match validate(executor, query, operation_name, document).await {
                    Ok(()) => self.plan_now(bindings, document, operation, variables, incremental),
                    Err(errors) => Err(Arc::new(errors)),
                };
                let prepared = match &planned {
                    Ok(plan) if plan.depends_on_variables => Prepared::PlanPerRequest,
                    Ok(plan) => Prepared::Plan(plan.clone()),
                    Err(errors) => Prepared::Refused(errors.clone()),
                };
                self.cache.insert(key, Arc::new(prepared));
                return planned;
            }
        };
        match &*prepared {
            Prepared::Plan(plan) => Ok(plan.clone()),
            Prepared::PlanPerRequest => {
                self.plan_now(bindings, document, operation, variables, incremental)
            }
            Prepared::Refused(errors) => Err(errors.clone()),
        }
    }
}

impl Plans {
    /// Plans a valid operation; what no plan answers (a subscription) is
    /// refused like an invalid document.
    fn plan_now(
        &self,
        bindings: &crate::schema::Bindings,
        document: &ExecutableDocument,
        operation: &OperationDefinition,
        variables: &Variables,
        incremental: bool,
    ) -> Result<Arc<OperationPlan>, Arc<Vec<ServerError>>> {
        plan::plan(
            &self.schema,
            bindings,
            document,
            operation,
            variables,
            incremental,
        )
        .map(Arc::new)
        .map_err(|plan::Unplannable(message)| {
            Arc::new(vec![super::with_code(
                ServerError::new(message, None),
                crate::error::ErrorCode::GraphqlValidationFailed,
            )])
        })
    }
}

/// Runs a planned operation. `executor` answers its introspection fields.
/// `args`: the request's [`arguments`].
pub async fn execute(
    plan: &OperationPlan,
    state: &OperationState,
    args: Vec<Option<Args>>,
    variables: &Variables,
    executor: &async_graphql::dynamic::Schema,
) -> Executed {
    // The root's parent: an object of its own, so its address is unique.
    let root = Json::new_object();
    let resolution = Resolution::new(state, plan, args);
    let introspected = resolve_first(plan, &resolution, &root, variables, executor).await;
    write_first(plan, &resolution, &root, introspected.as_deref()).0
}

/// Runs a planned subscription for one event: the subscription field
/// `field` (a root field) is given `answer` — a poll's answer or a
/// webhook's body — and the selection below it resolves like a query's
/// (nested calls, batching, access rules), on the same two phases.
pub async fn execute_event(
    plan: &OperationPlan,
    state: &OperationState,
    args: Vec<Option<Args>>,
    field: usize,
    answer: Arc<calls::FieldAnswer>,
) -> Executed {
    let root = Json::new_object();
    let resolution = Resolution::new(state, plan, args);
    resolution.give(&root, field, answer);
    resolution.object(&plan.root, &root, false).await;
    write_first(plan, &resolution, &root, None).0
}

/// Runs a planned operation whose plan defers fragments, delivering its
/// response in parts: `first` gets the first part once every call outside
/// deferred fragments is answered (none of theirs is waited for); then each
/// deferred fragment — at every object the part holding it reached — is
/// resolved, its calls made (and batched) together, and sent to `later` as
/// one part when they are answered, the last with `hasNext: false`. A
/// fragment's calls start once the part holding it is written: they may
/// read what that part's calls answered. `request_timeout_ms` bounds every
/// call, so a part unfinished by then carries its `TIMEOUT` errors.
/// Returns early when the client has gone.
pub async fn execute_incremental(
    plan: &OperationPlan,
    state: &OperationState,
    args: Vec<Option<Args>>,
    variables: &Variables,
    executor: &async_graphql::dynamic::Schema,
    first: tokio::sync::oneshot::Sender<Executed>,
    later: &PayloadSender,
) {
    let root = Json::new_object();
    let resolution = Resolution::new(state, plan, args);
    let introspected = resolve_first(plan, &resolution, &root, variables, executor).await;
    let introspected = introspected.as_deref();
    let (mut executed, deferrals) = write_first(plan, &resolution, &root, introspected);
    executed.has_next = Some(!deferrals.is_empty());
    if first.send(executed).is_err() {
        return;
    }
    let (resolution, root) = (&resolution, &root);
    let mut running = FuturesUnordered::new();
    let resolve = |fragment| resolve_fragment(resolution, root, fragment);
    running.extend(by_fragment(deferrals).into_iter().map(resolve));
    while let Some((fragment, routes)) = running.next().await {
        let mut writer = Writer::new(resolution, state.claims.as_deref(), Vec::new());
        writer.introspected = introspected.and_then(|r| match &r.data {
            async_graphql::Value::Object(data) => Some(data),
            _ => None,
        });
        writer.out.extend_from_slice(b"{\"incremental\":[");
        for (index, route) in routes.into_iter().enumerate() {
            if index > 0 {
                writer.out.push(b',');
            }
            let deferral = Deferral {
                fragment,
                route,
                at: 0,
            };
            writer.deferred_entry(root, &deferral);
        }
        running.extend(
            by_fragment(std::mem::take(&mut writer.deferrals))
                .into_iter()
                .map(resolve),
        );
        let has_next: &[u8] = if running.is_empty() {
            b"],\"hasNext\":false}"
        } else {
            b"],\"hasNext\":true}"
        };
        writer.out.extend_from_slice(has_next);
        for path in writer.stale.drain(..) {
            state.mark_stale(path);
        }
        if !later.send(writer.out).await {
            return;
        }
    }
}

/// Makes the calls of a deferred fragment at every object it is delivered
/// at, together (so that batched fields batch across them).
async fn resolve_fragment<'a>(
    resolution: &'a Resolution<'a>,
    root: &'a Json,
    fragment: Fragment<'a>,
) -> Fragment<'a> {
    let (plan, routes) = &fragment;
    let calls = routes
        .iter()
        .map(|route| resolution.deferred(root, route, &plan.plan));
    futures::future::join_all(calls).await;
    fragment
}

/// A deferred fragment and the routes to every object it is delivered at.
type Fragment<'p> = (&'p DeferredPlan, Vec<Vec<deferred::Step<'p>>>);

/// Deferrals grouped by fragment, in the order first noted: a fragment
/// reached at many objects (the items of a list) is one part, its calls
/// batched together.
fn by_fragment(deferrals: Vec<Deferral<'_>>) -> Vec<Fragment<'_>> {
    let mut fragments: Vec<Fragment<'_>> = Vec::new();
    for deferral in deferrals {
        match fragments
            .iter_mut()
            .find(|(fragment, _)| std::ptr::eq(*fragment, deferral.fragment))
        {
            Some((_, routes)) => routes.push(deferral.route),
            None => fragments.push((deferral.fragment, vec![deferral.route])),
        }
    }
    fragments
}

/// Makes every call of the plan outside deferred fragments, and answers
/// the root's introspection fields meanwhile.
async fn resolve_first(
    plan: &OperationPlan,
    resolution: &Resolution<'_>,
    root: &Json,
    variables: &Variables,
    executor: &async_graphql::dynamic::Schema,
) -> Option<Arc<async_graphql::Response>> {
    let introspect = async {
        let introspection = plan.introspection.as_ref()?;
        if let Some(answered) = introspection.answered.get() {
            return Some(answered.clone());
        }
        let mut request = async_graphql::Request::new("").variables(variables.clone());
        request.set_parsed_query(introspection.document.clone());
        // Boxed: async-graphql's executor future is large, and unboxed it
        // would be moved with every operation's future (bench/README.md).
        let answered = Arc::new(Box::pin(executor.execute(request)).await);
        if introspection.is_constant() {
            let _ = introspection.answered.set(answered.clone());
        }
        Some(answered)
    };
    let (_, introspected) = if plan.serial {
        futures::join!(resolution.serial(&plan.root, root), introspect)
    } else {
        futures::join!(resolution.object(&plan.root, root, false), introspect)
    };
    introspected
}

/// Writes the first (or only) part: `data` from the root, its errors; and
/// the deferred fragments it reached.
fn write_first<'p>(
    plan: &'p OperationPlan,
    resolution: &'p Resolution<'p>,
    root: &Json,
    introspected: Option<&'p async_graphql::Response>,
) -> (Executed, Vec<Deferral<'p>>) {
    // Sized from the last body this plan wrote: most operations answer
    // about the same size every time.
    let last = plan.last_body_len.load(Ordering::Relaxed);
    let mut body = Vec::with_capacity(last.max(1024) + BODY_END_ROOM);
    body.extend_from_slice(BODY_START);
    let claims = resolution.claims();
    let mut writer = Writer::new(resolution, claims, body);
    let mut introspection_errors = Vec::new();
    if let Some(response) = introspected {
        if let async_graphql::Value::Object(data) = &response.data {
            writer.introspected = Some(data);
        }
        introspection_errors.extend(response.errors.iter().cloned());
    }
    if writer.object(&plan.root, root, None).is_err() {
        writer.null_since(BODY_START.len());
    }
    plan.last_body_len
        .store(writer.out.len(), Ordering::Relaxed);
    for path in writer.stale.drain(..) {
        resolution.state().mark_stale(path);
    }
    let mut errors = writer.errors;
    errors.extend(introspection_errors);
    let executed = Executed {
        begun_body: writer.out,
        errors,
        has_next: None,
    };
    (executed, writer.deferrals)
}

/// Validates the whole document with async-graphql, stopping before
/// execution; the errors carry their codes (`execute::rules`). Variable
/// values are coerced per request (`Plans::coerce_variables`).
async fn validate(
    executor: &async_graphql::dynamic::Schema,
    query: &str,
    operation_name: Option<&str>,
    document: &ExecutableDocument,
) -> Result<(), Vec<ServerError>> {
    let mut request = async_graphql::Request::new(query).data(ValidateOnly);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    let (document, mut errors) = deferred::rewrite_for_validation(document.clone());
    request.set_parsed_query(document);
    // Boxed, as in resolve_first: once per document, not in every request's future.
    errors.extend(Box::pin(executor.execute(request)).await.errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
