//! The check of a message's attachment manifests, and the type that proves
//! it was made.

use super::error::InvalidAttachment;
use super::{
    check_media_type, check_name, chunk_count, chunk_size_for, escaped, AttachmentLimits,
    AttachmentManifest, ContentKey, SealedAttachment,
};
use crate::message::MessageKind;

/// An attachment whose manifest passed [`check_attachments`]: a safe name, a
/// valid media type, a size within the limits, the required chunk size. Only
/// this can be given to an [`super::Opener`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedAttachment {
    index: usize,
    manifest: AttachmentManifest,
    key: ContentKey,
}

impl CheckedAttachment {
    /// Position in the message, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn manifest(&self) -> &AttachmentManifest {
        &self.manifest
    }

    /// The name, checked: one path component with nothing hidden, so it may
    /// be printed as it is.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn size(&self) -> u64 {
        self.manifest.size
    }

    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.manifest.size, self.manifest.chunk_size)
    }

    pub(crate) fn key(&self) -> &ContentKey {
        &self.key
    }

    /// The manifest and key again, e.g. for the store.
    pub fn to_sealed(&self) -> SealedAttachment {
        SealedAttachment {
            manifest: self.manifest.clone(),
            key: self.key.clone(),
        }
    }
}

/// Checks a message's manifests against the protocol's rules and `limits`,
/// in this order: kind, count, then each attachment's name, media type,
/// size and chunk size, then names unique (ignoring ASCII case), then the
/// total. Reports the first problem.
pub fn check_manifests(
    kind: MessageKind,
    manifests: &[AttachmentManifest],
    limits: &AttachmentLimits,
) -> Result<(), InvalidAttachment> {
    if manifests.is_empty() {
        return Ok(());
    }
    if !kind.carries_content() {
        return Err(InvalidAttachment::NotOnKind { kind });
    }
    let max = limits
        .max_attachments
        .min(AttachmentLimits::MAX_ATTACHMENTS_CEILING);
    if manifests.len() > max {
        return Err(InvalidAttachment::TooMany {
            count: manifests.len(),
            max,
        });
    }
    let ceiling = AttachmentLimits::ceiling().max_attachment_bytes;
    let max_size = limits.max_attachment_bytes.min(ceiling);
    let mut total = 0u64;
    for (index, m) in manifests.iter().enumerate() {
        check_name(&m.name).map_err(|rule| InvalidAttachment::BadName {
            index,
            name: escaped(&m.name),
            rule,
        })?;
        check_media_type(&m.media_type).map_err(|rule| InvalidAttachment::BadMediaType {
            index,
            media_type: escaped(&m.media_type),
            rule,
        })?;
        if m.size > max_size {
            return Err(InvalidAttachment::TooLarge {
                index,
                size: m.size,
                max: max_size,
            });
        }
        let expected = chunk_size_for(m.size);
        if m.chunk_size != expected {
            return Err(InvalidAttachment::WrongChunkSize {
                index,
                found: m.chunk_size,
                expected,
            });
        }
        if let Some(first) = manifests[..index]
            .iter()
            .position(|o| o.name.eq_ignore_ascii_case(&m.name))
        {
            return Err(InvalidAttachment::DuplicateName {
                index,
                first,
                name: m.name.clone(),
            });
        }
        total = total.saturating_add(m.size);
    }
    if total > limits.max_message_bytes {
        return Err(InvalidAttachment::TotalTooLarge {
            total,
            max: limits.max_message_bytes,
        });
    }
    Ok(())
}

/// [`check_manifests`], then pairs each manifest with its key.
pub fn check_attachments(
    kind: MessageKind,
    attachments: Vec<SealedAttachment>,
    limits: &AttachmentLimits,
) -> Result<Vec<CheckedAttachment>, InvalidAttachment> {
    let manifests: Vec<AttachmentManifest> =
        attachments.iter().map(|a| a.manifest.clone()).collect();
    check_manifests(kind, &manifests, limits)?;
    Ok(attachments
        .into_iter()
        .enumerate()
        .map(|(index, a)| CheckedAttachment {
            index,
            manifest: a.manifest,
            key: a.key,
        })
        .collect())
}
