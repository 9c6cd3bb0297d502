//! GraphQL response rules the dynamic executor leaves to us, applied as one
//! async-graphql extension:
//!
//! - parse and validation errors carry `GRAPHQL_PARSE_FAILED` /
//!   `GRAPHQL_VALIDATION_FAILED`, so HTTP can answer them as request errors;
//! - a field error nulls the nearest nullable field on its path and is
//!   reported once with its path (GraphQL spec "Handling Field Errors").
//!   async-graphql 7's dynamic schema would otherwise null the whole
//!   response (7.0) or drop the key and break field order (7.2).

use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
    NextResolve, NextValidation, ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    PathSegment, QueryPathNode, QueryPathSegment, Response, ServerError, ServerResult,
    ValidationResult, Value, Variables,
};

use super::operation::OperationState;
use super::planned::ValidateOnly;
use super::with_code;
use crate::error::ErrorCode;

pub struct ResponseRules;

impl ExtensionFactory for ResponseRules {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RulesForOneRequest::default())
    }
}

#[derive(Default)]
struct RulesForOneRequest {
    /// Errors of fields that were nulled, added to the response at the end.
    field_errors: Mutex<Vec<ServerError>>,
    /// The operation's state, looked up once instead of for every field.
    state: OnceLock<Option<Arc<OperationState>>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for RulesForOneRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let mut collected =
            std::mem::take(&mut *self.field_errors.lock().unwrap_or_else(|e| e.into_inner()));
        if !collected.is_empty() {
            // Errors that bubbled to the root come last; keep field errors
            // in the order they happened, first.
            collected.append(&mut response.errors);
            response.errors = collected;
        }
        response
    }

    /// A validation-only run (the planned executor validating a document)
    /// stops here.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if ctx.data_opt::<ValidateOnly>().is_some() {
            return Response::new(Value::Null);
        }
        next.run(ctx, operation_name).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|err| with_code(err, ErrorCode::GraphqlParseFailed))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|err| with_code(err, ErrorCode::GraphqlValidationFailed))
                .collect()
        })
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let nullable = !info.return_type.ends_with('!');
        let path_node = info.path_node;
        let state = self
            .state
            .get_or_init(|| ctx.data_opt::<Arc<OperationState>>().cloned());
        if let Some(state) = state {
            if state.is_null_item(|| path_node.to_string()) {
                return Ok(Some(Value::Null));
            }
        }
        match next.run(ctx, info).await {
            Ok(value) => Ok(value),
            Err(mut err) => {
                if err.path.is_empty() {
                    err.path = path_of(path_node);
                }
                if nullable {
                    if super::is_silent(&err) {
                        return Ok(Some(Value::Null));
                    }
                    self.field_errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(err);
                    Ok(Some(Value::Null))
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// The response path of a field or list item.
pub fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path = Vec::new();
    let mut current = Some(node);
    while let Some(node) = current {
        path.push(match node.segment {
            QueryPathSegment::Index(index) => PathSegment::Index(index),
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
        });
        current = node.parent;
    }
    path.reverse();
    path
}
