//! The layout of the sealed plaintext:
//!
//! ```text
//! plaintext = committed ‖ keys
//! committed = salt[32] ‖ encode(Body) ‖ [ encode(Vec<AttachmentManifest>) ]
//! keys      = n × (content key[32] ‖ nonce prefix[7])
//! ```
//!
//! The manifest list is present only when non-empty (so a message without
//! attachments is byte for byte what it was before attachments existed), and
//! the `n` keys follow in the same order. The body commitment, and so the
//! origin proof, covers `committed` only: a proof shows every manifest but
//! no key. The keys are still signed, as part of the ciphertext.

use bincode::{Decode, Encode};

use crate::attachment::{AttachmentManifest, ContentKey, SealedAttachment};
use crate::codec::{self, DecodeError, EncodeError, MAX_FRAME_BYTES};
use crate::message::Body;

#[derive(Encode, Decode)]
struct Head {
    salt: [u8; 32],
    body: Body,
}

/// A decoded plaintext.
pub(crate) struct Content {
    pub body: Body,
    pub attachments: Vec<SealedAttachment>,
    /// Length of the committed part.
    pub committed_len: usize,
}

/// Encodes the plaintext; returns it and the length of its committed part.
pub(crate) fn encode(
    salt: [u8; 32],
    body: &Body,
    attachments: &[SealedAttachment],
) -> Result<(Vec<u8>, usize), EncodeError> {
    let mut out = codec::encode(&Head {
        salt,
        body: body.clone(),
    })?;
    if !attachments.is_empty() {
        let manifests: Vec<&AttachmentManifest> = attachments.iter().map(|a| &a.manifest).collect();
        codec::encode_into(&manifests, &mut out)?;
    }
    let committed_len = out.len();
    for a in attachments {
        codec::encode_into(&a.key, &mut out)?;
    }
    Ok((out, committed_len))
}

/// Decodes a whole plaintext, keys included.
pub(crate) fn decode(plaintext: &[u8]) -> Result<Content, DecodeError> {
    let (body, manifests, committed_len) = decode_committed_prefix(plaintext)?;
    let keys = &plaintext[committed_len..];
    let expected = manifests.len() * ContentKey::ENCODED_LEN;
    if keys.len() < expected {
        return Err(DecodeError::Truncated);
    }
    if keys.len() > expected {
        return Err(DecodeError::TrailingBytes {
            extra: keys.len() - expected,
        });
    }
    let mut attachments = Vec::with_capacity(manifests.len());
    for (manifest, key) in manifests
        .into_iter()
        .zip(keys.chunks_exact(ContentKey::ENCODED_LEN))
    {
        let key = codec::decode::<ContentKey, { ContentKey::ENCODED_LEN }>(key)?;
        attachments.push(SealedAttachment { manifest, key });
    }
    Ok(Content {
        body,
        attachments,
        committed_len,
    })
}

/// Decodes the committed part alone, as an origin proof carries it.
pub(crate) fn decode_committed(
    committed: &[u8],
) -> Result<(Body, Vec<AttachmentManifest>), DecodeError> {
    let (body, manifests, used) = decode_committed_prefix(committed)?;
    if used != committed.len() {
        return Err(DecodeError::TrailingBytes {
            extra: committed.len() - used,
        });
    }
    Ok((body, manifests))
}

fn decode_committed_prefix(
    bytes: &[u8],
) -> Result<(Body, Vec<AttachmentManifest>, usize), DecodeError> {
    let (head, used) = codec::decode_prefix::<Head, MAX_FRAME_BYTES>(bytes)?;
    let rest = &bytes[used..];
    if rest.is_empty() {
        return Ok((head.body, Vec::new(), used));
    }
    let (manifests, used_list) =
        codec::decode_prefix::<Vec<AttachmentManifest>, MAX_FRAME_BYTES>(rest)?;
    if manifests.is_empty() {
        // No attachments has one encoding: no list at all.
        return Err(DecodeError::Malformed(
            "an empty attachment list (no attachments is encoded by its absence)".into(),
        ));
    }
    Ok((head.body, manifests, used + used_list))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::attachment::chunk_size_for;
    use crate::digest::Digest;
    use crate::message::{Consultation, Thread};

    fn body() -> Body {
        Body::Consultation(Consultation {
            regarding: None,
            subject: "s".into(),
            body: "b".into(),
            thread: Thread::default(),
        })
    }

    fn attachment(name: &str) -> SealedAttachment {
        SealedAttachment {
            manifest: AttachmentManifest {
                name: name.into(),
                media_type: "application/pdf".into(),
                size: 5,
                chunk_size: chunk_size_for(5),
                tree_root: Digest([3; 32]),
                sha256: Digest([4; 32]),
            },
            key: ContentKey {
                key: [0xee; 32],
                nonce_prefix: [0xdd; 7],
            },
        }
    }

    #[test]
    fn without_attachments_the_layout_is_salt_and_body_only() {
        let (bytes, committed) = encode([9; 32], &body(), &[]).unwrap();
        let mut old = vec![9u8; 32];
        old.extend(codec::encode(&body()).unwrap());
        assert_eq!(bytes, old);
        assert_eq!(committed, bytes.len());
        let c = decode(&bytes).unwrap();
        assert_eq!(c.body, body());
        assert!(c.attachments.is_empty());
    }

    #[test]
    fn keys_follow_the_committed_part() {
        let list = [attachment("a.pdf"), attachment("b.pdf")];
        let (bytes, committed) = encode([9; 32], &body(), &list).unwrap();
        assert_eq!(bytes.len() - committed, 2 * ContentKey::ENCODED_LEN);
        assert_eq!(&bytes[committed..committed + 32], &[0xee; 32]);
        assert!(!bytes[..committed].windows(32).any(|w| w == [0xee; 32]));
        let c = decode(&bytes).unwrap();
        assert_eq!(c.committed_len, committed);
        assert_eq!(c.attachments, list);
        let (b, m) = decode_committed(&bytes[..committed]).unwrap();
        assert_eq!(b, body());
        assert_eq!(m.len(), 2);
        // The committed part with a key still attached is not a proof's.
        assert!(decode_committed(&bytes).is_err());
        // A missing or an extra key byte.
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).err(),
            Some(DecodeError::Truncated)
        );
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            decode(&extra).err(),
            Some(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn an_empty_list_is_not_a_second_encoding_of_none() {
        let (mut bytes, _) = encode([9; 32], &body(), &[]).unwrap();
        bytes.extend(0u64.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn a_huge_list_count_is_refused_without_allocating() {
        let (mut bytes, _) = encode([9; 32], &body(), &[]).unwrap();
        bytes.extend((1u64 << 40).to_le_bytes());
        assert!(decode(&bytes).is_err());
    }
}
