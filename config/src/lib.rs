//! Configuration of a Comity node, shared by the daemon (`comityd`) and the
//! CLI (`comity`): the typed TOML schema, its defaults, environment
//! overrides, validation with errors that say what to fix, and the secret
//! key file.
//!
//! ```no_run
//! # fn main() -> Result<(), comity_config::ConfigError> {
//! let config = comity_config::Config::load(std::path::Path::new("/etc/comity/comity.toml"))?;
//! println!("listening on {}", config.node.listen);
//! # Ok(()) }
//! ```
//!
//! # The file
//! `comity.example.toml` beside this crate documents every key and its
//! default (also available as [`EXAMPLE_TOML`]). Only `[node]`'s `name`,
//! `country` and `listen` are required. Unknown keys are errors, so a typo
//! is reported rather than silently ignored. Relative paths are relative to
//! the config file's directory, not to the working directory.
//!
//! # Environment overrides
//! A set, non-empty variable wins over the file (empty counts as unset):
//!
//! | variable | key |
//! | --- | --- |
//! | `COMITY_NAME` | `node.name` |
//! | `COMITY_COUNTRY` | `node.country` |
//! | `COMITY_IDENTITY_KEY` | `node.identity_key` |
//! | `COMITY_DATA_DIR` | `node.data_dir` |
//! | `COMITY_LISTEN` | `node.listen` |
//! | `COMITY_ADMIN_SOCKET` | `node.admin_socket` |
//! | `COMITY_METRICS_LISTEN` | `node.metrics_listen` |
//! | `COMITY_MAX_MESSAGE_BYTES` | `limits.max_message_bytes` |
//! | `COMITY_LOG_FORMAT` | `log.format` |
//!
//! Relative paths given this way are also resolved against the config
//! file's directory. Errors about an overridden key name the variable, e.g.
//! `node.listen (set by COMITY_LISTEN): …`. (`COMITY_CONFIG`, the path of
//! the file itself, is the CLI's business.)
//!
//! # Errors
//! [`ConfigError::Invalid`] prints as `KEY: PROBLEM; FIX`. `peer[N]`
//! counts `[[peer]]` tables from 0.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

mod address;
mod country;
pub mod defaults;
mod edit;
mod env;
mod error;
pub mod keyfile;
mod load;
pub mod pkcs11;
mod private_file;
mod raw;
mod retry;
mod schema;
mod template;
mod validate;

pub use address::{parse_host_port, AddressError};
pub use country::{CountryCode, ParseCountryError};
pub use edit::{add_peer, remove_peer, repin_peer, rotate_peer};
pub use env::{EnvOverride, ENV_OVERRIDES};
pub use error::ConfigError;
pub use keyfile::{
    load_key_file, load_key_file_with_signer, next_key_path, node_id_in_key_file, replace_key_file,
    write_new_key_file, KeyFileIoError,
};
pub use pkcs11::{TokenKey, TokenUriError, PIN_ENV};
pub use private_file::{read_private_file, PrivateFileError};
pub use schema::{
    AuditSection, Config, KeysSection, Limits, LogFormat, LogSection, NodeSection, PeerConfig,
    RetryPolicy,
};
pub use template::commented_config;

/// The fully commented example configuration.
pub const EXAMPLE_TOML: &str = include_str!("../comity.example.toml");

/// In the data directory of a node made to replace one whose key was lost
/// (`comity init --predecessor-checkpoint`): the old log's last cosigned
/// checkpoint, which the new log's first entry names.
pub const PREDECESSOR_FILE: &str = "predecessor.checkpoint";
