//! `/graphql`: GraphQL over HTTP — POST (single or batched), GET (queries
//! only), GraphiQL for browsers — with the statuses and codes of SPEC §2/§5.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{ServerError, Variables};
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::graphiql;
use super::media::{wants_html, ResponseMedia};
use crate::admission::documents::{DocumentError, MAX_NESTING};
use crate::admission::limits;
use crate::admission::rate_limit::retry_after_seconds;
use crate::auth::{AuthError, Claims};
use crate::config::RateKey;
use crate::error::ErrorCode;
use crate::execute::operation::OperationState;
use crate::execute::{code_of, with_code};
use crate::gateway::Gateway;

pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let media = ResponseMedia::negotiate(headers);
    // The TCP peer; absent only when the app runs without a socket.
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default();
    match parts.method {
        Method::POST => match admit(&gateway, headers, &client_ip, media).await {
            Ok(claims) => post(&gateway, headers, claims, body, media).await,
            Err(refused) => refused,
        },
        Method::GET => get(&gateway, &parts.uri, headers, &client_ip, media).await,
        // Preflights are answered by the CORS layer when CORS is on.
        Method::OPTIONS => (
            StatusCode::NO_CONTENT,
            [(ALLOW, HeaderValue::from_static("GET, POST, OPTIONS"))],
        )
            .into_response(),
        method => request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("method {method} is not allowed on /graphql; use GET or POST"),
            media,
        ),
    }
}

/// How long past `request_timeout_ms` the executor may take to assemble
/// what resolved before the whole operation is abandoned.
const OUTER_TIMEOUT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// One GraphQL request as the client sent it.
struct GraphqlRequest {
    /// Absent for an APQ hash-only request.
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<Value>,
    extensions: Option<Value>,
}

/// Authentication, then the rate limit: what an HTTP request passes before
/// its body is even read.
async fn admit(
    gateway: &Gateway,
    headers: &HeaderMap,
    client_ip: &str,
    media: ResponseMedia,
) -> Result<Option<Claims>, Response> {
    let claims = authenticate(gateway, headers, media).await?;
    if let Some(limiter) = &gateway.admission.rate_limiter {
        let subject = claims
            .as_ref()
            .filter(|_| gateway.admission.rate_key == RateKey::Subject)
            .and_then(|c| c.get("sub"))
            .and_then(Value::as_str);
        let key = match subject {
            Some(sub) => format!("sub:{sub}"),
            None => format!("ip:{client_ip}"),
        };
        if let Err(wait) = limiter.check(&key).await {
            let seconds = retry_after_seconds(wait);
            let mut response = request_error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!("too many requests; retry in {seconds} s"),
                media,
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            return Err(response);
        }
    }
    Ok(claims)
}

/// Verifies the request's token before anything runs (SPEC §2, §3 `[auth]`):
/// an invalid token, or a missing one when required, is 401.
async fn authenticate(
    gateway: &Gateway,
    headers: &HeaderMap,
    media: ResponseMedia,
) -> Result<Option<Claims>, Response> {
    let Some(auth) = &gateway.auth else {
        return Ok(None);
    };
    match auth.authenticate(headers).await {
        Ok(claims) => Ok(claims),
        Err(err) => {
            let (message, challenge) = match &err {
                AuthError::Missing => ("a bearer token is required", "Bearer"),
                AuthError::Invalid(reason) => {
                    tracing::info!(%reason, "token rejected");
                    (
                        "the bearer token is invalid",
                        "Bearer error=\"invalid_token\"",
                    )
                }
            };
            let mut response = request_error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                message,
                media,
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            Err(response)
        }
    }
}

async fn post(
    gateway: &Gateway,
    headers: &HeaderMap,
    claims: Option<Claims>,
    body: Body,
    media: ResponseMedia,
) -> Response {
    let limit = gateway.config.limits.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large(limit, media);
    }
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(limit, media),
    };
    let json: Value = match serde_json::from_slice(&bytes) {
        Ok(json) => json,
        Err(err) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the body is not valid JSON: {err}"),
                media,
            )
        }
    };
    match json {
        Value::Array(items) => {
            let max = gateway.config.limits.max_batch;
            if items.is_empty() {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    "the batch is empty",
                    media,
                );
            }
            if items.len() > max {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BatchTooLarge,
                    format!(
                        "the batch has {} operations; at most {max} are allowed",
                        items.len()
                    ),
                    media,
                );
            }
            let claims = &claims;
            let operations = items.into_iter().map(|item| async move {
                match parse_request(item) {
                    Ok(request) => run(gateway, request, headers, claims.clone(), false).await,
                    Err(message) => Outcome::request_error(ErrorCode::BadRequest, message),
                }
            });
            let outcomes = futures::future::join_all(operations).await;
            let bodies: Vec<ResponseBody<'_>> = outcomes.iter().map(Outcome::body).collect();
            json_response(StatusCode::OK, &bodies, media)
        }
        single => match parse_request(single) {
            Ok(request) => run(gateway, request, headers, claims, false)
                .await
                .into_response(media),
            Err(message) => request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                message,
                media,
            ),
        },
    }
}

async fn get(
    gateway: &Gateway,
    uri: &Uri,
    headers: &HeaderMap,
    client_ip: &str,
    media: ResponseMedia,
) -> Response {
    let params: HashMap<String, String> = match Query::try_from_uri(uri) {
        Ok(Query(params)) => params,
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "malformed query string",
                media,
            )
        }
    };
    if !params.contains_key("query") && gateway.config.server.graphiql && wants_html(headers) {
        return graphiql::page();
    }
    let claims = match admit(gateway, headers, client_ip, media).await {
        Ok(claims) => claims,
        Err(refused) => return refused,
    };
    let mut object = serde_json::Map::new();
    for key in ["query", "operationName"] {
        if let Some(value) = params.get(key) {
            object.insert(key.to_owned(), Value::String(value.clone()));
        }
    }
    for key in ["variables", "extensions"] {
        if let Some(text) = params.get(key) {
            match serde_json::from_str(text) {
                Ok(value) => {
                    object.insert(key.to_owned(), value);
                }
                Err(_) => {
                    return request_error(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::BadRequest,
                        format!("`{key}` is not valid JSON"),
                        media,
                    )
                }
            }
        }
    }
    match parse_request(Value::Object(object)) {
        Ok(request) => run(gateway, request, headers, claims, true)
            .await
            .into_response(media),
        Err(message) => request_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            message,
            media,
        ),
    }
}

/// Checks the shape of one request object; the message says what is wrong.
fn parse_request(json: Value) -> Result<GraphqlRequest, String> {
    let Value::Object(mut object) = json else {
        return Err("a GraphQL request must be a JSON object with a `query`".to_owned());
    };
    let extensions = match object.remove("extensions") {
        None | Some(Value::Null) => None,
        Some(extensions @ Value::Object(_)) => Some(extensions),
        Some(_) => return Err("`extensions` must be an object".to_owned()),
    };
    let persisted = extensions
        .as_ref()
        .is_some_and(|e| e.get("persistedQuery").is_some());
    let query = match object.remove("query") {
        Some(Value::String(query)) => Some(query),
        None | Some(Value::Null) if persisted => None,
        Some(_) => return Err("`query` must be a string".to_owned()),
        None => return Err("the request has no `query`".to_owned()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err("`operationName` must be a string".to_owned()),
    };
    let variables = match object.remove("variables") {
        None | Some(Value::Null) => None,
        Some(variables @ Value::Object(_)) => Some(variables),
        Some(_) => return Err("`variables` must be an object".to_owned()),
    };
    Ok(GraphqlRequest {
        query,
        operation_name,
        variables,
        extensions,
    })
}

/// What one operation produced, and how HTTP should answer it alone.
struct Outcome {
    status: StatusCode,
    /// `None` for a request error: the operation never ran, so the response
    /// has no `data` entry (GraphQL over HTTP).
    data: Option<async_graphql::Value>,
    errors: Vec<ServerError>,
    /// A document that failed to parse or validate, or was refused by
    /// `[limits]`: answered 200 to legacy `application/json` clients.
    document_error: bool,
    /// `extensions.conflux`: paths served stale.
    extensions: Option<Value>,
}

impl Outcome {
    fn request_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            status: StatusCode::BAD_REQUEST,
            data: None,
            errors: vec![with_code(ServerError::new(message, None), code)],
            document_error: false,
            extensions: None,
        }
    }

    fn document_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            document_error: true,
            ..Outcome::request_error(code, message)
        }
    }

    fn body(&self) -> ResponseBody<'_> {
        ResponseBody {
            data: self.data.as_ref(),
            errors: &self.errors,
            extensions: self.extensions.as_ref(),
        }
    }

    fn into_response(self, media: ResponseMedia) -> Response {
        let status = match (self.document_error, media) {
            (true, ResponseMedia::Json) => StatusCode::OK,
            _ => self.status,
        };
        json_response(status, &self.body(), media)
    }
}

#[derive(Serialize)]
struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<&'a Value>,
}

async fn run(
    gateway: &Gateway,
    request: GraphqlRequest,
    headers: &HeaderMap,
    claims: Option<Claims>,
    is_get: bool,
) -> Outcome {
    let admission = &gateway.admission;
    let query = match admission
        .persisted
        .resolve(request.query, request.extensions.as_ref())
    {
        Ok(query) => query,
        Err(refusal) => {
            return Outcome {
                status: if refusal.bad_request {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                },
                ..Outcome::request_error(refusal.code, refusal.message)
            }
        }
    };
    let document = match admission.documents.parse(&query) {
        Ok(document) => document,
        Err(DocumentError::TooDeep) => {
            return Outcome::document_error(
                ErrorCode::QueryTooDeep,
                format!("the document nests brackets deeper than {MAX_NESTING} levels"),
            )
        }
        Err(DocumentError::Syntax(err)) => {
            let message = format!(
                "syntax error: {}",
                crate::schema::sdl::syntax_message(&err.to_string())
            );
            let mut error = ServerError::new(message, None);
            error.locations = err.positions().collect();
            return Outcome {
                errors: vec![with_code(error, ErrorCode::GraphqlParseFailed)],
                ..Outcome::document_error(ErrorCode::GraphqlParseFailed, "")
            };
        }
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), None) => Some(op),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => {
            return Outcome::document_error(
                ErrorCode::GraphqlValidationFailed,
                "the document has several operations: give `operationName`",
            )
        }
    };
    let Some(operation) = operation else {
        return Outcome::document_error(
            ErrorCode::GraphqlValidationFailed,
            format!(
                "the document has no operation named `{}`",
                request.operation_name.as_deref().unwrap_or_default()
            ),
        );
    };
    // async-graphql reports a missing non-null variable only while
    // executing, without a code; it is a validation error (GraphQL spec
    // "Coercing Variable Values").
    for definition in &operation.node.variable_definitions {
        let definition = &definition.node;
        let given = request
            .variables
            .as_ref()
            .and_then(|v| v.get(definition.name.node.as_str()))
            .is_some_and(|v| !v.is_null());
        if !definition.var_type.node.nullable && definition.default_value.is_none() && !given {
            return Outcome::document_error(
                ErrorCode::GraphqlValidationFailed,
                format!(
                    "variable `${}` of type `{}` needs a non-null value",
                    definition.name.node, definition.var_type.node
                ),
            );
        }
    }
    if let Err(refusal) = limits::check(
        &document,
        &operation.node,
        request.variables.as_ref(),
        &gateway.config.limits,
        gateway.config.server.introspection,
    ) {
        return Outcome::document_error(refusal.code, refusal.message);
    }
    let operation_type = operation.node.ty;
    if is_get && operation_type != OperationType::Query {
        return Outcome {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..Outcome::request_error(
                ErrorCode::MethodNotAllowed,
                "only queries may be sent with GET; use POST",
            )
        };
    }

    let timeout = gateway.config.limits.request_timeout;
    let state = Arc::new(OperationState::new(
        gateway.fetcher.clone(),
        headers.clone(),
        claims,
        tokio::time::Instant::now() + timeout,
    ));
    let mut graphql = async_graphql::Request::new(&*query).data(state.clone());
    if let Some(name) = request.operation_name {
        graphql = graphql.operation_name(name);
    }
    if let Some(variables) = request.variables {
        graphql = graphql.variables(Variables::from_json(variables));
    }
    graphql.set_parsed_query((*document).clone());

    // Fields time out on their own at the deadline (with what resolved so
    // far kept); this outer bound only catches work outside any field.
    let response = match tokio::time::timeout(
        timeout + OUTER_TIMEOUT_GRACE,
        gateway.schema.execute(graphql),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => {
            return Outcome {
                status: StatusCode::OK,
                data: Some(async_graphql::Value::Null),
                errors: vec![with_code(
                    ServerError::new(
                        "the operation did not finish within request_timeout_ms",
                        None,
                    ),
                    ErrorCode::Timeout,
                )],
                document_error: false,
                extensions: None,
            }
        }
    };
    let failed_before_execution = response.errors.iter().any(|err| {
        matches!(
            code_of(err),
            Some("GRAPHQL_PARSE_FAILED" | "GRAPHQL_VALIDATION_FAILED")
        )
    });
    if failed_before_execution {
        return Outcome {
            status: StatusCode::BAD_REQUEST,
            data: None,
            errors: response.errors,
            document_error: true,
            extensions: None,
        };
    }
    let mut errors = response.errors;
    errors.retain(|err| !crate::execute::is_silent(err));
    errors.extend(state.take_item_errors());
    let stale = state.take_stale_paths();
    let extensions =
        (!stale.is_empty()).then(|| serde_json::json!({ "conflux": { "stale": stale } }));
    Outcome {
        status: StatusCode::OK,
        data: Some(response.data),
        errors,
        document_error: false,
        extensions,
    }
}

fn too_large(limit: usize, media: ResponseMedia) -> Response {
    request_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the body is larger than {limit} bytes"),
        media,
    )
}

/// A response for a problem with the HTTP request itself.
fn request_error(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
    media: ResponseMedia,
) -> Response {
    Outcome {
        status,
        ..Outcome::request_error(code, message)
    }
    .into_response(media)
}

fn json_response<T: Serialize>(status: StatusCode, body: &T, media: ResponseMedia) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(CONTENT_TYPE, media.content_type())], bytes).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot serialize a GraphQL response");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
