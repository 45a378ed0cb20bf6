//! The store's format version, kept in sled's default tree and checked at
//! open: a store written by a newer `comityd` is refused (it may hold
//! records this one would misread or drop), an older one is brought up to
//! date by the steps below, in order, before anything else reads it.
//!
//! Every change to what the store keeps adds a version here, a step from
//! the one before, and a fixture store of the old version that a test
//! opens with the current code.

/// The format this code writes.
///
/// * 1: messages, business history, rejections, peer keys, audit records.
/// * 2: idempotency keys and resend links (trees a format-1 store does
///   not have; opened empty). An older build would ignore them: it is
///   refused a format-2 store.
/// * 3: the listing of message summaries and the counts beside it (built
///   from the messages at the first open, see `listing`). An older build
///   would change messages without their summaries: it is refused a
///   format-3 store.
/// * 4: in the `audit` tree, the roots of the peers' checkpoints this node
///   cosigned (the last 4,096 per peer) and the last restoration statement
///   of each peer it accepted (keys that a format-3 store does not have:
///   none at first). An older build would cosign without keeping the
///   roots, so a peer's honest restore could no longer be checked exactly,
///   and would forget the accepted restorations, so a second rollback
///   would pass: it is refused a format-4 store.
/// * 5: the `attachments` tree (manifests and content keys of messages'
///   attachments, and files copied in but not yet attached; a format-4
///   store has none). An older build would send and receive such messages
///   without their attachments: it is refused a format-5 store.
pub const CURRENT: u32 = 5;

const KEY: &[u8] = b"comity-store-format";

/// What opening found, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new, empty store, marked with [`CURRENT`].
    Created,
    /// Already at [`CURRENT`].
    Current,
    /// Brought up from this version.
    Migrated { from: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(
        "the store was written by a newer comityd (store format {found}; this one reads up \
         to {CURRENT}): run that version again, or restore a backup made with this one"
    )]
    Newer { found: u32 },
    #[error("the store's format version record is damaged ({len} bytes)")]
    Damaged { len: usize },
    #[error(transparent)]
    Sled(#[from] sled::Error),
}

/// Checks, and if needed migrates and marks, the store in `db`.
pub fn check(db: &sled::Db) -> Result<Opened, VersionError> {
    let found = match db.get(KEY)? {
        Some(v) => {
            let bytes = <[u8; 4]>::try_from(v.as_ref())
                .map_err(|_| VersionError::Damaged { len: v.len() })?;
            Some(u32::from_be_bytes(bytes))
        }
        None => None,
    };
    let opened = match found {
        Some(v) if v > CURRENT => return Err(VersionError::Newer { found: v }),
        Some(CURRENT) => return Ok(Opened::Current),
        Some(v) => Opened::Migrated { from: v },
        // No mark: either new, or written before versions existed (format
        // 0, which is format 1 without this record).
        None if db.tree_names().len() <= 1 && db.is_empty() => Opened::Created,
        None => Opened::Migrated { from: 0 },
    };
    // 0 → 1 only adds the mark; 1 → 2 adds trees sled creates empty; 2 → 3
    // adds the listing, which builds itself when it finds no mark of its own;
    // 3 → 4 adds keys that start empty; 4 → 5 a tree that starts empty.
    db.insert(KEY, &CURRENT.to_be_bytes())?;
    Ok(opened)
}

#[cfg(test)]
pub(super) fn set_for_test(db: &sled::Db, v: u32) {
    db.insert(KEY, &v.to_be_bytes()).expect("test store");
}
