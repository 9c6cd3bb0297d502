//! Upstream JSON: the tree an upstream answer is parsed into.
//!
//! sonic-rs's `Value`, not serde_json's: it is parsed into one arena per
//! answer (a node is 16 bytes, strings are copied into the arena in one
//! go) and dropped by freeing that arena, where serde_json allocates a
//! B-tree node per object and a `String` per key and string value. On the
//! large benchmark answer (2,500 orders) building, walking and dropping
//! serde_json's tree was most of the gateway's CPU and memory.
//!
//! It is the one model for upstream JSON: templates read `{parent.…}`
//! values from it without a copy (`connector::template::Looked`), batch
//! keys and grouped items are its values, `merge` builds on it
//! ([`deep_merge`]) and the writer writes from it. A changed object
//! becomes a hash map in sonic-rs and loses its key order; that is
//! harmless where the writer reads it (it writes the query's order), and
//! request bodies are written straight from the values they name.

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
/// inside strings do not count). Where `body` stops being JSON, the parser
/// stops too, so what follows cannot nest it deeper: a closing bracket with
/// nothing open ends the check.
fn nested_deeper_than(body: &[u8], limit: usize) -> bool {
    // Most answers hold fewer brackets than the limit in all, and counting
    // them is far cheaper than the walk below.
    if openers(body) <= limit {
        return false;
    }
    // 64 bytes at a time, as bit masks (one bit per byte), the way simdjson
    // finds strings: a byte-by-byte walk cost more than sonic-rs's parse.
    let limit = limit as i64;
    let mut depth = 0i64;
    let mut blocks = Blocks::default();
    let whole = body.chunks_exact(64);
    // The body's end, padded with spaces to a whole block.
    let mut tail = [b' '; 64];
    tail[..whole.remainder().len()].copy_from_slice(whole.remainder());
    for block in whole.chain(std::iter::once(&tail[..])) {
        let block = Masks::of(block);
        let in_string = blocks.strings(&block);
        let opens = block.opens & !in_string;
        let closes = block.closes & !in_string;
        if depth + i64::from(opens.count_ones()) <= limit {
            depth += i64::from(opens.count_ones()) - i64::from(closes.count_ones());
        } else {
            // Near the limit: follow the brackets in order.
            let mut brackets = opens | closes;
            while brackets != 0 {
                let bit = brackets & brackets.wrapping_neg();
                depth += if opens & bit != 0 { 1 } else { -1 };
                if depth > limit {
                    return true;
                }
                brackets &= brackets - 1;
            }
        }
        if depth < 0 {
            return false;
        }
    }
    false
}

/// Where the bytes that matter are in 64 bytes of a body: a bit per byte.
struct Masks {
    quotes: u64,
    backslashes: u64,
    /// `[` and `{`.
    opens: u64,
    /// `]` and `}`.
    closes: u64,
}

impl Masks {
    /// Compared 16 bytes at a time (SSE2 through `wide`); `block` holds 64.
    fn of(block: &[u8]) -> Masks {
        use wide::u8x16;
        let (quote, backslash) = (u8x16::splat(b'"'), u8x16::splat(b'\\'));
        // Brackets and braces differ only in bit 5: `[` 0x5b `{` 0x7b.
        let (fold, open, close) = (u8x16::splat(0xdf), u8x16::splat(b'['), u8x16::splat(b']'));
        let mut masks = Masks {
            quotes: 0,
            backslashes: 0,
            opens: 0,
            closes: 0,
        };
        for (i, lane) in block.chunks_exact(16).take(4).enumerate() {
            let bytes = u8x16::new(lane.try_into().unwrap_or([b' '; 16]));
            let folded = bytes & fold;
            let bits = |hits: u8x16| u64::from(hits.move_mask() as u16) << (16 * i);
            masks.quotes |= bits(bytes.cmp_eq(quote));
            masks.backslashes |= bits(bytes.cmp_eq(backslash));
            masks.opens |= bits(folded.cmp_eq(open));
            masks.closes |= bits(folded.cmp_eq(close));
        }
        masks
    }
}

/// What carries from one 64-byte block to the next while finding strings.
#[derive(Default)]
struct Blocks {
    /// The last block ended with an odd run of backslashes: the next
    /// block's first byte is escaped.
    escape_carried: u64,
    /// All ones when the last block ended inside a string.
    in_string: u64,
}

impl Blocks {
    /// A bit per byte of `block`: set inside strings (from the opening
    /// quote up to, not including, the closing one). A quote preceded by an
    /// odd run of backslashes is escaped, not a string's end.
    fn strings(&mut self, block: &Masks) -> u64 {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let backslashes = block.backslashes;
        // Where each run of backslashes starts, by the parity of its
        // position; adding the run's start to the run carries past its end,
        // and the parity of that end tells an odd run from an even one.
        let starts = backslashes & !(backslashes << 1);
        let even_start = EVEN ^ self.escape_carried;
        let (odd_carries, overflow) = backslashes.overflowing_add(starts & !even_start);
        let even_carries = backslashes.wrapping_add(starts & even_start);
        let odd_carries = odd_carries | self.escape_carried;
        self.escape_carried = u64::from(overflow);
        let escaped = (even_carries & !backslashes & !EVEN) | (odd_carries & !backslashes & EVEN);
        let quotes = block.quotes & !escaped;
        let inside = prefix_xor(quotes) ^ self.in_string;
        self.in_string = 0u64.wrapping_sub(inside >> 63);
        inside
    }
}

/// Bit i of the result: the parity of bits 0..=i of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
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

/// Merges `from` into `into`: objects key by key at every depth, later
/// values winning; anything else replaces. A key an upstream object
/// repeats ends up once, with its last value, as [`get`] reads it.
/// (`merge` mappings: no copy into another JSON model and back.)
pub fn deep_merge(into: &mut Json, from: &Json) {
    use sonic_rs::JsonValueMutTrait;
    let (Some(target), Some(source)) = (into.as_object_mut(), from.as_object()) else {
        *into = merged_copy(from);
        return;
    };
    for (key, value) in source.iter() {
        match target.get_mut(&key) {
            Some(existing) if existing.is_object() && value.is_object() => {
                deep_merge(existing, value)
            }
            _ => {
                target.insert(key, merged_copy(value));
            }
        }
    }
}

/// `value` copied, its objects merged into fresh ones (so without repeated
/// keys), anything else as it is.
fn merged_copy(value: &Json) -> Json {
    if value.is_object() {
        let mut copy = Json::new_object();
        deep_merge(&mut copy, value);
        copy
    } else {
        value.clone()
    }
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

/// A serde_json value (client input: a batch key from an argument or a
/// claim) as upstream JSON. Through its text: sonic-rs builds objects it
/// is handed as hash maps, in no order.
pub fn from_serde(value: &serde_json::Value) -> Json {
    parse(value.to_string().as_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_merge_merges_objects_at_every_depth_later_winning() {
        let mut merged = Json::new_object();
        for text in [
            r#"{"b":1,"a":{"x":1,"y":[1]},"d":{"k":1,"k":2}}"#,
            r#"{"a":{"y":[2],"z":3},"b":{"n":1},"c":null}"#,
        ] {
            deep_merge(&mut merged, &parse(text.as_bytes()).expect("json"));
        }
        // Later values win, objects merge at every depth, a repeated key
        // is there once (the field order of a response is the query's).
        let text = sonic_rs::to_string(&merged).expect("text");
        assert_eq!(text.matches("\"k\"").count(), 1, "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            serde_json::json!({"b": {"n": 1}, "a": {"x": 1, "y": [2], "z": 3}, "d": {"k": 2}, "c": null})
        );
    }

    #[test]
    fn converts_from_serde_keeping_numbers_and_reads_in_order() {
        let text = r#"{"b":1,"a":[true,null,-2,3.5,18446744073709551615],"s":"x\"y"}"#;
        let json = parse(text.as_bytes()).expect("json");
        let serde: serde_json::Value = serde_json::from_str(text).unwrap();
        let object = json.as_object().expect("object");
        let keys: Vec<&str> = object.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a", "s"]);
        let twice = parse(br#"{"k":1,"k":2}"#).expect("json");
        assert_eq!(get(&twice, "k").and_then(|v| v.as_i64()), Some(2));
        assert_eq!(from_serde(&serde), json);
        let path = ["a".to_owned(), "3".to_owned()];
        assert_eq!(at(&json, &path).and_then(|v| v.as_f64()), Some(3.5));
        assert_eq!(describe(&json), "an object");
    }

    /// The check as a plain walk, byte by byte: the meaning the block walk
    /// must keep.
    fn deeper_by_walking(body: &[u8], limit: usize) -> bool {
        let (mut depth, mut i) = (0usize, 0);
        while i < body.len() {
            match body[i] {
                b'"' => {
                    i += 1;
                    while i < body.len() && body[i] != b'"' {
                        i += if body[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return true;
                    }
                }
                b']' | b'}' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        false
    }

    /// Random JSON-like text: brackets that never close more than is open,
    /// and strings holding brackets, quotes and runs of backslashes.
    fn random_document(rng: &mut fastrand::Rng) -> Vec<u8> {
        let mut text = " ".repeat(rng.usize(0..64)).into_bytes();
        let mut open = 0;
        for _ in 0..rng.usize(1..400) {
            match rng.u8(0..10) {
                0..=2 => {
                    text.push(if rng.bool() { b'[' } else { b'{' });
                    open += 1;
                }
                3..=4 if open > 0 => {
                    text.push(if rng.bool() { b']' } else { b'}' });
                    open -= 1;
                }
                5..=6 => {
                    text.push(b'"');
                    for _ in 0..rng.usize(0..12) {
                        match rng.u8(0..6) {
                            0 => text.extend_from_slice(b"\\\""),
                            1 => text.extend(std::iter::repeat_n(b'\\', 2 * rng.usize(1..=4))),
                            2 => text.push(if rng.bool() { b'[' } else { b'}' }),
                            _ => text.push(b'a'),
                        }
                    }
                    text.push(b'"');
                }
                _ => text.push(b','),
            }
        }
        text
    }

    #[test]
    fn the_block_walk_agrees_with_a_byte_walk() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let document = random_document(&mut rng);
            for limit in [0, 1, 3, 8, 20] {
                assert_eq!(
                    nested_deeper_than(&document, limit),
                    deeper_by_walking(&document, limit),
                    "limit {limit}: {}",
                    String::from_utf8_lossy(&document)
                );
            }
        }
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
