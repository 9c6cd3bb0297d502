//! How many upstream calls an operation can make, read from its plan before
//! anything runs (docs/PLAN.md): what `[limits].max_upstream_calls` refuses,
//! what `[rate_limit] cost = "upstream_calls"` takes from a client's bucket,
//! and what `conflux explain` and `conflux-explain: 1` print.
//!
//! Each call-mapped field counts one call per possible parent; a list's
//! length is its field's `first` or `limit` argument when it has one, else
//! `[limits].assumed_list_length`; a batched field counts `ceil(keys /
//! max)`; a GET whose request does not depend on the parent is the same
//! request for every parent, and the same request is made once per
//! operation (`OperationState::fetch`), so it counts once — an alias
//! repeating it counts 0. The figure is an upper bound: a 404, a missing
//! value, a cache hit or a shorter list make fewer calls.

use std::sync::Arc;

use async_graphql::Value as GqlValue;
use http::Method;

use super::plan::{FieldKind, ObjectPlan, OperationPlan, SubPlan};
use crate::config::{BodyTemplate, CallSpec};
use crate::connector::coerce::{OutputKind, OutputType};
use crate::connector::template::Root;
use crate::execute::calls::Args;
use crate::schema::binding::BoundSource;

/// The prediction for one operation, in the shape `conflux explain
/// --format json` prints and `extensions.conflux.plan` carries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    pub predicted_calls: u64,
    /// One entry per call-mapped field (per call of a `merge`), parents
    /// before the fields that need their answers.
    pub calls: Vec<PredictedCall>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PredictedCall {
    /// The field's path in the document, by response key (`user.orders`).
    pub field: String,
    pub service: String,
    pub method: String,
    /// The path template as written (a batch's: its call's).
    pub path: Arc<str>,
    /// The call fields whose answers this one needs (its parent object
    /// comes from them).
    pub depends_on: Vec<String>,
    /// A batched field's `max`.
    pub batched: Option<usize>,
    /// The list this call repeats for, once per item.
    pub per_item_of: Option<String>,
    /// This field's share of `predicted_calls`.
    pub count: u64,
    /// `cache_ttl_s`, for the text form only.
    #[serde(skip)]
    pub cache_ttl_s: Option<u64>,
}

/// Predicts the calls of `plan` with the request's `args`
/// (`planned::arguments`); lists without `first`/`limit` count
/// `assumed_list_length` items.
pub fn predict(
    plan: &OperationPlan,
    args: &[Option<Args>],
    assumed_list_length: u64,
) -> Prediction {
    walk(plan, args, assumed_list_length, true)
}

/// The predicted number of calls alone (what the budget and the rate
/// limit read on every request): the same walk without the entries, so
/// no path or name is formatted.
pub fn predicted_calls(
    plan: &OperationPlan,
    args: &[Option<Args>],
    assumed_list_length: u64,
) -> u64 {
    let predict = || walk(plan, args, assumed_list_length, false).predicted_calls;
    match &plan.predicted_once {
        Some(once) => *once.get_or_init(predict),
        None => predict(),
    }
}

fn walk<'a>(
    plan: &'a OperationPlan,
    args: &'a [Option<Args>],
    assumed_list_length: u64,
    detailed: bool,
) -> Prediction {
    let mut walk = Walk {
        args,
        assumed: assumed_list_length,
        seen: Vec::new(),
        calls: Vec::new(),
        detailed,
        total: 0,
    };
    let root = Place {
        path: String::new(),
        parents: 1,
        list: None,
        depends_on: None,
    };
    walk.object(&plan.root, &root);
    Prediction {
        predicted_calls: walk.total,
        calls: walk.calls,
    }
}

struct Walk<'a> {
    args: &'a [Option<Args>],
    assumed: u64,
    /// GETs already counted that are the same request wherever they
    /// appear: (field, arguments). A list, compared by value: an operation
    /// has a few such calls, and rendering each one's arguments as text to
    /// hash them cost more than the rest of the prediction.
    seen: Vec<(&'a str, Option<&'a Args>)>,
    calls: Vec<PredictedCall>,
    /// Build `calls` (explain), or only add up `total` (every request).
    detailed: bool,
    total: u64,
}

/// Where in the operation a selection sits.
struct Place {
    /// The response path of the object the selection is on.
    path: String,
    /// How many such objects there can be.
    parents: u64,
    /// The nearest list above.
    list: Option<String>,
    /// The nearest call field above.
    depends_on: Option<String>,
}

impl<'a> Walk<'a> {
    fn object(&mut self, plan: &'a ObjectPlan, place: &Place) {
        for field in &plan.fields {
            let FieldKind::Field { binding, sub, .. } = &field.kind else {
                continue;
            };
            let path = if !self.detailed {
                String::new()
            } else if place.path.is_empty() {
                field.key.to_string()
            } else {
                format!("{}.{}", place.path, field.key)
            };
            let args = self.args.get(field.id).and_then(Option::as_ref);
            let calls = match &binding.source {
                BoundSource::Call(call) => {
                    self.call(&path, &binding.name, &call.spec, ttl(call), args, place);
                    true
                }
                BoundSource::Merge(calls) => {
                    for call in calls {
                        self.call(&path, &binding.name, &call.spec, ttl(call), args, place);
                    }
                    true
                }
                BoundSource::Batch(batch) => {
                    let max = batch.spec.max.max(1) as u64;
                    let count = place.parents.div_ceil(max);
                    self.total = self.total.saturating_add(count);
                    if self.detailed {
                        self.calls.push(PredictedCall {
                            field: path.clone(),
                            service: batch.service.name.clone(),
                            method: batch.spec.call.method.to_string(),
                            path: batch.spec.call.path_text.clone(),
                            depends_on: place.depends_on.iter().cloned().collect(),
                            batched: Some(batch.spec.max),
                            per_item_of: None,
                            count,
                            cache_ttl_s: batch.cache.map(|c| c.ttl.as_secs()),
                        });
                    }
                    true
                }
                BoundSource::ParentKey(_) | BoundSource::From(_) | BoundSource::Value(_) => false,
                // A subscription's source: its poller is shared and runs
                // apart from the operation (docs/SUBSCRIPTIONS.md); what an
                // event resolves below it is counted like a query's.
                BoundSource::Event(_) => false,
            };
            let items = list_length(&binding.output, args, self.assumed);
            let parents = place.parents.saturating_mul(items.unwrap_or(1));
            let below = if self.detailed {
                Place {
                    parents,
                    list: match items {
                        Some(_) => Some(path.clone()),
                        None => place.list.clone(),
                    },
                    depends_on: if calls {
                        Some(path.clone())
                    } else {
                        place.depends_on.clone()
                    },
                    path,
                }
            } else {
                Place {
                    parents,
                    path,
                    list: None,
                    depends_on: None,
                }
            };
            match sub {
                SubPlan::Leaf => {}
                SubPlan::Object(plan) => self.object(plan, &below),
                // Each item is one of the types: counting every type's
                // calls for every item stays an upper bound.
                SubPlan::Abstract(plans) => {
                    for plan in plans {
                        self.object(plan, &below);
                    }
                }
            }
        }
        // A deferred fragment's calls are made too, later.
        for deferred in &plan.deferred {
            self.object(&deferred.plan, place);
        }
    }

    fn call(
        &mut self,
        path: &str,
        field: &'a str,
        spec: &CallSpec,
        cache_ttl_s: Option<u64>,
        args: Option<&'a Args>,
        place: &Place,
    ) {
        let per_parent = uses_parent(spec);
        let count = if spec.method == Method::GET && !per_parent {
            // The same request for every parent, and for every alias with
            // the same arguments: made once.
            let args = args.filter(|a| !a.is_empty());
            let fresh = !self.seen.contains(&(field, args));
            if fresh {
                self.seen.push((field, args));
            }
            u64::from(fresh)
        } else {
            place.parents
        };
        self.total = self.total.saturating_add(count);
        if !self.detailed {
            return;
        }
        self.calls.push(PredictedCall {
            field: path.to_owned(),
            service: spec.service.clone(),
            method: spec.method.to_string(),
            path: spec.path_text.clone(),
            depends_on: place.depends_on.iter().cloned().collect(),
            batched: None,
            per_item_of: if place.parents > 1 && (per_parent || spec.method != Method::GET) {
                place.list.clone()
            } else {
                None
            },
            count,
            cache_ttl_s,
        });
    }
}

/// Items a list-typed field can have: its `first`/`limit` argument, else
/// `assumed` per level of list. `None` for a field that is no list.
fn list_length(output: &OutputType, args: Option<&Args>, assumed: u64) -> Option<u64> {
    let OutputKind::List(inner) = &output.kind else {
        return None;
    };
    let given = args.and_then(|args| {
        ["first", "limit"]
            .iter()
            .find_map(|name| match args.get(*name) {
                Some(GqlValue::Number(n)) => n.as_u64().or(n.as_i64().map(|_| 0)),
                _ => None,
            })
    });
    let mut items = given.unwrap_or(assumed);
    // `[[T]]`: the inner lists are of unknown length.
    let mut level = &inner.kind;
    while let OutputKind::List(inner) = level {
        items = items.saturating_mul(assumed);
        level = &inner.kind;
    }
    Some(items)
}

/// Whether any template of the call reads the parent object: then each
/// parent's call is a request of its own.
pub fn uses_parent(spec: &CallSpec) -> bool {
    let parent =
        |t: &crate::connector::template::Template| t.placeholders().any(|p| p.root == Root::Parent);
    parent(&spec.path)
        || spec.query.iter().any(|(_, t)| parent(t))
        || spec.headers.iter().any(|(_, t)| parent(t))
        || spec
            .body
            .as_ref()
            .is_some_and(|b| body_uses_parent(b, &parent))
}

fn body_uses_parent(
    body: &BodyTemplate,
    parent: &impl Fn(&crate::connector::template::Template) -> bool,
) -> bool {
    match body {
        BodyTemplate::Text(t) => parent(t),
        BodyTemplate::Literal(_) => false,
        BodyTemplate::Array(items) => items.iter().any(|b| body_uses_parent(b, parent)),
        BodyTemplate::Object(fields) => fields.iter().any(|(_, b)| body_uses_parent(b, parent)),
    }
}

/// A call's `cache_ttl_s`, when its field caches.
fn ttl(call: &crate::schema::binding::BoundCall) -> Option<u64> {
    call.cache.map(|c| c.ttl.as_secs())
}

impl Prediction {
    /// The text `conflux explain` prints: one line per call in dependency
    /// order, then the prediction.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for call in &self.calls {
            let _ = write!(
                out,
                "{}  {}  {} {}",
                call.field, call.service, call.method, call.path
            );
            if let Some(max) = call.batched {
                let _ = write!(out, "  batched (max {max})");
            }
            if let Some(list) = &call.per_item_of {
                let _ = write!(out, "  once per item of {list}");
            }
            if !call.depends_on.is_empty() {
                let _ = write!(out, "  after {}", call.depends_on.join(", "));
            }
            match call.cache_ttl_s {
                Some(ttl) => {
                    let _ = write!(out, "  cache {ttl}s");
                }
                None => out.push_str("  no cache"),
            }
            let noun = if call.count == 1 { "call" } else { "calls" };
            let _ = writeln!(out, "  {} {noun}", call.count);
        }
        let _ = writeln!(out, "predicted upstream calls: {}", self.predicted_calls);
        out
    }
}

/// Each field's path in the document by response key (`user.orders`), by
/// field id: what the debug waterfall names a call by.
pub fn field_paths(plan: &OperationPlan) -> Vec<Option<Arc<str>>> {
    fn walk(plan: &ObjectPlan, prefix: &str, paths: &mut Vec<Option<Arc<str>>>) {
        for field in &plan.fields {
            let path = if prefix.is_empty() {
                field.key.to_string()
            } else {
                format!("{prefix}.{}", field.key)
            };
            if let Some(slot) = paths.get_mut(field.id) {
                *slot = Some(Arc::from(path.as_str()));
            }
            if let FieldKind::Field { sub, .. } = &field.kind {
                match sub {
                    SubPlan::Leaf => {}
                    SubPlan::Object(plan) => walk(plan, &path, paths),
                    SubPlan::Abstract(plans) => {
                        for plan in plans {
                            walk(plan, &path, paths);
                        }
                    }
                }
            }
        }
        for deferred in &plan.deferred {
            walk(&deferred.plan, prefix, paths);
        }
    }
    let mut paths = vec![None; plan.field_count];
    walk(&plan.root, "", &mut paths);
    paths
}
