//! The GraphQL request a client sent: decoded from a POST body object or
//! from GET parameters, its shape checked with a message that says what is
//! wrong.

use std::collections::HashMap;

use serde_json::Value;

pub use crate::execute::run::GraphqlRequest;

/// Checks the shape of one request object; the message says what is wrong.
pub fn parse_request(json: Value) -> Result<GraphqlRequest, String> {
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

/// A GET request's parameters as a request object: `variables` and
/// `extensions` are JSON-encoded (docs/HTTP.md).
pub fn from_query_params(params: &HashMap<String, String>) -> Result<GraphqlRequest, String> {
    let mut object = serde_json::Map::new();
    for key in ["query", "operationName"] {
        if let Some(value) = params.get(key) {
            object.insert(key.to_owned(), Value::String(value.clone()));
        }
    }
    for key in ["variables", "extensions"] {
        if let Some(text) = params.get(key) {
            let value =
                serde_json::from_str(text).map_err(|_| format!("`{key}` is not valid JSON"))?;
            object.insert(key.to_owned(), value);
        }
    }
    parse_request(Value::Object(object))
}
