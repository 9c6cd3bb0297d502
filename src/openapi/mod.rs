//! OpenAPI 3.0/3.1 documents: `conflux import openapi` writes a project
//! from one, `conflux check --openapi` lints a project's mappings against
//! one (docs/OPENAPI.md).
//!
//! - [`document`]: reading JSON or YAML into an ordered tree, `$ref`s, pointers.
//! - [`shape`]: what a schema describes (`allOf` merged, nullability).
//! - [`names`]: valid, unique GraphQL names.
//! - [`import`]: the document → types, root fields and mappings.
//! - [`write`]: those as `schema/NAME.graphql` and `services.toml`.
//! - [`lint`]: a project's mappings checked against the document.

pub mod document;
pub mod import;
pub mod lint;
pub mod names;
pub mod shape;
pub mod write;

use std::path::{Path, PathBuf};

pub use document::{Document, LoadError};
pub use import::{Note, Project};

/// What `conflux import openapi` did.
#[derive(Debug)]
pub struct Imported {
    pub written: Vec<PathBuf>,
    pub queries: usize,
    pub mutations: usize,
    pub notes: Vec<Note>,
}

/// Reads `spec`, generates the project for service `service` at `url`, and
/// writes it into `out` (refusing to overwrite without `force`).
pub fn import(
    spec: &Path,
    service: &str,
    url: &str,
    out: &Path,
    force: bool,
) -> Result<Imported, String> {
    if service.is_empty()
        || !service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "--service `{service}`: use letters, digits, `_` and `-` (it names a table and a file)"
        ));
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
        _ => return Err(format!("--url `{url}` is not an http:// or https:// URL")),
    }
    let document = Document::load(spec).map_err(|err| err.to_string())?;
    let project = import::generate(&document, service, url);
    let source = spec.file_name().map_or_else(
        || spec.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let written = write::write_files(out, &project, &source, force)?;
    Ok(Imported {
        written,
        queries: project
            .operations
            .iter()
            .filter(|o| o.root == "Query")
            .count(),
        mutations: project
            .operations
            .iter()
            .filter(|o| o.root == "Mutation")
            .count(),
        notes: project.notes,
    })
}
