//! The receiver's durable resume point: the next chunk it needs and the
//! whole-file SHA-256 midstate before it, bound to the attachment's tree
//! root. 80 bytes: magic ‖ root ‖ next chunk (u64 BE) ‖ 8 × u32 BE.
//!
//! Written to a temporary file, synced, then renamed over the last one, so
//! a reader sees an old point or the new one, never a torn one. The
//! directory is not synced after each rename: a rename lost in a crash
//! leaves an older point, which is still consistent (see `receive`).

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use comity_protocol::attachment::ResumePoint;
use comity_protocol::Digest;

use super::error::{io_at, AttachmentError};
use super::layout::{create_new_private, remove_if_present};

const MAGIC: &[u8; 8] = b"CMTYRSM1";
const LEN: usize = 8 + 32 + 8 + 32;

pub(super) fn encode(root: &Digest, point: &ResumePoint) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..40].copy_from_slice(&root.0);
    out[40..48].copy_from_slice(&point.next_chunk.to_be_bytes());
    for (o, w) in out[48..].chunks_exact_mut(4).zip(point.digest_state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The point in `bytes`, if they are one for the attachment of `root`.
pub(super) fn decode(root: &Digest, bytes: &[u8]) -> Option<ResumePoint> {
    if bytes.len() != LEN || &bytes[..8] != MAGIC || bytes[8..40] != root.0 {
        return None;
    }
    let mut next = [0u8; 8];
    next.copy_from_slice(&bytes[40..48]);
    let mut digest_state = [0u32; 8];
    for (w, b) in digest_state.iter_mut().zip(bytes[48..].chunks_exact(4)) {
        let mut word = [0u8; 4];
        word.copy_from_slice(b);
        *w = u32::from_be_bytes(word);
    }
    Some(ResumePoint {
        next_chunk: u64::from_be_bytes(next),
        digest_state,
    })
}

/// Writes `point` to `tmp` and syncs it; [`commit`] then makes it the
/// resume point.
pub(super) fn write(tmp: &Path, root: &Digest, point: &ResumePoint) -> Result<(), AttachmentError> {
    remove_if_present(tmp)?;
    let mut f = create_new_private(tmp)?;
    f.write_all(&encode(root, point))
        .map_err(io_at("writing", tmp))?;
    f.sync_all().map_err(io_at("syncing", tmp))
}

/// Renames the written point over the last one.
pub(super) fn commit(tmp: &Path, point: &Path) -> Result<(), AttachmentError> {
    fs::rename(tmp, point).map_err(io_at("renaming", tmp))
}

/// The stored point, or `None` if there is none or it is not this
/// attachment's (then the transfer starts again from chunk 0).
pub(super) fn load(path: &Path, root: &Digest) -> Result<Option<ResumePoint>, AttachmentError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("opening", path)(e)),
    };
    // One byte more than a point: a longer file is not one.
    let mut bytes = Vec::with_capacity(LEN + 1);
    file.take(LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at("reading", path))?;
    Ok(decode(root, &bytes))
}
