//! Running an operation: the per-operation state (call de-duplication,
//! the client's headers), the generic field resolver, and the tagging of
//! parse and validation errors with their codes.
//!
//! Queries run on the planned executor (`planned`); async-graphql parses,
//! validates, answers introspection and runs what is not planned
//! (mutations above all) with the generic `resolver`. What a field's calls
//! come to is shared by both (`calls`).

mod calls;
pub mod operation;
pub mod planned;
pub mod resolver;
mod rules;
mod shape;

use async_graphql::ServerError;

pub use rules::{path_of, ResponseRules};

use crate::error::ErrorCode;

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

/// Marks an error already reported elsewhere (at a more precise path): it
/// still nulls fields as it propagates, but is not shown again.
const SILENT: &str = "conflux_silent";

pub fn silent_error() -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    async_graphql::Error::new("already reported").extend_with(|_, ext| ext.set(SILENT, true))
}

pub fn is_silent(err: &ServerError) -> bool {
    err.extensions
        .as_ref()
        .is_some_and(|ext| ext.get(SILENT).is_some())
}
