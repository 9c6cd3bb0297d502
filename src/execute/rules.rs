//! The one async-graphql extension: parse and validation errors carry
//! `GRAPHQL_PARSE_FAILED` / `GRAPHQL_VALIDATION_FAILED`, so HTTP can answer
//! them as request errors; and a validation-only run (the engine validating
//! a document before planning it) stops before execution.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Value, Variables};

use super::planned::ValidateOnly;
use super::with_code;
use crate::error::ErrorCode;

pub struct ValidationCodes;

impl ExtensionFactory for ValidationCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidationCodes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ValidationCodes {
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
}
