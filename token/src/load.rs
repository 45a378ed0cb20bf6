//! The node's keys from wherever its configuration says the identity key
//! is: the key file, or the token with the encryption key in a file.

use std::sync::Arc;

use comity_config::{Config, KeyFileIoError};
use comity_protocol::identity::ExternalSigner as _;
use comity_protocol::Identity;

use crate::{TokenError, TokenSigner};

/// Why the node's keys could not be loaded. Never holds key material or
/// the PIN.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileIoError),
    #[error("identity key on the token {uri}")]
    Token { uri: String, source: TokenError },
}

/// The node's keys, and the token when the identity key is on one.
pub struct LoadedKeys {
    pub identity: Identity,
    pub token: Option<Arc<TokenSigner>>,
}

pub fn load(config: &Config) -> Result<LoadedKeys, LoadError> {
    let key_file = &config.node.identity_key;
    let Some(token_key) = &config.node.identity_token else {
        return Ok(LoadedKeys {
            identity: comity_config::load_key_file(key_file)?,
            token: None,
        });
    };
    let failed = |source| LoadError::Token {
        uri: token_key.uri().to_string(),
        source,
    };
    // The encryption-key file names the identity in use: after an
    // identity rotation its key is the successor's, not the URI's.
    let id = comity_config::node_id_in_key_file(key_file)?;
    let token = match TokenSigner::open(token_key) {
        Ok(t) if t.node_id() == id => t,
        Ok(_) | Err(TokenError::NoKey { .. }) => {
            TokenSigner::open(&crate::successor_key(token_key, &id)).map_err(failed)?
        }
        Err(e) => return Err(failed(e)),
    };
    let identity = comity_config::load_key_file_with_signer(key_file, token.clone())?;
    Ok(LoadedKeys {
        identity,
        token: Some(token),
    })
}
