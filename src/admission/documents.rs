//! A bounded cache of parsed documents: a repeated query (the common case
//! for a frontend's fixed set of operations) is parsed once. (Validation
//! and planning are cached with the plan, `execute::planned::Plans`.)
//! A document is cached only once it has passed the checks every later
//! step relies on: its nesting (before parsing) and its size with
//! fragments expanded (`expansion`).

use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql_value::{ConstValue, Value as InputValue};

use super::cache::ByteBoundedCache;
use super::expansion;
use super::limits::Refusal;

/// Deepest syntactic nesting accepted (selection sets, and list/object
/// values inside arguments). Far above any real operation and above
/// `max_depth`'s default; it exists so that no later step — the limits
/// walk, cloning, async-graphql's own recursion — can exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// Documents longer than this are parsed but not kept: they are not a
/// frontend's fixed operations, and would crowd the cache.
const MAX_CACHED_QUERY_BYTES: usize = 64 * 1024;

/// What the cache may hold, in estimated bytes of parsed documents (see
/// [`estimated_bytes`]): hundreds of ordinary operations. A count of
/// entries alone was no bound: a parsed document takes 20 to 70 times its
/// text (measured), so 1,000 documents of 64 KiB could hold gigabytes.
pub const DOCUMENT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

pub struct DocumentCache {
    documents: ByteBoundedCache<Arc<str>, Arc<ExecutableDocument>>,
}

impl DocumentCache {
    /// A cache holding at most `max_bytes` of estimated parsed documents
    /// (0: none).
    pub fn new(max_bytes: u64) -> Self {
        DocumentCache {
            documents: ByteBoundedCache::new(max_bytes, |query, document| {
                estimated_bytes(query, document)
            }),
        }
    }

    /// The parsed document for `query`, parsed and checked now when not
    /// cached.
    pub fn parse(&self, query: &Arc<str>) -> Result<Arc<ExecutableDocument>, DocumentError> {
        if let Some(document) = self.documents.get(query) {
            return Ok(document);
        }
        if nesting_exceeds(query, MAX_NESTING) {
            return Err(DocumentError::TooDeep);
        }
        let document =
            async_graphql::parser::parse_query(&**query).map_err(DocumentError::Syntax)?;
        expansion::check(&document).map_err(DocumentError::Refused)?;
        let document = Arc::new(document);
        if query.len() <= MAX_CACHED_QUERY_BYTES {
            self.documents.insert(query.clone(), document.clone());
        }
        Ok(document)
    }
}

pub enum DocumentError {
    Syntax(async_graphql::parser::Error),
    /// Nested deeper than [`MAX_NESTING`].
    TooDeep,
    /// Refused by `expansion::check`.
    Refused(Refusal),
}

/// Bytes a parsed document is counted for in the cache, its text
/// included. An overestimate by design: the parser's nodes measured 110 to
/// 700 bytes each (a field ~330, a list item ~120, a directive with its
/// argument ~700), Vec growth included, so each is counted 512.
fn estimated_bytes(query: &str, document: &ExecutableDocument) -> usize {
    let mut nodes = 0;
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        nodes += 1;
        for definition in &operation.variable_definitions {
            nodes += 1 + definition.node.directives.len();
            if let Some(default) = &definition.node.default_value {
                nodes += const_value_nodes(&default.node);
            }
        }
        nodes += operation.directives.len() + selection_nodes(&operation.selection_set);
    }
    for fragment in document.fragments.values() {
        nodes += 1 + fragment.node.directives.len() + selection_nodes(&fragment.node.selection_set);
    }
    query.len() + nodes * NODE_BYTES
}

/// Bytes each node of a parsed document is counted for.
const NODE_BYTES: usize = 512;

/// Selections, arguments, directives and values in `set`, nested ones
/// included (the nesting was bounded before parsing).
fn selection_nodes(set: &Positioned<SelectionSet>) -> usize {
    let mut nodes = 0;
    for selection in &set.node.items {
        nodes += 1;
        for directive in selection.node.directives() {
            nodes += 1;
            for (_, value) in &directive.node.arguments {
                nodes += value_nodes(&value.node);
            }
        }
        nodes += match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                let arguments: usize = field
                    .arguments
                    .iter()
                    .map(|(_, value)| value_nodes(&value.node))
                    .sum();
                arguments + selection_nodes(&field.selection_set)
            }
            Selection::InlineFragment(inline) => selection_nodes(&inline.node.selection_set),
            Selection::FragmentSpread(_) => 0,
        };
    }
    nodes
}

/// An argument value: itself and what it holds.
fn value_nodes(value: &InputValue) -> usize {
    1 + match value {
        InputValue::List(items) => items.iter().map(value_nodes).sum(),
        InputValue::Object(fields) => fields.values().map(value_nodes).sum(),
        _ => 0,
    }
}

fn const_value_nodes(value: &ConstValue) -> usize {
    1 + match value {
        ConstValue::List(items) => items.iter().map(const_value_nodes).sum(),
        ConstValue::Object(fields) => fields.values().map(const_value_nodes).sum(),
        _ => 0,
    }
}

/// Whether `{`, `[` or `(` nest deeper than `limit` in a GraphQL document,
/// outside strings and comments. A scan of the text, before parsing: the
/// parser, the limits walk, cloning and async-graphql all recurse on
/// nesting, so a hostile document must not reach them.
fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    // `\"""` inside a block string does not end it.
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{estimated_bytes, nesting_exceeds, NODE_BYTES};

    #[test]
    fn a_document_is_counted_by_its_nodes_and_its_text() {
        let count = |query: &str| {
            let document = async_graphql::parser::parse_query(query).expect("parses");
            estimated_bytes(query, &document)
        };
        // The operation, 3 selections, 1 argument holding a 2-item list.
        let query = "{ a(x: [1, 2]) { b } c }";
        assert_eq!(count(query), query.len() + 7 * NODE_BYTES);
        let commented = format!("{{ a }} # {}", "x".repeat(10_000));
        assert_eq!(count(&commented), commented.len() + 2 * NODE_BYTES);
    }

    #[test]
    fn counts_brackets_outside_strings_and_comments() {
        assert!(!nesting_exceeds("{ a { b(x: [1]) } }", 4));
        assert!(nesting_exceeds("{ a { b(x: [[1]]) } }", 4));
        assert!(!nesting_exceeds(r#"{ a(s: "{{{{{{") }"#, 3));
        assert!(!nesting_exceeds("{ a # {{{{{{\n }", 3));
        assert!(!nesting_exceeds(r#"{ a(s: """ {{{{ \""" {{{ """) }"#, 3));
        assert!(nesting_exceeds(&"{ a ".repeat(100), 64));
    }
}
