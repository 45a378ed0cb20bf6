//! Reading a config file and writing one back.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::defaults::MAX_CONFIG_BYTES;
use crate::env;
use crate::error::ConfigError;
use crate::raw::RawConfig;
use crate::schema::Config;

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
        config.validate_with(env)?;
        Ok(config)
    }
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
