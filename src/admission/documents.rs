//! A bounded cache of parsed documents: a repeated query (the common case
//! for a frontend's fixed set of operations) is parsed once. (Validation
//! and planning are cached with the plan, `execute::planned::Plans`.)

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;

/// Deepest syntactic nesting accepted (selection sets, and list/object
/// values inside arguments). Far above any real operation and above
/// `max_depth`'s default; it exists so that no later step — the limits
/// walk, cloning, async-graphql's own recursion — can exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// Documents longer than this are parsed but not kept: they are not a
/// frontend's fixed operations, and would crowd the cache.
const MAX_CACHED_QUERY_BYTES: usize = 64 * 1024;

pub struct DocumentCache {
    documents: moka::sync::Cache<Arc<str>, Arc<ExecutableDocument>>,
}

impl DocumentCache {
    pub fn new(capacity: u64) -> Self {
        DocumentCache {
            documents: moka::sync::Cache::new(capacity),
        }
    }

    /// The parsed document for `query`, parsed now when not cached.
    pub fn parse(&self, query: &Arc<str>) -> Result<Arc<ExecutableDocument>, DocumentError> {
        if let Some(document) = self.documents.get(query) {
            return Ok(document);
        }
        if nesting_exceeds(query, MAX_NESTING) {
            return Err(DocumentError::TooDeep);
        }
        let document =
            async_graphql::parser::parse_query(&**query).map_err(DocumentError::Syntax)?;
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
    use super::nesting_exceeds;

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
