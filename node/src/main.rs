//! `comityd`: a Comity node in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "comityd", version, about = "The Comity node daemon")]
struct Args {
    /// The node's configuration file (see `comity init`).
    #[arg(long, env = "COMITY_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and keys, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match comity_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("comityd: {}: {e}", args.config.display());
            return ExitCode::from(1);
        }
    };
    let identity = match comity_config::load_key_file(&config.node.identity_key) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("comityd: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check {
        println!(
            "configuration and keys are valid; node id {}",
            identity.id()
        );
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "comityd: node {}: the network service is not built yet",
        identity.id()
    );
    ExitCode::from(1)
}
