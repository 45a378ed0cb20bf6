//! The node's attachment files: the sender's durable copy of each file it
//! sends and the receiver's partial and complete copies of each file it
//! receives, as files in the data directory (not in sled), with no network
//! code: the admin API and the transport drive them.
//!
//! Layout under `data/attachments/` (directories 0700, files 0600):
//! * `staging/RANDOM.part`: a copy-in under way; removed at start-up.
//! * `sent/RANDOM`: a sender's copy, renamed from staging once durable.
//! * `received/PEER/MESSAGE/N.{table,part,resume}`: a transfer under way;
//!   `N` is the attachment's index in the message, `PEER` and `MESSAGE` the
//!   hex of the peer's key and the message id. No name a peer chose is
//!   ever part of a path.
//! * `received/PEER/MESSAGE/N`: a complete attachment.
//!
//! Beside the files: [`Progress`], in memory, how far each transfer under
//! way has got (for listings and metrics), and [`AttachmentDir::incoming_state`],
//! a read-only look at a received attachment that is safe while the
//! transfer writes it.
//!
//! A stored attachment, sent or received, is one file ([`stored`]): the
//! ciphertext chunks end to end, then the chunk table. Both sides keep
//! ciphertext, so a file is encrypted once (while it is copied in) and
//! decrypted only when the operator retrieves it, every chunk checked again.
//!
//! Where the content keys live: in the store's `attachments` tree, beside
//! the message records (see `crate::store` and its `HeldAttachment`), as
//! the codec encodes `SealedAttachment`, which has no serde form, so it
//! cannot reach JSON, logs or the audit log. Not in the envelope alone: the
//! sender cannot open its own envelope (it is sealed to the recipient) and
//! must seal again after a key rotation, a resend, or when the peer's key
//! was not known at acceptance; the receiver's encryption key rotates. Not
//! beside the ciphertext here: the store already holds the plaintext bodies
//! under the same protection, and a copy of this directory alone then
//! reveals nothing. Backups hold both (see `crate::backup`).

mod claims;
mod error;
mod layout;
mod peek;
mod progress;
mod receive;
mod resume;
mod retrieve;
mod save;
mod send;
mod space;
mod stored;

pub use claims::{ClaimedSpace, UploadClaim, UploadClaims};
pub use error::AttachmentError;
pub use layout::{AttachmentDir, IncomingKey, ParseStoredIdError, StoredId};
pub use peek::IncomingState;
pub use progress::{Direction, Progress, TransferCounts, TransferKey, TransferProgress};
pub use receive::{Accepted, Checkpoint, Incoming, NotStarted, Received, Receiving};
pub use retrieve::PlaintextReader;
pub use save::save_new_file;
pub use send::{check_copy_in, CopiedIn};
pub use space::{ensure_room, stored_len, SpaceSource};
pub use stored::{checked_again, Geometry, StoredAttachment};

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests;
