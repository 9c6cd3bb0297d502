//! Upstream JSON → the field's value for the executor: leaves coerced,
//! objects handed over without copying (borrowed from the parent or owned
//! from an answer), interfaces and unions given their concrete type. A bad
//! item of a list with nullable items becomes null with its own error.

use std::sync::Arc;

use async_graphql::dynamic::{FieldValue, ResolverContext};
use async_graphql::{PathSegment, ServerError, Value as GqlValue};
use serde_json::Value;

use super::calls::bad_response;
use super::operation::OperationState;
use super::resolver::{Binding, FieldResult};
use crate::connector::coerce::{self, OutputKind, OutputType};

pub(super) fn shape_borrowed<'a>(
    value: Option<&'a Value>,
    binding: &Binding,
    ctx: &ResolverContext<'_>,
) -> FieldResult<'a> {
    shape_reporting(value.map(Json::Borrowed), binding, ctx)
}

pub(super) fn shape_owned<'a>(
    value: Value,
    binding: &Binding,
    ctx: &ResolverContext<'_>,
) -> FieldResult<'a> {
    shape_reporting(Some(Json::Owned(value)), binding, ctx)
}

/// Shapes the field's value and reports what went wrong inside its lists.
/// A bad or null item of a list with nullable items becomes null, with its
/// own error at `path + index`; a null where the list allows none nulls the
/// list, the error still pointing at the item (GraphQL spec "Handling Field
/// Errors").
fn shape_reporting<'a>(
    value: Option<Json<'a>>,
    binding: &Binding,
    ctx: &ResolverContext<'_>,
) -> FieldResult<'a> {
    let mut issues = Vec::new();
    let shaped = shape(value, &binding.output, &mut Vec::new(), &mut issues);
    let state = ctx.data::<Arc<OperationState>>().ok();
    let item_error = |at: &[usize], message: &str| {
        let mut path = ctx
            .ctx
            .path_node
            .as_ref()
            .map(super::path_of)
            .unwrap_or_default();
        path.extend(at.iter().copied().map(PathSegment::Index));
        let error = bad_response(binding, message)
            .into_graphql()
            .into_server_error(ctx.ctx.item.pos);
        ServerError { path, ..error }
    };
    match shaped {
        Err(ShapeError { at, message }) if at.is_empty() => {
            Err(bad_response(binding, &message).into_graphql())
        }
        Err(ShapeError { at, message }) => {
            // Reported at the item; the field fails without a second error.
            if let Some(state) = state {
                state.report(item_error(&at, &message));
            }
            Err(super::silent_error())
        }
        Ok(shaped) => {
            if let Some(state) = state.filter(|_| !issues.is_empty()) {
                let field_key = ctx
                    .ctx
                    .path_node
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                for issue in issues {
                    let mut key = field_key.clone();
                    for index in &issue.null_at {
                        key.push('.');
                        key.push_str(&index.to_string());
                    }
                    state.mark_null_item(key);
                    if let Some(ShapeError { at, message }) = issue.error {
                        state.report(item_error(&at, &message));
                    }
                }
            }
            Ok(shaped)
        }
    }
}

/// What could not be shaped, and where: indices of list items below the
/// field (empty for the field itself).
struct ShapeError {
    at: Vec<usize>,
    message: String,
}

impl ShapeError {
    fn here(at: &[usize], message: impl Into<String>) -> ShapeError {
        ShapeError {
            at: at.to_vec(),
            message: message.into(),
        }
    }
}

/// A list item shaped to null (`null_at`), and the error that caused it
/// (`None`: the upstream sent null for a nullable item).
struct ItemIssue {
    null_at: Vec<usize>,
    error: Option<ShapeError>,
}

/// JSON either borrowed from the parent or owned from an upstream answer;
/// objects are handed to the executor without copying either way.
enum Json<'a> {
    Owned(Value),
    Borrowed(&'a Value),
}

impl Json<'_> {
    fn get(&self) -> &Value {
        match self {
            Json::Owned(value) => value,
            Json::Borrowed(value) => value,
        }
    }
}

/// Shapes `value` to `ty`. `at` is the position inside the field's value
/// (list indices); `issues` collects nulled items of nullable-item lists.
fn shape<'a>(
    value: Option<Json<'a>>,
    ty: &OutputType,
    at: &mut Vec<usize>,
    issues: &mut Vec<ItemIssue>,
) -> Result<Option<FieldValue<'a>>, ShapeError> {
    let value = match value {
        Some(value) if !value.get().is_null() => value,
        _ if ty.non_null => return Err(ShapeError::here(at, "a non-null value is null")),
        _ => return Ok(None),
    };
    match &ty.kind {
        OutputKind::Scalar(_) | OutputKind::Enum(_) => coerce::leaf(value.get(), &ty.kind)
            .map(|v| Some(FieldValue::value(v)))
            .map_err(|message| ShapeError::here(at, message)),
        OutputKind::List(item) => {
            let items: Vec<Json<'a>> = match value {
                Json::Owned(Value::Array(items)) => items.into_iter().map(Json::Owned).collect(),
                Json::Borrowed(Value::Array(items)) => items.iter().map(Json::Borrowed).collect(),
                _ => return Err(ShapeError::here(at, "expected a list")),
            };
            // If the list fails as a whole, what its items reported is moot.
            let reported_before = issues.len();
            let result = shape_list(items, item, at, issues);
            if result.is_err() {
                issues.truncate(reported_before);
            }
            result
        }
        OutputKind::Object(_) => {
            if !value.get().is_object() {
                return Err(ShapeError::here(at, "expected an object"));
            }
            Ok(Some(object_value(value)))
        }
        OutputKind::Abstract(abstract_type) => {
            if !value.get().is_object() {
                return Err(ShapeError::here(at, "expected an object"));
            }
            let concrete = abstract_type
                .concrete_type(value.get())
                .map_err(|message| ShapeError::here(at, message))?
                .to_owned();
            Ok(Some(object_value(value).with_type(concrete)))
        }
    }
}

fn shape_list<'a>(
    items: Vec<Json<'a>>,
    item: &OutputType,
    at: &mut Vec<usize>,
    issues: &mut Vec<ItemIssue>,
) -> Result<Option<FieldValue<'a>>, ShapeError> {
    let leaf = matches!(item.kind, OutputKind::Scalar(_) | OutputKind::Enum(_));
    let mut leaves = Vec::new();
    let mut objects = Vec::new();
    for (index, item_value) in items.into_iter().enumerate() {
        at.push(index);
        let shaped = shape(Some(item_value), item, at, issues);
        let null_at = at.clone();
        at.pop();
        let (shaped, absorbed) = match shaped {
            Ok(shaped) => (shaped, false),
            // A nullable item absorbs its own error; a non-null one fails
            // the whole list, which then propagates.
            Err(error) if !item.non_null => {
                issues.push(ItemIssue {
                    null_at: null_at.clone(),
                    error: Some(error),
                });
                (None, true)
            }
            Err(error) => return Err(error),
        };
        if leaf {
            // Leaf lists become one value: no per-item executor work.
            leaves.push(
                shaped
                    .and_then(|v| v.as_value().cloned())
                    .unwrap_or(GqlValue::Null),
            );
            continue;
        }
        match shaped {
            Some(value) => objects.push(value),
            None => {
                if !absorbed {
                    issues.push(ItemIssue {
                        null_at,
                        error: None,
                    });
                }
                objects.push(FieldValue::NULL);
            }
        }
    }
    Ok(Some(if leaf {
        FieldValue::value(GqlValue::List(leaves))
    } else {
        FieldValue::list(objects)
    }))
}

fn object_value(value: Json<'_>) -> FieldValue<'_> {
    match value {
        Json::Owned(value) => FieldValue::owned_any(value),
        Json::Borrowed(value) => FieldValue::borrowed_any(value),
    }
}
