//! `comityd`'s command line (clap derive). A module of the binary, not of
//! the library, kept apart from `main.rs` so that the Debian package's man
//! page and completions are generated from these definitions
//! (deploy/docgen includes this file); it uses nothing but clap and std.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "comityd",
    version,
    about = "The Comity node daemon",
    long_about = "The Comity node daemon: runs one node in the foreground. \
                  SIGTERM or SIGINT stops it gracefully (stop accepting, answer what is held, \
                  flush, sign a final audit checkpoint, exit 0).",
    after_help = "Exit codes: 0 success, 1 failure (invalid configuration or keys, \
                  a store that cannot be opened), 2 usage error."
)]
pub struct Args {
    /// The node's configuration file (see `comity init`).
    #[arg(long, env = "COMITY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Check the configuration and keys, then exit.
    #[arg(long)]
    pub check: bool,
    /// Log format; overrides `[log] format` in the configuration.
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,
}
