//! A new node on disk, ready for `comityd --config`: what `comity init`
//! writes, and the only code that writes it (the demo, the end-to-end tests
//! and the benchmarks make their nodes here too, with [`Settings`]).
//!
//! The directory holds the commented configuration (the example file with
//! this node's values filled in), the secret key file (0600, in a 0700
//! directory) and the empty data directory (0700).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use comity_config::{commented_config, write_new_key_file, Config, CountryCode, NodeSection};
use comity_protocol::{Identity, NodeId, Timestamp};

use crate::settings::Settings;
use crate::LocalError;

/// The configuration file's name in a node directory.
pub const CONFIG_FILE: &str = "comity.toml";

/// What [`create_node`] made.
#[derive(Clone, Debug)]
pub struct NewNode {
    pub id: NodeId,
    pub config_path: PathBuf,
    pub key_path: PathBuf,
    /// The configuration as the daemon will load it (with the environment
    /// it was checked with).
    pub config: Config,
}

/// A new node in `dir` (created if missing; it must not hold a node yet)
/// named `name`, of `country`, listening on `listen`, with `settings`
/// written into its configuration. The configuration is loaded back before
/// anything is written, with `env` standing for the daemon's environment,
/// so that a node that would not start is not created.
pub fn create_node(
    dir: &Path,
    name: &str,
    country: &str,
    listen: SocketAddr,
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<NewNode, LocalError> {
    let country: CountryCode = country.parse()?;
    let node = NodeSection::new(name, country, listen);
    let config_path = dir.join(CONFIG_FILE);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LocalError::Io {
            action,
            path,
            source,
        }
    };
    let base_dir = std::path::absolute(dir).map_err(io("resolve", dir))?;
    let template = commented_config(&node).map_err(|source| LocalError::Config {
        path: config_path.clone(),
        source,
    })?;
    let (text, config) = settings
        .apply_checked(&template, &base_dir, env)
        .map_err(|source| LocalError::Config {
            path: config_path.clone(),
            source,
        })?;
    // Where the daemon will look for it: the key file, or a token node's
    // encryption-key file (the configuration decides which).
    let key_path = config.node.identity_key.clone();
    for existing in [&config_path, &key_path] {
        if existing.exists() {
            return Err(LocalError::Exists {
                path: existing.clone(),
                dir: dir.to_path_buf(),
            });
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join(&node.data_dir))
        .map_err(io("create", dir))?;

    let identity = match &config.node.identity_token {
        None => Identity::generate(Timestamp::now()),
        Some(token) => on_token(token)?,
    };
    if let Err(e) = write_new_key_file(&key_path, &identity) {
        // A key on the token that no node uses would block the retry
        // (`init` refuses a label the token holds).
        if let Some(token) = &config.node.identity_token {
            let _ = comity_token::destroy_unused(token);
        }
        return Err(e.into());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&config_path)
        .map_err(io("create", &config_path))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("write", &config_path))?;
    Ok(NewNode {
        id: identity.id(),
        config_path,
        key_path,
        config,
    })
}

/// A new identity key made on `token` (never in this process's memory)
/// and a new encryption key certified by it.
fn on_token(token: &comity_config::TokenKey) -> Result<Identity, LocalError> {
    let failed = |source| LocalError::Token {
        uri: token.uri().to_string(),
        source,
    };
    comity_token::generate(token).map_err(failed)?;
    let made = comity_token::TokenSigner::open(token)
        .and_then(|signer| {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed[..]);
            Ok(Identity::with_external_key(
                signer,
                &seed,
                Timestamp::now(),
            )?)
        })
        .map_err(failed);
    if made.is_err() {
        // Made but not usable: not left on the token to block a retry.
        let _ = comity_token::destroy_unused(token);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_node_is_private_and_refuses_to_be_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ar");
        let s = Settings {
            checkpoint_interval_secs: Some(1),
            ..Settings::default()
        };
        let listen = "127.0.0.1:7401".parse().unwrap();
        let n = create_node(&dir, "Arcadia", "ar", listen, &s, &|_| None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&n.key_path), 0o600);
        assert_eq!(mode(&dir.join("data")), 0o700);
        assert_eq!(mode(&n.config_path), 0o640);
        let loaded = Config::load(&n.config_path).unwrap();
        assert_eq!(loaded.audit.checkpoint_interval_secs, 1);
        assert_eq!(loaded.node.country.as_str(), "AR");
        assert_eq!(
            comity_config::load_key_file(&n.key_path).unwrap().id(),
            n.id
        );
        let again = create_node(&dir, "Arcadia", "AR", listen, &s, &|_| None).unwrap_err();
        assert!(
            again.to_string().contains("refusing to overwrite"),
            "{again}"
        );
        // A node that would not load is not created at all.
        let other = root.path().join("bo");
        let bad = Settings {
            checkpoint_interval_secs: Some(0),
            ..Settings::default()
        };
        assert!(create_node(&other, "Borduria", "BO", listen, &bad, &|_| None).is_err());
        assert!(!other.exists());
    }
}
