//! What the sender signs about an attachment, and the key to its content.

use std::fmt;

use bincode::{Decode, Encode};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::digest::Digest;

/// One attachment as described in the sealed message. Everything here is
/// signed with the body and may be shown to third parties (origin proof,
/// audit log, `comity show`); the key is not here but in [`ContentKey`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentManifest {
    /// The sender's file name, for display only: never used as a path.
    pub name: String,
    /// A media type such as `application/pdf`, lowercase, no parameters.
    pub media_type: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Bytes per chunk (see [`super::chunk_size_for`]).
    pub chunk_size: u32,
    /// RFC 6962 Merkle tree hash over the plaintext chunks
    /// (leaf `SHA-256(0x00 ‖ chunk)`, node `SHA-256(0x01 ‖ l ‖ r)`).
    pub tree_root: Digest,
    /// SHA-256 of the whole plaintext: what a forensic examiner compares.
    pub sha256: Digest,
}

/// The random key of one attachment's content and the STREAM nonce prefix.
/// Carried inside the sealed message (so re-sealing never re-encrypts the
/// content), outside the body commitment (so an origin proof need not
/// reveal it). Never logged: `Debug` prints no key bytes.
#[derive(Clone, PartialEq, Eq, Encode, Decode)]
pub struct ContentKey {
    pub(crate) key: [u8; 32],
    pub(crate) nonce_prefix: [u8; 7],
}

impl ContentKey {
    /// Bytes of one key on the wire: key, then nonce prefix.
    pub const ENCODED_LEN: usize = 39;

    /// A fresh key and nonce prefix. Each attachment gets its own, which is
    /// what makes a chunk of one attachment fail the tag of any other.
    pub fn generate<R: CryptoRng + RngCore>(rng: &mut R) -> Self {
        let mut key = [0u8; 32];
        let mut nonce_prefix = [0u8; 7];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut nonce_prefix);
        ContentKey { key, nonce_prefix }
    }

    /// For known-answer tests and independent verifiers: the raw key.
    pub fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    pub fn nonce_prefix(&self) -> &[u8; 7] {
        &self.nonce_prefix
    }
}

impl Drop for ContentKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

/// A sealed attachment's manifest and key: what the sender's node puts into
/// the message it seals ([`crate::envelope::seal_with_attachments`]) and
/// keeps (encoded with [`crate::codec`]) to seal it again later. It has no
/// serde form, so the key cannot end up in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SealedAttachment {
    pub manifest: AttachmentManifest,
    pub key: ContentKey,
}
