//! The command-line grammar (clap derive). Kept apart from what the
//! commands do so completions and the man page can be generated from it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "comity",
    version,
    about = "Operate a Comity node: secure exchange of requests for international cooperation in criminal matters"
)]
pub struct Cli {
    /// The node's configuration file.
    #[arg(long, global = true, env = "COMITY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new node: keys (0600), a commented comity.toml, the data directory.
    Init {
        /// Directory to create the node in; must not hold a node already.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Human name of this central authority.
        #[arg(long)]
        name: String,
        /// This node's country, ISO 3166-1 alpha-2 (e.g. FR).
        #[arg(long, value_name = "CC")]
        country: String,
        /// QUIC address peers will connect to.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print this node's id (what peers pin).
    Id {
        #[arg(long)]
        json: bool,
    },
    /// Run a local three-country network end to end.
    Demo,
}
