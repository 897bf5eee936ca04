//! `hulectl`: the command-line tool for people operating the HuleEdu pipeline services.
//!
//! Layout (pure parts first; only the last three modules do I/O):
//! - [`cli`]: the command line (clap derive).
//! - [`event`]: Kafka records and what they mean: the system's topics, decoding every message
//!   into an [`event::Event`] with its batch and pipeline (correlation id).
//! - [`render`]: one readable line per event, terminal-event summaries, operator answers.
//! - [`status`]: the orchestrator's and the conductor's views of a batch as text.
//! - [`dlq`]: failed-essay and poison records, filtered and rendered.
//! - [`report`]: the demo's report and verdict.
//! - [`table`], [`style`]: aligned columns; colour only on a terminal.
//! - [`kafka`]: reading topics (to their end, or from now on in a background thread) and
//!   publishing.
//! - [`http`]: the services' HTTP APIs, with errors that carry the server's `error`/`detail`.
//! - [`commands`], [`demo`]: each command, glued from the above; they print through [`say!`]
//!   ([`output`]), which ends quietly when stdout is closed.
//!
//! Data flow: broker → [`kafka::Follower`] / [`kafka::read_to_end`] → [`event::decode`] →
//! filters (batch key, correlation id) → [`render`] → stdout.

pub mod cli;
pub mod commands;
pub mod demo;
pub mod dlq;
pub mod event;
pub mod http;
pub mod kafka;
pub mod render;
pub mod report;
pub mod status;
pub mod style;
pub mod table;

#[cfg(test)]
mod fixtures;

pub use cli::Cli;
pub use commands::run;

/// Writing to stdout. Unlike `println!`, a closed stdout (output piped into `head`, a pager
/// that quit) ends the process quietly instead of panicking.
pub mod output {
    use std::io::{ErrorKind, Write};

    /// Exit code when stdout was closed by the reader (128 + SIGPIPE, as a shell reports it).
    pub const EXIT_PIPE_CLOSED: i32 = 141;

    /// Writes one line to stdout.
    pub fn line(args: std::fmt::Arguments<'_>) {
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{args}").and_then(|()| out.flush()) {
            if e.kind() == ErrorKind::BrokenPipe {
                std::process::exit(EXIT_PIPE_CLOSED);
            }
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// `println!` through [`output::line`].
#[macro_export]
macro_rules! say {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
