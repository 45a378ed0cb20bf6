//! `comity`: the operator's command line.
//!
//! Exit codes scripts can rely on: 0 success, 1 failure, 2 usage error.

mod args;
mod commands;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("comity: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `comity messages | head` should end quietly, as Unix tools do, rather
/// than panic on a closed pipe: Rust ignores SIGPIPE by default, so put
/// back the default action (terminate) before anything is written.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: `signal` with SIG_DFL installs no handler code, so nothing can
    // run in signal context; it is called first thing in `main`, before any
    // thread exists, so no other thread observes the change mid-way.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
