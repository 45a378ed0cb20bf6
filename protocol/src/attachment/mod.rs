//! Digital-evidence attachments: what is signed about them, how they are
//! chunked, hashed and encrypted, and the sans-IO state machines that seal
//! them on the sender and open them on the receiver.
//!
//! An attachment travels in two parts:
//! * its [`AttachmentManifest`] (name, media type, size, chunk size, chunk
//!   tree root, whole-file SHA-256) inside the sealed message, after the
//!   body, so the sender's signature, the origin proof and the receipt cover
//!   it; and its [`ContentKey`] beside it in the sealed message but outside
//!   the body commitment, so an origin proof or an audit entry can show the
//!   manifest without the key;
//! * its content, as a sequence of chunks encrypted with the STREAM
//!   construction (ChaCha20-Poly1305, 32-bit big-endian counter and a
//!   last-chunk flag in the nonce) under the random key of that attachment
//!   alone, on streams of their own.
//!
//! The life of an attachment, in the order the types enforce:
//! 1. [`Sealer`] (sender): plaintext chunks in, ciphertext chunks out, the
//!    tree and the whole-file digest computed on the way → [`SealedAttachment`].
//! 2. [`check_attachments`] (receiver, on opening the message) →
//!    [`CheckedAttachment`]: name, media type, sizes against
//!    [`AttachmentLimits`], before any data.
//! 3. [`ChunkTable::verify`]: the leaf hashes, checked against the signed
//!    root, before any data.
//! 4. [`Opener`]: ciphertext chunk `i` in, verified plaintext out (tag, then
//!    leaf hash), the whole-file digest checked at the last chunk; it names
//!    the next chunk it needs, which is where a transfer resumes.
//!
//! The byte layout is specified in `docs/protocol.md` §11.

mod check;
mod chunking;
mod error;
mod limits;
mod manifest;
mod media_type;
mod name;
mod opener;
mod sealer;
mod stream;
mod table;
mod whole_file;

pub use check::{check_attachments, check_manifests, CheckedAttachment};
pub use chunking::{
    chunk_count, chunk_len, chunk_size_for, LARGE_CHUNK_BYTES, SMALL_CHUNK_BYTES,
    SMALL_CHUNK_MAX_SIZE,
};
pub use error::{ChunkError, InvalidAttachment, MediaTypeRule, NameRule};
pub use limits::AttachmentLimits;
pub use manifest::{AttachmentManifest, ContentKey, SealedAttachment};
pub use media_type::check_media_type;
pub use name::{check_name, escaped};
pub use opener::{Opened, Opener, ResumePoint};
pub use sealer::{SealedChunk, Sealer};
pub use stream::TAG_BYTES;
pub use table::{chunk_leaf_hash, ChunkTable};
pub use whole_file::WholeFileDigest;

#[cfg(test)]
mod tests;
