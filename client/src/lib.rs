//! The client side of a Comity node, for everything that is not the daemon:
//!
//! - [`admin`]: the admin API client over the node's Unix socket (the CLI's
//!   commands, the demo, the end-to-end tests, the benchmarks' load
//!   generator with keep-alive connections), on the response parser of
//!   [`http`];
//! - [`init`]: a new node directory, as `comity init` makes it;
//! - [`settings`]: typed changes to a node's configuration;
//! - [`local`]: real `comityd` processes on 127.0.0.1, one
//!   ([`LocalNode`]) or a network of them ([`Network`]).
//!
//! It does not depend on `comity-node`: it talks to the daemon only through
//! its files, its process and its admin socket, as an operator would.

pub mod admin;
pub mod http;
pub mod init;
pub mod local;
pub mod restore;
pub mod settings;
pub mod upload;

use std::path::PathBuf;
use std::process::ExitStatus;

pub use admin::{Client, ClientError, Response};
pub use local::{LocalNode, Network, NodeBuilder};
pub use settings::Settings;

/// Why a node directory could not be made, or a local node could not be
/// started, stopped or waited for. The messages name the node and, where
/// it helps, end with the last lines of its log.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "{} already exists: {} holds a node; refusing to overwrite it (choose another --dir)",
        path.display(),
        dir.display()
    )]
    Exists { path: PathBuf, dir: PathBuf },
    #[error("the identity key on the token {uri}")]
    Token {
        uri: String,
        source: comity_token::TokenError,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        source: comity_config::ConfigError,
    },
    #[error(transparent)]
    Country(#[from] comity_config::ParseCountryError),
    #[error(transparent)]
    KeyFile(#[from] comity_config::KeyFileIoError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{name} is not running")]
    NotRunning { name: String },
    #[error("{name} is already running")]
    AlreadyRunning { name: String },
    #[error("cannot start {}: {source}", comityd.display())]
    Spawn {
        comityd: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} exited at start ({status}):\n{log}")]
    ExitedAtStart {
        name: String,
        status: ExitStatus,
        log: String,
    },
    #[error("{name} did not start within {secs} s:\n{log}")]
    NotReady {
        name: String,
        secs: u64,
        log: String,
    },
    #[error("cannot signal {name} (pid {pid}): {source}")]
    Signal {
        name: String,
        pid: u32,
        source: std::io::Error,
    },
    #[error("{name} did not stop within {secs} s of SIGTERM (killed):\n{log}")]
    StopTimeout {
        name: String,
        secs: u64,
        log: String,
    },
    #[error("timed out waiting for {what}")]
    Timeout { what: String },
    #[error("{name}: timed out waiting for {what}\n--- log ---\n{log}")]
    NodeTimeout {
        name: String,
        what: String,
        log: String,
    },
}

impl From<comity_token::LoadError> for LocalError {
    fn from(e: comity_token::LoadError) -> Self {
        match e {
            comity_token::LoadError::KeyFile(e) => LocalError::from(e),
            comity_token::LoadError::Token { uri, source } => LocalError::Token { uri, source },
        }
    }
}
