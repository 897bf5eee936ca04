//! Terminal styling: ANSI colour on a terminal, plain text everywhere else.
//!
//! Every rendering function takes a [`Style`]; tests use [`Style::plain`] and assert on plain
//! text. Colour is applied to text that is already padded, so columns stay aligned.

use std::io::IsTerminal;

/// When to colour output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// How text is decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

const RESET: &str = "\x1b[0m";

impl Style {
    /// No decoration at all.
    pub const fn plain() -> Self {
        Style { color: false }
    }

    /// ANSI colours.
    pub const fn colored() -> Self {
        Style { color: true }
    }

    /// The style for stdout under `choice`.
    pub fn detect(choice: ColorChoice) -> Self {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").as_deref() != Ok("dumb")
            }
        };
        Style { color }
    }

    /// Whether colour is on.
    pub const fn is_colored(&self) -> bool {
        self.color
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// Bold (headings).
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dim (secondary details: times, ids).
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Green (good).
    pub fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Yellow (partial).
    pub fn warn(&self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Red (bad).
    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// `text` coloured by the status word `status` (`completed_successfully` green,
    /// `completed_with_failures` yellow, `failed_critically`/`failed`/`timed_out` red).
    pub fn status(&self, status: &str, text: &str) -> String {
        match status {
            "completed_successfully" | "completed" => self.good(text),
            "completed_with_failures" => self.warn(text),
            "failed_critically" | "failed" | "timed_out" | "cancelled" => self.bad(text),
            _ => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_leaves_text_alone() {
        let s = Style::plain();
        assert_eq!(s.bold("x"), "x");
        assert_eq!(s.status("failed_critically", "boom"), "boom");
    }

    #[test]
    fn colored_wraps_in_ansi() {
        let s = Style::colored();
        assert_eq!(s.bad("x"), "\x1b[31mx\x1b[0m");
        assert_eq!(
            s.status("completed_successfully", "ok"),
            "\x1b[32mok\x1b[0m"
        );
        assert_eq!(s.status("unknown", "ok"), "ok");
    }

    #[test]
    fn explicit_choices() {
        assert!(Style::detect(ColorChoice::Always).is_colored());
        assert!(!Style::detect(ColorChoice::Never).is_colored());
    }
}
