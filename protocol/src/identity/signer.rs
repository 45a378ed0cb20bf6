//! Who holds the identity key.
//!
//! Usually the node's key file (a seed in memory); on a hardware token the
//! private key never leaves it and every signature is the token's. Either
//! way the rest of the protocol only asks for `sign(input)`.

use std::sync::Arc;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

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
    /// A key that signs elsewhere and cannot be exported; every signature
    /// it returns is checked under its public key before use.
    External(Arc<dyn ExternalSigner>, VerifyingKey),
}

impl IdentityKey {
    pub(crate) fn external(signer: Arc<dyn ExternalSigner>) -> Result<IdentityKey, SignError> {
        let public = signer
            .node_id()
            .verifying_key()
            .map_err(|_| SignError::BadSignature)?;
        Ok(IdentityKey::External(signer, public))
    }

    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        match self {
            IdentityKey::Seed(k) => k.verifying_key(),
            IdentityKey::External(_, public) => *public,
        }
    }

    pub(crate) fn node_id(&self) -> NodeId {
        NodeId(self.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignError> {
        match self {
            IdentityKey::Seed(k) => Ok(k.sign(input).to_bytes()),
            // A wrong signature would be stored (a receipt, an envelope, a
            // checkpoint) and refused by peers for good: never let one out.
            IdentityKey::External(s, public) => {
                let signature = s.sign(input)?;
                if !super::verify_signature(public, input, &signature) {
                    return Err(SignError::BadSignature);
                }
                Ok(signature)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::time::Timestamp;

    /// A token that answers with someone else's signatures.
    struct Wrong {
        claimed: SigningKey,
        actual: SigningKey,
    }

    impl ExternalSigner for Wrong {
        fn node_id(&self) -> NodeId {
            NodeId(self.claimed.verifying_key().to_bytes())
        }
        fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignError> {
            Ok(self.actual.sign(input).to_bytes())
        }
        fn describe(&self) -> String {
            "a wrong token".into()
        }
    }

    #[test]
    fn a_signature_that_does_not_verify_never_leaves() {
        let wrong = Arc::new(Wrong {
            claimed: SigningKey::from_bytes(&[1; 32]),
            actual: SigningKey::from_bytes(&[2; 32]),
        });
        assert_eq!(
            Identity::with_external_key(wrong.clone(), &[3; 32], Timestamp(0)).unwrap_err(),
            SignError::BadSignature
        );
        let key = IdentityKey::external(wrong).unwrap();
        assert_eq!(key.sign(b"x").unwrap_err(), SignError::BadSignature);
    }
}
