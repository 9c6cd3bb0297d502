//! The engine's second phase: one synchronous pass over the plan
//! and the upstream JSON, writing the response's `data` straight from the
//! borrowed values (leaves checked and coerced on the way), with the calls'
//! answers looked up from the first phase.
//!
//! GraphQL spec "Handling Field Errors": an error is reported once at its
//! own path, and nulls the nearest nullable position above it. A position
//! remembers where its output began; when an error reaches it from below,
//! what was written since is cut and `null` written instead.
//!
//! A part of an incrementally delivered response (`@defer`) is written the
//! same way: the first part from the root, each deferred one as entries
//! found again along the routes noted while its parent part was written.

use std::ops::Range;
use std::sync::Arc;

use async_graphql::{Name, PathSegment, Pos, ServerError};
use rustc_hash::FxHashMap;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use super::deferred::{self, Deferral, Step};
use super::plan::{FieldKind, FieldPlan, ObjectPlan, SubPlan};
use super::resolve::Resolution;
use crate::connector::coerce::{write_leaf, OutputKind, OutputType};
use crate::error::FieldError;
use crate::execute::calls::{self, bad_response, FieldAnswer, Held};
use crate::execute::operation::{MappingProblem, MISSING, WRONG_TYPE};
use crate::schema::binding::BoundSource;
use crate::schema::FieldBinding;
use crate::telemetry::metrics;
use crate::upstream::json::{self, Json};

/// An error below made this position fail; the nearest nullable position
/// above becomes null.
pub struct Bubble;

type Written = Result<(), Bubble>;

pub struct Writer<'r> {
    resolution: &'r Resolution<'r>,
    claims: Option<&'r serde_json::Value>,
    /// What async-graphql answered for the root's introspection fields.
    pub introspected: Option<&'r async_graphql::indexmap::IndexMap<Name, async_graphql::Value>>,
    pub out: Vec<u8>,
    pub errors: Vec<ServerError>,
    /// Paths answered from stale cache entries.
    pub stale: Vec<Vec<PathSegment>>,
    /// The deferred fragments of the objects written, to deliver in later
    /// parts.
    pub deferrals: Vec<Deferral<'r>>,
    path: Vec<Step<'r>>,
    /// Where a batched answer was written, by the answer's address. Every
    /// item sharing a batch key shares one answer (one per field), so its
    /// JSON is copied instead of walked again: 2,500 orders over 100
    /// products write 100 products. Only answers written without errors
    /// or stale marks are kept (those carry the path), and an entry goes
    /// when the output is cut back over it.
    written: FxHashMap<usize, Range<usize>>,
}

impl<'r> Writer<'r> {
    /// Writes after what `out` holds.
    pub fn new(
        resolution: &'r Resolution<'r>,
        claims: Option<&'r serde_json::Value>,
        out: Vec<u8>,
    ) -> Self {
        Writer {
            resolution,
            claims,
            introspected: None,
            out,
            errors: Vec::new(),
            stale: Vec::new(),
            deferrals: Vec::new(),
            path: Vec::new(),
            written: FxHashMap::default(),
        }
    }

    /// Replaces what was written since `start` with `null` (an error
    /// nulled that position).
    pub fn null_since(&mut self, start: usize) {
        self.out.truncate(start);
        self.out.extend_from_slice(b"null");
        if !self.written.is_empty() {
            self.written.retain(|_, range| range.end <= start);
        }
        if !self.deferrals.is_empty() {
            self.deferrals.retain(|deferral| deferral.at < start);
        }
    }

    /// Writes `parent` for `plan`; `service` answered it (named in the
    /// errors of values it sent that do not fit the schema).
    pub fn object(
        &mut self,
        plan: &'r ObjectPlan,
        parent: &Json,
        service: Option<&'r str>,
    ) -> Written {
        let read = read_keys(plan, parent);
        let at = self.out.len();
        self.out.push(b'{');
        for (index, field) in plan.fields.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(field.key_json.as_bytes());
            self.path.push(Step::Field(field));
            let start = self.out.len();
            let written = self.field(plan, field, parent, service, read.get(index).copied());
            self.path.pop();
            if written.is_err() {
                if !nullable(field) {
                    return Err(Bubble);
                }
                self.null_since(start);
            }
        }
        self.out.push(b'}');
        for fragment in &plan.deferred {
            self.deferrals.push(Deferral {
                fragment,
                route: self.path.clone(),
                at,
            });
        }
        Ok(())
    }

    /// Writes one entry of a deferred part's `incremental` list,
    /// `{"data":…,"path":…,"label":…,"errors":…}`: `deferral`'s fragment
    /// at its object, found again from `root` along its route. Its errors
    /// are its own; a non-null field failing in it makes its `data` null.
    pub fn deferred_entry(&mut self, root: &Json, deferral: &Deferral<'r>) {
        let errors = self.errors.len();
        self.out.extend_from_slice(b"{\"data\":");
        let start = self.out.len();
        self.path.clone_from(&deferral.route);
        let written = self.at_route(root, &deferral.route, &deferral.fragment.plan, None);
        if !matches!(written, Some(Ok(()))) {
            self.null_since(start);
        }
        self.out.extend_from_slice(b",\"path\":");
        let path = deferred::path_of(&deferral.route);
        let _ = self.json(&path);
        if let Some(label) = &deferral.fragment.label {
            self.out.extend_from_slice(b",\"label\":");
            let _ = self.json(&**label);
        }
        if self.errors.len() > errors {
            self.out.extend_from_slice(b",\"errors\":");
            let own = self.errors.split_off(errors);
            let _ = self.json(&own);
        }
        self.out.push(b'}');
        self.path.clear();
    }

    /// Writes `plan` at the object `route` leads to from `object`; `None`
    /// when the route leads nowhere (it was walked when noted, so it does
    /// not happen).
    fn at_route(
        &mut self,
        object: &Json,
        route: &[Step<'r>],
        plan: &'r ObjectPlan,
        service: Option<&'r str>,
    ) -> Option<Written> {
        let Some((step, rest)) = route.split_first() else {
            return Some(self.object(plan, object, service));
        };
        let Step::Field(field) = step else {
            return None;
        };
        let answer = self.resolution.answer_of(object, field.id);
        let (next, rest) = deferred::follow(field, object, answer.as_deref(), rest)?;
        let service = match &field.kind {
            FieldKind::Field { binding, .. } => service_of(binding, service),
            _ => service,
        };
        self.at_route(next, rest, plan, service)
    }

    fn field(
        &mut self,
        plan: &ObjectPlan,
        field: &'r FieldPlan,
        parent: &Json,
        parent_service: Option<&'r str>,
        read: Option<Option<&Json>>,
    ) -> Written {
        let (binding, sub) = match &field.kind {
            FieldKind::Typename => {
                return self.json(&*plan.type_name);
            }
            FieldKind::Introspection => {
                let value = self
                    .introspected
                    .and_then(|data| data.get(&field.key))
                    .unwrap_or(&async_graphql::Value::Null);
                return self.json(value);
            }
            FieldKind::Field { binding, sub, .. } => (&**binding, sub),
        };
        if let Some(rule) = &binding.access {
            if let Err(err) = rule.check(self.claims) {
                return self.fail(err, field.pos);
            }
        }
        let at = Field {
            binding,
            sub,
            pos: field.pos,
            service: service_of(binding, parent_service),
        };
        match &binding.source {
            BoundSource::ParentKey(key) if binding.shape.is_none() => {
                let json = read.unwrap_or_else(|| json::get(parent, key));
                if json.is_none() {
                    self.problem(binding, MISSING, || {
                        format!("the upstream object has no key `{key}`")
                    });
                }
                self.value(json, &binding.output, &at)
            }
            BoundSource::From(path) if binding.shape.is_none() => {
                let json = json::at(parent, path);
                if json.is_none() {
                    self.problem(binding, MISSING, || {
                        format!(
                            "the `from` path `{}` is not in the upstream object",
                            path.join(".")
                        )
                    });
                }
                self.value(json, &binding.output, &at)
            }
            _ => {
                let Some(answer) = self.resolution.answer_of(parent, field.id) else {
                    // The first phase ran out of time before reaching it.
                    return self.fail(calls::timed_out(), field.pos);
                };
                match &*answer {
                    FieldAnswer::Null => self.value(None, &binding.output, &at),
                    FieldAnswer::Failed(err) => self.fail(err.clone(), field.pos),
                    FieldAnswer::Value { held, stale } => {
                        if *stale {
                            let path = self.current_path();
                            self.stale.push(path);
                        }
                        if let Held::Selected(selected) = held {
                            if let Some(path) = selected.missing_select() {
                                self.problem(binding, MISSING, || {
                                    format!(
                                        "the `select` path `{}` is not in the answer",
                                        path.join(".")
                                    )
                                });
                            }
                        }
                        match held {
                            // The resolution holds every answer until the
                            // operation ends, so its address is unique.
                            Held::Batch { .. } => {
                                self.batched(Arc::as_ptr(&answer) as usize, held, &at)
                            }
                            _ => self.value(held.single(), &binding.output, &at),
                        }
                    }
                }
            }
        }
    }

    /// A batched answer, `shared` by every position whose batch key is
    /// the same: written once, copied after.
    fn batched(&mut self, shared: usize, held: &Held, at: &Field<'r>) -> Written {
        if let Some(range) = self.written.get(&shared) {
            self.out.extend_from_within(range.clone());
            return Ok(());
        }
        let (start, errors, stale) = (self.out.len(), self.errors.len(), self.stale.len());
        let deferrals = self.deferrals.len();
        let written = match &at.binding.output.kind {
            OutputKind::List(item) => self.list(held.matches(), item, at),
            _ => self.value(held.single(), &at.binding.output, at),
        };
        // A copy would miss the deferred fragments below, which are noted
        // with their path.
        if written.is_ok()
            && self.errors.len() == errors
            && self.stale.len() == stale
            && self.deferrals.len() == deferrals
        {
            self.written.insert(shared, start..self.out.len());
        }
        written
    }

    /// Writes `json` as a value of type `ty`.
    fn value(&mut self, json: Option<&Json>, ty: &OutputType, at: &Field<'r>) -> Written {
        let json = match json {
            Some(json) if !json.is_null() => json,
            _ if ty.non_null => return self.fail_bad(at, "a non-null value is null"),
            _ => {
                self.out.extend_from_slice(b"null");
                return Ok(());
            }
        };
        match &ty.kind {
            OutputKind::Scalar(_) | OutputKind::Enum(_) => {
                match write_leaf(&mut self.out, json, &ty.kind) {
                    Ok(()) => Ok(()),
                    Err(message) => self.bad(at, &message),
                }
            }
            OutputKind::List(item) => match json::items(json) {
                Some(items) => self.list(items, item, at),
                None => self.bad(at, "expected a list"),
            },
            OutputKind::Object(_) => match (json.is_object(), at.sub.for_type("")) {
                (true, Some(plan)) => self.object(plan, json, at.service),
                _ => self.bad(at, "expected an object"),
            },
            OutputKind::Abstract(abstract_type) => {
                if !json.is_object() {
                    return self.bad(at, "expected an object");
                }
                let concrete = match abstract_type.concrete_type_of(json) {
                    Ok(concrete) => concrete,
                    Err(message) => return self.bad(at, &message),
                };
                match at.sub.for_type(concrete) {
                    Some(plan) => self.object(plan, json, at.service),
                    None => self.bad(at, "a value of a type the query did not plan"),
                }
            }
        }
    }

    /// A list: a failed nullable item becomes null; a failed non-null item
    /// fails the list.
    fn list(&mut self, items: &[Json], item: &OutputType, at: &Field<'r>) -> Written {
        self.out.push(b'[');
        for (index, value) in items.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            self.path.push(Step::Index(index));
            let start = self.out.len();
            let written = self.value(Some(value), item, at);
            self.path.pop();
            if written.is_err() {
                if item.non_null {
                    return Err(Bubble);
                }
                self.null_since(start);
            }
        }
        self.out.push(b']');
        Ok(())
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Written {
        // Writing into a Vec cannot fail for strings.
        serde_json::to_writer(&mut self.out, value).map_err(|_| Bubble)
    }

    /// A value of the wrong type for the schema: an error, and a mapping
    /// problem.
    fn bad(&mut self, at: &Field<'r>, message: &str) -> Written {
        self.problem(at.binding, WRONG_TYPE, || message.to_owned());
        self.fail_bad(at, message)
    }

    /// A mapping problem met writing `binding`'s value (docs/PLAN.md):
    /// counted per field in `/metrics`, and listed with its path in the
    /// debug waterfall, so that a silent `null` has an explanation.
    fn problem(
        &mut self,
        binding: &FieldBinding,
        kind: &'static str,
        detail: impl FnOnce() -> String,
    ) {
        metrics::mapping_problem(&binding.name, kind);
        let state = self.resolution.state();
        if state.stats.recording() {
            state.note_problem(MappingProblem {
                field: binding.name.clone(),
                path: self.current_path(),
                problem: kind,
                detail: detail(),
            });
        }
    }

    fn fail_bad(&mut self, at: &Field<'r>, message: &str) -> Written {
        let mut err = bad_response(at.binding, message);
        if let Some(service) = at.service {
            err = err.from_service(service);
        }
        self.fail(err, at.pos)
    }

    /// Reports `err` at the current path and fails this position.
    fn fail(&mut self, err: FieldError, pos: Pos) -> Written {
        let mut error = err.into_graphql().into_server_error(pos);
        error.path = self.current_path();
        self.errors.push(error);
        Err(Bubble)
    }

    fn current_path(&self) -> Vec<PathSegment> {
        deferred::path_of(&self.path)
    }
}

/// Objects with at most this many fields have their keys read in one pass.
const READ_AHEAD: usize = 32;

/// The values of the fields that read a key of `parent`, by field index,
/// found in one pass over its entries: a map lookup per field costs several
/// string comparisons, and per-field work must stay near 100 ns for the
/// engine to keep up with hand-written code (docs/SPEED.md). Empty when
/// the pass would cost more than the lookups (many more entries than
/// fields read); fields then look their key up.
fn read_keys<'v>(plan: &ObjectPlan, parent: &'v Json) -> ReadAhead<'v> {
    let mut read = ReadAhead::default();
    let Some(map) = parent.as_object() else {
        return read;
    };
    let fields = plan.fields.len();
    if plan.reads.is_empty() || fields > READ_AHEAD || map.len() > 2 * plan.reads.len() + 4 {
        return read;
    }
    read.len = fields;
    for (key, value) in map.iter() {
        if let Some(indexes) = plan.reads.get(key) {
            for &index in indexes {
                read.values[index] = Some(value);
            }
        }
    }
    read
}

/// Up to [`READ_AHEAD`] fields' values, on the stack.
struct ReadAhead<'v> {
    values: [Option<&'v Json>; READ_AHEAD],
    /// 0 when nothing was read ahead.
    len: usize,
}

impl Default for ReadAhead<'_> {
    fn default() -> Self {
        ReadAhead {
            values: [None; READ_AHEAD],
            len: 0,
        }
    }
}

impl<'v> ReadAhead<'v> {
    /// `Some(value or absent)` when read ahead, `None` to look it up.
    fn get(&self, index: usize) -> Option<&Option<&'v Json>> {
        (index < self.len).then(|| &self.values[index])
    }
}

/// The field a value is written for: errors name its binding, point at
/// its place in the document, and name the service the value came from.
struct Field<'r> {
    binding: &'r FieldBinding,
    sub: &'r SubPlan,
    pos: Pos,
    service: Option<&'r str>,
}

/// The service a field's value comes from: its own call's, else its
/// parent's.
fn service_of<'r>(binding: &'r FieldBinding, parent_service: Option<&'r str>) -> Option<&'r str> {
    match &binding.source {
        BoundSource::Call(call) => Some(call.service.name.as_str()),
        BoundSource::Merge(calls) => calls.first().map(|c| c.service.name.as_str()),
        BoundSource::Batch(batch) => Some(batch.service.name.as_str()),
        BoundSource::Event(crate::schema::binding::EventSource::Poll { call, .. }) => {
            Some(call.service.name.as_str())
        }
        BoundSource::ParentKey(_)
        | BoundSource::From(_)
        | BoundSource::Event(_)
        | BoundSource::Value(_) => parent_service,
    }
}

fn nullable(field: &FieldPlan) -> bool {
    match &field.kind {
        // Written as answered (a failed one is null, its error reported).
        FieldKind::Typename | FieldKind::Introspection => false,
        FieldKind::Field { binding, .. } => !binding.output.non_null,
    }
}
