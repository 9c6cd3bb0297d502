//! Upstream JSON: the tree an upstream answer is parsed into.
//!
//! sonic-rs's `Value`, not serde_json's: it is parsed into one arena per
//! answer (a node is 16 bytes, strings are copied into the arena in one
//! go) and dropped by freeing that arena, where serde_json allocates a
//! B-tree node per object and a `String` per key and string value. On the
//! large benchmark answer (2,500 orders) building, walking and dropping
//! serde_json's tree was most of the gateway's CPU and memory.
//!
//! The tree is read, never changed: `merge` and the async-graphql
//! executor work on serde_json values converted at their door
//! ([`to_serde`], [`from_serde`]), because sonic-rs turns a changed object
//! into a hash map and loses its key order.

use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// An upstream JSON value.
pub type Json = sonic_rs::Value;

/// Arrays and objects nested deeper than this are refused, as serde_json
/// refuses them: sonic-rs's parser recurses without a limit, and a hostile
/// upstream's `[[[[…` would overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// Parses an upstream body; `Err` says why it is not JSON we take.
pub fn parse(body: &[u8]) -> Result<Json, String> {
    if nested_deeper_than(body, MAX_DEPTH) {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    sonic_rs::from_slice(body).map_err(|err| err.to_string())
}

/// Whether arrays and objects in `body` nest deeper than `limit` (brackets
/// inside strings do not count).
fn nested_deeper_than(body: &[u8], limit: usize) -> bool {
    // Most answers hold fewer brackets than the limit in all, and counting
    // them is far cheaper than the walk below.
    if openers(body) <= limit {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Strings are most of a body's bytes: jump to the closing
                // quote, past escapes, instead of walking there.
                i += 1;
                loop {
                    match body
                        .get(i..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    {
                        Some(offset) if body[i + offset] == b'"' => {
                            i += offset;
                            break;
                        }
                        Some(offset) => i += offset + 2,
                        // Unterminated: the parser refuses the body.
                        None => return false,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// How many `[` and `{` bytes `body` holds. Counted in 8-bit lanes, 255
/// bytes at a time, so that the compiler can count 16 or 32 bytes per
/// instruction: a `usize` count per byte made this cost more than sonic-rs
/// spends parsing a small answer.
fn openers(body: &[u8]) -> usize {
    body.chunks(255)
        .map(|chunk| {
            // `[` and `{` differ only in bit 5 (0x5b, 0x7b).
            let count = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from(b & 0xdf == b'['));
            usize::from(count)
        })
        .sum()
}

/// A null to answer with when there is nothing.
pub static NULL: Json = Json::new();

/// The value of `key` in an object. A key the upstream sent twice reads
/// as its last value, as serde_json and `JSON.parse` have it (sonic-rs
/// keeps both and would find the first).
pub fn get<'v>(value: &'v Json, key: &str) -> Option<&'v Json> {
    let object = value.as_object()?;
    object
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .last()
}

/// The value at `path` below `value` (object keys, or list indices).
pub fn at<'v>(mut value: &'v Json, path: &[String]) -> Option<&'v Json> {
    for segment in path {
        value = if value.is_object() {
            get(value, segment)?
        } else if let Some(items) = value.as_array() {
            items.get(segment.parse::<usize>().ok()?)?
        } else {
            return None;
        };
    }
    Some(value)
}

/// The items of a list, or `None` when `value` is not one.
pub fn items(value: &Json) -> Option<&[Json]> {
    value.as_array().map(|items| items.as_slice())
}

/// The text a batch key is matched by: a string's own text, else JSON.
pub fn key_text(value: &Json) -> String {
    match value.as_str() {
        Some(text) => text.to_owned(),
        None => value.to_string(),
    }
}

/// How a value is named in an error message.
pub fn describe(value: &Json) -> &'static str {
    if value.is_null() {
        "null"
    } else if value.is_boolean() {
        "a boolean"
    } else if value.is_number() {
        "a number"
    } else if value.is_str() {
        "a string"
    } else if value.is_array() {
        "a list"
    } else {
        "an object"
    }
}

/// The same value as a serde_json value (for `merge`, the async-graphql
/// executor and templates).
pub fn to_serde(value: &Json) -> serde_json::Value {
    use serde_json::Value;
    if let Some(text) = value.as_str() {
        Value::String(text.to_owned())
    } else if let Some(items) = value.as_array() {
        Value::Array(items.iter().map(to_serde).collect())
    } else if let Some(object) = value.as_object() {
        Value::Object(
            object
                .iter()
                .map(|(key, value)| (key.to_owned(), to_serde(value)))
                .collect(),
        )
    } else if let Some(b) = value.as_bool() {
        Value::Bool(b)
    } else if let Some(i) = value.as_i64() {
        Value::from(i)
    } else if let Some(u) = value.as_u64() {
        Value::from(u)
    } else if let Some(f) = value.as_f64() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else {
        Value::Null
    }
}

/// A serde_json value as upstream JSON (a merged answer). Through its
/// text: sonic-rs builds objects it is handed as hash maps, in no order.
pub fn from_serde(value: &serde_json::Value) -> Json {
    parse(value.to_string().as_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_keeping_numbers_and_key_order() {
        let text = r#"{"b":1,"a":[true,null,-2,3.5,18446744073709551615],"s":"x\"y"}"#;
        let json = parse(text.as_bytes()).expect("json");
        let serde = to_serde(&json);
        assert_eq!(
            serde,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        let object = json.as_object().expect("object");
        let keys: Vec<&str> = object.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a", "s"]);
        let twice = parse(br#"{"k":1,"k":2}"#).expect("json");
        assert_eq!(get(&twice, "k").and_then(|v| v.as_i64()), Some(2));
        assert_eq!(to_serde(&from_serde(&serde)), serde);
        let path = ["a".to_owned(), "3".to_owned()];
        assert_eq!(at(&json, &path).and_then(|v| v.as_f64()), Some(3.5));
        assert_eq!(describe(&json), "an object");
    }

    #[test]
    fn refuses_nesting_deeper_than_the_limit_without_overflowing() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert!(parse(nested(MAX_DEPTH + 1).as_bytes()).is_err());
        assert!(parse(nested(1_000_000).as_bytes()).is_err());
        let objects = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
        assert!(parse(objects.as_bytes()).is_err());
        // Brackets and escaped quotes inside strings are text.
        let text = format!("[\"{}\\\"{}\"]", "[".repeat(500), "{".repeat(500));
        assert!(parse(text.as_bytes()).is_ok());
        assert_eq!(openers(b"[{\"a\":[]}] {[ ;[{"), 7);
        assert_eq!(openers("[{".repeat(400).as_bytes()), 800);
        assert_eq!(openers(&[0x5b | 0x80, 0xfb, 0x3b, 0x1b]), 0);
        // Many brackets, shallow: the walk runs, and lets it through.
        let wide = format!("[{}[]]", "[],".repeat(1000));
        assert!(parse(wide.as_bytes()).is_ok());
        // An escaped backslash ends before the quote that closes the string.
        let deep_after_string = format!("[\"\\\\\",{}", nested(MAX_DEPTH) + "]");
        assert!(nested_deeper_than(deep_after_string.as_bytes(), MAX_DEPTH));
        // Cut off inside a string or an escape: no panic, a parse error.
        for cut in ["\"\\", "\"abc", "\"ab\\\""] {
            let body = format!("[{}{cut}", "[],".repeat(200));
            assert!(!nested_deeper_than(body.as_bytes(), MAX_DEPTH));
            assert!(parse(body.as_bytes()).is_err());
        }
    }
}
