//! The one error type of configuration loading and editing.

use std::path::PathBuf;

/// Why a configuration could not be read, parsed or accepted.
///
/// `Invalid` always names the offending key (e.g. `peer[1].id`, or the
/// environment variable that set it) and says how to fix it, so the CLI and
/// the daemon can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is {len} bytes; a Comity config file is at most {max} bytes (is this the right file?)", path.display())]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    /// TOML syntax or type error, with toml's line/column and snippet; also
    /// unknown keys (typos), which toml names.
    #[error("{message}")]
    Syntax { message: String },
    #[error("{key}: {problem}; {fix}")]
    Invalid {
        key: String,
        problem: String,
        fix: String,
    },
}

impl ConfigError {
    /// The key an `Invalid` error is about (`node.country`, `peer[1].id`, …).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ConfigError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn syntax(e: impl std::fmt::Display) -> Self {
        ConfigError::Syntax {
            message: e.to_string().trim_end().to_string(),
        }
    }
}

pub(crate) fn invalid(
    key: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Shortens untrusted text before it is echoed in an error message.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}
