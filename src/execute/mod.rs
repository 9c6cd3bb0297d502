//! Running an operation: the per-operation state (call de-duplication,
//! the client's headers), the generic field resolver, and the tagging of
//! parse and validation errors with their codes.
//!
//! async-graphql parses, validates, answers introspection and drives the
//! resolvers; everything a field does is in `connector` as plain functions,
//! so a planned fast path can later replace the executor behind this seam.

pub mod operation;
pub mod resolver;

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use crate::error::ErrorCode;

/// Tags errors from the parse and validation phases with
/// `GRAPHQL_PARSE_FAILED` / `GRAPHQL_VALIDATION_FAILED`, so the HTTP layer
/// can answer them as request errors (SPEC §2, §5).
pub struct PhaseCodes;

impl ExtensionFactory for PhaseCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PhaseCodesExtension)
    }
}

struct PhaseCodesExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for PhaseCodesExtension {
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

pub fn with_code(mut err: ServerError, code: ErrorCode) -> ServerError {
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    err
}

/// The code an error carries, if any.
pub fn code_of(err: &ServerError) -> Option<&str> {
    match err.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}
