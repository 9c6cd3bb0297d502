//! `[limits]` on a parsed operation (SPEC §3, §5): depth, complexity and
//! aliases counted with fragments expanded, and `introspection = false`.
//! Runs before execution, so a refused document costs no upstream call.

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::Value as GqlValue;
use serde_json::Value;

use super::documents::MAX_NESTING;
use crate::config::Limits;
use crate::error::ErrorCode;

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
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
/// `first`/`limit` arguments given as variables.
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
        limits,
        introspection,
        aliases: 0,
        depth: 0,
        visits: 0,
        fragments: Vec::new(),
    };
    let complexity = walker.selection_set(&operation.selection_set, 0)?;
    if complexity > limits.max_complexity {
        return Err(too_complex(complexity, limits));
    }
    Ok(Measured {
        depth: walker.depth,
        complexity,
        aliases: walker.aliases,
    })
}

fn too_complex(complexity: u64, limits: &Limits) -> Refusal {
    Refusal::new(
        ErrorCode::QueryTooComplex,
        format!(
            "the query's complexity {complexity} is over the limit of {}",
            limits.max_complexity
        ),
    )
}

struct Walker<'a> {
    document: &'a ExecutableDocument,
    variables: Option<&'a Value>,
    /// Default values of the operation's variables, for those not given.
    defaults: std::collections::HashMap<&'a str, GqlValue>,
    limits: &'a Limits,
    introspection: bool,
    aliases: u32,
    /// Deepest field nesting seen.
    depth: u32,
    /// Fields visited with fragments expanded. Every visited field adds at
    /// least 1 to complexity, so this bounds the walk of fragment bombs.
    visits: u64,
    /// Fragments being expanded, to refuse cycles instead of recursing.
    fragments: Vec<&'a str>,
}

impl<'a> Walker<'a> {
    fn selection_set(
        &mut self,
        set: &'a Positioned<SelectionSet>,
        depth: u32,
    ) -> Result<u64, Refusal> {
        let mut cost: u64 = 0;
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if name == "__typename" {
                        continue;
                    }
                    if !self.introspection && (name == "__schema" || name == "__type") {
                        return Err(Refusal::new(
                            ErrorCode::IntrospectionDisabled,
                            "introspection is disabled on this gateway",
                        ));
                    }
                    if field.alias.is_some() {
                        self.aliases += 1;
                        if self.aliases > self.limits.max_aliases {
                            return Err(Refusal::new(
                                ErrorCode::TooManyAliases,
                                format!(
                                    "the query has more than {} aliases",
                                    self.limits.max_aliases
                                ),
                            ));
                        }
                    }
                    let field_depth = depth + 1;
                    self.depth = self.depth.max(field_depth);
                    if field_depth > self.limits.max_depth {
                        return Err(Refusal::new(
                            ErrorCode::QueryTooDeep,
                            format!(
                                "the query is deeper than the limit of {}",
                                self.limits.max_depth
                            ),
                        ));
                    }
                    self.visits += 1;
                    if self.visits > self.limits.max_complexity {
                        return Err(too_complex(self.visits, self.limits));
                    }
                    let children = self.selection_set(&field.selection_set, field_depth)?;
                    let multiplier = self.multiplier(field);
                    cost = cost
                        .saturating_add(1)
                        .saturating_add(children.saturating_mul(multiplier));
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if self.fragments.contains(&name) {
                        return Err(Refusal::new(
                            ErrorCode::GraphqlValidationFailed,
                            format!("fragment `{name}` spreads itself"),
                        ));
                    }
                    // An unknown fragment is left to validation.
                    let Some(fragment) = self.document.fragments.get(name) else {
                        continue;
                    };
                    // Spreads do not add field depth, but each is a level of
                    // recursion here and in the executor.
                    if self.fragments.len() >= MAX_NESTING {
                        return Err(Refusal::new(
                            ErrorCode::QueryTooDeep,
                            format!("fragments spread inside each other more than {MAX_NESTING} levels deep"),
                        ));
                    }
                    self.fragments.push(name);
                    let inner = self.selection_set(&fragment.node.selection_set, depth)?;
                    self.fragments.pop();
                    cost = cost.saturating_add(inner);
                }
                Selection::InlineFragment(inline) => {
                    let inner = self.selection_set(&inline.node.selection_set, depth)?;
                    cost = cost.saturating_add(inner);
                }
            }
        }
        Ok(cost)
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
