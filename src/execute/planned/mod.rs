//! The engine: how every operation runs. An operation is planned once per
//! document (cached), then each request makes its calls (`resolve`) and
//! writes the response JSON straight from the upstream values (`write`) —
//! no future, map or value per field: that per-field cost is what keeps
//! generic executors 2-40x behind hand-written code (README "Performance",
//! bench/README.md). Queries and mutations run here alike, whatever their variables
//! and directives.
//!
//! async-graphql stays for what it is good at: it validates each document
//! once (the result cached with the plan), and answers the root's
//! introspection fields, which this engine writes into its response.

mod plan;
mod resolve;
#[cfg(test)]
mod tests;
mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::admission::cache::ByteBoundedCache;
use crate::upstream::json::Json;
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition};
use async_graphql::{ServerError, Variables};

use plan::OperationPlan;
pub use plan::PlanSchema;
use resolve::Resolution;
use write::Writer;

use super::operation::OperationState;

/// What the plan cache may hold, in estimated bytes: each entry's query
/// text (up to `max_body_bytes`) and its plan
/// ([`OperationPlan::estimated_bytes`]). A count of entries alone was no
/// bound: 150 distinct 0.9 MB documents held 136 MiB.
pub const PLAN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Plans by (query text, operation name).
pub struct Plans {
    schema: PlanSchema,
    cache: ByteBoundedCache<(Arc<str>, Option<String>), Arc<Prepared>>,
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
}

/// How a response body begins.
pub const BODY_START: &[u8] = b"{\"data\":";

/// Room left after `data` for the body's end when the buffer is sized.
const BODY_END_ROOM: usize = 256;

impl Plans {
    pub fn new(schema: PlanSchema) -> Self {
        Plans {
            schema,
            cache: ByteBoundedCache::new(PLAN_CACHE_BYTES, |(query, name), prepared| {
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
    /// validation errors that refuse the document.
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
    ) -> Result<Arc<OperationPlan>, Arc<Vec<ServerError>>> {
        let key = (query.clone(), operation_name.map(str::to_owned));
        let prepared = match self.cache.get(&key) {
            Some(prepared) => prepared,
            None => {
                // The operation's first request: validate and plan it now,
                // and use that plan for this request too.
                let planned = match validate(executor, query, operation_name, document).await {
                    Ok(()) => self.plan_now(bindings, document, operation, variables),
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
            Prepared::PlanPerRequest => self.plan_now(bindings, document, operation, variables),
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
    ) -> Result<Arc<OperationPlan>, Arc<Vec<ServerError>>> {
        plan::plan(&self.schema, bindings, document, operation, variables)
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
pub async fn execute(
    plan: &OperationPlan,
    state: &OperationState,
    operation: &OperationDefinition,
    variables: &Variables,
    executor: &async_graphql::dynamic::Schema,
) -> Executed {
    // The root's parent: an object of its own, so its address is unique.
    let root = Json::new_object();
    let resolution = Resolution::new(plan, state, operation, variables);
    let introspect = async {
        let introspection = plan.introspection.as_ref()?;
        if let Some(answered) = introspection.answered.get() {
            return Some(answered.clone());
        }
        let mut request = async_graphql::Request::new("").variables(variables.clone());
        request.set_parsed_query(introspection.document.clone());
        let answered = Arc::new(executor.execute(request).await);
        if introspection.is_constant() {
            let _ = introspection.answered.set(answered.clone());
        }
        Some(answered)
    };
    let (_, introspected) = if plan.serial {
        futures::join!(resolution.serial(&plan.root, &root), introspect)
    } else {
        futures::join!(resolution.object(&plan.root, &root, false), introspect)
    };
    // Sized from the last body this plan wrote: most operations answer
    // about the same size every time.
    let last = plan.last_body_len.load(Ordering::Relaxed);
    let mut body = Vec::with_capacity(last.max(1024) + BODY_END_ROOM);
    body.extend_from_slice(BODY_START);
    let mut writer = Writer::new(&resolution, state.claims.as_deref(), body);
    let mut introspection_errors = Vec::new();
    if let Some(response) = &introspected {
        if let async_graphql::Value::Object(data) = &response.data {
            writer.introspected = Some(data);
        }
        introspection_errors.extend(response.errors.iter().cloned());
    }
    if writer.object(&plan.root, &root, None).is_err() {
        writer.out.truncate(BODY_START.len());
        writer.out.extend_from_slice(b"null");
    }
    plan.last_body_len
        .store(writer.out.len(), Ordering::Relaxed);
    for path in writer.stale.drain(..) {
        state.mark_stale(path);
    }
    let mut errors = writer.errors;
    errors.extend(introspection_errors);
    Executed {
        begun_body: writer.out,
        errors,
    }
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
    request.set_parsed_query(document.clone());
    let errors = executor.execute(request).await.errors;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
