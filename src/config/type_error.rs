//! A value of the wrong type, in plain words: serde stops at the first one
//! and says `invalid type: string "5s", expected u64`; `check` names the
//! key by its dotted path and what it must be (`services.orders.timeout_ms`
//! must be a whole number of milliseconds; found the string "5s"), then
//! drops the value from the tree and reads again, so every wrong value of
//! the file is reported in one run (docs/CONFIG.md).

use std::ops::Range;

use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::Segment;

/// At most this many wrong values are reported from one file: each costs one
/// more read of the tree, and a file with more has a bigger problem.
pub(super) const MAX_TYPE_ERRORS: usize = 64;

/// A wrong value found in the tree: where it is and what to say.
pub(super) struct TypeError {
    pub offset: usize,
    pub path: Vec<Segment>,
    pub message: String,
}

/// Explains serde's `message` about the value written at `span`, or `None`
/// when no value of the tree is there (nothing to point at or to drop).
pub(super) fn explain(
    root: &Spanned<DeTable<'_>>,
    span: Range<usize>,
    message: &str,
) -> Option<TypeError> {
    let (path, value) = locate(root.get_ref(), span.start)?;
    let key = match path.last() {
        Some(Segment::Key(key)) => key.as_str(),
        _ => "",
    };
    let expected = expected(message, key);
    let found = found(value.get_ref());
    Some(TypeError {
        offset: value.span().start,
        message: format!("`{}` must be {expected}; found {found}", dotted(&path)),
        path,
    })
}

/// Removes the value at `path`, so the next read goes past it (the key then
/// takes its default; validation may report more about that).
pub(super) fn remove(root: &mut DeTable<'_>, path: &[Segment]) {
    let Some((Segment::Key(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        root.remove(first.as_str());
        return;
    }
    let Some(mut value) = root.get_mut(first.as_str()).map(Spanned::get_mut) else {
        return;
    };
    let (last, between) = rest.split_last().expect("rest is not empty");
    for segment in between {
        let next = match (segment, value) {
            (Segment::Key(key), DeValue::Table(table)) => table.get_mut(key.as_str()),
            (Segment::Index(i), DeValue::Array(items)) => items.get_mut(*i),
            _ => return,
        };
        match next {
            Some(next) => value = next.get_mut(),
            None => return,
        }
    }
    match (last, value) {
        (Segment::Key(key), DeValue::Table(table)) => {
            table.remove(key.as_str());
        }
        (Segment::Index(i), DeValue::Array(items)) => {
            // `DeArray` has no `remove`: the others are kept in order.
            let mut kept = DeArray::new();
            for (j, item) in items.iter().enumerate() {
                if j != *i {
                    kept.push(item.clone());
                }
            }
            *items = kept;
        }
        _ => {}
    }
}

/// The innermost value written around `offset`, with its path.
fn locate<'t, 'i>(
    table: &'t DeTable<'i>,
    offset: usize,
) -> Option<(Vec<Segment>, &'t Spanned<DeValue<'i>>)> {
    for (key, value) in table.iter() {
        if let Some(found) = within(value, offset) {
            let mut path = vec![Segment::Key(key.get_ref().to_string())];
            path.extend(found.0);
            return Some((path, found.1));
        }
    }
    None
}

fn within<'t, 'i>(
    value: &'t Spanned<DeValue<'i>>,
    offset: usize,
) -> Option<(Vec<Segment>, &'t Spanned<DeValue<'i>>)> {
    let span = value.span();
    // A `[table]` header's value spans from the header on; an inline value
    // spans its text.
    let inner = match value.get_ref() {
        DeValue::Table(table) => locate(table, offset),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            within(item, offset).map(|(mut path, found)| {
                path.insert(0, Segment::Index(i));
                (path, found)
            })
        }),
        _ => None,
    };
    match inner {
        Some(found) => Some(found),
        None if span.contains(&offset) || (span.is_empty() && span.start == offset) => {
            Some((Vec::new(), value))
        }
        None => None,
    }
}

/// `services.orders.timeout_ms`, `resolvers."Query.user".get`,
/// `server.cors_origins[0]`.
pub(super) fn dotted(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("\"{key}\""));
                }
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What serde's "expected …" means, in the words of docs/CONFIG.md.
fn expected(message: &str, key: &str) -> String {
    if message.contains("untagged enum OneOrMany") {
        return "a path or a list of paths".to_owned();
    }
    let wanted = message
        .rsplit_once(", expected ")
        .map_or(message, |(_, wanted)| wanted)
        .trim();
    let unit = if key.ends_with("_ms") {
        " of milliseconds"
    } else if key.ends_with("_s") {
        " of seconds"
    } else if key.ends_with("_bytes") {
        " of bytes"
    } else {
        ""
    };
    let whole = |max: u64| {
        if message.starts_with("invalid value") {
            format!("a whole number{unit} from 0 to {max}")
        } else {
            format!("a whole number{unit}")
        }
    };
    match wanted {
        "u8" => whole(u8::MAX.into()),
        "u16" => whole(u16::MAX.into()),
        "u32" => whole(u32::MAX.into()),
        "u64" | "usize" => whole(u64::MAX),
        "i8" | "i16" | "i32" | "i64" | "isize" => format!("a whole number{unit}"),
        "f32" | "f64" => format!("a number{unit}"),
        "a boolean" => "`true` or `false`".to_owned(),
        "a string" | "a borrowed string" | "a character" | "char" => "a string".to_owned(),
        "a sequence" => "a list (`[…]`)".to_owned(),
        "a map" => "a table (`{ … }` or a `[header]`)".to_owned(),
        other if other.starts_with("struct ") => "a table (`{ … }` or a `[header]`)".to_owned(),
        other => other.to_owned(),
    }
}

/// The value as the file writes it.
fn found(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(text) => format!("the string {:?}", text.as_ref()),
        DeValue::Integer(number) => format!("the number {}", number.as_str()),
        DeValue::Float(number) => format!("the number {}", number.as_str()),
        DeValue::Boolean(flag) => format!("`{flag}`"),
        DeValue::Datetime(when) => format!("the date-time {when}"),
        DeValue::Array(_) => "a list".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_wording_becomes_plain_words() {
        assert_eq!(
            expected("invalid type: string \"5s\", expected u64", "timeout_ms"),
            "a whole number of milliseconds"
        );
        assert_eq!(
            expected("invalid value: integer `-1`, expected u32", "retries"),
            "a whole number from 0 to 4294967295"
        );
        assert_eq!(
            expected("invalid type: integer `1`, expected a boolean", "graphiql"),
            "`true` or `false`"
        );
        assert_eq!(
            expected(
                "invalid type: string \"x\", expected struct RawHealth",
                "health"
            ),
            "a table (`{ … }` or a `[header]`)"
        );
    }

    #[test]
    fn paths_quote_keys_with_dots_and_index_lists() {
        let path = [
            Segment::Key("resolvers".into()),
            Segment::Key("Query.user".into()),
            Segment::Key("merge".into()),
            Segment::Index(1),
            Segment::Key("get".into()),
        ];
        assert_eq!(dotted(&path), "resolvers.\"Query.user\".merge[1].get");
    }
}
