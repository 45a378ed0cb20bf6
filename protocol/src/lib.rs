//! The Comity protocol: everything two central-authority nodes must agree on
//! byte for byte, and nothing else.
//!
//! This crate is sans-IO in the style of `quinn-proto`: it never opens a
//! file or socket and never reads the clock. Callers pass time and
//! randomness in, which is what makes every rule here testable and the
//! auditor's verifier independent of the node.
//!
//! * [`identity`]: node identities (Ed25519), encryption keys (X25519) signed
//!   by them, printable node ids with a checksum.
//! * [`message`]: the domain model — requests, spontaneous information,
//!   status updates, replies, consultations.
//! * [`codec`]: the one place that turns values into bytes and back, with a
//!   size limit on every decode.
//! * [`envelope`]: seal, outer check, open — signed and HPKE-encrypted.
//! * [`attachment`]: digital-evidence attachments — manifests, chunk tree,
//!   STREAM encryption, the sealer and opener state machines.
//! * [`receipt`]: signed proof that a recipient durably holds an envelope.
//! * [`resend`]: a sender's signed statement that an envelope resends an
//!   earlier message.
//! * [`session`]: the frames two nodes exchange on a QUIC stream.
//! * `sample` (feature `sample`): deterministic sample data for
//!   benchmarks.
//!
//! The wire format is specified in `docs/protocol.md`.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

/// Implements serde for a type as its text form: `Serialize` writes its
/// `Display`, `Deserialize` parses with its `FromStr` (whose error says
/// what is wrong). So JSON carries exactly what the CLI prints and accepts.
#[macro_export]
macro_rules! serde_as_text {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub mod attachment;
pub mod audit;
pub mod backup;
pub mod codec;
pub mod digest;
pub mod domain;
pub mod envelope;
pub mod identity;
pub mod ids;
pub mod message;
pub mod receipt;
pub mod resend;
pub mod rotation;
#[cfg(feature = "sample")]
pub mod sample;
pub mod session;
pub mod time;
pub mod transition;

pub use digest::Digest;
pub use identity::{EncryptionKeyCert, Identity, NodeId, PeerKeys};
pub use ids::MessageId;
pub use time::Timestamp;
