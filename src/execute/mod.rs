//! Running an operation: the per-operation state (call de-duplication,
//! the client's headers), input coercion, and the engine (`planned`) that
//! runs every query and mutation. async-graphql parses and validates
//! documents (its errors tagged with codes by `rules`) and answers
//! introspection fields; it resolves nothing else. What a field's calls
//! come to is in `calls`.

pub mod cache_control;
pub mod calls;
#[cfg(test)]
mod engine_tests;
pub mod operation;
pub mod planned;
mod rules;
pub mod run;
pub mod stream;
pub mod variables;

use async_graphql::ServerError;

pub use rules::ValidationCodes;

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
