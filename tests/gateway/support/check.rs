//! `conflux check` in-process (`conflux::gateway::load` + the Display of its
//! diagnostics) and as the real binary.

use std::process::Command;

use super::temp::TempDir;

/// What `check` said: valid or not, and the problem lines, with paths
/// relative to the config's directory (`services.toml:3:1: …`,
/// `schema/schema.graphql:2:3: …`).
#[derive(Debug)]
pub struct Checked {
    pub ok: bool,
    pub lines: Vec<String>,
}

impl Checked {
    /// The one line that starts with `prefix` (e.g. `services.toml:4:1: `);
    /// panics listing every line when there is none or several.
    pub fn line_at(&self, prefix: &str) -> &str {
        let found: Vec<&String> = self
            .lines
            .iter()
            .filter(|line| line.starts_with(prefix))
            .collect();
        match found.as_slice() {
            [one] => one.as_str(),
            _ => panic!(
                "expected exactly one problem at `{prefix}`, found {}; all lines:\n{}",
                found.len(),
                self.lines.join("\n")
            ),
        }
    }
}

/// Checks `services.toml` = `toml` with `schema/schema.graphql` = `sdl`.
pub fn check(toml: &str, sdl: &str) -> Checked {
    check_files(toml, &[("schema/schema.graphql", sdl)])
}

/// Checks `services.toml` = `toml` with these other files (relative paths).
pub fn check_files(toml: &str, files: &[(&str, &str)]) -> Checked {
    let dir = TempDir::new();
    let config = dir.write("services.toml", toml);
    for (relative, text) in files {
        dir.write(relative, text);
    }
    match conflux::gateway::load(&config) {
        Ok(_) => Checked {
            ok: true,
            lines: Vec::new(),
        },
        Err(problems) => Checked {
            ok: false,
            lines: dir
                .relative(&problems.to_string())
                .lines()
                .map(str::to_owned)
                .collect(),
        },
    }
}

/// What the `conflux` binary did.
#[derive(Debug)]
pub struct BinaryRun {
    pub code: Option<i32>,
    pub stderr: String,
}

impl BinaryRun {
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs `conflux ARGS…` in a directory holding `services.toml` = `toml`
/// and `files`.
pub fn run_binary(args: &[&str], toml: &str, files: &[(&str, &str)]) -> BinaryRun {
    let dir = TempDir::new();
    dir.write("services.toml", toml);
    for (relative, text) in files {
        dir.write(relative, text);
    }
    let output = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run the conflux binary");
    BinaryRun {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `LINE:COL` (both from 1, columns in characters) of the first occurrence
/// of `needle` in `text`; panics when absent.
pub fn position(text: &str, needle: &str) -> String {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` is not in the text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    format!("{line}:{col}")
}
