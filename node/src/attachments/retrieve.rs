//! Reading a stored attachment back as plaintext: every chunk decrypted
//! with the content key and checked again (tag, leaf hash, and at the end
//! the whole-file SHA-256), one chunk in memory.

use std::io::{self, Read};

use comity_protocol::attachment::{CheckedAttachment, Opener};

use super::error::AttachmentError;
use super::stored::StoredAttachment;

/// The verified plaintext of a stored attachment, as a `Read`. A chunk that
/// fails its checks ends the read with an `InvalidData` error, and the
/// whole-file digest is checked before the last bytes are returned, so
/// reading to the end without an error means every byte was verified.
pub struct PlaintextReader {
    stored: StoredAttachment,
    opener: Opener,
    chunk: Vec<u8>,
    at: usize,
}

impl std::fmt::Debug for PlaintextReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaintextReader")
            .field("path", &self.stored.path())
            .field("opener", &self.opener)
            .finish_non_exhaustive()
    }
}

impl PlaintextReader {
    /// `attachment` carries the manifest and the key; the file's own chunk
    /// table is checked against the signed root first.
    pub fn new(
        stored: StoredAttachment,
        attachment: &CheckedAttachment,
    ) -> Result<Self, AttachmentError> {
        let opener = stored.opener(attachment)?;
        Ok(PlaintextReader {
            stored,
            opener,
            chunk: Vec::new(),
            at: 0,
        })
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        let Some(index) = self.opener.next_chunk() else {
            return Ok(false);
        };
        let ciphertext = self
            .stored
            .read_chunk(index)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let opened = self
            .opener
            .open_chunk(index, ciphertext)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.chunk = opened.plaintext;
        self.at = 0;
        Ok(true)
    }
}

impl Read for PlaintextReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // An empty chunk (an empty file) is verified and yields nothing.
        while self.at == self.chunk.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
