//! Environment overrides: containers and systemd units set a few values
//! without editing the file.

use crate::error::{excerpt, invalid, ConfigError};
use crate::raw::RawConfig;
use crate::schema::LogFormat;

/// One environment variable that overrides one key of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvOverride {
    pub var: &'static str,
    pub key: &'static str,
}

const fn o(var: &'static str, key: &'static str) -> EnvOverride {
    EnvOverride { var, key }
}

/// Every override, in the order they are applied.
pub const ENV_OVERRIDES: &[EnvOverride] = &[
    o("COMITY_NAME", "node.name"),
    o("COMITY_COUNTRY", "node.country"),
    o("COMITY_IDENTITY_KEY", "node.identity_key"),
    o("COMITY_DATA_DIR", "node.data_dir"),
    o("COMITY_LISTEN", "node.listen"),
    o("COMITY_ADMIN_SOCKET", "node.admin_socket"),
    o("COMITY_METRICS_LISTEN", "node.metrics_listen"),
    o("COMITY_MAX_MESSAGE_BYTES", "limits.max_message_bytes"),
    o("COMITY_LOG_FORMAT", "log.format"),
];

/// Applies the set, non-empty variables to the raw file values and returns
/// which ones did. Empty means unset (compose files often pass `VAR=`).
pub(crate) fn apply(
    raw: &mut RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<EnvOverride>, ConfigError> {
    let mut applied = Vec::new();
    for ov in ENV_OVERRIDES {
        let Some(v) = env(ov.var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let n = &mut raw.node;
        match ov.var {
            "COMITY_NAME" => n.name = Some(v),
            "COMITY_COUNTRY" => n.country = Some(v),
            "COMITY_IDENTITY_KEY" => n.identity_key = Some(v),
            "COMITY_DATA_DIR" => n.data_dir = Some(v),
            "COMITY_LISTEN" => n.listen = Some(v),
            "COMITY_ADMIN_SOCKET" => n.admin_socket = Some(v),
            "COMITY_METRICS_LISTEN" => n.metrics_listen = Some(v),
            "COMITY_MAX_MESSAGE_BYTES" => {
                raw.limits.max_message_bytes = v.trim().parse().map_err(|_| {
                    invalid(
                        ov.var,
                        format!("{:?} is not a whole number of bytes", excerpt(&v)),
                        "set it to e.g. 4194304, or unset it to use the file's value",
                    )
                })?
            }
            "COMITY_LOG_FORMAT" => {
                raw.log.format = match v.trim() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => {
                        return Err(invalid(
                            ov.var,
                            format!("{:?} is not a log format", excerpt(&v)),
                            "set it to \"text\" or \"json\"",
                        ))
                    }
                }
            }
            _ => continue,
        }
        applied.push(*ov);
    }
    Ok(applied)
}

/// How an error names a key: with the variable that set it, if one did.
pub(crate) fn label(key: &str, overrides: &[EnvOverride]) -> String {
    match overrides.iter().find(|o| o.key == key) {
        Some(o) => format!("{key} (set by {})", o.var),
        None => key.to_string(),
    }
}

/// The process environment; a variable that is set but not UTF-8 is an
/// error rather than silently ignored.
pub(crate) fn check_process_env() -> Result<(), ConfigError> {
    for ov in ENV_OVERRIDES {
        if let Some(v) = std::env::var_os(ov.var) {
            if v.to_str().is_none() {
                return Err(invalid(
                    ov.var,
                    "is not valid UTF-8",
                    "set it to UTF-8 text, or unset it",
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}
