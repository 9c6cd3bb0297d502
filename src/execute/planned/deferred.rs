//! `@defer(label: String, if: Boolean! = true)` (docs/DEFER.md): the checks
//! async-graphql cannot make for it, and the routes along which a deferred
//! fragment's object is found again when its part is resolved and written.
//!
//! async-graphql's dynamic schema cannot declare an executable directive of
//! ours, so a document is validated with each `@defer` rewritten
//! ([`rewrite_for_validation`]) and its own rules are checked here.

use std::collections::HashSet;

use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, InlineFragment,
    OperationDefinition, Selection, SelectionSet, VariableDefinition,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, PathSegment, ServerError};
use async_graphql_value::Value as InputValue;

use super::plan::{DeferredPlan, FieldKind, FieldPlan};
use crate::connector::coerce::{OutputKind, OutputType};
use crate::error::ErrorCode;
use crate::execute::calls::{FieldAnswer, Held};
use crate::execute::with_code;
use crate::schema::binding::BoundSource;
use crate::upstream::json::{self, Json};

/// The directive's name.
pub const DEFER: &str = "defer";

/// The document async-graphql validates, and the errors of `@defer`'s own
/// rules: on a fragment spread or inline fragment only, once per fragment,
/// `label` a literal string unique in the document, `if` a Boolean.
///
/// Each deferred fragment becomes the one selection of an inline fragment
/// `... @include(if: <its if>)`, so that a variable in `if` counts as used
/// and is checked against `Boolean!` by the usual rules; a `@defer` on a
/// field is removed (and reported here).
pub fn rewrite_for_validation(
    mut document: ExecutableDocument,
) -> (ExecutableDocument, Vec<ServerError>) {
    let mut rules = Rules::default();
    match &mut document.operations {
        DocumentOperations::Single(operation) => {
            rules.set(&mut operation.node.selection_set.node, true)
        }
        DocumentOperations::Multiple(operations) => {
            for operation in operations.values_mut() {
                rules.set(&mut operation.node.selection_set.node, true);
            }
        }
    }
    for fragment in document.fragments.values_mut() {
        rules.set(&mut fragment.node.selection_set.node, true);
    }
    // async-graphql does not check a variable's type in a directive.
    let conditions = std::mem::take(&mut rules.conditions);
    for (name, pos) in conditions {
        let operations: Vec<&OperationDefinition> = match &document.operations {
            DocumentOperations::Single(operation) => vec![&operation.node],
            DocumentOperations::Multiple(operations) => {
                operations.values().map(|o| &o.node).collect()
            }
        };
        let wrong = operations
            .iter()
            .flat_map(|o| &o.variable_definitions)
            .map(|d| &d.node)
            .find(|d| d.name.node == name && !boolean_condition(d));
        if let Some(definition) = wrong {
            rules.error(
                pos,
                &format!(
                    "`@defer(if:)` takes a `Boolean!`; `${name}` is `{}`",
                    definition.var_type.node
                ),
            );
        }
    }
    (document, rules.errors)
}

/// A variable that can stand where a `Boolean!` goes: `Boolean!`, or
/// `Boolean` with a default.
fn boolean_condition(definition: &VariableDefinition) -> bool {
    let ty = &definition.var_type.node;
    matches!(&ty.base, BaseType::Named(name) if name == "Boolean")
        && (!ty.nullable
            || definition
                .default_value
                .as_ref()
                .is_some_and(|d| !matches!(d.node, async_graphql::Value::Null)))
}

/// `document` with every `@defer` taken out: its fragments answered inline
/// (the root's introspection fields, which async-graphql answers).
pub fn inlined(mut document: ExecutableDocument) -> ExecutableDocument {
    let mut rules = Rules::default();
    match &mut document.operations {
        DocumentOperations::Single(operation) => {
            rules.set(&mut operation.node.selection_set.node, false)
        }
        DocumentOperations::Multiple(operations) => {
            for operation in operations.values_mut() {
                rules.set(&mut operation.node.selection_set.node, false);
            }
        }
    }
    for fragment in document.fragments.values_mut() {
        rules.set(&mut fragment.node.selection_set.node, false);
    }
    document
}

#[derive(Default)]
struct Rules {
    labels: HashSet<String>,
    /// Variables given to `if`, and where.
    conditions: Vec<(Name, async_graphql::Pos)>,
    errors: Vec<ServerError>,
}

impl Rules {
    /// Rewrites the `@defer`s of `set` and below: wrapped in an
    /// `@include(if:)` inline fragment when `wrap`, else removed.
    fn set(&mut self, set: &mut SelectionSet, wrap: bool) {
        for selection in &mut set.items {
            match &mut selection.node {
                Selection::Field(field) => {
                    let field = &mut field.node;
                    for defer in take_defers(&mut field.directives) {
                        self.error(
                            defer.pos,
                            "`@defer` may not be used on a field; put it on a fragment spread or an inline fragment",
                        );
                    }
                    self.set(&mut field.selection_set.node, wrap);
                    continue;
                }
                Selection::InlineFragment(inline) => {
                    self.set(&mut inline.node.selection_set.node, wrap)
                }
                Selection::FragmentSpread(_) => {}
            }
            let defers = take_defers(selection.node.directives_mut());
            let Some(first) = defers.first() else {
                continue;
            };
            if defers.len() > 1 {
                self.error(defers[1].pos, "`@defer` may be used once per fragment");
            }
            let condition = self.arguments(first);
            if wrap {
                let pos = first.pos;
                let inner = std::mem::replace(
                    selection,
                    Positioned::new(
                        Selection::InlineFragment(Positioned::new(
                            InlineFragment {
                                type_condition: None,
                                directives: Vec::new(),
                                selection_set: Positioned::new(SelectionSet::default(), pos),
                            },
                            pos,
                        )),
                        pos,
                    ),
                );
                if let Selection::InlineFragment(wrapper) = &mut selection.node {
                    wrapper.node.directives.push(Positioned::new(
                        Directive {
                            name: Positioned::new(Name::new("include"), pos),
                            arguments: vec![(Positioned::new(Name::new("if"), pos), condition)],
                        },
                        pos,
                    ));
                    wrapper.node.selection_set.node.items.push(inner);
                }
            }
        }
    }

    /// Checks the arguments of one `@defer`; its `if` (`true` when absent).
    fn arguments(&mut self, defer: &Positioned<Directive>) -> Positioned<InputValue> {
        let mut condition = Positioned::new(InputValue::Boolean(true), defer.pos);
        for (name, value) in &defer.node.arguments {
            match (name.node.as_str(), &value.node) {
                ("label", InputValue::String(label)) => {
                    if !self.labels.insert(label.clone()) {
                        self.error(
                            value.pos,
                            &format!("the label `{label}` is used by another `@defer`; each must be unique"),
                        );
                    }
                }
                ("label", _) => self.error(value.pos, "`@defer(label:)` must be a string literal"),
                ("if", InputValue::Variable(name)) => {
                    self.conditions.push((name.clone(), value.pos));
                    condition = value.clone()
                }
                ("if", InputValue::Boolean(_)) => condition = value.clone(),
                ("if", _) => self.error(value.pos, "`@defer(if:)` must be a Boolean"),
                (other, _) => self.error(
                    name.pos,
                    &format!("`@defer` has no argument `{other}` (it takes `label` and `if`)"),
                ),
            }
        }
        condition
    }

    fn error(&mut self, pos: async_graphql::Pos, message: &str) {
        self.errors.push(with_code(
            ServerError::new(message, Some(pos)),
            ErrorCode::GraphqlValidationFailed,
        ));
    }
}

/// Removes the `@defer` directives of a list, giving them back.
fn take_defers(directives: &mut Vec<Positioned<Directive>>) -> Vec<Positioned<Directive>> {
    if !directives.iter().any(|d| d.node.name.node == DEFER) {
        return Vec::new();
    }
    let (defers, others) = std::mem::take(directives)
        .into_iter()
        .partition(|d| d.node.name.node == DEFER);
    *directives = others;
    defers
}

/// One step from the root towards an object: a field's value, or an item
/// of a list. A position's steps are also its response path.
#[derive(Clone, Copy)]
pub enum Step<'p> {
    Field(&'p FieldPlan),
    Index(usize),
}

/// The response path of `steps`.
pub fn path_of(steps: &[Step<'_>]) -> Vec<PathSegment> {
    steps
        .iter()
        .map(|step| match step {
            Step::Field(field) => PathSegment::Field(field.key.to_string()),
            Step::Index(index) => PathSegment::Index(*index),
        })
        .collect()
}

/// A deferred fragment to deliver at one object: found while writing the
/// part that holds it, at the end of `route` from the root.
pub struct Deferral<'p> {
    pub fragment: &'p DeferredPlan,
    pub route: Vec<Step<'p>>,
    /// Where the object began in that part's output: an error that nulls a
    /// position before it drops the deferral (nothing is delivered under a
    /// null).
    pub at: usize,
}

/// The object that `field`'s value of `parent` leads to along `rest` (list
/// items by index), with the steps left after it. `answer` is the field's
/// call answer, for a field that calls.
pub fn follow<'v, 's, 'p>(
    field: &FieldPlan,
    parent: &'v Json,
    answer: Option<&'v FieldAnswer>,
    rest: &'s [Step<'p>],
) -> Option<(&'v Json, &'s [Step<'p>])> {
    let FieldKind::Field { binding, .. } = &field.kind else {
        return None;
    };
    let ty = &binding.output;
    match &binding.source {
        BoundSource::ParentKey(key) if binding.shape.is_none() => {
            descend(ty, json::get(parent, key)?, rest)
        }
        BoundSource::From(path) if binding.shape.is_none() => {
            descend(ty, json::at(parent, path)?, rest)
        }
        _ => {
            let FieldAnswer::Value { held, .. } = answer? else {
                return None;
            };
            match (held, &ty.kind) {
                // A batched list: the items matching its key.
                (Held::Batch { .. }, OutputKind::List(item)) => {
                    let (Step::Index(index), rest) = rest.split_first()? else {
                        return None;
                    };
                    descend(item, held.matches().get(*index)?, rest)
                }
                _ => descend(ty, held.single()?, rest),
            }
        }
    }
}

/// Down the lists of `ty` by the index steps of `rest`, to an object.
fn descend<'v, 's, 'p>(
    mut ty: &OutputType,
    mut value: &'v Json,
    mut rest: &'s [Step<'p>],
) -> Option<(&'v Json, &'s [Step<'p>])> {
    while let OutputKind::List(item) = &ty.kind {
        let (Step::Index(index), after) = rest.split_first()? else {
            return None;
        };
        value = json::items(value)?.get(*index)?;
        ty = item;
        rest = after;
    }
    sonic_rs::JsonValueTrait::is_object(value).then_some((value, rest))
}
