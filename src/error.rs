//! Error codes: the stable strings of docs/ERRORS.md, and the one conversion of a
//! field failure into a GraphQL error.
//!
//! Messages are written for API clients: they name the service and the
//! status, never an upstream URL, body or internal error text (those are
//! logged where they happen).

use std::fmt;

use async_graphql::ErrorExtensions;

/// A stable, SCREAMING_SNAKE_CASE error code. Clients match on these, so
/// the strings never change once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    GraphqlParseFailed,
    GraphqlValidationFailed,
    BadRequest,
    PayloadTooLarge,
    MethodNotAllowed,
    BatchTooLarge,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamBadResponse,
    MissingValue,
    Timeout,
    Unauthenticated,
    Forbidden,
    QueryTooDeep,
    QueryTooComplex,
    TooManyAliases,
    IntrospectionDisabled,
    RateLimited,
    PersistedQueryNotFound,
    PersistedQueryHashMismatch,
    PersistedQueryNotSupported,
    PersistedQueryNotAllowed,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            ErrorCode::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::BatchTooLarge => "BATCH_TOO_LARGE",
            ErrorCode::UpstreamError => "UPSTREAM_ERROR",
            ErrorCode::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            ErrorCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            ErrorCode::UpstreamBadResponse => "UPSTREAM_BAD_RESPONSE",
            ErrorCode::MissingValue => "MISSING_VALUE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::QueryTooDeep => "QUERY_TOO_DEEP",
            ErrorCode::QueryTooComplex => "QUERY_TOO_COMPLEX",
            ErrorCode::TooManyAliases => "TOO_MANY_ALIASES",
            ErrorCode::IntrospectionDisabled => "INTROSPECTION_DISABLED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            ErrorCode::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            ErrorCode::PersistedQueryNotAllowed => "PERSISTED_QUERY_NOT_ALLOWED",
            ErrorCode::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one field could not be resolved. Built by the connector and the
/// upstream client; turned into a GraphQL error only by [`FieldError::into_graphql`].
///
/// Deliberately not `Display`: async-graphql converts any `Display` error
/// with `?`, which would silently drop the code.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub code: ErrorCode,
    pub message: String,
    /// The service the failure came from, when it came from one.
    pub service: Option<String>,
    /// The upstream HTTP status, when the upstream answered.
    pub status: Option<u16>,
    /// What a mapping's `errors` made of it (docs/SHAPING.md).
    pub shaped: Option<Box<ShapedError>>,
}

/// The parts of an upstream failure's GraphQL error an `errors` mapping
/// gives: its own code, and extensions besides `service` and `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapedError {
    pub code: Option<String>,
    pub extensions: Vec<(String, serde_json::Value)>,
}

impl FieldError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
            service: None,
            status: None,
            shaped: None,
        }
    }

    pub fn from_service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// The single place a field failure becomes a GraphQL error; the
    /// executor adds `path` and `locations`.
    pub fn into_graphql(self) -> async_graphql::Error {
        let FieldError {
            code,
            message,
            service,
            status,
            shaped,
        } = self;
        async_graphql::Error::new(message).extend_with(move |_, ext| {
            let shaped_code = shaped.as_ref().and_then(|s| s.code.as_deref());
            ext.set("code", shaped_code.unwrap_or(code.as_str()));
            for (name, value) in shaped.iter().flat_map(|s| &s.extensions) {
                if let Ok(value) = async_graphql::Value::from_json(value.clone()) {
                    ext.set(name.as_str(), value);
                }
            }
            if let Some(service) = &service {
                ext.set("service", service.as_str());
            }
            if let Some(status) = status {
                ext.set("status", status);
            }
        })
    }
}
