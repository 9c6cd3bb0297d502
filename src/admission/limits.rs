//! `[limits]` on a parsed operation (docs/CONFIG.md, docs/ERRORS.md): depth, complexity and
//! aliases counted with fragments expanded, and `introspection = false`.
//! Runs before execution, so a refused document costs no upstream call.

use std::collections::HashMap;

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::Value as GqlValue;
use serde_json::Value;

use crate::config::Limits;
use crate::error::ErrorCode;

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// What a valid operation measured; kept with a cached document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub depth: u32,
    pub complexity: u64,
    pub aliases: u32,
}

/// Checks `operation` of `document` against `limits`. `variables` fill
/// `first`/`limit` arguments given as variables. The document has passed
/// `expansion::check` (no cycles, bounded nesting and size); each fragment
/// is measured once, so the walk is linear in the document's text.
pub fn check(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: Option<&Value>,
    limits: &Limits,
    introspection: bool,
) -> Result<Measured, Refusal> {
    let defaults = operation
        .variable_definitions
        .iter()
        .filter_map(|d| {
            let default = d.node.default_value.as_ref()?;
            Some((d.node.name.node.as_str(), default.node.clone()))
        })
        .collect();
    let mut walker = Walker {
        document,
        variables,
        defaults,
        fragments: HashMap::new(),
    };
    let measure = walker.selection_set(&operation.selection_set)?;
    if measure.introspection && !introspection {
        return Err(Refusal::new(
            ErrorCode::IntrospectionDisabled,
            "introspection is disabled on this gateway",
        ));
    }
    if measure.depth > u64::from(limits.max_depth) {
        return Err(Refusal::new(
            ErrorCode::QueryTooDeep,
            format!("the query is deeper than the limit of {}", limits.max_depth),
        ));
    }
    if measure.aliases > u64::from(limits.max_aliases) {
        return Err(Refusal::new(
            ErrorCode::TooManyAliases,
            format!("the query has more than {} aliases", limits.max_aliases),
        ));
    }
    if measure.complexity > limits.max_complexity {
        return Err(Refusal::new(
            ErrorCode::QueryTooComplex,
            format!(
                "the query's complexity {} is over the limit of {}",
                measure.complexity, limits.max_complexity
            ),
        ));
    }
    Ok(Measured {
        depth: u32::try_from(measure.depth).unwrap_or(u32::MAX),
        complexity: measure.complexity,
        aliases: u32::try_from(measure.aliases).unwrap_or(u32::MAX),
    })
}

/// What a selection set comes to with its fragments expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    /// Deepest field nesting (`__typename` counts 0).
    depth: u64,
    /// Each field 1, its selection's count times its `first`/`limit`
    /// (`__typename` counts 0).
    complexity: u64,
    aliases: u64,
    /// `__schema` or `__type` is selected.
    introspection: bool,
}

impl Measure {
    /// Selections side by side: their counts add up.
    fn add(&mut self, other: Measure) {
        self.depth = self.depth.max(other.depth);
        self.complexity = self.complexity.saturating_add(other.complexity);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.introspection |= other.introspection;
    }
}

struct Walker<'a> {
    document: &'a ExecutableDocument,
    variables: Option<&'a Value>,
    /// Default values of the operation's variables, for those not given.
    defaults: HashMap<&'a str, GqlValue>,
    /// Fragments measured so far; `None` while one is being measured.
    fragments: HashMap<&'a str, Option<Measure>>,
}

impl<'a> Walker<'a> {
    fn selection_set(&mut self, set: &'a Positioned<SelectionSet>) -> Result<Measure, Refusal> {
        let mut measure = Measure::default();
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if name == "__typename" {
                        // Free for depth and complexity, but an alias all
                        // the same.
                        measure.aliases = measure
                            .aliases
                            .saturating_add(u64::from(field.alias.is_some()));
                        continue;
                    }
                    let children = self.selection_set(&field.selection_set)?;
                    measure.add(Measure {
                        depth: children.depth + 1,
                        complexity: children
                            .complexity
                            .saturating_mul(self.multiplier(field))
                            .saturating_add(1),
                        aliases: children
                            .aliases
                            .saturating_add(u64::from(field.alias.is_some())),
                        introspection: children.introspection
                            || name == "__schema"
                            || name == "__type",
                    });
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    measure.add(self.fragment(name)?);
                }
                Selection::InlineFragment(inline) => {
                    measure.add(self.selection_set(&inline.node.selection_set)?);
                }
            }
        }
        Ok(measure)
    }

    /// Fragment `name`'s measure, walked the first time only.
    fn fragment(&mut self, name: &'a str) -> Result<Measure, Refusal> {
        match self.fragments.get(name) {
            Some(Some(measure)) => return Ok(*measure),
            // `expansion::check` refuses cycles first; this only keeps the
            // walk finite on its own.
            Some(None) => {
                return Err(Refusal::new(
                    ErrorCode::GraphqlValidationFailed,
                    format!("fragment `{name}` spreads itself"),
                ))
            }
            None => {}
        }
        // An unknown fragment is left to validation.
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok(Measure::default());
        };
        self.fragments.insert(name, None);
        let measure = self.selection_set(&fragment.node.selection_set)?;
        self.fragments.insert(name, Some(measure));
        Ok(measure)
    }

    /// A `first` or `limit` argument (literal or variable, > 0) multiplies
    /// the cost of the field's selection.
    fn multiplier(&self, field: &async_graphql::parser::types::Field) -> u64 {
        for name in ["first", "limit"] {
            let Some(value) = field.get_argument(name) else {
                continue;
            };
            // Variables are filled from the request; an unknown one is null.
            let resolved = value.node.clone().into_const_with(|variable| {
                let given = self.variables.and_then(|v| v.get(variable.as_str()));
                let value = match given {
                    Some(given) => GqlValue::from_json(given.clone()).ok(),
                    None => self.defaults.get(variable.as_str()).cloned(),
                };
                Ok::<_, ()>(value.unwrap_or(GqlValue::Null))
            });
            let number = match resolved {
                Ok(GqlValue::Number(n)) => n.as_u64(),
                _ => None,
            };
            if let Some(n) = number.filter(|n| *n > 0) {
                return n;
            }
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::DocumentOperations;
    use serde_json::json;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_depth: 3,
            max_complexity: 100,
            max_aliases: 2,
            max_batch: 10,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(1),
            max_upstream_calls: 200,
            assumed_list_length: 10,
        }
    }

    fn measure(query: &str, variables: Option<Value>) -> Result<Measured, Refusal> {
        let document = parse_query(query).expect("parses");
        let operation = match &document.operations {
            DocumentOperations::Single(op) => op.node.clone(),
            DocumentOperations::Multiple(ops) => ops.values().next().expect("one").node.clone(),
        };
        check(&document, &operation, variables.as_ref(), &limits(), false)
    }

    #[test]
    fn depth_counts_fields_through_fragments_and_typename_counts_nothing() {
        let m = measure("{ user { orders { id __typename } } }", None).expect("ok");
        assert_eq!((m.depth, m.complexity), (3, 3));
        let deep = measure("{ a { ...F } } fragment F on A { b { c { d } } }", None);
        assert_eq!(deep.expect_err("too deep").code, ErrorCode::QueryTooDeep);
    }

    #[test]
    fn first_and_limit_multiply_the_selection() {
        let m = measure("{ users(first: 10) { id name } }", None).expect("ok");
        assert_eq!(m.complexity, 1 + 10 * 2);
        let m = measure(
            "query($n: Int) { users(limit: $n) { id } }",
            Some(json!({"n": 5})),
        )
        .expect("ok");
        assert_eq!(m.complexity, 6);
        let err = measure("{ users(first: 60) { id name } }", None).expect_err("over 100");
        assert_eq!(err.code, ErrorCode::QueryTooComplex);
    }

    #[test]
    fn aliases_cycles_and_introspection_are_refused() {
        assert_eq!(
            measure("{ a: x b: x c: x }", None)
                .expect_err("aliases")
                .code,
            ErrorCode::TooManyAliases
        );
        assert_eq!(
            measure(
                "{ ...A } fragment A on Q { ...B } fragment B on Q { ...A }",
                None
            )
            .expect_err("cycle")
            .code,
            ErrorCode::GraphqlValidationFailed
        );
        assert_eq!(
            measure("{ __schema { types { name } } }", None)
                .expect_err("introspection")
                .code,
            ErrorCode::IntrospectionDisabled
        );
        assert!(measure("{ __typename }", None).is_ok());
    }

    #[test]
    fn each_fragment_is_walked_once() {
        // 2^60 `__typename`s expanded: only a walk that measures each
        // fragment once returns.
        let mut query = String::from("{ ...F0 }");
        for i in 0..60 {
            query.push_str(&format!(
                " fragment F{i} on Q {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(" fragment F60 on Q { __typename x: __typename }");
        let err = measure(&query, None).expect_err("aliases");
        assert_eq!(err.code, ErrorCode::TooManyAliases);
        let m = measure(&query.replace("x: __typename", ""), None).expect("free");
        assert_eq!((m.depth, m.complexity, m.aliases), (0, 0, 0));
    }

    #[test]
    fn fragment_bombs_stop_at_the_complexity_budget() {
        let mut query = String::from("{ ...F0 }");
        for i in 0..30 {
            query.push_str(&format!(
                " fragment F{i} on Q {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(" fragment F30 on Q { x }");
        let err = measure(&query, None).expect_err("bomb");
        assert_eq!(err.code, ErrorCode::QueryTooComplex);
    }
}
