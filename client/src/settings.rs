//! Typed changes to a node's configuration file: each option names one key
//! of the schema and is written into the file's text with `toml_edit`, so
//! that the comments and layout around it stay as they were. The result is
//! then loaded with [`comity_config::Config::from_toml_str`]: an option the
//! schema does not know, or a value it refuses, is an error, never a change
//! that silently did not happen.

use std::net::SocketAddr;
use std::path::Path;

use comity_config::{Config, ConfigError};
use toml_edit::{DocumentMut, Item, Table};

/// Options that differ from what the file says; `None` leaves a key as it
/// is. The defaults of every key are in `config/comity.example.toml`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `[node] identity_key` as a `pkcs11:` URI: the identity key is made
    /// on that token (see [`crate::init::create_node`]).
    pub identity_token: Option<String>,
    /// `[node] metrics_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[limits] max_message_bytes`.
    pub max_message_bytes: Option<u32>,
    /// `[limits] handshake_timeout_secs`.
    pub handshake_timeout_secs: Option<u32>,
    /// `[limits] idle_timeout_secs`.
    pub idle_timeout_secs: Option<u32>,
    /// `[limits] delivery_window`.
    pub delivery_window: Option<u32>,
    /// `[limits] disk_reserve_mib`.
    pub disk_reserve_mib: Option<u32>,
    /// `[limits] disk_reserve_percent`.
    pub disk_reserve_percent: Option<u32>,
    /// `[limits] max_attachment_bytes`.
    pub max_attachment_bytes: Option<u64>,
    /// `[limits] max_message_attachment_bytes`.
    pub max_message_attachment_bytes: Option<u64>,
    /// `[limits] max_attachments_per_message`.
    pub max_attachments_per_message: Option<u32>,
    /// `[limits] staged_attachment_secs`.
    pub staged_attachment_secs: Option<u32>,
    /// `[retry] initial_backoff_ms`.
    pub initial_backoff_ms: Option<u32>,
    /// `[retry] max_backoff_secs`.
    pub max_backoff_secs: Option<u32>,
    /// `[log] level` (a `tracing` filter; `COMITY_LOG` in the daemon's
    /// environment takes precedence).
    pub log_level: Option<String>,
    /// `[audit] checkpoint_entries`.
    pub checkpoint_entries: Option<u32>,
    /// `[audit] checkpoint_interval_secs`.
    pub checkpoint_interval_secs: Option<u32>,
    /// `[audit] enabled`. `false` exists only to measure what the audit
    /// log costs: the daemon then needs `COMITY_ALLOW_AUDIT_OFF=1`, which
    /// [`crate::local::LocalNode`] sets.
    pub audit_enabled: Option<bool>,
    /// `[keys] peer_rotation_notice_hours`.
    pub peer_rotation_notice_hours: Option<u32>,
}

impl Settings {
    /// Whether the daemon must be started with `COMITY_ALLOW_AUDIT_OFF=1`.
    pub fn audit_off(&self) -> bool {
        self.audit_enabled == Some(false)
    }

    /// `text` with every option that is set written into it (keys that are
    /// absent, or only in comments, are added to their table). Not
    /// validated: see [`Settings::apply_checked`].
    pub fn apply(&self, text: &str) -> Result<String, ConfigError> {
        let mut doc: DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| ConfigError::Syntax {
                    message: e.to_string().trim_end().to_string(),
                })?;
        let int = |v: u32| toml_edit::value(i64::from(v));
        // TOML integers are i64: a larger value is written as the largest.
        let big = |v: u64| toml_edit::value(i64::try_from(v).unwrap_or(i64::MAX));
        let edits: [(&str, &str, Option<Item>); 19] = [
            (
                "node",
                "identity_key",
                self.identity_token
                    .as_ref()
                    .map(|u| toml_edit::value(u.as_str())),
            ),
            (
                "node",
                "metrics_listen",
                self.metrics_listen.map(|a| toml_edit::value(a.to_string())),
            ),
            (
                "limits",
                "max_message_bytes",
                self.max_message_bytes.map(int),
            ),
            (
                "limits",
                "handshake_timeout_secs",
                self.handshake_timeout_secs.map(int),
            ),
            (
                "limits",
                "idle_timeout_secs",
                self.idle_timeout_secs.map(int),
            ),
            ("limits", "delivery_window", self.delivery_window.map(int)),
            ("limits", "disk_reserve_mib", self.disk_reserve_mib.map(int)),
            (
                "limits",
                "disk_reserve_percent",
                self.disk_reserve_percent.map(int),
            ),
            (
                "limits",
                "max_attachment_bytes",
                self.max_attachment_bytes.map(big),
            ),
            (
                "limits",
                "max_message_attachment_bytes",
                self.max_message_attachment_bytes.map(big),
            ),
            (
                "limits",
                "max_attachments_per_message",
                self.max_attachments_per_message.map(int),
            ),
            (
                "limits",
                "staged_attachment_secs",
                self.staged_attachment_secs.map(int),
            ),
            (
                "retry",
                "initial_backoff_ms",
                self.initial_backoff_ms.map(int),
            ),
            ("retry", "max_backoff_secs", self.max_backoff_secs.map(int)),
            (
                "log",
                "level",
                self.log_level.as_deref().map(toml_edit::value),
            ),
            (
                "audit",
                "checkpoint_entries",
                self.checkpoint_entries.map(int),
            ),
            (
                "audit",
                "checkpoint_interval_secs",
                self.checkpoint_interval_secs.map(int),
            ),
            ("audit", "enabled", self.audit_enabled.map(toml_edit::value)),
            (
                "keys",
                "peer_rotation_notice_hours",
                self.peer_rotation_notice_hours.map(int),
            ),
        ];
        for (section, key, item) in edits {
            if let Some(item) = item {
                set(table(&mut doc, section)?, key, item);
            }
        }
        Ok(doc.to_string())
    }

    /// [`Settings::apply`], then the result loaded as the daemon would
    /// load it from a file in `base_dir` with the environment `env`
    /// (standing for `std::env::var`): the new text and what it means.
    pub fn apply_checked(
        &self,
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Config), ConfigError> {
        let text = self.apply(text)?;
        let config = Config::from_toml_str(&text, base_dir, env)?;
        Ok((text, config))
    }
}

/// Sets `key` in `table`. An existing value is replaced in place, so that
/// the comments above it and after it stay (`Table::insert` would reset
/// the key's formatting, and with it the comment block documenting it).
fn set(table: &mut Table, key: &str, item: Item) {
    match (table.get_mut(key), item) {
        (Some(Item::Value(old)), Item::Value(mut new)) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        (_, item) => {
            table.insert(key, item);
        }
    }
}

/// The top-level table `name`, created at the end of the document if the
/// file has none.
fn table<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut Table, ConfigError> {
    doc.entry(name)
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .ok_or_else(|| ConfigError::Invalid {
            key: name.to_string(),
            problem: "is not a table".into(),
            fix: format!("write it as a [{name}] section"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use comity_config::{commented_config, NodeSection};

    fn template() -> String {
        let node = NodeSection::new(
            "Ministry of Justice of Arcadia",
            "AR".parse().unwrap(),
            "127.0.0.1:7401".parse().unwrap(),
        );
        commented_config(&node).unwrap()
    }

    fn everything() -> Settings {
        Settings {
            identity_token: None,
            metrics_listen: Some("127.0.0.1:9401".parse().unwrap()),
            max_message_bytes: Some(65_536),
            handshake_timeout_secs: Some(3),
            idle_timeout_secs: Some(5),
            delivery_window: Some(64),
            disk_reserve_mib: Some(8),
            disk_reserve_percent: Some(0),
            max_attachment_bytes: Some(1 << 20),
            max_message_attachment_bytes: Some(3 << 20),
            max_attachments_per_message: Some(3),
            staged_attachment_secs: Some(2),
            initial_backoff_ms: Some(100),
            max_backoff_secs: Some(2),
            log_level: Some("comity_node=debug,info".into()),
            checkpoint_entries: Some(10),
            checkpoint_interval_secs: Some(1),
            audit_enabled: Some(false),
            peer_rotation_notice_hours: Some(0),
        }
    }

    #[test]
    fn settings_written_into_the_template_load_back_and_keep_its_comments() {
        let s = everything();
        let allow = |k: &str| (k == "COMITY_ALLOW_AUDIT_OFF").then(|| "1".to_string());
        let (text, c) = s
            .apply_checked(&template(), Path::new("/srv/ar"), &allow)
            .unwrap();
        assert_eq!(c.node.metrics_listen, s.metrics_listen);
        assert_eq!(c.limits.max_message_bytes, 65_536);
        assert_eq!(c.limits.handshake_timeout_secs, 3);
        assert_eq!(c.limits.idle_timeout_secs, 5);
        assert_eq!(c.limits.delivery_window, 64);
        assert_eq!(c.limits.disk_reserve_mib, 8);
        assert_eq!(c.limits.disk_reserve_percent, 0);
        assert_eq!(c.limits.max_attachment_bytes, 1 << 20);
        assert_eq!(c.limits.max_message_attachment_bytes, 3 << 20);
        assert_eq!(c.limits.max_attachments_per_message, 3);
        assert_eq!(c.limits.staged_attachment_secs, 2);
        assert_eq!(c.retry.initial_backoff_ms, 100);
        assert_eq!(c.retry.max_backoff_secs, 2);
        assert_eq!(c.log.level, "comity_node=debug,info");
        assert_eq!(c.audit.checkpoint_entries, 10);
        assert_eq!(c.audit.checkpoint_interval_secs, 1);
        assert!(!c.audit.enabled);
        assert_eq!(c.keys.peer_rotation_notice_hours, 0);
        // The rest is the template's, comments included.
        assert_eq!(c.node.name, "Ministry of Justice of Arcadia");
        assert_eq!(c.node.listen.port(), 7401);
        assert_eq!(c.limits.max_streams_per_peer, 16);
        assert!(text.contains("# Human name of this central authority"));
        assert!(text.contains("# Sign a checkpoint once this many entries"));
        // Nothing set: the text is untouched.
        assert_eq!(Settings::default().apply(&template()).unwrap(), template());
    }

    #[test]
    fn tables_missing_from_the_file_are_created() {
        let minimal = "[node]\nname = \"N\"\ncountry = \"AR\"\nlisten = \"127.0.0.1:7401\"\n";
        let s = Settings {
            checkpoint_interval_secs: Some(1),
            initial_backoff_ms: Some(100),
            ..Settings::default()
        };
        let (_, c) = s
            .apply_checked(minimal, Path::new("/srv/ar"), &|_| None)
            .unwrap();
        assert_eq!(c.audit.checkpoint_interval_secs, 1);
        assert_eq!(c.retry.initial_backoff_ms, 100);
    }

    #[test]
    fn values_the_schema_refuses_are_errors_naming_the_key() {
        let refused = |s: Settings, key: &str| {
            let e = s
                .apply_checked(&template(), Path::new("/srv/ar"), &|_| None)
                .unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        };
        refused(
            Settings {
                checkpoint_interval_secs: Some(0),
                ..Settings::default()
            },
            "audit.checkpoint_interval_secs",
        );
        refused(
            Settings {
                delivery_window: Some(100_000),
                ..Settings::default()
            },
            "limits.delivery_window",
        );
        // Audit off without the variable that allows it.
        refused(
            Settings {
                audit_enabled: Some(false),
                ..Settings::default()
            },
            "audit.enabled",
        );
        // A section of the wrong shape is not silently replaced.
        let e = Settings {
            idle_timeout_secs: Some(5),
            ..Settings::default()
        }
        .apply("limits = 3\n")
        .unwrap_err();
        assert_eq!(e.key(), Some("limits"), "{e}");
    }
}
