//! The resolver every object field runs on async-graphql's executor (the
//! path for what the planned executor leaves alone: mutations,
//! introspection, unusual variables): read the parent, or call the field's
//! service(s), then shape the JSON into the field's type.

use std::sync::Arc;

use async_graphql::dynamic::{FieldFuture, FieldValue, ResolverContext};
use serde_json::Value;

use super::calls::{self, FieldAnswer, FieldScope, Held, Parent};
use super::operation::OperationState;
use super::shape::{shape_borrowed, shape_owned};
use crate::connector::coerce::OutputKind;
use crate::connector::template::value_at;
use crate::error::{ErrorCode, FieldError};
use crate::schema::binding::BoundSource;
pub use crate::schema::FieldBinding as Binding;
use crate::upstream::json;

pub(super) type FieldResult<'a> = Result<Option<FieldValue<'a>>, async_graphql::Error>;

pub fn resolve(binding: Arc<Binding>, ctx: ResolverContext<'_>) -> FieldFuture<'_> {
    if let Some(rule) = &binding.access {
        // SPEC §4: checked before the field resolves; no call is made.
        let claims = ctx
            .data::<Arc<OperationState>>()
            .ok()
            .and_then(|s| s.claims.clone());
        if let Err(err) = rule.check(claims.as_deref()) {
            return ready(Err(err.into_graphql()));
        }
    }
    let parent = ctx.parent_value.downcast_ref::<Value>();
    match &binding.source {
        // The common case by far: no call, no allocation beyond the value.
        BoundSource::ParentKey(key) => ready(shape_borrowed(
            parent.and_then(|p| p.get(key)),
            &binding,
            &ctx,
        )),
        BoundSource::From(path) => ready(shape_borrowed(
            parent.and_then(|p| value_at(p, path)),
            &binding,
            &ctx,
        )),
        BoundSource::Call(_) | BoundSource::Merge(_) | BoundSource::Batch(_) => {
            FieldFuture::new(async move {
                let state = ctx.data::<Arc<OperationState>>().map_err(|_| {
                    FieldError::new(ErrorCode::Internal, "operation state missing").into_graphql()
                })?;
                let args = ctx.args.as_index_map();
                let scope =
                    FieldScope::new(&binding, state, Some(args), parent.map(Parent::Converted));
                match calls::answer(&scope, state).await {
                    FieldAnswer::Value { held, stale } => {
                        if stale {
                            let path = ctx
                                .ctx
                                .path_node
                                .as_ref()
                                .map(super::path_of)
                                .unwrap_or_default();
                            state.mark_stale(path);
                        }
                        // This executor works on serde_json values: the
                        // answer is copied into one here.
                        let value = match held {
                            Held::Selected(selected) => json::to_serde(selected.get()),
                            Held::Owned(value) => json::to_serde(&value),
                            batch @ Held::Batch { .. } => match binding.output.kind {
                                OutputKind::List(_) => Value::Array(
                                    batch.matches().iter().map(json::to_serde).collect(),
                                ),
                                _ => batch.single().map_or(Value::Null, json::to_serde),
                            },
                        };
                        shape_owned(value, &binding, &ctx)
                    }
                    FieldAnswer::Null => Ok(None),
                    FieldAnswer::Failed(err) => Err(err.into_graphql()),
                }
            })
        }
    }
}

fn ready(result: FieldResult<'_>) -> FieldFuture<'_> {
    match result {
        Ok(value) => FieldFuture::Value(value),
        Err(err) => FieldFuture::new(async move { Err::<Option<FieldValue<'_>>, _>(err) }),
    }
}
