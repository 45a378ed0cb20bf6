//! Reading a config file and writing one back.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::defaults::MAX_CONFIG_BYTES;
use crate::env;
use crate::error::ConfigError;
use crate::raw::RawConfig;
use crate::schema::{Config, Limits, LogSection, PeerConfig, RetryPolicy};

impl Config {
    /// Reads, parses, applies the process environment's overrides, resolves
    /// relative paths against the file's directory (made absolute) and
    /// validates. Errors other than `Io`/`TooLarge` do not repeat the path:
    /// print them as `{path}: {error}`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_limited(path)?;
        env::check_process_env()?;
        Config::from_toml_str(&text, &base_dir_of(path)?, &env::process_env)
    }

    /// [`Config::load`] without the file system and process environment:
    /// `base_dir` resolves relative paths and `env` stands for
    /// `std::env::var`. The caller bounds `text`'s size.
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(ConfigError::syntax)?;
        let overrides = env::apply(&mut raw, env)?;
        let config = raw.into_config(base_dir, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as a complete TOML file, every key explicit, with
    /// paths under [`Config::base_dir`] written relative to it again.
    ///
    /// This writes the *effective* values, environment overrides included,
    /// and drops the operator's comments: to add or remove a peer in an
    /// existing file use [`Config::add_peer_to_file`] instead.
    pub fn to_toml_string(&self) -> String {
        let n = &self.node;
        let out = Out {
            node: NodeOut {
                name: &n.name,
                country: n.country.as_str(),
                identity_key: self.relative(&n.identity_key),
                data_dir: self.relative(&n.data_dir),
                listen: n.listen.to_string(),
                admin_socket: self.relative(&n.admin_socket),
                metrics_listen: n.metrics_listen.map(|m| m.to_string()),
            },
            limits: &self.limits,
            retry: &self.retry,
            log: &self.log,
            audit: &self.audit,
            peer: &self.peers,
        };
        // Strings, u32s, f64s and enums only: TOML can represent them all.
        let body = toml::to_string(&out).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"));
        format!("{HEADER}{body}")
    }

    fn relative(&self, p: &Path) -> String {
        let rel = match p.strip_prefix(&self.base_dir) {
            Ok(rel) if !self.base_dir.as_os_str().is_empty() => rel,
            _ => p,
        };
        if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel.to_string_lossy().into_owned()
        }
    }
}

const HEADER: &str = "# Comity node configuration. Relative paths are relative to this file's\n\
# directory. Every key, its default and its purpose: comity.example.toml.\n\n";

#[derive(Serialize)]
struct Out<'a> {
    node: NodeOut<'a>,
    limits: &'a Limits,
    retry: &'a RetryPolicy,
    log: &'a LogSection,
    audit: &'a crate::schema::AuditSection,
    #[serde(skip_serializing_if = "<[PeerConfig]>::is_empty")]
    peer: &'a [PeerConfig],
}

#[derive(Serialize)]
struct NodeOut<'a> {
    name: &'a str,
    country: &'a str,
    identity_key: String,
    data_dir: String,
    listen: String,
    admin_socket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
}

/// The file's directory, absolute, so a daemon that changes directory
/// still finds its files.
pub(crate) fn base_dir_of(path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = std::path::absolute(path).map_err(|e| ConfigError::io("resolve", path, e))?;
    Ok(abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/")))
}

/// Reads at most [`MAX_CONFIG_BYTES`]; works on pipes (`--config <(…)`) too.
pub(crate) fn read_limited(path: &Path) -> Result<String, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| ConfigError::io("open", path, e))?;
    let too_large = |len| ConfigError::TooLarge {
        path: path.to_path_buf(),
        len,
        max: MAX_CONFIG_BYTES,
    };
    if let Ok(meta) = file.metadata() {
        if meta.is_file() && meta.len() > MAX_CONFIG_BYTES {
            return Err(too_large(meta.len()));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::io("read", path, e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| ConfigError::Syntax {
        message: format!(
            "{}: not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    })
}
