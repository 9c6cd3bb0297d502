//! The planned executor: how queries run. An operation is planned once per
//! document (cached), then each request makes its calls (`resolve`) and
//! writes the response JSON straight from the upstream values (`write`) —
//! no future, map or value per field (PERFORMANCE.md: that per-field cost
//! is what keeps generic executors 2-40x behind hand-written code).
//!
//! async-graphql stays behind it: it validates each document once (cached
//! with the plan), and runs what is not planned — mutations, introspection,
//! variables whose values need coercing, unknown directives — with the same
//! results, only slower.

mod plan;
mod resolve;
mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::admission::cache::ByteBoundedCache;
use crate::upstream::json::Json;
use async_graphql::parser::types::{BaseType, ExecutableDocument, OperationDefinition, Type};
use async_graphql::{ServerError, Value as GqlValue, Variables};

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
    /// Invalid (async-graphql reports why) or not plannable.
    Executor,
}

/// Tells `execute::rules` to stop after validation.
pub struct ValidateOnly;

/// A planned operation's result.
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
                    Prepared::PlanPerRequest | Prepared::Executor => 0,
                };
                query.len() + name.as_ref().map_or(0, String::len) + plan
            }),
        }
    }

    /// The plan for `operation` with these `variables`; `None` leaves the
    /// operation to async-graphql.
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
    ) -> Option<Arc<OperationPlan>> {
        let key = (query.clone(), operation_name.map(str::to_owned));
        let Some(prepared) = self.cache.get(&key) else {
            // The operation's first request: validate and plan it now, and
            // use that plan for this request too.
            let valid = validate(executor, query, operation_name, document).await;
            let planned = valid
                .then(|| plan::plan(&self.schema, bindings, document, operation, variables))
                .and_then(Result::ok)
                .map(Arc::new);
            let prepared = match &planned {
                Some(plan) if plan.depends_on_variables => Prepared::PlanPerRequest,
                Some(plan) => Prepared::Plan(plan.clone()),
                None => Prepared::Executor,
            };
            self.cache.insert(key, Arc::new(prepared));
            return planned.filter(|_| variables_conform(operation, variables));
        };
        if !variables_conform(operation, variables) {
            return None;
        }
        match &*prepared {
            Prepared::Plan(plan) => Some(plan.clone()),
            Prepared::PlanPerRequest => {
                plan::plan(&self.schema, bindings, document, operation, variables)
                    .ok()
                    .map(Arc::new)
            }
            Prepared::Executor => None,
        }
    }
}

/// Runs a planned operation.
pub async fn execute(
    plan: &OperationPlan,
    state: &OperationState,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Executed {
    // The root's parent: an object of its own, so its address is unique.
    let root = Json::new_object();
    let resolution = Resolution::new(plan, state, operation, variables);
    resolution.object(&plan.root, &root, false).await;
    // Sized from the last body this plan wrote: most operations answer
    // about the same size every time.
    let last = plan.last_body_len.load(Ordering::Relaxed);
    let mut body = Vec::with_capacity(last.max(1024) + BODY_END_ROOM);
    body.extend_from_slice(BODY_START);
    let mut writer = Writer::new(&resolution, state.claims.as_deref(), body);
    if writer.object(&plan.root, &root, None).is_err() {
        writer.out.truncate(BODY_START.len());
        writer.out.extend_from_slice(b"null");
    }
    plan.last_body_len
        .store(writer.out.len(), Ordering::Relaxed);
    for path in writer.stale.drain(..) {
        state.mark_stale(path);
    }
    Executed {
        begun_body: writer.out,
        errors: writer.errors,
    }
}

/// Validates the whole document with async-graphql, stopping before
/// execution. Variable values are checked per request (`variables_conform`).
async fn validate(
    executor: &async_graphql::dynamic::Schema,
    query: &str,
    operation_name: Option<&str>,
    document: &ExecutableDocument,
) -> bool {
    let mut request = async_graphql::Request::new(query).data(ValidateOnly);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    request.set_parsed_query(document.clone());
    executor.execute(request).await.errors.is_empty()
}

/// Whether every variable's value already has its declared type, so no
/// coercion (and no coercion error) is needed: built-in scalars and lists
/// of them. Anything else goes to async-graphql, which coerces or refuses.
fn variables_conform(operation: &OperationDefinition, variables: &Variables) -> bool {
    operation.variable_definitions.iter().all(|definition| {
        let definition = &definition.node;
        match variables.get(&definition.name.node) {
            Some(value) => conforms(value, &definition.var_type.node),
            // Absent: the default (validated with the document) or nothing.
            None => true,
        }
    })
}

fn conforms(value: &GqlValue, ty: &Type) -> bool {
    if matches!(value, GqlValue::Null) {
        return ty.nullable;
    }
    match (&ty.base, value) {
        (BaseType::List(item), GqlValue::List(items)) => items.iter().all(|v| conforms(v, item)),
        (BaseType::List(_), _) => false,
        (BaseType::Named(name), value) => match (name.as_str(), value) {
            ("ID" | "String", GqlValue::String(_)) => true,
            // An integer is a valid ID input (GraphQL spec); it reaches
            // templates as the number it is, as on async-graphql's path.
            ("ID", GqlValue::Number(n)) => n.is_i64() || n.is_u64(),
            ("Boolean", GqlValue::Boolean(_)) => true,
            ("Int", GqlValue::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            ("Float", GqlValue::Number(_)) => true,
            _ => false,
        },
    }
}
