//! `comity`: the operator's command line.
//!
//! Exit codes scripts can rely on: 0 success, 1 failure, 2 usage error.

mod args;
mod client;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("comity: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
