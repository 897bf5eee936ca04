//! `hulectl`: parse the command line, run the command, exit with its code. Ctrl-C stops any
//! command at once (exit 130).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = hulectl::Cli::parse();
    tokio::select! {
        result = hulectl::run(cli) => match result {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(hulectl::commands::EXIT_FAILED)
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted");
            ExitCode::from(130)
        }
    }
}
