//! `conflux init [DIR]`: a small project that `check` accepts and `serve`
//! serves — one service, its SDL and mappings, with comments saying what
//! each part does (README "A five-minute tour").
//!
//! The files are templates in `src/init/template/`; the JSON Schema beside
//! `services.toml` is generated from this binary's config types, so it fits
//! the version that wrote it.

use std::path::{Path, PathBuf};

const SERVICES_TOML: &str = include_str!("template/services.toml");
const SCHEMA_SDL: &str = include_str!("template/schema/api.graphql");

/// The files of a new project, relative to its folder.
pub fn files() -> Vec<(&'static str, String)> {
    let schema = serde_json::to_string_pretty(&crate::config::json_schema())
        .expect("a JSON value always serializes");
    vec![
        ("services.toml", SERVICES_TOML.to_owned()),
        ("schema/api.graphql", SCHEMA_SDL.to_owned()),
        ("services.schema.json", schema + "\n"),
    ]
}

/// Writes the project into `dir` (created when missing) and returns the
/// paths written. Refuses, writing nothing, when any of the files exists.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let files = files();
    let existing: Vec<String> = files
        .iter()
        .map(|(relative, _)| dir.join(relative))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(format!(
            "not overwriting {}: run `conflux init` in an empty folder, or name one (`conflux init my-bff`)",
            existing.join(", ")
        ));
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("cannot create {}: {err}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
