//! The STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) with
//! ChaCha20-Poly1305, as implemented by the `aead` crate's `StreamBE32`:
//! nonce = 7-byte prefix ‖ chunk index (u32 big-endian) ‖ last-chunk flag
//! (0x00, or 0x01 on the last chunk). This module only chooses the
//! parameters; the nonce is built by the crate.

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit};

use super::ContentKey;
use crate::domain;

/// Bytes a chunk grows by when sealed: the Poly1305 tag.
pub const TAG_BYTES: usize = 16;

/// A chunk cipher for one attachment.
pub(crate) struct ChunkCipher(StreamBE32<ChaCha20Poly1305>);

/// A chunk index beyond the 32-bit STREAM counter, or a failed tag.
#[derive(Debug)]
pub(crate) struct StreamFailure;

impl ChunkCipher {
    pub(crate) fn new(key: &ContentKey) -> Self {
        let aead = ChaCha20Poly1305::new(Key::from_slice(&key.key));
        ChunkCipher(StreamBE32::from_aead(aead, (&key.nonce_prefix).into()))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub(crate) fn seal(
        &self,
        index: u64,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), StreamFailure> {
        let position = u32::try_from(index).map_err(|_| StreamFailure)?;
        self.0
            .encrypt_in_place(position, last, domain::ATTACHMENT_CHUNK_AAD, buf)
            .map_err(|_| StreamFailure)
    }

    /// Checks the tag and decrypts `buf` in place, removing the tag.
    pub(crate) fn open(
        &self,
        index: u64,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), StreamFailure> {
        let position = u32::try_from(index).map_err(|_| StreamFailure)?;
        self.0
            .decrypt_in_place(position, last, domain::ATTACHMENT_CHUNK_AAD, buf)
            .map_err(|_| StreamFailure)
    }
}
