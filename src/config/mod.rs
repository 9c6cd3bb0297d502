//! `services.toml`: raw TOML → `${VAR}` interpolation → typed raw model
//! (unknown keys collected) → validated [`Config`] (docs/CONFIG.md).
//!
//! Every step keeps going after a problem and returns all of them, each
//! with `FILE:LINE:COL`, so `conflux check` shows the whole list at once.

pub mod diagnostic;
mod env;
pub mod model;
mod raw;
mod suggest;
mod type_error;
mod validate;

use std::path::Path;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use model::*;
pub use raw::json_schema;

/// The source text of the config file, for turning spans into locations.
pub(crate) struct Source<'a> {
    pub file: Arc<str>,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn location(&self, offset: usize) -> Location {
        Location::at_offset(&self.file, self.text, offset)
    }

    pub fn diagnostic(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.location(offset), message)
    }
}

/// Reads and validates `path`. Schema files are only located here; the
/// schema module reads them.
///
/// `Err` when no model could be built at all (unreadable file, TOML syntax
/// or type error); otherwise the model with whatever problems were found,
/// so later steps can still look for theirs.
pub fn load(path: &Path) -> Result<(Config, Diagnostics), Diagnostics> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|err| {
        let message = if err.kind() == std::io::ErrorKind::NotFound {
            // Most often: run outside a project.
            "cannot read config: no such file. Run Conflux in a project's folder, \
             name the file with `--config FILE`, or start a project with `conflux init`"
                .to_owned()
        } else {
            format!("cannot read config: {err}")
        };
        Diagnostics(vec![Diagnostic::in_file(&file, message)])
    })?;
    let source = Source { file, text: &text };
    let (raw, key_offsets, diagnostics) = parse(&source)?;
    Ok(validate::validate(
        raw,
        path,
        &source,
        &key_offsets,
        diagnostics,
    ))
}

/// TOML text → typed raw model, with `${VAR}` replaced in every string.
/// Unknown keys do not stop parsing: they come back as diagnostics beside
/// the model, so validation still runs and reports everything else too.
fn parse(source: &Source<'_>) -> Result<(raw::RawConfig, ParseFacts, Diagnostics), Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let mut table = DeTable::parse(source.text).map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start);
        Diagnostics(vec![source.diagnostic(
            offset,
            format!("invalid TOML: {}", err.message().trim_end()),
        )])
    })?;
    table.get_mut().make_owned();
    let failed_strings = env::interpolate_table(table.get_mut(), source, &mut diagnostics);
    let spans = table.clone();
    let key_offsets = resolver_key_offsets(&spans);

    // A value of the wrong type stops serde: each one is reported in plain
    // words, dropped from the tree, and the tree read again, so every wrong
    // value and every unknown key of the file comes out of one run.
    let mut tree = table;
    let mut type_errors = 0;
    let (raw, unknown) = loop {
        let mut unknown: Vec<Vec<Segment>> = Vec::new();
        let deserializer = toml::de::Deserializer::from(tree.clone());
        let parsed: Result<raw::RawConfig, _> =
            serde_ignored::deserialize(deserializer, |path| unknown.push(segments(&path)));
        let err = match parsed {
            Ok(raw) => break (raw, unknown),
            Err(err) => err,
        };
        let explained = err
            .span()
            .and_then(|span| type_error::explain(&spans, span, err.message()));
        match explained {
            Some(wrong) if type_errors < type_error::MAX_TYPE_ERRORS => {
                diagnostics.push(source.diagnostic(wrong.offset, wrong.message));
                type_error::remove(tree.get_mut(), &wrong.path);
                type_errors += 1;
            }
            _ => {
                let offset = err.span().map_or(0, |span| span.start);
                diagnostics.push(source.diagnostic(offset, err.message().trim_end().to_owned()));
                return Err(diagnostics);
            }
        }
    };
    for path in unknown {
        let (offset, table_name) = key_span(&spans, &path);
        let key = match path.last() {
            Some(Segment::Key(key)) => key.clone(),
            Some(Segment::Index(i)) => i.to_string(),
            None => String::new(),
        };
        let mut message = match table_name {
            Some(table) => format!("unknown key `{key}` in [{table}]"),
            None => format!("unknown key `{key}`"),
        };
        if let Some(hint) = suggest::hint(&path[..path.len().saturating_sub(1)], &key) {
            message.push_str("; ");
            message.push_str(&hint);
        }
        diagnostics.push(source.diagnostic(offset, message));
    }
    // In the order of the file, as an editor lists them.
    diagnostics
        .0
        .sort_by_key(|d| d.location.as_ref().map(|l| (l.line, l.col)));
    let facts = ParseFacts {
        key_offsets,
        failed_strings,
    };
    Ok((raw, facts, diagnostics))
}

/// What parsing learned beside the model, for validation's messages.
pub(crate) struct ParseFacts {
    pub key_offsets: KeyOffsets,
    /// Strings whose `${VAR}` could not be filled: already reported.
    pub failed_strings: std::collections::HashSet<usize>,
}

/// Where each `[resolvers]` key is written (toml cannot give spans of map
/// keys through serde), for messages about a mapping.
pub(crate) type KeyOffsets = std::collections::HashMap<String, usize>;

fn resolver_key_offsets(root: &Spanned<DeTable<'_>>) -> KeyOffsets {
    match root.get_ref().get("resolvers").map(Spanned::get_ref) {
        Some(DeValue::Table(table)) => table
            .iter()
            .map(|(key, _)| (key.get_ref().to_string(), key.span().start))
            .collect(),
        _ => KeyOffsets::new(),
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

/// serde_ignored's path as segments. Keys may hold dots (`"Query.user"`),
/// so the printed form cannot be split; `Spanned`'s private keys are skipped.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Segment::Index(*index)),
        Path::Map { key, .. } if !key.starts_with("$__") => out.push(Segment::Key(key.clone())),
        _ => {}
    }
    out
}

/// The offset of the key at `path` and the name of the table that holds it
/// (`services.users`, `resolvers."Query.user"`).
fn key_span(root: &Spanned<DeTable<'_>>, path: &[Segment]) -> (usize, Option<String>) {
    let mut current: Option<&DeValue<'_>> = None;
    let mut table = Some(root.get_ref());
    let mut offset = 0;
    let mut walked: Vec<String> = Vec::new();
    for (i, segment) in path.iter().enumerate() {
        let value = match (segment, table) {
            (Segment::Key(name), Some(t)) => match t.get_key_value(name.as_str()) {
                Some((key, value)) => {
                    offset = key.span().start;
                    value
                }
                None => break,
            },
            (Segment::Index(index), _) => match current {
                Some(DeValue::Array(items)) => match items.get(*index) {
                    Some(item) => {
                        offset = item.span().start;
                        item
                    }
                    None => break,
                },
                _ => break,
            },
            (Segment::Key(_), None) => break,
        };
        if i + 1 == path.len() {
            break;
        }
        walked.push(match segment {
            Segment::Key(name) if name.contains('.') => format!("\"{name}\""),
            Segment::Key(name) => name.clone(),
            Segment::Index(index) => index.to_string(),
        });
        current = Some(value.get_ref());
        table = match value.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    let name = (!walked.is_empty()).then(|| walked.join("."));
    (offset, name)
}
