//! Templates: `{args.id}`, `{parent.user.id}`, `{claims.sub}`,
//! `{headers.accept-language}` and `{keys}` inside paths, query values,
//! headers and bodies (docs/CONFIG.md "Templates").
//!
//! A template is parsed once at start-up into literal and placeholder parts;
//! per request it is only filled in, never re-parsed.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use crate::upstream::json::Json;

/// Everything but RFC 3986 "unreserved" characters is encoded in a filled
/// value, so a value can never add a path segment, a query parameter or a
/// fragment.
const VALUE_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a placeholder takes its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    Args,
    Parent,
    Claims,
    Headers,
    Keys,
    /// `{response.status}`, `{response.body.…}`, `{response.headers.…}`:
    /// the upstream's answer, in `errors` and `error_when` only
    /// (docs/SHAPING.md).
    Response,
}

impl Root {
    fn parse(name: &str) -> Option<Root> {
        Some(match name {
            "args" => Root::Args,
            "parent" => Root::Parent,
            "claims" => Root::Claims,
            "headers" => Root::Headers,
            "keys" => Root::Keys,
            "response" => Root::Response,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Root::Args => "args",
            Root::Parent => "parent",
            Root::Claims => "claims",
            Root::Headers => "headers",
            Root::Keys => "keys",
            Root::Response => "response",
        }
    }
}

/// `{root.a.b}`: a root and a dotted path below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placeholder {
    pub root: Root,
    pub path: Vec<String>,
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}", self.root.as_str())?;
        for segment in &self.path {
            write!(f, ".{segment}")?;
        }
        f.write_str("}")
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Value(Placeholder),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Supplies placeholder values while a template is filled in.
pub trait Scope {
    /// The value of a placeholder; `None` when it is absent. JSON null is
    /// returned as `Some(…null)` and treated like absent by callers.
    fn lookup(&self, placeholder: &Placeholder) -> Option<Looked<'_>>;
}

/// A placeholder's value. Upstream JSON (`{parent.…}`, `{keys}`) is
/// borrowed from the answer the engine holds, in the one model batching
/// and the writer read, and copied only into the request it is sent in;
/// the client's own input (arguments, claims, headers) is serde_json, whose
/// objects keep a stable key order in request bodies (sonic-rs builds
/// objects as hash maps).
pub enum Looked<'a> {
    Upstream(&'a Json),
    Input(Cow<'a, Value>),
}

impl Looked<'_> {
    pub fn is_null(&self) -> bool {
        match self {
            Looked::Upstream(value) => value.is_null(),
            Looked::Input(value) => value.is_null(),
        }
    }

    /// The value as upstream JSON (a batch key).
    pub fn to_json(&self) -> Json {
        match self {
            Looked::Upstream(value) => (*value).clone(),
            Looked::Input(value) => crate::upstream::json::from_serde(value),
        }
    }

    /// Appends the value as JSON text (a request body).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let written = match self {
            Looked::Upstream(value) => sonic_rs::to_writer(&mut *out, *value).is_ok(),
            Looked::Input(value) => serde_json::to_writer(&mut *out, value.as_ref()).is_ok(),
        };
        if !written {
            out.extend_from_slice(b"null");
        }
    }

    /// Appends the value as text: strings bare, numbers and booleans as
    /// JSON writes them, arrays comma-joined (each element encoded on its
    /// own, so a comma inside an element stays inside it), objects as JSON
    /// text.
    fn write_text(&self, out: &mut String, encoding: Encoding) {
        match self {
            Looked::Upstream(value) => write_upstream_text(out, value, encoding),
            Looked::Input(value) => write_input_text(out, value, encoding),
        }
    }
}

impl Template {
    /// Parses `text`; the error says what is wrong, for a `check` message.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in template `{text}`"))?;
            parts.push(Part::Value(parse_placeholder(&after[..close])?));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|part| match part {
            Part::Value(placeholder) => Some(placeholder),
            Part::Literal(_) => None,
        })
    }

    /// The placeholder when the template is exactly one placeholder and
    /// nothing else: such a value keeps its JSON type in a body.
    pub fn single_placeholder(&self) -> Option<&Placeholder> {
        match self.parts.as_slice() {
            [Part::Value(placeholder)] => Some(placeholder),
            _ => None,
        }
    }

    pub fn is_literal(&self) -> bool {
        self.placeholders().next().is_none()
    }

    /// Fills the template as plain text (headers, query values, body
    /// strings). `None` when a placeholder is absent or null.
    pub fn render_text(&self, scope: &dyn Scope) -> Option<String> {
        self.render(scope, Encoding::None).ok()
    }

    /// Fills the template as part of a URL path: every value is
    /// percent-encoded, literals are kept as written. `Err` names the first
    /// placeholder that is absent or null (docs/CONFIG.md: no call is made then).
    /// A value never changes which endpoint is called: a path segment that
    /// a value made `.` or `..` has its dots encoded (`%2E`), and nothing
    /// resolves dot-segments after this.
    pub fn render_path(&self, scope: &dyn Scope) -> Result<String, &Placeholder> {
        let mut out = String::new();
        // Where filled values lie in `out`: only their dot-segments are
        // encoded; the operator's own literals are kept as written.
        let mut filled: Vec<std::ops::Range<usize>> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Value(placeholder) => match scope.lookup(placeholder) {
                    Some(value) if !value.is_null() => {
                        let start = out.len();
                        value.write_text(&mut out, Encoding::UrlComponent);
                        filled.push(start..out.len());
                    }
                    _ => return Err(placeholder),
                },
            }
        }
        Ok(encode_filled_dot_segments(out, &filled))
    }

    /// Fills the template as a query-string value: literals and values
    /// percent-encoded, but the commas joining a list's items kept, so a
    /// comma inside one item stays inside it. `None` when a placeholder is
    /// absent or null (the parameter is then left out).
    pub fn render_query_value(&self, scope: &dyn Scope) -> Option<String> {
        self.render(scope, Encoding::QueryValue).ok()
    }

    fn render(&self, scope: &dyn Scope, encoding: Encoding) -> Result<String, &Placeholder> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) if encoding == Encoding::QueryValue => {
                    push_encoded(&mut out, text, Encoding::QueryValue)
                }
                Part::Literal(text) => out.push_str(text),
                Part::Value(placeholder) => match scope.lookup(placeholder) {
                    Some(value) if !value.is_null() => value.write_text(&mut out, encoding),
                    _ => return Err(placeholder),
                },
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    None,
    UrlComponent,
    QueryValue,
}

fn write_upstream_text(out: &mut String, value: &Json, encoding: Encoding) {
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_upstream_text(out, item, encoding);
        }
    } else if let Some(text) = value.as_str() {
        push_encoded(out, text, encoding)
    } else if !value.is_null() {
        push_encoded(out, &value.to_string(), encoding)
    }
}

fn write_input_text(out: &mut String, value: &Value, encoding: Encoding) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_input_text(out, item, encoding);
            }
        }
        Value::String(text) => push_encoded(out, text, encoding),
        Value::Null => {}
        other => push_encoded(out, &other.to_string(), encoding),
    }
}

fn push_encoded(out: &mut String, text: &str, encoding: Encoding) {
    match encoding {
        Encoding::None => out.push_str(text),
        Encoding::UrlComponent | Encoding::QueryValue => {
            out.extend(utf8_percent_encode(text, VALUE_ENCODE_SET))
        }
    }
}

/// `out` with every `.` or `..` path segment that a filled value (a range
/// of `filled`) had a part in written as `%2E` or `%2E%2E`. Values are
/// percent-encoded, so every `/` and `?` in `out` is the template's own:
/// they alone split segments and end the path.
fn encode_filled_dot_segments(out: String, filled: &[std::ops::Range<usize>]) -> String {
    let path_end = out.find('?').unwrap_or(out.len());
    let mut start = 0;
    let mut dot_segments = Vec::new();
    for segment in out[..path_end].split('/') {
        let range = start..start + segment.len();
        start = range.end + 1;
        let from_value = filled
            .iter()
            .any(|f| f.start < range.end && range.start < f.end);
        if (segment == "." || segment == "..") && from_value {
            dot_segments.push(range);
        }
    }
    if dot_segments.is_empty() {
        return out;
    }
    let mut encoded = String::with_capacity(out.len() + 8);
    let mut copied = 0;
    for range in dot_segments {
        encoded.push_str(&out[copied..range.start]);
        for _ in range.clone() {
            encoded.push_str("%2E");
        }
        copied = range.end;
    }
    encoded.push_str(&out[copied..]);
    encoded
}

/// Percent-encodes one query-string name or value.
pub fn encode_component(text: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(text, VALUE_ENCODE_SET)
}

fn parse_placeholder(inner: &str) -> Result<Placeholder, String> {
    let inner = inner.trim();
    let mut segments = inner.split('.');
    let root_name = segments.next().unwrap_or_default();
    let root = Root::parse(root_name).ok_or_else(|| {
        format!(
            "unknown template root `{root_name}` in `{{{inner}}}` \
             (expected args, parent, claims, headers, keys or response)"
        )
    })?;
    let path: Vec<String> = segments.map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!("empty path segment in `{{{inner}}}`"));
    }
    match (root, path.is_empty()) {
        (Root::Keys, false) => Err(format!("`{{keys}}` takes no path, found `{{{inner}}}`")),
        (Root::Keys, true) => Ok(Placeholder { root, path }),
        (_, true) => Err(format!(
            "`{{{inner}}}` needs a name after the root, e.g. `{{{inner}.id}}`"
        )),
        (_, false) => Ok(Placeholder { root, path }),
    }
}

/// Walks a dotted path into client input (arguments, claims); an
/// all-digit segment indexes an array.
pub fn value_at<'v>(mut value: &'v Value, path: &[String]) -> Option<&'v Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Args(Value);
    impl Scope for Args {
        fn lookup(&self, p: &Placeholder) -> Option<Looked<'_>> {
            value_at(&self.0, &p.path).map(|v| Looked::Input(Cow::Borrowed(v)))
        }
    }

    /// Upstream JSON in a template renders as the same text as input.
    struct Parent(Json);
    impl Scope for Parent {
        fn lookup(&self, p: &Placeholder) -> Option<Looked<'_>> {
            crate::upstream::json::at(&self.0, &p.path).map(Looked::Upstream)
        }
    }

    #[test]
    fn upstream_and_input_values_render_alike() {
        let t = Template::parse("/x/{args.v}?q={args.v}").expect("valid");
        for value in [
            json!({"v": "a b,c"}),
            json!({"v": 12}),
            json!({"v": -1.5}),
            json!({"v": true}),
            json!({"v": ["a,b", 2, null]}),
            json!({"v": {"k": [1]}}),
        ] {
            let upstream = Parent(crate::upstream::json::from_serde(&value));
            let input = Args(value.clone());
            assert_eq!(t.render_path(&upstream), t.render_path(&input), "{value}");
            assert_eq!(
                t.render_query_value(&upstream),
                t.render_query_value(&input),
                "{value}"
            );
        }
    }

    #[test]
    fn path_values_are_percent_encoded_and_literals_kept() {
        let t = Template::parse("/users/{args.id}/a b").expect("valid");
        let scope = Args(json!({"id": "x/y?z"}));
        assert_eq!(t.render_path(&scope).as_deref(), Ok("/users/x%2Fy%3Fz/a b"));
    }

    #[test]
    fn a_value_never_makes_a_dot_segment() {
        let t = Template::parse("/users/{args.id}/orders").expect("valid");
        for (id, path) in [
            ("..", "/users/%2E%2E/orders"),
            (".", "/users/%2E/orders"),
            ("...", "/users/.../orders"),
            ("a.b", "/users/a.b/orders"),
            ("../x", "/users/..%2Fx/orders"),
        ] {
            let scope = Args(json!({ "id": id }));
            assert_eq!(t.render_path(&scope).as_deref(), Ok(path), "id {id:?}");
        }
        // A value that makes a dot-segment with a literal beside it.
        let t = Template::parse("/files/.{args.ext}?v={args.ext}").expect("valid");
        let scope = Args(json!({"ext": "."}));
        assert_eq!(t.render_path(&scope).as_deref(), Ok("/files/%2E%2E?v=."));
        // The operator's own literal dot-segments are theirs.
        let t = Template::parse("/a/../{args.id}").expect("valid");
        let scope = Args(json!({"id": "b"}));
        assert_eq!(t.render_path(&scope).as_deref(), Ok("/a/../b"));
    }

    #[test]
    fn arrays_join_with_commas_encoding_each_element() {
        let t = Template::parse("{args.ids}").expect("valid");
        let scope = Args(json!({"ids": ["a,b", "c", 3]}));
        assert_eq!(t.render_path(&scope).as_deref(), Ok("a%2Cb,c,3"));
    }

    #[test]
    fn absent_or_null_values_render_nothing() {
        let t = Template::parse("/u/{args.id}").expect("valid");
        assert!(t.render_path(&Args(json!({}))).is_err());
        assert!(t.render_path(&Args(json!({"id": null}))).is_err());
    }

    #[test]
    fn rejects_unknown_roots_and_unclosed_braces() {
        assert!(Template::parse("{user.id}")
            .expect_err("bad root")
            .contains("unknown template root `user`"));
        assert!(Template::parse("/x/{args.id").is_err());
        assert!(Template::parse("{args}").is_err());
        assert!(Template::parse("{keys.x}").is_err());
    }

    #[test]
    fn value_at_indexes_arrays() {
        let v = json!({"items": [{"name": "a"}, {"name": "b"}]});
        let path: Vec<String> = "items.1.name".split('.').map(String::from).collect();
        assert_eq!(value_at(&v, &path), Some(&json!("b")));
    }
}
