//! Helpers for the tests of this module.

use std::cell::RefCell;
use std::collections::VecDeque;

use comity_protocol::attachment::{
    check_attachments, AttachmentLimits, CheckedAttachment, SealedAttachment,
};
use comity_protocol::message::MessageKind;
use comity_protocol::{MessageId, NodeId};

use super::space::SpaceSource;
use super::{AttachmentDir, CopiedIn, IncomingKey};
use crate::disk::Space;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// Free space that is plenty, or a sequence of figures (the last repeats).
pub struct FixedSpace(RefCell<VecDeque<u64>>, u64);

impl FixedSpace {
    pub fn plenty() -> Self {
        Self::free(&[u64::MAX / 4])
    }

    /// Successive measurements of free bytes; the reserve is 1 MiB.
    pub fn free(seq: &[u64]) -> Self {
        FixedSpace(RefCell::new(seq.iter().copied().collect()), MIB)
    }
}

impl SpaceSource for FixedSpace {
    fn measure(&self) -> std::io::Result<Space> {
        let mut q = self.0.borrow_mut();
        let free = if q.len() > 1 {
            q.pop_front().unwrap_or(0)
        } else {
            q.front().copied().unwrap_or(0)
        };
        Ok(Space {
            free_bytes: free,
            total_bytes: u64::MAX / 2,
            reserve_bytes: self.1,
        })
    }
}

/// `n` bytes that differ from chunk to chunk.
pub fn data(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 13)) as u8 ^ seed)
        .collect()
}

pub fn checked(sealed: &SealedAttachment) -> CheckedAttachment {
    let mut v = check_attachments(
        MessageKind::Request,
        vec![sealed.clone()],
        &AttachmentLimits::default(),
    )
    .expect("a sealer's manifest passes");
    v.remove(0)
}

pub fn copy(dir: &AttachmentDir, bytes: &[u8]) -> CopiedIn {
    dir.copy_in(
        &FixedSpace::plenty(),
        &AttachmentLimits::default(),
        "evidence.bin",
        "application/octet-stream",
        bytes.len() as u64,
        bytes,
    )
    .expect("copy-in")
}

pub fn key(index: usize) -> IncomingKey {
    IncomingKey {
        peer: NodeId([7; 32]),
        message: MessageId([9; 16]),
        index,
    }
}
