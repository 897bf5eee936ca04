//! Aligned plain-text tables. Cells are padded by character count before they are coloured, so
//! columns line up with and without colour. The last column is never padded (no trailing
//! blanks).

use crate::style::Style;

/// How a cell is coloured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paint {
    None,
    /// By status word (see [`Style::status`]).
    Status(String),
    Dim,
    Good,
    Bad,
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub paint: Paint,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            paint: Paint::None,
        }
    }

    /// A status word coloured by itself.
    pub fn status(status: &str) -> Self {
        Cell {
            text: status.to_owned(),
            paint: Paint::Status(status.to_owned()),
        }
    }

    pub fn dim(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            paint: Paint::Dim,
        }
    }

    pub fn good(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            paint: Paint::Good,
        }
    }

    pub fn bad(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            paint: Paint::Bad,
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::new(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::new(s)
    }
}

/// A table with an optional header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    indent: usize,
    header: Option<Vec<String>>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table indented by `indent` spaces.
    pub fn new(indent: usize) -> Self {
        Table {
            indent,
            ..Table::default()
        }
    }

    /// Sets the header row (rendered dim).
    pub fn header<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cells: I) -> Self {
        self.header = Some(cells.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a row.
    pub fn row<I: IntoIterator<Item = C>, C: Into<Cell>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rendered lines.
    pub fn lines(&self, style: &Style) -> Vec<String> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(self.header.as_ref().map(Vec::len))
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        let all_texts = self
            .header
            .iter()
            .map(|h| h.iter().map(String::as_str).collect::<Vec<_>>())
            .chain(
                self.rows
                    .iter()
                    .map(|r| r.iter().map(|c| c.text.as_str()).collect()),
            );
        for texts in all_texts {
            for (i, t) in texts.iter().enumerate() {
                widths[i] = widths[i].max(t.chars().count());
            }
        }
        let pad = " ".repeat(self.indent);
        let render = |cells: Vec<Cell>| -> String {
            let n = cells.len();
            let mut line = pad.clone();
            for (i, c) in cells.into_iter().enumerate() {
                let text = if i + 1 == n {
                    c.text
                } else {
                    let fill = widths[i] - c.text.chars().count();
                    format!("{}{}", c.text, " ".repeat(fill))
                };
                let painted = match &c.paint {
                    Paint::None => text,
                    Paint::Status(s) => style.status(s, &text),
                    Paint::Dim => style.dim(&text),
                    Paint::Good => style.good(&text),
                    Paint::Bad => style.bad(&text),
                };
                line.push_str(&painted);
                if i + 1 < n {
                    line.push_str("  ");
                }
            }
            line.trim_end().to_owned()
        };
        let mut out = Vec::new();
        if let Some(h) = &self.header {
            out.push(render(h.iter().map(|t| Cell::dim(t.clone())).collect()));
        }
        for r in &self.rows {
            out.push(render(r.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_last_is_not_padded() {
        let mut t = Table::new(2).header(["phase", "status", "note"]);
        t.row(["spellcheck", "completed", ""]);
        t.row([Cell::new("nlp"), Cell::status("failed"), Cell::new("x")]);
        let lines = t.lines(&Style::plain());
        assert_eq!(
            lines,
            [
                "  phase       status     note",
                "  spellcheck  completed",
                "  nlp         failed     x",
            ]
        );
    }

    #[test]
    fn colour_does_not_break_alignment() {
        let mut t = Table::new(0);
        t.row([Cell::status("completed"), Cell::new("a")]);
        t.row([Cell::status("failed"), Cell::new("b")]);
        let lines = t.lines(&Style::colored());
        assert_eq!(lines[1], "\x1b[31mfailed   \x1b[0m  b");
    }
}
