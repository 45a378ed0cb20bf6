//! Who holds the identity key.
//!
//! Usually the node's key file (a seed in memory); on a hardware token the
//! private key never leaves it and every signature is the token's. Either
//! way the rest of the protocol only asks for `sign(input)`.

use std::sync::Arc;

use ed25519_dalek::{Signer as _, SigningKey};

use super::NodeId;

/// Why the identity key did not sign. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The token refused or could not be reached (removed, logged out, …).
    #[error("the identity key's token did not sign: {0}")]
    Token(String),
    /// The token answered with a signature that does not verify under the
    /// node id: never sent, since a peer would refuse it anyway.
    #[error(
        "the identity key's token returned a signature that does not verify under the node id"
    )]
    BadSignature,
}

/// An Ed25519 key held outside this process's memory (a PKCS#11 token).
/// Implementations sign the whole input with pure Ed25519 (RFC 8032).
pub trait ExternalSigner: Send + Sync {
    /// The public key: the node id.
    fn node_id(&self) -> NodeId;
    /// A signature of `input`, or why there is none.
    fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignError>;
    /// Where the key is, for operators ("pkcs11 token \"comity\" …"); no secrets.
    fn describe(&self) -> String;
}

/// The identity key of an [`super::Identity`].
#[derive(Clone)]
pub(crate) enum IdentityKey {
    /// A seed from the key file, in (zeroized-on-drop) memory.
    Seed(Arc<SigningKey>),
    /// A key that signs elsewhere and cannot be exported.
    External(Arc<dyn ExternalSigner>),
}

impl IdentityKey {
    pub(crate) fn node_id(&self) -> NodeId {
        match self {
            IdentityKey::Seed(k) => NodeId(k.verifying_key().to_bytes()),
            IdentityKey::External(s) => s.node_id(),
        }
    }

    pub(crate) fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignError> {
        match self {
            IdentityKey::Seed(k) => Ok(k.sign(input).to_bytes()),
            IdentityKey::External(s) => s.sign(input),
        }
    }
}
