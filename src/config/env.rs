//! `${VAR}` and `${VAR:-default}` in every string of `services.toml`,
//! replaced from the environment at load (docs/CONFIG.md).
//!
//! Done on the parsed TOML tree, not on the text, so a variable's value can
//! never change the TOML structure and every error points at its string.

use std::collections::HashSet;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Diagnostics, Source};

/// Replaces variables in every string of `table`. Returns the offsets of
/// strings that could not be filled, so later checks stay quiet about them
/// (one problem, one message).
pub(super) fn interpolate_table(
    table: &mut DeTable<'_>,
    source: &Source<'_>,
    out: &mut Diagnostics,
) -> HashSet<usize> {
    let mut failed = HashSet::new();
    for (_, value) in table.iter_mut() {
        interpolate_value(value, source, out, &mut failed);
    }
    failed
}

fn interpolate_value(
    value: &mut Spanned<DeValue<'_>>,
    source: &Source<'_>,
    out: &mut Diagnostics,
    failed: &mut HashSet<usize>,
) {
    let offset = value.span().start;
    match value.get_mut() {
        DeValue::String(text) if text.contains("${") => {
            match interpolate(text, |name| std::env::var(name).ok()) {
                Ok(replaced) => *text = replaced.into(),
                Err(message) => {
                    out.push(source.diagnostic(offset, message));
                    failed.insert(offset);
                }
            }
        }
        DeValue::Table(table) => {
            for (_, value) in table.iter_mut() {
                interpolate_value(value, source, out, failed);
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate_value(item, source, out, failed);
            }
        }
        _ => {}
    }
}

/// Replaces every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
pub(crate) fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid environment variable name `{name}` in `{text}`"
            ));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "10.0.0.1".to_owned())
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(
            interpolate("http://${HOST}:${PORT:-7001}/x", env).as_deref(),
            Ok("http://10.0.0.1:7001/x")
        );
    }

    #[test]
    fn a_missing_variable_without_default_is_an_error_naming_it() {
        let err = interpolate("${API_KEY}", env).expect_err("missing");
        assert!(err.contains("`API_KEY` is not set"), "{err}");
    }
}
