//! How an upstream call failed, and what each failure means for retries,
//! for the instance's breaker, and for the client.

use std::sync::Arc;

use crate::error::{ErrorCode, FieldError};

/// How an upstream call failed. Retries, breakers and error codes decide
/// from this, not from strings.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamFailure {
    /// The service answered a non-2xx status other than 404; with what
    /// it said, when the call's `errors` templates read it.
    Status(u16, Option<Arc<ErrorAnswer>>),
    /// No answer within the call's timeout (or, for one attempt, within
    /// its connect timeout).
    Timeout,
    /// The connection could not be made, the TLS handshake failed, or no
    /// instance may be called (all ejected or failing their health check).
    Unavailable,
    /// 2xx, but the body was not JSON.
    BadResponse,
    /// The body was longer than the service's `max_response_bytes`.
    TooLarge,
    /// The call's path has a `.` or `..` segment made by a value, which
    /// this instance's transport would resolve (changing the endpoint):
    /// the call is not sent.
    UnsafePath,
}

impl UpstreamFailure {
    /// The `status` label of metrics and logs: `5xx`, `4xx`, `timeout`,
    /// `unavailable`, `bad_response`.
    pub fn status_class(&self) -> &'static str {
        match self {
            UpstreamFailure::Status(500..=599, _) => "5xx",
            UpstreamFailure::Status(400..=499, _) => "4xx",
            UpstreamFailure::Status(..) => "other",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Unavailable => "unavailable",
            UpstreamFailure::BadResponse | UpstreamFailure::TooLarge => "bad_response",
            UpstreamFailure::UnsafePath => "refused",
        }
    }

    /// May an idempotent call try again, on another instance (docs/CONFIG.md:
    /// connect error, timeout of one attempt, 502/503/504)?
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            UpstreamFailure::Unavailable
                | UpstreamFailure::Timeout
                | UpstreamFailure::Status(502..=504, _)
        )
    }

    /// Does it count against the instance that answered (connect error,
    /// timeout, 5xx)? A 4xx or a body that is not JSON is the request's or
    /// the API's problem, not a sign the instance is down.
    pub fn is_instance_failure(&self) -> bool {
        matches!(
            self,
            UpstreamFailure::Unavailable
                | UpstreamFailure::Timeout
                | UpstreamFailure::Status(500.., _)
        )
    }
}

/// A non-2xx answer as the `errors` templates read it
/// (`{response.headers.…}`, `{response.body.…}`).
#[derive(Debug, PartialEq)]
pub struct ErrorAnswer {
    pub headers: http::HeaderMap,
    /// The body, when it was JSON within the bound read.
    pub body: Option<super::json::Json>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    pub service: Arc<str>,
    pub failure: UpstreamFailure,
}

impl UpstreamError {
    /// The client-facing error: names the service and status, never the
    /// URL or the upstream's body.
    pub fn to_field_error(&self) -> FieldError {
        let service = &*self.service;
        let (code, message, status) = match &self.failure {
            UpstreamFailure::Status(status, _) => (
                ErrorCode::UpstreamError,
                format!("service `{service}` answered HTTP {status}"),
                Some(*status),
            ),
            UpstreamFailure::Timeout => (
                ErrorCode::UpstreamTimeout,
                format!("service `{service}` did not answer in time"),
                None,
            ),
            UpstreamFailure::Unavailable => (
                ErrorCode::UpstreamUnavailable,
                format!("service `{service}` is unavailable"),
                None,
            ),
            UpstreamFailure::BadResponse => (
                ErrorCode::UpstreamBadResponse,
                format!("service `{service}` answered with a body that is not JSON"),
                None,
            ),
            UpstreamFailure::TooLarge => (
                ErrorCode::UpstreamBadResponse,
                format!("service `{service}` answered with a body over its max_response_bytes"),
                None,
            ),
            UpstreamFailure::UnsafePath => (
                ErrorCode::BadRequest,
                format!(
                    "a value of this field's arguments or parent makes a `.` or `..` path \
                     segment, which is not sent to service `{service}`"
                ),
                None,
            ),
        };
        let mut error = FieldError::new(code, message).from_service(service);
        error.status = status;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::UpstreamFailure::*;

    #[test]
    fn retries_and_breakers_read_the_failure() {
        for (failure, retryable, counts) in [
            (Unavailable, true, true),
            (Timeout, true, true),
            (Status(502, None), true, true),
            (Status(503, None), true, true),
            (Status(504, None), true, true),
            (Status(500, None), false, true),
            (Status(429, None), false, false),
            (Status(400, None), false, false),
            (BadResponse, false, false),
            (TooLarge, false, false),
            (UnsafePath, false, false),
        ] {
            assert_eq!(failure.is_retryable(), retryable, "{failure:?}");
            assert_eq!(failure.is_instance_failure(), counts, "{failure:?}");
        }
    }
}
