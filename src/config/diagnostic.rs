//! Problems found while loading configuration and schema, printed as
//! `FILE:LINE:COL: message` (docs/CLI.md, `conflux check`).

use std::fmt;
use std::sync::Arc;

/// A place in a source file. Lines and columns start at 1; columns count
/// characters, not bytes, so they match what an editor shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub fn at_offset(file: &Arc<str>, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location {
            file: file.clone(),
            line,
            col,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem with the configuration or the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is; a file alone when no finer place exists.
    pub location: Option<Location>,
    /// The file, for problems without a line (an unreadable file).
    pub file: Option<Arc<str>>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            location: Some(location),
            file: None,
            message: message.into(),
        }
    }

    pub fn in_file(file: &Arc<str>, message: impl Into<String>) -> Self {
        Diagnostic {
            location: None,
            file: Some(file.clone()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, &self.file) {
            (Some(location), _) => write!(f, "{location}: {}", self.message),
            (None, Some(file)) => write!(f, "{file}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// Every problem found by a start-up step: the steps keep going after a
/// problem so that `check` reports them all at once.
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let file: Arc<str> = Arc::from("services.toml");
        let text = "a = 1\nbé = \"x\"\n";
        let loc = Location::at_offset(&file, text, text.find('=').expect("has ="));
        assert_eq!((loc.line, loc.col), (1, 3));
        let second = text.rfind('=').expect("has =");
        let loc = Location::at_offset(&file, text, second);
        assert_eq!((loc.line, loc.col), (2, 4));
        assert_eq!(loc.to_string(), "services.toml:2:4");
    }
}
