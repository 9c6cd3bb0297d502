//! What a document comes to with its fragments expanded, found without
//! expanding them: each fragment is measured once, so this costs time
//! linear in the document's text, whatever the document.
//!
//! Every later step expands fragments: the `[limits]` walk, async-graphql's
//! validation (its depth and complexity pass inlines every spread; its
//! overlapping-fields rule walks the fragments under every selection set
//! again, for every operation and fragment of the document, even unused
//! ones), the planner and the executor. A fragment spreading the next one
//! twice, 41 levels deep, is under 2 KB of text and 2^41 selections
//! expanded: it kept a core busy until the process was killed. So a
//! document is refused here, right after parsing and before any of those,
//! when
//! - a fragment spreads itself, directly or through others (it would
//!   expand forever): `GRAPHQL_VALIDATION_FAILED`;
//! - its selection sets nest deeper than [`MAX_NESTING`] with fragments
//!   expanded, a spread counting as a level (each level is a level of
//!   recursion in async-graphql's rules; 10,000 chained unused fragments
//!   overflowed the stack): `QUERY_TOO_DEEP`;
//! - it expands to more than [`MAX_EXPANDED_SELECTIONS`] selections:
//!   `QUERY_TOO_COMPLEX`.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use super::documents::MAX_NESTING;
use super::limits::Refusal;
use crate::error::ErrorCode;

/// Selections — fields (`__typename` too), fragment spreads and inline
/// fragments — a document may hold with its fragments expanded, counted
/// over its operations and the fragments they do not use (validation walks
/// those too). Ten times the default `max_complexity`: an operation within
/// the default limits has at most 10,000 fields, and a real one adds a few
/// `__typename`s, spreads and inline fragments to them. A fixed bound,
/// whatever `[limits]` says, on the work of every later step.
pub const MAX_EXPANDED_SELECTIONS: u64 = 100_000;

/// Refuses `document` when it cannot be expanded within bounds (see the
/// module's comment).
pub fn check(document: &ExecutableDocument) -> Result<(), Refusal> {
    refuse_cycles(document)?;
    let mut expansion = Expansion {
        document,
        fragments: HashMap::new(),
        total: 0,
    };
    for (_, operation) in document.operations.iter() {
        let (selections, _) = expansion.selection_set(&operation.node.selection_set.node, 1)?;
        expansion.add_to_total(selections)?;
    }
    // Fragments measured already are in the count of what spreads them.
    for name in document.fragments.keys() {
        if !expansion.fragments.contains_key(name.as_str()) {
            let (selections, _) = expansion.fragment(name, 1)?;
            expansion.add_to_total(selections)?;
        }
    }
    Ok(())
}

struct Expansion<'a> {
    document: &'a ExecutableDocument,
    /// Fragments measured so far: their expanded selections and nesting.
    fragments: HashMap<&'a str, Measure>,
    /// Selections of the definitions measured so far, each expanded.
    total: u64,
}

#[derive(Clone, Copy)]
struct Measure {
    selections: u64,
    /// Levels of selection sets, its own included.
    nesting: usize,
}

impl<'a> Expansion<'a> {
    fn add_to_total(&mut self, selections: u64) -> Result<(), Refusal> {
        self.total = self.total.saturating_add(selections);
        if self.total > MAX_EXPANDED_SELECTIONS {
            return Err(too_large());
        }
        Ok(())
    }

    /// Selections in `set` expanded, and its nesting; `level` is the set's
    /// own level counted from its definition.
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        level: usize,
    ) -> Result<(u64, usize), Refusal> {
        if level > MAX_NESTING {
            return Err(too_deep());
        }
        let mut selections: u64 = 0;
        let mut below = 0;
        for selection in &set.items {
            let (inner, nesting) = match &selection.node {
                Selection::Field(field) if field.node.selection_set.node.items.is_empty() => (0, 0),
                Selection::Field(field) => {
                    self.selection_set(&field.node.selection_set.node, level + 1)?
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node, level + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name.node, level + 1)?
                }
            };
            below = below.max(nesting);
            selections = selections.saturating_add(1).saturating_add(inner);
            // Stop as soon as the bound is passed: the sum stays small and
            // the walk short.
            if selections > MAX_EXPANDED_SELECTIONS {
                return Err(too_large());
            }
        }
        Ok((selections, below + 1))
    }

    /// Fragment `name`'s selections expanded and its nesting, measured the
    /// first time only; `level` is where its selection set would be.
    fn fragment(&mut self, name: &'a str, level: usize) -> Result<(u64, usize), Refusal> {
        if let Some(measure) = self.fragments.get(name) {
            if level - 1 + measure.nesting > MAX_NESTING {
                return Err(too_deep());
            }
            return Ok((measure.selections, measure.nesting));
        }
        // An unknown fragment is left to validation.
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok((0, 0));
        };
        let (selections, nesting) = self.selection_set(&fragment.node.selection_set.node, level)?;
        self.fragments.insert(
            name,
            Measure {
                selections,
                nesting,
            },
        );
        Ok((selections, nesting))
    }
}

/// Refuses a fragment that spreads itself, directly or through others. A
/// depth-first search over which fragment spreads which, with a stack of
/// its own: a chain of thousands of fragments must not recurse.
fn refuse_cycles(document: &ExecutableDocument) -> Result<(), Refusal> {
    let spreads: HashMap<&str, Vec<&str>> = document
        .fragments
        .iter()
        .map(|(name, fragment)| {
            let mut names = Vec::new();
            spread_names(&fragment.node.selection_set.node, &mut names);
            (name.as_str(), names)
        })
        .collect();
    #[derive(PartialEq)]
    enum Seen {
        OnPath,
        Done,
    }
    let mut seen: HashMap<&str, Seen> = HashMap::new();
    for start in spreads.keys() {
        if seen.contains_key(start) {
            continue;
        }
        seen.insert(start, Seen::OnPath);
        // Each entry: a fragment on the current path and how many of its
        // spreads have been followed.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some((name, next)) = path.last_mut() {
            let Some(&spread) = spreads[*name].get(*next) else {
                seen.insert(name, Seen::Done);
                path.pop();
                continue;
            };
            *next += 1;
            if !spreads.contains_key(spread) {
                continue; // unknown: left to validation
            }
            match seen.get(spread) {
                Some(Seen::OnPath) => {
                    return Err(Refusal::new(
                        ErrorCode::GraphqlValidationFailed,
                        format!("fragment `{spread}` spreads itself"),
                    ))
                }
                Some(Seen::Done) => {}
                None => {
                    seen.insert(spread, Seen::OnPath);
                    path.push((spread, 0));
                }
            }
        }
    }
    Ok(())
}

/// The names of the fragments spread anywhere in `set`, nested fields and
/// inline fragments included (their nesting was bounded before parsing).
fn spread_names<'a>(set: &'a SelectionSet, names: &mut Vec<&'a str>) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => spread_names(&field.node.selection_set.node, names),
            Selection::InlineFragment(inline) => {
                spread_names(&inline.node.selection_set.node, names)
            }
            Selection::FragmentSpread(spread) => names.push(&spread.node.fragment_name.node),
        }
    }
}

fn too_large() -> Refusal {
    Refusal::new(
        ErrorCode::QueryTooComplex,
        format!(
            "the document expands to more than {MAX_EXPANDED_SELECTIONS} selections \
             (fields, __typename and fragments, with fragments expanded)"
        ),
    )
}

fn too_deep() -> Refusal {
    Refusal::new(
        ErrorCode::QueryTooDeep,
        format!(
            "the document nests selections deeper than {MAX_NESTING} levels \
             with its fragments expanded"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn code(query: &str) -> Option<ErrorCode> {
        check(&parse_query(query).expect("parses"))
            .err()
            .map(|r| r.code)
    }

    /// `{ ...F0 }` where each of `levels` fragments spreads the next twice.
    fn bomb(levels: usize, leaf: &str) -> String {
        let mut text = String::from("{ ...F0 }");
        for i in 0..levels {
            text.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        text.push_str(&format!(" fragment F{levels} on Query {{ {leaf} }}"));
        text
    }

    #[test]
    fn ordinary_documents_pass() {
        assert_eq!(code("{ a { b c } ...F } fragment F on Q { d { e } }"), None);
        assert_eq!(code(&bomb(10, "__typename")), None);
    }

    #[test]
    fn a_fragment_bomb_is_refused_whatever_its_leaf() {
        for leaf in ["__typename", "a", "... on Query { __typename }"] {
            assert_eq!(
                code(&bomb(41, leaf)),
                Some(ErrorCode::QueryTooComplex),
                "{leaf}"
            );
        }
    }

    #[test]
    fn unused_fragments_and_other_operations_count_too() {
        let unused = bomb(41, "a").replace("{ ...F0 }", "{ a }");
        assert_eq!(code(&unused), Some(ErrorCode::QueryTooComplex));
        let other = bomb(41, "a").replace("{ ...F0 }", "query A { a } query B { ...F0 }");
        assert_eq!(code(&other), Some(ErrorCode::QueryTooComplex));
    }

    #[test]
    fn cycles_of_any_length_are_validation_errors() {
        assert_eq!(
            code("{ ...A } fragment A on Q { ...A }"),
            Some(ErrorCode::GraphqlValidationFailed)
        );
        let mut long = String::from("{ a }");
        for i in 0..1_000 {
            long.push_str(&format!(
                " fragment F{i} on Q {{ x {{ ...F{} }} }}",
                (i + 1) % 1_000
            ));
        }
        assert_eq!(code(&long), Some(ErrorCode::GraphqlValidationFailed));
    }

    #[test]
    fn nesting_counts_spreads_as_levels() {
        let mut chain = String::from("{ a }");
        for i in 0..100 {
            chain.push_str(&format!(" fragment F{i} on Q {{ ...F{} }}", i + 1));
        }
        chain.push_str(" fragment F100 on Q { a }");
        assert_eq!(code(&chain), Some(ErrorCode::QueryTooDeep));
        // 30 levels of fields in a fragment, spread 40 levels deep: 70.
        let inner = format!("{}a{}", "x { ".repeat(30), " }".repeat(30));
        let deep = format!(
            "{{ {}...F{} }} fragment F on Q {{ {inner} }}",
            "y { ".repeat(40),
            " }".repeat(40)
        );
        assert_eq!(code(&deep), Some(ErrorCode::QueryTooDeep));
        let shallow = format!(
            "{{ {}...F{} }} fragment F on Q {{ {inner} }}",
            "y { ".repeat(20),
            " }".repeat(20)
        );
        assert_eq!(code(&shallow), None);
    }
}
