//! How much a peer may attach to one message.

/// Limits on the attachments of one message. The node fills them from its
/// configuration; a manifest beyond them is refused when the message is
/// opened, before any attachment data is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Largest single attachment, in bytes of plaintext.
    pub max_attachment_bytes: u64,
    /// Largest sum of the sizes of one message's attachments.
    pub max_message_bytes: u64,
    /// Most attachments on one message.
    pub max_attachments: usize,
}

impl AttachmentLimits {
    /// Hard ceiling on attachments per message, whatever the configuration:
    /// it bounds the work of checking one manifest list.
    pub const MAX_ATTACHMENTS_CEILING: usize = 1024;

    /// The widest limits the protocol allows: every syntactic rule, no
    /// policy. For a third party verifying an origin proof, who does not
    /// know the recipient's configuration.
    /// The largest attachment the protocol carries: 256 GiB.
    pub const MAX_ATTACHMENT_CEILING: u64 = (1u64 << 18) * super::LARGE_CHUNK_BYTES as u64;

    pub fn ceiling() -> Self {
        AttachmentLimits {
            // 2^18 chunks of 1 MiB: the chunk table (32 bytes a chunk,
            // 8 MiB) travels in one session frame (at most 16 MiB), and
            // well within the STREAM counter's 2^32 chunks.
            max_attachment_bytes: Self::MAX_ATTACHMENT_CEILING,
            max_message_bytes: u64::MAX,
            max_attachments: Self::MAX_ATTACHMENTS_CEILING,
        }
    }
}

impl Default for AttachmentLimits {
    /// 64 GiB per attachment, 256 GiB and 64 attachments per message.
    fn default() -> Self {
        AttachmentLimits {
            max_attachment_bytes: 64 << 30,
            max_message_bytes: 256 << 30,
            max_attachments: 64,
        }
    }
}
