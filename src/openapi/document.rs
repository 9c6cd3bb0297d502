//! An OpenAPI document read into an ordered tree: JSON or YAML, the version
//! checked, local `$ref`s followed, every place named by its JSON pointer
//! (RFC 6901, written as a URI fragment: `#/paths/~1pets/get`).
//!
//! The tree is our own ([`Node`]) rather than `serde_json::Value` so that
//! object keys keep the document's order (the generated SDL lists fields in
//! that order) and YAML's non-string keys (`200:` under `responses`) are read
//! as the text they are written as.

use std::fmt;
use std::path::Path;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One value of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(IndexMap<String, Node>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(map) => map.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&IndexMap<String, Node>> {
        match self {
            Node::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The string at `key`, when it is one.
    pub fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_str)
    }

    /// Whether `key` holds `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).and_then(Node::as_bool).unwrap_or(false)
    }

    /// A short name of the node's JSON type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    /// The value as JSON text (for a scalar key or a message).
    pub fn to_text(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(value) => value.to_string(),
            Node::Number(number) => number.to_string(),
            Node::String(text) => text.clone(),
            Node::Array(_) => "[…]".to_owned(),
            Node::Object(_) => "{…}".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node, E> {
        // NaN and infinities (YAML's .nan, .inf) have no JSON number.
        Ok(serde_json::Number::from_f64(value)
            .map_or_else(|| Node::String(value.to_string()), Node::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Node, E> {
        Ok(Node::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(key) = map.next_key::<Node>()? {
            let key = match key {
                Node::Array(_) | Node::Object(_) => {
                    return Err(de::Error::custom(
                        "a mapping key must be a string, a number or a boolean",
                    ))
                }
                scalar => scalar.to_text(),
            };
            let value = map.next_value()?;
            entries.insert(key, value);
        }
        Ok(Node::Object(entries))
    }
}

/// Which OpenAPI line the document follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.0.x: `nullable: true`; a `$ref`'s siblings are ignored.
    V30,
    /// 3.1.x (and later 3.x): JSON Schema 2020-12, `type: [T, "null"]`.
    V31,
}

/// A loaded document.
#[derive(Debug)]
pub struct Document {
    pub root: Node,
    pub version: Version,
    /// The `openapi` field as written (`3.0.3`).
    pub version_text: String,
}

/// Why a document could not be read. Displays as `FILE:LINE:COL: message`
/// (syntax errors) or `FILE: message (at #/pointer)`.
#[derive(Debug)]
pub struct LoadError {
    pub file: String,
    pub line_col: Option<(usize, usize)>,
    pub pointer: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(pointer) = &self.pointer {
            write!(f, " (at {pointer})")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl Document {
    /// Reads `path`: JSON when its text starts with `{` (or the file ends in
    /// `.json`), YAML otherwise.
    pub fn load(path: &Path) -> Result<Document, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| LoadError {
            file: file.clone(),
            line_col: None,
            pointer: None,
            message: format!("cannot read the OpenAPI document: {err}"),
        })?;
        let json_name = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        Document::parse(&text, &file, json_name)
    }

    /// Parses `text` (named `file` in errors).
    pub fn parse(text: &str, file: &str, json_name: bool) -> Result<Document, LoadError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let error = |line_col, message: String| LoadError {
            file: file.to_owned(),
            line_col,
            pointer: None,
            message,
        };
        let root: Node = if json_name || text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|err| {
                let message = err.to_string();
                // serde_json appends " at line L column C"; the location
                // goes in front instead.
                let message = match message.rfind(" at line ") {
                    Some(at) => message[..at].to_owned(),
                    None => message,
                };
                error(
                    Some((err.line(), err.column())),
                    format!("invalid JSON: {message}"),
                )
            })?
        } else {
            serde_norway::from_str(text).map_err(|err| {
                let line_col = err.location().map(|l| (l.line(), l.column()));
                let message = err.to_string();
                let message = match message.rfind(" at line ") {
                    Some(at) => message[..at].to_owned(),
                    None => message,
                };
                error(line_col, format!("invalid YAML: {message}"))
            })?
        };
        let not_openapi = |message: String, pointer: &str| LoadError {
            file: file.to_owned(),
            line_col: None,
            pointer: Some(pointer.to_owned()),
            message,
        };
        if !matches!(root, Node::Object(_)) {
            return Err(not_openapi(
                format!("an OpenAPI document is an object, found {}", root.kind()),
                "#",
            ));
        }
        let version_text = match root.get("openapi") {
            Some(Node::String(text)) => text.clone(),
            Some(other) => {
                return Err(not_openapi(
                    format!("`openapi` must be a version string, found {}", other.kind()),
                    "#/openapi",
                ))
            }
            None if root.get("swagger").is_some() => {
                return Err(not_openapi(
                    "this is a Swagger 2.0 document; OpenAPI 3.0 or 3.1 is needed \
                     (convert it first, e.g. with swagger2openapi)"
                        .to_owned(),
                    "#/swagger",
                ))
            }
            None => {
                return Err(not_openapi(
                    "no `openapi` version field: not an OpenAPI 3 document".to_owned(),
                    "#",
                ))
            }
        };
        let version = if version_text.starts_with("3.0") {
            Version::V30
        } else if version_text.starts_with("3.") {
            Version::V31
        } else {
            return Err(not_openapi(
                format!("OpenAPI {version_text} is not supported (3.0 and 3.1 are)"),
                "#/openapi",
            ));
        };
        if let Some(paths) = root.get("paths") {
            if !matches!(paths, Node::Object(_)) {
                return Err(not_openapi(
                    format!("`paths` must be an object, found {}", paths.kind()),
                    "#/paths",
                ));
            }
        }
        Ok(Document {
            root,
            version,
            version_text,
        })
    }

    /// The node a local pointer (`#/components/schemas/Pet`) names.
    pub fn at(&self, pointer: &str) -> Option<&Node> {
        let path = pointer.strip_prefix('#')?;
        if path.is_empty() {
            return Some(&self.root);
        }
        let path = path.strip_prefix('/')?;
        let mut node = &self.root;
        for raw in path.split('/') {
            let segment = unescape(&percent_decode(raw));
            node = match node {
                Node::Object(map) => map.get(&segment)?,
                Node::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Follows `$ref`s from `node` (at `pointer`) to a node that is not a
    /// reference. Returns it with its pointer, or why it cannot be followed.
    pub fn resolve<'a>(
        &'a self,
        node: &'a Node,
        pointer: &str,
    ) -> Result<(&'a Node, String), RefProblem> {
        let mut current = node;
        let mut at = pointer.to_owned();
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = current.get("$ref") else {
                return Ok((current, at));
            };
            let Some(target) = reference.as_str() else {
                return Err(RefProblem {
                    pointer: format!("{at}/$ref"),
                    message: format!("`$ref` must be a string, found {}", reference.kind()),
                });
            };
            if !target.starts_with('#') {
                return Err(RefProblem {
                    pointer: format!("{at}/$ref"),
                    message: format!(
                        "`$ref: {target}` points outside this document; only local references \
                         (`#/…`) are followed"
                    ),
                });
            }
            current = self.at(target).ok_or_else(|| RefProblem {
                pointer: format!("{at}/$ref"),
                message: format!("`$ref: {target}` names nothing in this document"),
            })?;
            at = normalize(target);
        }
        Err(RefProblem {
            pointer: at,
            message: format!("more than {MAX_REF_HOPS} `$ref`s in a row (a reference cycle?)"),
        })
    }
}

/// A chain of references longer than this is a cycle (`A: {$ref: B}`,
/// `B: {$ref: A}`).
const MAX_REF_HOPS: usize = 64;

/// A `$ref` that cannot be followed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefProblem {
    pub pointer: String,
    pub message: String,
}

/// `#/components/schemas/Pet` for a `$ref` written with percent-escapes
/// or not, so the same target always has the same pointer.
pub fn normalize(target: &str) -> String {
    let path = target.trim_start_matches('#');
    let mut out = String::from("#");
    for raw in path.split('/').skip(1) {
        out.push('/');
        out.push_str(&escape(&unescape(&percent_decode(raw))));
    }
    out
}

/// One pointer segment, escaped (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn percent_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// `pointer` + `/segment` (escaped).
pub fn child(pointer: &str, segment: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + segment.len() + 1);
    out.push_str(pointer);
    out.push('/');
    out.push_str(&escape(segment));
    out
}

/// The name of the component a pointer is (`#/components/schemas/Pet` →
/// `Pet`), when it is exactly one.
pub fn component_name(pointer: &str) -> Option<String> {
    let rest = pointer.strip_prefix("#/components/schemas/")?;
    (!rest.contains('/')).then(|| unescape(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Document, LoadError> {
        Document::parse(text, "api.yaml", false)
    }

    #[test]
    fn yaml_keeps_key_order_and_reads_numeric_keys_as_text() {
        let doc = parse("openapi: 3.0.3\npaths:\n  /b: {}\n  /a:\n    get:\n      responses:\n        200: {description: ok}\n")
            .expect("valid");
        let paths: Vec<&String> = doc
            .root
            .get("paths")
            .and_then(Node::as_object)
            .expect("paths")
            .keys()
            .collect();
        assert_eq!(paths, ["/b", "/a"]);
        assert!(doc.at("#/paths/~1a/get/responses/200").is_some());
        assert_eq!(doc.version, Version::V30);
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let err = Document::parse(
            "{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {,}\n}",
            "api.json",
            true,
        )
        .expect_err("broken");
        assert_eq!(err.line_col, Some((3, 13)));
        assert!(
            err.to_string().starts_with("api.json:3:13: invalid JSON"),
            "{err}"
        );
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = parse("openapi: 3.1.0\npaths:\n  /a: [\n").expect_err("broken");
        assert!(err.line_col.is_some(), "{err}");
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }

    #[test]
    fn swagger_2_and_other_versions_are_refused_with_a_pointer() {
        let err = parse("swagger: '2.0'\npaths: {}\n").expect_err("swagger");
        assert_eq!(err.pointer.as_deref(), Some("#/swagger"));
        let err = parse("openapi: 4.0.0\n").expect_err("4.0");
        assert_eq!(err.pointer.as_deref(), Some("#/openapi"));
        let err = parse("- a\n- b\n").expect_err("not an object");
        assert!(err.message.contains("an array"), "{err}");
    }

    #[test]
    fn references_resolve_through_chains_and_report_cycles_and_outside_targets() {
        let doc = parse(
            "openapi: 3.1.0\ncomponents:\n  schemas:\n    A: {$ref: '#/components/schemas/B'}\n    B: {type: string}\n    \
             C: {$ref: '#/components/schemas/D'}\n    D: {$ref: '#/components/schemas/C'}\n    E: {$ref: 'other.yaml#/X'}\n    \
             'a/b': {type: integer}\n    F: {$ref: '#/components/schemas/a~1b'}\n",
        )
        .expect("valid");
        let a = doc.at("#/components/schemas/A").expect("A");
        let (node, at) = doc.resolve(a, "#/components/schemas/A").expect("resolves");
        assert_eq!(node.str_at("type"), Some("string"));
        assert_eq!(at, "#/components/schemas/B");
        let c = doc.at("#/components/schemas/C").expect("C");
        assert!(doc
            .resolve(c, "#/components/schemas/C")
            .expect_err("cycle")
            .message
            .contains("cycle"));
        let e = doc.at("#/components/schemas/E").expect("E");
        let problem = doc
            .resolve(e, "#/components/schemas/E")
            .expect_err("outside");
        assert_eq!(problem.pointer, "#/components/schemas/E/$ref");
        let f = doc.at("#/components/schemas/F").expect("F");
        let (node, at) = doc.resolve(f, "#/components/schemas/F").expect("escaped");
        assert_eq!(node.str_at("type"), Some("integer"));
        assert_eq!(at, "#/components/schemas/a~1b");
        assert_eq!(component_name(&at).as_deref(), Some("a/b"));
    }
}
