//! GraphQL names from the document's: valid (`/[_A-Za-z][_0-9A-Za-z]*/`,
//! not starting with `__`), and kept unique within their scope.

use std::collections::HashSet;

/// Whether `name` is a GraphQL name that a schema may define.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    first_ok && chars.all(|c| c == '_' || c.is_ascii_alphanumeric()) && !name.starts_with("__")
}

/// The words of `text`: runs of ASCII letters and digits. A leading `+` or
/// `-` before a digit is a word too (`+1` → `plus`, `1`), so GitHub's
/// reaction counts stay apart.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut sign = None;
    let mut chars = text.chars().peekable();
    if let Some(&c) = chars.peek() {
        if c == '+' || c == '-' {
            chars.next();
            if chars.peek().is_some_and(char::is_ascii_digit) {
                sign = Some(if c == '+' { "plus" } else { "minus" });
            }
        }
    }
    if let Some(sign) = sign {
        out.push(sign.to_owned());
    }
    let mut current = String::new();
    for c in chars {
        if c.is_ascii_alphanumeric() {
            current.push(c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn upper_first(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The first word in lower case at its start: `ListPets` → `listPets`,
/// `URLList` → `urlList`, `ID` → `id`.
fn lower_start(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let upper_run = chars.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let lower = match upper_run {
        0 => 0,
        n if n == chars.len() => n,
        1 => 1,
        // `URLList`: the last capital starts the next word.
        n => n - 1,
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < lower {
                c.to_ascii_lowercase()
            } else {
                *c
            }
        })
        .collect()
}

fn fix_start(name: String) -> String {
    if name.is_empty() {
        "_".to_owned()
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// camelCase: `list-pets` → `listPets`, `repos/get-content` →
/// `reposGetContent`, `ListPets` → `listPets`.
pub fn camel(text: &str) -> String {
    let words = words(text);
    let mut out = String::new();
    for (i, word) in words.iter().enumerate() {
        if i == 0 {
            out.push_str(&lower_start(word));
        } else {
            out.push_str(&upper_first(word));
        }
    }
    fix_start(out)
}

/// PascalCase: `simple-user` → `SimpleUser`, `listPets` → `ListPets`.
pub fn pascal(text: &str) -> String {
    fix_start(words(text).iter().map(|w| upper_first(w)).collect())
}

/// A field or argument name for a document key: kept when valid, else
/// made camelCase (`per-page` → `perPage`, `+1` → `plus1`).
pub fn field(text: &str) -> String {
    if is_valid(text) {
        text.to_owned()
    } else {
        camel(text)
    }
}

/// A type name for a component name: kept when valid, else PascalCase.
pub fn type_name(text: &str) -> String {
    if is_valid(text) {
        text.to_owned()
    } else {
        pascal(text)
    }
}

/// Names taken within one scope (a type's fields, the schema's types).
#[derive(Debug, Default)]
pub struct Taken {
    names: HashSet<String>,
}

impl Taken {
    /// With these names reserved.
    pub fn with(reserved: &[&str]) -> Taken {
        Taken {
            names: reserved.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// `name`, or `name2`, `name3`, … : the first not yet taken, now taken.
    pub fn claim(&mut self, name: &str) -> String {
        let mut candidate = name.to_owned();
        let mut n = 2;
        while self.names.contains(&candidate) {
            candidate = format!("{name}{n}");
            n += 1;
        }
        self.names.insert(candidate.clone());
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid() {
        assert_eq!(camel("listPets"), "listPets");
        assert_eq!(camel("ListPets"), "listPets");
        assert_eq!(camel("repos/get-content"), "reposGetContent");
        assert_eq!(camel("get_user"), "getUser");
        assert_eq!(camel("URLList"), "urlList");
        assert_eq!(camel("2fa-enable"), "_2faEnable");
        assert_eq!(pascal("simple-user"), "SimpleUser");
        assert_eq!(type_name("Pet"), "Pet");
        assert_eq!(type_name("pet.v1"), "PetV1");
        assert_eq!(field("per-page"), "perPage");
        assert_eq!(field("+1"), "plus1");
        assert_eq!(field("-1"), "minus1");
        assert_eq!(field("__typename"), "typename");
        assert_eq!(field("@type"), "type");
        assert_eq!(field("snake_case"), "snake_case");
        assert_eq!(field("+++"), "_");
        assert!(!is_valid("__x"));
        assert!(!is_valid("1a"));
        assert!(is_valid("_1"));
    }

    #[test]
    fn taken_names_get_a_number() {
        let mut taken = Taken::with(&["Query"]);
        assert_eq!(taken.claim("Query"), "Query2");
        assert_eq!(taken.claim("Pet"), "Pet");
        assert_eq!(taken.claim("Pet"), "Pet2");
        assert_eq!(taken.claim("Pet"), "Pet3");
    }
}
