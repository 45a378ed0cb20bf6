//! Domain-separation strings.
//!
//! Every signature and every hash that could be confused with another is
//! prefixed with one of these, so a signature made for one purpose can never
//! be replayed as another (an envelope signature as a receipt, say). Each is
//! NUL-terminated so that no string is a prefix of another.

/// Signature over an envelope's header, body commitment and ciphertext digest.
pub const ENVELOPE_SIGNATURE: &[u8] = b"comity/v1/envelope-signature\0";
/// HPKE `info` for the key schedule of an envelope.
pub const HPKE_INFO: &[u8] = b"comity/v1/hpke-info\0";
/// Prefix of the AEAD associated data of an envelope.
pub const ENVELOPE_AAD: &[u8] = b"comity/v1/envelope-aad\0";
/// Hiding commitment to the plaintext (salt, encoded body).
pub const BODY_COMMITMENT: &[u8] = b"comity/v1/body-commitment\0";
/// Digest of the HPKE encapsulated key and ciphertext.
pub const CIPHERTEXT_DIGEST: &[u8] = b"comity/v1/ciphertext-digest\0";
/// Digest of a whole encoded envelope (what receipts and the audit log name).
pub const ENVELOPE_DIGEST: &[u8] = b"comity/v1/envelope-digest\0";
/// Signature of a receipt by the recipient.
pub const RECEIPT_SIGNATURE: &[u8] = b"comity/v1/receipt-signature\0";
/// Signature by an identity key over its current encryption key.
pub const ENCRYPTION_KEY_SIGNATURE: &[u8] = b"comity/v1/encryption-key-signature\0";
/// Checksum inside a printed node id.
pub const NODE_ID_CHECKSUM: &[u8] = b"comity/v1/node-id-checksum\0";
/// Signature by a sender over a `ResendStatement` (session protocol 3).
pub const RESEND_NOTICE_SIGNATURE: &[u8] = b"comity/v1/resend-notice-signature\0";
/// Signature by a node over a `RestorationStatement` (session protocol 4).
pub const RESTORATION_STATEMENT_SIGNATURE: &[u8] = b"comity/v1/restoration-statement-signature\0";
/// Associated data of every encrypted attachment chunk (STREAM).
pub const ATTACHMENT_CHUNK_AAD: &[u8] = b"comity/v1/attachment-chunk\0";
/// Signatures of an identity transition (both keys sign the same bytes).
pub const IDENTITY_TRANSITION_SIGNATURE: &[u8] = b"comity/v1/identity-transition-signature\0";
/// Signed (never sent) to derive the node's QUIC stateless-reset key
/// (docs/protocol.md §8.5).
pub const QUIC_STATELESS_RESET_KEY: &[u8] = b"comity/v1/quic-stateless-reset-key\0";

#[cfg(test)]
mod tests {
    use super::*;

    /// No domain string is a prefix of another (each ends in NUL and they
    /// differ), so no input signed under one can be read as one under
    /// another.
    #[test]
    fn no_domain_is_a_prefix_of_another() {
        let all = [
            ENVELOPE_SIGNATURE,
            HPKE_INFO,
            ENVELOPE_AAD,
            BODY_COMMITMENT,
            CIPHERTEXT_DIGEST,
            ENVELOPE_DIGEST,
            RECEIPT_SIGNATURE,
            ENCRYPTION_KEY_SIGNATURE,
            NODE_ID_CHECKSUM,
            RESEND_NOTICE_SIGNATURE,
            RESTORATION_STATEMENT_SIGNATURE,
            ATTACHMENT_CHUNK_AAD,
            IDENTITY_TRANSITION_SIGNATURE,
            QUIC_STATELESS_RESET_KEY,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.last(), Some(&0), "{}", String::from_utf8_lossy(a));
            for (j, b) in all.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{:?} is a prefix of {:?}", a, b);
                }
            }
        }
    }
}
